/* Pipeline YAML loading: every kind of configuration error gives its
 * file:line:column, stage and key; ${ENV} expansion; --set overrides; the
 * graph check names both stages and both port descriptions. */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "pipeline/pipeline.h"
#include "pipeline_stages.h"

/* Loads `yaml`; expects failure whose message contains every needle. */
static void expect_err(const char *yaml, const char *const *sets, int n_sets, const char *n1, const char *n2,
                       const char *n3) {
  af_run_options opt = {.sets = sets, .n_sets = n_sets};
  af_pipeline *p = NULL;
  int rc = af_pipeline_load_string(yaml, "t.yaml", &opt, &p);
  const char *m = af_error_message();
  CHECK_MSG(rc == AF_ERR_CONFIG, "rc %d for:\n%s", rc, yaml);
  CHECK(p == NULL);
  const char *needles[] = {n1, n2, n3};
  for (int i = 0; i < 3; i++)
    if (needles[i]) CHECK_MSG(strstr(m, needles[i]) != NULL, "message '%s' lacks '%s'", m, needles[i]);
  af_error_clear();
  af_pipeline_free(p);
}

static af_pipeline *load_ok(const char *yaml, const char *const *sets, int n_sets) {
  af_run_options opt = {.sets = sets, .n_sets = n_sets};
  af_pipeline *p = NULL;
  CHECK_OK(af_pipeline_load_string(yaml, "t.yaml", &opt, &p));
  return p;
}

#define HEAD "source: {stage: tp_seq, count: 5}\n"
#define SINK "sinks:\n  - stage: tp_collect\n"

int main(void) {
  tp_register();
  /* a good file loads; params JSON carries the resolved values */
  af_pipeline *p =
      load_ok(HEAD "stages:\n  - stage: tp_delay\n    size: 8\n  - stage: tp_need8\n" SINK, NULL, 0);
  CHECK(p && strstr(af_pipeline_params_json(p), "\"size\":8"));
  CHECK(p && strstr(af_pipeline_params_json(p), "\"mode\":\"normal\""));
  af_pipeline_free(p);

  /* unknown key: line 4 column 5 is where 'sizee' starts */
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    sizee: 8\n" SINK, NULL, 0,
             "t.yaml:4:5:", "stage 'tp_delay': key 'sizee'", "unknown key");
  /* wrong type */
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    size: big\n" SINK, NULL, 0, "t.yaml:4:11:", "key 'size'",
             "expected an integer, got 'big'");
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    size: [1, 2]\n" SINK, NULL, 0,
             "t.yaml:4:11:", "key 'size'", "got a list");
  expect_err(HEAD "stages:\n  - {stage: tp_delay, scale: 1.5x}\n" SINK, NULL, 0, "t.yaml:3:", "key 'scale'",
             "expected a number");
  expect_err(HEAD "stages:\n  - {stage: tp_delay, mode: fast}\n" SINK, NULL, 0, "key 'mode'",
             "'fast' is not one of normal|fail_batch", NULL);
  /* out of range */
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    size: 5000\n" SINK, NULL, 0,
             "t.yaml:4:11:", "stage 'tp_delay': key 'size'", "5000 is above the maximum 4096");
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    size: 0\n" SINK, NULL, 0,
             "t.yaml:4:11:", "below the minimum 1", NULL);
  /* unknown stage, and a stage of the wrong kind */
  expect_err(HEAD "stages:\n  - stage: nosuch\n" SINK, NULL, 0, "t.yaml:3:12:", "unknown stage 'nosuch'",
             "checksum");
  expect_err(HEAD "stages:\n  - stage: tp_collect\n" SINK, NULL, 0,
             "t.yaml:3:12:", "is a sink, not a transform", NULL);
  /* syntax error with position */
  expect_err(HEAD "stages:\n  - stage: [tp_delay\n" SINK, NULL, 0, "t.yaml:", "syntax error", NULL);
  expect_err("source: {stage: tp_seq\nsinks: []\n", NULL, 0, "t.yaml:2:", "syntax error", NULL);
  /* structure */
  expect_err(HEAD, NULL, 0, "key 'sinks'", "missing", NULL);
  expect_err(HEAD "stagez: []\n" SINK, NULL, 0, "t.yaml:2:1:", "key 'stagez'", "unknown key");
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    size: 4\n    size: 5\n" SINK, NULL, 0,
             "t.yaml:5:5:", "given twice", NULL);
  expect_err(HEAD "stages:\n  - stage: tp_delay\n  - stage: tp_delay\n" SINK, NULL, 0,
             "the name is used twice", NULL, NULL);
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    batch: 0\n" SINK, NULL, 0, "key 'batch'", NULL, NULL);
  /* graph check: both stages and both descriptions */
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    size: 4\n  - stage: tp_need8\n" SINK, NULL, 0,
             "stage 'tp_delay' output 'vec' f32[4]", "stage 'tp_need8' input 'vec' f32[8]",
             "dimension 0: 4 vs 8");
  expect_err(HEAD "stages:\n  - stage: tp_delay\n  - stage: tp_needu8\n" SINK, NULL, 0, "declared f32[size]",
             "dtype f32 vs u8", "t.yaml:4:5:");
  expect_err(HEAD "stages:\n  - stage: tp_need8\n" SINK, NULL, 0, "no earlier stage outputs 'vec'", NULL,
             NULL);

  /* ${ENV} expansion, defaults, and the error for an unset variable */
  setenv("AF_TEST_SIZE", "8", 1);
  unsetenv("AF_TEST_UNSET");
  p = load_ok(HEAD
              "stages:\n  - stage: tp_delay\n    size: ${AF_TEST_SIZE}\n    label: "
              "a${AF_TEST_UNSET:-b}c$${x}\n  - stage: tp_need8\n" SINK,
              NULL, 0);
  CHECK(p && strstr(af_pipeline_params_json(p), "\"label\":\"abc${x}\""));
  af_pipeline_free(p);
  expect_err(HEAD "stages:\n  - stage: tp_delay\n    label: ${AF_TEST_UNSET}\n" SINK, NULL, 0,
             "t.yaml:4:12:", "environment variable 'AF_TEST_UNSET' is not set", NULL);

  /* --set overrides the file, is validated the same way, names bad targets */
  const char *good[] = {"tp_delay.size=8", "source.count=7", "tp_delay.batch=5"};
  p = load_ok(HEAD "stages:\n  - stage: tp_delay\n    size: 4\n  - stage: tp_need8\n" SINK, good, 3);
  CHECK(p && strstr(af_pipeline_params_json(p), "\"count\":7"));
  CHECK(p && strstr(af_pipeline_params_json(p), "\"batch\":5"));
  af_pipeline_free(p);
  const char *bad1[] = {"tp_delay.size=9999"}, *bad2[] = {"nope.size=1"}, *bad3[] = {"tp_delay.zz=1"},
             *bad4[] = {"tp_delay"};
  expect_err(HEAD "stages:\n  - stage: tp_delay\n" SINK, bad1, 1, "--set tp_delay.size=9999", "key 'size'",
             "above the maximum");
  expect_err(HEAD "stages:\n  - stage: tp_delay\n" SINK, bad2, 1, "no stage named 'nope'", NULL, NULL);
  expect_err(HEAD "stages:\n  - stage: tp_delay\n" SINK, bad3, 1, "key 'zz'", "unknown key", NULL);
  expect_err(HEAD "stages:\n  - stage: tp_delay\n" SINK, bad4, 1, "expected STAGE.PARAM=VALUE", NULL, NULL);

  /* lists: YAML sequence, lone scalar, --set with commas */
  const char *ls[] = {"tp_delay.size=8"};
  p = load_ok(HEAD
              "stages:\n  - {stage: tp_delay, name: first}\n  - {stage: tp_delay, name: second, size: 8}\n  "
              "- stage: tp_need8\n" SINK,
              ls, 0);
  CHECK(p && strstr(af_pipeline_params_json(p), "\"name\":\"second\""));
  af_pipeline_free(p);

  /* one output name, one writer: a second stage writing it is refused at load
   * time naming both (a chain that reads what it rewrites is fine, above) */
  expect_err(HEAD "stages:\n  - {stage: tp_make}\n  - {stage: tp_make, name: again}\n" SINK, NULL, 0,
             "t.yaml:4:5: stage 'again' output 'emb'", "stage 'tp_make' (line 3) writes it too", NULL);
  expect_err(HEAD "stages:\n  - {stage: tp_tasks}\n  - {stage: tp_tasks, name: b}\n" SINK, NULL, 0,
             "stage 'b' output 'text'", "writes it too", NULL);
  /* a JSON parameter from YAML: its names replace the default output */
  p = load_ok(HEAD
              "stages:\n  - {stage: tp_tasks}\n  - stage: tp_tasks\n    name: b\n    tasks:\n"
              "      - {name: style, n: 3, ok: true, q: 'x: y'}\n      - name: genre\n" SINK,
              NULL, 0);
  CHECK(p &&
        strstr(af_pipeline_params_json(p),
               "\"tasks\":[{\"name\":\"style\",\"n\":3,\"ok\":true,\"q\":\"x: y\"},{\"name\":\"genre\"}]"));
  af_pipeline_free(p);
  expect_err(HEAD
             "stages:\n  - {stage: tp_tasks, tasks: [{name: text}]}\n  - {stage: tp_tasks, name: b}\n" SINK,
             NULL, 0, "output 'text'", "writes it too", NULL);
  expect_err(HEAD "stages:\n  - {stage: tp_tasks, tasks: [{name: a}, {name: a}]}\n" SINK, NULL, 0,
             "stage 'tp_tasks' writes output 'a' twice", NULL, NULL);
  const char *js[] = {"b.tasks=[{\"name\":\"text\"}]"}, *bad_js[] = {"b.tasks=[{name: x}"};
  expect_err(HEAD "stages:\n  - {stage: tp_tasks}\n  - {stage: tp_tasks, name: b, tasks: [x]}\n" SINK, js, 1,
             "output 'text'", NULL, NULL);
  expect_err(HEAD "stages:\n  - {stage: tp_tasks}\n  - {stage: tp_tasks, name: b, tasks: [x]}\n" SINK, bad_js,
             1, "key 'tasks'", "expected JSON", NULL);
  return af_test_done("test_pipeline_yaml");
}
