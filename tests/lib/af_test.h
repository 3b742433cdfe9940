/* Small test helpers shared by every test program: checks that print
 * file:line and count failures, seeded random data, normalised error. */
#ifndef AF_TEST_H
#define AF_TEST_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "artflow/status.h"
#include "cl/runtime.h"

extern int af_test_failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      af_test_failures++;                                                      \
    }                                                                          \
  } while (0)

#define CHECK_MSG(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      af_test_failures++;                                                      \
    }                                                                          \
  } while (0)

/* Checks an int status is 0; prints af_strerror and the error message. */
#define CHECK_OK(expr)                                                                                      \
  do {                                                                                                      \
    int rc_ = (expr);                                                                                       \
    if (rc_ != 0) {                                                                                         \
      fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #expr, rc_, af_strerror(rc_), \
              af_error_message());                                                                          \
      af_error_clear();                                                                                     \
      af_test_failures++;                                                                                   \
    }                                                                                                       \
  } while (0)

/* Ends main(): prints "N passed, N failed"-style summary, returns exit code. */
int af_test_done(const char *name);

/* Deterministic xorshift generator. */
typedef struct {
  uint64_t s;
} af_rng;
void af_rng_seed(af_rng *r, uint64_t seed);
uint32_t af_rng_u32(af_rng *r);
float af_rng_uniform(af_rng *r, float lo, float hi); /* [lo, hi) */
float af_rng_normal(af_rng *r);
void af_rng_fill(af_rng *r, float *x, size_t n, float lo, float hi);

/* ||a-b||_2 / max(||b||_2, 1e-30): the normalised error used by all tolerances. */
double af_nerr(const float *a, const float *b, size_t n);
/* max |a-b| */
double af_maxerr(const float *a, const float *b, size_t n);

/* Path of a file in tests/data (static buffer, overwritten per call). */
const char *af_test_data(const char *name);
/* Whole file into a malloc'd, NUL-terminated buffer (caller frees); *n gets
 * its size when n is not NULL.  NULL when the file cannot be read. */
char *af_test_slurp(const char *path, size_t *n);
/* RssFile of this process in KiB (Linux /proc/self/status), -1 when unknown */
long af_test_rss_file_kib(void);

/* Converts the tiny release-format checkpoints in tests/data/artgpt4-tiny with
 * af_convert (type: af_ggml_type) into DIR/tiny-<type>.gguf; out receives the
 * path (cap bytes).  Returns af_convert's status. */
int af_test_convert_tiny(const char *dir, int type, char *out, size_t cap);

/* A device buffer of `bytes` (at least 1) holding host[0..bytes) when host is
 * given; failures count as failed checks (NULL returned). */
cl_mem af_test_upload(af_queue *q, const void *host, size_t bytes);

/* A fresh empty temporary folder for this test (static buffer), removed with
 * its contents by af_test_done when every check passed; kept (and its path
 * printed) when one failed or AF_TEST_KEEP=1. */
const char *af_test_tmpdir(void);

#endif
