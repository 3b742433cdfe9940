/* `decode` stage: reads each item's file with libvips and attaches the image
 * as tensor "rgb" (u8 [H, W, 3], interleaved), converted as Pillow's
 * Image.open(path).convert('RGB') does (see image/decode.c for the rules).
 * A file that cannot be decoded fails its item with a one-line reason naming
 * the file; the pipeline goes on.  So does a file that is not a regular file
 * (a FIFO in the collection: refused without being opened) and a file whose
 * decode passes the `deadline` (image/decode_guard.c).  libvips' warnings
 * for a file go into its record as meta "decode_warnings" and the log.
 *
 * Memory: a full-size 4000x3000 image is 36 MB and every queue between stages
 * holds up to its depth in items.  With `resize: S` (same S as preprocess'
 * image_size) the image is resized right after decoding; preprocess then
 * sees S x S input, which it passes through unchanged, so the output bits are
 * the same as resizing in preprocess. */
#include <stddef.h>
#include <stdlib.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "image/image.h"

typedef struct decode_config {
  int64_t max_pixels;
  int64_t resize;
  int fail_on; /* index into "none|truncated|error|warning" = af_fail_on */
  double deadline;
} decode_config;

typedef struct decode_stage {
  af_decode_opts opts;
  int resize;
} decode_stage;

static int decode_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const decode_config *c = config;
  decode_stage *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->opts.max_pixels = c->max_pixels > 0 ? c->max_pixels : -1; /* 0 = no limit */
  s->opts.fail_on = (af_fail_on)c->fail_on;
  s->opts.deadline_s = c->deadline;
  s->resize = (int)c->resize;
  return af_image_init(); /* start libvips here, not on the first item */
}

static af_flow decode_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  decode_stage *s = self;
  for (int i = 0; i < n; i++) {
    af_item *it = items[i];
    if (!it->path) {
      af_item_fail(it, ctx->instance, "%s: item has no file path", it->id ? it->id : "?");
      continue;
    }
    af_image_u8 im;
    af_decode_notes notes;
    af_error_clear();
    int rc = af_image_decode_notes(it->path, &s->opts, &im, &notes);
    if (notes.n > 0) {
      /* libvips' warnings belong to this item: in its record and the log */
      (void)af_item_set_meta(it, "decode_warnings", notes.text);
      if (ctx->log) ctx->log(ctx, AF_LOG_WARN, "%s: %s", it->path, notes.text);
    }
    if (rc) {
      af_item_fail(it, ctx->instance, "%s", af_error_message());
      af_error_clear();
      continue;
    }
    if (s->resize > 0 && (im.w != s->resize || im.h != s->resize)) {
      uint8_t *small = malloc((size_t)s->resize * s->resize * 3);
      int rc = small ? af_image_resize_bicubic(im.data, im.w, im.h, small, s->resize, s->resize)
                     : af_err(AF_ERR_NOMEM, "out of memory");
      af_image_free(&im);
      if (rc) {
        free(small);
        af_item_fail(it, ctx->instance, "%s: resize: %s", it->path, af_error_message());
        af_error_clear();
        continue;
      }
      im.data = small;
      im.w = im.h = s->resize;
    }
    int64_t shape[3] = {im.h, im.w, 3};
    /* ownership of im.data passes to the item (freed by it even on failure) */
    if (af_item_put_tensor(it, "rgb", AF_DTYPE_U8, 3, shape, im.data)) {
      af_item_fail(it, ctx->instance, "%s: %s", it->path, af_error_message());
      af_error_clear();
    }
  }
  return AF_FLOW_OK;
}

static void decode_destroy(void *self) {
  free(self);
}

static const af_param decode_params[] = {
    {"max_pixels", AF_PARAM_INT, offsetof(decode_config, max_pixels), "100000000", 0, 1e12, NULL,
     "refuse images with more pixels than this (width*height, read from the header "
     "before decoding); 0 = no limit",
     0},
    {"resize", AF_PARAM_INT, offsetof(decode_config, resize), "0", 0, 4096, NULL,
     "if > 0, resize to resize x resize here (Pillow BICUBIC, the same bits preprocess gives) "
     "so only small images travel to the next stage; 0 = full size",
     0},
    {"deadline", AF_PARAM_FLOAT, offsetof(decode_config, deadline), "60", 0, 86400, NULL,
     "seconds one file may take to decode (a stuck read on slow storage, a pathological file); "
     "past it the item fails and the run goes on; 0 = no deadline",
     0},
    {"fail_on", AF_PARAM_ENUM, offsetof(decode_config, fail_on), "error", 0, 0,
     "none|truncated|error|warning",
     "how damaged a file may be: none decodes what it can, error (default) rejects truncated "
     "and corrupt files, warning also rejects files the decoder only warns about",
     0},
};

static const af_port decode_outputs[] = {
    {"rgb", "u8[*,*,3]", "the image, 8-bit RGB interleaved, rows top to bottom", 0},
};

const af_stage_desc af_stage_decode = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "decode",
    .doc =
        "decode image files (JPEG, PNG, WebP, TIFF, GIF, HEIF/AVIF, ...) to 8-bit RGB as "
        "Pillow's convert('RGB') does",
    .kind = AF_STAGE_TRANSFORM,
    .params = decode_params,
    .n_params = AF_ARRAY_LEN(decode_params),
    .config_size = sizeof(decode_config),
    .outputs = decode_outputs,
    .n_outputs = AF_ARRAY_LEN(decode_outputs),
    .batch_size = 1,
    .create = decode_create,
    .process = decode_process,
    .destroy = decode_destroy,
};
