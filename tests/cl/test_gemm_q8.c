/* The int8-activation GEMM over Q8_0 / Q4_0 weights (cl/gemm_q8.h) against
 * its plain-C reference (tests/lib/ref_ops.c ref_qgemm: the same quantised x,
 * exact integer block sums, the same fp32 sequence per output).  Tolerance:
 * normalised L2 error <= 1e-6 per case (the kernel and the reference may
 * differ only where x / d rounds differently in the last bit of the
 * division, which moves one quant by one).  Against the float product of the
 * same dequantised weights the error of int8 activations is stated and
 * bounded: normalised <= 1.5e-2 (measured ~5e-3 for Q8_0 and Q4_0 with
 * uniform random x).  Shapes cover rows not a multiple of the MR rows per
 * pass, outputs not a multiple of the 16 lanes, k of one block and of a
 * 7B layer, offsets, bias, all-zero blocks of x, and nothing written outside
 * y.  On a CPU with AVX-512 VNNI the VNNI kernel and the plain integer one
 * must agree bit for bit.  `test_gemm_q8 bench` times it against the float
 * path (weights dequantised to fp32, then the GEMM); not part of the test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "af_test.h"
#include "cl/gemm_q8.h"
#include "cl/gemm_tiled.h"
#include "cl/ops.h"
#include "formats/quant.h"
#include "ref_ops.h"

static af_queue *Q;
static af_rng R;
static const float SENTINEL = 12345.0f;

/* runs one case; returns the device result (m x n) for comparisons */
static float *t_case(int q4, size_t m, size_t n, size_t k, int with_bias, const char *tag) {
  size_t x_off = 5, y_off = 3, ylen = y_off + m * n + 9, nw = n * k;
  float *x = malloc(sizeof(float) * (x_off + m * k)), *w = malloc(sizeof(float) * nw);
  float *bias = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * m * n);
  float *fwant = calloc(m * n, sizeof(float)), *got = malloc(sizeof(float) * ylen);
  af_rng_fill(&R, x, x_off + m * k, -1.0f, 1.0f);
  if (k >= 64 && m > 1)
    for (int j = 0; j < 32; j++) x[x_off + k + j] = 0.0f; /* an all-zero block (scale 0) */
  af_rng_fill(&R, w, nw, -1.0f, 1.0f);
  af_rng_fill(&R, bias, n, -1.0f, 1.0f);
  size_t bytes = nw / 32 * (q4 ? AF_Q4_0_BLOCK_BYTES : AF_Q8_0_BLOCK_BYTES);
  void *wq = malloc(bytes);
  if (q4)
    af_quantize_q4_0(w, wq, nw), af_dequantize_q4_0(wq, w, nw);
  else
    af_quantize_q8_0(w, wq, nw), af_dequantize_q8_0(wq, w, nw);
  for (size_t i = 0; i < ylen; i++) got[i] = SENTINEL;
  cl_mem dw = af_test_upload(Q, wq, bytes), dx = af_test_upload(Q, x, sizeof(float) * (x_off + m * k)),
         db = af_test_upload(Q, bias, sizeof(float) * n), dy = af_test_upload(Q, got, sizeof(float) * ylen);
  af_dbuf xv = {dx, x_off}, yv = {dy, y_off};
  CHECK_OK(af_qgemm(Q, q4, m, n, k, xv, dw, with_bias ? db : NULL, yv));
  CHECK_OK(af_queue_read(Q, dy, 0, sizeof(float) * ylen, got));
  ref_qgemm(q4, m, n, k, x + x_off, wq, with_bias ? bias : NULL, want);
  ref_gemm(0, 1, m, n, k, 1.0f, x + x_off, k, w, k, 0.0f, fwant, n);
  if (with_bias)
    for (size_t i = 0; i < m * n; i++) fwant[i] += bias[i % n];
  double e = af_nerr(got + y_off, want, m * n), ef = af_nerr(got + y_off, fwant, m * n);
  CHECK_MSG(e <= 1e-6, "%s %s %zux%zux%zu bias %d: error vs the int8 reference %g > 1e-6", tag,
            q4 ? "q4_0" : "q8_0", m, n, k, with_bias, e);
  CHECK_MSG(ef <= 1.5e-2, "%s %s %zux%zux%zu: error vs the float product %g > 1.5e-2", tag,
            q4 ? "q4_0" : "q8_0", m, n, k, ef);
  size_t bad = 0;
  for (size_t i = 0; i < ylen; i++)
    if (i < y_off || i >= y_off + m * n) bad += got[i] != SENTINEL;
  CHECK_MSG(bad == 0, "%s %zux%zux%zu: %zu values written outside y", tag, m, n, k, bad);
  if (m * n >= 256)
    printf("%s %s %zux%zux%zu: vs int8 reference %.2g, vs float product %.2g\n", tag, q4 ? "q4_0" : "q8_0", m,
           n, k, e, ef);
  clReleaseMemObject(dw), clReleaseMemObject(dx), clReleaseMemObject(db), clReleaseMemObject(dy);
  float *res = malloc(sizeof(float) * m * n);
  memcpy(res, got + y_off, sizeof(float) * m * n);
  free(x), free(w), free(bias), free(want), free(fwant), free(got), free(wq);
  return res;
}

static void run_all(const char *tag) {
  static const size_t ms[] = {1, 3, 8, 9, 37};
  static const size_t ns[] = {1, 15, 16, 17, 45};
  static const size_t ks[] = {32, 96, 1408};
  int c = 0;
  for (int q4 = 0; q4 < 2; q4++)
    for (size_t i = 0; i < 5; i++)
      for (size_t j = 0; j < 5; j++, c++) free(t_case(q4, ms[i], ns[j], ks[c % 3], c % 2, tag));
  for (int q4 = 0; q4 < 2; q4++) free(t_case(q4, 13, 40, 4096, 1, tag)); /* a 7B layer's k */
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the int8 GEMM against dequantise + float GEMM, alternating, best of 5 */
static void bench(size_t m, size_t n, size_t k, int q4) {
  size_t nw = n * k, bytes = nw / 32 * (q4 ? AF_Q4_0_BLOCK_BYTES : AF_Q8_0_BLOCK_BYTES);
  float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * nw);
  af_rng_fill(&R, x, m * k, -1.0f, 1.0f);
  af_rng_fill(&R, w, nw, -1.0f, 1.0f);
  void *wq = malloc(bytes);
  if (q4)
    af_quantize_q4_0(w, wq, nw);
  else
    af_quantize_q8_0(w, wq, nw);
  cl_mem dw = af_test_upload(Q, wq, bytes), dx = af_test_upload(Q, x, sizeof(float) * m * k), dy = NULL,
         wf = NULL;
  CHECK_OK(af_cl_alloc(Q->cl, CL_MEM_READ_WRITE, sizeof(float) * m * n, NULL, &dy));
  CHECK_OK(af_cl_alloc(Q->cl, CL_MEM_READ_WRITE, sizeof(float) * nw, NULL, &wf));
  af_dbuf xv = {dx, 0}, yv = {dy, 0}, wv = {wf, 0};
  double best[2] = {1e9, 1e9};
  for (int rep = 0; rep < 6; rep++)
    for (int v = 0; v < 2; v++) {
      double t0 = now();
      if (v == 0)
        CHECK_OK(af_qgemm(Q, q4, m, n, k, xv, dw, NULL, yv));
      else {
        CHECK_OK(af_op_dequant_q(Q, dw, q4, wf, nw));
        CHECK_OK(af_op_gemm(Q, 0, 1, m, n, k, 1.0f, xv, k, wv, k, 0.0f, yv, n));
      }
      CHECK_OK(af_queue_finish(Q));
      double t = now() - t0;
      if (rep && t < best[v]) best[v] = t;
    }
  double fl = 2.0 * (double)m * (double)n * (double)k;
  printf("%s %zux%zux%zu: int8 %.2f ms (%.0f GFLOPS)  dequant+float %.2f ms (%.0f GFLOPS)  ratio %.2fx\n",
         q4 ? "q4_0" : "q8_0", m, n, k, best[0] * 1e3, fl / best[0] * 1e-9, best[1] * 1e3,
         fl / best[1] * 1e-9, best[1] / best[0]);
  clReleaseMemObject(dw), clReleaseMemObject(dx), clReleaseMemObject(dy), clReleaseMemObject(wf);
  free(x), free(w), free(wq);
}

int main(int argc, char **argv) {
  af_cl *cl = NULL;
  af_rng_seed(&R, 20);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_gemm_q8");
  CHECK_OK(af_queue_new(cl, &Q));
  if (argc > 1 && !strcmp(argv[1], "bench")) {
    size_t m = argc > 2 ? (size_t)atol(argv[2]) : 100;
    printf("vnni: %d\n", af_qgemm_vnni(cl));
    for (int q4 = 1; q4 >= 0; q4--) {
      bench(m, 4096, 4096, q4);
      bench(m, 11008, 4096, q4);
      bench(m, 4096, 11008, q4);
    }
    af_queue_free(Q);
    af_cl_close(cl);
    return af_test_done("test_gemm_q8 bench");
  }
  char *base = cl->tuning_defines ? strdup(cl->tuning_defines) : strdup("");
  char buf[2048];
  int vnni = af_qgemm_vnni(cl);
  printf("VNNI on this device: %s\n", vnni ? "yes" : "no");
  run_all(vnni ? "vnni" : "int");
  /* other rows per pass */
  snprintf(buf, sizeof buf, "%s -DAF_QG_MR=3", base);
  CHECK_OK(af_cl_set_tuning(cl, buf));
  for (int q4 = 0; q4 < 2; q4++) free(t_case(q4, 10, 33, 160, 1, "mr3"));
  if (vnni) { /* the plain integer code gives the same bits */
    snprintf(buf, sizeof buf, "%s -DAF_QGEMM_VNNI=0", base);
    for (int q4 = 0; q4 < 2; q4++) {
      CHECK_OK(af_cl_set_tuning(cl, base));
      af_rng_seed(&R, 77);
      float *a = t_case(q4, 21, 50, 1408, 1, "vnni");
      CHECK_OK(af_cl_set_tuning(cl, buf));
      CHECK(!af_qgemm_vnni(cl));
      af_rng_seed(&R, 77);
      float *b = t_case(q4, 21, 50, 1408, 1, "int");
      CHECK_MSG(!memcmp(a, b, sizeof(float) * 21 * 50), "%s: VNNI and plain integer results differ",
                q4 ? "q4_0" : "q8_0");
      free(a), free(b);
    }
  }
  CHECK_OK(af_cl_set_tuning(cl, base));
  free(base);
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_gemm_q8");
}
