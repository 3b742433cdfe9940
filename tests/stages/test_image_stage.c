/* Stage harness for `decode` and `preprocess`, driven through their
 * descriptors the way the scheduler drives them (create with the default
 * configuration plus overrides, process batches, destroy):
 *  - good files of several layouts come out as pixels f32[3,S,S] equal to the
 *    CLIP normalisation of Pillow's open().convert('RGB').resize((S,S),
 *    BICUBIC) (tests/data/image/pipe_cases.txt);
 *  - bad files (missing, empty, garbage, truncated, no path) fail only their
 *    own item, with a one-line reason naming the file, and the batch goes on;
 *  - a malformed input tensor and bad mean/std parameters are reported;
 *  - decode's `resize: S` option gives the same result;
 *  - with an OpenCL device open, the device normalisation gives the same bits. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/runtime.h"
#include "image/image.h"
#include "io_harness.h"
#include "pipeline/pipeline.h"

extern const af_stage_desc af_stage_decode, af_stage_preprocess;

static void test_log(const af_stage_ctx *ctx, af_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[%s] ", ctx->instance);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Default config of `d` with "key=value" overrides; caller frees with free_config. */
static void *make_config(const af_stage_desc *d, const char *const *sets, int n) {
  void *cfg = calloc(1, d->config_size);
  CHECK_OK(af_params_defaults(d, cfg));
  for (int i = 0; i < n; i++) {
    char key[64], why[256];
    const char *eq = strchr(sets[i], '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - sets[i]), sets[i]);
    const af_param *p = af_param_find(d, key);
    CHECK_MSG(p != NULL, "no parameter %s", key);
    if (p) CHECK_MSG(af_param_set_text(p, cfg, eq + 1, why, sizeof why) == 0, "%s: %s", key, why);
  }
  return cfg;
}

static void free_config(const af_stage_desc *d, void *cfg) {
  af_params_free(d, cfg);
  free(cfg);
}

static af_item *item_for(const char *id, const char *file) {
  char path[600];
  snprintf(path, sizeof path, "%s", file ? af_test_data(file) : "");
  return af_item_new(id, file ? path : NULL);
}

/* Runs decode then preprocess (image_size S) over items, as the scheduler
 * would: preprocess sees only items still ok. */
static void run_stages(af_item **items, int n, int S, struct af_cl *cl, int fused) {
  af_queue *q = NULL;
  if (cl) CHECK_OK(af_queue_new((af_cl *)cl, &q)); /* the engine's queue for a device-using stage */
  af_stage_ctx dctx = {.instance = "decode", .log = test_log, .cl = cl, .batch = 64};
  af_stage_ctx pctx = {.instance = "preprocess", .log = test_log, .cl = cl, .queue = q, .batch = 64};
  char size_set[32];
  snprintf(size_set, sizeof size_set, "image_size=%d", S);
  const char *sets[] = {size_set};
  char resize_set[32];
  snprintf(resize_set, sizeof resize_set, "resize=%d", S);
  const char *dsets[] = {resize_set};
  void *dcfg = make_config(&af_stage_decode, dsets, fused);
  void *pcfg = make_config(&af_stage_preprocess, sets, 1);
  void *d = NULL, *p = NULL;
  CHECK_OK(io_stage_setup(&af_stage_decode, &dctx, dcfg, NULL, NULL, &d));
  CHECK_OK(io_stage_setup(&af_stage_preprocess, &pctx, pcfg, NULL, NULL, &p));
  unsigned long long allocs = af_cl_allocations((af_cl *)cl);
  for (int i = 0; i < n; i++) CHECK(af_stage_decode.process(d, &dctx, &items[i], 1) == AF_FLOW_OK);
  af_item *ok[64];
  int m = 0;
  for (int i = 0; i < n && m < 64; i++)
    if (items[i]->status == AF_ITEM_OK) ok[m++] = items[i];
  if (m) CHECK(af_stage_preprocess.process(p, &pctx, ok, m) == AF_FLOW_OK);
  CHECK_MSG(af_cl_allocations((af_cl *)cl) == allocs, "preprocess created device buffers in process()");
  af_stage_decode.destroy(d);
  af_stage_preprocess.destroy(p);
  af_queue_free(q);
  free_config(&af_stage_decode, dcfg);
  free_config(&af_stage_preprocess, pcfg);
}

/* Checks every good item of pipe_cases.txt against Pillow; returns how many. */
static int check_goldens(struct af_cl *cl, float **keep, int fused) {
  FILE *f = fopen(af_test_data("image/pipe_cases.txt"), "r");
  CHECK(f != NULL);
  if (!f) return 0;
  float lut[768];
  af_image_norm_lut(af_clip_mean, af_clip_std, lut);
  char line[256], src[128], exp[128], name[160];
  int S, cases = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || sscanf(line, "%127s %127s %d", src, exp, &S) != 3) continue;
    snprintf(name, sizeof name, "image/%s", src);
    af_item *it = item_for(src, name);
    run_stages(&it, 1, S, cl, fused);
    CHECK_MSG(it->status == AF_ITEM_OK, "%s: %s", src, it->error ? it->error : "");
    const af_tensor *t = af_item_tensor(it, "pixels");
    CHECK(af_item_tensor(it, "rgb") == NULL); /* dropped by default */
    af_image_u8 ref;
    snprintf(name, sizeof name, "image/%s", exp);
    CHECK_OK(af_image_decode(af_test_data(name), NULL, &ref));
    if (t && ref.data) {
      CHECK(t->dtype == AF_DTYPE_F32 && t->ndim == 3 && t->shape[0] == 3 && t->shape[1] == S &&
            t->shape[2] == S);
      const float *px = t->data;
      size_t n = (size_t)S * S, bad = 0;
      for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < n; i++) bad += px[c * n + i] != lut[c * 256 + ref.data[i * 3 + c]];
      CHECK_MSG(bad == 0, "%s: %zu of %zu values differ from Pillow", src, bad, 3 * n);
      if (keep && cases < 8 && (keep[cases] = malloc(t->bytes))) memcpy(keep[cases], t->data, t->bytes);
    }
    af_image_free(&ref);
    af_item_free(it);
    cases++;
  }
  fclose(f);
  return cases;
}

int main(void) {
  CHECK_OK(af_stage_desc_check(&af_stage_decode));
  CHECK_OK(af_stage_desc_check(&af_stage_preprocess));
  af_error_clear();

  float *host[8] = {0};
  int cases = check_goldens(NULL, host, 0);
  CHECK(cases == 5);
  /* decode's resize: S gives the same bits (preprocess then copies S x S). */
  CHECK(check_goldens(NULL, NULL, 1) == cases);

  /* One batch mixing good and bad files: only the bad ones fail. */
  const char *tmpd = af_test_tmpdir();
  char empty[600], garbage[600], trunc[600];
  snprintf(empty, sizeof empty, "%s/empty.png", tmpd);
  snprintf(garbage, sizeof garbage, "%s/garbage.jpg", tmpd);
  snprintf(trunc, sizeof trunc, "%s/trunc.jpg", tmpd);
  FILE *f = fopen(empty, "wb");
  if (f) fclose(f);
  f = fopen(garbage, "wb");
  if (f) {
    fputs("this is not a JPEG at all, just text with a .jpg name\n", f);
    fclose(f);
  }
  FILE *in = fopen(af_test_data("image/dec_rgb.jpg"), "rb");
  char buf[4096];
  size_t got = in ? fread(buf, 1, sizeof buf, in) : 0;
  if (in) fclose(in);
  f = fopen(trunc, "wb");
  if (f) {
    fwrite(buf, 1, got / 2, f);
    fclose(f);
  }
  af_item *items[7] = {
      item_for("good1", "image/dec_rgb.jpg"),
      af_item_new("missing", "/nonexistent/x.jpg"),
      af_item_new("empty", empty),
      af_item_new("garbage", garbage),
      af_item_new("trunc", trunc),
      item_for("nopath", NULL),
      item_for("good2", "image/dec_pal.png"),
  };
  run_stages(items, 7, 32, NULL, 0);
  const char *causes[7] = {
      NULL, "no such file", "empty file", "not a recognised image", "corrupt or truncated", "no file path",
      NULL};
  for (int i = 0; i < 7; i++) {
    af_item *it = items[i];
    if (!causes[i]) {
      CHECK_MSG(it->status == AF_ITEM_OK, "%s: %s", it->id, it->error ? it->error : "");
      const af_tensor *t = af_item_tensor(it, "pixels");
      CHECK(t && t->shape[1] == 32);
      continue;
    }
    CHECK_MSG(it->status == AF_ITEM_ERROR, "%s should have failed", it->id);
    const char *e = it->error ? it->error : "";
    printf("  %-8s -> %s\n", it->id, e);
    CHECK_MSG(strstr(e, causes[i]) != NULL, "%s: '%s' lacks '%s'", it->id, e, causes[i]);
    CHECK(strchr(e, '\n') == NULL);
    CHECK(it->error_stage && !strcmp(it->error_stage, "decode"));
    if (it->path) CHECK_MSG(strstr(e, it->path) != NULL, "%s: reason does not name the file", it->id);
    CHECK(af_item_tensor(it, "pixels") == NULL);
  }
  for (int i = 0; i < 7; i++) af_item_free(items[i]);

  /* A malformed "rgb" tensor fails the item, not the batch. */
  af_item *odd = af_item_new("odd", NULL);
  int64_t shape[3] = {5, 5, 4};
  void *data = NULL;
  CHECK_OK(af_item_add_tensor(odd, "rgb", AF_DTYPE_U8, 3, shape, &data));
  af_stage_ctx pctx = {.instance = "preprocess", .log = test_log, .batch = 4};
  void *pcfg = make_config(&af_stage_preprocess, NULL, 0), *p = NULL;
  CHECK_OK(io_stage_setup(&af_stage_preprocess, &pctx, pcfg, NULL, NULL, &p));
  CHECK(af_stage_preprocess.process(p, &pctx, &odd, 1) == AF_FLOW_OK);
  CHECK(odd->status == AF_ITEM_ERROR && odd->error && strstr(odd->error, "u8[H,W,3]"));
  af_stage_preprocess.destroy(p);
  free_config(&af_stage_preprocess, pcfg);
  af_item_free(odd);

  /* Bad mean / std values are refused at create time. */
  const char *bad_sets[][1] = {{"mean=0.5,0.5"}, {"std=0.2,0,0.2"}, {"mean=a,b,c"}};
  for (int i = 0; i < 3; i++) {
    void *cfg = make_config(&af_stage_preprocess, bad_sets[i], 1), *s = NULL;
    af_error_clear();
    CHECK(af_stage_preprocess.create(&pctx, cfg, &s) == AF_ERR_CONFIG);
    printf("  %-14s -> %s\n", bad_sets[i][0], af_error_message());
    af_error_clear();
    af_stage_preprocess.destroy(s);
    free_config(&af_stage_preprocess, cfg);
  }
  /* normalize_on: device without a device is a configuration error. */
  const char *dev_set[] = {"normalize_on=device"};
  void *cfg = make_config(&af_stage_preprocess, dev_set, 1), *s = NULL;
  CHECK(af_stage_preprocess.create(&pctx, cfg, &s) == AF_ERR_CONFIG);
  af_error_clear();
  af_stage_preprocess.destroy(s);
  free_config(&af_stage_preprocess, cfg);

  /* With a device open the kernel does the normalisation: same bits. */
  af_cl *cl = NULL;
  if (af_cl_open(&cl, NULL) == 0) {
    float *dev[8] = {0};
    CHECK(check_goldens((struct af_cl *)cl, dev, 0) == cases);
    FILE *pf = fopen(af_test_data("image/pipe_cases.txt"), "r");
    char line[256], a[128], b[128];
    int S, k = 0;
    while (pf && fgets(line, sizeof line, pf))
      if (line[0] != '#' && sscanf(line, "%127s %127s %d", a, b, &S) == 3 && k < 8) {
        if (host[k] && dev[k])
          CHECK_MSG(!memcmp(host[k], dev[k], 3 * (size_t)S * S * sizeof(float)),
                    "%s: device and host normalisation differ", a);
        k++;
      }
    if (pf) fclose(pf);
    for (int i = 0; i < 8; i++) free(dev[i]);
    af_cl_close(cl);
  } else {
    printf("  no OpenCL device: %s (device path not checked)\n", af_error_message());
    af_error_clear();
  }
  for (int i = 0; i < 8; i++) free(host[i]);
  return af_test_done("test_image_stage");
}
