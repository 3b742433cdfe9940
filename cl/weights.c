/* Device copies of GGUF tensors, uploaded on first use (see weights.h). */
#include "cl/weights.h"

#include <stdlib.h>
#include <string.h>

#include "model/quant.h"

typedef struct entry {
  struct entry *next;
  int want_type;
  af_dtensor t;
} entry;

struct af_weights {
  af_cl *cl;
  af_gguf *g;
  af_queue *q; /* upload queue, used under lock */
  pthread_mutex_t lock;
  entry *list;
  uint64_t bytes;
};

int af_weights_open(af_cl *cl, const char *path, af_weights **out) {
  *out = NULL;
  af_weights *w = calloc(1, sizeof *w);
  if (!w) return af_err(AF_ERR_NOMEM, "out of memory");
  w->cl = cl;
  pthread_mutex_init(&w->lock, NULL);
  int rc = af_gguf_open(path, &w->g);
  if (!rc) rc = af_queue_new(cl, &w->q);
  if (rc) {
    af_weights_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void af_weights_free(af_weights *w) {
  if (!w) return;
  for (entry *e = w->list, *nx; e; e = nx) {
    nx = e->next;
    if (e->t.mem) clReleaseMemObject(e->t.mem);
    free(e);
  }
  af_queue_free(w->q);
  af_gguf_close(w->g);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

const af_gguf *af_weights_gguf(const af_weights *w) { return w->g; }
uint64_t af_weights_device_bytes(const af_weights *w) { return w->bytes; }

static int upload(af_weights *w, const af_gguf_tensor *gt, int want, entry *e) {
  int type = want < 0 ? gt->type : want;
  if (type != gt->type && type != AF_GGML_F32)
    return af_err(AF_ERR_UNSUPPORTED, "%s: tensor '%s': cannot convert %s to %s", af_gguf_path(w->g), gt->name,
                  af_ggml_type_name(gt->type), af_ggml_type_name(type));
  if (type == gt->type && type != AF_GGML_F32 && type != AF_GGML_F16 && type != AF_GGML_Q8_0 &&
      type != AF_GGML_Q4_0)
    return af_err(AF_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which artflow's kernels do not read",
                  af_gguf_path(w->g), gt->name, af_ggml_type_name(gt->type));
  size_t nbytes = type == gt->type ? gt->nbytes : gt->n_elements * sizeof(float);
  float *tmp = NULL;
  const void *src = gt->data;
  if (type != gt->type) {
    tmp = malloc(nbytes);
    if (!tmp) return af_err(AF_ERR_NOMEM, "out of memory converting tensor '%s'", gt->name);
    int rc = af_convert_to_f32(gt->type, gt->data, tmp, gt->n_elements);
    if (rc) {
      free(tmp);
      return af_err(rc, "%s: tensor '%s': cannot convert %s to f32", af_gguf_path(w->g), gt->name,
                    af_ggml_type_name(gt->type));
    }
    src = tmp;
  }
  cl_mem m = NULL;
  int rc = af_cl_alloc(w->cl, CL_MEM_READ_ONLY, nbytes, NULL, &m);
  if (rc) {
    free(tmp);
    return af_err(rc, "tensor '%s' of %s", gt->name, af_gguf_path(w->g));
  }
  rc = af_queue_write(w->q, m, 0, nbytes, src);
  free(tmp);
  if (rc) {
    clReleaseMemObject(m);
    return rc;
  }
  e->want_type = want;
  e->t.name = gt->name;
  e->t.type = type;
  e->t.n_dims = gt->n_dims;
  memcpy(e->t.ne, gt->ne, sizeof e->t.ne);
  e->t.n_elements = gt->n_elements;
  e->t.nbytes = nbytes;
  e->t.mem = m;
  w->bytes += nbytes;
  return 0;
}

int af_weights_get(af_weights *w, const char *name, int want_type, const af_dtensor **out) {
  *out = NULL;
  int rc = 0;
  pthread_mutex_lock(&w->lock);
  for (entry *e = w->list; e; e = e->next)
    if (e->want_type == want_type && !strcmp(e->t.name, name)) {
      *out = &e->t;
      goto out;
    }
  const af_gguf_tensor *gt = af_gguf_find_tensor(w->g, name);
  if (!gt) {
    rc = af_err(AF_ERR_NOT_FOUND, "%s: tensor '%s' is missing", af_gguf_path(w->g), name);
    goto out;
  }
  entry *e = calloc(1, sizeof *e);
  if (!e) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  rc = upload(w, gt, want_type, e);
  if (rc) {
    free(e);
    goto out;
  }
  e->next = w->list;
  w->list = e;
  *out = &e->t;
out:
  pthread_mutex_unlock(&w->lock);
  return rc;
}

int af_weights_expect(af_weights *w, const char *name, int want_type, uint32_t n_dims, const uint64_t *ne,
                      const af_dtensor **out) {
  *out = NULL;
  int rc = af_gguf_expect_tensor(w->g, name, n_dims, ne, NULL);
  if (rc) return rc;
  return af_weights_get(w, name, want_type, out);
}
