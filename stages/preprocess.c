/* `preprocess` stage: tensor "rgb" (u8 [H, W, 3]) -> tensor "pixels"
 * (f32 [3, S, S]): Pillow-exact BICUBIC resize to S x S (aspect ratio not
 * kept, as the reference's Resize((S, S)) does), then ToTensor (/255) and
 * the per-channel mean/std normalisation (CLIP constants by default).
 *
 * The resize runs on the host (image/resample.c).  The normalisation runs
 * as an OpenCL kernel on the stage's queue when the pipeline has a device
 * open (some stage needs one) and on the host otherwise ("normalize_on:
 * auto"); both are a table look-up and give identical bits.  The full-size "rgb" tensor is dropped
 * after use unless keep_rgb is set, to keep memory per item small. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "image/image.h"

enum { NORM_AUTO = 0, NORM_HOST = 1, NORM_DEVICE = 2 };

typedef struct pre_config {
  int64_t image_size;
  af_strlist mean, std;
  int keep_rgb;
  int normalize_on;
} pre_config;

typedef struct pre_stage {
  int size;
  int keep_rgb;
  int use_cl;
  int warned;
  float lut[3 * 256];
  struct af_queue *q;  /* the engine's queue for this stage, or NULL */
  af_normalizer *norm; /* device buffers for a batch (prepare), when use_cl */
  uint8_t *batch;      /* resized images of one batch, for the device path */
  float *planes;
  unsigned char *ok; /* per image of the batch: resized fine */
  int cap;           /* images the two buffers hold */
} pre_stage;

static int parse3(const af_strlist *l, const char *what, int positive, float out[3]) {
  if (l->n != 3) return af_err(AF_ERR_CONFIG, "preprocess: %s needs 3 values (R, G, B), got %d", what, l->n);
  for (int i = 0; i < 3; i++) {
    char *end;
    double v = strtod(l->v[i], &end);
    if (end == l->v[i] || *end || (positive && !(v > 0)))
      return af_err(AF_ERR_CONFIG, "preprocess: %s[%d] = '%s' is not a %snumber", what, i, l->v[i],
                    positive ? "positive " : "");
    out[i] = (float)v;
  }
  return 0;
}

static int pre_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const pre_config *c = config;
  pre_stage *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->size = (int)c->image_size;
  s->keep_rgb = c->keep_rgb;
  float mean[3], std[3];
  int rc = parse3(&c->mean, "mean", 0, mean);
  if (!rc) rc = parse3(&c->std, "std", 1, std);
  if (rc) return rc;
  af_image_norm_lut(mean, std, s->lut);
  s->q = ctx->queue;
  if (c->normalize_on == NORM_DEVICE && !s->q)
    return af_err(AF_ERR_CONFIG,
                  "preprocess: normalize_on: device, but no stage of this pipeline "
                  "opens an OpenCL device (use auto or host)");
  s->use_cl = s->q && c->normalize_on != NORM_HOST;
  return 0;
}

/* Checks the input and resizes it into dst (S*S*3); fails the item if bad. */
static int resize_item(pre_stage *s, const af_stage_ctx *ctx, af_item *it, uint8_t *dst) {
  const af_tensor *t = af_item_tensor(it, "rgb");
  if (!t) {
    af_item_fail(it, ctx->instance, "%s: no 'rgb' tensor (is a decode stage before preprocess?)",
                 it->path ? it->path : it->id);
    return -1;
  }
  if (t->dtype != AF_DTYPE_U8 || t->ndim != 3 || t->shape[2] != 3 || t->shape[0] < 1 || t->shape[1] < 1 ||
      t->shape[0] > 1 << 30 || t->shape[1] > 1 << 30) {
    af_item_fail(it, ctx->instance, "%s: 'rgb' must be u8[H,W,3], got %s with %d dims",
                 it->path ? it->path : it->id, af_dtype_name(t->dtype), t->ndim);
    return -1;
  }
  af_error_clear();
  if (af_image_resize_bicubic(t->data, (int)t->shape[1], (int)t->shape[0], dst, s->size, s->size)) {
    af_item_fail(it, ctx->instance, "%s: resize: %s", it->path ? it->path : it->id, af_error_message());
    af_error_clear();
    return -1;
  }
  if (!s->keep_rgb) af_item_drop_tensor(it, "rgb");
  return 0;
}

/* buffers for a batch of n images (prepare) */
static int reserve(pre_stage *s, int n) {
  size_t px = (size_t)s->size * s->size;
  uint8_t *b = realloc(s->batch, px * 3 * n);
  if (!b) return af_err(AF_ERR_NOMEM, "preprocess: out of memory");
  s->batch = b;
  float *p = realloc(s->planes, px * 3 * sizeof(float) * n);
  if (!p) return af_err(AF_ERR_NOMEM, "preprocess: out of memory");
  s->planes = p;
  unsigned char *o = realloc(s->ok, (size_t)n);
  if (!o) return af_err(AF_ERR_NOMEM, "preprocess: out of memory");
  s->ok = o;
  s->cap = n;
  return 0;
}

static int pre_prepare(void *self, const af_stage_ctx *ctx, const af_tensor_desc *inputs) {
  pre_stage *s = self;
  int rc = reserve(s, ctx->batch);
  if (!rc && s->use_cl && af_normalizer_new(s->q, ctx->batch, (size_t)s->size * s->size, s->lut, &s->norm)) {
    /* the host gives the same bits: note it and go on without the device */
    if (ctx->log)
      ctx->log(ctx, AF_LOG_WARN, "device normalisation unavailable (%s); using the host", af_error_message());
    af_error_clear();
    s->use_cl = 0;
  }
  return rc;
}

static af_flow pre_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  pre_stage *s = self;
  size_t px = (size_t)s->size * s->size;
  int64_t shape[3] = {3, s->size, s->size};
  if (n > s->cap) return af_err(AF_ERR_INVALID, "preprocess: batch %d over %d", n, s->cap), AF_FLOW_ERROR;
  unsigned char *ok = s->ok;
  int n_ok = 0;
  for (int i = 0; i < n; i++) {
    ok[i] = resize_item(s, ctx, items[i], s->batch + px * 3 * i) == 0;
    if (!ok[i]) memset(s->batch + px * 3 * i, 0, px * 3); /* defined bytes for the device */
    n_ok += ok[i];
  }

  int device_done = 0;
  if (s->use_cl && n_ok) {
    int rc = af_normalizer_run(s->norm, s->batch, n, s->planes);
    if (rc) {
      /* Same bits on the host: a device hiccup must not cost the items. */
      if (!s->warned && ctx->log)
        ctx->log(ctx, AF_LOG_WARN, "device normalisation failed (%s); using the host", af_error_message());
      s->warned = 1;
      af_error_clear();
    } else {
      device_done = 1;
    }
  }
  for (int i = 0; i < n; i++) {
    if (!ok[i]) continue;
    void *data = NULL;
    if (af_item_add_tensor(items[i], "pixels", AF_DTYPE_F32, 3, shape, &data)) {
      af_item_fail(items[i], ctx->instance, "%s: %s", items[i]->id, af_error_message());
      af_error_clear();
      continue;
    }
    if (device_done)
      memcpy(data, s->planes + px * 3 * i, px * 3 * sizeof(float));
    else
      af_image_normalize_ref(s->batch + px * 3 * i, px, s->lut, data);
  }
  return AF_FLOW_OK;
}

static void pre_destroy(void *self) {
  pre_stage *s = self;
  if (!s) return;
  af_normalizer_free(s->norm);
  free(s->batch);
  free(s->planes);
  free(s->ok);
  free(s);
}

static const af_param pre_params[] = {
    {"image_size", AF_PARAM_INT, offsetof(pre_config, image_size), "224", 1, 4096, NULL,
     "output side S: images are resized to S x S (aspect ratio not kept), Pillow BICUBIC", 0},
    {"mean", AF_PARAM_STRLIST, offsetof(pre_config, mean), "0.48145466,0.4578275,0.40821073", 0, 0, NULL,
     "per-channel mean (R, G, B) subtracted after /255 (default: OpenAI CLIP)", 0},
    {"std", AF_PARAM_STRLIST, offsetof(pre_config, std), "0.26862954,0.26130258,0.27577711", 0, 0, NULL,
     "per-channel standard deviation (R, G, B) divided by (default: OpenAI CLIP)", 0},
    {"keep_rgb", AF_PARAM_BOOL, offsetof(pre_config, keep_rgb), "false", 0, 0, NULL,
     "keep the full-size 'rgb' tensor on the item (default: drop it to save memory)", 0},
    {"normalize_on", AF_PARAM_ENUM, offsetof(pre_config, normalize_on), "auto", 0, 0, "auto|host|device",
     "where /255 and mean/std run: auto = the OpenCL device when the pipeline has one open",
     AF_PARAM_RUNTIME},
};

static const af_port pre_inputs[] = {
    {"rgb", "u8[*,*,3]", "image, 8-bit RGB interleaved (from decode)", 0},
};
static const af_port pre_outputs[] = {
    {"pixels", "f32[3,image_size,image_size]", "normalised image, channels first (R, G, B)", 0},
};

const af_stage_desc af_stage_preprocess = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "preprocess",
    .doc = "resize to S x S with Pillow-exact BICUBIC, /255, mean/std normalise -> f32[3,S,S]",
    .kind = AF_STAGE_TRANSFORM,
    .params = pre_params,
    .n_params = AF_ARRAY_LEN(pre_params),
    .config_size = sizeof(pre_config),
    .inputs = pre_inputs,
    .n_inputs = AF_ARRAY_LEN(pre_inputs),
    .outputs = pre_outputs,
    .n_outputs = AF_ARRAY_LEN(pre_outputs),
    .batch_size = 8,
    .flags = AF_STAGE_USES_DEVICE,
    .create = pre_create,
    .prepare = pre_prepare,
    .process = pre_process,
    .destroy = pre_destroy,
};
