/* af_generate_batch (see generate.h): the original Chat's prompt for every
 * image of a batch (template from the model file, split at <ImageHere>, each
 * segment tokenised separately, BOS on the first only), each item's image
 * embeddings spliced in and its prompt cut to max_length, the prompts
 * prefilled together into one KV-cache slot each, then batched decode steps
 * until each answer meets a stop sequence ("###" in either tokenisation),
 * the generation config's EOS id or max_new_tokens.  The phases are one
 * function each; an item that fails (or is cancelled) drops out and the
 * others go on.  The output stream keeps item order by holding back later
 * items' bytes, unless the sink asks for the items' streams interleaved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/generate_impl.h"

/* positions prefilled together at most (the LLM's work buffers grow to it) */
#define PREFILL_ROWS 2048

/* One sequence of the batch: its KV-cache slot is its index. */
typedef struct gseq {
  af_gen_run *run;
  int i, n, max_new, produced, active, finished;
  int32_t *ids;
  float *logits; /* vocab floats: the next token's */
  af_sampler sm;
  size_t printed;
  char *held; /* stream bytes held back until the items before are done */
  size_t nheld, capheld;
  int32_t *kept; /* at the last token: the ids and text Chat.answer keeps */
  int nk;
  char *final;
} gseq;

struct af_gen_run {
  af_generator *g;
  af_gen_item *items;
  int B;
  af_gen_sink sink;
  gseq *s;
  int next;    /* the item the stream is at: its bytes go through */
  int last_rc; /* the latest failure, for items failing from the same cause */
  char *last_msg;
  int32_t *pre, *post; /* the prompt's ids around the image */
  size_t npre, npost;
  int max_new, need; /* need: positions of the largest KV-cache slot */
  /* the prompts' rows, one item after another: np items, pitem[k]'s plen[k] rows from row prow[k] */
  float *all;
  int *plen, *pitem, np;
  size_t *prow;
  /* the decode steps' rows: B at most */
  float *x, *lg;
  int *slots, *pos;
};

/* ---- the output stream, in item order ---- */

/* Held bytes are kept as chunks, [size_t len][len bytes], so that marks
 * (len >= MARK_BASE: no bytes) keep their place among them. */
#define MARK_BASE ((size_t)-16)

int af_gen_put(af_gen_run *r, int i, const char *p, size_t len) {
  if (!r->sink.write || (p && !len)) return 0;
  if (i == r->next || r->sink.interleave) {
    r->sink.write(r->sink.arg, i, p, len);
    return 0;
  }
  gseq *q = &r->s[i];
  size_t body = p ? len : 0, rec = sizeof(size_t) + body, tag = p ? len : MARK_BASE + len;
  if (!p && len >= 16) return af_err(AF_ERR_INVALID, "generate: mark %zu", len);
  if (q->nheld + rec > q->capheld) {
    size_t cap = (q->nheld + rec) * 2;
    char *np = realloc(q->held, cap);
    if (!np) return af_err(AF_ERR_NOMEM, "out of memory");
    q->held = np, q->capheld = cap;
  }
  memcpy(q->held + q->nheld, &tag, sizeof tag);
  if (body) memcpy(q->held + q->nheld + sizeof tag, p, body);
  q->nheld += rec;
  return 0;
}

/* what item i held back, in order, now that it is at the front */
static void flush_held(af_gen_run *r, int i) {
  gseq *q = &r->s[i];
  for (size_t at = 0; at < q->nheld && r->sink.write;) {
    size_t tag;
    memcpy(&tag, q->held + at, sizeof tag);
    at += sizeof tag;
    if (tag >= MARK_BASE) {
      r->sink.write(r->sink.arg, i, NULL, tag - MARK_BASE);
    } else {
      r->sink.write(r->sink.arg, i, q->held + at, tag);
      at += tag;
    }
  }
  free(q->held);
  q->held = NULL, q->nheld = q->capheld = 0;
}

void af_gen_prompt_ids(const af_gen_run *r, const int32_t **pre, size_t *n_pre, const int32_t **post,
                       size_t *n_post) {
  *pre = r->pre, *n_pre = r->npre, *post = r->post, *n_post = r->npost;
}

static int seq_put(void *arg, const char *p, size_t len) {
  gseq *q = arg;
  return af_gen_put(q->run, q->i, p, len);
}

/* item i is finished: the stream moves past every finished item at its front */
static void seq_finished(af_gen_run *r, int i) {
  r->s[i].finished = 1;
  while (r->next < r->B && r->s[r->next].finished) {
    if (++r->next == r->B) break;
    flush_held(r, r->next); /* now at the front: what it held goes out */
  }
}

static void seq_fail(af_gen_run *r, int i, int rc) {
  af_gen_item *it = &r->items[i];
  if (it->rc) return;
  it->rc = rc;
  /* af_err keeps the first message until cleared: take it, clear it for the
   * next item's own, and keep it for other items failing from the same cause */
  const char *m = af_error_message()[0]             ? af_error_message()
                  : r->last_rc == rc && r->last_msg ? r->last_msg
                                                    : af_strerror(rc);
  it->error = strdup(m);
  af_error_clear();
  free(r->last_msg);
  r->last_msg = it->error ? strdup(it->error) : NULL;
  r->last_rc = rc;
  r->s[i].active = 0;
  seq_finished(r, i);
}

/* ---- the phases ---- */

static int run_init(af_gen_run *r, af_generator *g, af_gen_item *items, int B, const af_gen_sink *sink) {
  const af_lm_shape *s = af_lm_shape_of(g->lm);
  size_t H = (size_t)s->hidden, V = (size_t)s->vocab;
  memset(r, 0, sizeof *r);
  r->g = g, r->items = items, r->B = B;
  if (sink) r->sink = *sink;
  r->s = calloc((size_t)B, sizeof *r->s);
  r->x = malloc(sizeof(float) * H * (size_t)B), r->lg = malloc(sizeof(float) * V * (size_t)B);
  r->slots = malloc(sizeof(int) * (size_t)B), r->pos = malloc(sizeof(int) * (size_t)B);
  if (!r->s || !r->x || !r->lg || !r->slots || !r->pos) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0; i < B; i++) r->s[i].run = r, r->s[i].i = i;
  return 0;
}

/* the prompt: the same text for every image, tokenised once */
static int batch_prompt(af_gen_run *r) {
  af_generator *g = r->g;
  char *prompt = NULL, **segs = NULL;
  int nseg = 0, rc;
  if (!(rc = af_prompt_fill(g->tmpl, g->question, &prompt)) &&
      !(rc = af_prompt_split(prompt, &segs, &nseg)) && nseg != 2)
    rc = af_err(AF_ERR_FORMAT, "the prompt template has %d image places; describe gives one image", nseg - 1);
  if (!rc && !(rc = af_spm_encode_hf(g->tok, segs[0], strlen(segs[0]), 1, &r->pre, &r->npre)))
    rc = af_spm_encode_hf(g->tok, segs[1], strlen(segs[1]), 0, &r->post, &r->npost);
  free(prompt);
  af_prompt_free_segments(segs, nseg);
  return rc;
}

/* Each item's positions: as the original Chat.answer(max_length = 2000), a
 * prompt whose positions plus max_new_tokens exceed max_length keeps only
 * its last max_length - max_new_tokens positions; max_length is at most the
 * context.  Then one KV-cache slot per image, sized for its prompt and
 * answer.  rc: the prompt's failure, which every item takes. */
static void batch_layout(af_gen_run *r, int rc) {
  af_generator *g = r->g;
  int ctx = af_lm_shape_of(g->lm)->ctx, max_new = g->o.max_new_tokens;
  int max_len = g->o.max_length > 0 && g->o.max_length < ctx ? g->o.max_length : ctx;
  r->max_new = max_new, r->need = 1;
  for (int i = 0; i < r->B; i++) {
    af_gen_item *it = &r->items[i];
    if (rc) {
      seq_fail(r, i, rc);
      continue;
    }
    if (it->n_img < 0 || (it->n_img > 0 && !it->proj)) {
      seq_fail(r, i, af_err(AF_ERR_INVALID, "%s: no image embeddings (%d rows)", it->image, it->n_img));
      continue;
    }
    int n_full = (int)(r->npre + (size_t)it->n_img + r->npost), begin = n_full + max_new - max_len;
    if (max_new < 1 || begin >= n_full) {
      seq_fail(r, i,
               af_err(AF_ERR_RANGE,
                      "%s: max_new_tokens %d leaves no room for the prompt in the %d positions "
                      "(max_length, at most the model's context)",
                      it->image, max_new, max_len));
      continue;
    }
    if (begin > 0)
      fprintf(
          stderr,
          "warning: %s: the prompt (%d positions) and max_new_tokens %d exceed max_length %d; the model will "
          "not see the first %d positions (as the original Chat.answer)\n",
          it->image, n_full, max_new, max_len, begin);
    r->s[i].n = it->positions = n_full - (begin > 0 ? begin : 0);
    r->s[i].max_new = max_new;
    if (r->s[i].n + max_new > r->need) r->need = r->s[i].n + max_new;
  }
  int grc = rc ? 0 : af_lm_reserve(g->lm, g->q, r->B, r->need);
  for (int i = 0; i < r->B && grc; i++) seq_fail(r, i, grc);
}

/* item i's prompt rows: pre-image tokens, image embeddings, post-image
 * tokens (seq, n_full rows), of which its last q->n go to r->all */
static int item_rows(af_gen_run *r, int i, float *seq) {
  af_generator *g = r->g;
  const af_gen_item *it = &r->items[i];
  size_t H = (size_t)af_lm_shape_of(g->lm)->hidden;
  int n_full = (int)(r->npre + (size_t)it->n_img + r->npost), begin = n_full - r->s[i].n, rc;
  memcpy(seq + r->npre * H, it->proj, sizeof(float) * H * (size_t)it->n_img);
  if ((rc = af_lm_embed(g->lm, r->pre, (int)r->npre, seq)) ||
      (rc = af_lm_embed(g->lm, r->post, (int)r->npost, seq + (r->npre + (size_t)it->n_img) * H)))
    return rc;
  int np = r->np;
  r->prow[np] = np ? r->prow[np - 1] + (size_t)r->plen[np - 1] : 0;
  memcpy(r->all + r->prow[np] * H, seq + (size_t)begin * H, sizeof(float) * H * (size_t)r->s[i].n);
  r->plen[np] = r->s[i].n, r->pitem[r->np++] = i;
  return 0;
}

/* the prompts' rows of the items still in, one item after another, and
 * each item's decode buffers */
static void batch_embed(af_gen_run *r) {
  const af_lm_shape *s = af_lm_shape_of(r->g->lm);
  size_t H = (size_t)s->hidden, V = (size_t)s->vocab, all_rows = 0;
  for (int i = 0; i < r->B; i++)
    if (!r->items[i].rc) all_rows += (size_t)r->s[i].n;
  r->all = all_rows ? malloc(sizeof(float) * H * all_rows) : NULL;
  r->plen = malloc(sizeof(int) * (size_t)r->B), r->pitem = malloc(sizeof(int) * (size_t)r->B);
  r->prow = malloc(sizeof(size_t) * (size_t)r->B);
  float *seq = NULL;
  for (int i = 0; i < r->B; i++) {
    gseq *q = &r->s[i];
    const af_gen_item *it = &r->items[i];
    if (it->rc) continue;
    free(seq);
    seq = malloc(sizeof(float) * H * (r->npre + (size_t)it->n_img + r->npost));
    q->logits = malloc(sizeof(float) * V);
    q->ids = malloc(sizeof(int32_t) * (size_t)r->max_new);
    if (!seq || !q->logits || !q->ids || !r->all || !r->plen || !r->pitem || !r->prow) {
      seq_fail(r, i, af_err(AF_ERR_NOMEM, "out of memory"));
      continue;
    }
    int rc = item_rows(r, i, seq);
    if (rc) seq_fail(r, i, rc);
  }
  free(seq);
}

/* Prefill: the prompts of up to PREFILL_ROWS positions together, each into
 * its own KV-cache slot (the weights are read once per group); when a group
 * fails, its prompts one at a time, so that a failure stays with the item
 * that causes it. */
static void batch_prefill(af_gen_run *r) {
  af_generator *g = r->g;
  const af_lm_shape *s = af_lm_shape_of(g->lm);
  size_t H = (size_t)s->hidden, V = (size_t)s->vocab;
  for (int g0 = 0; g0 < r->np;) {
    int g1 = g0 + 1;
    size_t rows = (size_t)r->plen[g0];
    while (g1 < r->np && rows + (size_t)r->plen[g1] <= PREFILL_ROWS) rows += (size_t)r->plen[g1++];
    int rc = -1; /* one prompt: af_lm_prefill below */
    if (g1 - g0 > 1)
      rc = af_lm_prefill_batch(g->lm, g->q, g1 - g0, r->pitem + g0, r->plen + g0, r->all + r->prow[g0] * H,
                               r->lg);
    if (!rc)
      for (int k = g0; k < g1; k++)
        memcpy(r->s[r->pitem[k]].logits, r->lg + (size_t)(k - g0) * V, sizeof(float) * V);
    else
      for (int k = g0; k < g1; k++) {
        int i = r->pitem[k];
        af_error_clear();
        if ((rc = af_lm_prefill(g->lm, g->q, i, r->all + r->prow[k] * H, r->plen[k], 0, r->s[i].logits)))
          seq_fail(r, i, rc);
      }
    g0 = g1;
  }
}

/* item i's first token's logits are there: logits0, its sampler, the sink's
 * prefilled call; then it is active */
static int item_start(af_gen_run *r, int i) {
  af_generator *g = r->g;
  gseq *q = &r->s[i];
  af_gen_item *it = &r->items[i];
  int V = af_lm_shape_of(g->lm)->vocab, rc;
  if (it->want_logits0) {
    if (!(it->logits0 = malloc(sizeof(float) * (size_t)V))) return af_err(AF_ERR_NOMEM, "out of memory");
    memcpy(it->logits0, q->logits, sizeof(float) * (size_t)V);
    it->n_logits0 = V;
  }
  if ((rc = af_sampler_init(&q->sm, &g->o.sampling, V))) return rc;
  q->sm.lead = g->dummy_bos;
  if (r->sink.prefilled && (rc = r->sink.prefilled(r->sink.arg, r, i))) return rc;
  q->active = 1;
  return 0;
}

static void batch_start(af_gen_run *r) {
  for (int k = 0; k < r->np; k++) {
    int i = r->pitem[k], rc;
    if (!r->items[i].rc && (rc = item_start(r, i))) seq_fail(r, i, rc);
  }
  free(r->all), free(r->plen), free(r->prow), free(r->pitem);
  r->all = NULL, r->plen = r->pitem = NULL, r->prow = NULL;
}

/* sequence i took token id: stop checks, streaming; *done when it ends */
static int seq_step(af_gen_run *r, int i, int32_t id, int *done) {
  af_generator *g = r->g;
  gseq *q = &r->s[i];
  q->ids[q->produced++] = id;
  int rc = 0, last = af_gen_stopped(g, q->ids, q->produced) || q->produced == q->max_new;
  if (last) rc = af_gen_answer_ids(g, q->ids, q->produced, &q->kept, &q->nk, &q->final);
  if (!rc && r->sink.write && r->sink.stream_answers) /* the text before the first separator */
    rc = af_gen_stream(g, q->ids, q->produced, last, q->final, &q->printed, seq_put, q);
  *done = last;
  return rc;
}

/* the finished answer of sequence i: post-processing, the sink's done call */
static int seq_complete(af_gen_run *r, int i) {
  gseq *q = &r->s[i];
  af_gen_item *it = &r->items[i];
  char *answer = af_answer_postprocess(q->final, r->g->sep);
  if (!answer) return af_err(AF_ERR_NOMEM, "out of memory");
  it->answer = answer, it->ids = q->kept, it->n_ids = q->nk;
  q->kept = NULL;
  int rc = r->sink.done ? r->sink.done(r->sink.arg, r, i) : 0;
  if (rc) {
    free(it->answer), free(it->ids);
    it->answer = NULL, it->ids = NULL, it->n_ids = 0;
    return rc;
  }
  q->active = 0;
  seq_finished(r, i);
  return 0;
}

/* one decode step's sampling: every active sequence's next token; those
 * that go on get their row of r->x.  Returns how many go on. */
static int decode_sample(af_gen_run *r) {
  af_generator *g = r->g;
  size_t H = (size_t)af_lm_shape_of(g->lm)->hidden;
  int nb = 0;
  for (int i = 0; i < r->B; i++) {
    gseq *q = &r->s[i];
    if (!q->active) continue;
    if (r->sink.cancelled && r->sink.cancelled(r->sink.arg, i)) {
      seq_fail(r, i,
               af_err(AF_ERR_INTERRUPTED, "%s: cancelled after %d tokens", r->items[i].image, q->produced));
      continue;
    }
    int32_t id = af_sampler_next(&q->sm, q->logits, q->ids, q->produced);
    int done = 0, rc = seq_step(r, i, id, &done);
    if (!rc && done) rc = seq_complete(r, i);
    if (!rc && !done) rc = af_lm_embed(g->lm, &id, 1, r->x + (size_t)nb * H);
    if (rc) {
      seq_fail(r, i, rc);
      continue;
    }
    if (done) continue;
    r->slots[nb] = i, r->pos[nb++] = q->n + q->produced - 1;
  }
  return nb;
}

/* Decode: each step samples every unfinished sequence's next token, then
 * one batched pass gives all of their next logits. */
static void batch_decode(af_gen_run *r) {
  af_generator *g = r->g;
  size_t V = (size_t)af_lm_shape_of(g->lm)->vocab;
  for (int step = 0;; step++) {
    if (g->o.progress) {
      int active = 0;
      for (int i = 0; i < r->B; i++) active += r->s[i].active;
      g->o.progress(g->o.progress_arg, step, active, r->B - active, r->B);
    }
    int nb = decode_sample(r);
    if (!nb) break;
    int rc = af_lm_decode_batch(g->lm, g->q, nb, r->slots, r->pos, r->x, r->lg);
    for (int k = 0; k < nb; k++)
      if (rc)
        seq_fail(r, r->slots[k], rc);
      else
        memcpy(r->s[r->slots[k]].logits, r->lg + (size_t)k * V, sizeof(float) * V);
  }
}

static void run_free(af_gen_run *r) {
  for (int i = 0; r->s && i < r->B; i++) {
    gseq *q = &r->s[i];
    af_sampler_free(&q->sm);
    free(q->ids), free(q->logits), free(q->held), free(q->kept), free(q->final);
  }
  free(r->last_msg), free(r->s), free(r->x), free(r->lg), free(r->slots), free(r->pos), free(r->pre),
      free(r->post);
  free(r->all), free(r->plen), free(r->prow), free(r->pitem);
}

int af_generate_batch(af_generator *g, af_gen_item *items, int B, const af_gen_sink *sink) {
  for (int i = 0; i < B; i++) {
    af_gen_item *it = &items[i];
    it->rc = it->n_ids = it->positions = it->n_logits0 = 0;
    it->error = it->answer = NULL;
    it->ids = NULL;
    it->logits0 = NULL;
  }
  if (B < 1) return 0;
  af_error_clear(); /* each item's failure records its own message */
  af_gen_run r;
  int rc = run_init(&r, g, items, B, sink);
  if (!rc) {
    batch_layout(&r, batch_prompt(&r));
    batch_embed(&r);
    batch_prefill(&r);
    batch_start(&r);
    /* the decode steps need buffers for B rows, not for all the prompts'
     * rows: give those back while the KV cache grows (the next batch regrows
     * them) -- unless af_generator_reserve sized them once for every batch */
    if (!g->reserved) af_lm_trim(g->lm);
    batch_decode(&r);
    for (int i = 0; i < B && !rc; i++)
      if (items[i].rc)
        rc = af_err_replace(items[i].rc, "%s", items[i].error ? items[i].error : af_strerror(items[i].rc));
  }
  run_free(&r);
  return rc;
}

/* The positions of one item's prompt with n_img image rows and its answer,
 * as batch_layout counts them (the prompt cut to max_length). */
static int item_need(af_gen_run *r, int n_img, int *prompt, int *need) {
  af_generator *g = r->g;
  int ctx = af_lm_shape_of(g->lm)->ctx, max_new = g->o.max_new_tokens;
  int max_len = g->o.max_length > 0 && g->o.max_length < ctx ? g->o.max_length : ctx;
  int n_full = (int)(r->npre + (size_t)n_img + r->npost), begin = n_full + max_new - max_len;
  if (max_new < 1 || begin >= n_full)
    return af_err(AF_ERR_RANGE, "max_new_tokens %d leaves no room for the prompt in the %d positions",
                  max_new, max_len);
  *prompt = n_full - (begin > 0 ? begin : 0);
  *need = *prompt + max_new;
  return 0;
}

int af_generator_reserve(af_generator *g, int batch, int n_img) {
  if (batch < 1 || n_img < 0)
    return af_err(AF_ERR_INVALID, "generate: reserve for %d x %d rows", batch, n_img);
  af_gen_run r = {.g = g};
  int rc = batch_prompt(&r), n = 0, need = 0;
  if (!rc && item_need(&r, n_img, &n, &need)) { /* no room: every item fails with its own message */
    af_error_clear();
    free(r.pre), free(r.post);
    return 0;
  }
  int *slots = malloc(sizeof(int) * (size_t)batch), *lens = malloc(sizeof(int) * (size_t)batch);
  if (!rc && (!slots || !lens)) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_lm_reserve(g->lm, g->q, batch, need);
  if (!rc) {
    /* the largest group batch_prefill makes, a lone prompt (its fallback),
     * and a decode step of the whole batch: sized and built, not computed */
    int group = n >= PREFILL_ROWS ? 1 : PREFILL_ROWS / n < batch ? PREFILL_ROWS / n : batch;
    for (int i = 0; i < batch; i++) slots[i] = i, lens[i] = n;
    af_queue_reserve_begin(g->q);
    if (group > 1) rc = af_lm_prefill_batch(g->lm, g->q, group, slots, lens, NULL, NULL);
    if (!rc) rc = af_lm_prefill(g->lm, g->q, 0, NULL, n, 0, NULL);
    for (int i = 0; i < batch; i++) lens[i] = need - 1; /* the last decode position */
    if (!rc) rc = af_lm_decode_batch(g->lm, g->q, batch, slots, lens, NULL, NULL);
    af_queue_reserve_end(g->q);
  }
  if (!rc) g->reserved = 1;
  free(slots), free(lens), free(r.pre), free(r.post);
  return rc;
}
