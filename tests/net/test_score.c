/* Scoring labels (net/score.h) against the original model: the PyTorch
 * goldens of make_golden_tags.py (tests/data/artgpt4-tiny/golden/tags.json,
 * one full forward of prompt + label per label, no cache) for one-token,
 * multi-token and non-ASCII labels and a non-ASCII question.
 *  - af_score_encode gives the goldens' label ids (LlamaTokenizer, no BOS);
 *  - shared-prefix scoring (one prefix prefill, all questions and candidates
 *    in one pass) equals the goldens within 1e-4 relative, on the f32 model;
 *  - the slow path (every candidate's whole prompt prefilled alone) gives
 *    the same numbers: sharing == not sharing (1e-5 relative);
 *  - two images in a batch, with the questions in another order, get the
 *    same numbers as one (slots and holes do not leak between them);
 *  - questions that start alike (their common tokens join the prefix) too;
 *  - a label that tokenises to nothing and an empty question are errors
 *    naming them; an image that fails does not fail the others. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "formats/gguf.h"
#include "net/score.h"
#include "ref/npy.h"

#define DIR "artgpt4-tiny/"
#define MAXQ 8
#define MAXC 16

typedef struct gq {
  const char *question;
  int n;
  const char *label[MAXC];
  double gold[MAXC];
  int32_t *ids[MAXC];
  int len[MAXC];
  double lp[MAXC];
} gq;

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

static double rel(double a, double b) {
  return fabs(a - b) / (fabs(b) > 1e-30 ? fabs(b) : 1.0);
}

/* the queries of questions qs[order[0..n)] into q[] */
static void queries(gq *qs, const int *order, int n, af_score_query *q) {
  for (int k = 0; k < n; k++) {
    gq *g = &qs[order[k]];
    q[k] = (af_score_query){.question = g->question,
                            .n_cand = g->n,
                            .cand = (const int32_t *const *)g->ids,
                            .cand_len = g->len,
                            .logprob = g->lp};
  }
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  char model[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, model, sizeof model));
  char *json = slurp(af_test_data(DIR "golden/tags.json"));
  cJSON *gold = json ? cJSON_Parse(json) : NULL;
  CHECK(gold != NULL);
  int nd;
  int64_t shape[4];
  size_t np = 0;
  float *proj = npy_read_f32(af_test_data(DIR "golden/proj.npy"), &nd, shape, &np);
  CHECK(proj && nd == 2);
  if (!cl || !gold || !proj) return af_test_done("test_score");
  af_gen_opts o;
  af_gen_opts_default(&o);
  af_generator *g = NULL;
  CHECK_OK(af_generator_new(cl, model, &o, &g));
  if (!g) return af_test_done("test_score");

  /* the goldens, and the labels' ids as artflow encodes them */
  gq qs[MAXQ];
  int nq = 0;
  const cJSON *arr = cJSON_GetObjectItem(gold, "questions"), *qj;
  cJSON_ArrayForEach(qj, arr) {
    gq *q = &qs[nq++];
    memset(q, 0, sizeof *q);
    q->question = cJSON_GetObjectItem(qj, "question")->valuestring;
    const cJSON *lj;
    cJSON_ArrayForEach(lj, cJSON_GetObjectItem(qj, "labels")) {
      int c = q->n++;
      q->label[c] = cJSON_GetObjectItem(lj, "label")->valuestring;
      q->gold[c] = cJSON_GetObjectItem(lj, "logprob")->valuedouble;
      CHECK_OK(af_score_encode(g, q->label[c], &q->ids[c], &q->len[c]));
      const cJSON *ids = cJSON_GetObjectItem(lj, "ids");
      int same = cJSON_GetArraySize(ids) == q->len[c];
      for (int j = 0; same && j < q->len[c]; j++) same = cJSON_GetArrayItem(ids, j)->valueint == q->ids[c][j];
      CHECK_MSG(same, "'%s': token ids differ from LlamaTokenizer's", q->label[c]);
    }
  }
  CHECK(nq == 4);

  /* shared prefix, one image, every question */
  int order[MAXQ] = {0, 1, 2, 3}, rorder[MAXQ] = {3, 1, 0, 2};
  af_score_query q[MAXQ], q2[MAXQ];
  queries(qs, order, nq, q);
  af_score_item it = {.image = "image.png", .proj = proj, .n_img = (int)shape[0], .q = q, .n_q = nq};
  CHECK_OK(af_score_batch(g, &it, 1, 1));
  double worst = 0, share[MAXQ][MAXC];
  for (int k = 0; k < nq; k++)
    for (int c = 0; c < qs[k].n; c++) {
      double e = rel(qs[k].lp[c], qs[k].gold[c]);
      CHECK_MSG(e < 1e-4, "'%s' / '%s': %.8f vs golden %.8f", qs[k].question, qs[k].label[c], qs[k].lp[c],
                qs[k].gold[c]);
      if (e > worst) worst = e;
      share[k][c] = qs[k].lp[c];
    }
  printf("shared prefix vs PyTorch full forward: worst relative error %.2g\n", worst);

  /* every candidate alone: the same numbers */
  worst = 0;
  CHECK_OK(af_score_batch(g, &it, 1, 0));
  for (int k = 0; k < nq; k++)
    for (int c = 0; c < qs[k].n; c++) {
      double e = rel(qs[k].lp[c], share[k][c]);
      CHECK_MSG(e < 1e-5, "'%s': alone %.8f, shared %.8f", qs[k].label[c], qs[k].lp[c], share[k][c]);
      if (e > worst) worst = e;
      CHECK(rel(qs[k].lp[c], qs[k].gold[c]) < 1e-4);
    }
  printf("shared vs alone: worst relative difference %.2g\n", worst);

  /* two images in one batch, the second with its questions in another order
   * (its own logprob arrays) */
  gq copy[MAXQ];
  memcpy(copy, qs, sizeof qs);
  queries(qs, order, nq, q);
  queries(copy, rorder, nq, q2);
  af_score_item two[2] = {{.image = "a", .proj = proj, .n_img = (int)shape[0], .q = q, .n_q = nq},
                          {.image = "b", .proj = proj, .n_img = (int)shape[0], .q = q2, .n_q = nq}};
  CHECK_OK(af_score_batch(g, two, 2, 1));
  worst = 0;
  for (int k = 0; k < nq; k++)
    for (int c = 0; c < qs[k].n; c++) {
      double e1 = rel(qs[k].lp[c], share[k][c]), e2 = rel(copy[k].lp[c], share[k][c]);
      if (e1 > worst) worst = e1;
      if (e2 > worst) worst = e2;
    }
  CHECK_MSG(worst < 1e-5, "batch of two: worst %.3g", worst);

  /* questions that start alike (a yesno template): their common tokens join
   * the shared prefix; scores still equal every candidate alone */
  const char *yq[3] = {"Does this artwork show a river? Answer yes or no.",
                       "Does this artwork show fear? Answer yes or no.", "Does this artwork show Ölgemälde?"};
  double ylp[3][MAXC], yalone[3][MAXC];
  af_score_query yn[3];
  for (int k = 0; k < 3; k++)
    yn[k] = (af_score_query){.question = yq[k],
                             .n_cand = qs[3].n,
                             .cand = (const int32_t *const *)qs[3].ids,
                             .cand_len = qs[3].len,
                             .logprob = ylp[k]};
  af_score_item yit = {.image = "yn", .proj = proj, .n_img = (int)shape[0], .q = yn, .n_q = 3};
  CHECK_OK(af_score_batch(g, &yit, 1, 1));
  memcpy(yalone, ylp, sizeof ylp);
  CHECK_OK(af_score_batch(g, &yit, 1, 0));
  worst = 0;
  for (int k = 0; k < 3; k++)
    for (int c = 0; c < qs[3].n; c++)
      if (rel(yalone[k][c], ylp[k][c]) > worst) worst = rel(yalone[k][c], ylp[k][c]);
  CHECK_MSG(worst < 1e-5, "common question start: shared vs alone %.3g", worst);
  CHECK(rel(yalone[0][0], qs[3].gold[0]) < 1e-4); /* the golden yes/no question */

  /* bad input */
  int32_t *ids = NULL;
  int n = 0;
  CHECK(af_score_encode(g, "", &ids, &n) == AF_ERR_INVALID &&
        strstr(af_error_message(), "tokenises to nothing"));
  af_error_clear();
  af_score_query bad = q[1];
  bad.question = "  ";
  af_score_item mixed[2] = {{.image = "bad", .proj = proj, .n_img = (int)shape[0], .q = &bad, .n_q = 1},
                            {.image = "good", .proj = proj, .n_img = (int)shape[0], .q = q, .n_q = 1}};
  CHECK(af_score_batch(g, mixed, 2, 1) == AF_ERR_INVALID);
  CHECK(mixed[0].rc == AF_ERR_INVALID && mixed[0].error && strstr(mixed[0].error, "empty question"));
  CHECK(mixed[1].rc == 0 && rel(qs[0].lp[0], share[0][0]) < 1e-5);
  free(mixed[0].error);
  af_error_clear();
  int32_t yes[2], no[2];
  int ny = 0, nn = 0;
  CHECK_OK(af_score_yesno_ids(g, yes, &ny, no, &nn));
  CHECK(ny >= 1 && nn >= 1 && yes[0] == qs[3].ids[0][0] && no[0] == qs[3].ids[2][0]);

  for (int k = 0; k < nq; k++)
    for (int c = 0; c < qs[k].n; c++) free(qs[k].ids[c]);
  af_generator_free(g);
  free(proj), free(json);
  cJSON_Delete(gold);
  af_cl_close(cl);
  return af_test_done("test_score");
}
