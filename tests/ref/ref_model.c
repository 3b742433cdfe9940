/* Plain-C reference forward of ArtGPT-4 (see ref_model.h).  Straightforward
 * loops in float with double accumulators, one function per block, following
 * the original modules: eva_vit.py (Block, Attention), Qformer.py (BertLayer,
 * post-LN), modeling_llama.py (LlamaDecoderLayer with the ImageAdapter). */
#include "ref_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_layernorm(const float *x, const float *w, const float *b, float eps, int n, float *y) {
  double mean = 0, var = 0;
  for (int i = 0; i < n; i++) mean += x[i];
  mean /= n;
  for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
  var /= n; /* biased variance, as torch.nn.LayerNorm */
  double inv = 1.0 / sqrt(var + eps);
  for (int i = 0; i < n; i++) y[i] = (float)((x[i] - mean) * inv * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f));
}

void ref_rmsnorm(const float *x, const float *w, float eps, int n, float *y) {
  double ms = 0;
  for (int i = 0; i < n; i++) ms += (double)x[i] * x[i];
  ms /= n;
  float inv = (float)(1.0 / sqrt(ms + eps));
  for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * inv);
}

/* y[r, o] = b[o] + sum_i x[r, i] * w[o, i] */
void ref_linear(const float *x, int rows, int in, const float *w, const float *b, int out, float *y) {
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < out; o++) {
      double s = b ? b[o] : 0.0;
      for (int i = 0; i < in; i++) s += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
      y[(size_t)r * out + o] = (float)s;
    }
}

float ref_gelu(float x) {
  return (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0))));
}

static float silu(float x) {
  return x / (1.0f + expf(-x));
}

void ref_softmax(float *x, int n) {
  float mx = -INFINITY;
  for (int i = 0; i < n; i++) mx = fmaxf(mx, x[i]);
  double s = 0;
  for (int i = 0; i < n; i++) s += (x[i] = expf(x[i] - mx));
  for (int i = 0; i < n; i++) x[i] = (float)(x[i] / s);
}

/* Multi-head attention: q [nq, heads*d] (already scaled), k/v [nk, heads*d];
 * query i sees keys j <= i + causal_off when causal, else all. */
static void attention(const float *q, const float *k, const float *v, int nq, int nk, int heads, int d,
                      int causal, int causal_off, float *ctx) {
  int w = heads * d;
  float *p = malloc(sizeof(float) * nk);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < nq; i++) {
      int lim = causal ? i + causal_off + 1 : nk;
      for (int j = 0; j < nk; j++) {
        double s = 0;
        for (int t = 0; t < d; t++) s += (double)q[(size_t)i * w + h * d + t] * k[(size_t)j * w + h * d + t];
        p[j] = j < lim ? (float)s : -INFINITY;
      }
      ref_softmax(p, nk);
      for (int t = 0; t < d; t++) {
        double s = 0;
        for (int j = 0; j < nk; j++) s += (double)p[j] * v[(size_t)j * w + h * d + t];
        ctx[(size_t)i * w + h * d + t] = (float)s;
      }
    }
  free(p);
}

/* ------------------------------------------------------------------ ViT */

void ref_vit_forward(const ref_vit *m, const float *pix, float *out) {
  int S = m->image_size, P = m->patch_size, G = S / P, T = 1 + G * G, W = m->width, M = m->mlp_width;
  int hd = W / m->heads;
  float *x = out; /* the residual stream lives in the output buffer */
  float *h = malloc(sizeof(float) * T * W), *qkv = malloc(sizeof(float) * T * 3 * W);
  float *q = malloc(sizeof(float) * T * W), *k = malloc(sizeof(float) * T * W),
        *v = malloc(sizeof(float) * T * W);
  float *ctx = malloc(sizeof(float) * T * W), *mlp = malloc(sizeof(float) * T * M);
  float *tmp = malloc(sizeof(float) * T * W);
  /* patch embedding: Conv2d(3, W, P, stride P), flattened row-major over the grid */
  for (int gy = 0; gy < G; gy++)
    for (int gx = 0; gx < G; gx++)
      for (int o = 0; o < W; o++) {
        double s = m->patch_b[o];
        for (int c = 0; c < 3; c++)
          for (int ky = 0; ky < P; ky++)
            for (int kx = 0; kx < P; kx++)
              s += (double)m->patch_w[(((size_t)o * 3 + c) * P + ky) * P + kx] *
                   pix[((size_t)c * S + gy * P + ky) * S + gx * P + kx];
        x[(size_t)(1 + gy * G + gx) * W + o] = (float)s;
      }
  for (int o = 0; o < W; o++) x[o] = m->cls[o];
  for (int i = 0; i < T * W; i++) x[i] += m->pos[i];
  float scale = 1.0f / sqrtf((float)hd);
  for (int l = 0; l < m->layers; l++) {
    const ref_vit_block *b = &m->blocks[l];
    for (int t = 0; t < T; t++) ref_layernorm(x + t * W, b->ln1_w, b->ln1_b, m->ln_eps, W, h + t * W);
    ref_linear(h, T, W, b->qkv_w, b->qkv_b, 3 * W, qkv);
    for (int t = 0; t < T; t++)
      for (int i = 0; i < W; i++) {
        q[t * W + i] = qkv[(size_t)t * 3 * W + i] * scale;
        k[t * W + i] = qkv[(size_t)t * 3 * W + W + i];
        v[t * W + i] = qkv[(size_t)t * 3 * W + 2 * W + i];
      }
    attention(q, k, v, T, T, m->heads, hd, 0, 0, ctx);
    ref_linear(ctx, T, W, b->proj_w, b->proj_b, W, tmp);
    for (int i = 0; i < T * W; i++) x[i] += tmp[i];
    for (int t = 0; t < T; t++) ref_layernorm(x + t * W, b->ln2_w, b->ln2_b, m->ln_eps, W, h + t * W);
    ref_linear(h, T, W, b->fc1_w, b->fc1_b, M, mlp);
    for (int i = 0; i < T * M; i++) mlp[i] = ref_gelu(mlp[i]);
    ref_linear(mlp, T, M, b->fc2_w, b->fc2_b, W, tmp);
    for (int i = 0; i < T * W; i++) x[i] += tmp[i];
  }
  for (int t = 0; t < T; t++) ref_layernorm(x + t * W, m->lnv_w, m->lnv_b, m->ln_vision_eps, W, x + t * W);
  free(h), free(qkv), free(q), free(k), free(v), free(ctx), free(mlp), free(tmp);
}

/* ------------------------------------------------------------------ Q-Former */

/* x = LN(dense(attn(q_in -> kv_in)) + x), BERT post-LN attention block */
static void bert_attention(float *x, int nq, const float *kv_in, int nk, int kv_width, int D, int heads,
                           const float *qw, const float *qb, const float *kw, const float *kb,
                           const float *vw, const float *vb, const float *ow, const float *ob,
                           const float *lw, const float *lb, float eps) {
  int hd = D / heads;
  float *q = malloc(sizeof(float) * nq * D), *k = malloc(sizeof(float) * nk * D);
  float *v = malloc(sizeof(float) * nk * D), *ctx = malloc(sizeof(float) * nq * D);
  float *o = malloc(sizeof(float) * nq * D);
  ref_linear(x, nq, D, qw, qb, D, q);
  ref_linear(kv_in, nk, kv_width, kw, kb, D, k);
  ref_linear(kv_in, nk, kv_width, vw, vb, D, v);
  float scale = 1.0f / sqrtf((float)hd);
  for (int i = 0; i < nq * D; i++) q[i] *= scale; /* same value as scores / sqrt(d) up to rounding */
  attention(q, k, v, nq, nk, heads, hd, 0, 0, ctx);
  ref_linear(ctx, nq, D, ow, ob, D, o);
  for (int i = 0; i < nq * D; i++) o[i] += x[i];
  for (int t = 0; t < nq; t++) ref_layernorm(o + t * D, lw, lb, eps, D, x + t * D);
  free(q), free(k), free(v), free(ctx), free(o);
}

void ref_qformer_forward(const ref_qformer *m, const float *image, int nt, float *q_out, float *proj_out) {
  int Q = m->queries, D = m->width, F = m->ffn;
  float *x = q_out, *ff = malloc(sizeof(float) * Q * F), *o = malloc(sizeof(float) * Q * D);
  for (int t = 0; t < Q; t++)
    ref_layernorm(m->query_tokens + t * D, m->emb_ln_w, m->emb_ln_b, m->ln_eps, D, x + t * D);
  for (int l = 0; l < m->layers; l++) {
    const ref_qformer_layer *L = &m->lay[l];
    bert_attention(x, Q, x, Q, D, D, m->heads, L->q_w, L->q_b, L->k_w, L->k_b, L->v_w, L->v_b, L->o_w, L->o_b,
                   L->ln_w, L->ln_b, m->ln_eps);
    if (L->has_cross)
      bert_attention(x, Q, image, nt, m->vision_width, D, m->heads, L->cq_w, L->cq_b, L->ck_w, L->ck_b,
                     L->cv_w, L->cv_b, L->co_w, L->co_b, L->cln_w, L->cln_b, m->ln_eps);
    ref_linear(x, Q, D, L->ff1_w, L->ff1_b, F, ff);
    for (int i = 0; i < Q * F; i++) ff[i] = ref_gelu(ff[i]);
    ref_linear(ff, Q, F, L->ff2_w, L->ff2_b, D, o);
    for (int i = 0; i < Q * D; i++) o[i] += x[i];
    for (int t = 0; t < Q; t++) ref_layernorm(o + t * D, L->fln_w, L->fln_b, m->ln_eps, D, x + t * D);
  }
  if (proj_out) ref_linear(x, Q, D, m->proj_w, m->proj_b, m->proj_out, proj_out);
  free(ff), free(o);
}

/* ------------------------------------------------------------------ LLM */

/* HF rotate-half RoPE on [n, heads*d] at positions 0..n-1: pairs (i, i + d/2) */
static void rope(float *x, int n, int heads, int d, float base) {
  int half = d / 2;
  for (int p = 0; p < n; p++)
    for (int h = 0; h < heads; h++) {
      float *v = x + (size_t)p * heads * d + h * d;
      for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf(base, (float)(2 * i) / (float)d);
        float ang = (float)p * inv, c = cosf(ang), s = sinf(ang);
        float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
}

void ref_llm_forward(const ref_llm *m, const float *x0, int n, float *logits) {
  int H = m->hidden, F = m->ffn, A = m->adapter, d = H / m->heads;
  size_t nh = (size_t)n * H;
  float *x = malloc(sizeof(float) * nh), *h = malloc(sizeof(float) * nh);
  float *q = malloc(sizeof(float) * nh), *k = malloc(sizeof(float) * nh), *v = malloc(sizeof(float) * nh);
  float *ctx = malloc(sizeof(float) * nh), *o = malloc(sizeof(float) * nh);
  float *g = malloc(sizeof(float) * n * F), *u = malloc(sizeof(float) * n * F);
  float *ad = malloc(sizeof(float) * n * (A > 0 ? A : 1));
  memcpy(x, x0, sizeof(float) * nh);
  float scale = 1.0f / sqrtf((float)d);
  for (int l = 0; l < m->layers; l++) {
    const ref_llm_layer *L = &m->lay[l];
    for (int t = 0; t < n; t++) ref_rmsnorm(x + t * H, L->attn_norm, m->rms_eps, H, h + t * H);
    ref_linear(h, n, H, L->wq, NULL, H, q);
    ref_linear(h, n, H, L->wk, NULL, H, k);
    ref_linear(h, n, H, L->wv, NULL, H, v);
    rope(q, n, m->heads, d, m->rope_base);
    rope(k, n, m->heads, d, m->rope_base);
    for (size_t i = 0; i < nh; i++) q[i] *= scale;
    attention(q, k, v, n, n, m->heads, d, 1, 0, ctx);
    ref_linear(ctx, n, H, L->wo, NULL, H, o);
    for (size_t i = 0; i < nh; i++) x[i] += o[i];
    if (L->ad_down_w) { /* ImageAdapter: x = up(GELU(down(x))) + x, every position */
      ref_linear(x, n, H, L->ad_down_w, L->ad_down_b, A, ad);
      for (int i = 0; i < n * A; i++) ad[i] = ref_gelu(ad[i]);
      ref_linear(ad, n, A, L->ad_up_w, L->ad_up_b, H, o);
      for (size_t i = 0; i < nh; i++) x[i] += o[i];
    }
    for (int t = 0; t < n; t++) ref_rmsnorm(x + t * H, L->ffn_norm, m->rms_eps, H, h + t * H);
    ref_linear(h, n, H, L->w_gate, NULL, F, g);
    ref_linear(h, n, H, L->w_up, NULL, F, u);
    for (int i = 0; i < n * F; i++) g[i] = silu(g[i]) * u[i];
    ref_linear(g, n, F, L->w_down, NULL, H, o);
    for (size_t i = 0; i < nh; i++) x[i] += o[i];
  }
  ref_rmsnorm(x + (size_t)(n - 1) * H, m->out_norm, m->rms_eps, H, h);
  ref_linear(h, 1, H, m->lm_head, NULL, m->vocab, logits);
  free(x), free(h), free(q), free(k), free(v), free(ctx), free(o), free(g), free(u), free(ad);
}

static int ends_with(const int32_t *ids, int n, const int32_t *stop, int len) {
  if (len <= 0 || n < len) return 0;
  for (int i = 0; i < len; i++)
    if (ids[n - len + i] != stop[i]) return 0;
  return 1;
}

int ref_llm_greedy(const ref_llm *m, const float *prompt, int n, int max_new, const int32_t *const *stops,
                   const int *stop_lens, int n_stops, int eos, int32_t *out_ids, float *logits0) {
  int H = m->hidden, produced = 0;
  float *seq = malloc(sizeof(float) * (size_t)(n + max_new) * H);
  float *logits = malloc(sizeof(float) * m->vocab);
  memcpy(seq, prompt, sizeof(float) * (size_t)n * H);
  for (int step = 0; step < max_new; step++) {
    ref_llm_forward(m, seq, n + step, logits);
    if (step == 0 && logits0) memcpy(logits0, logits, sizeof(float) * m->vocab);
    int best = 0; /* first maximum, as torch.argmax */
    for (int i = 1; i < m->vocab; i++)
      if (logits[i] > logits[best]) best = i;
    out_ids[produced++] = best;
    memcpy(seq + (size_t)(n + step) * H, m->tok_embd + (size_t)best * H, sizeof(float) * H);
    if (best == eos) break;
    int stop = 0;
    for (int s = 0; s < n_stops; s++) stop |= ends_with(out_ids, produced, stops[s], stop_lens[s]);
    if (stop) break;
  }
  free(seq);
  free(logits);
  return produced;
}
