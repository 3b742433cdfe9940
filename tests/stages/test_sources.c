/* Tests of the sources (stages/source_files.c, stages/source_manifest.c):
 * order, ids, extension filter, recursion, metadata, error records, and the
 * one-line setup errors naming the file. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "io_harness.h"

extern const af_stage_desc af_stage_src_dir, af_stage_src_glob, af_stage_src_list, af_stage_src_csv,
    af_stage_src_jsonl;

static char root[4096];

static void touch(const char *rel, const char *text) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", root, rel);
  char *slash = strrchr(p, '/');
  *slash = 0;
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
  CHECK(system(cmd) == 0);
  *slash = '/';
  FILE *fp = fopen(p, "wb");
  CHECK(fp != NULL);
  if (fp) {
    fputs(text ? text : "x", fp);
    fclose(fp);
  }
}

/* Compares item ids with a '|'-separated list. */
static void check_ids(const char *what, af_item **it, int n, const char *want) {
  char got[2048] = "";
  for (int i = 0; i < n; i++) {
    if (i) strcat(got, "|");
    strncat(got, it[i]->id, sizeof got - strlen(got) - 1);
  }
  CHECK_MSG(!strcmp(got, want), "%s: ids '%s', want '%s'", what, got, want);
}

static char *cat(const char *a, const char *b) {
  static char buf[4][4300];
  static int k;
  k = (k + 1) % 4;
  /* a or b may be an earlier result: copy through a temporary (no overlap) */
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s%s", a, b);
  memcpy(buf[k], tmp, sizeof tmp);
  return buf[k];
}

static void test_dir(void) {
  int n, rc;
  const char *sets[] = {cat("path=", root), NULL, NULL};
  af_item **it = io_drain(&af_stage_src_dir, sets, NULL, &n, &rc);
  CHECK(rc == 0);
  check_ids("dir", it, n, "a.PNG|aa/x.jpg|b.jpg|sub/deeper/y.tif|sub/z.jpeg");
  CHECK(n > 2 && !strcmp(it[2]->path, cat(root, "/b.jpg")));
  CHECK(n > 0 && it[0]->status == AF_ITEM_OK);
  io_items_free(it, n);

  sets[1] = "recursive=false";
  it = io_drain(&af_stage_src_dir, sets, NULL, &n, &rc);
  check_ids("dir non-recursive", it, n, "a.PNG|b.jpg");
  io_items_free(it, n);

  sets[1] = "extensions=.JPG,tif";
  it = io_drain(&af_stage_src_dir, sets, NULL, &n, &rc);
  check_ids("dir extensions", it, n, "aa/x.jpg|b.jpg|sub/deeper/y.tif");
  io_items_free(it, n);

  sets[1] = "hidden=true";
  it = io_drain(&af_stage_src_dir, sets, NULL, &n, &rc);
  check_ids("dir hidden", it, n, ".hidden.jpg|a.PNG|aa/x.jpg|b.jpg|sub/deeper/y.tif|sub/z.jpeg");
  io_items_free(it, n);

  /* an unreadable subfolder is an error record; the walk goes on */
  if (geteuid() != 0) {
    chmod(cat(root, "/aa"), 0);
    sets[1] = NULL;
    it = io_drain(&af_stage_src_dir, sets, NULL, &n, &rc);
    check_ids("dir unreadable", it, n, "a.PNG|aa|b.jpg|sub/deeper/y.tif|sub/z.jpeg");
    CHECK(n > 1 && it[1]->status == AF_ITEM_ERROR && strstr(it[1]->error, "aa"));
    io_items_free(it, n);
    chmod(cat(root, "/aa"), 0755);
  }

  const char *missing[] = {cat("path=", cat(root, "/nope")), NULL};
  it = io_drain(&af_stage_src_dir, missing, NULL, &n, &rc);
  CHECK(rc == AF_ERR_CONFIG && strstr(af_error_message(), "/nope") && n == 0);
  af_error_clear();
  io_items_free(it, n);
}

static void test_glob(void) {
  int n, rc;
  const char *pipe = cat(root, "/pipe.yaml");
  const char *sets[] = {"patterns=*.jpg,sub/*.jpeg,none/*.png", NULL};
  af_item **it = io_drain(&af_stage_src_glob, sets, pipe, &n, &rc);
  CHECK(rc == 0);
  check_ids("glob relative", it, n, "b.jpg|sub/z.jpeg");
  CHECK(n == 2 && !strcmp(it[1]->path, cat(root, "/sub/z.jpeg")));
  io_items_free(it, n);

  const char *abs[] = {cat("patterns=", cat(root, "/sub/*/*.tif")), NULL};
  it = io_drain(&af_stage_src_glob, abs, pipe, &n, &rc);
  check_ids("glob absolute", it, n, "deeper/y.tif");
  io_items_free(it, n);
}

static void test_list(void) {
  touch("lists/l.txt", "../b.jpg\n# a comment\n\n../sub/z.jpeg  \r\nmissing.jpg");
  int n, rc;
  const char *sets[] = {cat("path=", cat(root, "/lists/l.txt")), NULL};
  af_item **it = io_drain(&af_stage_src_list, sets, NULL, &n, &rc);
  CHECK(rc == 0);
  check_ids("list", it, n, "../b.jpg|../sub/z.jpeg|missing.jpg");
  /* count() for the progress ETA, and next() still starts at the top after it */
  void *cfg = io_config(&af_stage_src_list, sets), *self = NULL;
  af_stage_ctx ctx = io_ctx("list", NULL, 0);
  CHECK_OK(af_stage_src_list.create(&ctx, cfg, &self));
  CHECK(af_stage_src_list.count(self, &ctx) == 3);
  af_item *first = NULL;
  CHECK(af_stage_src_list.next(self, &ctx, &first) == AF_FLOW_OK && first && !strcmp(first->id, "../b.jpg"));
  af_item_free(first);
  af_stage_src_list.destroy(self);
  io_config_free(&af_stage_src_list, cfg);
  CHECK(n == 3 && !strcmp(it[0]->path, cat(root, "/lists/../b.jpg")));
  io_items_free(it, n);
  const char *missing[] = {cat("path=", cat(root, "/lists/none.txt")), NULL};
  it = io_drain(&af_stage_src_list, missing, NULL, &n, &rc);
  CHECK(rc == AF_ERR_CONFIG && strstr(af_error_message(), "none.txt"));
  af_error_clear();
  io_items_free(it, n);
}

static void test_csv(void) {
  touch("m/manifest.csv",
        "\xEF\xBB\xBF"
        "id,title,path,year\r\n"
        "obj-1,\"Starry, night\",../b.jpg,1889\r\n"
        ",\"multi\nline \"\"title\"\"\",../sub/z.jpeg,\r\n"
        "obj-3,short row\r\n"
        "obj-4,No path,,1900\r\n");
  int n, rc;
  const char *sets[] = {cat("path=", cat(root, "/m/manifest.csv")), NULL};
  af_item **it = io_drain(&af_stage_src_csv, sets, NULL, &n, &rc);
  CHECK(rc == 0);
  check_ids("csv", it, n, "obj-1|../sub/z.jpeg|obj-3|obj-4");
  if (n == 4) {
    CHECK(!strcmp(it[0]->path, cat(root, "/m/../b.jpg")));
    CHECK(!strcmp(af_item_meta(it[0], "title"), "Starry, night"));
    CHECK(!strcmp(af_item_meta(it[0], "year"), "1889"));
    CHECK(af_item_meta(it[0], "id") == NULL && af_item_meta(it[0], "path") == NULL);
    CHECK(!strcmp(af_item_meta(it[1], "title"), "multi\nline \"title\""));
    CHECK(it[1]->status == AF_ITEM_OK);
    CHECK(it[2]->status == AF_ITEM_ERROR && strstr(it[2]->error, "manifest.csv:5: 2 fields"));
    CHECK(it[3]->status == AF_ITEM_ERROR && strstr(it[3]->error, "manifest.csv:6: empty 'path'"));
  }
  io_items_free(it, n);

  touch("m/nocol.csv", "id,file\na,b.jpg\n");
  const char *bad[] = {cat("path=", cat(root, "/m/nocol.csv")), NULL};
  it = io_drain(&af_stage_src_csv, bad, NULL, &n, &rc);
  CHECK(rc == AF_ERR_CONFIG &&
        strstr(af_error_message(), "nocol.csv:1: manifest header has no 'path' column"));
  af_error_clear();
  io_items_free(it, n);
  /* other column names */
  const char *named[] = {cat("path=", cat(root, "/m/nocol.csv")), "path_column=file", NULL};
  it = io_drain(&af_stage_src_csv, named, NULL, &n, &rc);
  CHECK(rc == 0);
  check_ids("csv named", it, n, "a");
  io_items_free(it, n);
  /* an unterminated quote ends the source with an error naming the line */
  touch("m/broken.csv", "id,path\na,\"b.jpg\n");
  const char *broken[] = {cat("path=", cat(root, "/m/broken.csv")), NULL};
  it = io_drain(&af_stage_src_csv, broken, NULL, &n, &rc);
  CHECK(rc == 1 && n == 0 && strstr(af_error_message(), "broken.csv:2: unterminated"));
  af_error_clear();
  io_items_free(it, n);
}

static void test_jsonl(void) {
  touch("j/items.jsonl",
        "{\"path\": \"../b.jpg\", \"id\": \"B\", \"artist\": \"X\", \"year\": 1888}\n"
        "\n"
        "not json\n"
        "{\"id\": \"nopath\"}\n"
        "{\"path\": \"/abs/c.jpg\", \"tags\": [\"a\", \"b\"]}\n");
  int n, rc;
  const char *pipe = cat(root, "/pipe.yaml");
  const char *sets[] = {"path=j/items.jsonl", NULL};
  af_item **it = io_drain(&af_stage_src_jsonl, sets, pipe, &n, &rc);
  CHECK(rc == 0);
  char where[4300];
  snprintf(where, sizeof where, "B|%s/j/items.jsonl:3|nopath|/abs/c.jpg", root);
  check_ids("jsonl", it, n, where);
  if (n == 4) {
    CHECK(!strcmp(it[0]->path, cat(root, "/j/../b.jpg")));
    CHECK(!strcmp(af_item_meta(it[0], "artist"), "X") && !strcmp(af_item_meta(it[0], "year"), "1888"));
    CHECK(it[1]->status == AF_ITEM_ERROR && strstr(it[1]->error, "items.jsonl:3: not a JSON object"));
    CHECK(it[2]->status == AF_ITEM_ERROR && strstr(it[2]->error, "items.jsonl:4: no \"path\""));
    CHECK(!strcmp(it[3]->path, "/abs/c.jpg") && !strcmp(af_item_meta(it[3], "tags"), "[\"a\",\"b\"]"));
  }
  io_items_free(it, n);

  /* stdin ("-", the default): relative paths stay relative to the cwd */
  touch("j/stdin.jsonl", "{\"path\": \"rel/a.jpg\"}\n{\"path\": \"b.png\", \"id\": 7}\n");
  CHECK(freopen(cat(root, "/j/stdin.jsonl"), "r", stdin) != NULL);
  it = io_drain(&af_stage_src_jsonl, NULL, pipe, &n, &rc);
  CHECK(rc == 0);
  check_ids("jsonl stdin", it, n, "rel/a.jpg|7");
  CHECK(n == 2 && !strcmp(it[0]->path, "rel/a.jpg"));
  io_items_free(it, n);
}

int main(void) {
  snprintf(root, sizeof root, "%s", af_test_tmpdir());
  touch("b.jpg", NULL);
  touch("a.PNG", NULL);
  touch("c.txt", NULL);
  touch(".hidden.jpg", NULL);
  touch("sub/z.jpeg", NULL);
  touch("sub/deeper/y.tif", NULL);
  touch("aa/x.jpg", NULL);
  test_dir();
  test_glob();
  test_list();
  test_csv();
  test_jsonl();
  return af_test_done("test_sources");
}
