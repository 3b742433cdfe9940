/* Shared test helpers (see af_test.h). */
#include "af_test.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "convert/convert.h"
#include "formats/gguf.h"

int af_test_failures = 0;

/* directories made by af_test_tmpdir: removed by af_test_done when every
 * check passed (kept, and named, when one failed or AF_TEST_KEEP is set) */
static char *tmpdirs[64];
static int ntmpdirs;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

static void tmpdirs_release(int keep) {
  for (int i = 0; i < ntmpdirs; i++) {
    if (keep)
      fprintf(stderr, "  kept %s\n", tmpdirs[i]);
    else
      nftw(tmpdirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(tmpdirs[i]);
  }
  ntmpdirs = 0;
}

int af_test_done(const char *name) {
  const char *keep = getenv("AF_TEST_KEEP");
  if (af_test_failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, af_test_failures);
    tmpdirs_release(1);
    return 1;
  }
  tmpdirs_release(keep && *keep && strcmp(keep, "0") != 0);
  printf("%s: all checks passed\n", name);
  return 0;
}

void af_rng_seed(af_rng *r, uint64_t seed) {
  r->s = seed * 0x9E3779B97F4A7C15ull + 1;
}

uint32_t af_rng_u32(af_rng *r) {
  uint64_t x = r->s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  r->s = x;
  return (uint32_t)(x >> 32);
}

float af_rng_uniform(af_rng *r, float lo, float hi) {
  return lo + (hi - lo) * (float)((af_rng_u32(r) >> 8) * (1.0 / 16777216.0));
}

float af_rng_normal(af_rng *r) {
  double u1 = (af_rng_u32(r) + 1.0) / 4294967297.0, u2 = af_rng_u32(r) / 4294967296.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void af_rng_fill(af_rng *r, float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = af_rng_uniform(r, lo, hi);
}

double af_nerr(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  if (isnan(num)) return INFINITY;
  return sqrt(num) / fmax(sqrt(den), 1e-30);
}

double af_maxerr(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= m)) m = d; /* NaN propagates as max */
  }
  return m;
}

const char *af_test_data(const char *name) {
  static char buf[4096];
  const char *dir = getenv("AF_TEST_DATA");
  snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/data", name);
  return buf;
}

cl_mem af_test_upload(af_queue *q, const void *host, size_t bytes) {
  cl_mem m = NULL;
  CHECK_OK(af_cl_alloc(q->cl, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &m));
  if (m && host && bytes) CHECK_OK(af_queue_write(q, m, 0, bytes, host));
  return m;
}

const char *af_test_tmpdir(void) {
  static char buf[4096];
  const char *base = getenv("TMPDIR");
  snprintf(buf, sizeof buf, "%s/aftest-XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(buf)) return NULL;
  if (ntmpdirs < (int)(sizeof tmpdirs / sizeof *tmpdirs)) tmpdirs[ntmpdirs++] = strdup(buf);
  return buf;
}

char *af_test_slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) b[len] = 0;
  if (b && n) *n = (size_t)len;
  return b;
}

int af_test_convert_tiny(const char *dir, int type, char *out, size_t cap) {
  char a[1024], v[1024], q[1024], l[1024], ad[1024];
  snprintf(out, cap, "%s/tiny-%s.gguf", dir, af_ggml_type_name(type));
  snprintf(a, sizeof a, "%s", af_test_data("artgpt4-tiny/arch.yaml"));
  snprintf(v, sizeof v, "%s", af_test_data("artgpt4-tiny/eva_vit_g.pth"));
  snprintf(q, sizeof q, "%s", af_test_data("artgpt4-tiny/blip2_pretrained_flant5xxl.pth"));
  snprintf(l, sizeof l, "%s", af_test_data("artgpt4-tiny/vicuna"));
  snprintf(ad, sizeof ad, "%s", af_test_data("artgpt4-tiny/ArtGPT-4.pth"));
  af_convert_opts o = {.arch = a, .vit = v, .qformer = q, .llm = l, .adapter = ad, .out = out, .type = type};
  return af_convert(&o);
}

long af_test_rss_file_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "RssFile:", 8)) v = atol(line + 8);
  if (f) fclose(f);
  return v;
}
