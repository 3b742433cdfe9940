/* Scoring candidate answers (see score.h): the plan (which KV-cache slot and
 * position every question and candidate row takes), the prefix prefill, the
 * passes of rows through af_lm_rows, and the log-likelihoods from their
 * logits.  The slow reference path (share = 0) is at the end. */
#include "net/score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/generate_impl.h"

#define PREFILL_ROWS 2048 /* prefix rows prefilled together at most */
#define PASS_ROWS 2048    /* rows of one af_lm_rows pass at most */
#define PASS_OUT 256      /* logits rows of one pass at most (host: PASS_OUT x vocab floats) */

/* what an output row's logits score: the first token of every candidate of
 * query q (cand < 0), or token j + 1 of candidate `cand` */
typedef struct outrow {
  int q, cand, j;
} outrow;

/* one question of one item */
typedef struct qplan {
  int item;
  af_score_query *sq;
  int32_t *qids; /* the prompt after the image: "</Img> question###Assistant:" */
  size_t nq;
} qplan;

typedef struct srun {
  af_generator *g;
  af_score_item *items;
  int B, H, V;
  int32_t *pre; /* the prompt before the image (BOS first), the same for every question */
  size_t npre;
  char *pre_text;
  qplan *qp;
  int nqp;
  int *base, *used; /* each item's first KV-cache slot and how many it takes */
  int *lcp;         /* each item's question tokens that every question of it starts with */
  const int32_t **lcp_ids;
  int n_slots, need; /* slots in all, positions of the longest */
  af_lm_row *rows;
  float *x; /* rows x H */
  int nrows, cap_rows;
  int *outs; /* rows whose logits count */
  outrow *what;
  int nouts, cap_outs;
} srun;

int af_score_encode(const af_generator *g, const char *text, int32_t **ids, int *n) {
  size_t m = 0;
  *ids = NULL, *n = 0;
  int rc = af_spm_encode_hf(g->tok, text, strlen(text), 0, ids, &m);
  if (!rc && m == 0) {
    free(*ids), *ids = NULL;
    rc = af_err(AF_ERR_INVALID, "the label '%s' tokenises to nothing", text);
  }
  *n = (int)m;
  return rc;
}

int af_score_yesno_ids(const af_generator *g, int32_t yes[2], int *n_yes, int32_t no[2], int *n_no) {
  static const char *const words[4] = {"Yes", "yes", "No", "no"};
  *n_yes = *n_no = 0;
  for (int w = 0; w < 4; w++) {
    int32_t *ids = NULL;
    int n = 0, rc = af_score_encode(g, words[w], &ids, &n);
    if (rc) return rc;
    int32_t *dst = w < 2 ? yes : no;
    int *cnt = w < 2 ? n_yes : n_no;
    if (!*cnt || dst[0] != ids[0]) dst[(*cnt)++] = ids[0];
    free(ids);
  }
  return 0;
}

static void item_fail(srun *r, int i, int rc) {
  af_score_item *it = &r->items[i];
  if (it->rc) return;
  it->rc = rc;
  const char *m = af_error_message();
  it->error = strdup(m && *m ? m : af_strerror(rc));
  af_error_clear();
}

/* ---- the prompt ---- */

/* the question's prompt split at the image: before (text) and after (ids) */
static int question_ids(srun *r, const char *question, char **pre_text, int32_t **ids, size_t *n) {
  af_generator *g = r->g;
  char *prompt = NULL, **segs = NULL;
  int nseg = 0, rc;
  const char *s = question ? question : "";
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  if (!*s) return af_err(AF_ERR_INVALID, "an empty question");
  if (!(rc = af_prompt_fill(g->tmpl, question, &prompt)) && !(rc = af_prompt_split(prompt, &segs, &nseg)) &&
      nseg != 2)
    rc = af_err(AF_ERR_FORMAT, "the prompt template has %d image places; tagging gives one image", nseg - 1);
  if (!rc) rc = af_spm_encode_hf(g->tok, segs[1], strlen(segs[1]), 0, ids, n);
  if (!rc && !(*pre_text = strdup(segs[0]))) rc = af_err(AF_ERR_NOMEM, "out of memory");
  free(prompt);
  af_prompt_free_segments(segs, nseg);
  return rc;
}

/* every question's prompt: the part before the image must be one for all
 * (the template puts {question} after <ImageHere>), it is shared */
static void run_prompts(srun *r) {
  for (int k = 0; k < r->nqp; k++) {
    qplan *p = &r->qp[k];
    if (r->items[p->item].rc) continue;
    char *pre = NULL;
    int rc = question_ids(r, p->sq->question, &pre, &p->qids, &p->nq);
    if (!rc && !r->pre_text) {
      r->pre_text = pre, pre = NULL;
      rc = af_spm_encode_hf(r->g->tok, r->pre_text, strlen(r->pre_text), 1, &r->pre, &r->npre);
    }
    if (!rc && pre && strcmp(pre, r->pre_text))
      rc = af_err(AF_ERR_FORMAT,
                  "the model's prompt template puts the question before the image; tagging shares the part "
                  "before the question and needs it after <ImageHere>");
    for (int c = 0; !rc && c < p->sq->n_cand; c++)
      if (p->sq->cand_len[c] < 1)
        rc = af_err(AF_ERR_INVALID, "candidate %d of '%s' has no tokens", c, p->sq->question);
    free(pre);
    if (rc) item_fail(r, p->item, rc);
  }
}

/* The question tokens every question of an item starts with ("</Img>" and
 * the words a yesno template puts before {label}) join its prefix: computed
 * once, not once per question.  Each question keeps at least its last token
 * (its logits score the candidates' first tokens). */
static void run_common(srun *r) {
  for (int k = 0; k < r->nqp; k++) {
    const qplan *p = &r->qp[k];
    int i = p->item;
    if (r->items[i].rc) continue;
    if (!r->lcp_ids[i]) {
      r->lcp_ids[i] = p->qids, r->lcp[i] = (int)p->nq - 1;
      continue;
    }
    int n = 0;
    while (n < r->lcp[i] && n < (int)p->nq - 1 && p->qids[n] == r->lcp_ids[i][n]) n++;
    r->lcp[i] = n;
  }
}

/* positions of item i's shared prefix: BOS + system text, image, common question tokens */
static int prefix_len(const srun *r, int i) {
  return (int)r->npre + r->items[i].n_img + r->lcp[i];
}

/* ---- the plan ---- */

static int cand_rows(const af_score_query *q) {
  int n = 0;
  for (int c = 0; c < q->n_cand; c++) n += q->cand_len[c] - 1;
  return n;
}

static int push_row(srun *r, af_lm_row row, const int32_t *tok) {
  if (r->nrows == r->cap_rows) {
    int cap = r->cap_rows ? 2 * r->cap_rows : 256;
    af_lm_row *nr = realloc(r->rows, sizeof *nr * (size_t)cap);
    if (nr) r->rows = nr;
    float *nx = r->g && tok ? realloc(r->x, sizeof(float) * (size_t)r->H * (size_t)cap) : r->x;
    if (nx) r->x = nx;
    if (!nr || (tok && !nx)) return af_err(AF_ERR_NOMEM, "out of memory");
    r->cap_rows = cap;
  }
  if (tok && r->x) {
    int rc = af_lm_embed(r->g->lm, tok, 1, r->x + (size_t)r->nrows * (size_t)r->H);
    if (rc) return rc;
  }
  r->rows[r->nrows++] = row;
  return 0;
}

static int push_out(srun *r, outrow w) {
  if (r->nouts == r->cap_outs) {
    int cap = r->cap_outs ? 2 * r->cap_outs : 256;
    int *no = realloc(r->outs, sizeof *no * (size_t)cap);
    if (no) r->outs = no;
    outrow *nw = realloc(r->what, sizeof *nw * (size_t)cap);
    if (nw) r->what = nw;
    if (!no || !nw) return af_err(AF_ERR_NOMEM, "out of memory");
    r->cap_outs = cap;
  }
  r->outs[r->nouts] = r->nrows - 1;
  r->what[r->nouts++] = w;
  return 0;
}

/* Slots and positions of item i's questions: one with candidate rows starts
 * a fresh slot (its candidates branch off its last row: one hole each,
 * hiding the candidates before them); one without goes after whatever a slot
 * holds (a hole hides that).  Each slot holds the prefix, copied.  A slot
 * holds at most SLOT_ROWS rows after the prefix (the KV cache is slots x the
 * longest): candidates that do not fit go on in another slot, after the
 * question's rows again (their logits unused). */
#define SLOT_ROWS 384
static int plan_item(srun *r, int i, int embed) {
  int ctx = af_lm_shape_of(r->g->lm)->ctx, P0 = prefix_len(r, i), slots = 1, free_at = P0, rc = 0,
      skip = r->lcp[i];
  r->base[i] = r->n_slots;
  for (int pass = 0; pass < 2 && !rc; pass++) /* questions with candidate rows first */
    for (int k = 0; k < r->nqp && !rc; k++) {
      qplan *p = &r->qp[k];
      int nc = cand_rows(p->sq), nq = (int)p->nq - skip, longest = 0;
      if (p->item != i || (pass == 0) != (nc > 0)) continue;
      for (int c = 0; c < p->sq->n_cand; c++)
        if (p->sq->cand_len[c] - 1 > longest) longest = p->sq->cand_len[c] - 1;
      if (P0 + nq + longest > ctx)
        return af_err(AF_ERR_RANGE,
                      "the prompt (%d positions) and a candidate of '%s' (%d) exceed the context of %d",
                      P0 + nq, p->sq->question, longest + 1, ctx);
      int cap = P0 + SLOT_ROWS < ctx ? P0 + SLOT_ROWS : ctx;
      if (cap < P0 + nq + longest) cap = P0 + nq + longest;
      if (nc > 0 ? free_at != P0 : free_at + nq > cap) slots++, free_at = P0;
      for (int c = -1; c < p->sq->n_cand && !rc; c++) {
        int L = c < 0 ? 0 : p->sq->cand_len[c] - 1;
        if (c >= 0 && L == 0) continue;
        if (c < 0 || free_at + L > cap) { /* the question's rows, here or in the next slot */
          if (c >= 0) slots++, free_at = P0;
          int slot = r->base[i] + slots - 1, at = free_at;
          for (int j = 0; j < nq && !rc; j++)
            rc = push_row(r, (af_lm_row){slot, at + j, P0 + j, P0, at}, embed ? &p->qids[skip + j] : NULL);
          if (!rc && c < 0) rc = push_out(r, (outrow){k, -1, 0});
          free_at += nq;
          if (free_at > r->need) r->need = free_at;
          if (c < 0) continue;
        }
        int slot = r->base[i] + slots - 1, cstart = free_at;
        for (int j = 0; j < L && !rc; j++) {
          rc = push_row(r, (af_lm_row){slot, free_at++, P0 + nq + j, P0 + nq, cstart},
                        embed ? &p->sq->cand[c][j] : NULL);
          if (!rc) rc = push_out(r, (outrow){k, c, j});
        }
        if (free_at > r->need) r->need = free_at;
      }
    }
  if (P0 + 1 > r->need) r->need = P0 + 1;
  r->used[i] = slots;
  r->n_slots += slots;
  return rc;
}

/* ---- running ---- */

/* log softmax of the logits at `tok`, in double */
static double logprob_at(const float *lg, int V, int32_t tok, double lse) {
  return (double)lg[tok] - lse;
}

static double log_sum_exp(const float *lg, int V) {
  float mx = lg[0];
  for (int v = 1; v < V; v++)
    if (lg[v] > mx) mx = lg[v];
  double s = 0;
  for (int v = 0; v < V; v++) s += exp((double)lg[v] - mx);
  return mx + log(s);
}

/* the logits of output rows o0..o1 (at lg) into the candidates' sums */
static void take_logits(srun *r, int o0, int o1, const float *lg) {
  for (int o = o0; o < o1; o++) {
    const outrow *w = &r->what[o];
    const float *l = lg + (size_t)(o - o0) * (size_t)r->V;
    af_score_query *q = r->qp[w->q].sq;
    double lse = log_sum_exp(l, r->V);
    if (w->cand < 0)
      for (int c = 0; c < q->n_cand; c++) q->logprob[c] += logprob_at(l, r->V, q->cand[c][0], lse);
    else
      q->logprob[w->cand] += logprob_at(l, r->V, q->cand[w->cand][w->j + 1], lse);
  }
}

/* the prefixes: BOS + system text + image rows of every item still in, into
 * its first slot, several at once */
static void run_prefixes(srun *r, float *lg) {
  af_generator *g = r->g;
  size_t H = (size_t)r->H;
  int *slots = malloc(sizeof(int) * (size_t)r->B), *lens = malloc(sizeof(int) * (size_t)r->B);
  int *who = malloc(sizeof(int) * (size_t)r->B);
  float *x = NULL;
  int n = 0, rows = 0, rc = !slots || !lens || !who ? af_err(AF_ERR_NOMEM, "out of memory") : 0;
  for (int i = 0; i <= r->B && !rc; i++) {
    const af_score_item *it = i < r->B ? &r->items[i] : NULL;
    int P0 = it ? prefix_len(r, i) : 0;
    if (n && (!it || rows + P0 > PREFILL_ROWS)) { /* the group so far */
      int grc = n > 1 ? af_lm_prefill_batch(g->lm, g->q, n, slots, lens, x, lg) : -1;
      for (int k = 0, at = 0; grc && k < n;
           at += lens[k++]) { /* one at a time: a failure stays with its item */
        af_error_clear();
        int e = af_lm_prefill(g->lm, g->q, slots[k], x + (size_t)at * H, lens[k], 0, lg);
        if (e) item_fail(r, who[k], e);
      }
      n = rows = 0;
    }
    if (!it || it->rc) continue;
    float *nx = realloc(x, sizeof(float) * H * (size_t)(rows + P0));
    if (!nx) {
      rc = af_err(AF_ERR_NOMEM, "out of memory");
      break;
    }
    x = nx;
    if ((rc = af_lm_embed(g->lm, r->pre, (int)r->npre, x + (size_t)rows * H))) break;
    memcpy(x + (size_t)(rows + (int)r->npre) * H, it->proj, sizeof(float) * H * (size_t)it->n_img);
    if (r->lcp[i] && (rc = af_lm_embed(g->lm, r->lcp_ids[i], r->lcp[i],
                                       x + (size_t)(rows + (int)r->npre + it->n_img) * H)))
      break;
    slots[n] = r->base[i], lens[n] = P0, who[n++] = i, rows += P0;
  }
  for (int i = 0; rc && i < r->B; i++) item_fail(r, i, rc);
  free(slots), free(lens), free(who), free(x);
}

/* the rows of every question and candidate, PASS_ROWS / PASS_OUT at a time */
static void run_rows(srun *r, float *lg) {
  af_generator *g = r->g;
  for (int i = 0; i < r->B; i++) /* the prefix into the item's other slots */
    for (int s = 1; s < r->used[i] && !r->items[i].rc; s++) {
      int rc = af_lm_copy_prefix(g->lm, g->q, r->base[i], r->base[i] + s, prefix_len(r, i));
      if (rc) item_fail(r, i, rc);
    }
  int o0 = 0;
  for (int r0 = 0; r0 < r->nrows;) {
    int r1 = r0, o1 = o0;
    while (r1 < r->nrows && r1 - r0 < PASS_ROWS) {
      int is_out = o1 < r->nouts && r->outs[o1] == r1;
      if (is_out && o1 - o0 == PASS_OUT) break;
      o1 += is_out, r1++;
    }
    /* a pass without a scored row still stores its keys (the rest of a long
     * question): its last row's logits are computed and dropped */
    int n_out = o1 > o0 ? o1 - o0 : 1;
    int *outs = malloc(sizeof(int) * (size_t)n_out);
    int rc = outs ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
    for (int o = 0; !rc && o < n_out; o++) outs[o] = o1 > o0 ? r->outs[o0 + o] - r0 : r1 - r0 - 1;
    if (!rc)
      rc = af_lm_rows(g->lm, g->q, r1 - r0, r->rows + r0, r->x + (size_t)r0 * (size_t)r->H, n_out, outs, lg);
    if (!rc) take_logits(r, o0, o1, lg);
    for (int o = o0; rc && o < o1; o++) item_fail(r, r->qp[r->what[o].q].item, rc);
    free(outs);
    r0 = r1, o0 = o1;
  }
}

static void run_free(srun *r) {
  for (int k = 0; r->qp && k < r->nqp; k++) free(r->qp[k].qids);
  free(r->qp), free(r->pre), free(r->pre_text), free(r->base), free(r->used), free(r->rows), free(r->x);
  free(r->lcp), free(r->lcp_ids);
  free(r->outs), free(r->what);
}

/* the run's questions, item by item */
static int run_init(srun *r, af_generator *g, af_score_item *items, int B) {
  memset(r, 0, sizeof *r);
  r->g = g, r->items = items, r->B = B;
  r->H = af_lm_shape_of(g->lm)->hidden, r->V = af_lm_shape_of(g->lm)->vocab;
  for (int i = 0; i < B; i++) r->nqp += items[i].n_q;
  r->qp = calloc((size_t)r->nqp + 1, sizeof *r->qp);
  r->base = calloc((size_t)B, sizeof(int)), r->used = calloc((size_t)B, sizeof(int));
  r->lcp = calloc((size_t)B, sizeof(int)), r->lcp_ids = calloc((size_t)B, sizeof(int32_t *));
  if (!r->qp || !r->base || !r->used || !r->lcp || !r->lcp_ids) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0, k = 0; i < B; i++)
    for (int j = 0; j < items[i].n_q; j++, k++) r->qp[k].item = i, r->qp[k].sq = &items[i].q[j];
  return 0;
}

static int share_batch(af_generator *g, af_score_item *items, int B) {
  srun r;
  int rc = run_init(&r, g, items, B);
  float *lg = NULL;
  if (!rc) {
    run_prompts(&r);
    run_common(&r);
    for (int i = 0; i < B; i++)
      if (!items[i].rc && (rc = plan_item(&r, i, 1))) item_fail(&r, i, rc), rc = 0;
    if (r.n_slots) rc = af_lm_reserve(g->lm, g->q, r.n_slots, r.need);
    int most = PASS_OUT > B ? PASS_OUT : B;
    if (!rc && !(lg = malloc(sizeof(float) * (size_t)r.V * (size_t)most)))
      rc = af_err(AF_ERR_NOMEM, "out of memory");
    if (rc)
      for (int i = 0; i < B; i++) item_fail(&r, i, rc);
  }
  if (!rc) {
    run_prefixes(&r, lg);
    run_rows(&r, lg);
  }
  free(lg);
  run_free(&r);
  return rc;
}

/* ---- the reference: every candidate alone ---- */

/* item i, question q, every candidate: the whole prompt prefilled, then the
 * candidate's rows after it (af_lm_branches with one branch) */
static int alone(srun *r, int i, const qplan *p) {
  af_generator *g = r->g;
  const af_score_item *it = &r->items[i];
  size_t H = (size_t)r->H, V = (size_t)r->V;
  int P = (int)r->npre + it->n_img + (int)p->nq, longest = 1, rc = 0;
  for (int c = 0; c < p->sq->n_cand; c++)
    if (p->sq->cand_len[c] > longest) longest = p->sq->cand_len[c];
  float *x = malloc(sizeof(float) * H * (size_t)(P + longest)),
        *lg = malloc(sizeof(float) * V * (size_t)longest);
  if (!x || !lg) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_lm_embed(g->lm, r->pre, (int)r->npre, x);
  if (!rc) memcpy(x + r->npre * H, it->proj, sizeof(float) * H * (size_t)it->n_img);
  if (!rc) rc = af_lm_embed(g->lm, p->qids, (int)p->nq, x + (r->npre + (size_t)it->n_img) * H);
  for (int c = 0; !rc && c < p->sq->n_cand; c++) {
    int L = p->sq->cand_len[c];
    if ((rc = af_lm_prefill(g->lm, g->q, 0, x, P, 0, lg))) break;
    double lp = logprob_at(lg, (int)V, p->sq->cand[c][0], log_sum_exp(lg, (int)V));
    if (L > 1) {
      int n = L - 1;
      if ((rc = af_lm_embed(g->lm, p->sq->cand[c], n, x + (size_t)P * H)) ||
          (rc = af_lm_branches(g->lm, g->q, 0, P, 1, &n, x + (size_t)P * H, lg)))
        break;
      for (int j = 0; j < n; j++)
        lp += logprob_at(lg + (size_t)j * V, (int)V, p->sq->cand[c][j + 1],
                         log_sum_exp(lg + (size_t)j * V, (int)V));
    }
    p->sq->logprob[c] = lp;
  }
  free(x), free(lg);
  return rc;
}

int af_score_batch(af_generator *g, af_score_item *items, int B, int share) {
  for (int i = 0; i < B; i++) {
    items[i].rc = 0, items[i].error = NULL;
    for (int k = 0; k < items[i].n_q; k++)
      for (int c = 0; c < items[i].q[k].n_cand; c++) items[i].q[k].logprob[c] = 0;
  }
  if (B < 1) return 0;
  af_error_clear();
  int rc = 0;
  if (share) {
    rc = share_batch(g, items, B);
  } else {
    srun r;
    if (!(rc = run_init(&r, g, items, B))) {
      run_prompts(&r);
      for (int k = 0; k < r.nqp; k++) {
        int i = r.qp[k].item, e = items[i].rc ? 0 : alone(&r, i, &r.qp[k]);
        if (e) item_fail(&r, i, e);
      }
    }
    run_free(&r);
  }
  for (int i = 0; i < B && !rc; i++)
    if (items[i].rc)
      rc = af_err_replace(items[i].rc, "%s", items[i].error ? items[i].error : af_strerror(items[i].rc));
  return rc;
}

int af_score_reserve(af_generator *g, int batch, const af_score_item *shape) {
  if (batch < 1 || !shape || shape->n_img < 0)
    return af_err(AF_ERR_INVALID, "score: reserve for %d items", batch);
  af_score_item *items = calloc((size_t)batch, sizeof *items);
  if (!items) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0; i < batch; i++) items[i] = *shape, items[i].rc = 0, items[i].error = NULL;
  srun r;
  int rc = run_init(&r, g, items, batch);
  if (!rc) {
    run_prompts(&r);
    run_common(&r);
    for (int i = 0; i < batch && !rc; i++)
      rc = items[i].rc ? af_err_replace(items[i].rc, "%s", items[i].error) : plan_item(&r, i, 0);
  }
  int *slots = NULL, *lens = NULL, *outs = NULL;
  if (!rc && r.n_slots) rc = af_lm_reserve(g->lm, g->q, r.n_slots, r.need);
  int P0 = rc ? 0 : prefix_len(&r, 0), group = P0 >= PREFILL_ROWS ? 1 : PREFILL_ROWS / (P0 > 0 ? P0 : 1);
  if (group > batch) group = batch;
  int n = r.nrows < PASS_ROWS ? r.nrows : PASS_ROWS, no = r.nouts < PASS_OUT ? r.nouts : PASS_OUT;
  slots = malloc(sizeof(int) * (size_t)batch), lens = malloc(sizeof(int) * (size_t)batch);
  outs = malloc(sizeof(int) * (size_t)(no + 1));
  if (!rc && (!slots || !lens || !outs)) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc && r.nrows && P0 > 0) {
    for (int i = 0; i < batch; i++) slots[i] = r.base[i], lens[i] = P0;
    for (int k = 0; k < no; k++) outs[k] = k;
    af_queue_reserve_begin(g->q);
    if (group > 1) rc = af_lm_prefill_batch(g->lm, g->q, group, slots, lens, NULL, NULL);
    if (!rc) rc = af_lm_prefill(g->lm, g->q, 0, NULL, P0, 0, NULL);
    for (int i = 0; !rc && i < batch; i++)
      if (r.used[i] > 1) rc = af_lm_copy_prefix(g->lm, g->q, r.base[i], r.base[i] + 1, P0);
    if (!rc) rc = af_lm_rows(g->lm, g->q, n, r.rows, NULL, no, outs, NULL);
    af_queue_reserve_end(g->q);
  }
  if (!rc) g->reserved = 1;
  for (int i = 0; i < batch; i++) free(items[i].error);
  free(slots), free(lens), free(outs), free(items);
  run_free(&r);
  return rc;
}
