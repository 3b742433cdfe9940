/* Model building blocks (net/nn.c, cl/kernels/nn.cl) vs plain C on random
 * inputs: linear (CLBlast, with bias, strided rows), LayerNorm, GELU (the
 * vectorisable erf: max abs error vs double erf <= 1e-6 over [-10, 10]), add.
 * Tolerances: normalised error 1e-6 (linear, layernorm, add). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "net/nn.h"
#include "ref/ref_model.h"

static af_queue *Q;
static af_rng R;

static void upload(const float *h, size_t n, af_dbuf *b) {
  CHECK_OK(nn_alloc(Q->cl, n, b));
  CHECK_OK(af_queue_write(Q, b->mem, 0, n * 4, h));
}

static float *download(af_dbuf b, size_t n) {
  float *h = malloc(n * 4);
  CHECK_OK(af_queue_read(Q, b.mem, b.off * 4, n * 4, h));
  return h;
}

/* a fake device weight from host data (type f32) */
static af_dtensor weight(const float *h, uint64_t ne0, uint64_t ne1) {
  af_dtensor t = {.name = "w",
                  .type = 0 /* f32 */,
                  .n_dims = ne1 > 1 ? 2 : 1,
                  .ne = {ne0, ne1, 1, 1},
                  .n_elements = ne0 * ne1,
                  .nbytes = ne0 * ne1 * 4};
  af_dbuf b;
  upload(h, ne0 * ne1, &b);
  t.mem = b.mem;
  return t;
}

static void test_linear(size_t rows, size_t in, size_t out) {
  float *x = malloc(rows * in * 4), *w = malloc(in * out * 4), *b = malloc(out * 4),
        *want = malloc(rows * out * 4);
  af_rng_fill(&R, x, rows * in, -1, 1);
  af_rng_fill(&R, w, in * out, -1, 1);
  af_rng_fill(&R, b, out, -1, 1);
  af_dtensor W = weight(w, in, out), B = weight(b, out, 1);
  af_dbuf dx, dy;
  upload(x, rows * in, &dx);
  CHECK_OK(nn_alloc(Q->cl, rows * out, &dy));
  CHECK_OK(nn_linear(Q, dx, 0, rows, &W, &B, dy, 0));
  float *got = download(dy, rows * out);
  ref_linear(x, (int)rows, (int)in, w, b, (int)out, want);
  double e = af_nerr(got, want, rows * out);
  CHECK_MSG(e < 1e-6, "linear %zux%zu->%zu: nerr %g", rows, in, out, e);
  clReleaseMemObject(W.mem), clReleaseMemObject(B.mem), nn_free(&dx), nn_free(&dy);
  free(x), free(w), free(b), free(want), free(got);
}

static void test_layernorm(size_t rows, size_t n, float eps) {
  float *x = malloc(rows * n * 4), *w = malloc(n * 4), *b = malloc(n * 4), *want = malloc(rows * n * 4);
  af_rng_fill(&R, x, rows * n, -3, 5);
  af_rng_fill(&R, w, n, 0.5f, 1.5f);
  af_rng_fill(&R, b, n, -1, 1);
  af_dtensor W = weight(w, n, 1), B = weight(b, n, 1);
  af_dbuf dx;
  upload(x, rows * n, &dx);
  CHECK_OK(nn_layernorm(Q, dx, rows, n, &W, &B, eps, dx)); /* in place */
  float *got = download(dx, rows * n);
  for (size_t r = 0; r < rows; r++) ref_layernorm(x + r * n, w, b, eps, (int)n, want + r * n);
  double e = af_nerr(got, want, rows * n);
  CHECK_MSG(e < 1e-6, "layernorm %zux%zu: nerr %g", rows, n, e);
  clReleaseMemObject(W.mem), clReleaseMemObject(B.mem), nn_free(&dx);
  free(x), free(w), free(b), free(want), free(got);
}

static void test_gelu_add(size_t n) {
  float *x = malloc(n * 4), *y = malloc(n * 4);
  for (size_t i = 0; i < n; i++)
    x[i] = n > 1 ? -10.0f + 20.0f * (float)i / (float)(n - 1) : 0.5f; /* both tails */
  af_rng_fill(&R, y, n, -1, 1);
  af_dbuf dx, dy;
  upload(x, n, &dx);
  upload(y, n, &dy);
  CHECK_OK(nn_gelu(Q, dx, n));
  float *g = download(dx, n);
  double maxe = 0;
  for (size_t i = 0; i < n; i++) {
    double v = x[i], want = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    maxe = fmax(maxe, fabs(g[i] - want) / fmax(1.0, fabs(want)));
  }
  CHECK_MSG(maxe <= 1e-6, "gelu: max error %g", maxe);
  CHECK_OK(nn_add(Q, dy, dx, n));
  float *s = download(dy, n);
  for (size_t i = 0; i < n; i++) g[i] += y[i];
  CHECK(af_nerr(s, g, n) < 1e-7);
  nn_free(&dx), nn_free(&dy);
  free(x), free(y), free(g), free(s);
}

int main(void) {
  af_cl *cl = NULL;
  af_rng_seed(&R, 7);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_nn");
  CHECK_OK(af_queue_new(cl, &Q));
  test_linear(1, 17, 5);
  test_linear(17, 64, 257);
  test_linear(257, 88, 33);
  test_layernorm(1, 1, 1e-5f);
  test_layernorm(17, 1408, 1e-6f);
  test_layernorm(33, 768, 1e-12f);
  test_gelu_add(1);
  test_gelu_add(100003);
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_nn");
}
