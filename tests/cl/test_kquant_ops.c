/* The K-quant kernels (cl/kquant.h) against formats/kquant.c: random Q4_K,
 * Q5_K and Q6_K super-blocks (random bytes, fp16 scales from a sane range,
 * some subnormal).  The dequantiser must give the C reference's values bit
 * for bit (no contraction in the kernel).  The GEMVs (1..8 vectors, bias on
 * and off, row counts not a multiple of the rows per work-item) must match a
 * double-precision product of the reference values: every output within 1e-5
 * of the sum of its terms' magnitudes (fp32 summation), as test_gemv_cpu
 * holds the other GEMVs; outputs past nb / rows untouched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/kquant.h"
#include "formats/kquant.h"
#include "formats/quant.h"
#include "ref_ops.h"

static af_queue *Q;
static af_rng R;
static const float SENTINEL = 12345.0f;

static void *random_blocks(int type, size_t nsb) {
  size_t bsz = (size_t)af_kq_block_bytes(type);
  uint8_t *b = malloc(nsb * bsz);
  for (size_t i = 0; i < nsb * bsz; i++) b[i] = (uint8_t)af_rng_u32(&R);
  for (size_t s = 0; s < nsb; s++) {
    uint8_t *p = b + s * bsz;
    float d = af_rng_uniform(&R, 1e-3f, 5e-2f) * (s % 7 == 3 ? 1e-3f : 1.0f); /* some subnormal */
    uint16_t h = af_f32_to_f16(d), hm = af_f32_to_f16(af_rng_uniform(&R, 1e-3f, 2e-2f));
    int at = type == AF_GGML_Q6_K ? 208 : 0;
    p[at] = (uint8_t)h, p[at + 1] = (uint8_t)(h >> 8);
    if (type != AF_GGML_Q6_K) p[2] = (uint8_t)hm, p[3] = (uint8_t)(hm >> 8);
  }
  return b;
}

static void t_case(int type, size_t rows, size_t k, int nb, int with_bias) {
  size_t n = rows * k, nsb = n / 256, bytes = nsb * (size_t)af_kq_block_bytes(type);
  void *wq = random_blocks(type, nsb);
  float *w = malloc(n * 4), *x = malloc(k * nb * 4), *bias = malloc(rows * 4), *want = malloc(rows * nb * 4);
  size_t ylen = 8 * rows + 5;
  float *got = malloc(ylen * 4), *deq = malloc(n * 4);
  af_dequantize_kq(type, wq, w, n);
  af_rng_fill(&R, x, k * nb, -1.0f, 1.0f);
  af_rng_fill(&R, bias, rows, -1.0f, 1.0f);
  for (size_t i = 0; i < ylen; i++) got[i] = SENTINEL;
  cl_mem dw = af_test_upload(Q, wq, bytes), dx = af_test_upload(Q, x, k * nb * 4),
         db = af_test_upload(Q, bias, rows * 4), dy = af_test_upload(Q, got, ylen * 4), dd = NULL;
  CHECK_OK(af_cl_alloc(Q->cl, CL_MEM_READ_WRITE, n * 4, NULL, &dd));
  af_dbuf xv = {dx, 0}, yv = {dy, 0};
  CHECK_OK(af_op_gemv_kq(Q, dw, type, rows, k, xv, nb, yv, with_bias ? db : NULL));
  CHECK_OK(af_queue_read(Q, dy, 0, ylen * 4, got));
  CHECK_OK(af_op_dequant_kq(Q, dw, type, dd, n));
  CHECK_OK(af_queue_read(Q, dd, 0, n * 4, deq));
  CHECK_MSG(!memcmp(deq, w, n * 4), "%s %zux%zu: the dequantiser differs from formats/kquant.c",
            af_ggml_type_name(type), rows, k);
  ref_gemv(w, rows, k, x, nb, with_bias ? bias : NULL, want);
  double worst = 0;
  for (int b = 0; b < nb; b++)
    for (size_t r = 0; r < rows; r++) {
      double mag = with_bias ? fabs(bias[r]) : 0;
      for (size_t p = 0; p < k; p++) mag += fabs((double)w[r * k + p] * x[b * k + p]);
      double e = fabs((double)got[b * rows + r] - want[b * rows + r]) / (mag > 0 ? mag : 1e-30);
      worst = e > worst ? e : worst;
    }
  CHECK_MSG(worst <= 1e-5, "%s %zux%zu nb %d bias %d: error %g > 1e-5", af_ggml_type_name(type), rows, k, nb,
            with_bias, worst);
  size_t bad = 0;
  for (size_t i = nb * rows; i < ylen; i++) bad += got[i] != SENTINEL;
  CHECK_MSG(bad == 0, "%s: %zu values written past the outputs", af_ggml_type_name(type), bad);
  clReleaseMemObject(dw), clReleaseMemObject(dx), clReleaseMemObject(db), clReleaseMemObject(dy),
      clReleaseMemObject(dd);
  free(wq), free(w), free(x), free(bias), free(want), free(got), free(deq);
}

int main(void) {
  af_cl *cl = NULL;
  af_rng_seed(&R, 14);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_kquant_ops");
  CHECK_OK(af_queue_new(cl, &Q));
  static const int types[] = {AF_GGML_Q4_K, AF_GGML_Q5_K, AF_GGML_Q6_K};
  static const size_t rows[] = {1, 5, 17, 33};
  int c = 0;
  for (int t = 0; t < 3; t++) {
    for (size_t i = 0; i < 4; i++, c++) t_case(types[t], rows[i], 256 * (1 + c % 3), 1 + c % 8, c % 2);
    for (int nb = 1; nb <= 8; nb++) t_case(types[t], 19, 512, nb, nb % 2);
    t_case(types[t], 7, 4096, 1, 1); /* a 7B row */
  }
  af_dbuf none = {NULL, 0};
  CHECK(af_op_gemv_kq(Q, NULL, AF_GGML_Q4_K, 4, 100, none, 1, none, NULL) == AF_ERR_INVALID);
  CHECK(af_op_gemv_kq(Q, NULL, AF_GGML_Q8_0, 4, 256, none, 1, none, NULL) == AF_ERR_UNSUPPORTED);
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_kquant_ops");
}
