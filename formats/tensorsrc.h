/* Tensor sources: one interface over every file a user brings (PyTorch zip
 * checkpoints .pth/.bin, safetensors, sharded Hugging Face folders).
 *
 * A source is opened once; it mmaps its files and lists tensors as read-only
 * views (dtype, shape, strides, pointer into the map).  Nothing is converted
 * until af_tsrc_read_* is called, so a 26 GB model costs only address space.
 *
 * Which tensors a PyTorch checkpoint contributes: if its top-level object is a
 * dict holding a dict under "model" or "state_dict", that dict is the root;
 * otherwise the top-level dict is.  Nested dicts below the root are flattened
 * with '.' ("a": {"b": T} gives "a.b"); non-tensor values are skipped.
 *
 * af_tsrc_open accepts:
 *   - a file: *.pth / *.pt / *.bin (PyTorch zip), *.safetensors, or an index
 *     file *.index.json (model.safetensors.index.json,
 *     pytorch_model.bin.index.json) whose shards are opened next to it;
 *   - a folder: uses, in this order, model.safetensors.index.json,
 *     model.safetensors, pytorch_model.bin.index.json, pytorch_model.bin.
 * The file type is decided by content (zip magic / safetensors header), not
 * by the extension. */
#ifndef AF_FORMATS_TENSORSRC_H
#define AF_FORMATS_TENSORSRC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum af_tsrc_dtype {
  AF_TSRC_F32 = 0,
  AF_TSRC_F16,
  AF_TSRC_BF16,
  AF_TSRC_F64,
  AF_TSRC_I64,
  AF_TSRC_I32,
  AF_TSRC_I16,
  AF_TSRC_I8,
  AF_TSRC_U8,
  AF_TSRC_BOOL,
  AF_TSRC_DTYPE_COUNT
} af_tsrc_dtype;

#define AF_TSRC_MAX_DIMS 8

/* Internal: the storage a tensor views, with its integrity check run on the
 * first read (a zip CRC over gigabytes is not paid at open time).  A deflated
 * storage (a re-zipped checkpoint) is inflated on its first read, only as far
 * as its views reach, and only one is kept inflated per file: a zip bomb
 * costs the bytes of the tensor being read, not the sum of what the entries
 * declare.  Reads are therefore not thread-safe. */
struct af_tsrc_blob {
  int (*verify)(struct af_tsrc_blob *b); /* NULL: nothing to check */
  int state;                             /* 0 unchecked, 1 verified, <0 failure code */
  const void *ctx, *ctx2;                /* owner's data for verify */
  uint8_t *owned;                        /* inflated copy (deflated storages), or NULL */
  int lazy;                              /* 1: verify inflates `need` bytes into owned */
  uint64_t need;                         /* bytes of the storage its views reach */
};

/* One tensor as a view into mapped file bytes.  All pointers are borrowed from
 * the source and stay valid until af_tsrc_close. */
typedef struct af_tsrc_tensor {
  const char *name; /* full key, e.g. "model.layers.0.mlp.up_proj.weight" */
  const char *file; /* path of the file that holds the data (for messages) */
  af_tsrc_dtype dtype;
  int ndim;                          /* 0 for a scalar */
  int64_t shape[AF_TSRC_MAX_DIMS];   /* row-major (PyTorch order) */
  int64_t strides[AF_TSRC_MAX_DIMS]; /* in elements; 0 for broadcast dims */
  uint64_t numel;                    /* product of shape (1 for a scalar) */
  uint64_t nbytes;                   /* numel * element size */
  int contiguous;                    /* 1: data[0 .. nbytes) is the tensor in row-major order */
  const uint8_t *data;               /* element [0,0,..]; NULL when numel == 0, and for a deflated
                                      * storage (inflated on the first read: use af_tsrc_data) */
  struct af_tsrc_blob *blob_;        /* internal; do not touch */
  uint64_t offset_;                  /* internal: bytes from the storage start (deflated ones) */
} af_tsrc_tensor;

typedef struct af_tsrc af_tsrc;

/* Opens a file or folder (see above).  On success *out owns the maps; free with
 * af_tsrc_close.  Returns 0, AF_ERR_IO (missing/unreadable), AF_ERR_FORMAT
 * (malformed/hostile file; message names the file and the cause),
 * AF_ERR_UNSUPPORTED (e.g. a pickle GLOBAL outside the allow-list, dtype),
 * AF_ERR_MISMATCH (a tensor present in two shards), AF_ERR_NOMEM. */
int af_tsrc_open(const char *path, af_tsrc **out);
/* Same, but picks the root dict of PyTorch checkpoints by key: root_key ""
 * means the top-level object, NULL means the automatic choice above. */
int af_tsrc_open_root(const char *path, const char *root_key, af_tsrc **out);
void af_tsrc_close(af_tsrc *src); /* NULL is fine */

size_t af_tsrc_count(const af_tsrc *src);
/* i-th tensor in file order (shards in index order); NULL when out of range. */
const af_tsrc_tensor *af_tsrc_get(const af_tsrc *src, size_t i);
/* Tensor by full name, NULL when absent (O(log n)). */
const af_tsrc_tensor *af_tsrc_find(const af_tsrc *src, const char *name);
/* Path given to af_tsrc_open (borrowed). */
const char *af_tsrc_path(const af_tsrc *src);

/* Copies the tensor into dst (numel floats, row-major, contiguous), converting
 * F16/BF16/F64/integer/bool to float and honouring strides (transposed views,
 * stride-0 broadcasts).  The first read of a storage also checks its zip CRC.
 * Returns 0, AF_ERR_FORMAT (CRC mismatch), AF_ERR_INVALID. */
int af_tsrc_read_f32(const af_tsrc_tensor *t, float *dst);
/* Rows [row0, row0+nrows) of dimension 0 (numel/shape[0] floats per row);
 * for streaming large tensors.  A 0-d tensor has one row. */
int af_tsrc_read_rows_f32(const af_tsrc_tensor *t, int64_t row0, int64_t nrows, float *dst);
/* Copies the tensor into dst (nbytes) in its own dtype, row-major contiguous. */
int af_tsrc_read_raw(const af_tsrc_tensor *t, void *dst);
/* Same as af_tsrc_read_f32 but writes IEEE half (uint16 bit patterns, round to
 * nearest even; out-of-range values become +-inf). */
int af_tsrc_read_f16(const af_tsrc_tensor *t, uint16_t *dst);

/* Pointer to element [0,0,..] after the storage's first-read work (zip CRC
 * check, or inflating a deflated storage); NULL with the error recorded.
 * Valid until the next read of another deflated storage of the same file:
 * only one deflated storage is held inflated at a time. */
const uint8_t *af_tsrc_data(const af_tsrc_tensor *t);

/* Turns off the zip CRC check of the storages not read yet (it costs about
 * 0.45 s per GB on one core); for benchmarks and trusted files only. */
void af_tsrc_skip_crc(af_tsrc *src);

/* "F32", "F16", "BF16", ... (safetensors spelling).  Never NULL. */
const char *af_tsrc_dtype_name(af_tsrc_dtype dt);
/* Bytes per element (0 for an invalid value). */
size_t af_tsrc_dtype_size(af_tsrc_dtype dt);
/* Parses a safetensors dtype name; returns 0 or AF_ERR_UNSUPPORTED. */
int af_tsrc_dtype_parse(const char *name, af_tsrc_dtype *out);
/* "[4224, 1408]" into buf (always NUL-terminated); returns buf. */
const char *af_tsrc_shape_str(const af_tsrc_tensor *t, char *buf, size_t cap);

/* IEEE half / bfloat16 <-> float helpers used by the readers. */
float af_tsrc_half_to_float(uint16_t h);
uint16_t af_tsrc_float_to_half(float f);
float af_tsrc_bf16_to_float(uint16_t b);

#ifdef __cplusplus
}
#endif
#endif
