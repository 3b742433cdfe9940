/* Tensor sources (see tensorsrc.h): opening files/folders/shard indexes of
 * either format behind one tensor list, and the strided, converting reads. */
#include "formats/tensorsrc.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artflow/status.h"
#include "formats/safetensors.h"
#include "formats/torch.h"

struct af_tsrc {
  char *path;
  af_torch **ck;
  size_t nck;
  af_safetensors **st;
  size_t nst;
  af_tsrc_tensor *t;
  size_t n;
  const af_tsrc_tensor **sorted;
};

/* ---- dtypes and scalar conversions ---- */
static const struct {
  const char *name;
  size_t size;
} DT[AF_TSRC_DTYPE_COUNT] = {
    [AF_TSRC_F32] = {"F32", 4},   [AF_TSRC_F16] = {"F16", 2}, [AF_TSRC_BF16] = {"BF16", 2},
    [AF_TSRC_F64] = {"F64", 8},   [AF_TSRC_I64] = {"I64", 8}, [AF_TSRC_I32] = {"I32", 4},
    [AF_TSRC_I16] = {"I16", 2},   [AF_TSRC_I8] = {"I8", 1},   [AF_TSRC_U8] = {"U8", 1},
    [AF_TSRC_BOOL] = {"BOOL", 1},
};

const char *af_tsrc_dtype_name(af_tsrc_dtype dt) {
  return (unsigned)dt < AF_TSRC_DTYPE_COUNT ? DT[dt].name : "?";
}
size_t af_tsrc_dtype_size(af_tsrc_dtype dt) {
  return (unsigned)dt < AF_TSRC_DTYPE_COUNT ? DT[dt].size : 0;
}
int af_tsrc_dtype_parse(const char *name, af_tsrc_dtype *out) {
  for (int i = 0; name && i < AF_TSRC_DTYPE_COUNT; i++)
    if (!strcmp(DT[i].name, name)) {
      *out = (af_tsrc_dtype)i;
      return 0;
    }
  return AF_ERR_UNSUPPORTED;
}

float af_tsrc_half_to_float(uint16_t h) {
  uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0) {
    float v = ldexpf((float)m, -24); /* zero and subnormals */
    return s ? -v : v;
  }
  bits = e == 31 ? (s | 0x7f800000u | m << 13) : (s | (e + 112) << 23 | m << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t af_tsrc_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) /* inf stays inf, NaN stays a quiet NaN */
    return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to inf */
  if (ax < 0x38800000u) { /* below 2^-14: half subnormal, rint gives round-to-even */
    float a;
    memcpy(&a, &ax, 4);
    return (uint16_t)(sign | (uint16_t)rintf(a * 16777216.0f));
  }
  uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u); /* round to nearest even at bit 13 */
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float af_tsrc_bf16_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* Element i of a run as float; memcpy loads because safetensors data need
 * not be aligned. */
static float load_f32(af_tsrc_dtype dt, const uint8_t *p) {
  switch (dt) {
    case AF_TSRC_F32: {
      float v;
      memcpy(&v, p, 4);
      return v;
    }
    case AF_TSRC_F16: {
      uint16_t v;
      memcpy(&v, p, 2);
      return af_tsrc_half_to_float(v);
    }
    case AF_TSRC_BF16: {
      uint16_t v;
      memcpy(&v, p, 2);
      return af_tsrc_bf16_to_float(v);
    }
    case AF_TSRC_F64: {
      double v;
      memcpy(&v, p, 8);
      return (float)v;
    }
    case AF_TSRC_I64: {
      int64_t v;
      memcpy(&v, p, 8);
      return (float)v;
    }
    case AF_TSRC_I32: {
      int32_t v;
      memcpy(&v, p, 4);
      return (float)v;
    }
    case AF_TSRC_I16: {
      int16_t v;
      memcpy(&v, p, 2);
      return (float)v;
    }
    case AF_TSRC_I8:
      return (float)(int8_t)p[0];
    case AF_TSRC_U8:
      return (float)p[0];
    case AF_TSRC_BOOL:
      return p[0] ? 1.0f : 0.0f;
    default:
      return 0;
  }
}

enum { OUT_F32, OUT_F16, OUT_RAW };

/* fp16 -> fp32 through a 256 KiB table: the conversion of multi-GB fp16
 * checkpoints is the hot loop of `artflow convert`. */
static float g_half_lut[65536];
static pthread_once_t g_half_once = PTHREAD_ONCE_INIT;
static void half_lut_init(void) {
  for (uint32_t h = 0; h < 65536; h++) g_half_lut[h] = af_tsrc_half_to_float((uint16_t)h);
}

/* Converts n elements src[0], src[stride], ... into dst[0..n). */
static void run(const af_tsrc_tensor *t, const uint8_t *src, int64_t stride, size_t n, int kind, void *dst) {
  size_t el = DT[t->dtype].size;
  size_t step = (size_t)stride * el;
  if (kind == OUT_RAW) {
    if (stride == 1)
      memcpy(dst, src, n * el);
    else
      for (size_t i = 0; i < n; i++) memcpy((uint8_t *)dst + i * el, src + i * step, el);
  } else if (kind == OUT_F16 && t->dtype == AF_TSRC_F16) {
    if (stride == 1)
      memcpy(dst, src, n * 2);
    else
      for (size_t i = 0; i < n; i++) memcpy((uint16_t *)dst + i, src + i * step, 2);
  } else if (kind == OUT_F16) {
    for (size_t i = 0; i < n; i++)
      ((uint16_t *)dst)[i] = af_tsrc_float_to_half(load_f32(t->dtype, src + i * step));
  } else if (t->dtype == AF_TSRC_F32 && stride == 1) {
    memcpy(dst, src, n * 4);
  } else if (t->dtype == AF_TSRC_F16) {
    pthread_once(&g_half_once, half_lut_init);
    float *d = dst;
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, src + i * step, 2);
      d[i] = g_half_lut[h];
    }
  } else {
    for (size_t i = 0; i < n; i++) ((float *)dst)[i] = load_f32(t->dtype, src + i * step);
  }
}

static int check_blob(const af_tsrc_tensor *t) {
  struct af_tsrc_blob *b = t->blob_;
  if (!b || !b->verify || b->state == 1) return 0;
  int rc = b->verify(b);
  b->state = rc ? rc : 1;
  return rc;
}

static int copy_rows(const af_tsrc_tensor *t, int64_t row0, int64_t nrows, int kind, void *dst) {
  if (!t || (!dst && t->numel)) return af_err(AF_ERR_INVALID, "af_tsrc_read: bad arguments");
  if ((unsigned)t->dtype >= AF_TSRC_DTYPE_COUNT || t->ndim < 0 || t->ndim > AF_TSRC_MAX_DIMS)
    return af_err(AF_ERR_INVALID, "af_tsrc_read: bad tensor");
  int64_t rows = t->ndim ? t->shape[0] : 1;
  if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
    return af_err(AF_ERR_INVALID, "%s: tensor '%s': rows [%lld, +%lld) out of range (%lld rows)", t->file,
                  t->name, (long long)row0, (long long)nrows, (long long)rows);
  if (t->numel == 0 || nrows == 0) return 0;
  int rc = check_blob(t);
  if (rc) return rc;
  const uint8_t *data = af_tsrc_data(t);
  if (!data) return af_error_code() ? af_error_code() : AF_ERR_INVALID;
  size_t el = DT[t->dtype].size, oel = kind == OUT_F32 ? 4 : kind == OUT_F16 ? 2 : el;
  size_t row_elems = (size_t)(t->numel / (uint64_t)rows);
  uint8_t *out = dst;
  if (t->contiguous) { /* one run covers all the rows */
    run(t, data + (size_t)row0 * row_elems * el, 1, (size_t)nrows * row_elems, kind, out);
    return 0;
  }
  /* odometer over all dims but the last; each innermost line is one run */
  int nd = t->ndim;
  int64_t idx[AF_TSRC_MAX_DIMS] = {0};
  idx[0] = row0;
  int64_t inner = t->shape[nd - 1], istride = t->strides[nd - 1];
  size_t lines = (size_t)nrows * (row_elems / (size_t)(nd > 1 ? inner : 1));
  for (size_t l = 0; l < lines; l++) {
    int64_t off = 0;
    for (int d = 0; d < nd - 1; d++) off += idx[d] * t->strides[d];
    if (nd == 1) off = row0 * istride;
    run(t, data + (size_t)off * el, istride, (size_t)(nd == 1 ? nrows : inner), kind, out);
    out += (size_t)(nd == 1 ? nrows : inner) * oel;
    if (nd == 1) break;
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < t->shape[d] || d == 0) break;
      idx[d] = 0;
    }
  }
  return 0;
}

const uint8_t *af_tsrc_data(const af_tsrc_tensor *t) {
  if (!t || check_blob(t)) return NULL;
  if (t->data || t->numel == 0) return t->data;
  const struct af_tsrc_blob *b = t->blob_;
  if (b && b->owned) return b->owned + t->offset_;
  af_err(AF_ERR_INVALID, "%s: tensor '%s' has no data", t->file, t->name);
  return NULL;
}

int af_tsrc_read_f32(const af_tsrc_tensor *t, float *dst) {
  return copy_rows(t, 0, t && t->ndim ? t->shape[0] : 1, OUT_F32, dst);
}
int af_tsrc_read_rows_f32(const af_tsrc_tensor *t, int64_t row0, int64_t nrows, float *dst) {
  return copy_rows(t, row0, nrows, OUT_F32, dst);
}
int af_tsrc_read_raw(const af_tsrc_tensor *t, void *dst) {
  return copy_rows(t, 0, t && t->ndim ? t->shape[0] : 1, OUT_RAW, dst);
}
int af_tsrc_read_f16(const af_tsrc_tensor *t, uint16_t *dst) {
  return copy_rows(t, 0, t && t->ndim ? t->shape[0] : 1, OUT_F16, dst);
}

const char *af_tsrc_shape_str(const af_tsrc_tensor *t, char *buf, size_t cap) {
  size_t k = 0;
  if (!cap) return buf;
  buf[0] = 0;
  k += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; t && i < t->ndim && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
  return buf;
}

/* ---- opening ---- */
static int push_ptr(void ***arr, size_t *n, void *p) {
  void **na = realloc(*arr, (*n + 1) * sizeof *na);
  if (!na) return AF_ERR_NOMEM;
  na[(*n)++] = p;
  *arr = na;
  return 0;
}

static int add_torch(af_tsrc *src, const char *path, const char *root_key) {
  af_torch *ck;
  int rc = af_torch_open(path, &ck);
  if (rc) return rc;
  if (push_ptr((void ***)&src->ck, &src->nck, ck)) {
    af_torch_close(ck);
    return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  }
  const af_pk_value *root = af_torch_pick_root(ck, root_key);
  if (!root)
    return af_err(AF_ERR_NOT_FOUND, "%s: checkpoint has no key '%s' at its top level", path, root_key);
  return af_torch_tensors(ck, root, "", &src->t, &src->n);
}

static int add_safetensors(af_tsrc *src, const char *path) {
  af_safetensors *st;
  int rc = af_safetensors_open(path, &st);
  if (rc) return rc;
  if (push_ptr((void ***)&src->st, &src->nst, st)) {
    af_safetensors_close(st);
    return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  }
  size_t k = af_safetensors_count(st);
  af_tsrc_tensor *nt = realloc(src->t, (src->n + k + 1) * sizeof *nt);
  if (!nt) return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  src->t = nt;
  memcpy(src->t + src->n, af_safetensors_tensors(st), k * sizeof *nt);
  src->n += k;
  return 0;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static int add_file(af_tsrc *src, const char *path, const char *root_key, int depth);

static int add_index(af_tsrc *src, const char *path, const char *root_key, int depth) {
  char **files;
  size_t n;
  int rc = af_shard_index_load(path, &files, &n);
  for (size_t i = 0; !rc && i < n; i++) {
    if (!strcmp(files[i], path))
      rc = af_err(AF_ERR_FORMAT, "%s: shard index lists itself", path);
    else
      rc = add_file(src, files[i], root_key, depth + 1);
  }
  af_shard_list_free(files, n);
  return rc;
}

/* Decides the format by content: zip magic (or the legacy pickle magic) is
 * PyTorch, *.json is a shard index, anything else must be safetensors. */
static int add_file(af_tsrc *src, const char *path, const char *root_key, int depth) {
  if (depth > 1) return af_err(AF_ERR_FORMAT, "%s: a shard index may not point to another index", path);
  uint8_t head[4] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot open", path);
  size_t hn = fread(head, 1, sizeof head, f);
  fclose(f);
  if (hn >= 2 && ((head[0] == 'P' && head[1] == 'K') || head[0] == 0x80))
    return add_torch(src, path, root_key);
  if (ends_with(path, ".json")) return add_index(src, path, root_key, depth);
  return add_safetensors(src, path);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const af_tsrc_tensor *const *)a)->name, (*(const af_tsrc_tensor *const *)b)->name);
}

static int open_path(af_tsrc *src, const char *path, const char *root_key) {
  struct stat sb;
  if (stat(path, &sb) != 0) return af_err(AF_ERR_IO, "%s: no such file or folder", path);
  if (!S_ISDIR(sb.st_mode)) return add_file(src, path, root_key, 0);
  static const char *cands[] = {"model.safetensors.index.json", "model.safetensors",
                                "pytorch_model.bin.index.json", "pytorch_model.bin"};
  char buf[4096];
  for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
    if ((size_t)snprintf(buf, sizeof buf, "%s/%s", path, cands[i]) >= sizeof buf)
      return af_err(AF_ERR_INVALID, "%s: path too long", path);
    if (stat(buf, &sb) == 0) return add_file(src, buf, root_key, 0);
  }
  return af_err(AF_ERR_NOT_FOUND,
                "%s: folder has no model.safetensors[.index.json] or pytorch_model.bin[.index.json]", path);
}

int af_tsrc_open_root(const char *path, const char *root_key, af_tsrc **out) {
  if (!path || !out) return af_err(AF_ERR_INVALID, "af_tsrc_open: bad arguments");
  *out = NULL;
  af_tsrc *src = calloc(1, sizeof *src);
  if (!src || !(src->path = strdup(path))) {
    free(src);
    return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  }
  int rc = open_path(src, path, root_key);
  if (!rc && !(src->sorted = malloc((src->n ? src->n : 1) * sizeof *src->sorted)))
    rc = af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  if (!rc) {
    for (size_t i = 0; i < src->n; i++) src->sorted[i] = &src->t[i];
    qsort(src->sorted, src->n, sizeof *src->sorted, cmp_name);
    for (size_t i = 1; i < src->n && !rc; i++)
      if (!strcmp(src->sorted[i]->name, src->sorted[i - 1]->name))
        rc = af_err(AF_ERR_MISMATCH, "%s: tensor '%s' appears twice (%s and %s)", path, src->sorted[i]->name,
                    src->sorted[i - 1]->file, src->sorted[i]->file);
  }
  if (rc) {
    af_tsrc_close(src);
    return rc;
  }
  *out = src;
  return 0;
}

int af_tsrc_open(const char *path, af_tsrc **out) {
  return af_tsrc_open_root(path, NULL, out);
}

void af_tsrc_close(af_tsrc *src) {
  if (!src) return;
  for (size_t i = 0; i < src->nck; i++) af_torch_close(src->ck[i]);
  for (size_t i = 0; i < src->nst; i++) af_safetensors_close(src->st[i]);
  free(src->ck);
  free(src->st);
  free(src->t);
  free(src->sorted);
  free(src->path);
  free(src);
}

size_t af_tsrc_count(const af_tsrc *src) {
  return src ? src->n : 0;
}
const af_tsrc_tensor *af_tsrc_get(const af_tsrc *src, size_t i) {
  return src && i < src->n ? &src->t[i] : NULL;
}
const char *af_tsrc_path(const af_tsrc *src) {
  return src ? src->path : "";
}

const af_tsrc_tensor *af_tsrc_find(const af_tsrc *src, const char *name) {
  if (!src || !name) return NULL;
  size_t lo = 0, hi = src->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(src->sorted[mid]->name, name);
    if (!c) return src->sorted[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

void af_tsrc_skip_crc(af_tsrc *src) {
  for (size_t i = 0; src && i < src->n; i++)
    if (src->t[i].blob_ && !src->t[i].blob_->lazy && src->t[i].blob_->state == 0) src->t[i].blob_->state = 1;
}
