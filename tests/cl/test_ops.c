/* Every op of cl/ops.h against its plain-C reference (tests/lib/ref_ops.c) on
 * random inputs, with the tolerance of its cl/opdesc.c entry (normalised L2
 * error), over odd and model-sized shapes (1, 17, 257, 1408, 6144). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/opdesc.h"
#include "cl/ops.h"
#include "formats/quant.h"
#include "ref_ops.h"

static af_queue *Q;
static af_rng R;

static float *rnd(size_t n, float lo, float hi) {
  float *p = malloc(n * sizeof(float) + 4);
  af_rng_fill(&R, p, n, lo, hi);
  return p;
}

static void expect(const char *op, const float *got, const float *want, size_t n, const char *shape) {
  const af_opdesc *d = af_opdesc_find(op);
  double tol = d ? d->tolerance : 0, e = af_nerr(got, want, n);
  if (tol == 0) e = af_maxerr(got, want, n); /* exact ops: bitwise equal values */
  CHECK_MSG(d && e <= tol, "%s %s: error %g > %g", op, shape, e, tol);
}

static float *down(cl_mem m, size_t off, size_t n) {
  float *h = malloc(n * sizeof(float) + 4);
  CHECK_OK(af_queue_read(Q, m, off * 4, n * 4, h));
  return h;
}

static void t_gemm(int ta, int tb, size_t m, size_t n, size_t k) {
  size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
  size_t na = (ta ? k : m) * lda, nb = (tb ? n : k) * ldb, nc = m * ldc;
  float *a = rnd(na, -1, 1), *b = rnd(nb, -1, 1), *c = rnd(nc, -1, 1);
  cl_mem da = af_test_upload(Q, a, na * 4), db = af_test_upload(Q, b, nb * 4),
         dc = af_test_upload(Q, c, nc * 4);
  CHECK_OK(af_op_gemm(Q, ta, tb, m, n, k, 0.5f, (af_dbuf){da, 0}, lda, (af_dbuf){db, 0}, ldb, 0.25f,
                      (af_dbuf){dc, 0}, ldc));
  float *got = down(dc, 0, nc);
  ref_gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c, ldc);
  char s[64];
  snprintf(s, sizeof s, "%zux%zux%zu t%d%d", m, n, k, ta, tb);
  expect("gemm", got, c, nc, s);
  clReleaseMemObject(da), clReleaseMemObject(db), clReleaseMemObject(dc);
  free(a), free(b), free(c), free(got);
}

/* the own tiled x·Wᵀ kernel, with bias and row strides, ragged edges */
static void t_gemm_xwt(size_t m, size_t n, size_t k) {
  size_t ldx = k + 1, ldw = k + 3, ldy = n + 2;
  float *x = rnd(m * ldx, -1, 1), *w = rnd(n * ldw, -1, 1), *b = rnd(n, -1, 1), *y = calloc(m * ldy, 4);
  cl_mem dx = af_test_upload(Q, x, m * ldx * 4), dw = af_test_upload(Q, w, n * ldw * 4),
         db = af_test_upload(Q, b, n * 4), dy = af_test_upload(Q, y, m * ldy * 4);
  CHECK_OK(
      af_op_gemm_xwt(Q, m, n, k, (af_dbuf){dx, 0}, ldx, (af_dbuf){dw, 0}, ldw, (af_dbuf){dy, 0}, ldy, db));
  float *got = down(dy, 0, m * ldy);
  ref_gemm(0, 1, m, n, k, 1.0f, x, ldx, w, ldw, 0.0f, y, ldy);
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) y[i * ldy + j] += b[j];
  char s[64];
  snprintf(s, sizeof s, "xwt %zux%zux%zu", m, n, k);
  expect("gemm", got, y, m * ldy, s);
  clReleaseMemObject(dx), clReleaseMemObject(dw), clReleaseMemObject(db), clReleaseMemObject(dy);
  free(x), free(w), free(b), free(y), free(got);
}

static void t_gemv(size_t rows, size_t k, int nb, int half) {
  float *w = rnd(rows * k, -1, 1), *x = rnd(k * nb, -1, 1), *bias = rnd(rows, -1, 1),
        *want = malloc(rows * nb * 4);
  uint16_t *w16 = malloc(rows * k * 2);
  if (half)
    for (size_t i = 0; i < rows * k; i++) w[i] = af_f16_to_f32(w16[i] = af_f32_to_f16(w[i]));
  cl_mem dw = half ? af_test_upload(Q, w16, rows * k * 2) : af_test_upload(Q, w, rows * k * 4),
         dx = af_test_upload(Q, x, k * nb * 4), db = af_test_upload(Q, bias, rows * 4);
  cl_mem dy = af_test_upload(Q, NULL, rows * nb * 4);
  CHECK_OK(af_op_gemv(Q, dw, half, rows, k, (af_dbuf){dx, 0}, nb, (af_dbuf){dy, 0}, db));
  float *got = down(dy, 0, rows * nb);
  ref_gemv(w, rows, k, x, nb, bias, want);
  char s[64];
  snprintf(s, sizeof s, "%zux%zu b%d", rows, k, nb);
  expect(half ? "gemv_f16" : "gemv_f32", got, want, rows * nb, s);
  clReleaseMemObject(dw), clReleaseMemObject(dx), clReleaseMemObject(db), clReleaseMemObject(dy);
  free(w), free(x), free(bias), free(want), free(w16), free(got);
}

/* Q8_0 / Q4_0 weights: GEMV against the plain GEMV of the host-dequantised
 * weights (the same values, so the op tolerance applies), and the device
 * widening bit-equal to formats/quant.c's dequantisation */
static void t_gemv_q(size_t rows, size_t k, int q4) {
  size_t n = rows * k, bsz = q4 ? AF_Q4_0_BLOCK_BYTES : AF_Q8_0_BLOCK_BYTES, bytes = n / 32 * bsz;
  float *w = rnd(n, -1, 1), *x = rnd(k, -1, 1), *b = rnd(rows, -1, 1), *deq = malloc(n * 4),
        *want = malloc(rows * 4);
  uint8_t *qw = malloc(bytes);
  if (q4)
    af_quantize_q4_0(w, qw, n), af_dequantize_q4_0(qw, deq, n);
  else
    af_quantize_q8_0(w, qw, n), af_dequantize_q8_0(qw, deq, n);
  cl_mem dw = af_test_upload(Q, qw, bytes), dx = af_test_upload(Q, x, k * 4),
         db = af_test_upload(Q, b, rows * 4), dy = af_test_upload(Q, NULL, rows * 4),
         dd = af_test_upload(Q, NULL, n * 4);
  CHECK_OK(af_op_gemv_q(Q, dw, q4, rows, k, (af_dbuf){dx, 0}, (af_dbuf){dy, 0}, db));
  float *got = down(dy, 0, rows);
  ref_gemv(deq, rows, k, x, 1, b, want);
  char s[64];
  snprintf(s, sizeof s, "%zux%zu", rows, k);
  expect(q4 ? "gemv_q4_0" : "gemv_q8_0", got, want, rows, s);
  CHECK_OK(af_op_dequant_q(Q, dw, q4, dd, n));
  float *wd = down(dd, 0, n);
  CHECK_MSG(af_maxerr(wd, deq, n) == 0, "dequant %s %s: differs from formats/quant.c", q4 ? "q4_0" : "q8_0",
            s);
  clReleaseMemObject(dw), clReleaseMemObject(dx), clReleaseMemObject(db), clReleaseMemObject(dy),
      clReleaseMemObject(dd);
  free(w), free(x), free(b), free(deq), free(want), free(qw), free(got), free(wd);
}

static void t_norms(size_t rows, size_t n) {
  float *x = rnd(rows * n, -2, 3), *w = rnd(n, 0.5f, 1.5f), *b = rnd(n, -1, 1), *want = malloc(rows * n * 4);
  cl_mem dx = af_test_upload(Q, x, rows * n * 4), dw = af_test_upload(Q, w, n * 4),
         db = af_test_upload(Q, b, n * 4), dy = af_test_upload(Q, NULL, rows * n * 4);
  char s[64];
  snprintf(s, sizeof s, "%zux%zu", rows, n);
  CHECK_OK(af_op_rmsnorm(Q, (af_dbuf){dx, 0}, rows, n, dw, 1e-6f, (af_dbuf){dy, 0}));
  float *got = down(dy, 0, rows * n);
  ref_rmsnorm_rows(x, rows, n, w, 1e-6f, want);
  expect("rmsnorm", got, want, rows * n, s);
  free(got);
  CHECK_OK(af_op_layernorm(Q, (af_dbuf){dx, 0}, rows, n, dw, db, 1e-12f, (af_dbuf){dy, 0}));
  got = down(dy, 0, rows * n);
  ref_layernorm_rows(x, rows, n, w, b, 1e-12f, want);
  expect("layernorm", got, want, rows * n, s);
  clReleaseMemObject(dx), clReleaseMemObject(dw), clReleaseMemObject(db), clReleaseMemObject(dy);
  free(x), free(w), free(b), free(want), free(got);
}

static void t_softmax(size_t rows, size_t n, int causal, int q_rows, int offset) {
  float *x = rnd(rows * n, -8, 8);
  cl_mem dx = af_test_upload(Q, x, rows * n * 4);
  CHECK_OK(af_op_softmax(Q, (af_dbuf){dx, 0}, rows, n, 0.125f, causal, q_rows, offset));
  float *got = down(dx, 0, rows * n);
  ref_softmax_rows(x, rows, n, 0.125f, causal, q_rows, offset);
  char s[64];
  snprintf(s, sizeof s, "%zux%zu causal %d/%d/%d", rows, n, causal, q_rows, offset);
  expect("softmax", got, x, rows * n, s);
  clReleaseMemObject(dx);
  free(x), free(got);
}

static void t_elementwise(size_t n) {
  float *x = rnd(n, -6, 6), *y = rnd(n, -2, 2), *want = malloc(n * 4);
  char s[32];
  snprintf(s, sizeof s, "%zu", n);
  const char *ops[] = {"gelu", "silu", "add", "mul"};
  for (int o = 0; o < 4; o++) {
    cl_mem dx = af_test_upload(Q, x, n * 4), dy = af_test_upload(Q, y, n * 4);
    int rc = o == 0   ? af_op_gelu(Q, (af_dbuf){dx, 0}, n)
             : o == 1 ? af_op_silu(Q, (af_dbuf){dx, 0}, n)
             : o == 2 ? af_op_add(Q, (af_dbuf){dy, 0}, (af_dbuf){dx, 0}, n)
                      : af_op_mul(Q, (af_dbuf){dy, 0}, (af_dbuf){dx, 0}, n);
    CHECK_OK(rc);
    float *got = down(o < 2 ? dx : dy, 0, n);
    for (size_t i = 0; i < n; i++) {
      double v = x[i];
      want[i] = o == 0   ? (float)(0.5 * v * (1 + erf(v / sqrt(2.0))))
                : o == 1 ? (float)(v / (1 + exp(-v)))
                : o == 2 ? y[i] + x[i]
                         : y[i] * x[i];
    }
    expect(ops[o], got, want, n, s);
    clReleaseMemObject(dx), clReleaseMemObject(dy);
    free(got);
  }
  free(x), free(y), free(want);
}

/* an activation's value for an element does not depend on the array's
 * length: the first n1 elements alone, then all n2 (the ragged end of a
 * launch once ran scalar exp, the rest vector exp; batched prefill relies
 * on this to equal one prompt at a time bit for bit) */
static void t_act_length(size_t n1, size_t n2) {
  float *x = rnd(n2, -6, 6);
  for (int o = 0; o < 2; o++) {
    cl_mem a = af_test_upload(Q, x, n2 * 4), b = af_test_upload(Q, x, n2 * 4);
    CHECK_OK(o ? af_op_silu(Q, (af_dbuf){a, 0}, n1) : af_op_gelu(Q, (af_dbuf){a, 0}, n1));
    CHECK_OK(o ? af_op_silu(Q, (af_dbuf){b, 0}, n2) : af_op_gelu(Q, (af_dbuf){b, 0}, n2));
    float *ga = down(a, 0, n2), *gb = down(b, 0, n2);
    CHECK_MSG(!memcmp(ga, gb, n1 * 4), "%s: the first %zu of %zu elements depend on the length",
              o ? "silu" : "gelu", n1, n2);
    CHECK_MSG(!memcmp(ga + n1, x + n1, (n2 - n1) * 4), "%s: elements past n = %zu changed",
              o ? "silu" : "gelu", n1);
    clReleaseMemObject(a), clReleaseMemObject(b);
    free(ga), free(gb);
  }
  free(x);
}

/* with_tab: cos/sin from af_rope_table (as the LLM runs it) */
static void t_rope(size_t tokens, int heads, int d, int pos0, int interleaved, int with_tab) {
  size_t n = tokens * heads * d, nt = (pos0 + tokens) * (size_t)d;
  float *x = rnd(n, -1, 1), *tab = malloc(nt * 4);
  af_rope_table(10000.0f, d, pos0 + (int)tokens, tab);
  cl_mem dx = af_test_upload(Q, x, n * 4), dt = with_tab ? af_test_upload(Q, tab, nt * 4) : NULL;
  CHECK_OK(af_op_rope(Q, (af_dbuf){dx, 0}, tokens, heads, d, pos0, 10000.0f, interleaved, dt));
  float *got = down(dx, 0, n);
  ref_rope(x, tokens, heads, d, pos0, 10000.0f, interleaved);
  char s[80];
  snprintf(s, sizeof s, "%zux%dx%d pos %d %s%s", tokens, heads, d, pos0,
           interleaved ? "interleaved" : "rotate-half", with_tab ? " table" : "");
  expect("rope", got, x, n, s);
  if (with_tab) /* HF's own cos/sin: only the last bits of the products differ from the double reference */
    CHECK_MSG(af_nerr(got, x, n) <= 1e-6, "rope %s: error %g > 1e-6", s, af_nerr(got, x, n));
  if (dt) clReleaseMemObject(dt);
  clReleaseMemObject(dx);
  free(x), free(got), free(tab);
}

/* af_rope_table against the cos/sin cache of transformers 4.28's
 * LlamaRotaryEmbedding (tests/data/rope/make_rope.py: head size 128, base
 * 10000, 9 positions up to 2047, float32 bits): inv_freq is bit-equal (powf),
 * and cosf/sinf of the same fp32 angle are within 1 ulp of torch's. */
static void rope_table_vs_torch(void) {
  char *js = af_test_slurp(af_test_data("rope/rope.json"), NULL);
  CHECK(js != NULL);
  cJSON *root = cJSON_Parse(js ? js : "{}");
  cJSON *pos = cJSON_GetObjectItem(root, "positions"), *cs = cJSON_GetObjectItem(root, "cos"),
        *sn = cJSON_GetObjectItem(root, "sin");
  int d = 128, n = 2048, np = cJSON_GetArraySize(pos), total = 0, exact = 0, worst = 0;
  float *tab = malloc(sizeof(float) * (size_t)n * d);
  af_rope_table(10000.0f, d, n, tab);
  for (int k = 0; k < np; k++) {
    int p = cJSON_GetArrayItem(pos, k)->valueint;
    for (int i = 0; i < d / 2; i++)
      for (int w = 0; w < 2; w++) {
        uint32_t want = (uint32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(w ? sn : cs, k), i)->valuedouble, got;
        memcpy(&got, &tab[((size_t)p * (d / 2) + i) * 2 + w], 4);
        int u = abs((int)(got - want));
        total++, exact += u == 0;
        if (u > worst) worst = u;
      }
  }
  printf("rope table vs torch: %d of %d values bit-equal, the rest within %d ulp\n", exact, total, worst);
  CHECK(total == 9 * 128 && worst <= 1 && exact >= total * 3 / 4);
  free(tab);
  cJSON_Delete(root);
  free(js);
}

static void t_gather_convert(size_t n_rows, size_t cols, size_t n) {
  float *t = rnd(n_rows * cols, -3, 3), *want = malloc(n * cols * 4);
  uint16_t *t16 = malloc(n_rows * cols * 2);
  for (size_t i = 0; i < n_rows * cols; i++) t[i] = af_f16_to_f32(t16[i] = af_f32_to_f16(t[i]));
  int32_t *ids = malloc(n * 4);
  for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(af_rng_u32(&R) % n_rows);
  for (size_t i = 0; i < n; i++) memcpy(want + i * cols, t + (size_t)ids[i] * cols, cols * 4);
  cl_mem d32 = af_test_upload(Q, t, n_rows * cols * 4), d16 = af_test_upload(Q, t16, n_rows * cols * 2),
         di = af_test_upload(Q, ids, n * 4);
  cl_mem out = af_test_upload(Q, NULL, n * cols * 4);
  char s[64];
  snprintf(s, sizeof s, "%zu of %zux%zu", n, n_rows, cols);
  for (int half = 0; half < 2; half++) {
    CHECK_OK(af_op_gather(Q, half ? d16 : d32, half, n_rows, cols, di, n, (af_dbuf){out, 0}));
    float *got = down(out, 0, n * cols);
    expect("gather", got, want, n * cols, s);
    free(got);
  }
  /* fp16 -> fp32 exact; fp32 -> fp16 rounds like af_f32_to_f16 (nearest even) */
  CHECK_OK(af_op_f16_to_f32(Q, d16, out, n_rows * cols < n * cols ? n_rows * cols : n * cols));
  float *got = down(out, 0, n_rows * cols < n * cols ? n_rows * cols : n * cols);
  expect("f16_to_f32", got, t, n_rows * cols < n * cols ? n_rows * cols : n * cols, s);
  free(got);
  float *raw = rnd(n_rows * cols, -70000, 70000);
  cl_mem dr = af_test_upload(Q, raw, n_rows * cols * 4), dh = af_test_upload(Q, NULL, n_rows * cols * 2);
  CHECK_OK(af_op_f32_to_f16(Q, dr, dh, n_rows * cols));
  uint16_t *h = malloc(n_rows * cols * 2);
  CHECK_OK(af_queue_read(Q, dh, 0, n_rows * cols * 2, h));
  size_t bad = 0;
  for (size_t i = 0; i < n_rows * cols; i++) bad += h[i] != af_f32_to_f16(raw[i]);
  CHECK_MSG(bad == 0, "f32_to_f16: %zu of %zu values differ from round-to-nearest-even", bad, n_rows * cols);
  clReleaseMemObject(d32), clReleaseMemObject(d16), clReleaseMemObject(di), clReleaseMemObject(out);
  clReleaseMemObject(dr), clReleaseMemObject(dh);
  free(t), free(want), free(t16), free(ids), free(raw), free(h);
}

int main(void) {
  af_cl *cl = NULL;
  af_rng_seed(&R, 2026);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_ops");
  CHECK_OK(af_queue_new(cl, &Q));
  t_gemm(0, 0, 1, 1, 1);
  t_gemm(0, 1, 17, 257, 33);
  t_gemm(1, 0, 19, 8, 64);
  t_gemm(1, 1, 33, 17, 5);
  t_gemm(0, 1, 257, 64, 1408);
  t_gemm_xwt(1, 1, 1);
  t_gemm_xwt(17, 5, 9);
  t_gemm_xwt(257, 33, 1408);
  t_gemm_xwt(6, 257, 17);
  t_gemv(1, 1, 1, 0);
  t_gemv(17, 257, 3, 0);
  t_gemv(257, 1408, 8, 0);
  t_gemv(6144 / 8, 6144, 1, 1);
  t_gemv(33, 1409, 8, 1);
  t_gemv(5, 40, 2, 1); /* one kernel per vector count 1, 2, 4, 8; 3 and 5 run the next one up */
  t_gemv(9, 33, 4, 0);
  t_gemv(3, 17, 5, 1);
  t_gemv(7, 16, 2, 0);
  t_gemv_q(1, 32, 0);
  t_gemv_q(17, 1408, 0);
  t_gemv_q(257, 4096, 1);
  t_gemv_q(3, 32, 1);
  CHECK(af_op_gemv_q(Q, NULL, 0, 1, 33, (af_dbuf){0}, (af_dbuf){0}, NULL) == AF_ERR_INVALID);
  af_error_clear();
  t_norms(1, 1);
  t_norms(17, 1408);
  t_norms(3, 6144);
  t_softmax(1, 1, 0, 0, 0);
  t_softmax(257, 257, 0, 0, 0);
  t_softmax(4 * 17, 17, 1, 17, 0);
  t_softmax(2 * 5, 40, 1, 5, 35);
  t_elementwise(1);
  t_elementwise(6144 * 17 + 3);
  t_act_length(37, 64);
  t_act_length(1, 17);
  t_act_length(4093, 4096 + 16 * 5 + 3);
  t_rope(1, 1, 2, 0, 0, 0);
  t_rope(17, 4, 128, 0, 0, 0);
  t_rope(17, 4, 128, 0, 0, 1);
  t_rope(3, 40, 128, 2000, 0, 0);
  t_rope(3, 40, 128, 2000, 0, 1);
  t_rope(5, 2, 16, 7, 1, 0);
  t_rope(5, 2, 16, 7, 1, 1);
  rope_table_vs_torch();
  t_gather_convert(1, 1, 1);
  t_gather_convert(257, 17, 40);
  CHECK(af_op_gemv(Q, NULL, 0, 1, 1, (af_dbuf){0}, 9, (af_dbuf){0}, NULL) == AF_ERR_INVALID);
  CHECK(af_op_rope(Q, (af_dbuf){0}, 1, 1, 3, 0, 1e4f, 0, NULL) == AF_ERR_INVALID);
  af_error_clear();
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_ops");
}
