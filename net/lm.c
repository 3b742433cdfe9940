/* LLaMA + ImageAdapter forward on OpenCL (see lm.h).  One layer:
 *   h = RMSNorm(x); q,k,v = h·Wᵀ; RoPE(q,k) at absolute positions; k,v -> cache
 *   x += o_proj(attention(q, cache))               causal, scores / sqrt(d)
 *   x += up(GELU(down(x)))                          ImageAdapter, every position
 *   x += down(SiLU(gate(RMSNorm(x))) * up(RMSNorm(x)))
 * then the final RMSNorm and lm_head on the last position (prefill) or on every
 * row (batched decode).  Buffer shapes are given as (rows, columns).  Each row
 * of a call carries its KV-cache slot and position (device int buffers
 * rslot/rpos), which RoPE, the cache store and the attention read; prefill
 * rows are consecutive positions of one slot, decode rows one position each
 * of B slots. */
#include "net/lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/attention.h"
#include "cl/devprofile.h"
#include "cl/gemm_q8.h"
#include "cl/gemm_tiled.h"
#include "cl/kquant.h"
#include "formats/gguf.h"
#include "formats/quant.h"
#include "net/nn.h"

#define F32 AF_GGML_F32

typedef struct {
  const af_dtensor *attn_norm, *wq, *wk, *wv, *wo, *ad_dw, *ad_db, *ad_uw, *ad_ub, *ffn_norm, *gate, *up,
      *down;
  cl_mem k_cache, v_cache; /* (slots, slot_len, hidden) each, fp32 or fp16 */
} lm_layer;

struct af_lm {
  af_cl *cl;
  af_weights *w;
  af_lm_shape s;
  lm_layer *lay;
  const af_dtensor *out_norm, *lm_head;
  const af_gguf_tensor *embd;                /* host copy in the mmap */
  af_dbuf wscratch;                          /* fp32 copy of one fp16 matrix, for prefill GEMMs (lazy) */
  size_t wscratch_n;                         /* its floats; 0 = all matrices are fp32 */
  int cap;                                   /* positions the work buffers hold */
  af_dbuf x, h, q, k, v, ctx, tmp, ad, g, u; /* (cap, H) / (cap, A) / (cap, F) */
  cl_mem rslot, rpos;                        /* (cap) ints: each row's cache slot and position */
  cl_mem rrope, rhole;                       /* branch rows (af_lm_branches): RoPE position, hidden keys */
  cl_mem rope_tab;     /* af_rope_table for positions 0..ctx-1 (HF's fp32 cos/sin cache) */
  int *hslot, *hpos;   /* host staging of the same */
  int *hrope, *hhole;  /* (cap) and (2 cap) */
  int lcap;            /* rows the logits buffer holds */
  af_dbuf logits;      /* (lcap, V) */
  int kv_half;         /* KV cache stored as fp16 */
  int slots, slot_len; /* KV cache geometry (0 until first use) */
};

static int u32(const af_weights *w, const char *key, int *out, int def) {
  const af_gguf *g = af_weights_meta(w, key); /* a two-file model: ours first, then the LLM file */
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
  const af_gguf_tensor *t = af_weights_find(w, full);
  /* Q8_0/Q4_0 and K-quant matrices stay quantised (dequantised in the kernels) */
  int quant = ne1 && t && (t->type == AF_GGML_Q8_0 || t->type == AF_GGML_Q4_0 || af_kq_type(t->type));
  int type = quant || (keep_f16 && ne1 && t && t->type == AF_GGML_F16) ? -1 : F32;
  return af_weights_expect(w, full, type, ne1 ? 2 : 1, ne, out);
}

static void free_bufs(af_lm *m) {
  af_dbuf *b[] = {&m->x, &m->h, &m->q, &m->k, &m->v, &m->ctx, &m->tmp, &m->ad, &m->g, &m->u};
  for (size_t i = 0; i < sizeof b / sizeof *b; i++) nn_free(b[i]);
  cl_mem *mems[] = {&m->rslot, &m->rpos, &m->rrope, &m->rhole};
  for (size_t i = 0; i < sizeof mems / sizeof *mems; i++) {
    if (*mems[i]) clReleaseMemObject(*mems[i]);
    *mems[i] = NULL;
  }
  free(m->hslot), free(m->hpos), free(m->hrope), free(m->hhole);
  m->hslot = m->hpos = m->hrope = m->hhole = NULL;
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
      (rc = nn_alloc(m->cl, N * H, &m->k)) || (rc = nn_alloc(m->cl, N * H, &m->v)) ||
      (rc = af_cl_alloc(m->cl, CL_MEM_READ_ONLY, N * sizeof(int), NULL, &m->rslot)) ||
      (rc = af_cl_alloc(m->cl, CL_MEM_READ_ONLY, N * sizeof(int), NULL, &m->rpos)) ||
      (rc = af_cl_alloc(m->cl, CL_MEM_READ_ONLY, N * sizeof(int), NULL, &m->rrope)) ||
      (rc = af_cl_alloc(m->cl, CL_MEM_READ_ONLY, 2 * N * sizeof(int), NULL, &m->rhole)))
    return rc;
  m->hslot = malloc(N * sizeof(int));
  m->hpos = malloc(N * sizeof(int));
  m->hrope = malloc(N * sizeof(int));
  m->hhole = malloc(2 * N * sizeof(int));
  if (!m->hslot || !m->hpos || !m->hrope || !m->hhole) return af_err(AF_ERR_NOMEM, "out of memory");
  m->cap = n;
  return 0;
}

void af_lm_trim(af_lm *m) {
  if (!m) return;
  free_bufs(m);
  nn_free(&m->wscratch);
}

static int grow_logits(af_lm *m, int rows) {
  if (rows <= m->lcap) return 0;
  nn_free(&m->logits);
  m->lcap = 0;
  int rc = nn_alloc(m->cl, (size_t)rows * (size_t)m->s.vocab, &m->logits);
  if (!rc) m->lcap = rows;
  return rc;
}

static void free_cache(af_lm *m) {
  for (int l = 0; m->lay && l < m->s.layers; l++) {
    if (m->lay[l].k_cache) clReleaseMemObject(m->lay[l].k_cache);
    if (m->lay[l].v_cache) clReleaseMemObject(m->lay[l].v_cache);
    m->lay[l].k_cache = m->lay[l].v_cache = NULL;
  }
  m->slots = m->slot_len = 0;
}

int af_lm_reserve(af_lm *m, af_queue *q, int slots, int positions) {
  if (slots < 1 || positions < 1 || slots > 65536)
    return af_err(AF_ERR_INVALID, "llm: KV cache of %d slots x %d positions", slots, positions);
  if (positions > m->s.ctx)
    return af_err(AF_ERR_RANGE, "llm: %d positions exceed the context of %d", positions, m->s.ctx);
  if (slots <= m->slots && positions <= m->slot_len) return 0;
  int ns = slots > m->slots ? slots : m->slots, np = positions > m->slot_len ? positions : m->slot_len;
  size_t H = (size_t)m->s.hidden, esz = m->kv_half ? 2 : 4, L = (size_t)m->s.layers;
  size_t old_slot = (size_t)m->slot_len * H * esz, new_slot = (size_t)np * H * esz;
  cl_mem *nb = calloc(2 * L, sizeof *nb);
  if (!nb) return af_err(AF_ERR_NOMEM, "out of memory");
  int rc = 0;
  for (size_t i = 0; i < 2 * L && !rc; i++)
    rc = af_cl_alloc(m->cl, CL_MEM_READ_WRITE, (size_t)ns * new_slot, NULL, &nb[i]);
  for (size_t i = 0; i < 2 * L && !rc && m->slots; i++) { /* keep what the sequences hold */
    cl_mem old = i % 2 ? m->lay[i / 2].v_cache : m->lay[i / 2].k_cache;
    for (int sl = 0; sl < m->slots && !rc && !q->reserving; sl++) {
      cl_int e = clEnqueueCopyBuffer(q->q, old, nb[i], (size_t)sl * old_slot, (size_t)sl * new_slot, old_slot,
                                     0, NULL, NULL);
      if (e != CL_SUCCESS) rc = af_err(e, "llm: KV cache copy: %s", af_strerror(e));
    }
  }
  if (!rc && m->slots) rc = af_queue_finish(q);
  if (rc) {
    for (size_t i = 0; i < 2 * L; i++)
      if (nb[i]) clReleaseMemObject(nb[i]);
    free(nb);
    return rc;
  }
  free_cache(m);
  for (size_t l = 0; l < L; l++) m->lay[l].k_cache = nb[2 * l], m->lay[l].v_cache = nb[2 * l + 1];
  free(nb);
  m->slots = ns, m->slot_len = np;
  return 0;
}

int af_lm_kv_half(const af_lm *m) {
  return m->kv_half;
}

uint64_t af_lm_kv_bytes(const af_lm *m) {
  return 2ull * (uint64_t)m->s.layers * (uint64_t)m->slots * (uint64_t)m->slot_len * (uint64_t)m->s.hidden *
         (m->kv_half ? 2u : 4u);
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
  /* keys that cannot be right, in our file and the base LLM's, named */
  if ((rc = af_gguf_check_model(g)) || (rc = af_gguf_check_model(af_weights_fallback(w))) ||
      (rc = u32(w, "llama.embedding_length", &s->hidden, -1)) ||
      (rc = u32(w, "llama.block_count", &s->layers, -1)) ||
      (rc = u32(w, "llama.attention.head_count", &s->heads, -1)) ||
      (rc = u32(w, "llama.feed_forward_length", &s->ffn, -1)) ||
      (rc = u32(w, "artflow.adapter.width", &s->adapter, 0)) ||
      (rc = u32(w, "llama.context_length", &ctx_len, 2048)))
    goto out;
  s->rms_eps = 1e-6f;
  s->rope_base = 10000.0f;
  af_gguf_get_f32(af_weights_meta(w, "llama.attention.layer_norm_rms_epsilon"),
                  "llama.attention.layer_norm_rms_epsilon", &s->rms_eps);
  af_gguf_get_f32(af_weights_meta(w, "llama.rope.freq_base"), "llama.rope.freq_base", &s->rope_base);
  const char *layout = NULL;
  const af_gguf *gq =
      af_weights_tensor_file(w, "blk.0.attn_q.weight"); /* the q rows' file knows their layout */
  s->rope_interleaved =
      !(af_gguf_get_str(gq ? gq : g, "artflow.rope_layout", &layout) == 0 && !strcmp(layout, "neox"));
  s->ctx = max_ctx > 0 ? max_ctx : ctx_len;
  if (s->ctx < 1 || s->ctx > (1 << 20)) {
    rc = af_err(AF_ERR_FORMAT, "%s: context length %d is outside 1..1048576", af_gguf_path(g), s->ctx);
    goto out;
  }
  uint32_t kvh = 0;
  if (af_gguf_get_u32(af_weights_meta(w, "llama.attention.head_count_kv"), "llama.attention.head_count_kv",
                      &kvh) == 0 &&
      (int)kvh != s->heads) {
    rc = af_err(AF_ERR_UNSUPPORTED, "%s: grouped-query attention (%u KV heads) is not supported",
                af_gguf_path(g), kvh);
    goto out;
  }
  m->embd = af_weights_find(w, "token_embd.weight");
  if (!m->embd || m->embd->n_dims != 2 || (int)m->embd->ne[0] != s->hidden) {
    rc = af_err(AF_ERR_NOT_FOUND, "%s: token_embd.weight missing or not [vocab, %d]", af_gguf_path(g),
                s->hidden);
    goto out;
  }
  s->vocab = (int)m->embd->ne[1];
  uint64_t H = (uint64_t)s->hidden, F = (uint64_t)s->ffn, A = (uint64_t)s->adapter, V = (uint64_t)s->vocab;
  if (s->hidden % s->heads || (s->hidden / s->heads) % 2 || s->hidden / s->heads > 128) {
    rc = af_err(AF_ERR_UNSUPPORTED, "%s: head size %d is not supported", af_gguf_path(g),
                s->hidden / s->heads);
    goto out;
  }
  if ((rc = wt(w, &m->out_norm, -1, "output_norm.weight", H, 0)) ||
      (rc = wt(w, &m->lm_head, -1, "output.weight", H, V)))
    goto out;
  m->lay = calloc((size_t)s->layers, sizeof *m->lay);
  if (!m->lay) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (int l = 0; l < s->layers && !rc; l++) {
    lm_layer *L = &m->lay[l];
    if ((rc = wt(w, &L->attn_norm, l, "attn_norm.weight", H, 0)) ||
        (rc = wt(w, &L->wq, l, "attn_q.weight", H, H)) || (rc = wt(w, &L->wk, l, "attn_k.weight", H, H)) ||
        (rc = wt(w, &L->wv, l, "attn_v.weight", H, H)) ||
        (rc = wt(w, &L->wo, l, "attn_output.weight", H, H)) ||
        (rc = wt(w, &L->ffn_norm, l, "ffn_norm.weight", H, 0)) ||
        (rc = wt(w, &L->gate, l, "ffn_gate.weight", H, F)) ||
        (rc = wt(w, &L->up, l, "ffn_up.weight", H, F)) || (rc = wt(w, &L->down, l, "ffn_down.weight", F, H)))
      break;
    if (A && ((rc = wt(w, &L->ad_dw, l, "adapter_down.weight", H, A)) ||
              (rc = wt(w, &L->ad_db, l, "adapter_down.bias", A, 0)) ||
              (rc = wt(w, &L->ad_uw, l, "adapter_up.weight", A, H)) ||
              (rc = wt(w, &L->ad_ub, l, "adapter_up.bias", H, 0))))
      break;
  }
  int narrow = m->lm_head && m->lm_head->type != F32;
  for (int l = 0; !rc && l < s->layers; l++) {
    const lm_layer *L = &m->lay[l];
    narrow |= L->wq->type != F32 || L->gate->type != F32 || L->down->type != F32 ||
              (L->ad_dw && L->ad_dw->type != F32);
  }
  /* KV cache storage: the profile's kv_cache, auto = fp16 unless the file's
   * matrices are fp32 (whatever the profile's weights: policy) */
  if (!rc) {
    int kv = cl->profile ? af_devprofile_kv_cache(cl->profile) : AF_KV_AUTO;
    const af_gguf_tensor *tq = af_weights_find(w, "blk.0.attn_q.weight");
    m->kv_half = kv == AF_KV_F16 || (kv == AF_KV_AUTO && (tq ? tq->type != F32 : narrow));
  }
  if (!rc && narrow) { /* room for the largest fp16/quantised layer matrix widened to fp32 (lm_head
                        * always runs as GEMVs, see run_rows: never widened) */
    uint64_t big = H * (F > H ? F : H);
    if (A && H * A > big) big = H * A;
    m->wscratch_n = (size_t)big; /* allocated by the first GEMM that needs it */
  }
  if (!rc) { /* RoPE's cos/sin as HF caches them (computed on the host, as torch does in fp32) */
    size_t n = (size_t)s->ctx * (size_t)(s->hidden / s->heads);
    float *tab = malloc(sizeof(float) * n);
    if (!tab) rc = af_err(AF_ERR_NOMEM, "out of memory");
    if (tab) af_rope_table(s->rope_base, s->hidden / s->heads, s->ctx, tab);
    if (!rc)
      rc = af_cl_alloc(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(float) * n, tab, &m->rope_tab);
    free(tab);
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
  free_cache(m);
  nn_free(&m->logits);
  nn_free(&m->wscratch);
  if (m->rope_tab) clReleaseMemObject(m->rope_tab);
  free(m->lay);
  free(m);
}

const af_lm_shape *af_lm_shape_of(const af_lm *m) {
  return &m->s;
}

int af_lm_embed(const af_lm *m, const int32_t *ids, int n, float *out) {
  size_t H = (size_t)m->s.hidden, row = (size_t)af_ggml_nbytes(m->embd->type, H, H);
  for (int i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= m->s.vocab)
      return af_err(AF_ERR_RANGE, "token id %d outside the vocabulary (0..%d)", ids[i], m->s.vocab - 1);
    int rc = af_convert_to_f32(m->embd->type, (const uint8_t *)m->embd->data + (size_t)ids[i] * row,
                               out + i * H, H);
    if (rc) return af_err(rc, "token_embd.weight: cannot read type %s", af_ggml_type_name(m->embd->type));
  }
  return 0;
}

/* y = x·Wᵀ (+b) for n rows: GEMVs when vec or n = 1 (decode; up to 8 rows per
 * pass over the weights; fp16 weights read with vload_half, Q8_0/Q4_0 and
 * Q4_K/Q5_K/Q6_K dequantised in the kernel), a GEMM otherwise: Q8_0/Q4_0
 * weights in place with int8 activations when the profile sets AF_QGEMM
 * (cl/gemm_q8.h: each row on its own, so `chunk` does not matter), else
 * fp16/quantised weights widened into a scratch fp32 matrix first */
static int lin_m(af_lm *m, af_queue *q, af_dbuf x, int n, int vec, int chunk, const af_dtensor *w,
                 const af_dtensor *b, af_dbuf y) {
  size_t in = w->ne[0], out = w->n_elements / in;
  int quant = w->type == AF_GGML_Q8_0 || w->type == AF_GGML_Q4_0, kq = af_kq_type(w->type);
  if (vec || n == 1) {
    int rc = 0;
    for (int r = 0; r < n && !rc;) {
      int nb = n - r < 8 ? n - r : 8;
      af_dbuf xr = af_dbuf_at(x, (size_t)r * in), yr = af_dbuf_at(y, (size_t)r * out);
      cl_mem bm = b ? b->mem : NULL;
      rc = kq      ? af_op_gemv_kq(q, w->mem, w->type, out, in, xr, nb, yr, bm)
           : quant ? af_op_gemv_qn(q, w->mem, w->type == AF_GGML_Q4_0, out, in, xr, nb, yr, bm)
                   : af_op_gemv(q, w->mem, w->type == AF_GGML_F16, out, in, xr, nb, yr, bm);
      r += nb;
    }
    return rc;
  }
  if (quant && af_qgemm_enabled(m->cl))
    return af_qgemm(q, w->type == AF_GGML_Q4_0, (size_t)n, out, in, x, w->mem, b ? b->mem : NULL, y);
  af_dtensor wf = *w;
  if (w->type == AF_GGML_F16 || quant || kq) {
    int rc = m->wscratch.mem ? 0 : nn_alloc(m->cl, m->wscratch_n, &m->wscratch);
    if (rc) return rc;
    rc = kq      ? af_op_dequant_kq(q, w->mem, w->type, m->wscratch.mem, w->n_elements)
         : quant ? af_op_dequant_q(q, w->mem, w->type == AF_GGML_Q4_0, m->wscratch.mem, w->n_elements)
                 : af_op_f16_to_f32(q, w->mem, m->wscratch.mem, w->n_elements);
    if (rc) return rc;
    wf.type = AF_GGML_F32;
    wf.mem = m->wscratch.mem;
  }
  int rc = 0, step = chunk > 0 && chunk < n ? chunk : n;
  for (int r = 0; r < n && !rc; r += step)
    rc = nn_linear(q, af_dbuf_at(x, (size_t)r * in), 0, (size_t)(n - r < step ? n - r : step), &wf, b,
                   af_dbuf_at(y, (size_t)r * out), 0);
  return rc;
}
#define lin(q, x, n, w, b, y) lin_m(m, q, x, n, vec, chunk, w, b, y)

/* n rows (in m->x, their slots/positions in hslot/hpos) through every layer
 * (vec: GEMVs, the rows are one position each of several sequences; else
 * GEMMs of at most `chunk` rows per call, 0 = all); then the final norm and
 * lm_head on the rows out[0..n_out), gathered and one at a time, or when out
 * is NULL on every row at once; logits read into the host.  branch: the rows
 * are af_lm_branches rows, with their RoPE positions in hrope and the cached
 * keys each must not see in hhole (hpos is then where their keys go). */
static int run_rows(af_lm *m, af_queue *q, int n, int vec, int chunk, const int *out, int n_out,
                    float *logits, int branch) {
  const af_lm_shape *s = &m->s;
  size_t H = (size_t)s->hidden, N = (size_t)n, F = (size_t)s->ffn, A = (size_t)s->adapter;
  int d = s->hidden / s->heads, rc;
  size_t slot_stride = (size_t)m->slot_len * H;
  float scale = 1.0f / sqrtf((float)d);
  if ((rc = af_queue_write(q, m->rslot, 0, N * sizeof(int), m->hslot)) ||
      (rc = af_queue_write(q, m->rpos, 0, N * sizeof(int), m->hpos)))
    return rc;
  if (branch && ((rc = af_queue_write(q, m->rrope, 0, N * sizeof(int), m->hrope)) ||
                 (rc = af_queue_write(q, m->rhole, 0, 2 * N * sizeof(int), m->hhole))))
    return rc;
  cl_mem rope_at = branch ? m->rrope : m->rpos, hole = branch ? m->rhole : NULL;
  for (int l = 0; l < s->layers; l++) {
    lm_layer *L = &m->lay[l];
    /* attention block: RoPE at each row's position, keys/values into its slot */
    if ((rc = af_op_rmsnorm(q, m->x, N, H, L->attn_norm->mem, s->rms_eps, m->h)) ||
        (rc = lin(q, m->h, n, L->wq, NULL, m->q)) || (rc = lin(q, m->h, n, L->wk, NULL, m->k)) ||
        (rc = lin(q, m->h, n, L->wv, NULL, m->v)) ||
        (rc = af_op_rope_pos(q, m->q, N, s->heads, d, rope_at, s->rope_base, s->rope_interleaved,
                             m->rope_tab)) ||
        (rc = af_op_rope_pos(q, m->k, N, s->heads, d, rope_at, s->rope_base, s->rope_interleaved,
                             m->rope_tab)) ||
        (rc = af_kv_store(q, m->k, n, (int)H, L->k_cache, m->kv_half, slot_stride, m->rslot, m->rpos)) ||
        (rc = af_kv_store(q, m->v, n, (int)H, L->v_cache, m->kv_half, slot_stride, m->rslot, m->rpos)) ||
        (rc = af_attention_cached_hole(q, m->q, n, s->heads, d, L->k_cache, L->v_cache, m->kv_half,
                                       slot_stride, m->rslot, m->rpos, hole, scale, m->ctx)) ||
        (rc = lin(q, m->ctx, n, L->wo, NULL, m->tmp)) || (rc = af_op_add(q, m->x, m->tmp, N * H)))
      return rc;
    /* ImageAdapter: x = up(GELU(down(x))) + x */
    if (A &&
        ((rc = lin(q, m->x, n, L->ad_dw, L->ad_db, m->ad)) || (rc = af_op_gelu(q, m->ad, N * A)) ||
         (rc = lin(q, m->ad, n, L->ad_uw, L->ad_ub, m->tmp)) || (rc = af_op_add(q, m->x, m->tmp, N * H))))
      return rc;
    /* SwiGLU MLP */
    if ((rc = af_op_rmsnorm(q, m->x, N, H, L->ffn_norm->mem, s->rms_eps, m->h)) ||
        (rc = lin(q, m->h, n, L->gate, NULL, m->g)) || (rc = lin(q, m->h, n, L->up, NULL, m->u)) ||
        (rc = af_op_silu(q, m->g, N * F)) || (rc = af_op_mul(q, m->g, m->u, N * F)) ||
        (rc = lin(q, m->g, n, L->down, NULL, m->tmp)) || (rc = af_op_add(q, m->x, m->tmp, N * H)))
      return rc;
  }
  size_t rows = out ? (size_t)n_out : N;
  af_dbuf first = m->x;
  if (out) { /* the wanted rows, in order, into tmp (n_out <= n rows) */
    for (int i = 0; i < n_out && !q->reserving; i++) {
      cl_int e =
          clEnqueueCopyBuffer(q->q, m->x.mem, m->tmp.mem, sizeof(float) * (m->x.off + (size_t)out[i] * H),
                              sizeof(float) * (m->tmp.off + (size_t)i * H), sizeof(float) * H, 0, NULL, NULL);
      if (e != CL_SUCCESS) return af_err(e, "llm: row copy: %s", af_strerror(e));
    }
    first = m->tmp;
  }
  if ((rc = grow_logits(m, (int)rows)) ||
      (rc = af_op_rmsnorm(q, first, rows, H, m->out_norm->mem, s->rms_eps, m->h)))
    return rc;
  /* lm_head: gathered prompt rows one at a time (a GEMV with several vectors
   * may round differently from one with one: a prompt's logits do not depend
   * on what it was prefilled with); branch rows (af_lm_rows) all at once */
  int one = out && !branch;
  for (size_t r = 0; r < rows && !rc; r += one ? 1 : rows)
    rc = lin_m(m, q, af_dbuf_at(m->h, r * H), one ? 1 : (int)rows, 1, 0, m->lm_head, NULL,
               af_dbuf_at(m->logits, r * (size_t)s->vocab));
  if (rc) return rc;
  return af_queue_read(q, m->logits.mem, 0, sizeof(float) * rows * (size_t)s->vocab, logits);
}
#undef lin

/* the cache holds slots 0..max_slot and positions 0..max_pos (grows when not) */
static int ensure_cache(af_lm *m, af_queue *q, int max_slot, int max_pos) {
  if (max_slot < m->slots && max_pos < m->slot_len) return 0;
  int np = max_pos + 1;
  if (np > m->slot_len) { /* double, so a decode loop regrows rarely */
    int dbl = m->slot_len * 2 < m->s.ctx ? m->slot_len * 2 : m->s.ctx;
    if (dbl > np) np = dbl;
  }
  return af_lm_reserve(m, q, max_slot + 1 > m->slots ? max_slot + 1 : m->slots, np);
}

static int prefill(af_lm *m, af_queue *q, int slot, const float *xin, int n, int pos0, int all,
                   float *logits) {
  const af_lm_shape *s = &m->s;
  if (n < 1 || pos0 < 0 || pos0 + n > s->ctx)
    return af_err(AF_ERR_RANGE, "llm: positions %d..%d exceed the context of %d", pos0, pos0 + n - 1, s->ctx);
  if (slot < 0 || slot >= 65536) return af_err(AF_ERR_RANGE, "llm: KV-cache slot %d", slot);
  int rc;
  if ((rc = grow(m, n)) || (rc = ensure_cache(m, q, slot, pos0 + n - 1))) return rc;
  for (int i = 0; i < n; i++) m->hslot[i] = slot, m->hpos[i] = pos0 + i;
  if ((rc = af_queue_write(q, m->x.mem, 0, sizeof(float) * (size_t)n * (size_t)s->hidden, xin))) return rc;
  int last = n - 1;
  return all ? run_rows(m, q, n, 0, 0, NULL, 0, logits, 0) : run_rows(m, q, n, 0, 0, &last, 1, logits, 0);
}

int af_lm_prefill(af_lm *m, af_queue *q, int slot, const float *xin, int n, int pos0, float *logits) {
  return prefill(m, q, slot, xin, n, pos0, 0, logits);
}

int af_lm_prefill_all(af_lm *m, af_queue *q, int slot, const float *xin, int n, int pos0, float *logits) {
  return prefill(m, q, slot, xin, n, pos0, 1, logits);
}

int af_lm_prefill_batch(af_lm *m, af_queue *q, int B, const int *slots, const int *lens, const float *xin,
                        float *logits) {
  const af_lm_shape *s = &m->s;
  if (B < 1) return af_err(AF_ERR_INVALID, "llm: prefill of %d sequences", B);
  int total = 0, max_slot = 0, max_len = 0, rc;
  for (int b = 0; b < B; b++) {
    if (lens[b] < 1 || lens[b] > s->ctx)
      return af_err(AF_ERR_RANGE, "llm: prompt of %d positions (the context holds %d)", lens[b], s->ctx);
    if (slots[b] < 0 || slots[b] >= 65536) return af_err(AF_ERR_RANGE, "llm: KV-cache slot %d", slots[b]);
    for (int c = 0; c < b; c++)
      if (slots[c] == slots[b]) return af_err(AF_ERR_INVALID, "llm: KV-cache slot %d given twice", slots[b]);
    if (total > INT32_MAX - lens[b]) return af_err(AF_ERR_RANGE, "llm: prefill of too many positions");
    total += lens[b];
    if (slots[b] > max_slot) max_slot = slots[b];
    if (lens[b] > max_len) max_len = lens[b];
  }
  int *last = malloc(sizeof(int) * (size_t)B);
  if (!last) return af_err(AF_ERR_NOMEM, "out of memory");
  if ((rc = grow(m, total)) || (rc = ensure_cache(m, q, max_slot, max_len - 1))) {
    free(last);
    return rc;
  }
  for (int b = 0, r = 0; b < B; b++) {
    for (int i = 0; i < lens[b]; i++, r++) m->hslot[r] = slots[b], m->hpos[r] = i;
    last[b] = r - 1;
  }
  /* GEMMs in chunks that the GEMM computes row by row, when every prompt
   * alone would have been one such chunk: then each prompt's results are
   * those of af_lm_prefill, bit for bit, whatever it was batched with */
  size_t rw = af_gemm_tiled_rowwise_max(m->cl);
  int chunk = rw && (size_t)max_len <= rw && (size_t)total > rw ? (int)rw : 0;
  rc = af_queue_write(q, m->x.mem, 0, sizeof(float) * (size_t)total * (size_t)s->hidden, xin);
  if (!rc) rc = run_rows(m, q, total, 0, chunk, last, B, logits, 0);
  free(last);
  return rc;
}

int af_lm_forward(af_lm *m, af_queue *q, const float *xin, int n, int pos0, float *logits) {
  return af_lm_prefill(m, q, 0, xin, n, pos0, logits);
}

int af_lm_decode_batch(af_lm *m, af_queue *q, int B, const int *slots, const int *pos, const float *xin,
                       float *logits) {
  const af_lm_shape *s = &m->s;
  if (B < 1) return af_err(AF_ERR_INVALID, "llm: decode of %d sequences", B);
  int max_slot = 0, max_pos = 0, rc;
  for (int b = 0; b < B; b++) {
    if (pos[b] < 0 || pos[b] >= s->ctx)
      return af_err(AF_ERR_RANGE, "llm: position %d exceeds the context of %d", pos[b], s->ctx);
    if (slots[b] < 0 || slots[b] >= 65536) return af_err(AF_ERR_RANGE, "llm: KV-cache slot %d", slots[b]);
    if (slots[b] > max_slot) max_slot = slots[b];
    if (pos[b] > max_pos) max_pos = pos[b];
  }
  if ((rc = grow(m, B)) || (rc = ensure_cache(m, q, max_slot, max_pos))) return rc;
  memcpy(m->hslot, slots, sizeof(int) * (size_t)B);
  memcpy(m->hpos, pos, sizeof(int) * (size_t)B);
  if ((rc = af_queue_write(q, m->x.mem, 0, sizeof(float) * (size_t)B * (size_t)s->hidden, xin))) return rc;
  return run_rows(m, q, B, 1, 0, NULL, 0, logits, 0);
}

int af_lm_branches(af_lm *m, af_queue *q, int slot, int shared, int n_branch, const int *lens,
                   const float *xin, float *logits) {
  const af_lm_shape *s = &m->s;
  if (n_branch < 1 || shared < 1)
    return af_err(AF_ERR_INVALID, "llm: %d branches after %d positions", n_branch, shared);
  if (slot < 0 || slot >= 65536) return af_err(AF_ERR_RANGE, "llm: KV-cache slot %d", slot);
  int total = 0, longest = 0, rc;
  for (int b = 0; b < n_branch; b++) {
    if (lens[b] < 1 || lens[b] > s->ctx) return af_err(AF_ERR_RANGE, "llm: branch of %d positions", lens[b]);
    if (total > INT32_MAX - lens[b]) return af_err(AF_ERR_RANGE, "llm: too many branch positions");
    total += lens[b];
    if (lens[b] > longest) longest = lens[b];
  }
  /* each branch is where it would be alone (positions shared..), its keys are
   * stored one branch after the other from `shared` on */
  if (shared + longest > s->ctx || shared + total > s->ctx)
    return af_err(AF_ERR_RANGE, "llm: %d shared and %d branch positions exceed the context of %d", shared,
                  total, s->ctx);
  if ((rc = grow(m, total)) || (rc = ensure_cache(m, q, slot, shared + total - 1))) return rc;
  for (int b = 0, r = 0, at = shared; b < n_branch; at += lens[b++])
    for (int i = 0; i < lens[b]; i++, r++) {
      m->hslot[r] = slot, m->hpos[r] = at + i, m->hrope[r] = shared + i;
      m->hhole[2 * r] = shared, m->hhole[2 * r + 1] = at; /* the branches before this one */
    }
  if ((rc = af_queue_write(q, m->x.mem, 0, sizeof(float) * (size_t)total * (size_t)s->hidden, xin)))
    return rc;
  return run_rows(m, q, total, 0, 0, NULL, 0, logits, 1);
}

/* ---- rows of a tree of continuations (net/score.c) ---- */

int af_lm_rows(af_lm *m, af_queue *q, int n, const af_lm_row *rows, const float *xin, int n_out,
               const int *out, float *logits) {
  const af_lm_shape *s = &m->s;
  if (n < 1 || n_out < 1 || n_out > n) return af_err(AF_ERR_INVALID, "llm: %d rows, %d logits", n, n_out);
  int max_slot = 0, max_pos = 0, rc;
  for (int r = 0; r < n; r++) {
    const af_lm_row *w = &rows[r];
    if (w->slot < 0 || w->slot >= 65536) return af_err(AF_ERR_RANGE, "llm: KV-cache slot %d", w->slot);
    if (w->pos < 0 || w->pos >= s->ctx || w->rope < 0 || w->rope >= s->ctx)
      return af_err(AF_ERR_RANGE, "llm: row at position %d (RoPE %d) outside the context of %d", w->pos,
                    w->rope, s->ctx);
    if (w->slot > max_slot) max_slot = w->slot;
    if (w->pos > max_pos) max_pos = w->pos;
  }
  for (int k = 0; k < n_out; k++)
    if (out[k] < 0 || out[k] >= n) return af_err(AF_ERR_RANGE, "llm: logits of row %d of %d", out[k], n);
  if ((rc = grow(m, n)) || (rc = ensure_cache(m, q, max_slot, max_pos))) return rc;
  for (int r = 0; r < n; r++) {
    m->hslot[r] = rows[r].slot, m->hpos[r] = rows[r].pos, m->hrope[r] = rows[r].rope;
    m->hhole[2 * r] = rows[r].hole_begin, m->hhole[2 * r + 1] = rows[r].hole_end;
  }
  if ((rc = af_queue_write(q, m->x.mem, 0, sizeof(float) * (size_t)n * (size_t)s->hidden, xin))) return rc;
  return run_rows(m, q, n, 0, 0, out, n_out, logits, 1);
}

int af_lm_copy_prefix(af_lm *m, af_queue *q, int src, int dst, int n) {
  if (src < 0 || dst < 0 || src >= 65536 || dst >= 65536 || n < 1 || n > m->s.ctx)
    return af_err(AF_ERR_RANGE, "llm: copy of %d positions from KV-cache slot %d to %d", n, src, dst);
  int rc = ensure_cache(m, q, src > dst ? src : dst, n - 1);
  if (rc || src == dst || q->reserving) return rc;
  size_t esz = m->kv_half ? 2 : 4, slot = (size_t)m->slot_len * (size_t)m->s.hidden * esz;
  size_t bytes = (size_t)n * (size_t)m->s.hidden * esz;
  for (int l = 0; l < m->s.layers; l++)
    for (int kv = 0; kv < 2; kv++) {
      cl_mem c = kv ? m->lay[l].v_cache : m->lay[l].k_cache;
      cl_int e =
          clEnqueueCopyBuffer(q->q, c, c, (size_t)src * slot, (size_t)dst * slot, bytes, 0, NULL, NULL);
      if (e != CL_SUCCESS) return af_err(e, "llm: KV-cache copy: %s", af_strerror(e));
    }
  return 0;
}
