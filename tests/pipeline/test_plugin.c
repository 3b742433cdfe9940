/* Plugin loading (pipeline/plugin.c) and the example dHash plugin
 * (examples/plugins/dhash.c): load by path and through ARTFLOW_PLUGIN_PATH,
 * run the stage, check its hashes by their defining properties, and the
 * failure modes (missing file, not a library, missing symbol, wrong ABI,
 * malformed stage, duplicate), each a one-line error naming the file.
 * Paths of the built libraries come from the build (compile definitions). */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "artflow/status.h"
#include "io_harness.h"
#include "pipeline/pipeline.h"

/* the plugin calls these from the executable: keep them linked in */
void *volatile af_test_keep[] = {(void *)af_item_fail, (void *)af_item_set_text, (void *)af_item_tensor};

static void expect_fail(const char *path, int code, const char *want1, const char *want2) {
  int rc = af_plugin_load(path);
  const char *m = af_error_message();
  CHECK_MSG(rc == code, "%s: got %d (%s), want %d", path, rc, m, code);
  CHECK_MSG(strstr(m, want1) && (!want2 || strstr(m, want2)), "%s: message '%s' lacks '%s' / '%s'", path, m,
            want1, want2 ? want2 : "");
  CHECK(!strchr(m, '\n'));
  af_error_clear();
}

static af_item *image_item(const char *id, int w, int h, unsigned seed, int mode) {
  af_item *it = af_item_new(id, id);
  uint8_t *px;
  af_item_add_tensor(it, "rgb", AF_DTYPE_U8, 3, (int64_t[]){h, w, 3}, (void **)&px);
  af_rng r;
  af_rng_seed(&r, seed);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        int v = mode == 0   ? x * 255 / (w - 1)            /* brighter to the right */
                : mode == 1 ? 255 - x * 255 / (w - 1)      /* darker to the right */
                            : (int)(af_rng_u32(&r) & 255); /* noise */
        px[(y * w + x) * 3 + c] = (uint8_t)v;
      }
  return it;
}

static int hamming(const char *a, const char *b) {
  int d = 0;
  for (; *a && *b; a++, b++) {
    int x = (int)strtol((char[]){*a, 0}, NULL, 16) ^ (int)strtol((char[]){*b, 0}, NULL, 16);
    d += __builtin_popcount((unsigned)x);
  }
  return d;
}

static void test_dhash(void) {
  const af_stage_desc *d = af_registry_find(AF_STAGE_TRANSFORM, "dhash");
  CHECK(d != NULL);
  if (!d) return;
  af_item *it[6];
  it[0] = image_item("right", 90, 40, 0, 0);
  it[1] = image_item("left", 90, 40, 0, 1);
  it[2] = image_item("noise", 64, 64, 7, 2);
  it[3] = image_item("noise2", 64, 64, 7, 2);
  it[4] = image_item("other", 64, 64, 99, 2);
  it[5] = af_item_new("nopixels", "/x/nopixels.jpg");
  /* noise2 = noise with small perturbations: a near duplicate */
  uint8_t *p = af_item_tensor(it[3], "rgb")->data;
  af_rng r;
  af_rng_seed(&r, 3);
  for (int i = 0; i < 64 * 64 * 3; i++) {
    int v = p[i] + (int)(af_rng_u32(&r) % 5) - 2;
    p[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
  void *cfg = io_config(d, NULL), *self = NULL;
  af_stage_ctx ctx = io_ctx("hash", NULL, 0);
  CHECK_OK(d->create(&ctx, cfg, &self));
  CHECK(d->process(self, &ctx, it, 6) == AF_FLOW_OK);
  const char *h[6];
  for (int i = 0; i < 6; i++) h[i] = af_item_text(it[i], "dhash");
  CHECK(h[0] && !strcmp(h[0], "ffffffffffffffff"));
  CHECK(h[1] && !strcmp(h[1], "0000000000000000"));
  CHECK(h[2] && h[3] && h[4] && strlen(h[2]) == 16);
  if (h[2] && h[3] && h[4]) {
    int near = hamming(h[2], h[3]), far = hamming(h[2], h[4]);
    printf("dhash noise %s, near duplicate %s (%d bits), other %s (%d bits)\n", h[2], h[3], near, h[4], far);
    CHECK(near <= 10 && far >= 16);
  }
  CHECK(it[5]->status == AF_ITEM_ERROR && strstr(it[5]->error, "/x/nopixels.jpg"));
  d->destroy(self);
  io_config_free(d, cfg);
  /* hash_size 4: 16 bits, 4 hex digits */
  const char *sets[] = {"hash_size=4", NULL};
  cfg = io_config(d, sets);
  CHECK_OK(d->create(&ctx, cfg, &self));
  af_item_set_text(it[0], "dhash", "");
  CHECK(d->process(self, &ctx, it, 1) == AF_FLOW_OK);
  CHECK(!strcmp(af_item_text(it[0], "dhash"), "ffff"));
  d->destroy(self);
  io_config_free(d, cfg);
  for (int i = 0; i < 6; i++) af_item_free(it[i]);
}

/* The built-in I/O stages pass the same descriptor check as plugins, and the
 * pipeline's own parameter code accepts every default in their tables. */
extern const af_stage_desc af_stage_src_dir, af_stage_src_glob, af_stage_src_list, af_stage_src_csv,
    af_stage_src_jsonl, af_stage_jsonl, af_stage_csv, af_stage_npy;
static void test_io_descriptors(void) {
  const af_stage_desc *all[] = {&af_stage_src_dir, &af_stage_src_glob,  &af_stage_src_list,
                                &af_stage_src_csv, &af_stage_src_jsonl, &af_stage_jsonl,
                                &af_stage_csv,     &af_stage_npy};
  for (int i = 0; i < AF_ARRAY_LEN(all); i++) {
    CHECK_OK(af_stage_desc_check(all[i]));
    CHECK(af_registry_find(all[i]->kind, all[i]->name) == all[i]);
    void *cfg = calloc(1, all[i]->config_size);
    CHECK_OK(af_params_defaults(all[i], cfg));
    af_params_free(all[i], cfg);
    free(cfg);
  }
}

int main(void) {
  test_io_descriptors();
  const char *good = AF_TEST_PLUGIN_DHASH;
  char dirpath[4096];
  snprintf(dirpath, sizeof dirpath, "%s", good);
  *strrchr(dirpath, '/') = 0;
  /* by bare name through ARTFLOW_PLUGIN_PATH (first entry does not exist) */
  char env[4200];
  snprintf(env, sizeof env, "/nonexistent:%s", dirpath);
  setenv("ARTFLOW_PLUGIN_PATH", env, 1);
  CHECK_OK(af_plugin_load(strrchr(good, '/') + 1));
  test_dhash();
  /* the same file again is harmless; a copy under another name is another
   * library whose stage name is taken */
  CHECK_OK(af_plugin_load(good));
  char copy[4300], cmd[8800];
  snprintf(copy, sizeof copy, "%s/copy_dhash.so", af_test_tmpdir());
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, copy);
  CHECK(system(cmd) == 0);
  expect_fail(copy, AF_ERR_CONFIG, copy, "dhash");
  expect_fail("/nonexistent/plugin.so", AF_ERR_IO, "/nonexistent/plugin.so", NULL);
  expect_fail("nothere.so", AF_ERR_IO, "nothere.so", "ARTFLOW_PLUGIN_PATH");
  expect_fail(AF_TEST_PLUGIN_NOSYM, AF_ERR_CONFIG, AF_TEST_PLUGIN_NOSYM, "af_plugin_entry");
  expect_fail(AF_TEST_PLUGIN_ABI, AF_ERR_CONFIG, AF_TEST_PLUGIN_ABI, "ABI version 999");
  /* a plugin of the first stage contract (before negotiate and the engine's
   * queue/weights in the context) */
  expect_fail(AF_TEST_PLUGIN_ABI_V1, AF_ERR_CONFIG, AF_TEST_PLUGIN_ABI_V1,
              "stage ABI version 1, this artflow needs 2");
  expect_fail(AF_TEST_PLUGIN_BADSTAGE, AF_ERR_CONFIG, AF_TEST_PLUGIN_BADSTAGE, NULL);
  /* a file that is not a shared library */
  char notlib[4300];
  snprintf(notlib, sizeof notlib, "%s/notlib.so", af_test_tmpdir());
  FILE *fp = fopen(notlib, "w");
  fputs("not an ELF file\n", fp);
  fclose(fp);
  expect_fail(notlib, AF_ERR_IO, notlib, "cannot load");
  return af_test_done("test_plugin");
}
