/* Streaming GGUF writer (see gguf.h): metadata is serialised as it is set,
 * tensor infos are collected, begin() lays out the aligned offsets and writes
 * everything before the data section, then tensor bytes are appended in
 * declaration order with zero padding between tensors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/gguf.h"
#include "formats/quant.h"

typedef struct {
  char *name;
  int type;
  uint32_t n_dims;
  uint64_t ne[AF_GGUF_MAX_DIMS];
  uint64_t nbytes, offset;
} winfo;

struct af_gguf_writer {
  uint8_t *kv; /* serialised key/value section */
  size_t kv_len, kv_cap;
  char **keys;
  uint64_t n_kv;
  winfo *t;
  uint64_t n_t, cap_t;
  uint64_t alignment;
  char *path;
  FILE *f;
  bool begun, finished;
  uint64_t cur, cur_written; /* tensor being appended and its bytes so far */
  void *scratch;             /* conversion buffer for append_f32 */
  size_t scratch_len;
};

int af_gguf_writer_new(af_gguf_writer **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
  (*out)->alignment = AF_GGUF_DEFAULT_ALIGNMENT;
  return 0;
}

void af_gguf_writer_free(af_gguf_writer *w) {
  if (!w) return;
  if (w->f) {
    fclose(w->f);
    if (!w->finished && w->path) remove(w->path);
  }
  for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
  for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
  free(w->keys);
  free(w->t);
  free(w->kv);
  free(w->path);
  free(w->scratch);
  free(w);
}

static int put(af_gguf_writer *w, const void *p, size_t n) {
  if (w->kv_len + n > w->kv_cap) {
    size_t cap = w->kv_cap ? w->kv_cap : 4096;
    while (cap < w->kv_len + n) cap *= 2;
    uint8_t *b = realloc(w->kv, cap);
    if (!b) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
    w->kv = b;
    w->kv_cap = cap;
  }
  memcpy(w->kv + w->kv_len, p, n);
  w->kv_len += n;
  return 0;
}

static int put_le(af_gguf_writer *w, uint64_t v, int n) {
  uint8_t b[8];
  for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
  return put(w, b, (size_t)n);
}

static int put_str(af_gguf_writer *w, const char *s, uint64_t len) {
  int rc = put_le(w, len, 8);
  return rc ? rc : put(w, s, (size_t)len);
}

static int begin_kv(af_gguf_writer *w, const char *key, af_gguf_vtype type) {
  if (w->begun) return af_err(AF_ERR_INVALID, "gguf writer: metadata %s set after begin", key);
  for (uint64_t i = 0; i < w->n_kv; i++)
    if (strcmp(w->keys[i], key) == 0) return af_err(AF_ERR_INVALID, "gguf writer: duplicate key %s", key);
  char **k = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *k);
  if (!k) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
  w->keys = k;
  if (!(k[w->n_kv] = strdup(key))) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
  w->n_kv++;
  int rc = put_str(w, key, strlen(key));
  return rc ? rc : put_le(w, (uint64_t)type, 4);
}

#define SETTER(fn, ctype, vt, n)                        \
  int fn(af_gguf_writer *w, const char *key, ctype v) { \
    int rc = begin_kv(w, key, vt);                      \
    return rc ? rc : put_le(w, (uint64_t)v, n);         \
  }
SETTER(af_gguf_writer_set_u8, uint8_t, AF_GGUF_UINT8, 1)
SETTER(af_gguf_writer_set_i8, int8_t, AF_GGUF_INT8, 1)
SETTER(af_gguf_writer_set_u16, uint16_t, AF_GGUF_UINT16, 2)
SETTER(af_gguf_writer_set_i16, int16_t, AF_GGUF_INT16, 2)
SETTER(af_gguf_writer_set_i32, int32_t, AF_GGUF_INT32, 4)
SETTER(af_gguf_writer_set_u64, uint64_t, AF_GGUF_UINT64, 8)
SETTER(af_gguf_writer_set_i64, int64_t, AF_GGUF_INT64, 8)
#undef SETTER

int af_gguf_writer_set_u32(af_gguf_writer *w, const char *key, uint32_t v) {
  if (strcmp(key, "general.alignment") == 0) {
    if (v == 0 || (v & (v - 1)))
      return af_err(AF_ERR_INVALID, "gguf writer: general.alignment %u is not a power of two", v);
    w->alignment = v;
  }
  int rc = begin_kv(w, key, AF_GGUF_UINT32);
  return rc ? rc : put_le(w, v, 4);
}

int af_gguf_writer_set_f32(af_gguf_writer *w, const char *key, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  int rc = begin_kv(w, key, AF_GGUF_FLOAT32);
  return rc ? rc : put_le(w, u, 4);
}

int af_gguf_writer_set_f64(af_gguf_writer *w, const char *key, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  int rc = begin_kv(w, key, AF_GGUF_FLOAT64);
  return rc ? rc : put_le(w, u, 8);
}

int af_gguf_writer_set_bool(af_gguf_writer *w, const char *key, bool v) {
  int rc = begin_kv(w, key, AF_GGUF_BOOL);
  return rc ? rc : put_le(w, v ? 1 : 0, 1);
}

int af_gguf_writer_set_str(af_gguf_writer *w, const char *key, const char *v) {
  int rc = begin_kv(w, key, AF_GGUF_STRING);
  return rc ? rc : put_str(w, v, strlen(v));
}

int af_gguf_writer_set_arr(af_gguf_writer *w, const char *key, af_gguf_vtype elem, const void *data,
                           uint64_t n) {
  size_t es = af_gguf_vtype_size(elem);
  if (!es) return af_err(AF_ERR_INVALID, "gguf writer: %s: set_arr takes numeric elements", key);
  int rc = begin_kv(w, key, AF_GGUF_ARRAY);
  if (!rc) rc = put_le(w, (uint64_t)elem, 4);
  if (!rc) rc = put_le(w, n, 8);
  const uint8_t *p = data;
  for (uint64_t i = 0; !rc && i < n; i++) {
    uint64_t v = 0;
    memcpy(&v, p + i * es, es); /* host order; little-endian hosts only */
    if (elem == AF_GGUF_BOOL) v = v ? 1 : 0;
    rc = put_le(w, v, (int)es);
  }
  return rc;
}

int af_gguf_writer_set_arr_str(af_gguf_writer *w, const char *key, const char *const *strs,
                               const uint64_t *lens, uint64_t n) {
  int rc = begin_kv(w, key, AF_GGUF_ARRAY);
  if (!rc) rc = put_le(w, AF_GGUF_STRING, 4);
  if (!rc) rc = put_le(w, n, 8);
  for (uint64_t i = 0; !rc && i < n; i++) rc = put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
  return rc;
}

int af_gguf_writer_set_value(af_gguf_writer *w, const char *key, const af_gguf_value *v) {
  switch (v->type) {
    case AF_GGUF_UINT8:
      return af_gguf_writer_set_u8(w, key, (uint8_t)v->v.u);
    case AF_GGUF_INT8:
      return af_gguf_writer_set_i8(w, key, (int8_t)v->v.i);
    case AF_GGUF_UINT16:
      return af_gguf_writer_set_u16(w, key, (uint16_t)v->v.u);
    case AF_GGUF_INT16:
      return af_gguf_writer_set_i16(w, key, (int16_t)v->v.i);
    case AF_GGUF_UINT32:
      return af_gguf_writer_set_u32(w, key, (uint32_t)v->v.u);
    case AF_GGUF_INT32:
      return af_gguf_writer_set_i32(w, key, (int32_t)v->v.i);
    case AF_GGUF_UINT64:
      return af_gguf_writer_set_u64(w, key, v->v.u);
    case AF_GGUF_INT64:
      return af_gguf_writer_set_i64(w, key, v->v.i);
    case AF_GGUF_FLOAT32:
      return af_gguf_writer_set_f32(w, key, (float)v->v.f);
    case AF_GGUF_FLOAT64:
      return af_gguf_writer_set_f64(w, key, v->v.f);
    case AF_GGUF_BOOL:
      return af_gguf_writer_set_bool(w, key, v->v.b);
    case AF_GGUF_STRING: {
      int rc = begin_kv(w, key, AF_GGUF_STRING);
      return rc ? rc : put_str(w, v->v.str.s, v->v.str.len); /* keeps NUL bytes */
    }
    case AF_GGUF_ARRAY:
      if (v->v.arr.type == AF_GGUF_STRING) {
        int rc = begin_kv(w, key, AF_GGUF_ARRAY);
        if (!rc) rc = put_le(w, AF_GGUF_STRING, 4);
        if (!rc) rc = put_le(w, v->v.arr.n, 8);
        for (uint64_t i = 0; !rc && i < v->v.arr.n; i++)
          rc = put_str(w, v->v.arr.strs[i].s, v->v.arr.strs[i].len);
        return rc;
      }
      if (v->v.arr.type == AF_GGUF_ARRAY) break;
      /* the reader's raw bytes are little-endian, as set_arr's host order here */
      return af_gguf_writer_set_arr(w, key, v->v.arr.type, v->v.arr.raw, v->v.arr.n);
    default:
      break;
  }
  return af_err(AF_ERR_UNSUPPORTED, "gguf writer: %s: cannot copy a value of type %d", key, (int)v->type);
}

int af_gguf_writer_add_tensor(af_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                              const uint64_t *ne) {
  if (w->begun) return af_err(AF_ERR_INVALID, "gguf writer: tensor %s declared after begin", name);
  if (type != AF_GGML_F32 && type != AF_GGML_F16 && type != AF_GGML_BF16 && type != AF_GGML_Q8_0 &&
      type != AF_GGML_Q4_0 && type != AF_GGML_Q4_K && type != AF_GGML_Q5_K && type != AF_GGML_Q6_K)
    return af_err(AF_ERR_UNSUPPORTED, "gguf writer: tensor %s: cannot write type %d", name, type);
  if (n_dims < 1 || n_dims > AF_GGUF_MAX_DIMS)
    return af_err(AF_ERR_INVALID, "gguf writer: tensor %s: %u dims", name, n_dims);
  for (uint64_t i = 0; i < w->n_t; i++)
    if (strcmp(w->t[i].name, name) == 0)
      return af_err(AF_ERR_INVALID, "gguf writer: duplicate tensor %s", name);
  winfo t = {0};
  uint64_t n = 1;
  t.type = type;
  t.n_dims = n_dims;
  for (uint32_t i = 0; i < AF_GGUF_MAX_DIMS; i++) t.ne[i] = i < n_dims ? ne[i] : 1;
  for (uint32_t i = 0; i < n_dims; i++) {
    if (ne[i] == 0 || ne[i] > (UINT64_MAX >> 2) / n)
      return af_err(AF_ERR_INVALID, "gguf writer: tensor %s: bad dimension %u", name, i);
    n *= ne[i];
  }
  if (ne[0] % af_ggml_blck_size(type))
    return af_err(AF_ERR_INVALID,
                  "gguf writer: tensor %s: row of %llu is not a multiple of the %s block (%zu)", name,
                  (unsigned long long)ne[0], af_ggml_type_name(type), af_ggml_blck_size(type));
  t.nbytes = af_ggml_nbytes(type, ne[0], n);
  if (w->n_t == w->cap_t) {
    uint64_t cap = w->cap_t ? w->cap_t * 2 : 64;
    winfo *p = realloc(w->t, (size_t)cap * sizeof *p);
    if (!p) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
    w->t = p;
    w->cap_t = cap;
  }
  if (!(t.name = strdup(name))) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
  w->t[w->n_t++] = t;
  return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

/* Offsets are laid out on demand (also for af_gguf_writer_file_size). */
static uint64_t layout(af_gguf_writer *w, uint64_t *data_off) {
  uint64_t hdr = 4 + 4 + 8 + 8 + w->kv_len;
  for (uint64_t i = 0; i < w->n_t; i++) hdr += 8 + strlen(w->t[i].name) + 4 + 8 * w->t[i].n_dims + 4 + 8;
  uint64_t off = 0, end = 0;
  for (uint64_t i = 0; i < w->n_t; i++) {
    w->t[i].offset = off;
    end = off + w->t[i].nbytes;
    off = align_up(end, w->alignment);
  }
  *data_off = align_up(hdr, w->alignment);
  return *data_off + end;
}

uint64_t af_gguf_writer_file_size(const af_gguf_writer *w) {
  uint64_t d;
  return layout((af_gguf_writer *)w, &d);
}

static int wr(af_gguf_writer *w, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, w->f) != n)
    return af_err(AF_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
  return 0;
}

static int wr_le(af_gguf_writer *w, uint64_t v, int n) {
  uint8_t b[8];
  for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
  return wr(w, b, (size_t)n);
}

static int wr_zeros(af_gguf_writer *w, uint64_t n) {
  static const uint8_t z[64];
  int rc = 0;
  while (!rc && n) {
    size_t k = n > sizeof z ? sizeof z : (size_t)n;
    rc = wr(w, z, k);
    n -= k;
  }
  return rc;
}

int af_gguf_writer_begin(af_gguf_writer *w, const char *path) {
  if (w->begun) return af_err(AF_ERR_INVALID, "gguf writer: begin called twice");
  uint64_t data_off;
  layout(w, &data_off);
  if (!(w->path = strdup(path))) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
  w->f = fopen(path, "wb");
  if (!w->f) return af_err(AF_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  w->begun = true;
  setvbuf(w->f, NULL, _IOFBF, 1 << 20);
  int rc = wr(w, "GGUF", 4);
  if (!rc) rc = wr_le(w, AF_GGUF_VERSION, 4);
  if (!rc) rc = wr_le(w, w->n_t, 8);
  if (!rc) rc = wr_le(w, w->n_kv, 8);
  if (!rc) rc = wr(w, w->kv, w->kv_len);
  uint64_t pos = 24 + w->kv_len;
  for (uint64_t i = 0; !rc && i < w->n_t; i++) {
    const winfo *t = &w->t[i];
    size_t nl = strlen(t->name);
    rc = wr_le(w, nl, 8);
    if (!rc) rc = wr(w, t->name, nl);
    if (!rc) rc = wr_le(w, t->n_dims, 4);
    for (uint32_t d = 0; !rc && d < t->n_dims; d++) rc = wr_le(w, t->ne[d], 8);
    if (!rc) rc = wr_le(w, (uint64_t)t->type, 4);
    if (!rc) rc = wr_le(w, t->offset, 8);
    pos += 8 + nl + 4 + 8 * t->n_dims + 12;
  }
  if (!rc) rc = wr_zeros(w, data_off - pos);
  w->cur = 0;
  w->cur_written = 0;
  return rc;
}

const char *af_gguf_writer_current(const af_gguf_writer *w) {
  return w->cur < w->n_t ? w->t[w->cur].name : NULL;
}

int af_gguf_writer_append(af_gguf_writer *w, const void *bytes, size_t n) {
  if (!w->begun || w->finished) return af_err(AF_ERR_INVALID, "gguf writer: append outside begin/finish");
  if (n == 0) return 0;
  if (w->cur >= w->n_t) return af_err(AF_ERR_INVALID, "%s: more tensor data than declared", w->path);
  winfo *t = &w->t[w->cur];
  if (n > t->nbytes - w->cur_written)
    return af_err(AF_ERR_INVALID, "%s: tensor %s: %zu bytes appended past its size %llu", w->path, t->name, n,
                  (unsigned long long)t->nbytes);
  int rc = wr(w, bytes, n);
  if (rc) return rc;
  w->cur_written += n;
  if (w->cur_written == t->nbytes) {
    w->cur++;
    w->cur_written = 0;
    if (w->cur < w->n_t) rc = wr_zeros(w, w->t[w->cur].offset - (t->offset + t->nbytes));
  }
  return rc;
}

int af_gguf_writer_append_f32(af_gguf_writer *w, const float *src, uint64_t n) {
  if (w->cur >= w->n_t) return af_err(AF_ERR_INVALID, "gguf writer: more tensor data than declared");
  const winfo *t = &w->t[w->cur];
  if (n % t->ne[0])
    return af_err(AF_ERR_INVALID, "gguf writer: tensor %s: %llu elements is not whole rows of %llu", t->name,
                  (unsigned long long)n, (unsigned long long)t->ne[0]);
  if (t->type == AF_GGML_F32) return af_gguf_writer_append(w, src, (size_t)n * 4);
  /* convert in chunks of whole rows so the scratch stays about 4 MiB */
  uint64_t row_bytes = af_ggml_nbytes(t->type, t->ne[0], t->ne[0]);
  uint64_t rows_per = (4u << 20) / (row_bytes ? row_bytes : 1);
  if (rows_per == 0) rows_per = 1;
  uint64_t rows = n / t->ne[0];
  size_t need = (size_t)(rows_per < rows ? rows_per : rows) * (size_t)row_bytes;
  if (need > w->scratch_len) {
    void *s = realloc(w->scratch, need);
    if (!s) return af_err(AF_ERR_NOMEM, "gguf writer: out of memory");
    w->scratch = s;
    w->scratch_len = need;
  }
  int rc = 0;
  for (uint64_t r = 0; !rc && r < rows; r += rows_per) {
    uint64_t k = rows - r < rows_per ? rows - r : rows_per;
    rc = af_convert_from_f32(t->type, src + r * t->ne[0], w->scratch, (size_t)(k * t->ne[0]));
    if (!rc) rc = af_gguf_writer_append(w, w->scratch, (size_t)(k * row_bytes));
  }
  return rc;
}

int af_gguf_writer_finish(af_gguf_writer *w) {
  if (!w->begun || w->finished) return af_err(AF_ERR_INVALID, "gguf writer: finish without begin");
  if (w->cur < w->n_t)
    return af_err(AF_ERR_INVALID, "%s: tensor %s: only %llu of %llu bytes written", w->path,
                  w->t[w->cur].name, (unsigned long long)w->cur_written,
                  (unsigned long long)w->t[w->cur].nbytes);
  int rc = 0;
  if (fflush(w->f) != 0 || ferror(w->f))
    rc = af_err(AF_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
  if (fclose(w->f) != 0 && !rc) rc = af_err(AF_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
  w->f = NULL;
  if (rc) {
    remove(w->path);
    return rc;
  }
  w->finished = true;
  return 0;
}
