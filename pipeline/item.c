/* Items: the records that flow through a pipeline (include/artflow/stage.h).
 * Plain growable arrays; every string and tensor buffer is owned by the item. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"

size_t af_dtype_size(af_dtype dtype) {
  switch (dtype) {
    case AF_DTYPE_F32:
      return 4;
    case AF_DTYPE_U8:
      return 1;
    case AF_DTYPE_I32:
      return 4;
  }
  return 0;
}

const char *af_dtype_name(af_dtype dtype) {
  switch (dtype) {
    case AF_DTYPE_F32:
      return "f32";
    case AF_DTYPE_U8:
      return "u8";
    case AF_DTYPE_I32:
      return "i32";
  }
  return "?";
}

af_item *af_item_new(const char *id, const char *path) {
  af_item *it = calloc(1, sizeof *it);
  if (!it) return NULL;
  it->id = strdup(id ? id : "");
  it->path = path ? strdup(path) : NULL;
  if (!it->id || (path && !it->path)) {
    af_item_free(it);
    return NULL;
  }
  return it;
}

static void kv_free(af_kv *kv, int n) {
  for (int i = 0; i < n; i++) {
    free(kv[i].key);
    free(kv[i].value);
  }
  free(kv);
}

void af_item_free(af_item *it) {
  if (!it) return;
  free(it->id);
  free(it->path);
  free(it->error);
  free(it->error_stage);
  kv_free(it->meta, it->n_meta);
  kv_free(it->texts, it->n_texts);
  for (int i = 0; i < it->n_tensors; i++) {
    free(it->tensors[i].name);
    free(it->tensors[i].data);
  }
  free(it->tensors);
  for (int i = 0; i < it->n_timings; i++) free(it->timings[i].stage);
  free(it->timings);
  free(it);
}

/* Makes room for one more element in a growable array.  0 or AF_ERR_NOMEM. */
static int grow(void **arr, int n, int *cap, size_t elem) {
  if (n < *cap) return 0;
  int nc = *cap ? *cap * 2 : 4;
  void *p = realloc(*arr, (size_t)nc * elem);
  if (!p) return af_err(AF_ERR_NOMEM, "item: out of memory");
  *arr = p;
  *cap = nc;
  return 0;
}

static int kv_set(af_kv **arr, int *n, int *cap, const char *key, const char *value) {
  if (!key || !value) return af_err(AF_ERR_INVALID, "item: NULL key or value");
  char *v = strdup(value);
  if (!v) return af_err(AF_ERR_NOMEM, "item: out of memory");
  for (int i = 0; i < *n; i++)
    if (strcmp((*arr)[i].key, key) == 0) {
      free((*arr)[i].value);
      (*arr)[i].value = v;
      return 0;
    }
  char *k = strdup(key);
  int rc = k ? grow((void **)arr, *n, cap, sizeof **arr) : af_err(AF_ERR_NOMEM, "item: out of memory");
  if (rc) {
    free(k);
    free(v);
    return rc;
  }
  (*arr)[*n].key = k;
  (*arr)[*n].value = v;
  (*n)++;
  return 0;
}

static const char *kv_get(const af_kv *arr, int n, const char *key) {
  for (int i = 0; i < n; i++)
    if (strcmp(arr[i].key, key) == 0) return arr[i].value;
  return NULL;
}

int af_item_set_meta(af_item *it, const char *key, const char *value) {
  return kv_set(&it->meta, &it->n_meta, &it->cap_meta, key, value);
}

int af_item_set_text(af_item *it, const char *name, const char *text) {
  return kv_set(&it->texts, &it->n_texts, &it->cap_texts, name, text);
}

const char *af_item_meta(const af_item *it, const char *key) {
  return it && key ? kv_get(it->meta, it->n_meta, key) : NULL;
}

const char *af_item_text(const af_item *it, const char *name) {
  return it && name ? kv_get(it->texts, it->n_texts, name) : NULL;
}

/* Validates dtype and shape; sets *bytes.  0 or AF_ERR_INVALID. */
static int tensor_bytes(const char *name, af_dtype dtype, int ndim, const int64_t *shape, size_t *bytes) {
  size_t es = af_dtype_size(dtype);
  if (!name || !*name) return af_err(AF_ERR_INVALID, "item tensor: empty name");
  if (!es) return af_err(AF_ERR_INVALID, "item tensor '%s': invalid dtype %d", name, (int)dtype);
  if (ndim < 0 || ndim > AF_MAX_DIMS || (ndim > 0 && !shape))
    return af_err(AF_ERR_INVALID, "item tensor '%s': rank %d (0..%d)", name, ndim, AF_MAX_DIMS);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || (shape[i] > 0 && n > SIZE_MAX / 8 / (size_t)shape[i]))
      return af_err(AF_ERR_INVALID, "item tensor '%s': bad dimension %lld", name, (long long)shape[i]);
    n *= (size_t)shape[i];
  }
  *bytes = n * es;
  return 0;
}

int af_item_put_tensor(af_item *it, const char *name, af_dtype dtype, int ndim, const int64_t *shape,
                       void *data) {
  size_t bytes = 0;
  int rc = tensor_bytes(name, dtype, ndim, shape, &bytes);
  if (rc) goto fail;
  af_tensor *t = NULL;
  for (int i = 0; i < it->n_tensors; i++)
    if (strcmp(it->tensors[i].name, name) == 0) t = &it->tensors[i];
  if (t) {
    free(t->data);
  } else {
    char *nm = strdup(name);
    if (!nm || (rc = grow((void **)&it->tensors, it->n_tensors, &it->cap_tensors, sizeof *it->tensors))) {
      free(nm);
      rc = rc ? rc : af_err(AF_ERR_NOMEM, "item: out of memory");
      goto fail;
    }
    t = &it->tensors[it->n_tensors++];
    t->name = nm;
  }
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < AF_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
  t->data = data;
  t->bytes = bytes;
  return 0;
fail:
  free(data);
  return rc;
}

int af_item_add_tensor(af_item *it, const char *name, af_dtype dtype, int ndim, const int64_t *shape,
                       void **data) {
  size_t bytes = 0;
  int rc = tensor_bytes(name, dtype, ndim, shape, &bytes);
  if (rc) return rc;
  /* calloc(0) may return NULL; keep a real pointer for empty tensors */
  void *p = calloc(bytes ? bytes : 1, 1);
  if (!p) return af_err(AF_ERR_NOMEM, "item tensor '%s': out of memory (%zu bytes)", name, bytes);
  if ((rc = af_item_put_tensor(it, name, dtype, ndim, shape, p))) return rc;
  if (data) *data = p;
  return 0;
}

const af_tensor *af_item_tensor(const af_item *it, const char *name) {
  if (!it || !name) return NULL;
  for (int i = 0; i < it->n_tensors; i++)
    if (strcmp(it->tensors[i].name, name) == 0) return &it->tensors[i];
  return NULL;
}

int af_item_drop_tensor(af_item *it, const char *name) {
  for (int i = 0; i < it->n_tensors; i++)
    if (strcmp(it->tensors[i].name, name) == 0) {
      free(it->tensors[i].name);
      free(it->tensors[i].data);
      memmove(&it->tensors[i], &it->tensors[i + 1], (size_t)(it->n_tensors - i - 1) * sizeof *it->tensors);
      it->n_tensors--;
      return 0;
    }
  return af_err(AF_ERR_NOT_FOUND, "item %s: no tensor '%s'", it->id, name);
}

int af_item_fail(af_item *it, const char *stage, const char *fmt, ...) {
  if (!it || it->status == AF_ITEM_ERROR) return AF_FLOW_OK;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt ? fmt : "failed", ap);
  va_end(ap);
  /* records are one line each: a multi-line reason would break CSV/log output */
  for (char *c = msg; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  it->status = AF_ITEM_ERROR;
  free(it->error);
  free(it->error_stage);
  /* on OOM the status still says error; the message is just lost */
  it->error = strdup(msg);
  it->error_stage = strdup(stage ? stage : "");
  return AF_FLOW_OK;
}

int af_item_add_timing(af_item *it, const char *stage, double seconds) {
  char *s = strdup(stage ? stage : "");
  int rc = s ? grow((void **)&it->timings, it->n_timings, &it->cap_timings, sizeof *it->timings)
             : af_err(AF_ERR_NOMEM, "item: out of memory");
  if (rc) {
    free(s);
    return rc;
  }
  it->timings[it->n_timings].stage = s;
  it->timings[it->n_timings].seconds = seconds;
  it->n_timings++;
  return 0;
}
