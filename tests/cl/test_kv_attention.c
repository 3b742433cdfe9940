/* The LLM's KV-cache kernels against plain-C references on random inputs:
 * RoPE at a per-row position (af_op_rope_pos vs ref_rope one token at a
 * time; tolerance normalised error 5e-5 as for af_op_rope), the cache store
 * (fp32 exact, fp16 bit-equal to formats/quant.c's round-to-nearest-even) and
 * attention of rows over their own slot and length (fp32 and fp16 caches;
 * the reference reads the same fp16-rounded values; tolerance 1e-5, the
 * online softmax reorders the sums). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/attention.h"
#include "cl/ops.h"
#include "formats/quant.h"
#include "ref_ops.h"

static af_queue *Q;
static af_rng rng;

static void t_rope_pos(int tokens, int heads, int d, int interleaved, int with_tab) {
  size_t row = (size_t)heads * d, n = (size_t)tokens * row;
  float *x = malloc(n * 4), *got = malloc(n * 4);
  int *pos = malloc(sizeof(int) * (size_t)tokens);
  af_rng_fill(&rng, x, n, -1, 1);
  for (int t = 0; t < tokens; t++) pos[t] = (int)(af_rng_u32(&rng) % 2048);
  cl_mem dx = af_test_upload(Q, x, n * 4), dp = af_test_upload(Q, pos, sizeof(int) * (size_t)tokens);
  float *tab = malloc(sizeof(float) * 2048 * (size_t)d);
  af_rope_table(10000.0f, d, 2048, tab);
  cl_mem dt = with_tab ? af_test_upload(Q, tab, sizeof(float) * 2048 * (size_t)d) : NULL;
  CHECK_OK(af_op_rope_pos(Q, (af_dbuf){dx, 0}, (size_t)tokens, heads, d, dp, 10000.0f, interleaved, dt));
  if (dt) clReleaseMemObject(dt);
  free(tab);
  CHECK_OK(af_queue_read(Q, dx, 0, n * 4, got));
  for (int t = 0; t < tokens; t++) ref_rope(x + t * row, 1, heads, d, pos[t], 10000.0f, interleaved);
  double e = af_nerr(got, x, n);
  printf("rope_pos %dx%dx%d %s%s: nerr %.2g\n", tokens, heads, d, interleaved ? "interleaved" : "rotate-half",
         with_tab ? " table" : "", e);
  CHECK(e <= (with_tab ? 1e-6 : 5e-5)); /* the table: HF's cos/sin, only rounding of the products left */
  clReleaseMemObject(dx), clReleaseMemObject(dp);
  free(x), free(got), free(pos);
}

/* slots x len cache of rows of `width`; `rows` query rows at random (slot, pos) */
static void t_cached(int slots, int len, int heads, int d, int rows, int half) {
  int W = heads * d;
  size_t cn = (size_t)slots * len * W, qn = (size_t)rows * W, esz = half ? 2 : 4;
  float *kc = malloc(cn * 4), *vc = malloc(cn * 4), *newk = malloc(qn * 4), *newv = malloc(qn * 4);
  float *hq = malloc(qn * 4), *got = malloc(qn * 4), *want = malloc(qn * 4), *p = malloc(sizeof(float) * len);
  int *slot = malloc(sizeof(int) * rows), *pos = malloc(sizeof(int) * rows);
  af_rng_fill(&rng, kc, cn, -1, 1);
  af_rng_fill(&rng, vc, cn, -1, 1);
  af_rng_fill(&rng, newk, qn, -1, 1);
  af_rng_fill(&rng, newv, qn, -1, 1);
  af_rng_fill(&rng, hq, qn, -1, 1);
  for (int r = 0; r < rows; r++) { /* distinct slots, as batched decode has them */
    slot[r] = (r * 7 + 3) % slots;
    pos[r] = (int)(af_rng_u32(&rng) % (unsigned)len);
  }
  /* device caches hold the fp32 or fp16 form; the host copies the values read back */
  void *store = malloc(cn * esz);
  for (size_t i = 0; i < cn; i++)
    if (half) {
      ((uint16_t *)store)[i] = af_f32_to_f16(kc[i]);
    } else {
      ((float *)store)[i] = kc[i];
    }
  cl_mem dk = af_test_upload(Q, store, cn * esz);
  for (size_t i = 0; i < cn; i++)
    if (half) {
      ((uint16_t *)store)[i] = af_f32_to_f16(vc[i]);
    } else {
      ((float *)store)[i] = vc[i];
    }
  cl_mem dv = af_test_upload(Q, store, cn * esz);
  cl_mem dq = af_test_upload(Q, hq, qn * 4), dnk = af_test_upload(Q, newk, qn * 4),
         dnv = af_test_upload(Q, newv, qn * 4), dout = af_test_upload(Q, NULL, qn * 4);
  cl_mem ds = af_test_upload(Q, slot, sizeof(int) * rows), dp = af_test_upload(Q, pos, sizeof(int) * rows);
  size_t stride = (size_t)len * W;
  /* store each row's new key/value at its (slot, pos), then attend */
  CHECK_OK(af_kv_store(Q, (af_dbuf){dnk, 0}, rows, W, dk, half, stride, ds, dp));
  CHECK_OK(af_kv_store(Q, (af_dbuf){dnv, 0}, rows, W, dv, half, stride, ds, dp));
  float scale = 1.0f / sqrtf((float)d);
  CHECK_OK(af_attention_cached(Q, (af_dbuf){dq, 0}, rows, heads, d, dk, dv, half, stride, ds, dp, scale,
                               (af_dbuf){dout, 0}));
  CHECK_OK(af_queue_read(Q, dout, 0, qn * 4, got));
  /* the store: exact (fp32) or bit-equal to round-to-nearest-even (fp16) */
  CHECK_OK(af_queue_read(Q, dk, 0, cn * esz, store));
  int bad = 0;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < W; c++) {
      size_t i = (size_t)slot[r] * stride + (size_t)pos[r] * W + c;
      float v = newk[(size_t)r * W + c];
      bad += half ? ((uint16_t *)store)[i] != af_f32_to_f16(v) : ((float *)store)[i] != v;
      kc[i] = v, vc[i] = newv[(size_t)r * W + c];
    }
  CHECK_MSG(bad == 0, "kv_store: %d values differ", bad);
  for (size_t i = 0; half && i < cn; i++)
    kc[i] = af_f16_to_f32(af_f32_to_f16(kc[i])), vc[i] = af_f16_to_f32(af_f32_to_f16(vc[i]));
  for (int r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++) {
      const float *qi = hq + (size_t)r * W + h * d;
      const float *kb = kc + (size_t)slot[r] * stride + h * d, *vb = vc + (size_t)slot[r] * stride + h * d;
      double mx = -INFINITY, sum = 0;
      for (int j = 0; j <= pos[r]; j++) {
        double s = 0;
        for (int t = 0; t < d; t++) s += (double)qi[t] * kb[(size_t)j * W + t];
        p[j] = (float)(s * scale);
        if (p[j] > mx) mx = p[j];
      }
      for (int j = 0; j <= pos[r]; j++) sum += (p[j] = (float)exp(p[j] - mx));
      for (int t = 0; t < d; t++) {
        double s = 0;
        for (int j = 0; j <= pos[r]; j++) s += p[j] * (double)vb[(size_t)j * W + t];
        want[(size_t)r * W + h * d + t] = (float)(s / sum);
      }
    }
  double e = af_nerr(got, want, qn);
  printf("attention_cached %s slots=%d len=%d heads=%d d=%d rows=%d: nerr %.2g\n", half ? "f16" : "f32",
         slots, len, heads, d, rows, e);
  CHECK(e <= 1e-5);
  cl_mem all[] = {dk, dv, dq, dnk, dnv, dout, ds, dp};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    if (all[i]) clReleaseMemObject(all[i]);
  free(store), free(kc), free(vc), free(newk), free(newv), free(hq), free(got), free(want), free(p),
      free(slot), free(pos);
}

int main(void) {
  af_cl *cl = NULL;
  af_rng_seed(&rng, 7);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_kv_attention");
  CHECK_OK(af_queue_new(cl, &Q));
  t_rope_pos(1, 1, 2, 0, 0);
  t_rope_pos(1, 1, 2, 0, 1);
  t_rope_pos(5, 4, 128, 0, 0);
  t_rope_pos(5, 4, 128, 0, 1);
  t_rope_pos(3, 2, 16, 1, 0);
  t_rope_pos(3, 2, 16, 1, 1);
  t_rope_pos(8, 32, 128, 1, 0);
  t_rope_pos(8, 32, 128, 1, 1);
  for (int half = 0; half < 2; half++) {
    t_cached(1, 1, 1, 2, 1, half);     /* a single key */
    t_cached(5, 40, 2, 16, 5, half);   /* batched decode, own lengths */
    t_cached(3, 100, 4, 128, 3, half); /* 7B head size */
    t_cached(2, 33, 3, 10, 2, half);   /* odd sizes */
  }
  CHECK(af_op_rope_pos(Q, (af_dbuf){0}, 1, 1, 3, NULL, 1e4f, 0, NULL) == AF_ERR_INVALID);
  CHECK(af_attention_cached(Q, (af_dbuf){0}, 1, 1, 129, NULL, NULL, 0, 0, NULL, NULL, 1.0f, (af_dbuf){0}) ==
        AF_ERR_INVALID);
  af_error_clear();
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_kv_attention");
}
