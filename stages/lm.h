/* The language model of ArtGPT-4 on OpenCL (model-spec §6): LLaMA decoder
 * layers with the ImageAdapter after the attention residual, a device KV
 * cache, prefill of many positions through GEMMs and single-position decode
 * steps through GEMVs.  Without adapter tensors in the file it is plain
 * MiniGPT-4 / Vicuna.  Weights come from af_weights (kept as fp32 copies on
 * the device in this version). */
#ifndef AF_STAGES_LM_H
#define AF_STAGES_LM_H

#include <stdint.h>

#include "cl/runtime.h"
#include "cl/weights.h"

typedef struct af_lm_shape {
  int hidden, layers, heads, ffn, vocab, adapter, ctx;
  float rms_eps, rope_base;
  int rope_interleaved; /* 1 for llama.cpp-permuted q/k rows (no artflow.rope_layout = neox) */
} af_lm_shape;

typedef struct af_lm af_lm;

/* max_ctx: KV-cache length (positions).  Checks every tensor's shape. */
int af_lm_new(af_cl *cl, af_weights *w, int max_ctx, af_lm **out);
void af_lm_free(af_lm *m);
const af_lm_shape *af_lm_shape_of(const af_lm *m);

/* Token embeddings (host): out[i] = token_embd[ids[i]] (n x hidden floats). */
int af_lm_embed(const af_lm *m, const int32_t *ids, int n, float *out);

/* Runs n positions x (host, n x hidden) at positions pos0.. through every
 * layer, appending their keys/values to the cache (positions >= pos0 are
 * overwritten), and writes the logits of the last position (vocab floats). */
int af_lm_forward(af_lm *m, af_queue *q, const float *x, int n, int pos0, float *logits);

#endif
