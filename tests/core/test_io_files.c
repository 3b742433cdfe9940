/* Tests of the I/O building blocks (core/iofile.h): append-only files and
 * torn-line cutting, line scanning, id set and escaping, SHA-256 against the
 * FIPS 180-2 vectors, .npy bytes against numpy.save fixtures, and the CSV
 * reader/writer against Python's csv module (tests/data/io/). */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/csv.h"
#include "formats/npy.h"

static char *slurp(const char *path, size_t *n) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *p = malloc((size_t)len + 1);
  if (p && fread(p, 1, (size_t)len, fp) != (size_t)len) len = 0;
  if (p) p[len] = 0;
  fclose(fp);
  *n = (size_t)len;
  return p;
}

static void put_file(const char *path, const char *s) {
  FILE *fp = fopen(path, "wb");
  fputs(s, fp);
  fclose(fp);
}

static int count_line(const char *line, size_t len, void *user) {
  (void)line, (void)len;
  ++*(int *)user;
  return 0;
}

static void test_appendfile(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/a.jsonl", dir);
  put_file(path, "one\ntwo\nthr"); /* a killed writer left "thr" */
  af_appendfile *f;
  CHECK_OK(af_appendfile_open(path, 1, AF_FSYNC_BATCH, &f));
  CHECK(f->size == 8);
  CHECK_OK(af_appendfile_write(f, "three\n", 6));
  CHECK_OK(af_appendfile_close(f));
  size_t n;
  char *s = slurp(path, &n);
  CHECK(s && !strcmp(s, "one\ntwo\nthree\n"));
  free(s);
  int lines = 0;
  CHECK_OK(af_lines_scan(path, count_line, &lines));
  CHECK(lines == 3);
  /* keep = 0 truncates */
  CHECK_OK(af_appendfile_open(path, 0, AF_FSYNC_NONE, &f));
  CHECK(f->size == 0);
  CHECK_OK(af_appendfile_close(f));
  s = slurp(path, &n);
  CHECK(s && n == 0);
  free(s);
  /* a file without any newline is all torn */
  put_file(path, "partial");
  CHECK_OK(af_appendfile_open(path, 1, AF_FSYNC_NONE, &f));
  CHECK(f->size == 0);
  CHECK_OK(af_appendfile_close(f));
  s = slurp(path, &n);
  CHECK(s && n == 0);
  free(s);
  /* scanning skips a torn tail; a missing file is empty */
  put_file(path, "a\nb\nc");
  lines = 0;
  CHECK_OK(af_lines_scan(path, count_line, &lines));
  CHECK(lines == 2);
  lines = 0;
  snprintf(path, sizeof path, "%s/missing", dir);
  CHECK_OK(af_lines_scan(path, count_line, &lines));
  CHECK(lines == 0);
  /* a full disk: the write fails cleanly, naming the file and the cause */
  if (af_appendfile_open("/dev/full", 0, AF_FSYNC_NONE, &f) == 0) {
    CHECK(af_appendfile_write(f, "x\n", 2) == AF_ERR_IO);
    CHECK(strstr(af_error_message(), "/dev/full: write failed: No space") != NULL);
    af_error_clear();
    af_appendfile_close(f);
  }
  /* unwritable path: clean error naming the file */
  CHECK(af_appendfile_open("/proc/no/such/dir/x", 0, AF_FSYNC_NONE, &f) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "/proc/no/such/dir/x") != NULL);
  af_error_clear();
}

static void test_idset_escape(void) {
  af_idset *s = af_idset_new();
  char id[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(id, sizeof id, "img/%d.jpg", i);
    CHECK_OK(af_idset_add(s, id, strlen(id)));
  }
  CHECK_OK(af_idset_add(s, "img/7.jpg", 9)); /* duplicate */
  CHECK(af_idset_count(s) == 5000);
  CHECK(af_idset_has(s, "img/4999.jpg"));
  CHECK(!af_idset_has(s, "img/5000.jpg"));
  af_idset_free(s);

  const char *weird = "a b\n%c\t\x7f/ü";
  af_buf b = {0};
  af_id_escape(&b, weird);
  CHECK(!strchr(b.p, '\n') && !strchr(b.p, '\t'));
  CHECK(!strcmp(b.p, "a b%0A%25c%09%7F/ü"));
  size_t n = af_id_unescape(b.p, b.n);
  CHECK(n == strlen(weird) && !memcmp(b.p, weird, n));
  af_buf_free(&b);
}

static void test_sha256(const char *dir) {
  char hex[65];
  /* FIPS 180-2 appendix B test vectors */
  af_sha256_hex("abc", 3, hex);
  CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  af_sha256_hex("", 0, hex);
  CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  af_sha256_hex(two, strlen(two), hex);
  CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
  /* one million 'a' through the file path (crosses the read buffer) */
  char path[4200];
  snprintf(path, sizeof path, "%s/million", dir);
  FILE *fp = fopen(path, "wb");
  for (int i = 0; i < 1000000; i++) fputc('a', fp);
  fclose(fp);
  CHECK_OK(af_sha256_file(path, hex));
  CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
  /* 2500001 bytes (i * 7 + 3) & 255: three reads, the last one short (digest from Python's hashlib) */
  fp = fopen(path, "wb");
  for (int i = 0; i < 2500001; i++) fputc((i * 7 + 3) & 255, fp);
  fclose(fp);
  CHECK_OK(af_sha256_file(path, hex));
  CHECK(!strcmp(hex, "1cc14ab7b192e6950a0c5035b893d7fb95e8b0786d74d52297fdac6f5064d144"));
  CHECK(af_sha256_file("/no/such/file", hex) == AF_ERR_IO);
  af_error_clear();
}

static void check_npy(const char *dir, const char *fixture, af_dtype dt, int ndim, const int64_t *shape,
                      const void *data) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, strchr(fixture, '/') + 1);
  CHECK_OK(af_npy_write(path, dt, ndim, shape, data, 1));
  size_t n1, n2;
  char *a = slurp(path, &n1), *b = slurp(af_test_data(fixture), &n2);
  CHECK_MSG(a && b && n1 == n2 && !memcmp(a, b, n1), "%s differs from numpy.save's", fixture);
  free(a);
  free(b);
}

static void test_npy(const char *dir) {
  float f[6];
  for (int i = 0; i < 6; i++) f[i] = i * 0.5f - 1;
  check_npy(dir, "io/npy_f32_3x2.npy", AF_DTYPE_F32, 2, (int64_t[]){3, 2}, f);
  uint8_t u[5] = {0, 1, 127, 128, 255};
  check_npy(dir, "io/npy_u8_5.npy", AF_DTYPE_U8, 1, (int64_t[]){5}, u);
  int32_t i32[6] = {-3, -2, -1, 0, 1, 2147483647};
  check_npy(dir, "io/npy_i32_2x1x3.npy", AF_DTYPE_I32, 3, (int64_t[]){2, 1, 3}, i32);
  CHECK(af_npy_write("/no/such/dir/x.npy", AF_DTYPE_U8, 1, (int64_t[]){5}, u, 0) == AF_ERR_IO);
  af_error_clear();
}

static void test_csv(const char *dir) {
  size_t n;
  char *json = slurp(af_test_data("io/quoting.json"), &n);
  cJSON *rows = cJSON_Parse(json);
  CHECK(cJSON_IsArray(rows));
  FILE *fp = fopen(af_test_data("io/quoting.csv"), "rb");
  af_csv_reader *r = af_csv_reader_new(fp, "quoting.csv");
  char **f;
  int nf, got, k = 0;
  int64_t line;
  af_buf out = {0};
  while ((got = af_csv_next(r, &f, &nf, &line)) == 1) {
    cJSON *row = cJSON_GetArrayItem(rows, k++);
    CHECK(nf == cJSON_GetArraySize(row));
    for (int i = 0; i < nf && i < cJSON_GetArraySize(row); i++) {
      const char *want = cJSON_GetArrayItem(row, i)->valuestring;
      CHECK_MSG(!strcmp(f[i], want), "row %d field %d: '%s' vs '%s'", k, i, f[i], want);
      if (i) af_buf_put(&out, ",", 1);
      af_csv_put_field(&out, f[i]);
    }
    af_buf_put(&out, "\r\n", 2);
  }
  CHECK(got == 0);
  CHECK(k == cJSON_GetArraySize(rows));
  af_csv_reader_free(r);
  fclose(fp);
  /* our writer gives Python's bytes back */
  char *py = slurp(af_test_data("io/quoting.csv"), &n);
  CHECK(py && out.n == n && !memcmp(out.p, py, n));
  free(py);
  af_buf_free(&out);
  cJSON_Delete(rows);
  free(json);

  /* malformed input: each message names the file and line */
  static const struct {
    const char *text, *want;
  } bad[] = {
      {"id,path\na,\"b\n", "bad.csv:2: unterminated quoted field"},
      {"id,path\na,b\"c\n", "bad.csv:2: stray '\"'"},
      {"id,path\n\n\"a\"x,b\n", "bad.csv:3: text after the closing quote"},
  };
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.csv", dir);
  for (int i = 0; i < AF_ARRAY_LEN(bad); i++) {
    put_file(path, bad[i].text);
    fp = fopen(path, "rb");
    r = af_csv_reader_new(fp, "bad.csv");
    CHECK(af_csv_next(r, &f, &nf, &line) == 1 && nf == 2);
    got = af_csv_next(r, &f, &nf, &line);
    CHECK_MSG(got == AF_ERR_FORMAT && strstr(af_error_message(), bad[i].want), "case %d: %s", i,
              af_error_message());
    af_error_clear();
    af_csv_reader_free(r);
    fclose(fp);
  }
  /* no trailing newline, blank lines, CR-only line ends */
  put_file(path, "a,b\r\r\n\nc,\"d\"");
  fp = fopen(path, "rb");
  r = af_csv_reader_new(fp, "x.csv");
  CHECK(af_csv_next(r, &f, &nf, &line) == 1 && nf == 2 && !strcmp(f[1], "b"));
  CHECK(af_csv_next(r, &f, &nf, &line) == 1 && nf == 2 && !strcmp(f[0], "c") && !strcmp(f[1], "d"));
  CHECK(line == 4);
  CHECK(af_csv_next(r, &f, &nf, &line) == 0);
  af_csv_reader_free(r);
  fclose(fp);
}

int main(void) {
  const char *dir = af_test_tmpdir();
  CHECK(dir != NULL);
  char d[4096];
  snprintf(d, sizeof d, "%s", dir);
  test_appendfile(d);
  test_idset_escape();
  test_sha256(d);
  test_npy(d);
  test_csv(d);
  char path[4200];
  CHECK_OK(af_mkdirs(strcat(strcpy(path, d), "/x/y/z")));
  struct stat st;
  CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
  return af_test_done("test_io_files");
}
