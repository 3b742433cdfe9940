/* af_lm_branches: several continuations of one prefix in one pass equal each
 * continuation run alone.  The golden prompt (text + image embeddings) is
 * prefilled into slot 0; then three branches of 3, 1 and 2 tokens are scored
 * together; every row's logits must equal the last-position logits of a full
 * prefill of prefix + that branch's tokens so far in slot 1 (normalised error
 * below 1e-5 on the f32 model, 1e-4 on f16 and q8_0: the branch rows go
 * through GEMMs of a different row count).  A second call with other branches
 * must not be disturbed by the first (the prefix stays intact), and branches
 * that do not fit the context are refused. */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "formats/gguf.h"
#include "net/lm.h"
#include "ref/npy.h"

#define DIR "artgpt4-tiny/"

static af_cl *cl;
static af_queue *Q;

static double check_model(const char *path, const int32_t *before, int nb, const float *proj, int nq,
                          const int32_t *after, int na) {
  af_weights *w = NULL;
  af_lm *lm = NULL;
  CHECK_OK(af_weights_open(cl, path, &w));
  if (w) CHECK_OK(af_lm_new(cl, w, 128, &lm));
  if (!lm) {
    af_weights_free(w);
    return 1;
  }
  int H = af_lm_shape_of(lm)->hidden, V = af_lm_shape_of(lm)->vocab, P = nb + nq + na;
  float *seq = malloc(sizeof(float) * (size_t)(P + 8) * H), *lg = malloc(sizeof(float) * 16 * (size_t)V);
  float *ref = malloc(sizeof(float) * (size_t)V);
  CHECK_OK(af_lm_embed(lm, before, nb, seq));
  memcpy(seq + (size_t)nb * H, proj, sizeof(float) * (size_t)nq * H);
  CHECK_OK(af_lm_embed(lm, after, na, seq + (size_t)(nb + nq) * H));
  CHECK_OK(af_lm_prefill(lm, Q, 0, seq, P, 0, ref));
  double worst = 0;
  for (int round = 0; round < 2; round++) {
    int lens[3] = {3, 1, 2}, nbr = round ? 2 : 3;
    int32_t tok[6];
    for (int i = 0; i < 6; i++) tok[i] = 7 + 31 * i + 100 * round;
    if (round) lens[0] = 2, lens[1] = 4;
    float *x = malloc(sizeof(float) * 6 * (size_t)H);
    CHECK_OK(af_lm_embed(lm, tok, 6, x));
    CHECK_OK(af_lm_branches(lm, Q, 0, P, nbr, lens, x, lg));
    for (int b = 0, r = 0; b < nbr; b++)
      for (int j = 0; j < lens[b]; j++, r++) {
        /* alone: prefix + tokens r-j .. r of this branch, in slot 1 */
        memcpy(seq + (size_t)P * H, x + (size_t)(r - j) * H, sizeof(float) * (size_t)(j + 1) * H);
        CHECK_OK(af_lm_prefill(lm, Q, 1, seq, P + j + 1, 0, ref));
        double e = af_nerr(lg + (size_t)r * V, ref, (size_t)V);
        if (e > worst) worst = e;
      }
    free(x);
  }
  /* the context is 128 positions */
  int big[2] = {100, 30};
  float *x = calloc((size_t)130 * H, sizeof(float));
  CHECK(af_lm_branches(lm, Q, 0, P, 2, big, x, NULL) == AF_ERR_RANGE);
  af_error_clear();
  free(x), free(seq), free(lg), free(ref);
  af_lm_free(lm);
  af_weights_free(w);
  return worst;
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  CHECK_OK(af_cl_open(&cl, NULL));
  if (cl) CHECK_OK(af_queue_new(cl, &Q));
  char m32[1024], m16[1024], mq8[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, m32, sizeof m32));
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F16, m16, sizeof m16));
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_Q8_0, mq8, sizeof mq8));
  if (!Q) return af_test_done("test_lm_branches");
  int32_t before[512], after[512];
  int nb = read_ids_line(af_test_data(DIR "golden/prompt_ids.txt"), 0, before, 512);
  int na = read_ids_line(af_test_data(DIR "golden/prompt_ids.txt"), 1, after, 512);
  int nd;
  int64_t shape[4];
  size_t np = 0;
  float *proj = npy_read_f32(af_test_data(DIR "golden/proj.npy"), &nd, shape, &np);
  CHECK(proj && nb > 0 && na > 0 && nd == 2);
  if (!proj) return af_test_done("test_lm_branches");
  int nq = (int)shape[0];
  const char *paths[3] = {m32, m16, mq8}, *names[3] = {"f32", "f16", "q8_0"};
  const double tol[3] = {1e-5, 1e-4, 1e-4};
  for (int i = 0; i < 3; i++) {
    double e = check_model(paths[i], before, nb, proj, nq, after, na);
    printf("%s: branches vs alone, worst logits nerr %.2g (tolerance %.0g)\n", names[i], e, tol[i]);
    CHECK(e < tol[i]);
  }
  free(proj);
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_lm_branches");
}
