/* Limits on pipeline files (pipeline/yaml.c): size, nesting depth and node
 * count (aliases counted as what they repeat) are refused with one line
 * naming the file, the position and the limit; loading stays linear, so the
 * shapes that took minutes (40,000 keys in one mapping, 100,000-deep
 * nesting) are answered in well under a second each. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "af_test.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"
#include "pipeline_stages.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads `yaml`, expects AF_ERR_CONFIG whose message holds `n1` and `n2`,
 * within `max_s` seconds. */
static void expect_err(const char *what, const char *yaml, const char *n1, const char *n2, double max_s) {
  af_pipeline *p = NULL;
  double t0 = now();
  int rc = af_pipeline_load_string(yaml, "t.yaml", NULL, &p);
  double dt = now() - t0;
  const char *m = af_error_message();
  printf("  %-28s %.3f s  %.160s\n", what, dt, m);
  CHECK_MSG(rc == AF_ERR_CONFIG, "%s: rc %d (%s)", what, rc, m);
  CHECK(p == NULL);
  CHECK_MSG(strstr(m, n1) != NULL, "%s: message '%s' lacks '%s'", what, m, n1);
  if (n2) CHECK_MSG(strstr(m, n2) != NULL, "%s: message '%s' lacks '%s'", what, m, n2);
  CHECK_MSG(!strchr(m, '\n'), "%s: not one line", what);
  CHECK_MSG(dt < max_s, "%s: took %.2f s (limit %.1f s)", what, dt, max_s);
  af_error_clear();
  af_pipeline_free(p);
}

#define HEAD "source: {stage: tp_seq, count: 5}\n"
#define SINK "sinks:\n  - stage: tp_collect\n"

int main(void) {
  tp_register();
  af_buf b = {0};

  /* size: one byte over 1 MiB (a comment keeps it valid YAML otherwise) */
  af_buf_puts(&b, HEAD SINK "#");
  while (b.n < (1 << 20)) af_buf_puts(&b, "x");
  af_buf_puts(&b, "\n");
  expect_err("1 MiB + 1 byte", b.p, "t.yaml:", "more than the 1048576 bytes", 1.0);

  /* ... and a 100 MB file on disk is refused without reading it all */
  char path[1024];
  snprintf(path, sizeof path, "%s/big.yaml", af_test_tmpdir());
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0 && ftruncate(fd, 100 << 20) == 0 && pwrite(fd, "#", 1, 0) == 1);
  if (fd >= 0) close(fd);
  af_pipeline *p = NULL;
  double t0 = now();
  CHECK(af_pipeline_load(path, NULL, &p) == AF_ERR_CONFIG);
  printf("  100 MB file                  %.3f s  %s\n", now() - t0, af_error_message());
  CHECK(strstr(af_error_message(), "big.yaml: more than the 1048576 bytes") != NULL);
  CHECK(now() - t0 < 1.0);
  af_error_clear();

  /* depth: 100,000 nested flow lists in a parameter, refused at level 65 */
  b.n = 0;
  af_buf_puts(&b, HEAD "stages:\n  - {stage: tp_delay, label: ");
  for (int i = 0; i < 100000; i++) af_buf_puts(&b, "[");
  for (int i = 0; i < 100000; i++) af_buf_puts(&b, "]");
  af_buf_puts(&b, "}\n" SINK);
  expect_err("100,000-deep nesting", b.p, "t.yaml:3:", "nested deeper than 64 levels", 1.0);
  /* 64 levels are within the limit: the error is then about the value */
  b.n = 0;
  af_buf_puts(&b, HEAD "stages:\n  - {stage: tp_delay, label: ");
  for (int i = 0; i < 61; i++) af_buf_puts(&b, "[");
  for (int i = 0; i < 61; i++) af_buf_puts(&b, "]");
  af_buf_puts(&b, "}\n" SINK);
  expect_err("64 levels", b.p, "key 'label'", "got a list", 1.0);

  /* 40,000 keys in one mapping with a repeat at the end: found by sorting */
  b.n = 0;
  af_buf_puts(&b, HEAD "stages:\n  - stage: tp_delay\n");
  char line[64];
  for (int i = 0; i < 40000; i++) {
    snprintf(line, sizeof line, "    k%05d: 1\n", i);
    af_buf_puts(&b, line);
  }
  af_buf_puts(&b, "    k00017: 2\n" SINK);
  expect_err("40,000 keys, one repeated", b.p, "t.yaml:40004:5:", "key 'k00017': given twice", 1.0);

  /* node count: 100,001 list entries */
  b.n = 0;
  af_buf_puts(&b, HEAD "stages:\n  - stage: tp_delay\n    label: [");
  for (int i = 0; i <= 100000; i++) af_buf_puts(&b, "1,");
  af_buf_puts(&b, "1]\n" SINK);
  expect_err("100,001 values", b.p, "t.yaml:4:", "more than 100000 values", 1.0);

  /* aliases count as what they repeat: 1,000 x 1,000 would be 10^6 */
  b.n = 0;
  af_buf_puts(&b, "x: &a [");
  for (int i = 0; i < 1000; i++) af_buf_puts(&b, "1,");
  af_buf_puts(&b, "1]\ny: [");
  for (int i = 0; i < 1000; i++) af_buf_puts(&b, "*a,");
  af_buf_puts(&b, "*a]\n" HEAD SINK);
  expect_err("aliases x1000", b.p, "t.yaml:2:", "aliases counted as what they repeat", 1.0);

  /* a normal file with an anchor and an alias still loads */
  p = NULL;
  CHECK_OK(
      af_pipeline_load_string("source: &s {stage: tp_seq, count: 3}\nstages:\n  - stage: tp_delay\n"
                              "    label: &l hello\n  - {stage: tp_delay, name: d2, label: *l}\n" SINK,
                              "t.yaml", NULL, &p));
  CHECK(p && strstr(af_pipeline_params_json(p), "hello"));
  af_pipeline_free(p);

  af_buf_free(&b);
  return af_test_done("test_yaml_limits");
}
