/* `qformer` stage: tensor "vit" (f32 [T, V]) -> tensors "qformer"
 * (f32 [Q, D], before the projection) and "proj" (f32 [Q, L], the image
 * embeddings the LLM receives).  Batched (net/qformer.c) on the engine's
 * queue and shared weights; T is whatever the vit stage negotiated. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "net/net.h"

typedef struct qf_config {
  int keep_vit;
} qf_config;

typedef struct qf_stage {
  af_qformer_shape shape;
  af_qformer *f; /* sized for ctx->batch images of shape.image_tokens tokens */
  int keep_vit;
  float *in, *qout, *pout; /* host staging for one batch */
} qf_stage;

static int qf_create(const af_stage_ctx *ctx, const void *config, void **self) {
  qf_stage *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->keep_vit = ((const qf_config *)config)->keep_vit;
  return af_qformer_probe(ctx->weights, 0, &s->shape);
}

static int qf_negotiate(void *self, const af_stage_ctx *ctx, af_bindings *dims) {
  const af_qformer_shape *q = &((qf_stage *)self)->shape;
  return af_bind(dims, "V", q->vision_width) || af_bind(dims, "Q", q->queries) ||
         af_bind(dims, "D", q->width) || af_bind(dims, "L", q->proj_out);
}

/* image tokens per item: what the producer negotiated, else the model's own */
static int image_tokens(const af_stage_ctx *ctx, const af_tensor_desc *in) {
  if (in && in->ndim == 2 && in->shape[0] > 0) return (int)in->shape[0];
  af_vit_shape vs;
  return af_vit_probe(ctx->weights, 0, &vs) ? -1 : vs.tokens;
}

static int qf_prepare(void *self, const af_stage_ctx *ctx, const af_tensor_desc *inputs) {
  qf_stage *s = self;
  int T = image_tokens(ctx, &inputs[0]);
  if (T < 1) return af_error_code();
  s->shape.image_tokens = T;
  size_t B = (size_t)ctx->batch, Q = (size_t)s->shape.queries;
  s->in = malloc(sizeof(float) * B * (size_t)T * s->shape.vision_width);
  s->qout = malloc(sizeof(float) * B * Q * s->shape.width);
  s->pout = malloc(sizeof(float) * B * Q * s->shape.proj_out);
  if (!s->in || !s->qout || !s->pout)
    return af_err(AF_ERR_NOMEM, "qformer: out of memory for a batch of %d", ctx->batch);
  int rc = af_qformer_new(ctx->cl, ctx->weights, ctx->batch, T, &s->f);
  return rc ? rc : af_qformer_reserve(s->f, ctx->queue);
}

static af_flow qf_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  qf_stage *s = self;
  const af_qformer_shape *fs = &s->shape;
  size_t nin = (size_t)fs->image_tokens * fs->vision_width, nq = (size_t)fs->queries * fs->width;
  size_t np = (size_t)fs->queries * fs->proj_out;
  af_item *batch[n];
  int m = 0;
  for (int i = 0; i < n; i++) {
    const af_tensor *t = af_item_tensor(items[i], "vit");
    if (!t || t->dtype != AF_DTYPE_F32 || t->bytes != nin * sizeof(float)) {
      af_item_fail(items[i], ctx->instance, "%s: 'vit' must be f32[%d,%d] for this model",
                   items[i]->path ? items[i]->path : items[i]->id, fs->image_tokens, fs->vision_width);
      continue;
    }
    memcpy(s->in + nin * m, t->data, nin * sizeof(float));
    batch[m++] = items[i];
  }
  if (m == 0) return AF_FLOW_OK;
  if (af_qformer_forward(s->f, ctx->queue, s->in, m, s->qout, s->pout)) return AF_FLOW_ERROR;
  int64_t qshape[2] = {fs->queries, fs->width}, pshape[2] = {fs->queries, fs->proj_out};
  for (int i = 0; i < m; i++) {
    void *a, *b;
    if (af_item_add_tensor(batch[i], "qformer", AF_DTYPE_F32, 2, qshape, &a) ||
        af_item_add_tensor(batch[i], "proj", AF_DTYPE_F32, 2, pshape, &b)) {
      af_item_fail(batch[i], ctx->instance, "%s", af_error_message());
      af_error_clear();
      continue;
    }
    memcpy(a, s->qout + nq * i, nq * sizeof(float));
    memcpy(b, s->pout + np * i, np * sizeof(float));
    if (!s->keep_vit) af_item_drop_tensor(batch[i], "vit");
  }
  return AF_FLOW_OK;
}

static void qf_destroy(void *self) {
  qf_stage *s = self;
  if (!s) return;
  af_qformer_free(s->f);
  free(s->in);
  free(s->qout);
  free(s->pout);
  free(s);
}

static const af_param qf_params[] = {
    {"keep_vit", AF_PARAM_BOOL, offsetof(qf_config, keep_vit), "false", 0, 0, NULL,
     "keep the 'vit' tensor on the item (default: drop it, it is large)", 0},
};
static const af_port qf_inputs[] = {
    {"vit", "f32[T,V]", "image tokens after ln_vision (from vit; V = the model's vision width)", 0},
};
static const af_port qf_outputs[] = {
    {"qformer", "f32[Q,D]", "Q-Former output [queries, width], before the projection", 0},
    {"proj", "f32[Q,L]", "image embeddings for the LLM [queries, llm hidden]", 0},
};

const af_stage_desc af_stage_qformer = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "qformer",
    .doc = "BLIP-2 Q-Former (32 queries, cross-attention to the image) + llama_proj on the OpenCL device",
    .kind = AF_STAGE_TRANSFORM,
    .flags = AF_STAGE_NEEDS_DEVICE | AF_STAGE_NEEDS_MODEL,
    .params = qf_params,
    .n_params = AF_ARRAY_LEN(qf_params),
    .config_size = sizeof(qf_config),
    .inputs = qf_inputs,
    .n_inputs = AF_ARRAY_LEN(qf_inputs),
    .outputs = qf_outputs,
    .n_outputs = AF_ARRAY_LEN(qf_outputs),
    .batch_size = 8,
    .create = qf_create,
    .negotiate = qf_negotiate,
    .prepare = qf_prepare,
    .process = qf_process,
    .destroy = qf_destroy,
};
