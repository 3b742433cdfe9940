/* Attention kernel vs a plain-C reference on random inputs: fused-QKV layout
 * (ViT), cross-attention (Q-Former), causal prefill and KV-cache decode (LLM),
 * batches and odd sizes.  Tolerance: normalised error <= 1e-5 (fp32, online
 * softmax reorders the sums). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/attention.h"

/* plain reference over the same strided views */
static void ref(const float *Q, const float *K, const float *V, float *O, af_attn_view qv, af_attn_view kv,
                af_attn_view vv, af_attn_view ov, int nq, int nkv, int heads, int d, int nb, float scale,
                int causal, int off) {
  float *p = malloc(sizeof(float) * (nkv > 0 ? nkv : 1));
  for (int b = 0; b < nb; b++)
    for (int h = 0; h < heads; h++)
      for (int i = 0; i < nq; i++) {
        const float *qi = Q + qv.off + b * qv.batch + (long)i * qv.row + h * d;
        int lim = causal ? (i + off + 1 < nkv ? i + off + 1 : nkv) : nkv;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < lim; j++) {
          const float *kj = K + kv.off + b * kv.batch + (long)j * kv.row + h * d;
          double s = 0;
          for (int t = 0; t < d; t++) s += (double)qi[t] * kj[t];
          p[j] = (float)(s * scale);
          if (p[j] > mx) mx = p[j];
        }
        for (int j = 0; j < lim; j++) sum += (p[j] = (float)exp(p[j] - mx));
        float *o = O + ov.off + b * ov.batch + (long)i * ov.row + h * d;
        for (int t = 0; t < d; t++) {
          double s = 0;
          for (int j = 0; j < lim; j++)
            s += p[j] * (double)V[vv.off + b * vv.batch + (long)j * vv.row + h * d + t];
          o[t] = (float)(s / sum);
        }
      }
  free(p);
}

static af_queue *Q;
static af_rng rng;

/* q_cols/kv_cols: row widths; the fused case puts K and V inside the Q buffer */
static void run_case(const char *name, int nq, int nkv, int heads, int d, int nb, int causal, int off,
                     int fused) {
  int W = heads * d;
  int qrow = fused ? 3 * W : W + 3, kvrow = fused ? 3 * W : W + 5, orow = W;
  size_t qn = (size_t)nb * nq * qrow + 7, kn = (size_t)nb * nkv * kvrow + 11, on = (size_t)nb * nq * orow;
  float *hq = malloc(qn * 4), *hk = malloc(kn * 4), *hv = malloc(kn * 4), *ho = calloc(on, 4),
        *want = calloc(on, 4);
  af_rng_fill(&rng, hq, qn, -1, 1);
  af_rng_fill(&rng, hk, kn, -1, 1);
  af_rng_fill(&rng, hv, kn, -1, 1);
  cl_mem bq = NULL, bk = NULL, bv = NULL, bo = NULL;
  CHECK_OK(af_cl_alloc(Q->cl, CL_MEM_READ_WRITE, qn * 4, NULL, &bq));
  CHECK_OK(af_cl_alloc(Q->cl, CL_MEM_READ_WRITE, kn * 4, NULL, &bk));
  CHECK_OK(af_cl_alloc(Q->cl, CL_MEM_READ_WRITE, kn * 4, NULL, &bv));
  CHECK_OK(af_cl_alloc(Q->cl, CL_MEM_READ_WRITE, on * 4, NULL, &bo));
  CHECK_OK(af_queue_write(Q, bq, 0, qn * 4, hq));
  CHECK_OK(af_queue_write(Q, bk, 0, kn * 4, hk));
  CHECK_OK(af_queue_write(Q, bv, 0, kn * 4, hv));
  af_attn_view qv = {bq, 3, qrow, (long)nq * qrow}, ov = {bo, 0, orow, (long)nq * orow};
  af_attn_view kv = {bk, 5, kvrow, (long)nkv * kvrow}, vv = {bv, 5, kvrow, (long)nkv * kvrow};
  const float *hk_used = hk, *hv_used = hv;
  if (fused) { /* K and V are the 2nd and 3rd thirds of each QKV row */
    kv = (af_attn_view){bq, 3 + W, qrow, (long)nq * qrow};
    vv = (af_attn_view){bq, 3 + 2 * W, qrow, (long)nq * qrow};
    hk_used = hq;
    hv_used = hq;
  }
  float scale = 1.0f / sqrtf((float)d);
  CHECK_OK(af_attention(Q, qv, kv, vv, ov, nq, nkv, heads, d, nb, scale, causal, off));
  CHECK_OK(af_queue_read(Q, bo, 0, on * 4, ho));
  ref(hq, hk_used, hv_used, want, qv, kv, vv, ov, nq, nkv, heads, d, nb, scale, causal, off);
  double e = af_nerr(ho, want, on);
  printf("%-22s nq=%d nkv=%d heads=%d d=%d batch=%d: nerr %.2g\n", name, nq, nkv, heads, d, nb, e);
  CHECK_MSG(e <= 1e-5, "%s: normalised error %g", name, e);
  clReleaseMemObject(bq), clReleaseMemObject(bk), clReleaseMemObject(bv), clReleaseMemObject(bo);
  free(hq), free(hk), free(hv), free(ho), free(want);
}

int main(void) {
  af_cl *cl = NULL;
  af_rng_seed(&rng, 42);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_attention");
  CHECK_OK(af_queue_new(cl, &Q));
  run_case("fused tiny", 3, 3, 1, 4, 1, 0, 0, 1);
  run_case("fused 2 heads", 5, 5, 2, 8, 1, 0, 0, 1);
  run_case("nonfused vit", 257, 257, 16, 88, 2, 0, 0, 0);
  run_case("vit fused qkv", 257, 257, 16, 88, 2, 0, 0, 1);
  run_case("qformer cross", 32, 257, 12, 64, 2, 0, 0, 0);
  run_case("qformer self", 32, 32, 12, 64, 1, 0, 0, 0);
  run_case("llm prefill causal", 17, 17, 4, 128, 1, 1, 0, 0);
  run_case("llm decode kv cache", 1, 100, 4, 128, 3, 1, 99, 0);
  run_case("llm chunk after cache", 5, 40, 2, 16, 1, 1, 35, 0);
  run_case("single key", 1, 1, 1, 1, 1, 0, 0, 0);
  CHECK(af_attention(Q, (af_attn_view){0}, (af_attn_view){0}, (af_attn_view){0}, (af_attn_view){0}, 1, 1, 1,
                     129, 1, 1.0f, 0, 0) == AF_ERR_INVALID);
  af_error_clear();
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_attention");
}
