/* The resume settings (pipeline/settings.c) and their check in the journal:
 * the canonical form (sorted keys, runtime-only rows and batch sizes left
 * out, paths absolute, the model file's size and time), the diff, and
 * af_journal_open / af_pipeline_run refusing, allowing (--allow-changed) and
 * warning (format 1) on --resume. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"

static char dir[4096], list[4200], model[4200], journal[4200];

static af_pipeline *load(const char *yaml, const char *const *sets, int n_sets, int resume, int allow) {
  af_run_options opt = {.sets = sets,
                        .n_sets = n_sets,
                        .resume = resume,
                        .allow_changed = allow,
                        .progress = AF_PROGRESS_NONE,
                        .quiet = 1};
  af_pipeline *p = NULL;
  CHECK_OK(af_pipeline_load_string(yaml, "settings.yaml", &opt, &p));
  return p;
}

/* The YAML of a list -> checksum -> jsonl + csv pipeline writing into dir. */
static const char *yaml_io(void) {
  static char y[16384];
  snprintf(y, sizeof y,
           "source: {stage: list, path: %s}\n"
           "journal: %s\n"
           "stages:\n  - stage: checksum\n"
           "sinks:\n  - {stage: jsonl, path: %s/out/r.jsonl}\n  - {stage: csv, path: %s/out/r.csv}\n",
           list, journal, dir, dir);
  return y;
}

static char *settings_of(const char *yaml, const char *const *sets, int n, char hash[65]) {
  af_pipeline *p = load(yaml, sets, n, 0, 0);
  if (!p) return NULL;
  char *s = strdup(af_pipeline_settings_json(p));
  snprintf(hash, 65, "%s", af_pipeline_settings_hash(p));
  af_pipeline_free(p);
  return s;
}

static void test_canonical(void) {
  char h1[65], h2[65], h3[65], h4[65], want[65];
  char *s1 = settings_of(yaml_io(), NULL, 0, h1);
  if (!s1) return;
  af_sha256_hex(s1, strlen(s1), want);
  CHECK(strlen(h1) == 64 && !strcmp(h1, want));
  cJSON *o = cJSON_Parse(s1);
  CHECK(cJSON_IsObject(o));
  /* keys sorted bytewise; runtime-only rows and batch sizes absent */
  const char *prev = "";
  for (const cJSON *c = o ? o->child : NULL; c; c = c->next) {
    CHECK_MSG(strcmp(prev, c->string) < 0, "%s before %s", prev, c->string);
    prev = c->string;
  }
  const cJSON *mb = cJSON_GetObjectItem(o, "checksum.max_bytes");
  CHECK(cJSON_IsNumber(mb) && mb->valuedouble == 1099511627776.0);
  CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "checksum.tensor")));
  CHECK(cJSON_GetObjectItem(o, "csv.columns") != NULL);
  CHECK(cJSON_GetObjectItem(o, "jsonl.provenance") != NULL);
  CHECK(cJSON_GetObjectItem(o, "jsonl.fsync") == NULL);
  CHECK(cJSON_GetObjectItem(o, "csv.fsync") == NULL);
  CHECK(cJSON_GetObjectItem(o, "jsonl.hash_model") == NULL);
  CHECK(cJSON_GetObjectItem(o, "checksum.batch") == NULL);
  CHECK(cJSON_GetObjectItem(o, "model") == NULL); /* no stage needs one */
  char *chain = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "stages"));
  CHECK_MSG(chain && !strcmp(chain, "[\"list:list\",\"checksum:checksum\",\"jsonl:jsonl\",\"csv:csv\"]"),
            "%s", chain ? chain : "(null)");
  free(chain);
  cJSON_Delete(o);

  /* what cannot change a record leaves the hash alone */
  const char *runtime[] = {"jsonl.fsync=none", "csv.fsync=close", "checksum.batch=7",
                           "jsonl.hash_model=false"};
  char *s2 = settings_of(yaml_io(), runtime, 4, h2);
  CHECK(s2 && !strcmp(s1, s2) && !strcmp(h1, h2));
  /* relative paths (the pipeline file in the current folder) equal their absolute form */
  char cwd[4096];
  CHECK(getcwd(cwd, sizeof cwd) != NULL && chdir(dir) == 0);
  char *s3 = settings_of(
      "source: {stage: list, path: list.txt}\nstages:\n  - stage: checksum\n"
      "sinks:\n  - {stage: jsonl, path: out/r.jsonl}\n  - {stage: csv, path: out/r.csv}\n",
      NULL, 0, h3);
  CHECK(chdir(cwd) == 0);
  CHECK_MSG(s3 && !strcmp(h1, h3), "relative paths: %s\nvs %s", s3 ? s3 : "", s1);
  free(s3);
  /* a parameter that changes results changes the hash */
  const char *change[] = {"checksum.max_bytes=5"};
  char *s4 = settings_of(yaml_io(), change, 1, h4);
  CHECK(s4 && strcmp(h1, h4));

  /* the diff: one line per changed key, values as JSON */
  char *lines = NULL, *keys = NULL;
  int n = -1;
  CHECK_OK(af_settings_diff(s1, s4, &lines, &keys, &n));
  CHECK(n == 1);
  CHECK_MSG(lines && !strcmp(lines, "checksum.max_bytes: 1099511627776 -> 5\n"), "%s", lines ? lines : "");
  CHECK(keys && !strcmp(keys, "checksum.max_bytes"));
  free(lines);
  free(keys);
  CHECK_OK(af_settings_diff(s1, s2, &lines, &keys, &n));
  CHECK(n == 0 && lines == NULL && keys == NULL);
  CHECK_OK(af_settings_diff("{\"a\":1,\"q\":\"Describe this image in detail.\",\"z\":[1]}",
                            "{\"q\":\"What style?\",\"b\":true,\"a\":1}", &lines, &keys, &n));
  CHECK(n == 3);
  CHECK_MSG(lines && !strcmp(lines,
                             "b: (absent) -> true\n"
                             "q: \"Describe this image in detail.\" -> \"What style?\"\n"
                             "z: [1] -> (absent)\n"),
            "%s", lines ? lines : "");
  CHECK(keys && !strcmp(keys, "b, q, z"));
  free(lines);
  free(keys);
  /* null: a parameter left unset, the stage's (or the model's) default */
  CHECK_OK(
      af_settings_diff("{\"llm.question\":null}", "{\"llm.question\":\"What style?\"}", &lines, NULL, &n));
  CHECK_MSG(n == 1 && lines && !strcmp(lines, "llm.question: (default) -> \"What style?\"\n"), "%s",
            lines ? lines : "");
  free(lines);
  /* the same keys in another order: no change */
  CHECK_OK(af_settings_diff("{\"a\":1,\"b\":[\"x\"]}", "{\"b\":[\"x\"],\"a\":1}", &lines, NULL, &n));
  CHECK(n == 0 && !lines);
  CHECK(af_settings_diff("{\"a\":1", "{}", &lines, NULL, &n) == AF_ERR_FORMAT);
  af_error_clear();
  free(s1);
  free(s2);
  free(s4);
}

/* The model file: its size and modification time are part of the settings. */
static void test_model(void) {
  FILE *f = fopen(model, "wb");
  fputs("0123456789012345678901234567890123", f); /* 34 bytes; never opened at load */
  fclose(f);
  char y[16384];
  snprintf(y, sizeof y,
           "model: %s\nsource: {stage: list, path: %s}\nstages:\n  - stage: decode\n  - stage: preprocess\n"
           "  - stage: vit\nsinks:\n  - {stage: jsonl, path: %s/out/m.jsonl}\n",
           model, list, dir);
  char h1[65], h2[65], h3[65];
  char *s1 = settings_of(y, NULL, 0, h1);
  if (!s1) return;
  cJSON *o = cJSON_Parse(s1);
  const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(o, "model"));
  char want[4300];
  snprintf(want, sizeof want, "%s (34 bytes, modified ", model);
  CHECK_MSG(m && !strncmp(m, want, strlen(want)), "model: %s", m ? m : "(none)");
  /* normalize_on cannot change results (host and device give the same bits) */
  CHECK(cJSON_GetObjectItem(o, "preprocess.normalize_on") == NULL);
  CHECK(cJSON_GetObjectItem(o, "preprocess.keep_rgb") != NULL);
  cJSON_Delete(o);
  /* the same size, another time (a re-converted model) */
  struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
  CHECK(utimensat(AT_FDCWD, model, ts, 0) == 0);
  char *s2 = settings_of(y, NULL, 0, h2);
  CHECK(s2 && strcmp(h1, h2));
  CHECK(s2 && strstr(s2, "(34 bytes, modified 2001-09-09T01:46:40Z)"));
  f = fopen(model, "ab");
  fputs("!", f);
  fclose(f);
  CHECK(utimensat(AT_FDCWD, model, ts, 0) == 0);
  char *s3 = settings_of(y, NULL, 0, h3);
  CHECK(s3 && strcmp(h2, h3) && strstr(s3, "(35 bytes, modified 2001-09-09T01:46:40Z)"));
  free(s1);
  free(s2);
  free(s3);
}

static int count_lines(const char *path, char c) {
  char *t = af_test_slurp(path, NULL);
  int n = 0;
  for (const char *l = t; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : "") n += *l == c;
  free(t);
  return n;
}

static void put_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
}

/* af_journal_open on its own: record, compare, refuse, allow, format 1. */
static void test_journal(void) {
  char jp[4300];
  snprintf(jp, sizeof jp, "%s/j/run.journal", dir);
  af_journal_settings a = {.hash = "1111", .json = "{\"k\":1,\"q\":\"old\"}"};
  af_journal *j = NULL;
  CHECK_OK(af_journal_open(jp, 0, &a, &j));
  af_item *it = af_item_new("x", NULL);
  CHECK(af_journal_is_done(j, "x") == 0);
  CHECK_OK(af_journal_commit(j, &it, 1));
  af_item_free(it);
  af_journal_close(j);
  char *t = af_test_slurp(jp, NULL);
  CHECK_MSG(t && !strcmp(t, "# artflow journal 2\nP 1111 {\"k\":1,\"q\":\"old\"}\nS x\nD x\n"), "%s",
            t ? t : "");
  free(t);
  /* the same settings: nothing added, nothing to show */
  af_journal_settings same = a;
  CHECK_OK(af_journal_open(jp, 1, &same, &j));
  CHECK(same.diff == NULL && same.changed == 0 && same.unchecked == 0);
  CHECK(af_journal_is_done(j, "x") == 1);
  af_journal_close(j);
  CHECK(count_lines(jp, 'P') == 1);
  /* other settings: refused, the journal untouched */
  af_journal_settings b = {.hash = "2222", .json = "{\"k\":1,\"q\":\"new\"}"};
  j = NULL;
  CHECK(af_journal_open(jp, 1, &b, &j) == AF_ERR_CONFIG && j == NULL);
  CHECK_MSG(strstr(af_error_message(), jp) && strstr(af_error_message(), "1 changed: q"), "%s",
            af_error_message());
  af_error_clear();
  CHECK(b.changed == 1 && b.diff && !strcmp(b.diff, "q: \"old\" -> \"new\"\n"));
  free(b.diff);
  CHECK(count_lines(jp, 'P') == 1);
  /* --allow-changed: goes on, the new settings appended after the old records */
  b = (af_journal_settings){.hash = "2222", .json = "{\"k\":1,\"q\":\"new\"}", .allow_changed = 1};
  CHECK_OK(af_journal_open(jp, 1, &b, &j));
  CHECK(b.changed == 1 && b.diff != NULL);
  free(b.diff);
  af_journal_close(j);
  t = af_test_slurp(jp, NULL);
  CHECK(t && strstr(t, "D x\nP 2222 {\"k\":1,\"q\":\"new\"}\n"));
  free(t);
  /* a later resume compares with the latest settings line */
  b = (af_journal_settings){.hash = "2222", .json = "{\"k\":1,\"q\":\"new\"}"};
  CHECK_OK(af_journal_open(jp, 1, &b, &j));
  CHECK(b.changed == 0 && !b.diff);
  af_journal_close(j);
  a.diff = NULL;
  CHECK(af_journal_open(jp, 1, &a, &j) == AF_ERR_CONFIG);
  af_error_clear();
  free(a.diff);

  /* format 1: no settings to compare; resumes, and records them for next time */
  put_file(jp, "# artflow journal 1\nS y\nD y\nS z\n");
  af_journal_settings c = {.hash = "3333", .json = "{\"k\":3}"};
  CHECK_OK(af_journal_open(jp, 1, &c, &j));
  CHECK(c.unchecked == 1 && c.changed == 0);
  CHECK(af_journal_is_done(j, "y") == 1 && af_journal_is_done(j, "z") == 0);
  af_journal_close(j);
  t = af_test_slurp(jp, NULL);
  CHECK(t && !strncmp(t, "# artflow journal 1\nS y\nD y\nS z\nP 3333 {\"k\":3}\n", 47));
  free(t);
  c = (af_journal_settings){.hash = "4444", .json = "{\"k\":4}"};
  CHECK(af_journal_open(jp, 1, &c, &j) == AF_ERR_CONFIG);
  af_error_clear();
  CHECK(c.diff && !strcmp(c.diff, "k: 3 -> 4\n"));
  free(c.diff);

  /* a newer format is refused; a damaged settings line is named */
  put_file(jp, "# artflow journal 3\nD y\n");
  CHECK(af_journal_open(jp, 1, &c, &j) == AF_ERR_CONFIG);
  CHECK_MSG(strstr(af_error_message(), "journal format 3"), "%s", af_error_message());
  af_error_clear();
  put_file(jp, "# artflow journal 2\nP 5555 {broken\nD y\n");
  c = (af_journal_settings){.hash = "4444", .json = "{\"k\":4}"};
  CHECK(af_journal_open(jp, 1, &c, &j) == AF_ERR_CONFIG);
  CHECK_MSG(strstr(af_error_message(), ":2: the settings line"), "%s", af_error_message());
  af_error_clear();
  c.allow_changed = 1;
  CHECK_OK(af_journal_open(jp, 1, &c, &j));
  af_journal_close(j);
  CHECK(count_lines(jp, 'P') == 2);
  free(c.diff);
}

/* Through af_pipeline_run: a refused resume stops before any stage is created. */
static void test_run(void) {
  af_pipeline *p = load(yaml_io(), NULL, 0, 0, 0);
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  CHECK(af_pipeline_summary(p)->total == 3);
  CHECK(af_pipeline_settings_diff(p) == NULL);
  af_pipeline_free(p);
  const char *change[] = {"checksum.max_bytes=5", "jsonl.fsync=none"};
  p = load(yaml_io(), change, 2, 1, 0);
  if (!p) return;
  CHECK(af_pipeline_run(p) == AF_ERR_CONFIG);
  af_error_clear();
  CHECK(af_pipeline_summary(p)->started == 0);
  const char *d = af_pipeline_settings_diff(p);
  CHECK_MSG(d && !strcmp(d, "checksum.max_bytes: 1099511627776 -> 5\n"), "%s", d ? d : "(null)");
  af_pipeline_free(p);
  /* a runtime-only change resumes: nothing left to do */
  const char *runtime[] = {"jsonl.fsync=none", "checksum.batch=2"};
  p = load(yaml_io(), runtime, 2, 1, 0);
  CHECK_OK(af_pipeline_run(p));
  CHECK(af_pipeline_summary(p)->skipped == 3 && af_pipeline_summary(p)->total == 0);
  af_pipeline_free(p);
  p = load(yaml_io(), change, 2, 1, 1);
  CHECK_OK(af_pipeline_run(p));
  CHECK(af_pipeline_settings_diff(p) != NULL);
  af_pipeline_free(p);
  CHECK(count_lines(journal, 'P') == 2);
}

int main(void) {
  char *real = realpath(af_test_tmpdir(), NULL); /* getcwd's form, for the relative paths */
  snprintf(dir, sizeof dir, "%s", real ? real : "/nonexistent");
  free(real);
  snprintf(list, sizeof list, "%s/list.txt", dir);
  snprintf(model, sizeof model, "%s/model.gguf", dir);
  snprintf(journal, sizeof journal, "%s/out/run.journal", dir);
  put_file(list, "a.jpg\nb.jpg\nc.jpg\n");
  test_canonical();
  test_model();
  test_journal();
  test_run();
  return af_test_done("test_settings");
}
