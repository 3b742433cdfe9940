/* Records as collections ingest them (issue "Collections in and out"):
 *  - jsonl: schema_version, names and texts that are not UTF-8 still make
 *    valid JSON (U+FFFD + id_bytes / path_bytes, exact bytes recovered, and a
 *    resume finds such an id again), question / prompt / language as
 *    top-level fields, `provenance: run` (one manifest line, records name the
 *    run), the old `provenance: true|false` spellings, `path: "-"` = stdout;
 *  - csv: readable column names, `column_names: prefixed`, `bom: true`
 *    (and a resumed file keeps its header, BOM included);
 *  - checksum: sha256 and md5 against the published test vectors. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "io_harness.h"

extern const af_stage_desc af_stage_jsonl, af_stage_csv, af_stage_checksum;

static char dir[4096];

static int run_sink(const af_stage_desc *d, const char *const *sets, af_stage_ctx *ctx, af_item **items,
                    int n) {
  void *cfg = io_config(d, sets), *self = NULL;
  int rc = d->create(ctx, cfg, &self);
  if (rc == 0 && n && d->process(self, ctx, items, n) != AF_FLOW_OK) rc = -1;
  if (rc == 0 && d->flush && d->flush(self, ctx) != AF_FLOW_OK) rc = -1;
  d->destroy(self);
  io_config_free(d, cfg);
  return rc;
}

static cJSON *line_json(const char *text, int k) {
  const char *p = text;
  for (int i = 0; i < k && p; i++) p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL;
  if (!p || !*p) return NULL;
  const char *e = strchr(p, '\n');
  return cJSON_ParseWithLength(p, e ? (size_t)(e - p) : strlen(p));
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_utf8_and_top_fields(void) {
  char out[4200], s0[4300];
  snprintf(out, sizeof out, "%s/u.jsonl", dir);
  snprintf(s0, sizeof s0, "path=%s", out);
  const char *sets[] = {s0, "fsync=none", "provenance=none", NULL};
  af_stage_ctx ctx = io_ctx("records", NULL, 0);
  /* a Latin-1 file name (0xE9 = e acute) and a cut UTF-8 sequence in a text */
  af_item *a = af_item_new("caf\xE9.jpg", "/img/caf\xE9.jpg"), *b = af_item_new("ok.jpg", "/img/ok.jpg");
  af_item_set_text(a, "text", "bad \xC3 tail");
  af_item_set_text(a, "question", "What is shown?");
  af_item_set_text(a, "language", "en");
  af_item_set_meta(b, "title\xFF", "x");
  af_item *items[] = {a, b};
  CHECK_OK(run_sink(&af_stage_jsonl, sets, &ctx, items, 2));
  char *text = af_test_slurp(out, NULL);
  CHECK(text != NULL);
  cJSON *r0 = text ? line_json(text, 0) : NULL, *r1 = text ? line_json(text, 1) : NULL;
  CHECK_MSG(r0 && r1, "records are not valid JSON: %s", text ? text : "");
  if (r0 && r1) {
    CHECK(cJSON_GetObjectItemCaseSensitive(r0, "schema_version")->valuedouble == 1);
    CHECK(!strcmp(str(r0, "id"), "caf\xEF\xBF\xBD.jpg") && !strcmp(str(r0, "id_bytes"), "caf%E9.jpg"));
    CHECK(!strcmp(str(r0, "path_bytes"), "/img/caf%E9.jpg"));
    char exact[64];
    snprintf(exact, sizeof exact, "%s", str(r0, "path_bytes"));
    af_id_unescape(exact, strlen(exact));
    CHECK(!strcmp(exact, "/img/caf\xE9.jpg"));
    CHECK(!strcmp(str(r0, "question"), "What is shown?") && !strcmp(str(r0, "language"), "en"));
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(r0, "outputs");
    CHECK(!strcmp(str(outs, "text"), "bad \xEF\xBF\xBD tail"));
    CHECK(!cJSON_GetObjectItemCaseSensitive(outs, "question")); /* top-level, not both */
    CHECK(!cJSON_GetObjectItemCaseSensitive(r1, "id_bytes") &&
          !cJSON_GetObjectItemCaseSensitive(r1, "provenance"));
    CHECK(str(cJSON_GetObjectItemCaseSensitive(r1, "meta"), "title\xEF\xBF\xBD") != NULL);
  }
  cJSON_Delete(r0), cJSON_Delete(r1);
  free(text);
  /* resume: the Latin-1 id is found again through id_bytes, nothing doubled */
  ctx.resume = 1;
  af_item *a2 = af_item_new("caf\xE9.jpg", "/img/caf\xE9.jpg"), *c = af_item_new("new.jpg", NULL);
  af_item *again[] = {a2, c};
  CHECK_OK(run_sink(&af_stage_jsonl, sets, &ctx, again, 2));
  text = af_test_slurp(out, NULL);
  int nl = 0;
  for (const char *p = text; p && *p; p++) nl += *p == '\n';
  CHECK_MSG(nl == 3, "%d lines after the resume", nl);
  free(text);
  af_item_free(a), af_item_free(b), af_item_free(a2), af_item_free(c);
}

static void test_provenance_modes(void) {
  char out[4200], s0[4300], man[4300];
  snprintf(out, sizeof out, "%s/p.jsonl", dir);
  snprintf(s0, sizeof s0, "path=%s", out);
  snprintf(man, sizeof man, "%s.runs.jsonl", out);
  af_stage_ctx ctx = io_ctx("records", NULL, 0);
  af_item *it = af_item_new("a", NULL);
  af_item *items[] = {it};
  const char *run[] = {s0, "fsync=none", "provenance=run", "hash_model=false", NULL};
  CHECK_OK(run_sink(&af_stage_jsonl, run, &ctx, items, 1));
  char *mt = af_test_slurp(man, NULL), *rt = af_test_slurp(out, NULL);
  cJSON *m = mt ? line_json(mt, 0) : NULL, *r = rt ? line_json(rt, 0) : NULL;
  CHECK_MSG(m && r, "manifest %s / record %s", mt ? mt : "(none)", rt ? rt : "(none)");
  if (m && r) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(r, "provenance");
    CHECK(str(m, "run_id") && strlen(str(m, "run_id")) == 16 && !strcmp(str(m, "run_id"), str(p, "run_id")));
    CHECK(!strcmp(str(p, "manifest"), "p.jsonl.runs.jsonl") && str(p, "time"));
    CHECK(!strcmp(str(cJSON_GetObjectItemCaseSensitive(m, "provenance"), "artflow"), "harness"));
    CHECK(!cJSON_GetObjectItemCaseSensitive(p, "artflow")); /* not repeated per record */
  }
  cJSON_Delete(m), cJSON_Delete(r);
  free(mt), free(rt);
  /* the old boolean spellings still work */
  const char *t[] = {s0, "fsync=none", "provenance=true", NULL};
  CHECK_OK(run_sink(&af_stage_jsonl, t, &ctx, items, 1));
  rt = af_test_slurp(out, NULL);
  CHECK_MSG(rt && strstr(rt, "\"provenance\":{\"artflow\":\"harness\",") && strstr(rt, ",\"time\":\""), "%s",
            rt ? rt : "");
  free(rt);
  const char *f[] = {s0, "fsync=none", "provenance=false", NULL};
  CHECK_OK(run_sink(&af_stage_jsonl, f, &ctx, items, 1));
  rt = af_test_slurp(out, NULL);
  CHECK(rt && !strstr(rt, "provenance"));
  free(rt);
  af_item_free(it);
}

static void test_stdout(void) {
  char cap[4200];
  snprintf(cap, sizeof cap, "%s/stdout.txt", dir);
  fflush(stdout);
  int saved = dup(1), fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(saved >= 0 && fd >= 0);
  dup2(fd, 1);
  close(fd);
  const char *sets[] = {"path=-", "provenance=none", NULL};
  af_stage_ctx ctx = io_ctx("records", NULL, 0);
  af_item *it = af_item_new("x", NULL);
  af_item *items[] = {it};
  int rc = run_sink(&af_stage_jsonl, sets, &ctx, items, 1);
  dup2(saved, 1);
  close(saved);
  CHECK_OK(rc);
  char *t = af_test_slurp(cap, NULL);
  CHECK_MSG(t && !strncmp(t, "{\"id\":\"x\",\"schema_version\":1,", 29), "stdout got: %s", t ? t : "");
  free(t);
  CHECK(access("-", F_OK) != 0); /* no file named "-" */
  af_item_free(it);
}

static void test_csv_names_and_bom(void) {
  char out[4200], s0[4300];
  snprintf(out, sizeof out, "%s/t.csv", dir);
  snprintf(s0, sizeof s0, "path=%s", out);
  af_stage_ctx ctx = io_ctx("table", NULL, 0);
  af_item *it = af_item_new("a.jpg", "a.jpg");
  af_item_set_meta(it, "title", "Vase");
  af_item_set_meta(it, "status", "on loan"); /* clashes with a core column */
  af_item_set_meta(it, "note", "m");
  af_item_set_text(it, "note", "t"); /* a metadata key and a text of one name */
  af_item_set_text(it, "text", "A vase");
  af_item *items[] = {it};
  const char *bom[] = {s0, "fsync=none", "bom=true", NULL};
  CHECK_OK(run_sink(&af_stage_csv, bom, &ctx, items, 1));
  char *t = af_test_slurp(out, NULL);
  const char *h1 =
      "\xEF\xBB\xBFid,path,status,error,error_stage,title,meta.status,meta.note,text.note,text\r\n";
  CHECK_MSG(t && !strncmp(t, h1, strlen(h1)), "header: %s", t ? t : "");
  CHECK(t && strstr(t, "\r\na.jpg,a.jpg,ok,,,Vase,on loan,m,t,A vase\r\n"));
  free(t);
  /* resume keeps the header (the BOM is not part of the first name) */
  ctx.resume = 1;
  af_item *b = af_item_new("b.jpg", "b.jpg");
  af_item_set_meta(b, "title", "Jug");
  af_item *more[] = {b};
  CHECK_OK(run_sink(&af_stage_csv, bom, &ctx, more, 1));
  t = af_test_slurp(out, NULL);
  CHECK(t && strstr(t, "\r\nb.jpg,b.jpg,ok,,,Jug,,,,\r\n") && !strstr(t + 3, "\xEF\xBB\xBF"));
  free(t);
  /* the old header, on request */
  ctx.resume = 0;
  const char *old[] = {s0, "fsync=none", "column_names=prefixed", NULL};
  CHECK_OK(run_sink(&af_stage_csv, old, &ctx, items, 1));
  t = af_test_slurp(out, NULL);
  const char *h2 =
      "id,path,status,error,error_stage,meta.title,meta.status,meta.note,text.note,text.text\r\n";
  CHECK(t && !strncmp(t, h2, strlen(h2)));
  free(t);
  af_item_free(it), af_item_free(b);
}

static void test_checksum(void) {
  char f[4200];
  snprintf(f, sizeof f, "%s/abc.bin", dir);
  FILE *fp = fopen(f, "wb");
  fputs("abc", fp);
  fclose(fp);
  /* FIPS 180-2 / RFC 1321 test vectors for "abc" */
  const char *want[3][2] = {
      {"algorithm=sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"algorithm=md5", "900150983cd24fb0d6963f7d28e17f72"},
      {"algorithm=fnv1a64", "e71fa2190541574b"}};
  for (int k = 0; k < 3; k++) {
    const char *sets[] = {want[k][0], NULL};
    void *cfg = io_config(&af_stage_checksum, sets), *self = NULL;
    af_stage_ctx ctx = io_ctx("checksum", NULL, 0);
    af_item *it = af_item_new("abc", f), *missing = af_item_new("gone", "/nonexistent/x");
    af_item *items[] = {it, missing};
    CHECK_OK(af_stage_checksum.create(&ctx, cfg, &self));
    CHECK(af_stage_checksum.process(self, &ctx, items, 2) == AF_FLOW_OK);
    const char *got = af_item_text(it, "checksum");
    CHECK_MSG(got && !strcmp(got, want[k][1]), "%s: %s", want[k][0], got ? got : "(none)");
    CHECK(missing->status == AF_ITEM_ERROR && strstr(missing->error, "/nonexistent/x"));
    af_stage_checksum.destroy(self);
    io_config_free(&af_stage_checksum, cfg);
    af_item_free(it), af_item_free(missing);
  }
}

int main(void) {
  snprintf(dir, sizeof dir, "%s", af_test_tmpdir());
  test_utf8_and_top_fields();
  test_provenance_modes();
  test_stdout();
  test_csv_names_and_bom();
  test_checksum();
  return af_test_done("test_records");
}
