/* Tests of the sinks (stages/sink_jsonl.c, sink_csv.c, sink_npy.c): record
 * content read back with independent parsers (cJSON, the CSV reader tested
 * against Python's csv module), whole records after a torn tail, no
 * duplicate after a resume, npy file names and contents. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/csv.h"
#include "formats/npy.h"
#include "io_harness.h"

extern const af_stage_desc af_stage_jsonl, af_stage_csv, af_stage_npy;

static char dir[4096];

static af_item *mk(const char *id, int ok) {
  af_item *it = af_item_new(id, id);
  af_item_set_meta(it, "title", "Sunflowers, \"third\" version");
  af_item_add_timing(it, "decode", 0.25);
  if (ok) {
    af_item_set_text(it, "caption", "A vase\nwith ünïcode, \"quotes\"");
    float *d;
    af_item_add_tensor(it, "emb", AF_DTYPE_F32, 2, (int64_t[]){2, 3}, (void **)&d);
    for (int i = 0; i < 6; i++) d[i] = (float)i - 2.5f;
    af_item_add_timing(it, "preprocess", 0.125);
  } else {
    af_item_fail(it, "decode", "%s: not a JPEG file: starts with 0x00 0x01", id);
  }
  return it;
}

/* Runs a sink over items in batches of `batch`; returns 0 or the first failure. */
static int run_sink(const af_stage_desc *d, const char *const *sets, af_stage_ctx *ctx, af_item **items,
                    int n, int batch) {
  void *cfg = io_config(d, sets), *self = NULL;
  int rc = d->create(ctx, cfg, &self);
  for (int i = 0; rc == 0 && i < n; i += batch)
    if (d->process(self, ctx, items + i, n - i < batch ? n - i : batch) != AF_FLOW_OK) rc = -1;
  if (rc == 0 && d->flush && d->flush(self, ctx) != AF_FLOW_OK) rc = -1;
  d->destroy(self);
  io_config_free(d, cfg);
  return rc;
}

typedef struct lines {
  cJSON *obj[64];
  int n, bad;
} lines;

static int parse_line(const char *line, size_t len, void *user) {
  lines *l = user;
  cJSON *o = cJSON_ParseWithLength(line, len);
  if (!o || l->n == 64)
    l->bad++, cJSON_Delete(o);
  else
    l->obj[l->n++] = o;
  return 0;
}

static void lines_free(lines *l) {
  for (int i = 0; i < l->n; i++) cJSON_Delete(l->obj[i]);
  l->n = 0;
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_jsonl(void) {
  char out[4200], model[4200], sets0[4300];
  snprintf(out, sizeof out, "%s/j/out.jsonl", dir);
  snprintf(model, sizeof model, "%s/model.gguf", dir);
  FILE *fp = fopen(model, "wb");
  fputs("abc", fp);
  fclose(fp);
  snprintf(sets0, sizeof sets0, "path=%s", out);
  const char *sets[] = {sets0, "values=emb", "fsync=batch", NULL};
  af_stage_ctx ctx = io_ctx("out", "/x/describe.yaml", 0);
  ctx.model_path = model;
  ctx.device = "pocl:cpu";
  ctx.pipeline_sha256 = "00ff";
  ctx.params_json = "{\"decode\":{\"max_pixels\":100000000}}";
  af_item *items[4] = {mk("a.jpg", 1), mk("b/bad.jpg", 0), mk("c \"quoted\".jpg", 1), mk("d.jpg", 1)};
  CHECK_OK(run_sink(&af_stage_jsonl, sets, &ctx, items, 3, 2));

  lines l = {0};
  CHECK_OK(af_lines_scan(out, parse_line, &l));
  CHECK(l.n == 3 && l.bad == 0);
  if (l.n == 3) {
    const cJSON *a = l.obj[0], *b = l.obj[1];
    CHECK(!strcmp(str(a, "id"), "a.jpg") && !strcmp(str(a, "status"), "ok"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(a, "error")));
    CHECK(!strcmp(str(cJSON_GetObjectItem(a, "outputs"), "caption"), "A vase\nwith ünïcode, \"quotes\""));
    CHECK(!strcmp(str(cJSON_GetObjectItem(a, "meta"), "title"), "Sunflowers, \"third\" version"));
    const cJSON *emb = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "tensors"), "emb");
    CHECK(!strcmp(str(emb, "dtype"), "f32"));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(emb, "shape")) == 2 &&
          cJSON_GetArrayItem(cJSON_GetObjectItem(emb, "shape"), 1)->valuedouble == 3);
    CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(emb, "values"), 5)->valuedouble == 2.5);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "timings"), "preprocess")->valuedouble == 0.125);
    /* the engine's provenance block (here the harness's stand-in, with the
     * model digest asked for: hash_model defaults to true), plus the time */
    const cJSON *p = cJSON_GetObjectItem(a, "provenance");
    CHECK(!strcmp(str(p, "artflow"), "harness") && !strcmp(str(p, "model_sha256"), "digest"));
    const char *t = str(p, "time");
    CHECK(t && strlen(t) == 20 && t[4] == '-' && t[10] == 'T' && t[19] == 'Z');
    CHECK(!strcmp(str(b, "status"), "error") && strstr(str(b, "error"), "b/bad.jpg: not a JPEG"));
    CHECK(!strcmp(str(b, "error_stage"), "decode"));
    CHECK(!strcmp(str(l.obj[2], "id"), "c \"quoted\".jpg"));
  }
  lines_free(&l);

  /* a killed writer left half a record; resume cuts it and writes each
   * item once although items 2 and 3 come again */
  fp = fopen(out, "ab");
  fputs("{\"id\":\"d.jpg\",\"path\":\"d.j", fp);
  fclose(fp);
  ctx.resume = 1;
  CHECK_OK(run_sink(&af_stage_jsonl, sets, &ctx, items + 1, 3, 2));
  CHECK_OK(af_lines_scan(out, parse_line, &l));
  CHECK(l.n == 4 && l.bad == 0);
  const char *want[] = {"a.jpg", "b/bad.jpg", "c \"quoted\".jpg", "d.jpg"};
  for (int i = 0; i < l.n && i < 4; i++) CHECK(!strcmp(str(l.obj[i], "id"), want[i]));
  lines_free(&l);
  /* a fresh run (no resume) starts over */
  ctx.resume = 0;
  const char *noprov[] = {sets0, "provenance=false", NULL};
  CHECK_OK(run_sink(&af_stage_jsonl, noprov, &ctx, items, 1, 1));
  CHECK_OK(af_lines_scan(out, parse_line, &l));
  CHECK(l.n == 1 && !cJSON_GetObjectItem(l.obj[0], "provenance"));
  lines_free(&l);
  /* unwritable output: a setup error naming the file */
  const char *bad[] = {"path=/proc/nope/out.jsonl", NULL};
  CHECK(run_sink(&af_stage_jsonl, bad, &ctx, items, 1, 1) != 0);
  CHECK(strstr(af_error_message(), "/proc/nope") != NULL);
  af_error_clear();
  for (int i = 0; i < 4; i++) af_item_free(items[i]);
}

typedef struct rows {
  char *cell[16][16];
  int n, w[16];
} rows;

static void read_csv(const char *path, rows *r) {
  memset(r, 0, sizeof *r);
  FILE *fp = fopen(path, "rb");
  af_csv_reader *rd = af_csv_reader_new(fp, path);
  char **f;
  int n;
  int64_t line;
  while (af_csv_next(rd, &f, &n, &line) == 1 && r->n < 16) {
    for (int i = 0; i < n && i < 16; i++) r->cell[r->n][i] = strdup(f[i]);
    r->w[r->n++] = n;
  }
  af_csv_reader_free(rd);
  fclose(fp);
}

static void rows_free(rows *r) {
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) free(r->cell[i][j]);
}

static int col(const rows *r, const char *name) {
  for (int i = 0; i < r->w[0]; i++)
    if (!strcmp(r->cell[0][i], name)) return i;
  return -1;
}

static void test_csv(void) {
  char out[4200], s0[4300];
  snprintf(out, sizeof out, "%s/c/out.csv", dir);
  snprintf(s0, sizeof s0, "path=%s", out);
  const char *sets[] = {s0, "fsync=none", NULL};
  af_stage_ctx ctx = io_ctx("table", NULL, 0);
  af_item *items[4] = {mk("a.jpg", 1), mk("b,bad.jpg", 0), mk("c.jpg", 1), mk("d.jpg", 1)};
  CHECK_OK(run_sink(&af_stage_csv, sets, &ctx, items, 3, 3));
  rows r;
  read_csv(out, &r);
  CHECK(r.n == 4);
  int ci = col(&r, "id"), cs = col(&r, "status"), ce = col(&r, "error"), ct = col(&r, "caption"),
      cm = col(&r, "title"), cten = col(&r, "tensor.emb"), ctime = col(&r, "time.decode");
  CHECK(ci == 0 && cs >= 0 && ce >= 0 && ct >= 0 && cm >= 0 && cten >= 0 && ctime >= 0);
  if (r.n == 4 && ci == 0 && ct >= 0 && ce >= 0 && cten >= 0 && ctime >= 0) {
    CHECK(!strcmp(r.cell[1][ct], "A vase\nwith ünïcode, \"quotes\""));
    CHECK(!strcmp(r.cell[2][0], "b,bad.jpg") && !strcmp(r.cell[2][cs], "error"));
    CHECK(strstr(r.cell[2][ce], "not a JPEG") && !strcmp(r.cell[2][ct], ""));
    CHECK(!strcmp(r.cell[1][cten], "f32[2,3]") && !strcmp(r.cell[1][ctime], "0.250000"));
  }
  rows_free(&r);
  /* torn row that ends inside a quoted field holding a line break */
  FILE *fp = fopen(out, "ab");
  fputs("d.jpg,,ok,,,\"A vase\nwith", fp);
  fclose(fp);
  ctx.resume = 1;
  CHECK_OK(run_sink(&af_stage_csv, sets, &ctx, items + 2, 2, 1));
  read_csv(out, &r);
  CHECK(r.n == 5 && r.w[4] == r.w[0]);
  CHECK(r.n == 5 && !strcmp(r.cell[3][0], "c.jpg") && !strcmp(r.cell[4][0], "d.jpg"));
  rows_free(&r);
  /* explicit columns */
  ctx.resume = 0;
  const char *cols[] = {s0, "columns=id,meta.title,status", NULL};
  CHECK_OK(run_sink(&af_stage_csv, cols, &ctx, items, 2, 2));
  read_csv(out, &r);
  CHECK(r.n == 3 && r.w[0] == 3 && !strcmp(r.cell[0][1], "meta.title"));
  CHECK(r.n == 3 && !strcmp(r.cell[2][1], "Sunflowers, \"third\" version"));
  rows_free(&r);
  for (int i = 0; i < 4; i++) af_item_free(items[i]);
}

static void test_npy(void) {
  char out[4200], s0[4300], f[4400];
  snprintf(out, sizeof out, "%s/npy/sub", dir);
  snprintf(s0, sizeof s0, "path=%s", out);
  const char *sets[] = {s0, NULL};
  af_stage_ctx ctx = io_ctx("emb", NULL, 0);
  af_item *items[4] = {mk("plain.jpg", 1), mk("a/b.jpg", 1), mk("a_b.jpg", 1), mk("bad.jpg", 0)};
  CHECK_OK(run_sink(&af_stage_npy, sets, &ctx, items, 4, 2));
  struct stat st;
  snprintf(f, sizeof f, "%s/plain.jpg.emb.npy", out);
  CHECK(stat(f, &st) == 0 && st.st_size == 128 + 24); /* 128-byte header, 6 floats */
  char n1[64], n2[64];
  af_npy_safe_name("a/b.jpg", n1, sizeof n1);
  af_npy_safe_name("a_b.jpg", n2, sizeof n2);
  CHECK(strcmp(n1, n2) != 0 && !strncmp(n1, "a_b.jpg-", 8) && strlen(n1) == 16);
  CHECK(!strcmp(n2, "a_b.jpg"));
  af_npy_safe_name("../x", n1, sizeof n1);
  CHECK(n1[0] != '.' && !strchr(n1, '/'));
  snprintf(f, sizeof f, "%s/%s.emb.npy", out, n2);
  CHECK(stat(f, &st) == 0);
  snprintf(f, sizeof f, "%s/bad.jpg.emb.npy", out);
  CHECK(stat(f, &st) != 0); /* error items write nothing */
  /* the payload is the tensor, bytes after the header */
  snprintf(f, sizeof f, "%s/plain.jpg.emb.npy", out);
  FILE *fp = fopen(f, "rb");
  float v[6] = {0};
  CHECK(fp && fseek(fp, 128, SEEK_SET) == 0 && fread(v, 4, 6, fp) == 6);
  if (fp) fclose(fp);
  CHECK(v[0] == -2.5f && v[5] == 2.5f);
  for (int i = 0; i < 4; i++) af_item_free(items[i]);

  /* names of any length: 255-byte ids, two that differ only past byte 250 */
  char long_a[301], long_b[301], long_c[256];
  memset(long_a, 'x', 300), long_a[300] = 0;
  memcpy(long_b, long_a, 301), long_b[299] = 'y';
  memset(long_c, 'z', 255), long_c[255] = 0;
  af_item *li[4] = {mk(long_a, 1), mk(long_b, 1), mk(long_c, 1), mk("d.jpg", 1)};
  /* a tensor name that cannot be a file name: that item's error, not the run's */
  float *d;
  af_item_add_tensor(li[3], "a/b", AF_DTYPE_F32, 1, (int64_t[]){2}, (void **)&d);
  CHECK_OK(run_sink(&af_stage_npy, sets, &ctx, li, 4, 2));
  char na[256], nb[256];
  af_npy_safe_name(long_a, na, 256 - 20);
  af_npy_safe_name(long_b, nb, 256 - 20);
  CHECK(strcmp(na, nb) != 0 && strlen(na) == 235 && !strncmp(na, long_a, 200));
  int files = 0, longest = 0;
  DIR *dd = opendir(out);
  for (struct dirent *e; dd && (e = readdir(dd));) {
    if (e->d_name[0] == '.') continue;
    files++;
    if ((int)strlen(e->d_name) > longest) longest = (int)strlen(e->d_name);
    CHECK_MSG(!strstr(e->d_name, ".tmp."), "temporary file left: %s", e->d_name);
  }
  if (dd) closedir(dd);
  /* plain, a_b-hash, a_b, 3 long ones, d.jpg's emb */
  CHECK_MSG(files == 7, "%d files", files);
  CHECK_MSG(longest <= 255 - 11, "longest name %d bytes", longest);
  for (int i = 0; i < 3; i++) CHECK(li[i]->status == AF_ITEM_OK);
  CHECK(li[3]->status == AF_ITEM_ERROR && li[3]->error && strstr(li[3]->error, "d.jpg.a/b.npy"));
  printf("  npy item error: %s\n", li[3]->error ? li[3]->error : "(none)");
  for (int i = 0; i < 4; i++) af_item_free(li[i]);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s", af_test_tmpdir());
  test_jsonl();
  test_csv();
  test_npy();
  return af_test_done("test_sinks");
}
