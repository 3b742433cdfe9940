/* Example artflow plugin: `dhash`, the difference hash of the decoded image.
 *
 * dHash: reduce the image to (hash_size+1) x hash_size gray cells by area
 * averaging, then set one bit per cell pair "left < right", row by row, most
 * significant bit first.  Near-duplicate images (re-encoded, resized, lightly
 * retouched) get hashes a few bits apart, which is how collections find
 * duplicate scans.  Output: text "dhash", hash_size^2/4 hex digits.
 *
 * Build it against an installed artflow (docs/plugins.md):
 *   cc $(pkg-config --cflags artflow) -shared -fPIC -o dhash.so dhash.c
 * It links nothing: af_item_* and af_err are resolved from the artflow
 * executable when the plugin is loaded.  Use it from a pipeline with
 * `plugins: [./dhash.so]` (dhash.yaml), or look at it with
 *   artflow inspect stage dhash --plugin ./dhash.so
 *
 * What a plugin needs, in the order of this file: a config struct that the
 * parameter table fills, create/process/destroy callbacks, the parameter and
 * port tables, one af_stage_desc per stage, and one exported af_plugin. */
#include <stddef.h>
#include <stdlib.h>

/* the SDK: installed as <prefix>/include/artflow/ (pkg-config --cflags artflow) */
#include <artflow/stage.h>
#include <artflow/status.h>

/* Filled by artflow from dhash_params (defaults, then YAML, then --set),
 * already checked against each row's type and range. */
typedef struct dhash_config {
  int64_t hash_size; /* bits per row and rows: 8 -> a 64-bit hash */
} dhash_config;

/* One instance per pipeline stage; process() runs on the stage's own thread,
 * never two calls at once, so the scratch cells need no lock. */
typedef struct dhash {
  int size;
  double *cells; /* (size, size + 1) gray averages */
} dhash;

/* Setup callbacks return 0 or a negative af_status, with the message
 * recorded through af_err(): artflow prints it and stops before any item
 * flows.  destroy() is called only for instances whose create() succeeded,
 * so a failing create() frees what it allocated. */
static int dhash_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const dhash_config *c = config;
  dhash *d = calloc(1, sizeof *d);
  if (d) {
    d->size = (int)c->hash_size;
    d->cells = calloc((size_t)d->size * (size_t)(d->size + 1), sizeof *d->cells);
  }
  if (!d || !d->cells) {
    free(d);
    return af_err(AF_ERR_NOMEM, "%s: out of memory", ctx->instance);
  }
  *self = d;
  return AF_OK;
}

/* Average gray of the source rectangle [x0,x1) x [y0,y1) in pixel units,
 * weighting partly covered pixels by their covered fraction. */
static double area_gray(const uint8_t *img, int64_t w, int64_t h, double x0, double x1, double y0,
                        double y1) {
  double sum = 0, wsum = 0;
  for (int64_t y = (int64_t)y0; y < h && y < y1; y++) {
    double wy = (y + 1 < y1 ? y + 1 : y1) - (y > y0 ? y : y0);
    for (int64_t x = (int64_t)x0; x < w && x < x1; x++) {
      double wx = (x + 1 < x1 ? x + 1 : x1) - (x > x0 ? x : x0);
      const uint8_t *p = img + (y * w + x) * 3;
      /* ITU-R 601 luma, as image libraries convert RGB to gray */
      double g = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
      sum += g * wx * wy;
      wsum += wx * wy;
    }
  }
  return wsum > 0 ? sum / wsum : 0;
}

/* Data-path callbacks return an af_flow.  A bad item is marked with
 * af_item_fail() (it becomes an error record; the pipeline goes on);
 * AF_FLOW_ERROR is for the whole call failing, e.g. out of memory: artflow
 * then fails every ok item of the batch with the af_err() message. */
static af_flow dhash_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  dhash *d = self;
  int cols = d->size + 1, rows = d->size;
  for (int k = 0; k < n; k++) {
    /* the graph check guarantees that some stage outputs "rgb" as u8[*,*,3];
     * checking again keeps the plugin safe in hand-made pipelines */
    const af_tensor *t = af_item_tensor(items[k], "rgb");
    if (!t || t->dtype != AF_DTYPE_U8 || t->ndim != 3 || t->shape[2] != 3) {
      af_item_fail(items[k], ctx->instance, "%s: dhash needs a u8[H,W,3] 'rgb' tensor",
                   items[k]->path ? items[k]->path : items[k]->id);
      continue;
    }
    int64_t h = t->shape[0], w = t->shape[1];
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++)
        d->cells[r * cols + c] = area_gray(t->data, w, h, (double)c * w / cols, (double)(c + 1) * w / cols,
                                           (double)r * h / rows, (double)(r + 1) * h / rows);
    /* hash_size <= 16 (the parameter's range): at most 256 bits, 64 digits */
    char hex[16 * 16 / 4 + 1];
    int o = 0, nib = 0, bits = 0;
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < d->size; c++) {
        nib = nib << 1 | (d->cells[r * cols + c] < d->cells[r * cols + c + 1]);
        if (++bits == 4) {
          hex[o++] = "0123456789abcdef"[nib];
          nib = bits = 0;
        }
      }
    if (bits) hex[o++] = "0123456789abcdef"[nib << (4 - bits)];
    hex[o] = 0;
    int rc = af_item_set_text(items[k], "dhash", hex);
    if (rc != AF_OK) {
      af_err(rc, "%s: cannot store the hash of %s: %s", ctx->instance, items[k]->id, af_strerror(rc));
      return AF_FLOW_ERROR;
    }
  }
  return AF_FLOW_OK;
}

static void dhash_destroy(void *self) {
  dhash *d = self;
  if (!d) return;
  free(d->cells);
  free(d);
}

/* `artflow inspect stage dhash` prints this table; the range 2..16 is
 * enforced by artflow before create() sees the value. */
static const af_param dhash_params[] = {
    {"hash_size", AF_PARAM_INT, offsetof(dhash_config, hash_size), "8", 2, 16, NULL,
     "cells per row and rows: the hash has hash_size^2 bits", 0},
};

/* Ports are matched by name: "rgb" is what the built-in decode stage adds. */
static const af_port dhash_inputs[] = {
    {"rgb", "u8[*,*,3]", "decoded image (the decode stage), 8-bit RGB, HWC", 0},
};
static const af_port dhash_outputs[] = {
    {"dhash", "text", "difference hash as hex digits", 0},
};

/* Designated initialisers: fields this plugin does not name are zero, which
 * is what the contract asks of them (and keeps the file building when a
 * later stage.h adds fields; the ABI version says when a rebuild is due). */
static const af_stage_desc dhash_stage = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "dhash",
    .doc = "perceptual difference hash (dHash) of the decoded image, for near-duplicate search",
    .kind = AF_STAGE_TRANSFORM,
    .params = dhash_params,
    .n_params = AF_ARRAY_LEN(dhash_params),
    .config_size = sizeof(dhash_config),
    .inputs = dhash_inputs,
    .n_inputs = AF_ARRAY_LEN(dhash_inputs),
    .outputs = dhash_outputs,
    .n_outputs = AF_ARRAY_LEN(dhash_outputs),
    .batch_size = 8,
    .create = dhash_create,
    .process = dhash_process,
    .destroy = dhash_destroy,
};

static const af_stage_desc *const dhash_stages[] = {&dhash_stage};

/* The one symbol artflow looks up (AF_PLUGIN_SYMBOL).  artflow compares
 * abi_version with its own AF_STAGE_ABI_VERSION before reading anything
 * else and refuses a plugin built against another stage.h. */
__attribute__((visibility("default")))
const af_plugin af_plugin_entry = {AF_STAGE_ABI_VERSION, "dhash", AF_ARRAY_LEN(dhash_stages), dhash_stages};
