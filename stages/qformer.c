/* `qformer` stage: tensor "vit" (f32 [T, Dv]) -> tensors "qformer"
 * (f32 [Q, D], before the projection) and "proj" (f32 [Q, Dl], the image
 * embeddings the LLM receives).  Batched (net/qformer.c). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "formats/gguf.h"
#include "net/vision.h"

typedef struct qf_config {
  int keep_vit;
} qf_config;

typedef struct qf_stage {
  af_cl *cl;
  af_weights *w;
  af_qformer *f;
  af_queue *q;
  int cap, tokens, keep_vit;
  float *in, *qout, *pout;
} qf_stage;

static int qf_create(const af_stage_ctx *ctx, const void *config, void **self) {
  qf_stage *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cl = (af_cl *)ctx->cl;
  s->keep_vit = ((const qf_config *)config)->keep_vit;
  uint32_t S = 0, P = 0;
  int rc = af_weights_open(s->cl, ctx->model_path, &s->w);
  if (!rc && (af_gguf_get_u32(af_weights_gguf(s->w), "vision.image_size", &S) ||
              af_gguf_get_u32(af_weights_gguf(s->w), "vision.patch_size", &P) || P == 0))
    rc = af_err(AF_ERR_FORMAT, "%s: vision.image_size / patch_size missing", ctx->model_path);
  if (!rc) {
    s->tokens = 1 + (int)((S / P) * (S / P));
    rc = af_qformer_new(s->cl, s->w, 1, s->tokens, &s->f);
  }
  return rc;
}

static af_flow qf_process_batch(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  qf_stage *s = self;
  const af_qformer_shape *fs = af_qformer_shape_of(s->f);
  size_t nin = (size_t)s->tokens * fs->vision_width, nq = (size_t)fs->queries * fs->width;
  size_t np = (size_t)fs->queries * fs->proj_out;
  if (!s->q && af_queue_new(s->cl, &s->q)) return AF_FLOW_ERROR;
  const af_tensor *first = af_item_tensor(items[0], "vit");
  if (first && first->ndim == 2 && first->shape[0] != s->tokens && first->shape[0] > 1 &&
      first->shape[0] < 100000) {
    s->tokens = (int)first->shape[0]; /* the vit stage runs at another image size */
    s->cap = 0;
    nin = (size_t)s->tokens * fs->vision_width;
  }
  if (n > s->cap) {
    af_qformer *f = NULL;
    if (af_qformer_new(s->cl, s->w, n > s->cap ? n : s->cap, s->tokens, &f)) return AF_FLOW_ERROR;
    af_qformer_free(s->f);
    s->f = f;
    fs = af_qformer_shape_of(f);
    float *a = realloc(s->in, sizeof(float) * nin * n), *b = realloc(s->qout, sizeof(float) * nq * n),
          *c = realloc(s->pout, sizeof(float) * np * n);
    if (a) s->in = a;
    if (b) s->qout = b;
    if (c) s->pout = c;
    if (!a || !b || !c) return af_err(AF_ERR_NOMEM, "qformer: out of memory"), AF_FLOW_ERROR;
    s->cap = n;
  }
  af_item *batch[n];
  int m = 0;
  for (int i = 0; i < n; i++) {
    const af_tensor *t = af_item_tensor(items[i], "vit");
    if (!t || t->dtype != AF_DTYPE_F32 || t->bytes != nin * sizeof(float)) {
      af_item_fail(items[i], ctx->instance, "%s: 'vit' must be f32[%d,%d] for this model",
                   items[i]->path ? items[i]->path : items[i]->id, s->tokens, fs->vision_width);
      continue;
    }
    memcpy(s->in + nin * m, t->data, nin * sizeof(float));
    batch[m++] = items[i];
  }
  if (m == 0) return AF_FLOW_OK;
  if (af_qformer_forward(s->f, s->q, s->in, m, s->qout, s->pout)) return AF_FLOW_ERROR;
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

/* one batch in this device's model turn (af_weights_turn_begin) */
static af_flow qf_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  qf_stage *s = self;
  int took = af_weights_turn_begin(s->w);
  af_flow f = qf_process_batch(self, ctx, items, n);
  af_weights_turn_end(s->w, took);
  return f;
}

static void qf_destroy(void *self) {
  qf_stage *s = self;
  if (!s) return;
  af_queue_free(s->q);
  af_qformer_free(s->f);
  af_weights_free(s->w);
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
    {"vit", "f32[*,*]", "image tokens after ln_vision (from vit)", 0},
};
static const af_port qf_outputs[] = {
    {"qformer", "f32[*,*]", "Q-Former output [queries, width], before the projection", 0},
    {"proj", "f32[*,*]", "image embeddings for the LLM [queries, llm hidden]", 0},
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
    .process = qf_process,
    .destroy = qf_destroy,
};
