/* Device copies of GGUF tensors, uploaded on first use (see weights.h). */
#include "cl/weights.h"

#include <stdlib.h>
#include <string.h>

#include "formats/quant.h"

typedef struct entry {
  struct entry *next;
  int want_type;
  af_dtensor t;
} entry;

struct af_weights {
  af_cl *cl;
  af_gguf *g;
  af_gguf *g2; /* fallback file of a pair (af_weights_open_pair), or NULL */
  af_queue *q; /* upload queue, used under lock */
  pthread_mutex_t lock;
  entry *list;
  uint64_t bytes;
  uint64_t in_place; /* of which used in place from the file mapping */
  size_t zc_align;   /* zero-copy allowed: the base-address alignment it needs; 0 = never */
};

static int check_pair(const af_gguf *a, const af_gguf *b); /* two-file overlay, at the end */

/* Zero-copy weights: on a device that works in host memory
 * (CL_DEVICE_HOST_UNIFIED_MEMORY, e.g. PoCL's CPU device) and whose profile
 * sets AF_WEIGHTS_ZERO_COPY=1, a tensor kept in its stored type becomes a
 * CL_MEM_USE_HOST_PTR buffer over the mmap'd file, so the weights sit in RAM
 * once (as page cache) instead of twice (file pages + a device copy).  The
 * data must meet the device's base-address alignment (PoCL: 128 bytes, which
 * artflow's writers give every tensor: AF_GGUF_MODEL_ALIGNMENT); other
 * tensors (e.g. from 32-aligned llama.cpp files) are copied as before.
 * Returns that alignment in bytes, or 0 when zero-copy is off. */
static size_t zero_copy_align(af_cl *cl) {
  if (af_cl_tuning_int(cl, "AF_WEIGHTS_ZERO_COPY", 0) != 1) return 0;
  cl_bool unified = CL_FALSE;
  cl_uint bits = 0;
  if (clGetDeviceInfo(cl->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL) !=
          CL_SUCCESS ||
      !unified)
    return 0;
  if (clGetDeviceInfo(cl->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL) != CL_SUCCESS)
    return 0;
  size_t a = bits / 8 > 0 ? bits / 8 : 1;
  return a < 4096 ? a : 4096;
}

int af_weights_open(af_cl *cl, const char *path, af_weights **out) {
  return af_weights_open_pair(cl, path, NULL, out);
}

int af_weights_open_pair(af_cl *cl, const char *path, const char *fallback, af_weights **out) {
  *out = NULL;
  af_weights *w = calloc(1, sizeof *w);
  if (!w) return af_err(AF_ERR_NOMEM, "out of memory");
  w->cl = cl;
  pthread_mutex_init(&w->lock, NULL);
  int rc = af_gguf_open(path, &w->g);
  if (!rc && fallback) rc = af_gguf_open(fallback, &w->g2);
  if (!rc && fallback) rc = check_pair(w->g, w->g2);
  if (!rc) rc = af_queue_new(cl, &w->q);
  if (!rc) w->zc_align = zero_copy_align(cl);
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
  af_gguf_close(w->g2);
  af_gguf_close(w->g);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

const af_gguf *af_weights_gguf(const af_weights *w) {
  return w->g;
}
uint64_t af_weights_device_bytes(const af_weights *w) {
  return w->bytes;
}
uint64_t af_weights_in_place_bytes(const af_weights *w) {
  return w->in_place;
}

void af_weights_release_host(af_weights *w) {
  if (w) af_gguf_release_all(w->g), af_gguf_release_all(w->g2);
}

int af_weights_turn_begin(af_weights *w) {
  if (!w || !w->zc_align || af_cl_tuning_int(w->cl, "AF_WEIGHTS_ALL_RESIDENT", 0) == 1) return 0;
  af_cl *cl = w->cl;
  pthread_mutex_lock(&cl->turn_lock);
  unsigned ticket = cl->turn_next++;
  while (cl->turn_serving != ticket) pthread_cond_wait(&cl->turn_cv, &cl->turn_lock);
  pthread_mutex_unlock(&cl->turn_lock);
  return 1;
}

void af_weights_turn_end(af_weights *w, int took) {
  if (!w || !took) return;
  af_weights_release_host(w);
  af_cl *cl = w->cl;
  pthread_mutex_lock(&cl->turn_lock);
  cl->turn_serving++;
  pthread_cond_broadcast(&cl->turn_cv);
  pthread_mutex_unlock(&cl->turn_lock);
}

static int upload(af_weights *w, const af_gguf_tensor *gt, int want, entry *e) {
  int type = want < 0 ? gt->type : want;
  if (type != gt->type && type != AF_GGML_F32)
    return af_err(AF_ERR_UNSUPPORTED, "%s: tensor '%s': cannot convert %s to %s", af_gguf_path(w->g),
                  gt->name, af_ggml_type_name(gt->type), af_ggml_type_name(type));
  if (type == gt->type && type != AF_GGML_F32 && type != AF_GGML_F16 && type != AF_GGML_Q8_0 &&
      type != AF_GGML_Q4_0 && type != AF_GGML_Q4_K && type != AF_GGML_Q5_K && type != AF_GGML_Q6_K)
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
  int in_place = !tmp && w->zc_align && nbytes && (uintptr_t)src % w->zc_align == 0;
  /* the kernels only read weight buffers, so the read-only mapping is safe */
  int rc = in_place ? af_cl_alloc(w->cl, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR, nbytes,
                                  (void *)(uintptr_t)src, &m)
                    : af_cl_alloc(w->cl, CL_MEM_READ_ONLY, nbytes, NULL, &m);
  if (rc) {
    free(tmp);
    return af_err(rc, "tensor '%s' of %s", gt->name, af_gguf_path(w->g));
  }
  if (!in_place) rc = af_queue_write(w->q, m, 0, nbytes, src);
  free(tmp);
  if (rc) {
    clReleaseMemObject(m);
    return rc;
  }
  if (in_place)
    w->in_place += nbytes;
  else { /* the device has its copy: the file's pages need not stay in this process's resident set */
    af_gguf_release(w->g, gt->data, gt->nbytes);
    af_gguf_release(w->g2, gt->data, gt->nbytes);
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
  const af_gguf_tensor *gt = af_weights_find(w, name);
  if (!gt) {
    rc = w->g2 ? af_err(AF_ERR_NOT_FOUND, "%s, %s: tensor '%s' is missing in both", af_gguf_path(w->g),
                        af_gguf_path(w->g2), name)
               : af_err(AF_ERR_NOT_FOUND, "%s: tensor '%s' is missing", af_gguf_path(w->g), name);
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
  const af_gguf *g = af_weights_tensor_file(w, name);
  if (!g) return af_weights_get(w, name, want_type, out); /* names the missing tensor */
  int rc = af_gguf_expect_tensor(g, name, n_dims, ne, NULL);
  if (rc) return rc;
  return af_weights_get(w, name, want_type, out);
}

/* ---- two-file models (af_weights_open_pair): lookups search the primary
 * file, then the fallback; check_pair rejects pairs that cannot work together */

const af_gguf *af_weights_fallback(const af_weights *w) {
  return w->g2;
}

const af_gguf *af_weights_meta(const af_weights *w, const char *key) {
  if (af_gguf_find(w->g, key) || !w->g2) return w->g;
  return af_gguf_find(w->g2, key) ? w->g2 : w->g;
}

const af_gguf *af_weights_tensor_file(const af_weights *w, const char *name) {
  if (af_gguf_find_tensor(w->g, name)) return w->g;
  return w->g2 && af_gguf_find_tensor(w->g2, name) ? w->g2 : NULL;
}

const af_gguf_tensor *af_weights_find(const af_weights *w, const char *name) {
  const af_gguf_tensor *t = af_gguf_find_tensor(w->g, name);
  return t || !w->g2 ? t : af_gguf_find_tensor(w->g2, name);
}

static const af_gguf_tensor *find2(const af_gguf *a, const af_gguf *b, const char *name,
                                   const af_gguf **from) {
  const af_gguf_tensor *t = af_gguf_find_tensor(a, name);
  *from = t ? a : b;
  return t ? t : af_gguf_find_tensor(b, name);
}

static const char *rope_layout(const af_gguf *g) {
  const char *s = NULL;
  return af_gguf_get_str(g, "artflow.rope_layout", &s) == 0 ? s : "llama.cpp (interleaved)";
}

static int check_pair(const af_gguf *a, const af_gguf *b) {
  const char *pa = af_gguf_path(a), *pb = af_gguf_path(b);
  static const char *const keys[] = {"llama.embedding_length", "llama.block_count",
                                     "llama.attention.head_count", "llama.feed_forward_length"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    uint32_t va, vb;
    if (af_gguf_get_u32(a, keys[i], &va) == 0 && af_gguf_get_u32(b, keys[i], &vb) == 0 && va != vb)
      return af_err(AF_ERR_MISMATCH, "%s: %s is %u but %u in %s", pa, keys[i], va, vb, pb);
  }
  const af_gguf *fe, *fq, *fk;
  const af_gguf_tensor *embd = find2(a, b, "token_embd.weight", &fe);
  const af_gguf_tensor *proj = af_gguf_find_tensor(a, "proj.weight");
  if (embd && embd->n_dims == 2 && proj && proj->n_dims == 2 && proj->ne[1] != embd->ne[0])
    return af_err(AF_ERR_MISMATCH,
                  "%s: the projection gives width %llu but the LLM in %s has hidden size %llu", pa,
                  (unsigned long long)proj->ne[1], af_gguf_path(fe), (unsigned long long)embd->ne[0]);
  /* the tokenizer in use is the primary's when it has one */
  const af_gguf_str *ta = NULL, *tb = NULL;
  uint64_t na = 0, nb = 0;
  int has_a = af_gguf_get_arr_str(a, "tokenizer.ggml.tokens", &ta, &na) == 0;
  int has_b = af_gguf_get_arr_str(b, "tokenizer.ggml.tokens", &tb, &nb) == 0;
  if (has_a && has_b) {
    if (na != nb)
      return af_err(AF_ERR_MISMATCH, "%s: vocabulary of %llu tokens but %llu in %s (a different tokenizer)",
                    pa, (unsigned long long)na, (unsigned long long)nb, pb);
    /* padding rows are named freely ("[PAD]", llama.cpp's "[PAD420]"): compare the
     * SentencePiece pieces (types normal, unknown, control, byte) */
    int32_t *ya = malloc(na * sizeof *ya), *yb = malloc(na * sizeof *yb);
    uint64_t nya = na, nyb = na;
    int typed = ya && yb && af_gguf_get_arr_i32(a, "tokenizer.ggml.token_type", ya, &nya) == 0 &&
                af_gguf_get_arr_i32(b, "tokenizer.ggml.token_type", yb, &nyb) == 0 && nya == na && nyb == na;
    uint64_t bad = na;
    for (uint64_t i = 0; i < na && bad == na; i++) {
      int pad = typed && (ya[i] == 4 || ya[i] == 5 || yb[i] == 4 || yb[i] == 5);
      if (!pad && (ta[i].len != tb[i].len || memcmp(ta[i].s, tb[i].s, (size_t)ta[i].len))) bad = i;
    }
    free(ya), free(yb);
    if (bad < na)
      return af_err(AF_ERR_MISMATCH, "%s: token %llu differs from %s's (a different tokenizer)", pa,
                    (unsigned long long)bad, pb);
  }
  uint64_t nt = has_a ? na : nb;
  if ((has_a || has_b) && embd && embd->n_dims == 2 && embd->ne[1] != nt)
    return af_err(AF_ERR_MISMATCH, "%s: vocabulary of %llu tokens but token_embd.weight in %s has %llu rows",
                  has_a ? pa : pb, (unsigned long long)nt, af_gguf_path(fe), (unsigned long long)embd->ne[1]);
  /* q and k rows must follow one RoPE layout: the file they come from says which */
  if (find2(a, b, "blk.0.attn_q.weight", &fq) && find2(a, b, "blk.0.attn_k.weight", &fk) && fq != fk &&
      strcmp(rope_layout(fq), rope_layout(fk)))
    return af_err(AF_ERR_MISMATCH, "%s: attn_q rows in %s layout but attn_k from %s in %s layout",
                  af_gguf_path(fq), rope_layout(fq), af_gguf_path(fk), rope_layout(fk));
  return 0;
}
