/* Plain-C reference forward of ArtGPT-4 (ViT, ln_vision, Q-Former, projection,
 * LLaMA with ImageAdapters), written for readability, not speed.  It is the
 * yardstick the OpenCL stages are tested against, and is itself checked
 * against golden tensors produced by the original PyTorch code
 * (tests/data/artgpt4-tiny/make_golden.py).
 *
 * All weights are float32, Linear weights in PyTorch layout [out, in] row-major.
 * Pointers are borrowed; the caller owns every buffer. */
#ifndef AF_REF_MODEL_H
#define AF_REF_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const float *ln1_w, *ln1_b;   /* [W] */
  const float *qkv_w;           /* [3W, W] rows: Q, K, V */
  const float *qkv_b;           /* [3W]: q_bias, zeros (K has no bias), v_bias */
  const float *proj_w, *proj_b; /* [W, W], [W] */
  const float *ln2_w, *ln2_b;   /* [W] */
  const float *fc1_w, *fc1_b;   /* [M, W], [M] */
  const float *fc2_w, *fc2_b;   /* [W, M], [W] */
} ref_vit_block;

typedef struct {
  int image_size, patch_size, width, heads, mlp_width, layers;
  float ln_eps, ln_vision_eps;
  const float *patch_w, *patch_b; /* [W, 3, P, P], [W] */
  const float *cls;               /* [W] */
  const float *pos;               /* [1 + G*G, W] */
  const ref_vit_block *blocks;    /* [layers] */
  const float *lnv_w, *lnv_b;     /* ln_vision [W] */
} ref_vit;

typedef struct {
  const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; /* self-attention [D, D] */
  const float *o_w, *o_b, *ln_w, *ln_b;           /* output dense + LayerNorm */
  int has_cross;
  const float *cq_w, *cq_b;               /* cross: query [D, D] */
  const float *ck_w, *ck_b, *cv_w, *cv_b; /* cross: key/value [D, Dv] */
  const float *co_w, *co_b, *cln_w, *cln_b;
  const float *ff1_w, *ff1_b; /* intermediate_query [F, D] */
  const float *ff2_w, *ff2_b; /* output_query [D, F] */
  const float *fln_w, *fln_b;
} ref_qformer_layer;

typedef struct {
  int width, layers, heads, ffn, queries, vision_width;
  float ln_eps;
  const float *query_tokens; /* [Q, D] */
  const float *emb_ln_w, *emb_ln_b;
  const ref_qformer_layer *lay; /* [layers] */
  const float *proj_w, *proj_b; /* llama_proj [Dl, D], [Dl] */
  int proj_out;                 /* Dl */
} ref_qformer;

typedef struct {
  const float *attn_norm;              /* input_layernorm [H] */
  const float *wq, *wk, *wv, *wo;      /* [H, H] (HF layout, rotate-half RoPE) */
  const float *ad_down_w, *ad_down_b;  /* adapter [A, H], [A]; NULL = no adapter */
  const float *ad_up_w, *ad_up_b;      /* [H, A], [H] */
  const float *ffn_norm;               /* post_attention_layernorm [H] */
  const float *w_gate, *w_up, *w_down; /* [F, H], [F, H], [H, F] */
} ref_llm_layer;

typedef struct {
  int hidden, layers, heads, ffn, vocab, adapter;
  float rms_eps, rope_base;
  const float *tok_embd; /* [vocab, H] */
  const ref_llm_layer *lay;
  const float *out_norm; /* [H] */
  const float *lm_head;  /* [vocab, H] */
} ref_llm;

/* pixels [3, S, S] -> out [1 + G*G, W] (after ln_vision). */
void ref_vit_forward(const ref_vit *m, const float *pixels, float *out);

/* image tokens [T, Dv] -> q_out [Q, D] (last hidden state) and proj_out [Q, Dl]. */
void ref_qformer_forward(const ref_qformer *m, const float *image, int n_image_tokens, float *q_out,
                         float *proj_out);

/* Full (no KV cache) forward over n embedded positions x [n, H] starting at
 * position 0; writes the logits of the last position [vocab]. */
void ref_llm_forward(const ref_llm *m, const float *x, int n, float *logits);

/* Greedy decoding: prompt embeddings [n, H]; appends up to max_new ids to
 * out_ids, stopping after an id sequence in stops (each stop: len + ids) or an
 * eos id (< 0 = none).  Returns the number of ids written.  logits0 (may be
 * NULL) receives the first position's logits. */
int ref_llm_greedy(const ref_llm *m, const float *prompt, int n, int max_new, const int32_t *const *stops,
                   const int *stop_lens, int n_stops, int eos, int32_t *out_ids, float *logits0);

/* Building blocks, also used directly by op tests. */
void ref_layernorm(const float *x, const float *w, const float *b, float eps, int n, float *y);
void ref_rmsnorm(const float *x, const float *w, float eps, int n, float *y);
void ref_linear(const float *x, int rows, int in, const float *w, const float *b, int out, float *y);
float ref_gelu(float x);
void ref_softmax(float *x, int n);

#endif
