/* OpenCL runtime: device selection, program build + caches (memory and disk,
 * corrupt entries rebuilt), AF_KERNEL_DIR, build-log errors, allocation limits,
 * kernel execution and profiling. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "cl/runtime.h"
#include "cl/runtime_internal.h"

static int run_axpy(af_queue *q, const char *options, float scale_expected) {
  enum { N = 1000 };
  float x[N], y[N], out[N];
  for (int i = 0; i < N; i++) x[i] = (float)i, y[i] = 1.0f;
  cl_mem bx = NULL, by = NULL;
  cl_kernel k;
  int rc = 0, n = N;
  float a = 2.0f;
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_READ_ONLY, sizeof x, NULL, &bx), out);
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_READ_WRITE, sizeof y, NULL, &by), out);
  AF_TRY(rc, af_queue_write(q, bx, 0, sizeof x, x), out);
  AF_TRY(rc, af_queue_write(q, by, 0, sizeof y, y), out);
  AF_TRY(rc, af_queue_kernel(q, "selftest.cl", "af_selftest_axpy", options, &k), out);
  AF_ARG(rc, k, 0, n, out);
  AF_ARG(rc, k, 1, a, out);
  AF_ARG(rc, k, 2, bx, out);
  AF_ARG(rc, k, 3, by, out);
  size_t g = N, l = 64; /* 1000 is not a multiple of 64: the runtime rounds up */
  AF_TRY(rc, af_queue_run(q, k, 1, &g, &l, "axpy"), out);
  AF_TRY(rc, af_queue_read(q, by, 0, sizeof out, out), out);
  for (int i = 0; i < N; i++) CHECK(out[i] == 2.0f * i + scale_expected);
out:
  if (bx) clReleaseMemObject(bx);
  if (by) clReleaseMemObject(by);
  return rc;
}

static int count_cache_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strstr(e->d_name, ".clbin")) n++;
  closedir(d);
  return n;
}

static void corrupt_cache_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strstr(e->d_name, ".clbin")) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    FILE *f = fopen(p, "r+b");
    if (!f) continue;
    fseek(f, -5, SEEK_END); /* flip bytes inside the binary: the CRC must catch it */
    fputc('X', f);
    fputc('Y', f);
    fclose(f);
  }
  closedir(d);
}

int main(void) {
  char cache[4096];
  const char *tmp = af_test_tmpdir();
  CHECK(tmp != NULL);
  setenv("XDG_CACHE_HOME", tmp, 1);
  unsetenv("ARTFLOW_NO_DISK_CACHE"); /* the suite turns the cache off; this test checks it */
  snprintf(cache, sizeof cache, "%s/artflow", tmp);

  /* selection */
  af_device_ref ref;
  CHECK_OK(af_cl_select(NULL, &ref));
  CHECK_OK(af_cl_select("0", &ref));
  CHECK(af_cl_select("99", &ref) == AF_ERR_NO_DEVICE);
  CHECK(strstr(af_error_message(), "out of range") != NULL);
  af_error_clear();
  CHECK(af_cl_select("no-such-device-xyz", &ref) == AF_ERR_NO_DEVICE);
  CHECK(strstr(af_error_message(), "no-such-device-xyz") != NULL);
  af_error_clear();
  af_device_ref first;
  CHECK_OK(af_cl_select("0", &first));
  /* a substring of the device name selects it, case-insensitively */
  char sub[8];
  snprintf(sub, sizeof sub, "%.5s", first.info.name);
  for (char *c = sub; *c; c++) *c = (char)((*c >= 'a' && *c <= 'z') ? *c - 32 : *c);
  CHECK_OK(af_cl_select(sub, &ref));
  CHECK(ref.device == first.device);

  af_cl *cl = NULL;
  af_queue *q = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_runtime");
  CHECK_OK(af_queue_new(cl, &q));
  CHECK_OK(run_axpy(q, NULL, 1.0f));
  /* options produce a distinct program; defines reach the kernel */
  CHECK_OK(run_axpy(q, "-DAF_SELFTEST_SCALE=3.0f", 3.0f));
  CHECK(count_cache_files(cache) == 2);

  /* build failure surfaces the build log */
  cl_kernel k;
  int rc = af_queue_kernel(q, "selftest.cl", "af_selftest_axpy", "-DAF_SELFTEST_BREAK", &k);
  CHECK(rc == AF_ERR_BUILD);
  CHECK(strstr(af_error_message(), "selftest.cl") != NULL);
  CHECK(strstr(af_error_message(), "error") != NULL);
  af_error_clear();
  CHECK(af_queue_kernel(q, "missing.cl", "x", NULL, &k) == AF_ERR_NOT_FOUND);
  af_error_clear();
  CHECK(af_queue_kernel(q, "selftest.cl", "no_such_kernel", NULL, &k) == CL_INVALID_KERNEL_NAME);
  af_error_clear();

  /* host-side tuning knobs come from the tuning defines */
  char *saved = cl->tuning_defines ? strdup(cl->tuning_defines) : NULL;
  CHECK_OK(af_cl_set_tuning(cl, "-DAF_X_WG=16 -DAF_Y=abc"));
  CHECK(af_cl_tuning_int(cl, "AF_X_WG", 4) == 16);
  CHECK(af_cl_tuning_int(cl, "AF_Y", 4) == 4); /* not a number: default */
  CHECK(af_cl_tuning_int(cl, "AF_Z", 7) == 7);
  CHECK_OK(af_cl_set_tuning(cl, saved));
  free(saved);

  /* allocation over the device's max allocation is a clean error */
  cl_mem m;
  rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, (size_t)cl->info.max_alloc + 4096, NULL, &m);
  CHECK(rc == AF_ERR_DEVICE_MEM);
  CHECK(strstr(af_error_message(), "exceeds") != NULL);
  af_error_clear();
  af_queue_free(q);
  af_cl_close(cl);

  /* second process-like open: programs come from the disk cache */
  CHECK_OK(af_cl_open(&cl, NULL));
  CHECK_OK(af_queue_new(cl, &q));
  CHECK_OK(run_axpy(q, NULL, 1.0f));
  af_queue_free(q);
  af_cl_close(cl);

  /* corrupt cache entries are detected and rebuilt, results stay right */
  corrupt_cache_files(cache);
  CHECK_OK(af_cl_open(&cl, NULL));
  CHECK_OK(af_queue_new(cl, &q));
  CHECK_OK(run_axpy(q, NULL, 1.0f));
  af_queue_free(q);
  af_cl_close(cl);
  CHECK(count_cache_files(cache) == 2);

  /* AF_KERNEL_DIR loads sources from disk */
  char kdir[4096], kpath[4200];
  snprintf(kdir, sizeof kdir, "%s/kernels", tmp);
  mkdir(kdir, 0755);
  snprintf(kpath, sizeof kpath, "%s/selftest.cl", kdir);
  FILE *f = fopen(kpath, "w");
  CHECK(f != NULL);
  if (f) {
    fputs(
        "__kernel void af_selftest_axpy(const int n, const float a, __global const float *x,"
        " __global float *y) { int i = get_global_id(0); if (i < n) y[i] = a * x[i] + 5.0f; }\n",
        f);
    fclose(f);
  }
  setenv("AF_KERNEL_DIR", kdir, 1);
  setenv("ARTFLOW_PROFILE", "1", 1);
  CHECK_OK(af_cl_open(&cl, NULL));
  CHECK(cl && cl->profiling);
  CHECK_OK(af_queue_new(cl, &q));
  CHECK_OK(run_axpy(q, NULL, 5.0f));
  CHECK(cl->nprof == 1 && !strcmp(cl->prof[0].label, "axpy"));
  af_queue_free(q);
  af_cl_close(cl);
  unsetenv("AF_KERNEL_DIR");
  unsetenv("ARTFLOW_PROFILE");
  return af_test_done("test_runtime");
}
