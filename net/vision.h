/* The image side of ArtGPT-4 on OpenCL (docs/model.md §3-§5):
 *   af_vit     EVA ViT-g: patch embedding, CLS, position embedding, pre-norm
 *              blocks (fused QKV with zero K bias, exact GELU MLP), ln_vision;
 *   af_qformer BLIP-2 Q-Former query path (post-LN BERT layers, cross-attention
 *              to the image tokens every cross_attention_every-th layer from
 *              layer 0) and the llama_proj projection.
 * Each processes a batch of images per call with one GEMM per linear layer
 * over the whole batch; device buffers are allocated once for max_batch.
 * Hyper-parameters come from the GGUF metadata, weights from af_weights. */
#ifndef AF_NET_VISION_H
#define AF_NET_VISION_H

#include "cl/runtime.h"
#include "cl/weights.h"

typedef struct af_vit af_vit;

typedef struct af_vit_shape {
  int image_size, patch_size, tokens, width, heads, mlp_width, layers;
  float ln_eps, ln_vision_eps;
  float mean[3], std[3];
} af_vit_shape;

/* The shape af_vit_new_sized would have, from the hyper-parameters alone
 * (checked; nothing uploaded or allocated): for a stage's negotiation. */
int af_vit_probe(const af_weights *w, int image_size, af_vit_shape *out);

/* Reads the hyper-parameters and checks every tensor's shape (missing or
 * mis-shaped tensors name the file).  Caller frees with af_vit_free. */
int af_vit_new(af_cl *cl, af_weights *w, int max_batch, af_vit **out);
/* Same for input images of image_size x image_size (0 = the model's): the
 * position grid is resized as the original interpolate_pos_embed does. */
int af_vit_new_sized(af_cl *cl, af_weights *w, int max_batch, int image_size, af_vit **out);
void af_vit_free(af_vit *v);
/* Allocates on q every buffer (scratch included) and builds every kernel that
 * encoding max_batch images needs, without computing anything (reserve mode,
 * cl/runtime.h), so that af_vit_encode then allocates nothing. */
int af_vit_reserve(af_vit *v, af_queue *q);
const af_vit_shape *af_vit_shape_of(const af_vit *v);

/* pixels: n x [3][S][S] float (host); out: n x [tokens][width] float (host),
 * the ln_vision output with CLS first.  n <= max_batch. */
int af_vit_encode(af_vit *v, af_queue *q, const float *pixels, int n, float *out);

typedef struct af_qformer af_qformer;

typedef struct af_qformer_shape {
  int width, layers, heads, ffn, queries, cross_every, vision_width, image_tokens, proj_out;
  float ln_eps;
} af_qformer_shape;

/* The shape from the hyper-parameters alone (checked; nothing uploaded). */
int af_qformer_probe(const af_weights *w, int image_tokens, af_qformer_shape *out);
/* image_tokens: tokens per image coming from the ViT (e.g. 257). */
int af_qformer_new(af_cl *cl, af_weights *w, int max_batch, int image_tokens, af_qformer **out);
void af_qformer_free(af_qformer *f);
/* As af_vit_reserve, for a forward of max_batch images with the projection. */
int af_qformer_reserve(af_qformer *f, af_queue *q);
const af_qformer_shape *af_qformer_shape_of(const af_qformer *f);

/* image: n x [image_tokens][vision_width] (host).  q_out: n x [queries][width]
 * (Q-Former output before the projection; may be NULL); proj_out: n x
 * [queries][llm hidden] (may be NULL). */
int af_qformer_forward(af_qformer *f, af_queue *q, const float *image, int n, float *q_out, float *proj_out);

#endif
