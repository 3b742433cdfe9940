/* BLIP-2 Q-Former query path and llama_proj on OpenCL (see vision.h).
 * Post-LN BERT layers: x = LN(dense(attn) + x); cross-attention to the image
 * tokens in layers 0, every, 2*every, ...; LayerNorm eps 1e-12 in fp32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "net/nn.h"
#include "net/vision.h"

#define F32 AF_GGML_F32

typedef struct {
  const af_dtensor *w, *b;
} lin;

typedef struct {
  lin sa_q, sa_k, sa_v, sa_out, sa_ln;
  int cross;
  lin ca_q, ca_k, ca_v, ca_out, ca_ln;
  lin ff_up, ff_down, ff_ln;
} qf_layer;

struct af_qformer {
  af_qformer_shape s;
  int max_batch;
  const af_dtensor *query, *emb_w, *emb_b;
  lin proj;
  qf_layer *lay;
  af_dbuf img;        /* (B*T, Dv) */
  af_dbuf x;          /* (B*Q, D) */
  af_dbuf qb, kb, vb; /* (B*max(Q,T), D) */
  af_dbuf ctx, tmp;   /* (B*Q, D) */
  af_dbuf ff;         /* (B*Q, F) */
  af_dbuf out;        /* (B*Q, Dl) */
};

static int get_u32(const af_gguf *g, const char *key, int *out) {
  uint32_t v;
  int rc = af_gguf_get_u32(g, key, &v);
  if (rc == AF_ERR_NOT_FOUND)
    return af_err(AF_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", af_gguf_path(g), key);
  if (!rc && (v == 0 || v > (1u << 24)))
    return af_err(AF_ERR_FORMAT, "%s: metadata %s = %u is out of range", af_gguf_path(g), key, v);
  *out = (int)v;
  return rc;
}

/* "<base>.weight" [out, in] and "<base>.bias" [out] (bias optional when no_bias) */
static int get_lin(const af_cl *cl, af_weights *w, lin *l, const char *base, uint64_t in, uint64_t out,
                   int is_norm) {
  char name[160];
  uint64_t ne[2] = {is_norm ? out : in, out};
  snprintf(name, sizeof name, "%s.weight", base);
  int rc =
      af_weights_expect(w, name, is_norm ? F32 : nn_matrix_type(cl, w, name), is_norm ? 1 : 2, ne, &l->w);
  if (rc) return rc;
  snprintf(name, sizeof name, "%s.bias", base);
  ne[0] = out;
  return af_weights_expect(w, name, F32, 1, ne, &l->b);
}

/* The Q-Former's hyper-parameters (and the widths on both sides), checked. */
static int read_shape(const af_gguf *g, af_qformer_shape *s) {
  int rc = 0;
  if ((rc = af_gguf_check_model(g)) || /* a NaN epsilon, zero layers, ... named by key */
      (rc = get_u32(g, "qformer.embedding_length", &s->width)) ||
      (rc = get_u32(g, "qformer.block_count", &s->layers)) ||
      (rc = get_u32(g, "qformer.head_count", &s->heads)) ||
      (rc = get_u32(g, "qformer.feed_forward_length", &s->ffn)) ||
      (rc = get_u32(g, "qformer.query_count", &s->queries)) ||
      (rc = get_u32(g, "qformer.cross_attention_every", &s->cross_every)) ||
      (rc = get_u32(g, "vision.embedding_length", &s->vision_width)) ||
      (rc = get_u32(g, "llama.embedding_length", &s->proj_out)))
    goto out;
  if ((rc = af_gguf_get_f32(g, "qformer.attention.layer_norm_epsilon", &s->ln_eps))) {
    if (rc == AF_ERR_NOT_FOUND)
      rc = af_err(rc, "%s: metadata key 'qformer.attention.layer_norm_epsilon' is missing", af_gguf_path(g));
    goto out;
  }
  if (s->width % s->heads || s->width / s->heads > 128) {
    rc = af_err(AF_ERR_FORMAT, "%s: Q-Former width %d with %d heads is unsupported", af_gguf_path(g),
                s->width, s->heads);
    goto out;
  }
out:
  return rc;
}

int af_qformer_probe(const af_weights *w, int image_tokens, af_qformer_shape *out) {
  memset(out, 0, sizeof *out);
  out->image_tokens = image_tokens;
  return read_shape(af_weights_gguf(w), out);
}

int af_qformer_new(af_cl *cl, af_weights *w, int max_batch, int image_tokens, af_qformer **out) {
  *out = NULL;
  const af_gguf *g = af_weights_gguf(w);
  af_qformer *f = calloc(1, sizeof *f);
  if (!f) return af_err(AF_ERR_NOMEM, "out of memory");
  af_qformer_shape *s = &f->s;
  f->max_batch = max_batch > 0 ? max_batch : 1;
  s->image_tokens = image_tokens;
  int rc = 0;
  char b[96];
  if ((rc = read_shape(g, s))) goto out;
  uint64_t D = (uint64_t)s->width, F = (uint64_t)s->ffn, Dv = (uint64_t)s->vision_width;
  uint64_t qne[2] = {D, (uint64_t)s->queries};
  if ((rc = af_weights_expect(w, "q.query_tokens", F32, 2, qne, &f->query))) goto out;
  lin emb;
  if ((rc = get_lin(cl, w, &emb, "q.ln_emb", D, D, 1))) goto out;
  f->emb_w = emb.w;
  f->emb_b = emb.b;
  if ((rc = get_lin(cl, w, &f->proj, "proj", D, (uint64_t)s->proj_out, 0))) goto out;
  f->lay = calloc((size_t)s->layers, sizeof *f->lay);
  if (!f->lay) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (int l = 0; l < s->layers; l++) {
    qf_layer *L = &f->lay[l];
#define G(field, name, in, o, norm)           \
  snprintf(b, sizeof b, "q.blk.%d." name, l); \
  if ((rc = get_lin(cl, w, &L->field, b, in, o, norm))) goto out;
    G(sa_q, "sa_q", D, D, 0)
    G(sa_k, "sa_k", D, D, 0)
    G(sa_v, "sa_v", D, D, 0)
    G(sa_out, "sa_out", D, D, 0) G(sa_ln, "sa_ln", D, D, 1) L->cross = l % s->cross_every == 0;
    if (L->cross) {
      G(ca_q, "ca_q", D, D, 0)
      G(ca_k, "ca_k", Dv, D, 0)
      G(ca_v, "ca_v", Dv, D, 0) G(ca_out, "ca_out", D, D, 0) G(ca_ln, "ca_ln", D, D, 1)
    }
    G(ff_up, "ffn_up", D, F, 0) G(ff_down, "ffn_down", F, D, 0) G(ff_ln, "ffn_ln", D, D, 1)
#undef G
  }
  size_t B = (size_t)f->max_batch, Q = (size_t)s->queries, T = (size_t)image_tokens;
  size_t kvrows = B * (Q > T ? Q : T);
  if ((rc = nn_alloc(cl, B * T * Dv, &f->img)) || (rc = nn_alloc(cl, B * Q * D, &f->x)) ||
      (rc = nn_alloc(cl, kvrows * D, &f->qb)) || (rc = nn_alloc(cl, kvrows * D, &f->kb)) ||
      (rc = nn_alloc(cl, kvrows * D, &f->vb)) || (rc = nn_alloc(cl, B * Q * D, &f->ctx)) ||
      (rc = nn_alloc(cl, B * Q * D, &f->tmp)) || (rc = nn_alloc(cl, B * Q * F, &f->ff)) ||
      (rc = nn_alloc(cl, B * Q * (size_t)s->proj_out, &f->out)))
    goto out;
out:
  if (rc) {
    af_qformer_free(f);
    return rc;
  }
  *out = f;
  return 0;
}

void af_qformer_free(af_qformer *f) {
  if (!f) return;
  af_dbuf *bufs[] = {&f->img, &f->x, &f->qb, &f->kb, &f->vb, &f->ctx, &f->tmp, &f->ff, &f->out};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) nn_free(bufs[i]);
  free(f->lay);
  free(f);
}

int af_qformer_reserve(af_qformer *f, af_queue *q) {
  float unused; /* reads do nothing in reserve mode: nothing is written here */
  af_queue_reserve_begin(q);
  int rc = af_qformer_forward(f, q, NULL, f->max_batch, &unused, &unused);
  af_queue_reserve_end(q);
  return rc;
}

const af_qformer_shape *af_qformer_shape_of(const af_qformer *f) {
  return &f->s;
}

/* x = LN(out(attn(q(x) -> k(src), v(src))) + x) over n batches of nq queries and nk keys */
static int attn_block(af_qformer *f, af_queue *q, int n, af_dbuf src, int nk, int src_width, const lin *lq,
                      const lin *lk, const lin *lv, const lin *lo, const lin *ln) {
  const af_qformer_shape *s = &f->s;
  int rc, D = s->width, Q = s->queries, hd = D / s->heads;
  size_t rows = (size_t)n * Q, krows = (size_t)n * nk;
  if ((rc = nn_linear(q, f->x, 0, rows, lq->w, lq->b, f->qb, 0)) ||
      (rc = nn_linear(q, src, 0, krows, lk->w, lk->b, f->kb, 0)) ||
      (rc = nn_linear(q, src, 0, krows, lv->w, lv->b, f->vb, 0)))
    return rc;
  (void)src_width;
  af_attn_view qv = {f->qb.mem, 0, D, (long)Q * D}, kv = {f->kb.mem, 0, D, (long)nk * D};
  af_attn_view vv = {f->vb.mem, 0, D, (long)nk * D}, ov = {f->ctx.mem, 0, D, (long)Q * D};
  if ((rc = af_attention(q, qv, kv, vv, ov, Q, nk, s->heads, hd, n, 1.0f / sqrtf((float)hd), 0, 0)) ||
      (rc = nn_linear(q, f->ctx, 0, rows, lo->w, lo->b, f->tmp, 0)) ||
      (rc = nn_add(q, f->tmp, f->x, rows * D)))
    return rc;
  return nn_layernorm(q, f->tmp, rows, D, ln->w, ln->b, s->ln_eps, f->x);
}

int af_qformer_forward(af_qformer *f, af_queue *q, const float *image, int n, float *q_out, float *proj_out) {
  const af_qformer_shape *s = &f->s;
  if (n < 1 || n > f->max_batch)
    return af_err(AF_ERR_INVALID, "qformer: batch %d outside 1..%d", n, f->max_batch);
  int rc, D = s->width, Q = s->queries, F = s->ffn, T = s->image_tokens;
  size_t rows = (size_t)n * Q;
  if ((rc = af_queue_write(q, f->img.mem, 0, sizeof(float) * n * T * s->vision_width, image))) return rc;
  af_dbuf query = {f->query->mem, 0};
  for (int b = 0; b < n; b++) /* embeddings: LayerNorm of the raw query tokens, no positions */
    if ((rc = nn_layernorm(q, query, Q, D, f->emb_w, f->emb_b, s->ln_eps,
                           af_dbuf_at(f->x, (size_t)b * Q * D))))
      return rc;
  for (int l = 0; l < s->layers; l++) {
    qf_layer *L = &f->lay[l];
    if ((rc = attn_block(f, q, n, f->x, Q, D, &L->sa_q, &L->sa_k, &L->sa_v, &L->sa_out, &L->sa_ln)))
      return rc;
    if (L->cross && (rc = attn_block(f, q, n, f->img, T, s->vision_width, &L->ca_q, &L->ca_k, &L->ca_v,
                                     &L->ca_out, &L->ca_ln)))
      return rc;
    if ((rc = nn_linear(q, f->x, 0, rows, L->ff_up.w, L->ff_up.b, f->ff, 0)) ||
        (rc = nn_gelu(q, f->ff, rows * F)) ||
        (rc = nn_linear(q, f->ff, 0, rows, L->ff_down.w, L->ff_down.b, f->tmp, 0)) ||
        (rc = nn_add(q, f->tmp, f->x, rows * D)) ||
        (rc = nn_layernorm(q, f->tmp, rows, D, L->ff_ln.w, L->ff_ln.b, s->ln_eps, f->x)))
      return rc;
  }
  if (q_out && (rc = af_queue_read(q, f->x.mem, 0, sizeof(float) * rows * D, q_out))) return rc;
  if (!proj_out) return 0;
  if ((rc = nn_linear(q, f->x, 0, rows, f->proj.w, f->proj.b, f->out, 0))) return rc;
  return af_queue_read(q, f->out.mem, 0, sizeof(float) * rows * s->proj_out, proj_out);
}
