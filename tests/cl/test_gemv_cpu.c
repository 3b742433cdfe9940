/* The GEMVs of decode (af_op_gemv, af_op_gemv_qn) with both kernel families:
 * the portable kernels of ops.cl and the CPU kernels of gemv_cpu.cl
 * (AF_GEMV_IMPL=cpu), against a plain-C double-precision reference on random
 * inputs.  Weights fp32, fp16, Q8_0, Q4_0 (the reference uses formats/quant.c's
 * dequantised values, so only summation order differs); odd row counts, k not
 * a multiple of the 16-wide vectors (fp32/fp16), nb = 1..8 vectors, bias on
 * and off, several rows-per-work-item and group sizes.  Tolerance: every
 * output within 1e-5 of the sum of its terms' magnitudes (fp32 summation
 * error), and for 16+ rows the normalised L2 error <= 1e-5 per vector (the
 * gemv entries of cl/opdesc.c); outputs of vectors past nb and rows past
 * `rows` must stay untouched.
 * Cost is kernel compilation (each define set is a program build, each kernel
 * used a PoCL compile), so the quick test covers the alternative defines in
 * two combined builds and test_gemv_cpu_sweep (argument "sweep", label slow)
 * builds each one on its own. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/ops.h"
#include "formats/quant.h"
#include "ref_ops.h"

static af_queue *Q;
static af_rng R;
static const double TOL = 1e-5;
static const float SENTINEL = 12345.0f;

/* type: 0 f32, 1 f16, 2 q8_0, 3 q4_0.  tiny: weights of magnitude ~1e-4, so
 * that quantised blocks get subnormal fp16 scales. */
static void t_case(const char *impl, int type, size_t rows, size_t k, int nb, int with_bias, int tiny) {
  static const char *const names[] = {"f32", "f16", "q8_0", "q4_0"};
  size_t n = rows * k, x_off = 3, y_off = 5, ylen = y_off + 8 * rows + 7;
  float *w = malloc(n * 4 + 4), *x = malloc((x_off + k * nb) * 4), *bias = malloc(rows * 4 + 4);
  float *want = malloc(rows * nb * 4 + 4), *y0 = malloc(ylen * 4), *got = malloc(ylen * 4);
  af_rng_fill(&R, w, n, tiny ? -2e-4f : -1.0f, tiny ? 2e-4f : 1.0f);
  af_rng_fill(&R, x, x_off + k * nb, -1.0f, 1.0f);
  af_rng_fill(&R, bias, rows, -1.0f, 1.0f);
  for (size_t i = 0; i < ylen; i++) y0[i] = SENTINEL;
  size_t bytes = type == 0   ? n * 4
                 : type == 1 ? n * 2
                             : n / 32 * (type == 2 ? AF_Q8_0_BLOCK_BYTES : AF_Q4_0_BLOCK_BYTES);
  void *wq = malloc(bytes + 4);
  if (type == 0)
    memcpy(wq, w, bytes);
  else if (type == 1)
    for (size_t i = 0; i < n; i++) w[i] = af_f16_to_f32(((uint16_t *)wq)[i] = af_f32_to_f16(w[i]));
  else if (type == 2)
    af_quantize_q8_0(w, wq, n), af_dequantize_q8_0(wq, w, n);
  else
    af_quantize_q4_0(w, wq, n), af_dequantize_q4_0(wq, w, n);
  cl_mem dw = af_test_upload(Q, wq, bytes), dx = af_test_upload(Q, x, (x_off + k * nb) * 4),
         db = af_test_upload(Q, bias, rows * 4), dy = af_test_upload(Q, y0, ylen * 4);
  af_dbuf xv = {dx, x_off}, yv = {dy, y_off};
  cl_mem bm = with_bias ? db : NULL;
  if (type < 2)
    CHECK_OK(af_op_gemv(Q, dw, type, rows, k, xv, nb, yv, bm));
  else
    CHECK_OK(af_op_gemv_qn(Q, dw, type == 3, rows, k, xv, nb, yv, bm));
  CHECK_OK(af_queue_read(Q, dy, 0, ylen * 4, got));
  ref_gemv(w, rows, k, x + x_off, nb, with_bias ? bias : NULL, want);
  for (int b = 0; b < nb; b++) {
    /* per output, relative to the sum of |terms| (what fp32 rounding scales
     * with; a plain relative error is unbounded when the terms cancel) */
    double worst = 0;
    for (size_t r = 0; r < rows; r++) {
      double mag = with_bias ? fabs(bias[r]) : 0;
      for (size_t p = 0; p < k; p++) mag += fabs((double)w[r * k + p] * x[x_off + b * k + p]);
      double e = fabs((double)got[y_off + b * rows + r] - want[b * rows + r]) / (mag > 0 ? mag : 1e-30);
      worst = e > worst ? e : worst;
    }
    CHECK_MSG(worst <= TOL, "%s %s %zux%zu nb %d bias %d tiny %d: vector %d error %g > %g", impl, names[type],
              rows, k, nb, with_bias, tiny, b, worst, TOL);
    if (rows >= 16) { /* and the op's own tolerance (normalised L2, cl/opdesc.c) */
      double e = af_nerr(got + y_off + b * rows, want + b * rows, rows);
      CHECK_MSG(e <= TOL, "%s %s %zux%zu nb %d: vector %d normalised error %g > %g", impl, names[type], rows,
                k, nb, b, e, TOL);
    }
  }
  size_t bad = 0;
  for (size_t i = 0; i < ylen; i++)
    if (i < y_off || i >= y_off + nb * rows) bad += got[i] != SENTINEL;
  CHECK_MSG(bad == 0, "%s %s %zux%zu nb %d: %zu values written outside the output", impl, names[type], rows,
            k, nb, bad);
  clReleaseMemObject(dw), clReleaseMemObject(dx), clReleaseMemObject(db), clReleaseMemObject(dy);
  free(w), free(x), free(bias), free(want), free(y0), free(got), free(wq);
}

static void run_all(const char *impl) {
  static const size_t dense_rows[] = {1, 3, 17, 33, 257};
  static const size_t dense_k[] = {1, 15, 16, 17, 40, 1409};
  static const size_t q_rows[] = {1, 5, 17, 66};
  static const size_t q_k[] = {32, 96, 1408};
  int c = 0;
  for (int type = 0; type < 2; type++)
    for (size_t i = 0; i < sizeof dense_rows / sizeof *dense_rows; i++)
      for (size_t j = 0; j < sizeof dense_k / sizeof *dense_k; j++, c++)
        t_case(impl, type, dense_rows[i], dense_k[j], 1 + c % 8, c % 3 != 0, 0);
  for (int type = 2; type < 4; type++)
    for (size_t i = 0; i < sizeof q_rows / sizeof *q_rows; i++)
      for (size_t j = 0; j < sizeof q_k / sizeof *q_k; j++, c++)
        t_case(impl, type, q_rows[i], q_k[j], 1 + c % 8, c % 3 != 0, c % 5 == 0);
  for (int nb = 1; nb <= 8; nb++) /* every vector count on every type */
    for (int type = 0; type < 4; type++)
      t_case(impl, type, 37, type < 2 ? 75 : 160, nb, nb % 2, type >= 2 && nb == 3);
  t_case(impl, 2, 11, 4096, 1, 1, 1); /* a model-sized row, subnormal scales */
  t_case(impl, 3, 11, 4096, 1, 1, 1);
}

/* the tuning defines without the CPU GEMV's ones (AF_GEMV_IMPL, RB, CPU_WG,
 * R1, LUT, PF, PF_NEXT, PERM, KC), then extra */
static void set_impl(const char *base, const char *extra) {
  static const char *const ours[] = {
      "-DAF_GEMV_IMPL=", "-DAF_GEMV_RB=",   "-DAF_GEMV_CPU_WG=", "-DAF_GEMV_R1=",     "-DAF_GEMV_LUT=",
      "-DAF_GEMV_PF=",   "-DAF_GEMV_PERM=", "-DAF_GEMV_KC=",     "-DAF_GEMV_PF_NEXT="};
  char buf[2048] = "";
  const char *p = base ? base : "";
  while (*p) {
    while (*p == ' ') p++;
    const char *e = strchr(p, ' ');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    int keep = len > 0;
    for (size_t i = 0; i < sizeof ours / sizeof *ours && keep; i++)
      keep = strncmp(p, ours[i], strlen(ours[i])) != 0;
    if (keep && strlen(buf) + len + 2 < sizeof buf) {
      strncat(buf, p, len);
      strcat(buf, " ");
    }
    p += len;
  }
  if (extra) strncat(buf, extra, sizeof buf - strlen(buf) - 1);
  CHECK_OK(af_cl_set_tuning(Q->cl, buf));
}

/* Each alternative define of the CPU kernels on its own (the argument "sweep",
 * test_gemv_cpu_sweep, label slow; the rest of main runs as in the quick
 * test): eleven program builds, each compiling the kernels its cases use
 * (cold PoCL cache, 2 cores: ~25 s of CPU, the quick test ~15 s). */
static void sweep_defines(const char *base) {
  /* other rows-per-item / group sizes (a few kernels only: each new define
   * set recompiles the kernels it uses) */
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_RB=7 -DAF_GEMV_CPU_WG=2");
  for (size_t rows = 1; rows <= 67; rows += 11) {
    t_case("cpu rb7 wg2", 1, rows, 33, 1 + (int)rows % 2, 1, 0);
    t_case("cpu rb7 wg2", 2, rows, 64, 8, (int)rows % 2, 0);
  }
  /* one vector, rows walked 3 or 16 at a time (R1 not dividing RB, and R1 > RB) */
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_RB=7 -DAF_GEMV_R1=3");
  for (size_t rows = 1; rows <= 40; rows += 13)
    for (int type = 0; type < 4; type++)
      t_case("cpu r1=3", type, rows, type < 2 ? 48 : 96, 1, (int)rows % 2, 0);
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_RB=8 -DAF_GEMV_R1=16");
  for (int type = 1; type < 4; type++) t_case("cpu r1=16", type, 29, 64, 1, 1, 0);
  /* block scales rebuilt from their bits instead of the table (subnormal ones included) */
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_LUT=0");
  for (int type = 2; type < 4; type++)
    for (int nb = 1; nb <= 8; nb *= 2) t_case("cpu lut=0", type, 19, 128, nb, nb == 2, nb == 4);
  /* no prefetch, and a prefetch past the ends of small matrices (prefetches
   * do not fault); Q4_0 nibbles through the byte path instead of the
   * AVX-512 table (the only path on CPUs without AVX-512) */
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_PF=0");
  for (int type = 0; type < 4; type++)
    t_case("cpu pf=0", type, 23, type < 2 ? 80 : 96, 1 + type, type % 2, 0);
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_PF=8192");
  for (int type = 0; type < 4; type++) t_case("cpu pf=8192", type, 9, 64, type == 3 ? 8 : 1, 1, 0);
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_PF_NEXT=0");
  for (int type = 0; type < 4; type++)
    t_case("cpu pf_next=0", type, 23, type < 2 ? 80 : 96, 1 + 2 * type, 0, 0);
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_PERM=0");
  for (int nb = 1; nb <= 8; nb++) t_case("cpu perm=0", 3, 21, 160, nb, nb % 2, nb == 3);
  t_case("cpu perm=0", 3, 11, 4096, 1, 1, 1);
  /* several vectors in chunks of 1 and 3 blocks (3 not dividing k / 32) and
   * in one chunk: the partial sums added into y, the bias once */
  const char *kcs[] = {"-DAF_GEMV_IMPL=cpu -DAF_GEMV_KC=1", "-DAF_GEMV_IMPL=cpu -DAF_GEMV_KC=3",
                       "-DAF_GEMV_IMPL=cpu -DAF_GEMV_KC=0"};
  for (int v = 0; v < 3; v++) {
    set_impl(base, kcs[v]);
    for (int nb = 2; nb <= 8; nb += 3)
      for (int type = 2; type < 4; type++) t_case(kcs[v] + 19, type, 27, 320, nb, nb != 5, nb == 8);
  }
}

/* The quick test's share of sweep_defines: the same alternative code paths in
 * two builds, every alternative define on in one of them (kernel code that a
 * define selects at compile time: the prefetch off / far / without the jump
 * to the next rows, the R1 rows walked not dividing and exceeding RB, the
 * scale rebuilt from its bits, the Q4_0 byte path, chunks of k not dividing
 * it and one chunk; at run time RB = 7 or 8 rows per item, groups of 2 items).
 * Each define's own cases run under its build; how the defines combine is
 * the sweep's business. */
static void combined_defines(const char *base) {
  const char *a = "cpu A", *b = "cpu B";
  set_impl(base,
           "-DAF_GEMV_IMPL=cpu -DAF_GEMV_RB=7 -DAF_GEMV_CPU_WG=2 -DAF_GEMV_R1=3 -DAF_GEMV_LUT=0 "
           "-DAF_GEMV_PF=0 -DAF_GEMV_PERM=0 -DAF_GEMV_KC=3");
  /* RB 7 in groups of 2 */
  for (size_t rows = 1; rows <= 67; rows += 11) {
    t_case(a, 1, rows, 33, 1 + (int)rows % 2, 1, 0);
    t_case(a, 2, rows, 64, 8, (int)rows % 2, 0);
  }
  /* R1 3 */
  for (size_t rows = 1; rows <= 40; rows += 13)
    for (int type = 0; type < 4; type++) t_case(a, type, rows, type < 2 ? 48 : 96, 1, (int)rows % 2, 0);
  /* LUT 0 */
  for (int type = 2; type < 4; type++)
    for (int nb = 1; nb <= 8; nb *= 2) t_case(a, type, 19, 128, nb, nb == 2, nb == 4);
  /* PF 0 */
  for (int type = 0; type < 4; type++) t_case(a, type, 23, type < 2 ? 80 : 96, 1 + type, type % 2, 0);
  /* PERM 0 */
  for (int nb = 1; nb <= 8; nb++) t_case(a, 3, 21, 160, nb, nb % 2, nb == 3);
  t_case(a, 3, 11, 4096, 1, 1, 1);
  /* KC 3 */
  for (int nb = 2; nb <= 8; nb += 3)
    for (int type = 2; type < 4; type++) t_case(a, type, 27, 320, nb, nb != 5, nb == 8);

  set_impl(base,
           "-DAF_GEMV_IMPL=cpu -DAF_GEMV_RB=8 -DAF_GEMV_R1=16 -DAF_GEMV_PF=8192 -DAF_GEMV_PF_NEXT=0 "
           "-DAF_GEMV_KC=0");
  /* R1 16 > RB 8 */
  for (int type = 1; type < 4; type++) t_case(b, type, 29, 64, 1, 1, 0);
  /* PF 8192: past the ends of small matrices */
  for (int type = 0; type < 4; type++) t_case(b, type, 9, 64, type == 3 ? 8 : 1, 1, 0);
  /* PF_NEXT 0 */
  for (int type = 0; type < 4; type++) t_case(b, type, 23, type < 2 ? 80 : 96, 1 + 2 * type, 0, 0);
  /* KC 0: one chunk */
  for (int nb = 2; nb <= 8; nb += 3)
    for (int type = 2; type < 4; type++) t_case(b, type, 27, 320, nb, nb != 5, nb == 8);
}

int main(int argc, char **argv) {
  int sweep = argc > 1 && !strcmp(argv[1], "sweep");
  af_cl *cl = NULL;
  af_rng_seed(&R, 6);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_gemv_cpu");
  CHECK_OK(af_queue_new(cl, &Q));
  char *base = cl->tuning_defines ? strdup(cl->tuning_defines) : NULL;

  /* the fp16 -> fp32 table behind the block scales: every pattern, bit-equal
   * to formats/quant.c (infinities and NaNs included), one buffer per context */
  cl_mem lut = NULL, lut2 = NULL;
  CHECK_OK(af_cl_half_lut(cl, &lut));
  CHECK_OK(af_cl_half_lut(cl, &lut2));
  CHECK(lut && lut == lut2);
  uint32_t *tab = malloc(65536 * 4);
  CHECK_OK(af_queue_read(Q, lut, 0, 65536 * 4, tab));
  int lut_bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = af_f16_to_f32((uint16_t)h);
    uint32_t want;
    memcpy(&want, &f, 4);
    lut_bad += tab[h] != want;
  }
  CHECK_MSG(lut_bad == 0, "half table: %d of 65536 entries differ", lut_bad);
  free(tab);

  set_impl(base, NULL);
  CHECK(!af_op_gemv_cpu_enabled(cl));
  run_all("portable");
  set_impl(base, "-DAF_GEMV_IMPL=cpu");
  CHECK(af_op_gemv_cpu_enabled(cl));
  run_all("cpu");
  if (sweep)
    sweep_defines(base);
  else
    combined_defines(base);
  /* out-of-range prefetch distance: a build error that names it */
  set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_PF=-1");
  {
    cl_mem w1 = af_test_upload(Q, NULL, 64 * 4), x1 = af_test_upload(Q, NULL, 64 * 4),
           y1 = af_test_upload(Q, NULL, 64);
    CHECK(af_op_gemv(Q, w1, 0, 1, 64, (af_dbuf){x1, 0}, 1, (af_dbuf){y1, 0}, NULL) == AF_ERR_BUILD);
    CHECK_MSG(strstr(af_error_message(), "AF_GEMV_PF must be 0..8192") != NULL, "message: %s",
              af_error_message());
    af_error_clear();
    set_impl(base, "-DAF_GEMV_IMPL=cpu -DAF_GEMV_KC=4097");
    CHECK(af_op_gemv_qn(Q, w1, 0, 1, 32, (af_dbuf){x1, 0}, 2, (af_dbuf){y1, 0}, NULL) == AF_ERR_BUILD);
    CHECK_MSG(strstr(af_error_message(), "AF_GEMV_KC must be 0..4096") != NULL, "message: %s",
              af_error_message());
    af_error_clear();
    clReleaseMemObject(w1), clReleaseMemObject(x1), clReleaseMemObject(y1);
  }
  /* a profile's out-of-range row count is a build error that names it (0 would never end) */
  for (int bad_r1 = 0; bad_r1 < 2; bad_r1++) {
    set_impl(base, bad_r1 ? "-DAF_GEMV_IMPL=cpu -DAF_GEMV_R1=17" : "-DAF_GEMV_IMPL=cpu -DAF_GEMV_R1=0");
    cl_mem w1 = af_test_upload(Q, NULL, 64 * 4), x1 = af_test_upload(Q, NULL, 64 * 4),
           y1 = af_test_upload(Q, NULL, 64);
    CHECK(af_op_gemv(Q, w1, 0, 1, 64, (af_dbuf){x1, 0}, 1, (af_dbuf){y1, 0}, NULL) == AF_ERR_BUILD);
    CHECK_MSG(strstr(af_error_message(), "AF_GEMV_R1 must be 1..16") != NULL, "message: %s",
              af_error_message());
    af_error_clear();
    clReleaseMemObject(w1), clReleaseMemObject(x1), clReleaseMemObject(y1);
  }
  set_impl(base, "-DAF_GEMV_IMPL=cpuX");
  CHECK(!af_op_gemv_cpu_enabled(cl)); /* only the exact value selects it */

  set_impl(base, "-DAF_GEMV_IMPL=cpu");
  CHECK(af_op_gemv_qn(Q, NULL, 0, 1, 33, (af_dbuf){0}, 1, (af_dbuf){0}, NULL) == AF_ERR_INVALID);
  CHECK(af_op_gemv_qn(Q, NULL, 0, 1, 32, (af_dbuf){0}, 9, (af_dbuf){0}, NULL) == AF_ERR_INVALID);
  CHECK(af_op_gemv(Q, NULL, 0, 1, 1, (af_dbuf){0}, 0, (af_dbuf){0}, NULL) == AF_ERR_INVALID);
  af_error_clear();
  CHECK_OK(af_cl_set_tuning(Q->cl, base));
  free(base);
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_gemv_cpu");
}
