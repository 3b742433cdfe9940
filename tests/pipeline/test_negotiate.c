/* Stage contract v2 in the engine: negotiate() fixes port sizes after
 * create(), the graph is checked again with them, and a mismatch stops the
 * run as a configuration error naming both stages and both shapes before the
 * source yields a single item; prepare() gets the batch and the resolved
 * input shape.  Also the engine's provenance block (ctx->provenance()). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"
#include "pipeline_stages.h"

static int run(const char *yaml, af_pipeline **out) {
  af_run_options opt = {.progress = AF_PROGRESS_NONE, .quiet = 1};
  af_pipeline *p = NULL;
  int rc = af_pipeline_load_string(yaml, "neg.yaml", &opt, &p);
  CHECK_OK(rc);
  if (rc) return rc;
  rc = af_pipeline_run(p);
  *out = p;
  return rc;
}

static void test_sizes_agree(void) {
  tp_reset();
  af_pipeline *p = NULL;
  CHECK_OK(
      run("source: {stage: tp_seq, count: 11}\njournal: ${AF_TEST_JOURNAL}\n"
          "stages:\n  - {stage: tp_make, n: 12}\n  - {stage: tp_take, n: 12, batch: 4}\n"
          "sinks:\n  - {stage: tp_collect}\n",
          &p));
  CHECK(atomic_load(&tp.negotiated) == 2);
  CHECK_MSG(tp.prepared_batch == 4, "prepare saw batch %d", tp.prepared_batch);
  CHECK_MSG(tp.prepared_dim == 12, "prepare saw size %lld", (long long)tp.prepared_dim);
  CHECK(af_pipeline_summary(p)->ok == 11);
  af_pipeline_free(p);
}

static void test_sizes_differ(void) {
  tp_reset();
  af_pipeline *p = NULL;
  int rc =
      run("source: {stage: tp_seq, count: 11}\njournal: ${AF_TEST_JOURNAL}\n"
          "stages:\n  - {stage: tp_make, name: maker, n: 12}\n  - {stage: tp_take, name: taker, n: 6}\n"
          "sinks:\n  - {stage: tp_collect}\n",
          &p);
  const char *m = af_error_message();
  printf("  mismatch -> %s\n", m);
  CHECK(rc == AF_ERR_CONFIG);
  CHECK(strstr(m, "'maker'") && strstr(m, "'taker'") && strstr(m, "f32[12]") && strstr(m, "f32[6]"));
  CHECK(strstr(m, "N = 12") && strstr(m, "M = 6"));
  CHECK(!af_pipeline_summary(p)->started); /* nothing ran */
  CHECK(atomic_load(&tp.produced) == 0);   /* the source was not asked for an item */
  CHECK(tp.prepared_batch == 0);           /* prepare() was not reached */
  af_error_clear();
  af_pipeline_free(p);
}

/* The provenance every jsonl record carries comes from the engine: the model
 * file's name and SHA-256, the pipeline's digest, the device selector that
 * was asked for, the parameters. */
static void test_provenance(void) {
  const char *tmp = af_test_tmpdir();
  char model[4200], yaml[9000], out[4300], pipe[4300];
  snprintf(model, sizeof model, "%s/model.gguf", tmp);
  snprintf(out, sizeof out, "%s/prov/records.jsonl", tmp);
  snprintf(pipe, sizeof pipe, "%s/prov.yaml", tmp);
  FILE *f = fopen(model, "wb");
  fputs("abc", f); /* not a model: no stage of this pipeline opens it */
  fclose(f);
  snprintf(yaml, sizeof yaml,
           "model: %s\ndevice: my-gpu\n"
           "source: {stage: tp_seq, count: 2}\n"
           "stages:\n  - {stage: tp_make, n: 3}\n"
           "sinks:\n  - {stage: jsonl, path: %s}\n",
           model, out);
  f = fopen(pipe, "w");
  fputs(yaml, f);
  fclose(f);
  af_run_options opt = {.progress = AF_PROGRESS_NONE, .quiet = 1};
  af_pipeline *p = NULL;
  CHECK_OK(af_pipeline_load(pipe, &opt, &p));
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  af_pipeline_free(p);
  size_t n = 0;
  char *text = af_test_slurp(out, &n), hex[65];
  CHECK(text != NULL);
  cJSON *rec = text ? cJSON_Parse(text) : NULL; /* the first line */
  const cJSON *pv = cJSON_GetObjectItem(rec, "provenance");
  CHECK_OK(af_sha256_file(pipe, hex));
#define S(o, k) (cJSON_IsString(cJSON_GetObjectItem(o, k)) ? cJSON_GetObjectItem(o, k)->valuestring : "")
  CHECK(!strcmp(S(pv, "artflow"), AF_VERSION) && !strcmp(S(pv, "model"), "model.gguf"));
  /* SHA-256("abc"), FIPS 180-2 */
  CHECK(!strcmp(S(pv, "model_sha256"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CHECK(!strcmp(S(pv, "pipeline"), "prov.yaml") && !strcmp(S(pv, "pipeline_sha256"), hex));
  CHECK(!strcmp(S(pv, "device"), "my-gpu") && !strcmp(S(pv, "device_selector"), "my-gpu"));
  const cJSON *st = cJSON_GetObjectItem(cJSON_GetObjectItem(pv, "params"), "stages");
  CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(st, 0), "n")->valuedouble == 3);
  const char *t = S(pv, "time");
  CHECK(strlen(t) == 20 && t[10] == 'T' && t[19] == 'Z');
#undef S
  cJSON_Delete(rec);
  free(text);
}

int main(void) {
  char j[4200];
  snprintf(j, sizeof j, "%s/neg.journal", af_test_tmpdir());
  setenv("AF_TEST_JOURNAL", j, 1);
  tp_register();
  test_sizes_agree();
  test_sizes_differ();
  test_provenance();
  return af_test_done("test_negotiate");
}
