/* The language model of ArtGPT-4 on OpenCL (docs/model.md §6): LLaMA decoder
 * layers with the ImageAdapter after the attention residual, a device KV
 * cache, prefill of many positions through GEMMs and single-position decode
 * steps through GEMVs, for one sequence or B sequences at once (batched
 * decode, each sequence in its own KV-cache slot at its own position).
 * Without adapter tensors in the file it is plain MiniGPT-4 / Vicuna.
 * Weights come from af_weights (fp32, fp16 or Q8_0/Q4_0 on the device, see
 * the profile's `weights:`). */
#ifndef AF_NET_LM_H
#define AF_NET_LM_H

#include <stdint.h>

#include "cl/runtime.h"
#include "cl/weights.h"

typedef struct af_lm_shape {
  int hidden, layers, heads, ffn, vocab, adapter, ctx;
  float rms_eps, rope_base;
  int rope_interleaved; /* 1 for llama.cpp-permuted q/k rows (no artflow.rope_layout = neox) */
} af_lm_shape;

typedef struct af_lm af_lm;

/* max_ctx: positions one sequence may hold (0 = the file's
 * llama.context_length).  Checks every tensor's shape.  The KV cache is
 * allocated on first use, or ahead by af_lm_reserve. */
int af_lm_new(af_cl *cl, af_weights *w, int max_ctx, af_lm **out);
void af_lm_free(af_lm *m);
const af_lm_shape *af_lm_shape_of(const af_lm *m);

/* KV cache: `slots` independent sequences of up to `positions` each (<= ctx).
 * Grows the cache to at least that (never shrinks; cached values are kept).
 * Prefill and decode grow it on their own when a slot or position lies
 * outside it (positions doubling up to ctx), so reserving is optional; it
 * avoids the regrowth copies and sizes the cache exactly.  Storage is fp16
 * (vstore_half) or fp32 by the device profile's kv_cache key (auto: fp16
 * unless the file's LLM matrices are fp32, so fp32 models stay exact). */
int af_lm_reserve(af_lm *m, af_queue *q, int slots, int positions);
int af_lm_kv_half(const af_lm *m);
/* device bytes the KV cache takes now (all layers, K and V) */
uint64_t af_lm_kv_bytes(const af_lm *m);

/* Frees the work buffers sized for the longest prefill so far and the fp32
 * scratch matrix of its GEMMs (the KV cache stays): e.g. after a batch's
 * prefill, before its decode steps, which need buffers for a few rows only.
 * The next call grows them again. */
void af_lm_trim(af_lm *m);

/* Token embeddings (host): out[i] = token_embd[ids[i]] (n x hidden floats). */
int af_lm_embed(const af_lm *m, const int32_t *ids, int n, float *out);

/* Runs n positions x (host, n x hidden) of the sequence in `slot` at
 * positions pos0.. through every layer, appending their keys/values to that
 * slot's cache (positions >= pos0 are overwritten), and writes the logits of
 * the last position (vocab floats).  n > 1 goes through GEMMs, n = 1 GEMVs. */
int af_lm_prefill(af_lm *m, af_queue *q, int slot, const float *x, int n, int pos0, float *logits);
/* The same with the logits of every position (n x vocab floats; position i
 * predicts the token after it): for comparing two models over a text
 * (`artflow bench --reference`). */
int af_lm_prefill_all(af_lm *m, af_queue *q, int slot, const float *x, int n, int pos0, float *logits);
/* B prompts in one pass: x holds lens[0] rows for slot slots[0], then
 * lens[1] rows for slots[1], ... (positions 0.. of each; the slots must
 * differ); logits (B x vocab) of each prompt's last position.  The weights
 * are read (and, for fp16/quantised ones, widened) once for all rows: the
 * GEMMs get sum(lens) rows.  With the profile's own GEMM (AF_GEMM_IMPL:
 * tiled) the logits and cache entries equal B af_lm_prefill calls bit for
 * bit (rows in chunks that kernel computes row by row); with CLBlast they
 * can differ in the last bits. */
int af_lm_prefill_batch(af_lm *m, af_queue *q, int B, const int *slots, const int *lens, const float *x,
                        float *logits);
/* Branches off a shared prefix, for scoring several continuations of one
 * prompt at once: `slot` holds positions 0..shared-1 of a sequence.  Branch
 * b continues it with lens[b] rows (x: the rows of branch 0, then branch 1,
 * ..., each row the embedding of a token), at positions shared, shared+1, ...
 * as if it were alone: it sees the prefix and its own earlier rows, never
 * another branch's.  Their keys/values are stored after the prefix
 * (overwriting what was there), so the prefix stays as it was for the next
 * call.  logits: every row's (sum(lens) x vocab).  The layers run as GEMMs
 * over all rows. */
int af_lm_branches(af_lm *m, af_queue *q, int slot, int shared, int n_branch, const int *lens, const float *x,
                   float *logits);

/* Rows placed one by one, for a tree of continuations evaluated in one pass
 * (scoring: questions that branch off a cached prefix, candidate answers that
 * branch off a question).  Row r is the embedding x[r]; it goes to KV-cache
 * slot rows[r].slot at position rows[r].pos (its key/value stored there), is
 * RoPE'd at rows[r].rope (the position it would have alone) and attends to
 * that slot's cached positions 0..pos except hole_begin <= j < hole_end
 * (empty when equal): keys written by this call at lower positions are seen
 * too, so a row sees the rows of its own branch before it.  logits:
 * n_out x vocab, of rows out[0..n_out) in that order; the layers and the
 * lm_head run as GEMMs over all rows. */
typedef struct af_lm_row {
  int slot, pos, rope, hole_begin, hole_end;
} af_lm_row;
int af_lm_rows(af_lm *m, af_queue *q, int n, const af_lm_row *rows, const float *x, int n_out, const int *out,
               float *logits);
/* Copies positions 0..n-1 of KV-cache slot src to slot dst (every layer's
 * keys and values, on the device): a prefix computed once, reused by
 * sequences that branch off it in different slots. */
int af_lm_copy_prefix(af_lm *m, af_queue *q, int src, int dst, int n);

/* af_lm_prefill on slot 0 */
int af_lm_forward(af_lm *m, af_queue *q, const float *x, int n, int pos0, float *logits);

/* One new position for each of B sequences in one pass: row b of x (B x
 * hidden, host) goes to slot slots[b] at position pos[b] (the slot's cache
 * must hold positions 0..pos[b]-1 of that sequence); logits (B x vocab).
 * The weights are read once for up to 8 rows (GEMV with B vectors). */
int af_lm_decode_batch(af_lm *m, af_queue *q, int B, const int *slots, const int *pos, const float *x,
                       float *logits);

#endif
