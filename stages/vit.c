/* `vit` stage: tensor "pixels" (f32 [3, S, S]) -> tensor "vit" (f32 [T, W]),
 * the EVA ViT-g output after ln_vision with the CLS token first (net/vit.c).
 * One batched forward per call on the engine's queue and shared weights. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "net/net.h"

typedef struct vit_config {
  int64_t image_size; /* 0 = the model's */
} vit_config;

typedef struct vit_stage {
  af_vit_shape shape; /* of the model at the configured input size */
  af_vit *vit;        /* sized for ctx->batch images (prepare) */
  float *in, *out;    /* host staging for one batch */
} vit_stage;

static int vit_create(const af_stage_ctx *ctx, const void *config, void **self) {
  vit_stage *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  return af_vit_probe(ctx->weights, (int)((const vit_config *)config)->image_size, &s->shape);
}

static int vit_negotiate(void *self, const af_stage_ctx *ctx, af_bindings *dims) {
  const af_vit_shape *v = &((vit_stage *)self)->shape;
  return af_bind(dims, "S", v->image_size) || af_bind(dims, "T", v->tokens) || af_bind(dims, "W", v->width);
}

static int vit_prepare(void *self, const af_stage_ctx *ctx, const af_tensor_desc *inputs) {
  vit_stage *s = self;
  size_t npix = 3 * (size_t)s->shape.image_size * s->shape.image_size,
         nout = (size_t)s->shape.tokens * s->shape.width;
  s->in = malloc(sizeof(float) * npix * (size_t)ctx->batch);
  s->out = malloc(sizeof(float) * nout * (size_t)ctx->batch);
  if (!s->in || !s->out) return af_err(AF_ERR_NOMEM, "vit: out of memory for a batch of %d", ctx->batch);
  int rc = af_vit_new_sized(ctx->cl, ctx->weights, ctx->batch, s->shape.image_size, &s->vit);
  return rc ? rc : af_vit_reserve(s->vit, ctx->queue);
}

static af_flow vit_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  vit_stage *s = self;
  const af_vit_shape *vs = &s->shape;
  size_t npix = 3 * (size_t)vs->image_size * vs->image_size, nout = (size_t)vs->tokens * vs->width;
  int m = 0;
  af_item *batch[n];
  for (int i = 0; i < n; i++) {
    const af_tensor *t = af_item_tensor(items[i], "pixels");
    if (!t || t->dtype != AF_DTYPE_F32 || t->bytes != npix * sizeof(float)) {
      af_item_fail(items[i], ctx->instance, "%s: 'pixels' must be f32[3,%d,%d] for this model",
                   items[i]->path ? items[i]->path : items[i]->id, vs->image_size, vs->image_size);
      continue;
    }
    memcpy(s->in + npix * m, t->data, npix * sizeof(float));
    batch[m++] = items[i];
  }
  if (m == 0) return AF_FLOW_OK;
  if (af_vit_encode(s->vit, ctx->queue, s->in, m, s->out)) return AF_FLOW_ERROR;
  int64_t shape[2] = {vs->tokens, vs->width};
  for (int i = 0; i < m; i++) {
    void *data;
    if (af_item_add_tensor(batch[i], "vit", AF_DTYPE_F32, 2, shape, &data)) {
      af_item_fail(batch[i], ctx->instance, "%s", af_error_message());
      af_error_clear();
      continue;
    }
    memcpy(data, s->out + nout * i, nout * sizeof(float));
  }
  return AF_FLOW_OK;
}

static void vit_destroy(void *self) {
  vit_stage *s = self;
  if (!s) return;
  af_vit_free(s->vit);
  free(s->in);
  free(s->out);
  free(s);
}

static const af_param vit_params[] = {
    {"image_size", AF_PARAM_INT, offsetof(vit_config, image_size), "0", 0, 4096, NULL,
     "input side S (0 = the model's); another size resizes the position grid like the original", 0},
};
static const af_port vit_inputs[] = {
    {"pixels", "f32[3,S,S]", "normalised image from preprocess (S = the model's image size)", 0},
};
static const af_port vit_outputs[] = {
    {"vit", "f32[T,W]", "image tokens after ln_vision [tokens, vision width], CLS first", 0},
};

const af_stage_desc af_stage_vit = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "vit",
    .doc = "EVA ViT-g image encoder + ln_vision on the OpenCL device -> f32[tokens, width]",
    .kind = AF_STAGE_TRANSFORM,
    .flags = AF_STAGE_NEEDS_DEVICE | AF_STAGE_NEEDS_MODEL,
    .params = vit_params,
    .n_params = AF_ARRAY_LEN(vit_params),
    .config_size = sizeof(vit_config),
    .inputs = vit_inputs,
    .n_inputs = AF_ARRAY_LEN(vit_inputs),
    .outputs = vit_outputs,
    .n_outputs = AF_ARRAY_LEN(vit_outputs),
    .batch_size = 4,
    .create = vit_create,
    .negotiate = vit_negotiate,
    .prepare = vit_prepare,
    .process = vit_process,
    .destroy = vit_destroy,
};
