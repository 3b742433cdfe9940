/* Typed access to GGUF metadata values (see gguf.h): width conversion with
 * range checks, and array element decoding from the little-endian map. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/gguf.h"

static bool is_uint(af_gguf_vtype t) {
  return t == AF_GGUF_UINT8 || t == AF_GGUF_UINT16 || t == AF_GGUF_UINT32 || t == AF_GGUF_UINT64;
}

static bool is_int(af_gguf_vtype t) {
  return t == AF_GGUF_INT8 || t == AF_GGUF_INT16 || t == AF_GGUF_INT32 || t == AF_GGUF_INT64;
}

static int wrong(const af_gguf *g, const char *key, const char *want) {
  return af_err(AF_ERR_FORMAT, "%s: metadata %s is not %s", af_gguf_path(g), key, want);
}

/* Integer value as a signed 128-ish pair: fits reports whether it is an
 * integer at all; *neg/ *mag give sign and magnitude. */
static bool int_of(const af_gguf_value *v, bool *neg, uint64_t *mag) {
  if (is_uint(v->type)) {
    *neg = false;
    *mag = v->v.u;
    return true;
  }
  if (is_int(v->type)) {
    *neg = v->v.i < 0;
    *mag = *neg ? (uint64_t)(-(v->v.i + 1)) + 1 : (uint64_t)v->v.i;
    return true;
  }
  return false;
}

int af_gguf_get_u64(const af_gguf *g, const char *key, uint64_t *out) {
  const af_gguf_value *v = af_gguf_find(g, key);
  bool neg;
  uint64_t mag;
  if (!v) return AF_ERR_NOT_FOUND;
  if (!int_of(v, &neg, &mag) || neg) return wrong(g, key, "a non-negative integer");
  *out = mag;
  return 0;
}

int af_gguf_get_u32(const af_gguf *g, const char *key, uint32_t *out) {
  uint64_t u;
  int rc = af_gguf_get_u64(g, key, &u);
  if (rc) return rc;
  if (u > UINT32_MAX) return wrong(g, key, "a 32-bit unsigned integer");
  *out = (uint32_t)u;
  return 0;
}

int af_gguf_get_i32(const af_gguf *g, const char *key, int32_t *out) {
  const af_gguf_value *v = af_gguf_find(g, key);
  bool neg;
  uint64_t mag;
  if (!v) return AF_ERR_NOT_FOUND;
  if (!int_of(v, &neg, &mag) || mag > (neg ? 2147483648ull : 2147483647ull))
    return wrong(g, key, "a 32-bit integer");
  *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
  return 0;
}

int af_gguf_get_f32(const af_gguf *g, const char *key, float *out) {
  const af_gguf_value *v = af_gguf_find(g, key);
  if (!v) return AF_ERR_NOT_FOUND;
  if (v->type == AF_GGUF_FLOAT32 || v->type == AF_GGUF_FLOAT64)
    *out = (float)v->v.f;
  else if (is_uint(v->type))
    *out = (float)v->v.u;
  else if (is_int(v->type))
    *out = (float)v->v.i;
  else
    return wrong(g, key, "a number");
  return 0;
}

int af_gguf_get_bool(const af_gguf *g, const char *key, bool *out) {
  const af_gguf_value *v = af_gguf_find(g, key);
  if (!v) return AF_ERR_NOT_FOUND;
  if (v->type != AF_GGUF_BOOL) return wrong(g, key, "a bool");
  *out = v->v.b;
  return 0;
}

int af_gguf_get_str(const af_gguf *g, const char *key, const char **out) {
  const af_gguf_value *v = af_gguf_find(g, key);
  if (!v) return AF_ERR_NOT_FOUND;
  if (v->type != AF_GGUF_STRING) return wrong(g, key, "a string");
  *out = v->v.str.s;
  return 0;
}

int af_gguf_get_arr_n(const af_gguf *g, const char *key, af_gguf_vtype *elem, uint64_t *n) {
  const af_gguf_value *v = af_gguf_find(g, key);
  if (!v) return AF_ERR_NOT_FOUND;
  if (v->type != AF_GGUF_ARRAY) return wrong(g, key, "an array");
  if (elem) *elem = v->v.arr.type;
  if (n) *n = v->v.arr.n;
  return 0;
}

double af_gguf_arr_num(const af_gguf_value *v, uint64_t i) {
  if (v->type != AF_GGUF_ARRAY || !v->v.arr.raw || i >= v->v.arr.n) return 0.0;
  size_t es = af_gguf_vtype_size(v->v.arr.type);
  if (!es) return 0.0;
  af_gguf_value e;
  af_gguf_decode_scalar(v->v.arr.type, v->v.arr.raw + i * es, &e);
  switch (e.type) {
    case AF_GGUF_UINT8:
    case AF_GGUF_UINT16:
    case AF_GGUF_UINT32:
    case AF_GGUF_UINT64:
      return (double)e.v.u;
    case AF_GGUF_INT8:
    case AF_GGUF_INT16:
    case AF_GGUF_INT32:
    case AF_GGUF_INT64:
      return (double)e.v.i;
    case AF_GGUF_BOOL:
      return e.v.b ? 1.0 : 0.0;
    case AF_GGUF_FLOAT32:
    case AF_GGUF_FLOAT64:
      return e.v.f;
    default:
      return 0.0;
  }
}

static int numeric_arr(const af_gguf *g, const char *key, const af_gguf_value **out) {
  const af_gguf_value *v = af_gguf_find(g, key);
  if (!v) return AF_ERR_NOT_FOUND;
  if (v->type != AF_GGUF_ARRAY || !v->v.arr.raw) return wrong(g, key, "a numeric array");
  *out = v;
  return 0;
}

int af_gguf_get_arr_f32(const af_gguf *g, const char *key, float *dst, uint64_t *n) {
  const af_gguf_value *v = NULL;
  int rc = numeric_arr(g, key, &v);
  if (rc) return rc;
  if (dst)
    for (uint64_t i = 0; i < v->v.arr.n && i < *n; i++) dst[i] = (float)af_gguf_arr_num(v, i);
  *n = v->v.arr.n;
  return 0;
}

int af_gguf_get_arr_i32(const af_gguf *g, const char *key, int32_t *dst, uint64_t *n) {
  const af_gguf_value *v = NULL;
  int rc = numeric_arr(g, key, &v);
  if (rc) return rc;
  if (v->v.arr.type == AF_GGUF_FLOAT32 || v->v.arr.type == AF_GGUF_FLOAT64)
    return wrong(g, key, "an integer array");
  if (dst) {
    for (uint64_t i = 0; i < v->v.arr.n && i < *n; i++) {
      double d = af_gguf_arr_num(v, i);
      if (d < -2147483648.0 || d > 2147483647.0) return wrong(g, key, "an array of 32-bit integers");
      dst[i] = (int32_t)d;
    }
  }
  *n = v->v.arr.n;
  return 0;
}

int af_gguf_get_arr_str(const af_gguf *g, const char *key, const af_gguf_str **strs, uint64_t *n) {
  const af_gguf_value *v = af_gguf_find(g, key);
  if (!v) return AF_ERR_NOT_FOUND;
  if (v->type != AF_GGUF_ARRAY || v->v.arr.type != AF_GGUF_STRING) return wrong(g, key, "a string array");
  *strs = v->v.arr.strs;
  *n = v->v.arr.n;
  return 0;
}

int af_model_demo_note(const char *path, char *out, size_t n) {
  af_gguf *g = NULL;
  const char *v = NULL;
  int has = path && af_gguf_open(path, &g) == 0 && af_gguf_get_str(g, "artflow.demo", &v) == 0 && v;
  if (has) snprintf(out, n, "%s", v);
  af_gguf_close(g);
  af_error_clear();
  return has;
}

void af_model_warn_demo(const char *path, FILE *f) {
  char note[512];
  if (af_model_demo_note(path, note, sizeof note))
    fprintf(f, "artflow: warning: %s holds DEMO weights (%s): the text it writes is not meaningful\n", path,
            note);
}
