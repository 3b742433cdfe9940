/* LLaMA + ImageAdapter forward on OpenCL (see lm.h).  One layer:
 *   h = RMSNorm(x); q,k,v = h·Wᵀ; RoPE(q,k) at absolute positions; k,v -> cache
 *   x += o_proj(attention(q, cache))               causal, scores / sqrt(d)
 *   x += up(GELU(down(x)))                          ImageAdapter, every position
 *   x += down(SiLU(gate(RMSNorm(x))) * up(RMSNorm(x)))
 * then the final RMSNorm and lm_head on the last position.  Buffer shapes are
 * given as (rows, columns). */
#include "stages/lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/devprofile.h"
#include "model/gguf.h"
#include "model/quant.h"
#include "stages/nn.h"

#define F32 AF_GGML_F32

typedef struct {
  const af_dtensor *attn_norm, *wq, *wk, *wv, *wo, *ad_dw, *ad_db, *ad_uw, *ad_ub, *ffn_norm, *gate, *up, *down;
  cl_mem k_cache, v_cache; /* (ctx, hidden) each */
} lm_layer;

struct af_lm {
  af_cl *cl;
  af_weights *w;
  af_lm_shape s;
  lm_layer *lay;
  const af_dtensor *out_norm, *lm_head;
  const af_gguf_tensor *embd; /* host copy in the mmap */
  af_dbuf wscratch;           /* fp32 copy of one fp16 matrix, for prefill GEMMs */
  int cap;                    /* positions the work buffers hold */
  af_dbuf x, h, q, ctx, tmp, ad, g, u, logits; /* (cap, H) / (cap, A) / (cap, F) / (1, V) */
};

static int u32(const af_gguf *g, const char *key, int *out, int def) {
  uint32_t v;
  int rc = af_gguf_get_u32(g, key, &v);
  if (rc == AF_ERR_NOT_FOUND && def >= 0) return *out = def, 0;
  if (rc == AF_ERR_NOT_FOUND) return af_err(rc, "%s: metadata key '%s' is missing", af_gguf_path(g), key);
  if (!rc) *out = (int)v;
  return rc;
}

/* weight with expected dims; fp16 matrices stay fp16 on the device when
 * keep_f16 (the profile's `weights: fp16_storage`) */
static int wt_t(af_weights *w, int keep_f16, const af_dtensor **out, int l, const char *name, uint64_t ne0,
                uint64_t ne1) {
  char full[96];
  if (l >= 0)
    snprintf(full, sizeof full, "blk.%d.%s", l, name);
  else
    snprintf(full, sizeof full, "%s", name);
  uint64_t ne[2] = {ne0, ne1};
  const af_gguf_tensor *t = af_gguf_find_tensor(af_weights_gguf(w), full);
  /* Q8_0/Q4_0 matrices stay quantised (dequantised in the GEMV kernel) */
  int quant = ne1 && t && (t->type == AF_GGML_Q8_0 || t->type == AF_GGML_Q4_0);
  int type = quant || (keep_f16 && ne1 && t && t->type == AF_GGML_F16) ? -1 : F32;
  return af_weights_expect(w, full, type, ne1 ? 2 : 1, ne, out);
}

static void free_bufs(af_lm *m) {
  af_dbuf *b[] = {&m->x, &m->h, &m->q, &m->ctx, &m->tmp, &m->ad, &m->g, &m->u, &m->logits};
  for (size_t i = 0; i < sizeof b / sizeof *b; i++) nn_free(b[i]);
  m->cap = 0;
}

static int grow(af_lm *m, int n) {
  if (n <= m->cap) return 0;
  free_bufs(m);
  size_t N = (size_t)n, H = (size_t)m->s.hidden, A = (size_t)(m->s.adapter > 0 ? m->s.adapter : 1);
  size_t F = (size_t)m->s.ffn;
  int rc;
  if ((rc = nn_alloc(m->cl, N * H, &m->x)) || (rc = nn_alloc(m->cl, N * H, &m->h)) ||
      (rc = nn_alloc(m->cl, N * H, &m->q)) || (rc = nn_alloc(m->cl, N * H, &m->ctx)) ||
      (rc = nn_alloc(m->cl, N * H, &m->tmp)) || (rc = nn_alloc(m->cl, N * A, &m->ad)) ||
      (rc = nn_alloc(m->cl, N * F, &m->g)) || (rc = nn_alloc(m->cl, N * F, &m->u)) ||
      (rc = nn_alloc(m->cl, (size_t)m->s.vocab, &m->logits)))
    return rc;
  m->cap = n;
  return 0;
}

int af_lm_new(af_cl *cl, af_weights *w, int max_ctx, af_lm **out) {
  *out = NULL;
  const af_gguf *g = af_weights_gguf(w);
  af_lm *m = calloc(1, sizeof *m);
  if (!m) return af_err(AF_ERR_NOMEM, "out of memory");
  m->cl = cl;
  m->w = w;
  af_lm_shape *s = &m->s;
  int rc = 0, ctx_len = 0;
  int keep_f16 = cl->profile && cl->profile->fp16_storage;
#define wt(w, out, l, name, ne0, ne1) wt_t(w, keep_f16, out, l, name, ne0, ne1)
  if ((rc = u32(g, "llama.embedding_length", &s->hidden, -1)) || (rc = u32(g, "llama.block_count", &s->layers, -1)) ||
      (rc = u32(g, "llama.attention.head_count", &s->heads, -1)) ||
      (rc = u32(g, "llama.feed_forward_length", &s->ffn, -1)) || (rc = u32(g, "artflow.adapter.width", &s->adapter, 0)) ||
      (rc = u32(g, "llama.context_length", &ctx_len, 2048)))
    goto out;
  s->rms_eps = 1e-6f;
  s->rope_base = 10000.0f;
  af_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &s->rms_eps);
  af_gguf_get_f32(g, "llama.rope.freq_base", &s->rope_base);
  const char *layout = NULL;
  s->rope_interleaved = !(af_gguf_get_str(g, "artflow.rope_layout", &layout) == 0 && !strcmp(layout, "neox"));
  s->ctx = max_ctx > 0 ? max_ctx : ctx_len;
  uint32_t kvh = 0;
  if (af_gguf_get_u32(g, "llama.attention.head_count_kv", &kvh) == 0 && (int)kvh != s->heads) {
    rc = af_err(AF_ERR_UNSUPPORTED, "%s: grouped-query attention (%u KV heads) is not supported", af_gguf_path(g), kvh);
    goto out;
  }
  m->embd = af_gguf_find_tensor(g, "token_embd.weight");
  if (!m->embd || m->embd->n_dims != 2 || (int)m->embd->ne[0] != s->hidden) {
    rc = af_err(AF_ERR_NOT_FOUND, "%s: token_embd.weight missing or not [vocab, %d]", af_gguf_path(g), s->hidden);
    goto out;
  }
  s->vocab = (int)m->embd->ne[1];
  uint64_t H = (uint64_t)s->hidden, F = (uint64_t)s->ffn, A = (uint64_t)s->adapter, V = (uint64_t)s->vocab;
  if (s->hidden % s->heads || (s->hidden / s->heads) % 2 || s->hidden / s->heads > 128) {
    rc = af_err(AF_ERR_UNSUPPORTED, "%s: head size %d is not supported", af_gguf_path(g), s->hidden / s->heads);
    goto out;
  }
  if ((rc = wt(w, &m->out_norm, -1, "output_norm.weight", H, 0)) || (rc = wt(w, &m->lm_head, -1, "output.weight", H, V)))
    goto out;
  m->lay = calloc((size_t)s->layers, sizeof *m->lay);
  if (!m->lay) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (int l = 0; l < s->layers && !rc; l++) {
    lm_layer *L = &m->lay[l];
    if ((rc = wt(w, &L->attn_norm, l, "attn_norm.weight", H, 0)) || (rc = wt(w, &L->wq, l, "attn_q.weight", H, H)) ||
        (rc = wt(w, &L->wk, l, "attn_k.weight", H, H)) || (rc = wt(w, &L->wv, l, "attn_v.weight", H, H)) ||
        (rc = wt(w, &L->wo, l, "attn_output.weight", H, H)) || (rc = wt(w, &L->ffn_norm, l, "ffn_norm.weight", H, 0)) ||
        (rc = wt(w, &L->gate, l, "ffn_gate.weight", H, F)) || (rc = wt(w, &L->up, l, "ffn_up.weight", H, F)) ||
        (rc = wt(w, &L->down, l, "ffn_down.weight", F, H)))
      break;
    if (A && ((rc = wt(w, &L->ad_dw, l, "adapter_down.weight", H, A)) || (rc = wt(w, &L->ad_db, l, "adapter_down.bias", A, 0)) ||
              (rc = wt(w, &L->ad_uw, l, "adapter_up.weight", A, H)) || (rc = wt(w, &L->ad_ub, l, "adapter_up.bias", H, 0))))
      break;
    if ((rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, (size_t)s->ctx * H * sizeof(float), NULL, &L->k_cache)) ||
        (rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, (size_t)s->ctx * H * sizeof(float), NULL, &L->v_cache)))
      break;
  }
  int narrow = m->lm_head && m->lm_head->type != F32;
  for (int l = 0; !rc && l < s->layers; l++) {
    const lm_layer *L = &m->lay[l];
    narrow |= L->wq->type != F32 || L->gate->type != F32 || L->down->type != F32 || (L->ad_dw && L->ad_dw->type != F32);
  }
  if (!rc && narrow) { /* room for the largest fp16/quantised matrix widened to fp32 */
    uint64_t big = H * (F > V ? F : V);
    if (A && H * A > big) big = H * A;
    rc = nn_alloc(cl, (size_t)big, &m->wscratch);
  }
out:
  if (rc) {
    af_lm_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

#undef wt

void af_lm_free(af_lm *m) {
  if (!m) return;
  free_bufs(m);
  for (int l = 0; m->lay && l < m->s.layers; l++) {
    if (m->lay[l].k_cache) clReleaseMemObject(m->lay[l].k_cache);
    if (m->lay[l].v_cache) clReleaseMemObject(m->lay[l].v_cache);
  }
  nn_free(&m->wscratch);
  free(m->lay);
  free(m);
}

const af_lm_shape *af_lm_shape_of(const af_lm *m) { return &m->s; }

int af_lm_embed(const af_lm *m, const int32_t *ids, int n, float *out) {
  size_t H = (size_t)m->s.hidden, row = (size_t)af_ggml_nbytes(m->embd->type, H, H);
  for (int i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= m->s.vocab)
      return af_err(AF_ERR_RANGE, "token id %d outside the vocabulary (0..%d)", ids[i], m->s.vocab - 1);
    int rc = af_convert_to_f32(m->embd->type, (const uint8_t *)m->embd->data + (size_t)ids[i] * row, out + i * H, H);
    if (rc) return af_err(rc, "token_embd.weight: cannot read type %s", af_ggml_type_name(m->embd->type));
  }
  return 0;
}

/* y = x·Wᵀ (+b) for n rows: a GEMV for one row (decode; fp16 weights read
 * with vload_half), a GEMM otherwise (fp16 weights widened into a scratch
 * fp32 matrix first) */
static int lin_m(af_lm *m, af_queue *q, af_dbuf x, int n, const af_dtensor *w, const af_dtensor *b, af_dbuf y) {
  size_t in = w->ne[0], out = w->n_elements / in;
  int quant = w->type == AF_GGML_Q8_0 || w->type == AF_GGML_Q4_0;
  if (n == 1 && quant)
    return af_op_gemv_q(q, w->mem, w->type == AF_GGML_Q4_0, out, in, x, y, b ? b->mem : NULL);
  if (n == 1) return af_op_gemv(q, w->mem, w->type == AF_GGML_F16, out, in, x, 1, y, b ? b->mem : NULL);
  if (w->type == AF_GGML_F16 || quant) {
    int rc = quant ? af_op_dequant_q(q, w->mem, w->type == AF_GGML_Q4_0, m->wscratch.mem, w->n_elements)
                   : af_op_f16_to_f32(q, w->mem, m->wscratch.mem, w->n_elements);
    if (rc) return rc;
    af_dtensor wf = *w;
    wf.type = AF_GGML_F32;
    wf.mem = m->wscratch.mem;
    return nn_linear(q, x, 0, (size_t)n, &wf, b, y, 0);
  }
  return nn_linear(q, x, 0, (size_t)n, w, b, y, 0);
}
#define lin(q, x, n, w, b, y) lin_m(m, q, x, n, w, b, y)

int af_lm_forward(af_lm *m, af_queue *q, const float *xin, int n, int pos0, float *logits) {
  const af_lm_shape *s = &m->s;
  if (n < 1 || pos0 < 0 || pos0 + n > s->ctx)
    return af_err(AF_ERR_RANGE, "llm: positions %d..%d exceed the context of %d", pos0, pos0 + n - 1, s->ctx);
  int rc = grow(m, n);
  if (rc) return rc;
  size_t H = (size_t)s->hidden, N = (size_t)n, F = (size_t)s->ffn, A = (size_t)s->adapter;
  int d = s->hidden / s->heads;
  if ((rc = af_queue_write(q, m->x.mem, 0, sizeof(float) * N * H, xin))) return rc;
  for (int l = 0; l < s->layers; l++) {
    lm_layer *L = &m->lay[l];
    af_dbuf kc = {L->k_cache, (size_t)pos0 * H}, vc = {L->v_cache, (size_t)pos0 * H};
    /* attention block; keys and values go straight into the cache */
    if ((rc = af_op_rmsnorm(q, m->x, N, H, L->attn_norm->mem, s->rms_eps, m->h)) ||
        (rc = lin(q, m->h, n, L->wq, NULL, m->q)) || (rc = lin(q, m->h, n, L->wk, NULL, kc)) ||
        (rc = lin(q, m->h, n, L->wv, NULL, vc)) ||
        (rc = af_op_rope(q, m->q, N, s->heads, d, pos0, s->rope_base, s->rope_interleaved)) ||
        (rc = af_op_rope(q, kc, N, s->heads, d, pos0, s->rope_base, s->rope_interleaved)))
      return rc;
    af_attn_view qv = {m->q.mem, 0, (int)H, 0}, kv = {L->k_cache, 0, (int)H, 0}, vv = {L->v_cache, 0, (int)H, 0};
    af_attn_view ov = {m->ctx.mem, 0, (int)H, 0};
    if ((rc = af_attention(q, qv, kv, vv, ov, n, pos0 + n, s->heads, d, 1, 1.0f / sqrtf((float)d), 1, pos0)) ||
        (rc = lin(q, m->ctx, n, L->wo, NULL, m->tmp)) || (rc = af_op_add(q, m->x, m->tmp, N * H)))
      return rc;
    /* ImageAdapter: x = up(GELU(down(x))) + x */
    if (A && ((rc = lin(q, m->x, n, L->ad_dw, L->ad_db, m->ad)) || (rc = af_op_gelu(q, m->ad, N * A)) ||
              (rc = lin(q, m->ad, n, L->ad_uw, L->ad_ub, m->tmp)) || (rc = af_op_add(q, m->x, m->tmp, N * H))))
      return rc;
    /* SwiGLU MLP */
    if ((rc = af_op_rmsnorm(q, m->x, N, H, L->ffn_norm->mem, s->rms_eps, m->h)) ||
        (rc = lin(q, m->h, n, L->gate, NULL, m->g)) || (rc = lin(q, m->h, n, L->up, NULL, m->u)) ||
        (rc = af_op_silu(q, m->g, N * F)) || (rc = af_op_mul(q, m->g, m->u, N * F)) ||
        (rc = lin(q, m->g, n, L->down, NULL, m->tmp)) || (rc = af_op_add(q, m->x, m->tmp, N * H)))
      return rc;
  }
  af_dbuf last = af_dbuf_at(m->x, (N - 1) * H);
  if ((rc = af_op_rmsnorm(q, last, 1, H, m->out_norm->mem, s->rms_eps, m->h)) ||
      (rc = lin(q, m->h, 1, m->lm_head, NULL, m->logits)))
    return rc;
  return af_queue_read(q, m->logits.mem, 0, sizeof(float) * (size_t)s->vocab, logits);
}
