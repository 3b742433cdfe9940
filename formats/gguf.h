/* GGUF v3 model files: a checked, mmap-based reader and a streaming writer.
 *
 * Layout (little-endian): magic "GGUF", u32 version (3), u64 n_tensors, u64 n_kv,
 * n_kv key/value pairs, n_tensors tensor infos (name, n_dims, ne[0..n_dims), type,
 * u64 offset), padding to the alignment (key general.alignment, default 32), then
 * the data section; each tensor offset is relative to the data section and a
 * multiple of the alignment.  ne[0] is the innermost (contiguous) dimension, as
 * in ggml: a PyTorch weight [rows, cols] is stored with ne = {cols, rows}.
 *
 * The reader validates every count, length, offset and size against the file and
 * fails with one message naming the file and the offending key or tensor.  All
 * strings it hands out are NUL-terminated copies owned by the af_gguf; tensor
 * data pointers point into the read-only mapping and live until af_gguf_close.
 *
 * The writer is streaming: declare metadata and tensors, af_gguf_writer_begin()
 * writes everything up to the data section with precomputed offsets, then the
 * tensor data is appended in declaration order, in pieces of any number of rows,
 * so no more than the caller's current piece is ever held in memory. */
#ifndef AF_FORMATS_GGUF_H
#define AF_FORMATS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AF_GGUF_VERSION 3
#define AF_GGUF_DEFAULT_ALIGNMENT 32
/* what artflow's model writers (convert, mkmodel) set: the base-address
 * alignment CPU OpenCL devices want for buffers used in place (PoCL: 128) */
#define AF_GGUF_MODEL_ALIGNMENT 128
#define AF_GGUF_MAX_DIMS 4

/* Metadata value types (values fixed by the GGUF format). */
typedef enum af_gguf_vtype {
  AF_GGUF_UINT8 = 0,
  AF_GGUF_INT8 = 1,
  AF_GGUF_UINT16 = 2,
  AF_GGUF_INT16 = 3,
  AF_GGUF_UINT32 = 4,
  AF_GGUF_INT32 = 5,
  AF_GGUF_FLOAT32 = 6,
  AF_GGUF_BOOL = 7,
  AF_GGUF_STRING = 8,
  AF_GGUF_ARRAY = 9,
  AF_GGUF_UINT64 = 10,
  AF_GGUF_INT64 = 11,
  AF_GGUF_FLOAT64 = 12,
  AF_GGUF_VTYPE_COUNT
} af_gguf_vtype;

/* Tensor element types (ggml's numbering).  artflow writes F32, F16, Q8_0 and
 * Q4_0; the reader knows the sizes of the others so it can list and check any
 * llama.cpp file, but only these four (plus BF16) can be dequantized. */
typedef enum af_ggml_type {
  AF_GGML_F32 = 0,
  AF_GGML_F16 = 1,
  AF_GGML_Q4_0 = 2,
  AF_GGML_Q4_1 = 3,
  AF_GGML_Q5_0 = 6,
  AF_GGML_Q5_1 = 7,
  AF_GGML_Q8_0 = 8,
  AF_GGML_Q8_1 = 9,
  AF_GGML_Q2_K = 10,
  AF_GGML_Q3_K = 11,
  AF_GGML_Q4_K = 12,
  AF_GGML_Q5_K = 13,
  AF_GGML_Q6_K = 14,
  AF_GGML_Q8_K = 15,
  AF_GGML_I8 = 24,
  AF_GGML_I16 = 25,
  AF_GGML_I32 = 26,
  AF_GGML_I64 = 27,
  AF_GGML_F64 = 28,
  AF_GGML_BF16 = 30,
} af_ggml_type;

/* Name ("f32", "q4_0", ...) or NULL for a type this build does not know. */
const char *af_ggml_type_name(int type);
/* Parses "f32|f16|q8_0|q4_0|bf16|..." (case-insensitive); -1 when unknown. */
int af_ggml_type_from_name(const char *name);
/* general.file_type holds llama.cpp's file-type enum (llama_ftype), not the
 * ggml tensor type (formats/gguf_ftype.c).  Conversions both ways; -1 when
 * the type has no counterpart here. */
int af_llama_ftype_from_ggml(int ggml_type);
int af_ggml_from_llama_ftype(int ftype);
/* The weight type a model file says it has ("f32", "f16", "q8_0", "q4_0",
 * ...), read from general.file_type as llama_ftype, or as the ggml type id in
 * files of artflow.format "1" (written before the enum was used).  NULL when
 * absent or unknown. */
struct af_gguf;
const char *af_gguf_weight_type(const struct af_gguf *g);

/* Elements per block (1 for plain types) and bytes per block; 0 when unknown. */
size_t af_ggml_blck_size(int type);
size_t af_ggml_type_size(int type);
/* Bytes of a tensor of n elements whose innermost dimension is ne0; returns 0
 * (and records an error) when ne0 is not a multiple of the block or on overflow. */
uint64_t af_ggml_nbytes(int type, uint64_t ne0, uint64_t n_elements);

/* A string inside the file: NUL-terminated copy, len excludes the NUL (GGUF
 * strings may contain NUL bytes, hence the explicit length). */
typedef struct af_gguf_str {
  const char *s;
  uint64_t len;
} af_gguf_str;

typedef struct af_gguf_value af_gguf_value;
struct af_gguf_value {
  af_gguf_vtype type;
  union {
    uint64_t u;      /* UINT8..UINT64 */
    int64_t i;       /* INT8..INT64 */
    double f;        /* FLOAT32, FLOAT64 */
    bool b;          /* BOOL */
    af_gguf_str str; /* STRING */
    struct {
      af_gguf_vtype type;   /* element type */
      uint64_t n;           /* element count */
      const uint8_t *raw;   /* numeric/bool elements: little-endian bytes in the
                               map, possibly unaligned (use the accessors) */
      af_gguf_str *strs;    /* STRING elements (owned by the af_gguf) */
      af_gguf_value *items; /* ARRAY elements (nested arrays) */
    } arr;
  } v;
};

typedef struct af_gguf_kv {
  const char *key;
  af_gguf_value value;
} af_gguf_kv;

typedef struct af_gguf_tensor {
  const char *name;
  int type; /* af_ggml_type */
  uint32_t n_dims;
  uint64_t ne[AF_GGUF_MAX_DIMS]; /* ne[0] innermost; unused dims are 1 */
  uint64_t n_elements;
  uint64_t offset; /* from the start of the data section */
  uint64_t nbytes;
  const void *data; /* into the mapping (read-only) */
} af_gguf_tensor;

typedef struct af_gguf af_gguf;

/* Maps and validates a GGUF file.  Returns 0 and *out (caller frees with
 * af_gguf_close), or AF_ERR_IO (cannot open/map), AF_ERR_FORMAT (bad magic,
 * truncated, lying sizes/offsets, overlapping tensors, ...), AF_ERR_UNSUPPORTED
 * (version other than 2/3, unknown tensor type), AF_ERR_NOMEM. */
int af_gguf_open(const char *path, af_gguf **out);
/* Same over a caller-owned buffer (no copy; must outlive the af_gguf); `name`
 * is used in messages.  Used by the fuzzer and tests. */
int af_gguf_open_buffer(const void *buf, size_t size, const char *name, af_gguf **out);
void af_gguf_close(af_gguf *g); /* NULL-safe */
/* Drops the whole pages of [p, p + n), which must lie in g's data, from this
 * process's mapping of the file (MADV_DONTNEED): the resident set shrinks,
 * the page cache keeps the pages, and a later read faults them back with the
 * same bytes.  For data the process no longer needs often, e.g. weights
 * copied to a device.  A no-op for af_gguf_open_buffer files (NULL-safe). */
void af_gguf_release(const af_gguf *g, const void *p, size_t n);
/* the same for the whole file */
void af_gguf_release_all(const af_gguf *g);

const char *af_gguf_path(const af_gguf *g);
uint32_t af_gguf_version(const af_gguf *g);
uint64_t af_gguf_alignment(const af_gguf *g);
uint64_t af_gguf_file_size(const af_gguf *g);
uint64_t af_gguf_data_offset(const af_gguf *g); /* file offset of the data section */

uint64_t af_gguf_n_kv(const af_gguf *g);
const af_gguf_kv *af_gguf_kv_at(const af_gguf *g, uint64_t i); /* borrowed */
/* Value of `key` or NULL when absent.  Borrowed. */
const af_gguf_value *af_gguf_find(const af_gguf *g, const char *key);

/* Typed getters.  Integers convert between widths when the value fits; floats
 * accept FLOAT32/FLOAT64 and integers.  Return 0, AF_ERR_NOT_FOUND (absent; no
 * message recorded so callers can apply defaults), or AF_ERR_FORMAT (wrong
 * type / does not fit; message names the file and key). */
int af_gguf_get_u32(const af_gguf *g, const char *key, uint32_t *out);
int af_gguf_get_i32(const af_gguf *g, const char *key, int32_t *out);
int af_gguf_get_u64(const af_gguf *g, const char *key, uint64_t *out);
int af_gguf_get_f32(const af_gguf *g, const char *key, float *out);
int af_gguf_get_bool(const af_gguf *g, const char *key, bool *out);
/* *out borrowed from g. */
int af_gguf_get_str(const af_gguf *g, const char *key, const char **out);
/* Array getters.  af_gguf_get_arr_n: element type and count.  The copy
 * variants take *n = capacity of dst on input (ignored when dst is NULL),
 * convert up to that many numeric elements into dst, and set *n to the
 * array's full length; call once with dst NULL to size the buffer. */
int af_gguf_get_arr_n(const af_gguf *g, const char *key, af_gguf_vtype *elem, uint64_t *n);
int af_gguf_get_arr_f32(const af_gguf *g, const char *key, float *dst, uint64_t *n);
int af_gguf_get_arr_i32(const af_gguf *g, const char *key, int32_t *dst, uint64_t *n);
/* String array: *strs borrowed from g. */
int af_gguf_get_arr_str(const af_gguf *g, const char *key, const af_gguf_str **strs, uint64_t *n);
/* Element i of a numeric/bool array value as double / int64 (no bounds check
 * beyond i < n: returns 0 when out of range). */
double af_gguf_arr_num(const af_gguf_value *v, uint64_t i);
/* Bytes of one element of a numeric type (0 for strings, arrays, unknown). */
size_t af_gguf_vtype_size(af_gguf_vtype t);
/* Decodes one little-endian numeric element at p into v (type t). */
void af_gguf_decode_scalar(af_gguf_vtype t, const uint8_t *p, af_gguf_value *v);

uint64_t af_gguf_n_tensors(const af_gguf *g);
const af_gguf_tensor *af_gguf_tensor_at(const af_gguf *g, uint64_t i); /* borrowed */
/* Tensor named `name` or NULL.  Borrowed. */
const af_gguf_tensor *af_gguf_find_tensor(const af_gguf *g, const char *name);
/* Checks that `name` exists with the given dims (ne order, n_dims entries;
 * 0 = any).  AF_ERR_NOT_FOUND / AF_ERR_MISMATCH with a message naming both. */
int af_gguf_expect_tensor(const af_gguf *g, const char *name, uint32_t n_dims, const uint64_t *ne,
                          const af_gguf_tensor **out);

/* ---------------------------------------------------------------- writer */

/* Metadata that parses but cannot be right (formats/gguf_check.c): norm
 * epsilons that are NaN, <= 0 or >= 1; block counts below 1 or above the
 * file's tensor count; sizes outside 1..2^20; head counts below 1 or not
 * dividing their width; a non-positive RoPE base; fewer token_embd rows
 * than tokenizer pieces.  af_gguf_check_meaning calls fn(user, key, why) for
 * each and returns how many (keys absent from the file are not checked);
 * af_gguf_check_model returns 0 or AF_ERR_FORMAT "FILE: key 'K': why" for
 * the first. */
int af_gguf_check_meaning(const af_gguf *g, void (*fn)(void *user, const char *key, const char *why),
                          void *user);
int af_gguf_check_model(const af_gguf *g);

typedef struct af_gguf_writer af_gguf_writer;

/* Returns 0 and *out, or AF_ERR_NOMEM.  Caller frees with af_gguf_writer_free. */
int af_gguf_writer_new(af_gguf_writer **out);
/* Frees; if begin() was called but finish() was not, the partial output file
 * is closed and removed.  NULL-safe. */
void af_gguf_writer_free(af_gguf_writer *w);

/* Metadata (before begin).  Keys must be unique (AF_ERR_INVALID otherwise);
 * all data is copied.  Setting general.alignment (u32, power of two) changes
 * the alignment used for the data section. */
int af_gguf_writer_set_u8(af_gguf_writer *w, const char *key, uint8_t v);
int af_gguf_writer_set_i8(af_gguf_writer *w, const char *key, int8_t v);
int af_gguf_writer_set_u16(af_gguf_writer *w, const char *key, uint16_t v);
int af_gguf_writer_set_i16(af_gguf_writer *w, const char *key, int16_t v);
int af_gguf_writer_set_u32(af_gguf_writer *w, const char *key, uint32_t v);
int af_gguf_writer_set_i32(af_gguf_writer *w, const char *key, int32_t v);
int af_gguf_writer_set_u64(af_gguf_writer *w, const char *key, uint64_t v);
int af_gguf_writer_set_i64(af_gguf_writer *w, const char *key, int64_t v);
int af_gguf_writer_set_f32(af_gguf_writer *w, const char *key, float v);
int af_gguf_writer_set_f64(af_gguf_writer *w, const char *key, double v);
int af_gguf_writer_set_bool(af_gguf_writer *w, const char *key, bool v);
int af_gguf_writer_set_str(af_gguf_writer *w, const char *key, const char *v);
/* Numeric/bool array of n elements of type `elem` from host-endian memory. */
int af_gguf_writer_set_arr(af_gguf_writer *w, const char *key, af_gguf_vtype elem, const void *data,
                           uint64_t n);
/* String array; lens may be NULL (strlen used). */
int af_gguf_writer_set_arr_str(af_gguf_writer *w, const char *key, const char *const *strs,
                               const uint64_t *lens, uint64_t n);

/* Copies a value read by af_gguf_open (any type but nested arrays, which
 * give AF_ERR_UNSUPPORTED) under `key`: strings keep their exact bytes. */
int af_gguf_writer_set_value(af_gguf_writer *w, const char *key, const af_gguf_value *v);

/* Declares a tensor (before begin): ne[0] innermost, 1..4 dims.  Returns 0,
 * AF_ERR_INVALID (duplicate name, bad dims, ne[0] not a multiple of the type's
 * block), AF_ERR_UNSUPPORTED (type other than F32/F16/BF16/Q8_0/Q4_0, or the
 * K-quants Q4_K/Q5_K/Q6_K, whose bytes only af_gguf_writer_append writes). */
int af_gguf_writer_add_tensor(af_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                              const uint64_t *ne);

/* Creates `path` and writes header, metadata, tensor infos and padding.
 * AF_ERR_IO on failure (message names the path). */
int af_gguf_writer_begin(af_gguf_writer *w, const char *path);
/* Appends raw, already-encoded bytes of the current tensor (declaration order);
 * may be called several times per tensor; crossing a tensor's end is an error. */
int af_gguf_writer_append(af_gguf_writer *w, const void *bytes, size_t n);
/* Appends n_elements f32 values of the current tensor, converting them to its
 * type (n_elements must be a multiple of ne[0], i.e. whole rows). */
int af_gguf_writer_append_f32(af_gguf_writer *w, const float *src, uint64_t n_elements);
/* Index/name of the tensor the next append goes to (NULL after the last). */
const char *af_gguf_writer_current(const af_gguf_writer *w);
/* Checks all tensors were written completely, flushes and closes.  AF_ERR_IO,
 * AF_ERR_INVALID (tensor data missing, message names the tensor). */
int af_gguf_writer_finish(af_gguf_writer *w);
/* Total file size the writer will produce (valid after all declarations). */
uint64_t af_gguf_writer_file_size(const af_gguf_writer *w);

/* artflow.demo of the model file at `path` (why its weights are not
 * meaningful: mkmodel's random weights, the bundled demo) copied to out, or
 * 0 when the file has none or cannot be read (the caller's own open reports
 * that).  Returns 1 when out holds a note. */
int af_model_demo_note(const char *path, char *out, size_t n);
/* Writes "artflow: warning: PATH holds DEMO weights (NOTE): ..." to f when
 * the model has such a note. */
void af_model_warn_demo(const char *path, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
