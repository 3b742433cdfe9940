/* The LLM with ImageAdapters on OpenCL against the ORIGINAL code: the tiny
 * release checkpoints are converted, the golden image embeddings are spliced
 * between the golden prompt ids, and the first-position logits and 12 greedy
 * tokens (KV-cache decode) must match what the original generate() produced
 * (tests/data/artgpt4-tiny/golden).  Also: cached decode equals a full
 * re-computation of the whole sequence.  Tolerance: logits normalised error
 * 1e-4 (fp32); tokens exactly equal. */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/devprofile.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "net/lm.h"
#include "ref/npy.h"

#define DIR "artgpt4-tiny/"

int main(void) {
  const char *tmp = af_test_tmpdir();
  char model[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, model, sizeof model));
  af_cl *cl = NULL;
  af_weights *w = NULL;
  af_lm *lm = NULL;
  af_queue *Q = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (cl) CHECK_OK(af_weights_open(cl, model, &w));
  if (w) CHECK_OK(af_lm_new(cl, w, 256, &lm));
  if (cl) CHECK_OK(af_queue_new(cl, &Q));
  if (!lm || !Q) return af_test_done("test_lm");
  const af_lm_shape *s = af_lm_shape_of(lm);
  CHECK(s->adapter == s->hidden / 4 && !s->rope_interleaved);
  int H = s->hidden, V = s->vocab;
  int32_t before[512], after[512], want[64];
  int nb = read_ids_line(af_test_data(DIR "golden/prompt_ids.txt"), 0, before, 512);
  int na = read_ids_line(af_test_data(DIR "golden/prompt_ids.txt"), 1, after, 512);
  int nw = read_ids_line(af_test_data(DIR "golden/ids.txt"), 0, want, 64);
  int nd;
  int64_t shape[4];
  size_t np = 0, nl = 0;
  float *proj = npy_read_f32(af_test_data(DIR "golden/proj.npy"), &nd, shape, &np);
  float *gl = npy_read_f32(af_test_data(DIR "golden/logits0.npy"), &nd, shape, &nl);
  CHECK(proj && gl && nb > 0 && na > 0 && nw > 0 && (int)nl == V);
  if (!proj || !gl) return af_test_done("test_lm");
  int nq = (int)(np / (size_t)H), n = nb + nq + na, total = n + nw;
  float *seq = malloc(sizeof(float) * (size_t)total * H), *logits = malloc(sizeof(float) * V);
  float *full = malloc(sizeof(float) * V);
  CHECK_OK(af_lm_embed(lm, before, nb, seq));
  memcpy(seq + (size_t)nb * H, proj, np * sizeof(float));
  CHECK_OK(af_lm_embed(lm, after, na, seq + (size_t)(nb + nq) * H));
  CHECK_OK(af_lm_forward(lm, Q, seq, n, 0, logits));
  double e = af_nerr(logits, gl, (size_t)V);
  printf("logits0 normalised error vs the original: %.3g\n", e);
  CHECK(e < 1e-4);
  int32_t got[64];
  int ng = 0;
  for (int step = 0; step < nw; step++) {
    int best = 0;
    for (int i = 1; i < V; i++)
      if (logits[i] > logits[best]) best = i;
    got[ng++] = best;
    CHECK_OK(af_lm_embed(lm, &best, 1, seq + (size_t)(n + step) * H));
    CHECK_OK(af_lm_forward(lm, Q, seq + (size_t)(n + step) * H, 1, n + step, logits)); /* one cached step */
  }
  int equal = 0;
  for (int i = 0; i < nw; i++) equal += got[i] == want[i];
  printf("greedy tokens equal to the original's: %d of %d\n", equal, nw);
  CHECK(equal == nw);
  /* the last cached step equals recomputing all positions from scratch */
  CHECK_OK(af_lm_forward(lm, Q, seq, total, 0, full));
  CHECK(af_nerr(logits, full, (size_t)V) < 1e-5);
  CHECK(af_lm_forward(lm, Q, seq, 1, 256, logits) == AF_ERR_RANGE);
  af_error_clear();
  af_lm_free(lm);
  af_weights_free(w);
  lm = NULL, w = NULL;

  /* fp16 weights kept as fp16 on the device (vload_half GEMV for decode, widened
   * for prefill GEMMs) equal the fp32 copies of the same fp16 values */
  char m16[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F16, m16, sizeof m16));
  float *l32 = malloc(sizeof(float) * V), *l16 = malloc(sizeof(float) * V);
  uint64_t bytes[2] = {0, 0};
  for (int keep = 0; keep < 2; keep++) {
    cl->profile->fp16_storage = keep;
    af_weights *w2 = NULL;
    af_lm *lm2 = NULL;
    CHECK_OK(af_weights_open(cl, m16, &w2));
    if (w2) CHECK_OK(af_lm_new(cl, w2, 256, &lm2));
    if (lm2) {
      float *dst = keep ? l16 : l32;
      bytes[keep] = af_weights_device_bytes(w2);
      CHECK_OK(af_lm_forward(lm2, Q, seq, n, 0, logits));              /* prefill: GEMM path */
      CHECK_OK(af_lm_forward(lm2, Q, seq + (size_t)n * H, 1, n, dst)); /* one decode step: GEMV path */
    }
    af_lm_free(lm2);
    af_weights_free(w2);
  }
  cl->profile->fp16_storage = 0;
  double e16 = af_nerr(l16, l32, (size_t)V);
  printf("fp16 storage vs fp32 copy of the same weights: normalised error %.3g\n", e16);
  CHECK(e16 < 1e-5);
  printf("device weight bytes: fp32 copies %llu, fp16 storage %llu\n", (unsigned long long)bytes[0],
         (unsigned long long)bytes[1]);
  CHECK(bytes[1] < bytes[0] * 0.6); /* the matrices really stayed fp16 */
  /* Q8_0 / Q4_0 files: the matrices stay quantised on the device; the logits of
   * the first position stay close to the fp32 original's.  The bounds are the
   * quantisation noise of random weights (measured 0.013 for q8_0, 0.20 for 4-bit
   * q4_0); a wrong block layout gives errors near 1.  The kernels themselves are
   * checked exactly against formats/quant.c in test_ops. */
  const int qtypes[2] = {AF_GGML_Q8_0, AF_GGML_Q4_0};
  const double qtol[2] = {3e-2, 0.35};
  for (int t = 0; t < 2; t++) {
    char mq[1024];
    CHECK_OK(af_test_convert_tiny(tmp, qtypes[t], mq, sizeof mq));
    af_weights *w3 = NULL;
    af_lm *lm3 = NULL;
    CHECK_OK(af_weights_open(cl, mq, &w3));
    if (w3) CHECK_OK(af_lm_new(cl, w3, 256, &lm3));
    if (lm3) {
      CHECK_OK(af_lm_forward(lm3, Q, seq, n, 0, logits));
      double eq = af_nerr(logits, gl, (size_t)V);
      printf("%s weights: logits0 normalised error vs the original %.3g (tolerance %.2g)\n",
             af_ggml_type_name(qtypes[t]), eq, qtol[t]);
      CHECK(eq < qtol[t]);
      CHECK(af_weights_device_bytes(w3) < bytes[0] * (t ? 0.45 : 0.6));
    }
    af_lm_free(lm3);
    af_weights_free(w3);
  }
  free(l32), free(l16);
  free(seq), free(logits), free(full), free(proj), free(gl);
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_lm");
}
