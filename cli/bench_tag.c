/* `artflow bench --model M --tag VOCAB...`: what tagging costs per image
 * after the vision path, next to what describing costs, on one model in one
 * run: one prompt prefill (the describe prompt: BOS, system text, image rows,
 * question), one describe answer of 300 tokens (that prefill and 300 decode
 * steps, no stop), the vocabularies scored together on one shared prefix
 * (net/score.h, as the llm stage's tasks do), and the same scores the slow
 * way (each task's and each candidate's whole prompt prefilled again).
 * The image rows are random (the vision path is not timed); every time is
 * the best of --repeat runs after a warm-up run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "formats/gguf.h"
#include "formats/tagvocab.h"
#include "net/generate_impl.h"
#include "net/score.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct tq {
  af_score_query *q;
  char **text;
  double **lp;
  int n;
  int32_t *yn[4];
  int yn_len[4];
  int cands, rows; /* candidates, and candidate tokens after the first (rows of the pass) */
} tq;

/* the queries the llm stage's tasks would make of these vocabularies */
static int build(af_generator *g, af_tagvocab **v, int nv, tq *t, int32_t ***ids, int **len, int *nforms) {
  static const char *const yn[4] = {"Yes", "yes", "No", "no"};
  int rc = 0, nq = 0, nf = 0;
  for (int k = 0; k < 4 && !rc; k++) rc = af_score_encode(g, yn[k], &t->yn[k], &t->yn_len[k]);
  for (int k = 0; k < 4; k++) t->yn_len[k] = 1;
  for (int i = 0; i < nv; i++) nq += v[i]->mode == AF_TAG_YESNO ? v[i]->n_labels : 1, nf += v[i]->n_labels;
  t->q = calloc((size_t)nq, sizeof *t->q), t->text = calloc((size_t)nq, sizeof(char *));
  t->lp = calloc((size_t)nq, sizeof(double *));
  *ids = calloc((size_t)nf, sizeof(int32_t *)), *len = calloc((size_t)nf, sizeof(int));
  if (!t->q || !t->text || !t->lp || !*ids || !*len) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0; i < nv && !rc; i++) {
    const af_tagvocab *w = v[i];
    if (!w->question) return af_err(AF_ERR_INVALID, "%s: the vocabulary has no question", w->path);
    int f0 = *nforms;
    if (w->mode == AF_TAG_CHOOSE)
      for (int l = 0; l < w->n_labels && !rc; l++) {
        rc = af_score_encode(g, w->labels[l].label, &(*ids)[*nforms], &(*len)[*nforms]);
        t->rows += (*len)[*nforms] - 1;
        (*nforms)++;
      }
    for (int j = 0; j < (w->mode == AF_TAG_YESNO ? w->n_labels : 1) && !rc; j++) {
      int k = t->n++;
      const char *q = w->question;
      if (w->mode == AF_TAG_YESNO) { /* {label} replaced */
        const char *at = strstr(q, "{label}");
        size_t n = strlen(q) + strlen(w->labels[j].label);
        if ((t->text[k] = malloc(n)))
          snprintf(t->text[k], n, "%.*s%s%s", (int)(at - q), q, w->labels[j].label, at + 7);
        q = t->text[k];
      }
      int nc = w->mode == AF_TAG_YESNO ? 4 : w->n_labels;
      t->lp[k] = calloc((size_t)nc, sizeof(double));
      if (!q || !t->lp[k]) return af_err(AF_ERR_NOMEM, "out of memory");
      t->q[k] = (af_score_query){.question = q,
                                 .n_cand = nc,
                                 .logprob = t->lp[k],
                                 .cand = w->mode == AF_TAG_YESNO ? (const int32_t *const *)t->yn
                                                                 : (const int32_t *const *)(*ids + f0),
                                 .cand_len = w->mode == AF_TAG_YESNO ? t->yn_len : *len + f0};
      t->cands += w->mode == AF_TAG_YESNO ? 1 : w->n_labels;
    }
  }
  return rc;
}

/* the describe prompt's rows: before the image, the image, after it */
static int prompt_rows(af_generator *g, const float *proj, int n_img, float **x, int *n) {
  char *prompt = NULL, **segs = NULL;
  int nseg = 0, H = af_lm_shape_of(g->lm)->hidden;
  int32_t *pre = NULL, *post = NULL;
  size_t npre = 0, npost = 0;
  int rc = af_prompt_fill(g->tmpl, g->question, &prompt);
  if (!rc) rc = af_prompt_split(prompt, &segs, &nseg);
  if (!rc && nseg != 2) rc = af_err(AF_ERR_FORMAT, "the template has %d image places", nseg - 1);
  if (!rc) rc = af_spm_encode_hf(g->tok, segs[0], strlen(segs[0]), 1, &pre, &npre);
  if (!rc) rc = af_spm_encode_hf(g->tok, segs[1], strlen(segs[1]), 0, &post, &npost);
  *n = (int)npre + n_img + (int)npost;
  if (!rc && !(*x = malloc(sizeof(float) * (size_t)H * (size_t)*n)))
    rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_lm_embed(g->lm, pre, (int)npre, *x);
  if (!rc) memcpy(*x + npre * (size_t)H, proj, sizeof(float) * (size_t)H * (size_t)n_img);
  if (!rc) rc = af_lm_embed(g->lm, post, (int)npost, *x + (npre + (size_t)n_img) * (size_t)H);
  free(prompt), free(pre), free(post);
  af_prompt_free_segments(segs, nseg);
  return rc;
}

/* prefill, then `steps` greedy decode steps (no stop) */
static int describe(af_generator *g, const float *x, int P, int steps, float *lg) {
  int V = af_lm_shape_of(g->lm)->vocab, H = af_lm_shape_of(g->lm)->hidden,
      rc = af_lm_prefill(g->lm, g->q, 0, x, P, 0, lg);
  float *e = malloc(sizeof(float) * (size_t)H);
  if (!e) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int s = 0; s < steps && !rc; s++) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
      if (lg[v] > lg[best]) best = v;
    int slot = 0, pos = P + s;
    if (!(rc = af_lm_embed(g->lm, &best, 1, e))) rc = af_lm_decode_batch(g->lm, g->q, 1, &slot, &pos, e, lg);
  }
  free(e);
  return rc;
}

int af_bench_tag(const char *model, const char *device, const char *const *files, int nfiles, int repeat,
                 int json) {
  af_cl *cl = NULL;
  af_generator *g = NULL;
  af_tagvocab **v = calloc((size_t)nfiles, sizeof *v);
  tq t = {0};
  int32_t **ids = NULL;
  int *len = NULL, nforms = 0, rc = v ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
  float *proj = NULL, *x = NULL, *lg = NULL;
  for (int i = 0; i < nfiles && !rc; i++) rc = af_tagvocab_open(files[i], NULL, &v[i]);
  if (!rc) rc = af_cl_open(&cl, device);
  af_gen_opts o;
  af_gen_opts_default(&o);
  if (!rc) rc = af_generator_new(cl, model, &o, &g);
  uint32_t Q = 32;
  if (!rc && af_gguf_get_u32(af_weights_gguf(g->w), "qformer.query_count", &Q)) af_error_clear();
  int H = rc ? 0 : af_lm_shape_of(g->lm)->hidden, V = rc ? 0 : af_lm_shape_of(g->lm)->vocab, P = 0;
  int ctx = rc ? 0 : af_lm_shape_of(g->lm)->ctx;
  if (!rc && !(proj = malloc(sizeof(float) * (size_t)H * Q))) rc = af_err(AF_ERR_NOMEM, "out of memory");
  uint64_t s = 12345;
  for (size_t i = 0; !rc && i < (size_t)H * Q; i++) { /* image rows of an embedding's size */
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    proj[i] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5) * 0.05f;
  }
  if (!rc) rc = build(g, v, nfiles, &t, &ids, &len, &nforms);
  if (!rc) rc = prompt_rows(g, proj, (int)Q, &x, &P);
  if (!rc && !(lg = malloc(sizeof(float) * (size_t)V))) rc = af_err(AF_ERR_NOMEM, "out of memory");
  int steps = P + 300 <= ctx ? 300 : ctx - P;
  af_score_item it = {.image = "bench", .proj = proj, .n_img = (int)Q, .q = t.q, .n_q = t.n};
  double best[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
  for (int r = 0; r <= repeat && !rc; r++) { /* run 0: the warm-up (kernels, buffers) */
    double t0 = now();
    if ((rc = af_lm_prefill(g->lm, g->q, 0, x, P, 0, lg))) break;
    double t1 = now();
    if ((rc = describe(g, x, P, steps, lg))) break;
    double t2 = now();
    if ((rc = af_score_batch(g, &it, 1, 1))) break;
    double t3 = now();
    if ((rc = af_score_batch(g, &it, 1, 0))) break;
    double t4 = now(), d[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
    for (int k = 0; r > 0 && k < 4; k++) best[k] = d[k] < best[k] ? d[k] : best[k];
  }
  if (!rc && json) {
    printf(
        "{\"model\":\"%s\",\"device\":\"%s\",\"prompt_positions\":%d,\"image_rows\":%u,\"vocabularies\":%d,"
        "\"candidates\":%d,\"candidate_rows\":%d,\"questions\":%d,\"prefill_s\":%.4f,\"describe_s\":%.4f,"
        "\"describe_tokens\":%d,\"tag_shared_s\":%.4f,\"tag_unshared_s\":%.4f,\"tag_over_prefill\":%.3f}\n",
        model, cl->info.name, P, Q, nfiles, t.cands, t.rows, t.n, best[0], best[1], steps, best[2], best[3],
        best[2] / best[0]);
  } else if (!rc) {
    printf(
        "tagging benchmark: %s on %s (best of %d after a warm-up; image rows random, vision path not "
        "timed)\n",
        model, cl->info.name, repeat);
    for (int i = 0; i < nfiles; i++)
      printf("  %-20s %3d labels, %s\n", v[i]->name, v[i]->n_labels, af_tag_mode_name(v[i]->mode));
    printf("  %d candidates in all, %d questions, %d candidate tokens after their first\n", t.cands, t.n,
           t.rows);
    printf("  one prompt prefill (%d positions: the describe prompt)   %9.4f s\n", P, best[0]);
    printf("  one describe answer (that prefill + %d tokens)           %9.4f s\n", steps, best[1]);
    printf("  tagging, shared prefix and one batched pass              %9.4f s = %.2fx the prefill\n",
           best[2], best[2] / best[0]);
    printf(
        "  tagging, prompt re-prefilled per task and candidate      %9.4f s = %.2fx the prefill (%.1fx the "
        "shared)\n",
        best[3], best[3] / best[0], best[3] / best[2]);
  }
  for (int i = 0; i < nforms; i++) free(ids[i]);
  for (int k = 0; k < t.n; k++) free(t.text[k]), free(t.lp[k]);
  for (int k = 0; k < 4; k++) free(t.yn[k]);
  free(t.q), free(t.text), free(t.lp), free(ids), free(len), free(proj), free(x), free(lg);
  for (int i = 0; v && i < nfiles; i++) af_tagvocab_free(v[i]);
  free(v);
  af_generator_free(g);
  af_cl_close(cl);
  return rc ? af_cli_fail(rc, "bench --tag") : AF_EXIT_OK;
}
