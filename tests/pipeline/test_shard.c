/* Shards (pipeline/shard.c): the hash is SHA-256's (vectors from Python's
 * hashlib), I/N and the scheduler environments parse as documented, {shard}
 * expands zero-padded, and for EVERY source kind the build registers and N in
 * {1, 2, 7} (dir, glob, list, csv, jsonl, and iiif where the build has it):
 * running the N shards through the real scheduler into
 * shard-{shard}.jsonl gives each of the source's items exactly once, in the
 * shard its id hashes to.  A source kind without a fixture here fails the test
 * by name: a new source must be shown to shard too. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "af_test.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"

#define N_ITEMS 40

static char tmp[512];

static void put(const char *rel, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", tmp, rel);
  char *dir = af_path_dirname(path);
  af_mkdirs(dir);
  free(dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* ------------------------------------------------------------ the rule */

static void test_hash(void) {
  /* int(hashlib.sha256(id.encode()).hexdigest()[:16], 16) % n */
  static const struct {
    const char *id;
    int m2, m3, m7, m1000;
  } v[] = {{"a", 0, 1, 4, 250},
           {"banner.jpg", 0, 2, 4, 736},
           {"item00042", 0, 2, 5, 550},
           {"\xc3\xa9/\xc3\xbc.png", 0, 0, 3, 38},
           {"", 0, 1, 1, 652}};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    CHECK_MSG(af_shard_of(v[i].id, 2) == v[i].m2, "%s mod 2", v[i].id);
    CHECK_MSG(af_shard_of(v[i].id, 3) == v[i].m3, "%s mod 3", v[i].id);
    CHECK_MSG(af_shard_of(v[i].id, 7) == v[i].m7, "%s mod 7", v[i].id);
    CHECK_MSG(af_shard_of(v[i].id, 1000) == v[i].m1000, "%s mod 1000", v[i].id);
    CHECK(af_shard_of(v[i].id, 1) == 0);
  }
}

static void test_parse(void) {
  af_shard s;
  char why[256];
  CHECK_OK(af_shard_parse("0/1", &s, why, sizeof why));
  CHECK(s.index == 0 && s.count == 1);
  CHECK_OK(af_shard_parse("6/7", &s, why, sizeof why));
  CHECK(s.index == 6 && s.count == 7);
  const char *bad[] = {"7/7", "1", "-1/3", "a/3", "1/0", "1/", "/3", "1/3x", " 1/3", "1/2000000", "auto"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_MSG(af_shard_parse(bad[i], &s, why, sizeof why) == AF_ERR_CONFIG && strstr(why, bad[i]), "%s: %s",
              bad[i], why);
}

static void clear_env(void) {
  const char *v[] = {"SLURM_ARRAY_TASK_ID",   "SLURM_ARRAY_TASK_MIN",   "SLURM_ARRAY_TASK_MAX",
                     "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX",
                     "ARTFLOW_SHARDS"};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) unsetenv(v[i]);
}

static int auto_shard(int hint, af_shard *s, char *why) {
  char origin[128];
  return af_shard_auto(hint, s, why, 256, origin, sizeof origin);
}

static void test_auto(void) {
  af_shard s;
  char why[256];
  clear_env();
  CHECK(auto_shard(0, &s, why) == AF_ERR_CONFIG && strstr(why, "SLURM_ARRAY_TASK_ID"));
  /* sbatch --array=1-3: task 2 is shard 1 of 3 */
  setenv("SLURM_ARRAY_TASK_ID", "2", 1);
  setenv("SLURM_ARRAY_TASK_MIN", "1", 1);
  setenv("SLURM_ARRAY_TASK_MAX", "3", 1);
  setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
  CHECK_OK(auto_shard(0, &s, why));
  CHECK(s.index == 1 && s.count == 3);
  CHECK(auto_shard(4, &s, why) == AF_ERR_CONFIG && strstr(why, "3 tasks"));
  /* without the count: from min/max; with a step */
  unsetenv("SLURM_ARRAY_TASK_COUNT");
  setenv("SLURM_ARRAY_TASK_ID", "10", 1);
  setenv("SLURM_ARRAY_TASK_MIN", "0", 1);
  setenv("SLURM_ARRAY_TASK_MAX", "10", 1);
  setenv("SLURM_ARRAY_TASK_STEP", "5", 1);
  CHECK_OK(auto_shard(0, &s, why));
  CHECK(s.index == 2 && s.count == 3);
  /* a list (--array=1,5,7): not one range */
  setenv("SLURM_ARRAY_TASK_ID", "5", 1);
  setenv("SLURM_ARRAY_TASK_MIN", "1", 1);
  setenv("SLURM_ARRAY_TASK_MAX", "7", 1);
  unsetenv("SLURM_ARRAY_TASK_STEP");
  setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
  CHECK(auto_shard(0, &s, why) == AF_ERR_CONFIG && strstr(why, "not one range"));
  setenv("SLURM_ARRAY_TASK_ID", "x", 1);
  CHECK(auto_shard(0, &s, why) == AF_ERR_CONFIG && strstr(why, "'x'"));
  clear_env();
  /* Kubernetes Indexed Job: the count comes from --shards or ARTFLOW_SHARDS */
  setenv("JOB_COMPLETION_INDEX", "2", 1);
  CHECK(auto_shard(0, &s, why) == AF_ERR_CONFIG && strstr(why, "--shards"));
  CHECK_OK(auto_shard(3, &s, why));
  CHECK(s.index == 2 && s.count == 3);
  CHECK(auto_shard(2, &s, why) == AF_ERR_CONFIG);
  setenv("ARTFLOW_SHARDS", "5", 1);
  CHECK_OK(auto_shard(0, &s, why));
  CHECK(s.index == 2 && s.count == 5);
  clear_env();
}

static void test_expand(void) {
  char *e = NULL;
  CHECK_OK(af_shard_expand("out/shard-{shard}.jsonl", (af_shard){3, 7}, &e));
  CHECK(e && !strcmp(e, "out/shard-3.jsonl"));
  free(e);
  CHECK_OK(af_shard_expand("{shard}/{shard}-of-12", (af_shard){3, 12}, &e));
  CHECK(e && !strcmp(e, "03/03-of-12"));
  free(e);
  CHECK_OK(af_shard_expand("no-braces {shar}", (af_shard){0, 1000}, &e));
  CHECK(e && !strcmp(e, "no-braces {shar}"));
  free(e);
}

/* ------------------------------------------------ every source kind */

/* One fixture per source kind: the `source:` entry (relative to tmp) and the
 * files it reads.  Ids include folders, spaces and non-ASCII. */
static char *fixture(const char *kind) {
  static char src[512];
  char name[128], line[256];
  af_buf list = {0}, csv = {0}, jsonl = {0}, iiif = {0};
  af_buf_puts(&csv, "id,path,title\n");
  af_buf_puts(&iiif,
              "{\"@context\": \"http://iiif.io/api/presentation/3/context.json\", \"id\": "
              "\"https://iiif.example.org/m.json\", \"type\": \"Manifest\", \"label\": {\"en\": [\"t\"]}, "
              "\"items\": [");
  for (int i = 0; i < N_ITEMS; i++) {
    snprintf(name, sizeof name, "%s/img %03d%s.jpg", i % 3 ? "a" : "b/c", i, i % 5 ? "" : "-\xc3\xa9");
    char rel[256];
    snprintf(rel, sizeof rel, "src-%s/%s", kind, name);
    put(rel, "not really a jpeg");
    snprintf(line, sizeof line, "%s\n", name);
    af_buf_puts(&list, line);
    snprintf(line, sizeof line, "id-%03d,%s,t%d\n", i, name, i);
    af_buf_puts(&csv, line);
    snprintf(line, sizeof line, "{\"id\": \"j%03d\", \"path\": \"%s\"}\n", i, name);
    af_buf_puts(&jsonl, line);
    /* a IIIF canvas whose image service maps onto src-iiif/ (no network) */
    char canvas[1024];
    snprintf(canvas, sizeof canvas,
             "%s{\"id\": \"https://iiif.example.org/c/%03d\", \"type\": \"Canvas\", \"height\": 10, "
             "\"width\": 10, "
             "\"items\": [{\"id\": \"https://iiif.example.org/c/%03d/p\", \"type\": \"AnnotationPage\", "
             "\"items\": "
             "[{\"id\": \"https://iiif.example.org/c/%03d/p/a\", \"type\": \"Annotation\", \"motivation\": "
             "\"painting\", \"body\": {\"id\": "
             "\"https://iiif.example.org/images/i%03d.jpg/full/max/0/default.jpg\", "
             "\"type\": \"Image\", \"format\": \"image/jpeg\", \"service\": [{\"id\": "
             "\"https://iiif.example.org/images/i%03d.jpg\", \"type\": \"ImageService3\", \"profile\": "
             "\"level1\"}]}, "
             "\"target\": \"https://iiif.example.org/c/%03d\"}]}]}",
             i ? ", " : "", i, i, i, i, i, i);
    af_buf_puts(&iiif, canvas);
    if (!strcmp(kind, "iiif")) {
      snprintf(rel, sizeof rel, "src-iiif/img/i%03d.jpg", i);
      put(rel, "not really a jpeg");
    }
  }
  af_buf_puts(&iiif, "]}\n");
  af_buf_put(&list, "", 1);
  af_buf_put(&csv, "", 1);
  af_buf_put(&jsonl, "", 1);
  af_buf_put(&iiif, "", 1);
  char *r = src;
  if (!strcmp(kind, "dir")) {
    snprintf(src, sizeof src, "{stage: dir, path: %s/src-dir, extensions: [jpg]}", tmp);
  } else if (!strcmp(kind, "glob")) {
    snprintf(src, sizeof src, "{stage: glob, patterns: ['%s/src-glob/a/*.jpg', '%s/src-glob/b/c/*.jpg']}",
             tmp, tmp);
  } else if (!strcmp(kind, "list")) {
    put("src-list/list.txt", list.p);
    snprintf(src, sizeof src, "{stage: list, path: %s/src-list/list.txt}", tmp);
  } else if (!strcmp(kind, "csv")) {
    put("src-csv/m.csv", csv.p);
    snprintf(src, sizeof src, "{stage: csv, path: %s/src-csv/m.csv}", tmp);
  } else if (!strcmp(kind, "jsonl")) {
    put("src-jsonl/m.jsonl", jsonl.p);
    snprintf(src, sizeof src, "{stage: jsonl, path: %s/src-jsonl/m.jsonl}", tmp);
  } else if (!strcmp(kind, "iiif")) {
    put("src-iiif/manifest.json", iiif.p);
    snprintf(
        src, sizeof src,
        "{stage: iiif, manifest: %s/src-iiif/manifest.json, map_prefix: 'https://iiif.example.org/images/', "
        "map_dir: %s/src-iiif/img, cache: %s/src-iiif/cache}",
        tmp, tmp, tmp);
  } else {
    r = NULL;
  }
  af_buf_free(&iiif);
  af_buf_free(&list);
  af_buf_free(&csv);
  af_buf_free(&jsonl);
  return r;
}

typedef struct idlist {
  char **v;
  int n;
} idlist;

static int collect(void *arg, const af_item *it) {
  idlist *l = arg;
  l->v = realloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
  l->v[l->n++] = strdup(it->id);
  return 0;
}

/* The ids of one shard output, with the shard each record claims. */
typedef struct seen {
  af_idset *ids;
  int dups, wrong_shard, n;
  int index, count;
  char settings[65]; /* every record of every shard: the same settings */
  int mixed;
} seen;

static int read_record(const char *line, size_t len, void *arg) {
  seen *s = arg;
  cJSON *o = cJSON_ParseWithLength(line, len);
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
  const cJSON *sh =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "provenance"), "shard");
  CHECK(cJSON_IsString(id));
  if (cJSON_IsString(id)) {
    if (af_idset_has(s->ids, id->valuestring)) s->dups++;
    af_idset_add(s->ids, id->valuestring, strlen(id->valuestring));
    if (af_shard_of(id->valuestring, s->count) != s->index) s->wrong_shard++;
    s->n++;
  }
  const cJSON *set =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "provenance"), "settings_sha256");
  CHECK(cJSON_IsString(set));
  if (cJSON_IsString(set) && !s->settings[0])
    snprintf(s->settings, sizeof s->settings, "%s", set->valuestring);
  if (cJSON_IsString(set) && strcmp(s->settings, set->valuestring)) s->mixed++;
  CHECK(cJSON_GetObjectItemCaseSensitive(sh, "count")->valueint == s->count);
  CHECK(cJSON_GetObjectItemCaseSensitive(sh, "index")->valueint == s->index);
  cJSON_Delete(o);
  return 0;
}

static void run_shards(const char *kind, const char *src, int count, const idlist *all) {
  char yaml[2048], spec[32], out[1024];
  snprintf(
      yaml, sizeof yaml,
      "source: %s\n"
      "sinks:\n  - {stage: jsonl, name: out, path: '%s/out-%s-%d/shard-{shard}.jsonl', hash_model: false}\n",
      src, tmp, kind, count);
  seen s = {.ids = af_idset_new(), .count = count};
  int total = 0, nonempty = 0;
  for (int i = 0; i < count; i++) {
    snprintf(spec, sizeof spec, "%d/%d", i, count);
    af_run_options opt = {.progress = AF_PROGRESS_NONE, .quiet = 1, .shard = spec};
    af_pipeline *p = NULL;
    CHECK_OK(af_pipeline_load_string(yaml, "shard.yaml", &opt, &p));
    if (!p) continue;
    CHECK_OK(af_pipeline_run(p));
    total += (int)af_pipeline_summary(p)->total;
    af_pipeline_free(p);
    snprintf(out, sizeof out, "%s/out-%s-%d/shard-%d.jsonl", tmp, kind, count, i);
    struct stat st;
    CHECK_MSG(stat(out, &st) == 0, "%s: no output", out);
    s.index = i;
    int before = s.n;
    CHECK_OK(af_lines_scan(out, read_record, &s));
    nonempty += s.n > before;
  }
  CHECK_MSG(s.dups == 0, "%s N=%d: %d ids in two shards", kind, count, s.dups);
  CHECK_MSG(s.wrong_shard == 0, "%s N=%d: %d ids in the wrong shard", kind, count, s.wrong_shard);
  CHECK_MSG(s.mixed == 0, "%s N=%d: %d records with other settings than the first shard's", kind, count,
            s.mixed);
  CHECK_MSG(s.n == all->n && total == all->n, "%s N=%d: %d records, %d runs' items, source %d", kind, count,
            s.n, total, all->n);
  for (int k = 0; k < all->n; k++)
    CHECK_MSG(af_idset_has(s.ids, all->v[k]), "%s N=%d: %s lost", kind, count, all->v[k]);
  /* 40 ids over 7 shards: a hash that puts everything in one shard fails */
  CHECK_MSG(count == 1 || nonempty >= (count < 4 ? count : 4), "%s N=%d: only %d shards got items", kind,
            count, nonempty);
  af_idset_free(s.ids);
  printf("%-6s N=%d: %d items, each once, in %d non-empty shards\n", kind, count, s.n, nonempty);
}

static void test_every_source(void) {
  int n = 0;
  const af_stage_desc *const *all = af_registry_list(&n);
  int sources = 0;
  for (int i = 0; i < n; i++) {
    if (all[i]->kind != AF_STAGE_SOURCE) continue;
    sources++;
    const char *kind = all[i]->name;
    char *src = fixture(kind);
    CHECK_MSG(src != NULL,
              "source '%s' has no fixture in tests/pipeline/test_shard.c: add one so that its "
              "sharding is tested",
              kind);
    if (!src) continue;
    /* the source's own list of items, unsharded */
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "source: %s\nsinks:\n  - {stage: jsonl, name: out, path: %s/unused.jsonl}\n",
             src, tmp);
    af_run_options opt = {.quiet = 1};
    af_pipeline *p = NULL;
    idlist ids = {0};
    CHECK_OK(af_pipeline_load_string(yaml, "list.yaml", &opt, &p));
    if (p) CHECK_OK(af_pipeline_each_source_item(p, collect, &ids));
    af_pipeline_free(p);
    CHECK_MSG(ids.n == N_ITEMS, "%s: %d items, want %d", kind, ids.n, N_ITEMS);
    for (int c = 1; c <= 7; c++)
      if (c == 1 || c == 2 || c == 7) run_shards(kind, src, c, &ids);
    for (int k = 0; k < ids.n; k++) free(ids.v[k]);
    free(ids.v);
  }
  CHECK(sources >= 5);
}

/* shard: in the YAML; a sink path without {shard} is refused for N > 1 */
static void test_yaml(void) {
  char yaml[1024];
  af_pipeline *p = NULL;
  af_run_options opt = {.quiet = 1};
  snprintf(yaml, sizeof yaml,
           "shard: 1/4\nsource: {stage: list, path: %s/src-list/list.txt}\n"
           "sinks:\n  - {stage: jsonl, path: '%s/y/s-{shard}.jsonl'}\n",
           tmp, tmp);
  CHECK_OK(af_pipeline_load_string(yaml, "y.yaml", &opt, &p));
  if (p) {
    CHECK(af_pipeline_shard(p) && af_pipeline_shard(p)->index == 1 && af_pipeline_shard(p)->count == 4);
    CHECK(strstr(af_pipeline_journal_path(p), "/y/s-1.jsonl.journal") != NULL);
    /* records and settings show the template */
    CHECK(strstr(af_pipeline_params_json(p), "s-{shard}.jsonl") != NULL);
  }
  af_pipeline_free(p);
  /* --shard wins over shard: */
  opt.shard = "3/4";
  CHECK_OK(af_pipeline_load_string(yaml, "y.yaml", &opt, &p));
  if (p) CHECK(af_pipeline_shard(p)->index == 3);
  af_pipeline_free(p);
  snprintf(yaml, sizeof yaml,
           "shard: 1/4\nsource: {stage: list, path: %s/src-list/list.txt}\n"
           "sinks:\n  - {stage: jsonl, path: %s/y/all.jsonl}\n",
           tmp, tmp);
  opt.shard = NULL;
  CHECK(af_pipeline_load_string(yaml, "y.yaml", &opt, &p) == AF_ERR_CONFIG);
  CHECK_MSG(strstr(af_error_message(), "{shard}") && strstr(af_error_message(), "y.yaml:4:"), "%s",
            af_error_message());
  af_error_clear();
  /* shard: auto resumes by default */
  snprintf(yaml, sizeof yaml,
           "shard: auto\nshards: 3\nsource: {stage: list, path: %s/src-list/list.txt}\n"
           "sinks:\n  - {stage: jsonl, path: '%s/y/s-{shard}.jsonl'}\n",
           tmp, tmp);
  setenv("JOB_COMPLETION_INDEX", "2", 1);
  CHECK_OK(af_pipeline_load_string(yaml, "y.yaml", &opt, &p));
  if (p) CHECK(af_pipeline_shard(p)->index == 2 && af_pipeline_resumes(p));
  af_pipeline_free(p);
  opt.no_resume = 1;
  CHECK_OK(af_pipeline_load_string(yaml, "y.yaml", &opt, &p));
  if (p) CHECK(!af_pipeline_resumes(p));
  af_pipeline_free(p);
  unsetenv("JOB_COMPLETION_INDEX");
  CHECK(af_pipeline_load_string(yaml, "y.yaml", &opt, &p) == AF_ERR_CONFIG);
  CHECK_MSG(strstr(af_error_message(), "shard: auto:"), "%s", af_error_message());
  af_error_clear();
}

int main(void) {
  snprintf(tmp, sizeof tmp, "%s", af_test_tmpdir());
  test_hash();
  test_parse();
  test_auto();
  test_expand();
  test_every_source();
  test_yaml();
  return af_test_done("test_shard");
}
