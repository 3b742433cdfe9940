/* The llm stage's tasks on one batch (llm_tasks.h): each item's tasks (the
 * list's, with per_item tasks made from the item's metadata), question
 * templates, the scoring tasks through net/score.h (one shared prefix per
 * image for all of them), the describe tasks through the generator (as
 * `artflow describe`, items asking alike generating together, the answers
 * streamed to a listener), and the ranked label outputs. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "stages/llm_tasks_impl.h"

/* ---- questions ---- */

int task_render(const char *tmpl, const af_item *it, int literal, const char *label, const char *task,
                char **out) {
  af_buf b = {0};
  int rc = 0;
  for (const char *s = tmpl; *s && !rc;) {
    const char *m = literal ? NULL : strstr(s, "{meta."), *l = label ? strstr(s, "{label}") : NULL;
    const char *at = m && (!l || m < l) ? m : l;
    if (!at) {
      af_buf_puts(&b, s);
      break;
    }
    af_buf_put(&b, s, (size_t)(at - s));
    if (at == l) {
      af_buf_puts(&b, label);
      s = at + 7;
      continue;
    }
    const char *end = strchr(at, '}');
    if (!end) {
      af_buf_puts(&b, at);
      break;
    }
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(end - at - 6), at + 6);
    const char *v = it ? af_item_meta(it, key) : NULL;
    if (it && !v)
      rc = af_err(AF_ERR_NOT_FOUND, "task '%s': the item has no metadata '%s' for {meta.%s} in its question",
                  task, key, key);
    for (int k = 0; !it && k < 32; k++) af_buf_puts(&b, " a");
    if (v) af_buf_puts(&b, v);
    s = end + 1;
  }
  af_buf_put(&b, "", 1);
  if (!rc && b.oom) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (rc) af_buf_free(&b);
  *out = rc ? NULL : b.p;
  return rc;
}

static const char *name_of(const af_item *it) {
  return it->path ? it->path : it->id;
}

/* ---- scoring ---- */

/* the queries of one image: per choose task one, per yesno task one per label */
typedef struct iq {
  af_score_item si;
  af_score_query *q;
  char **text; /* rendered questions */
  double **lp; /* each query's logprobs */
  int nq;
} iq;

/* the queries of an item's tasks (plan: T->n entries, NULL = skipped) */
static int n_queries(task *const *plan, int n) {
  int q = 0;
  for (int k = 0; k < n; k++)
    if (plan[k])
      q += plan[k]->mode == MODE_CHOOSE ? 1 : plan[k]->mode == MODE_YESNO ? plan[k]->v->n_labels : 0;
  return q;
}

/* item it's queries (it NULL: the reserve's stand-ins) */
static int build_queries(llm_tasks *T, task *const *plan, const af_item *it, iq *x) {
  int n = n_queries(plan, T->n), rc = 0;
  x->q = calloc((size_t)n + 1, sizeof *x->q), x->text = calloc((size_t)n + 1, sizeof(char *));
  x->lp = calloc((size_t)n + 1, sizeof(double *));
  if (!x->q || !x->text || !x->lp) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int k = 0; k < T->n && !rc; k++) {
    task *t = plan[k];
    if (!t || t->mode == MODE_DESCRIBE) continue;
    int per = t->mode == MODE_CHOOSE ? 1 : t->v->n_labels;
    for (int j = 0; j < per && !rc; j++) {
      int q = x->nq++;
      const char *label = t->mode == MODE_YESNO ? t->v->labels[j].label : NULL;
      if (!it && label) /* the longest label stands in */
        for (int i = 0; i < t->v->n_labels; i++)
          if (strlen(t->v->labels[i].label) > strlen(label)) label = t->v->labels[i].label;
      if ((rc = task_render(t->question, it, t->literal, label, t->c.name, &x->text[q]))) break;
      int nc = t->mode == MODE_CHOOSE ? t->n_forms : 4;
      if (!(x->lp[q] = calloc((size_t)nc, sizeof(double)))) rc = af_err(AF_ERR_NOMEM, "out of memory");
      x->q[q] = (af_score_query){
          .question = x->text[q],
          .n_cand = nc,
          .logprob = x->lp[q],
          .cand = t->mode == MODE_CHOOSE ? (const int32_t *const *)t->ids : (const int32_t *const *)T->yn_ids,
          .cand_len = t->mode == MODE_CHOOSE ? t->len : T->yn_len};
    }
  }
  x->si.q = x->q, x->si.n_q = x->nq;
  return rc;
}
/* yes/no candidates: the first token of each form only */
static void yesno_first_tokens(llm_tasks *T) {
  for (int k = 0; k < 4; k++) T->yn_len[k] = 1;
}

static void iq_free(iq *x) {
  for (int q = 0; q < x->nq; q++) free(x->text[q]), free(x->lp[q]);
  free(x->q), free(x->text), free(x->lp), free(x->si.error);
}

typedef struct ranked {
  int label;
  double lp, lpt, p;
} ranked;

static int by_p(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  return x->p > y->p ? -1 : x->p < y->p ? 1 : x->label - y->label;
}

/* task t's labels for one image, ranked, as the JSON output (stages/outputs.h) */
static char *labels_json(llm_tasks *T, task *t, const iq *x, int q0) {
  int n = t->v->n_labels;
  ranked *r = calloc((size_t)n, sizeof *r);
  if (!r) return NULL;
  if (t->mode == MODE_CHOOSE) {
    const double *lp = x->lp[q0];
    for (int i = 0; i < n; i++) r[i] = (ranked){i, -INFINITY, 0, 0};
    for (int f = 0; f < t->n_forms; f++)
      if (lp[f] > r[t->of[f]].lp) r[t->of[f]].lp = lp[f], r[t->of[f]].lpt = lp[f] / t->len[f];
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = r[i].lp > mx ? r[i].lp : mx;
    for (int i = 0; i < n; i++) s += exp(r[i].lp - mx);
    for (int i = 0; i < n; i++) r[i].p = exp(r[i].lp - mx) / s;
  } else {
    for (int i = 0; i < n; i++) { /* candidates: the first tokens of Yes, yes, No, no */
      const double *lp = x->lp[q0 + i];
      double py = exp(lp[0]) + (T->yn_ids[1][0] != T->yn_ids[0][0] ? exp(lp[1]) : 0);
      double pn = exp(lp[2]) + (T->yn_ids[3][0] != T->yn_ids[2][0] ? exp(lp[3]) : 0);
      r[i] = (ranked){i, log(py), log(py), py + pn > 0 ? py / (py + pn) : 0};
    }
  }
  qsort(r, (size_t)n, sizeof *r, by_p);
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) {
    if ((t->c.top_k >= 0 && i >= t->c.top_k) || r[i].p < t->c.min_p) break;
    const af_tag_label *l = &t->v->labels[r[i].label];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "label", l->label);
    if (l->id)
      cJSON_AddStringToObject(o, "id", l->id);
    else
      cJSON_AddNullToObject(o, "id");
    if (l->uri)
      cJSON_AddStringToObject(o, "uri", l->uri);
    else
      cJSON_AddNullToObject(o, "uri");
    cJSON_AddNumberToObject(o, "logprob", r[i].lp);
    cJSON_AddNumberToObject(o, "logprob_per_token", r[i].lpt);
    cJSON_AddNumberToObject(o, "p", r[i].p);
    cJSON_AddItemToArray(a, o);
  }
  char *s = a ? cJSON_PrintUnformatted(a) : NULL;
  cJSON_Delete(a);
  free(r);
  return s;
}

/* the scoring tasks of the batch, all on one shared prefix per image;
 * plan[i * T->n + k]: item i's task k (NULL: skipped) */
static void run_scoring(llm_tasks *T, const af_stage_ctx *ctx, af_item **who, int m, task *const *plan) {
  iq *x = calloc((size_t)m, sizeof *x);
  af_score_item *si = calloc((size_t)m, sizeof *si);
  int *map = calloc((size_t)m, sizeof(int)), k = 0;
  for (int i = 0; x && si && map && i < m; i++) {
    if (who[i]->status != AF_ITEM_OK || !n_queries(plan + (size_t)i * T->n, T->n)) continue;
    const af_tensor *t = af_item_tensor(who[i], "proj");
    af_error_clear();
    int rc = build_queries(T, plan + (size_t)i * T->n, who[i], &x[i]);
    if (rc) {
      af_item_fail(who[i], ctx->instance, "%s: %s", name_of(who[i]), af_error_message());
      continue;
    }
    x[i].si.image = name_of(who[i]), x[i].si.proj = t->data, x[i].si.n_img = (int)t->shape[0];
    si[k] = x[i].si, map[k++] = i;
  }
  if (!x || !si || !map) {
    for (int i = 0; i < m; i++) af_item_fail(who[i], ctx->instance, "out of memory");
  } else {
    yesno_first_tokens(T);
    if (k) af_score_batch(T->g, si, k, 1);
    for (int j = 0; j < k; j++) {
      af_item *it = who[map[j]];
      if (si[j].rc) {
        af_item_fail(it, ctx->instance, "%s: %s", name_of(it),
                     si[j].error ? si[j].error : af_strerror(si[j].rc));
        free(si[j].error);
        continue;
      }
      task *const *p = plan + (size_t)map[j] * T->n;
      for (int t = 0, q0 = 0; t < T->n; t++) {
        if (!p[t] || p[t]->mode == MODE_DESCRIBE) continue;
        char *js = labels_json(T, p[t], &x[map[j]], q0);
        if (!js || af_item_set_text(it, T->t[t].c.name, js)) af_item_fail(it, ctx->instance, "out of memory");
        free(js);
        q0 += p[t]->mode == MODE_CHOOSE ? 1 : p[t]->v->n_labels;
      }
    }
  }
  for (int i = 0; x && i < m; i++) iq_free(&x[i]);
  free(x), free(si), free(map);
}

/* ---- describe ---- */

/* one group's generation as a listener follows it (ctx->stream, output
 * `name`): an empty call when an answer begins, its bytes, a NULL call when
 * it is complete; ctx->cancelled ends an item a listener gave up on */
typedef struct gen_follow {
  const af_stage_ctx *ctx;
  const char *name;
  af_item **who; /* the group's items, by their place in it */
  char *begun;
} gen_follow;

static void follow_write(void *arg, int i, const char *p, size_t len) {
  gen_follow *f = arg;
  f->ctx->stream(f->ctx, f->who[i], f->name, p ? p : len == 0 ? "" : NULL, p ? len : 0);
}

static int follow_prefilled(void *arg, af_gen_run *run, int i) {
  gen_follow *f = arg;
  f->begun[i] = 1;
  return af_gen_put(run, i, NULL, 0);
}

static int follow_done(void *arg, af_gen_run *run, int i) {
  gen_follow *f = arg;
  f->begun[i] = 0;
  return af_gen_put(run, i, NULL, 1);
}

static int follow_cancelled(void *arg, int i) {
  gen_follow *f = arg;
  return f->ctx->cancelled(f->ctx, f->who[i]);
}

/* two items generate together when they ask the same and sample alike */
static int same_gen(const char *qa, const af_gen_opts *a, const char *qb, const af_gen_opts *b) {
  const af_sampling *x = &a->sampling, *y = &b->sampling;
  return ((!qa && !qb) || (qa && qb && !strcmp(qa, qb))) && a->max_new_tokens == b->max_new_tokens &&
         a->max_length == b->max_length && x->greedy == y->greedy && x->temperature == y->temperature &&
         x->top_k == y->top_k && x->top_p == y->top_p && x->repetition_penalty == y->repetition_penalty &&
         x->seed == y->seed;
}

/* one group of items asking alike (question, opts): generated together,
 * each answer written to output `name` */
static void describe_group(llm_tasks *T, const char *name, const af_stage_ctx *ctx, const af_gen_opts *opts,
                           af_item **grp, int n) {
  af_gen_item *gi = calloc((size_t)n, sizeof *gi);
  gen_follow f = {.ctx = ctx, .name = name, .who = grp, .begun = calloc((size_t)n, 1)};
  if (!gi || !f.begun) {
    for (int k = 0; k < n; k++) af_item_fail(grp[k], ctx->instance, "out of memory");
    free(gi), free(f.begun);
    return;
  }
  for (int k = 0; k < n; k++) {
    const af_tensor *p = af_item_tensor(grp[k], "proj");
    gi[k] = (af_gen_item){.image = name_of(grp[k]), .proj = p->data, .n_img = (int)p->shape[0]};
  }
  af_gen_sink sink = {.arg = &f,
                      .write = ctx->stream ? follow_write : NULL,
                      .stream_answers = ctx->stream != NULL,
                      .prefilled = ctx->stream ? follow_prefilled : NULL,
                      .done = ctx->stream ? follow_done : NULL,
                      .interleave = T->interleave,
                      .cancelled = ctx->cancelled ? follow_cancelled : NULL};
  af_error_clear();
  int rc = af_generator_configure(T->g, opts);
  if (!rc) af_generate_batch(T->g, gi, n, &sink);
  for (int k = 0; k < n; k++) {
    af_item *it = grp[k];
    int e = rc ? rc : gi[k].rc;
    if (!e && af_item_set_text(it, name, gi[k].answer)) e = AF_ERR_NOMEM;
    if (e)
      af_item_fail(it, ctx->instance, "%s: task '%s': %s", name_of(it), name,
                   gi[k].error ? gi[k].error
                   : rc        ? af_error_message()
                               : af_strerror(e));
    if (e && f.begun[k]) ctx->stream(ctx, it, name, NULL, 0); /* what began is over */
    af_gen_item_clear(&gi[k]);
  }
  free(gi), free(f.begun);
}

/* describe task k: the items whose plan runs it describe, grouped by what
 * they ask (question and generation options) */
static void run_describe(llm_tasks *T, int k, const af_stage_ctx *ctx, af_item **who, int m,
                         task *const *plan) {
  char **qs = calloc((size_t)m, sizeof(char *));
  af_item **grp = calloc((size_t)m, sizeof *grp);
  int *done = calloc((size_t)m, sizeof(int));
  const char *name = T->t[k].c.name;
  for (int i = 0; qs && grp && done && i < m; i++) {
    const task *t = plan[(size_t)i * T->n + k];
    if (who[i]->status != AF_ITEM_OK || !t || t->mode != MODE_DESCRIBE) {
      done[i] = 1;
      continue;
    }
    af_error_clear();
    if (t->question && task_render(t->question, who[i], t->literal, NULL, name, &qs[i])) {
      af_item_fail(who[i], ctx->instance, "%s: %s", name_of(who[i]), af_error_message());
      done[i] = 1;
    }
  }
  for (int i = 0; qs && grp && done && i < m; i++) {
    if (done[i]) continue;
    const af_gen_opts *gi = &plan[(size_t)i * T->n + k]->gen;
    int n = 0;
    for (int j = i; j < m; j++)
      if (!done[j] && who[j]->status == AF_ITEM_OK &&
          same_gen(qs[i], gi, qs[j], &plan[(size_t)j * T->n + k]->gen))
        grp[n++] = who[j], done[j] = 1;
    af_gen_opts o = *gi;
    o.question = qs[i];
    describe_group(T, name, ctx, &o, grp, n);
  }
  if (!qs || !grp || !done)
    for (int i = 0; i < m; i++) af_item_fail(who[i], ctx->instance, "out of memory");
  for (int i = 0; qs && i < m; i++) free(qs[i]);
  free(qs), free(grp), free(done);
}

/* ---- the batch ---- */

af_flow llm_tasks_process(llm_tasks *T, const af_stage_ctx *ctx, af_item **items, int n) {
  af_item **who = calloc((size_t)(n ? n : 1), sizeof *who);
  task **plan = calloc((size_t)(n ? n : 1) * (size_t)T->n, sizeof *plan);
  task *own = calloc((size_t)(n ? n : 1) * (size_t)T->n, sizeof *own); /* per_item tasks */
  if (!who || !plan || !own) {
    free(who), free(plan), free(own);
    return af_err(AF_ERR_NOMEM, "out of memory"), AF_FLOW_ERROR;
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    const af_tensor *t = af_item_tensor(items[i], "proj");
    if (!t || t->dtype != AF_DTYPE_F32 || t->ndim != 2)
      af_item_fail(items[i], ctx->instance, "%s: no f32[Q,H] 'proj' tensor (is qformer before llm?)",
                   name_of(items[i]));
    else
      who[m++] = items[i];
  }
  for (int i = 0; i < m; i++)
    for (int k = 0; k < T->n && who[i]->status == AF_ITEM_OK; k++) {
      size_t at = (size_t)i * T->n + k;
      if (!T->t[k].c.per_item) {
        plan[at] = &T->t[k];
        continue;
      }
      af_error_clear();
      int rc = task_for_item(T, &T->t[k], ctx, who[i], &own[at]);
      if (rc < 0)
        af_item_fail(who[i], ctx->instance, "%s: %s", name_of(who[i]), af_error_message());
      else if (rc == 0)
        plan[at] = &own[at];
    }
  run_scoring(T, ctx, who, m, plan);
  for (int k = 0; k < T->n; k++) run_describe(T, k, ctx, who, m, plan);
  af_error_clear();
  for (size_t i = 0; i < (size_t)m * T->n; i++) task_free(&own[i]);
  free(who), free(plan), free(own);
  return AF_FLOW_OK;
}

int llm_tasks_reserve(llm_tasks *T, int batch, int n_img) {
  int rc = 0;
  /* the list's tasks; a per_item task is reserved as its own keys make it
   * (a describe task), items asking for more grow the buffers */
  task **plan = calloc((size_t)T->n, sizeof *plan);
  if (!plan) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int k = 0; k < T->n; k++)
    plan[k] = !T->t[k].c.per_item || T->t[k].mode == MODE_DESCRIBE ? &T->t[k] : NULL;
  for (int k = 0; k < T->n && !rc; k++) {
    task *t = plan[k];
    if (!t || t->mode != MODE_DESCRIBE) continue;
    char *q = NULL;
    af_gen_opts o = t->gen;
    if (t->question && (rc = task_render(t->question, NULL, t->literal, NULL, t->c.name, &q))) break;
    o.question = q;
    if (!(rc = af_generator_configure(T->g, &o))) rc = af_generator_reserve(T->g, batch, n_img);
    free(q);
  }
  if (!rc && n_queries(plan, T->n)) {
    iq x = {0};
    yesno_first_tokens(T);
    rc = build_queries(T, plan, NULL, &x);
    x.si.n_img = n_img;
    if (!rc) rc = af_score_reserve(T->g, batch, &x.si);
    iq_free(&x);
  }
  free(plan);
  return rc;
}
