/* GGUF reader: maps the file and validates every count, string length, array
 * size, tensor shape, offset and size against the bytes that are really there,
 * so a hostile or truncated file fails with one clear message (see gguf.h). */
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artflow/status.h"

/* ------------------------------------------------------------ type table */

typedef struct {
  int type;
  const char *name;
  size_t blck, size;
} type_info;

static const type_info k_types[] = {
    {AF_GGML_F32, "f32", 1, 4},       {AF_GGML_F16, "f16", 1, 2},       {AF_GGML_Q4_0, "q4_0", 32, 18},
    {AF_GGML_Q4_1, "q4_1", 32, 20},   {AF_GGML_Q5_0, "q5_0", 32, 22},   {AF_GGML_Q5_1, "q5_1", 32, 24},
    {AF_GGML_Q8_0, "q8_0", 32, 34},   {AF_GGML_Q8_1, "q8_1", 32, 36},   {AF_GGML_Q2_K, "q2_k", 256, 84},
    {AF_GGML_Q3_K, "q3_k", 256, 110}, {AF_GGML_Q4_K, "q4_k", 256, 144}, {AF_GGML_Q5_K, "q5_k", 256, 176},
    {AF_GGML_Q6_K, "q6_k", 256, 210}, {AF_GGML_Q8_K, "q8_k", 256, 292}, {AF_GGML_I8, "i8", 1, 1},
    {AF_GGML_I16, "i16", 1, 2},       {AF_GGML_I32, "i32", 1, 4},       {AF_GGML_I64, "i64", 1, 8},
    {AF_GGML_F64, "f64", 1, 8},       {AF_GGML_BF16, "bf16", 1, 2},
};

static const type_info *type_find(int type) {
  for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
    if (k_types[i].type == type) return &k_types[i];
  return NULL;
}

const char *af_ggml_type_name(int type) {
  const type_info *t = type_find(type);
  return t ? t->name : NULL;
}

int af_ggml_type_from_name(const char *name) {
  for (size_t i = 0; name && i < sizeof k_types / sizeof k_types[0]; i++)
    if (strcasecmp(k_types[i].name, name) == 0) return k_types[i].type;
  return -1;
}

size_t af_ggml_blck_size(int type) {
  const type_info *t = type_find(type);
  return t ? t->blck : 0;
}

size_t af_ggml_type_size(int type) {
  const type_info *t = type_find(type);
  return t ? t->size : 0;
}

uint64_t af_ggml_nbytes(int type, uint64_t ne0, uint64_t n) {
  const type_info *t = type_find(type);
  if (!t) {
    af_err(AF_ERR_UNSUPPORTED, "unknown tensor type %d", type);
    return 0;
  }
  if (ne0 % t->blck) {
    af_err(AF_ERR_FORMAT, "row of %llu elements is not a multiple of the %s block (%zu)",
           (unsigned long long)ne0, t->name, t->blck);
    return 0;
  }
  uint64_t blocks = n / t->blck;
  if (blocks > UINT64_MAX / t->size) {
    af_err(AF_ERR_FORMAT, "tensor size overflows");
    return 0;
  }
  return blocks * t->size;
}

/* ------------------------------------------------------------- the file */

struct af_gguf {
  char *path;
  const uint8_t *base;
  uint64_t size;
  bool mapped;
  uint32_t version;
  uint64_t alignment;
  uint64_t data_off;
  uint64_t n_kv, n_tensors;
  af_gguf_kv *kv;
  af_gguf_tensor *tensors;
  /* every allocation made while parsing, freed together */
  void **allocs;
  size_t n_allocs, cap_allocs;
};

typedef struct {
  af_gguf *g;
  uint64_t pos;
  const char *what; /* context for messages, e.g. the key being read */
} cursor;

static void *g_alloc(af_gguf *g, size_t n) {
  if (g->n_allocs == g->cap_allocs) {
    size_t cap = g->cap_allocs ? g->cap_allocs * 2 : 64;
    void **a = realloc(g->allocs, cap * sizeof *a);
    if (!a) return NULL;
    g->allocs = a;
    g->cap_allocs = cap;
  }
  void *p = calloc(1, n ? n : 1);
  if (p) g->allocs[g->n_allocs++] = p;
  return p;
}

static int trunc_err(cursor *c, uint64_t need) {
  return af_err(AF_ERR_FORMAT, "%s: truncated GGUF file: %s needs %llu bytes at offset %llu, file has %llu",
                c->g->path, c->what, (unsigned long long)need, (unsigned long long)c->pos,
                (unsigned long long)c->g->size);
}

static int need(cursor *c, uint64_t n) {
  if (n > c->g->size || c->pos > c->g->size - n) return trunc_err(c, n);
  return 0;
}

static uint64_t rd_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static int rd_u32(cursor *c, uint32_t *v) {
  int rc = need(c, 4);
  if (rc) return rc;
  *v = (uint32_t)rd_le(c->g->base + c->pos, 4);
  c->pos += 4;
  return 0;
}

static int rd_u64(cursor *c, uint64_t *v) {
  int rc = need(c, 8);
  if (rc) return rc;
  *v = rd_le(c->g->base + c->pos, 8);
  c->pos += 8;
  return 0;
}

static int rd_str(cursor *c, af_gguf_str *s) {
  uint64_t len;
  int rc = rd_u64(c, &len);
  if (rc) return rc;
  if ((rc = need(c, len))) return rc;
  char *p = g_alloc(c->g, (size_t)len + 1);
  if (!p) return af_err(AF_ERR_NOMEM, "%s: out of memory reading %s", c->g->path, c->what);
  memcpy(p, c->g->base + c->pos, (size_t)len);
  c->pos += len;
  s->s = p;
  s->len = len;
  return 0;
}

size_t af_gguf_vtype_size(af_gguf_vtype t) {
  switch (t) {
    case AF_GGUF_UINT8:
    case AF_GGUF_INT8:
    case AF_GGUF_BOOL:
      return 1;
    case AF_GGUF_UINT16:
    case AF_GGUF_INT16:
      return 2;
    case AF_GGUF_UINT32:
    case AF_GGUF_INT32:
    case AF_GGUF_FLOAT32:
      return 4;
    case AF_GGUF_UINT64:
    case AF_GGUF_INT64:
    case AF_GGUF_FLOAT64:
      return 8;
    default:
      return 0;
  }
}

void af_gguf_decode_scalar(af_gguf_vtype t, const uint8_t *p, af_gguf_value *v) {
  uint64_t raw = rd_le(p, (int)af_gguf_vtype_size(t));
  v->type = t;
  switch (t) {
    case AF_GGUF_UINT8:
    case AF_GGUF_UINT16:
    case AF_GGUF_UINT32:
    case AF_GGUF_UINT64:
      v->v.u = raw;
      break;
    case AF_GGUF_INT8:
      v->v.i = (int8_t)raw;
      break;
    case AF_GGUF_INT16:
      v->v.i = (int16_t)raw;
      break;
    case AF_GGUF_INT32:
      v->v.i = (int32_t)raw;
      break;
    case AF_GGUF_INT64:
      v->v.i = (int64_t)raw;
      break;
    case AF_GGUF_BOOL:
      v->v.b = raw != 0;
      break;
    case AF_GGUF_FLOAT32: {
      uint32_t u = (uint32_t)raw;
      float f;
      memcpy(&f, &u, 4);
      v->v.f = f;
      break;
    }
    case AF_GGUF_FLOAT64: {
      double d;
      memcpy(&d, &raw, 8);
      v->v.f = d;
      break;
    }
    default:
      break;
  }
}

static int rd_value(cursor *c, af_gguf_vtype t, af_gguf_value *v, int depth) {
  int rc;
  if (t == AF_GGUF_STRING) {
    v->type = t;
    return rd_str(c, &v->v.str);
  }
  if (t == AF_GGUF_ARRAY) {
    uint32_t et;
    uint64_t n;
    if (depth > 8) return af_err(AF_ERR_FORMAT, "%s: %s: arrays nested too deeply", c->g->path, c->what);
    if ((rc = rd_u32(c, &et)) || (rc = rd_u64(c, &n))) return rc;
    if (et >= AF_GGUF_VTYPE_COUNT)
      return af_err(AF_ERR_FORMAT, "%s: %s: unknown array element type %u", c->g->path, c->what, et);
    v->type = t;
    v->v.arr.type = (af_gguf_vtype)et;
    v->v.arr.n = n;
    size_t es = af_gguf_vtype_size((af_gguf_vtype)et);
    if (es) {
      if (n > UINT64_MAX / es) return trunc_err(c, UINT64_MAX);
      if ((rc = need(c, n * es))) return rc;
      v->v.arr.raw = c->g->base + c->pos;
      c->pos += n * es;
      return 0;
    }
    /* strings take >= 8 bytes each, nested arrays >= 12: bound n before allocating */
    uint64_t min_each = et == AF_GGUF_STRING ? 8 : 12;
    if (n > (c->g->size - c->pos) / min_each) return trunc_err(c, n * min_each);
    if (et == AF_GGUF_STRING) {
      v->v.arr.strs = g_alloc(c->g, (size_t)n * sizeof(af_gguf_str));
      if (!v->v.arr.strs) return af_err(AF_ERR_NOMEM, "%s: out of memory", c->g->path);
      for (uint64_t i = 0; i < n; i++)
        if ((rc = rd_str(c, &v->v.arr.strs[i]))) return rc;
    } else {
      v->v.arr.items = g_alloc(c->g, (size_t)n * sizeof(af_gguf_value));
      if (!v->v.arr.items) return af_err(AF_ERR_NOMEM, "%s: out of memory", c->g->path);
      for (uint64_t i = 0; i < n; i++)
        if ((rc = rd_value(c, AF_GGUF_ARRAY, &v->v.arr.items[i], depth + 1))) return rc;
    }
    return 0;
  }
  size_t es = af_gguf_vtype_size(t);
  if ((rc = need(c, es))) return rc;
  af_gguf_decode_scalar(t, c->g->base + c->pos, v);
  c->pos += es;
  return 0;
}

static int cmp_off(const void *a, const void *b) {
  const af_gguf_tensor *x = *(af_gguf_tensor *const *)a, *y = *(af_gguf_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int read_tensor_info(cursor *c, af_gguf_tensor *t) {
  af_gguf_str name;
  uint32_t nd, type;
  int rc;
  c->what = "tensor info";
  if ((rc = rd_str(c, &name))) return rc;
  t->name = name.s;
  c->what = t->name;
  if ((rc = rd_u32(c, &nd))) return rc;
  if (nd < 1 || nd > AF_GGUF_MAX_DIMS)
    return af_err(AF_ERR_FORMAT, "%s: tensor %s: %u dimensions (1..4 allowed)", c->g->path, t->name, nd);
  t->n_dims = nd;
  t->n_elements = 1;
  for (int i = 0; i < AF_GGUF_MAX_DIMS; i++) t->ne[i] = 1;
  for (uint32_t i = 0; i < nd; i++) {
    if ((rc = rd_u64(c, &t->ne[i]))) return rc;
    if (t->ne[i] == 0 || t->ne[i] > (UINT64_MAX >> 1) / t->n_elements)
      return af_err(AF_ERR_FORMAT, "%s: tensor %s: bad dimension %u = %llu", c->g->path, t->name, i,
                    (unsigned long long)t->ne[i]);
    t->n_elements *= t->ne[i];
  }
  if ((rc = rd_u32(c, &type)) || (rc = rd_u64(c, &t->offset))) return rc;
  t->type = (int)type;
  if (!type_find(t->type))
    return af_err(AF_ERR_UNSUPPORTED, "%s: tensor %s: unknown tensor type %u", c->g->path, t->name, type);
  if (t->ne[0] % af_ggml_blck_size(t->type))
    return af_err(AF_ERR_FORMAT, "%s: tensor %s: row of %llu is not a multiple of the %s block", c->g->path,
                  t->name, (unsigned long long)t->ne[0], af_ggml_type_name(t->type));
  t->nbytes = af_ggml_nbytes(t->type, t->ne[0], t->n_elements);
  if (!t->nbytes) return af_err(AF_ERR_FORMAT, "%s: tensor %s: size overflows", c->g->path, t->name);
  return 0;
}

static int parse(af_gguf *g) {
  cursor c = {g, 0, "header"};
  uint32_t magic;
  uint64_t n_tensors, n_kv;
  int rc;
  if ((rc = rd_u32(&c, &magic))) return rc;
  if (magic != 0x46554747u) /* "GGUF" little-endian */
    return af_err(AF_ERR_FORMAT, "%s: not a GGUF file (bad magic)", g->path);
  if ((rc = rd_u32(&c, &g->version))) return rc;
  if (g->version != 2 && g->version != 3)
    return af_err(AF_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3)", g->path, g->version);
  if ((rc = rd_u64(&c, &n_tensors)) || (rc = rd_u64(&c, &n_kv))) return rc;
  /* each kv needs >= 8+4 bytes and each tensor info >= 8+4+8+4+8: bound before allocating */
  if (n_kv > g->size / 12 || n_tensors > g->size / 32)
    return af_err(AF_ERR_FORMAT, "%s: header claims %llu tensors and %llu keys, more than the file can hold",
                  g->path, (unsigned long long)n_tensors, (unsigned long long)n_kv);
  g->kv = g_alloc(g, (size_t)n_kv * sizeof *g->kv);
  g->tensors = g_alloc(g, (size_t)n_tensors * sizeof *g->tensors);
  if (!g->kv || !g->tensors) return af_err(AF_ERR_NOMEM, "%s: out of memory", g->path);
  g->alignment = AF_GGUF_DEFAULT_ALIGNMENT;
  for (uint64_t i = 0; i < n_kv; i++) {
    af_gguf_str key;
    uint32_t t;
    c.what = "metadata key";
    if ((rc = rd_str(&c, &key))) return rc;
    g->kv[i].key = key.s;
    c.what = key.s;
    for (uint64_t j = 0; j < i; j++)
      if (strcmp(g->kv[j].key, key.s) == 0)
        return af_err(AF_ERR_FORMAT, "%s: duplicate metadata key %s", g->path, key.s);
    if ((rc = rd_u32(&c, &t))) return rc;
    if (t >= AF_GGUF_VTYPE_COUNT)
      return af_err(AF_ERR_FORMAT, "%s: key %s: unknown value type %u", g->path, key.s, t);
    if ((rc = rd_value(&c, (af_gguf_vtype)t, &g->kv[i].value, 0))) return rc;
    g->n_kv = i + 1;
    if (strcmp(key.s, "general.alignment") == 0) {
      const af_gguf_value *v = &g->kv[i].value;
      if (v->type != AF_GGUF_UINT32 || v->v.u == 0 || (v->v.u & (v->v.u - 1)))
        return af_err(AF_ERR_FORMAT, "%s: general.alignment must be a u32 power of two", g->path);
      g->alignment = v->v.u;
    }
  }
  for (uint64_t i = 0; i < n_tensors; i++) {
    if ((rc = read_tensor_info(&c, &g->tensors[i]))) return rc;
    for (uint64_t j = 0; j < i; j++)
      if (strcmp(g->tensors[j].name, g->tensors[i].name) == 0)
        return af_err(AF_ERR_FORMAT, "%s: duplicate tensor %s", g->path, g->tensors[i].name);
    g->n_tensors = i + 1;
  }
  uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
  g->data_off = c.pos + pad;
  if (n_tensors && g->data_off > g->size)
    return af_err(AF_ERR_FORMAT, "%s: truncated GGUF file: data section starts past the end", g->path);
  uint64_t data_size = g->size > g->data_off ? g->size - g->data_off : 0;
  af_gguf_tensor **order = g_alloc(g, (size_t)n_tensors * sizeof *order);
  if (!order) return af_err(AF_ERR_NOMEM, "%s: out of memory", g->path);
  for (uint64_t i = 0; i < n_tensors; i++) {
    af_gguf_tensor *t = &g->tensors[i];
    if (t->offset % g->alignment)
      return af_err(AF_ERR_FORMAT, "%s: tensor %s: offset %llu is not aligned to %llu", g->path, t->name,
                    (unsigned long long)t->offset, (unsigned long long)g->alignment);
    if (t->offset > data_size || t->nbytes > data_size - t->offset)
      return af_err(
          AF_ERR_FORMAT,
          "%s: tensor %s: data [%llu, +%llu bytes) runs past the end of the file (data section %llu bytes)",
          g->path, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
          (unsigned long long)data_size);
    t->data = g->base + g->data_off + t->offset;
    order[i] = t;
  }
  qsort(order, (size_t)n_tensors, sizeof *order, cmp_off);
  for (uint64_t i = 1; i < n_tensors; i++)
    if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
      return af_err(AF_ERR_FORMAT, "%s: tensor %s (%llu bytes at %llu) overlaps tensor %s at %llu", g->path,
                    order[i - 1]->name, (unsigned long long)order[i - 1]->nbytes,
                    (unsigned long long)order[i - 1]->offset, order[i]->name,
                    (unsigned long long)order[i]->offset);
  return 0;
}

static void gguf_free(af_gguf *g) {
  if (!g) return;
  for (size_t i = 0; i < g->n_allocs; i++) free(g->allocs[i]);
  free(g->allocs);
  if (g->mapped && g->base) munmap((void *)g->base, (size_t)g->size);
  free(g->path);
  free(g);
}

static int open_common(af_gguf *g, af_gguf **out) {
  int rc = parse(g);
  if (rc) {
    gguf_free(g);
    return rc;
  }
  *out = g;
  return 0;
}

int af_gguf_open_buffer(const void *buf, size_t size, const char *name, af_gguf **out) {
  *out = NULL;
  af_gguf *g = calloc(1, sizeof *g);
  if (!g || !(g->path = strdup(name ? name : "(buffer)"))) {
    free(g);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  g->base = buf;
  g->size = size;
  return open_common(g, out);
}

int af_gguf_open(const char *path, af_gguf **out) {
  *out = NULL;
  af_gguf *g = calloc(1, sizeof *g);
  if (!g || !(g->path = strdup(path))) {
    free(g);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    gguf_free(g);
    return af_err(AF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    gguf_free(g);
    return af_err(AF_ERR_IO, "%s: not a regular file", path);
  }
  g->size = (uint64_t)st.st_size;
  if (g->size > 0) {
    void *m = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      gguf_free(g);
      return af_err(AF_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    }
    g->base = m;
    g->mapped = true;
  }
  close(fd);
  return open_common(g, out);
}

void af_gguf_close(af_gguf *g) {
  gguf_free(g);
}

void af_gguf_release(const af_gguf *g, const void *p, size_t n) {
  if (!g || !g->mapped || !g->base || !p) return;
  uintptr_t b = (uintptr_t)g->base, a = (uintptr_t)p, ps = (uintptr_t)sysconf(_SC_PAGESIZE);
  if (a < b || n > g->size || a - b > g->size - n) return; /* not in this file */
  uintptr_t lo = (a + ps - 1) & ~(ps - 1), hi = (a + n) & ~(ps - 1);
  /* a read-only private file mapping never has private copies, so dropping
   * its pages loses nothing; the advice is only advice: ignore a failure */
  if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void af_gguf_release_all(const af_gguf *g) {
  if (g) af_gguf_release(g, g->base, (size_t)g->size);
}

const char *af_gguf_path(const af_gguf *g) {
  return g->path;
}
uint32_t af_gguf_version(const af_gguf *g) {
  return g->version;
}
uint64_t af_gguf_alignment(const af_gguf *g) {
  return g->alignment;
}
uint64_t af_gguf_file_size(const af_gguf *g) {
  return g->size;
}
uint64_t af_gguf_data_offset(const af_gguf *g) {
  return g->data_off;
}
uint64_t af_gguf_n_kv(const af_gguf *g) {
  return g->n_kv;
}
uint64_t af_gguf_n_tensors(const af_gguf *g) {
  return g->n_tensors;
}

const af_gguf_kv *af_gguf_kv_at(const af_gguf *g, uint64_t i) {
  return i < g->n_kv ? &g->kv[i] : NULL;
}

const af_gguf_tensor *af_gguf_tensor_at(const af_gguf *g, uint64_t i) {
  return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const af_gguf_value *af_gguf_find(const af_gguf *g, const char *key) {
  for (uint64_t i = 0; i < g->n_kv; i++)
    if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i].value;
  return NULL;
}

const af_gguf_tensor *af_gguf_find_tensor(const af_gguf *g, const char *name) {
  for (uint64_t i = 0; i < g->n_tensors; i++)
    if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
  return NULL;
}

int af_gguf_expect_tensor(const af_gguf *g, const char *name, uint32_t n_dims, const uint64_t *ne,
                          const af_gguf_tensor **out) {
  const af_gguf_tensor *t = af_gguf_find_tensor(g, name);
  if (out) *out = t;
  if (!t) return af_err(AF_ERR_NOT_FOUND, "%s: tensor %s is missing", g->path, name);
  bool ok = n_dims == 0 || t->n_dims == n_dims;
  for (uint32_t i = 0; ok && i < n_dims; i++) ok = !ne || ne[i] == 0 || ne[i] == t->ne[i];
  if (!ok) {
    char want[96] = "", have[96] = "";
    for (uint32_t i = 0; i < n_dims; i++)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%llu", i ? "," : "",
               (unsigned long long)(ne ? ne[i] : 0));
    for (uint32_t i = 0; i < t->n_dims; i++)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%llu", i ? "," : "",
               (unsigned long long)t->ne[i]);
    return af_err(AF_ERR_MISMATCH, "%s: tensor %s has shape [%s], expected [%s] (ggml order)", g->path, name,
                  have, want);
  }
  return 0;
}
