/* Text generation for `artflow describe` and the llm stage (see describer.h): the original
 * Chat's prompt (template from the model file, split at <ImageHere>, each
 * segment tokenised separately, BOS on the first only), the image embeddings
 * spliced in, prefill, then decode steps with the KV cache until a stop
 * sequence ("###" in either tokenisation), the generation config's EOS id or
 * max_new_tokens; the answer is cut at the first "###" and stripped, and
 * streamed as it grows. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/weights.h"
#include "core/iofile.h"
#include "formats/gguf.h"
#include "formats/npy.h"
#include "formats/spm.h"
#include "net/describer.h"
#include "net/lm.h"

#define MAX_STOPS 8
/* positions prefilled together at most (the LLM's work buffers grow to it) */
#define PREFILL_ROWS 2048

struct af_describer {
  af_describe_opts o;
  af_weights *w;
  int w_borrowed; /* w is the caller's (o.weights) */
  af_lm *lm;
  af_spm *tok;
  af_queue *q;
  const char *tmpl, *question, *sep;
  int32_t *stops[MAX_STOPS];
  int stop_lens[MAX_STOPS], n_stops;
  /* generate()'s ids in the original: it stops on `eos` (-1: never) and its
   * output starts with a dummy `dummy_bos` that Chat.answer drops (see
   * answer_ids) */
  int32_t eos, dummy_bos;
};

void af_describe_opts_default(af_describe_opts *o) {
  o->question = NULL;
  af_sampling_default(&o->sampling);
  o->max_new_tokens = 300;
  o->max_length = 2000;
  o->dump_dir = NULL;
  o->json = 0;
  o->llm_model = NULL;
  o->progress = NULL;
  o->progress_arg = NULL;
  o->weights = NULL;
}

void af_describer_release_host(af_describer *d) {
  if (d) af_weights_release_host(d->w);
}

af_weights *af_describer_weights(af_describer *d) {
  return d ? d->w : NULL;
}

int af_describer_hidden(const af_describer *d) {
  return af_lm_shape_of(d->lm)->hidden;
}

void af_describer_free(af_describer *d) {
  if (!d) return;
  for (int i = 0; i < d->n_stops; i++) free(d->stops[i]);
  af_queue_free(d->q);
  af_spm_free(d->tok);
  af_lm_free(d->lm);
  if (!d->w_borrowed) af_weights_free(d->w);
  free(d);
}

/* an artflow.generate.* id: absent keeps *id; present, it must be an integer
 * id of the vocabulary or -1 (none) */
static int generate_id(const af_describer *d, const char *model, const char *key, int32_t *id) {
  int32_t v;
  int rc = af_gguf_get_i32(af_weights_meta(d->w, key), key, &v);
  if (rc == AF_ERR_NOT_FOUND) {
    af_error_clear();
    return 0;
  }
  if (rc) return rc;
  if (v < -1 || v >= af_lm_shape_of(d->lm)->vocab)
    return af_err(AF_ERR_FORMAT, "%s: %s is %d, not a token id of the %d-piece vocabulary (or -1)", model,
                  key, v, af_lm_shape_of(d->lm)->vocab);
  *id = v;
  return 0;
}

int af_describer_new(af_cl *cl, const char *model, const af_describe_opts *o, af_describer **out) {
  *out = NULL;
  af_describer *d = calloc(1, sizeof *d);
  if (!d) return af_err(AF_ERR_NOMEM, "out of memory");
  d->o = *o;
  int rc = o->weights ? 0 : af_weights_open_pair(cl, model, o->llm_model, &d->w);
  if (o->weights) d->w = o->weights, d->w_borrowed = 1;
  const char *base = NULL; /* made by convert --no-llm-base: the LLM is in another file */
  if (!rc && !o->llm_model && af_gguf_get_str(af_weights_gguf(d->w), "artflow.llm_base", &base) == 0)
    rc = af_err(AF_ERR_NOT_FOUND,
                "%s: holds no base LLM (converted with --no-llm-base); give --llm VICUNA.gguf", model);
  if (!rc) rc = af_lm_new(cl, d->w, 0, &d->lm);
  if (!rc) rc = af_spm_from_gguf(af_weights_meta(d->w, "tokenizer.ggml.tokens"), &d->tok);
  if (!rc) rc = af_queue_new(cl, &d->q);
  if (!rc) { /* converted files carry the LLM folder's generation config; others: the tokenizer's ids */
    d->eos = af_spm_options(d->tok)->eos_id, d->dummy_bos = af_spm_options(d->tok)->bos_id;
    rc = generate_id(d, model, "artflow.generate.eos_token_id", &d->eos);
    if (!rc) rc = generate_id(d, model, "artflow.generate.bos_token_id", &d->dummy_bos);
  }
  const af_gguf *g = d->w ? af_weights_gguf(d->w) : NULL;
  if (!rc && af_gguf_get_str(g, "artflow.prompt.template", &d->tmpl))
    rc = af_err(AF_ERR_FORMAT, "%s: no prompt template (artflow.prompt.template)", model);
  if (!rc && !o->question && af_gguf_get_str(g, "artflow.prompt.default_question", &d->question))
    rc = af_err(AF_ERR_FORMAT, "%s: no default question; give --question", model);
  if (!rc && o->question) d->question = o->question;
  const af_gguf_str *stops = NULL;
  uint64_t ns = 0;
  d->sep = "###";
  if (!rc && af_gguf_get_arr_str(g, "artflow.prompt.stop", &stops, &ns) == 0 && ns > 0) d->sep = stops[0].s;
  /* each stop string in both tokenisations: after a space (dummy prefix) and glued on */
  for (uint64_t i = 0; !rc && i < (ns ? ns : 1); i++)
    for (int dummy = 1; dummy >= 0 && !rc && d->n_stops < MAX_STOPS; dummy--) {
      const char *s = ns ? stops[i].s : d->sep;
      size_t n = 0;
      rc = af_spm_encode(d->tok, s, strlen(s), 0, dummy, &d->stops[d->n_stops], &n);
      d->stop_lens[d->n_stops++] = (int)n;
    }
  if (rc) {
    af_describer_free(d);
    return rc;
  }
  *out = d;
  return 0;
}

static int write_ids(const char *path, const int32_t *a, size_t na, const int32_t *b, size_t nb, int two) {
  FILE *f = fopen(path, "w");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot write", path);
  for (size_t i = 0; i < na; i++) fprintf(f, "%s%d", i ? " " : "", a[i]);
  fputc('\n', f);
  if (two) {
    for (size_t i = 0; i < nb; i++) fprintf(f, "%s%d", i ? " " : "", b[i]);
    fputc('\n', f);
  }
  return fclose(f) ? af_err(AF_ERR_IO, "%s: write failed", path) : 0;
}

/* One sequence of af_describer_run_batch: its KV-cache slot is its index. */
typedef struct {
  af_describe_item *it;
  int n, max_new, produced, active, finished;
  int32_t *ids;
  float *logits; /* vocab floats: the next token's */
  af_sampler sm;
  size_t printed;
  char *held; /* output held back until the items before are done */
  size_t nheld, capheld;
} dseq;

/* the text on `out` in item order: item `next` writes through, later ones hold */
typedef struct {
  FILE *out;
  dseq *s;
  int n, next;
  int last_rc; /* the latest failure, for items failing from the same cause */
  char *last_msg;
} dout;

static int emit(dout *o, int i, const char *p, size_t len) {
  if (!o->out || !len) return 0;
  if (i == o->next) {
    fwrite(p, 1, len, o->out);
    fflush(o->out);
    return 0;
  }
  dseq *q = &o->s[i];
  if (q->nheld + len > q->capheld) {
    size_t cap = (q->nheld + len) * 2;
    char *np = realloc(q->held, cap);
    if (!np) return af_err(AF_ERR_NOMEM, "out of memory");
    q->held = np, q->capheld = cap;
  }
  memcpy(q->held + q->nheld, p, len);
  q->nheld += len;
  return 0;
}

static void emit_done(dout *o, int i) {
  o->s[i].finished = 1;
  while (o->next < o->n && o->s[o->next].finished) {
    if (++o->next == o->n) break;
    dseq *q = &o->s[o->next]; /* now at the front: what it held goes out */
    if (q->nheld && o->out) {
      fwrite(q->held, 1, q->nheld, o->out);
      fflush(o->out);
    }
    free(q->held);
    q->held = NULL, q->nheld = q->capheld = 0;
  }
}

static void seq_fail(dout *o, int i, int rc) {
  dseq *q = &o->s[i];
  if (q->it->rc) return;
  q->it->rc = rc;
  /* af_err keeps the first message until cleared: take it, clear it for the
   * next item's own, and keep it for other items failing from the same cause */
  const char *m = af_error_message()[0]             ? af_error_message()
                  : o->last_rc == rc && o->last_msg ? o->last_msg
                                                    : af_strerror(rc);
  q->it->error = strdup(m);
  af_error_clear();
  free(o->last_msg);
  o->last_msg = q->it->error ? strdup(q->it->error) : NULL;
  o->last_rc = rc;
  q->active = 0;
  emit_done(o, i);
}

/* The ids that Chat.answer keeps of what generate() returns and the text it
 * makes of them.  generate() from inputs_embeds returns a dummy `dummy_bos`
 * followed by the generated ids; Chat.answer drops a leading 0, then a
 * leading 1 (docs/model.md §7.3): the dummy goes when it is 0 or 1, and after a
 * dummy 0 a first generated 1 goes too (Vicuna v0 configs say bos 0).  The
 * text is Hugging Face's slow-tokenizer decode of the kept ids.  *out and
 * *text are malloc'd. */
static int answer_ids(const af_describer *d, const int32_t *ids, int n, int32_t **out, int *nout,
                      char **text) {
  int32_t *r = malloc(sizeof(int32_t) * (size_t)(n + 1));
  *out = NULL, *nout = 0, *text = NULL;
  if (!r) return af_err(AF_ERR_NOMEM, "out of memory");
  int m = 0, k = 0;
  if (d->dummy_bos >= 0) r[m++] = d->dummy_bos;
  memcpy(r + m, ids, sizeof(int32_t) * (size_t)n);
  m += n;
  if (d->dummy_bos >= 0) { /* without a dummy the original cannot generate from embeddings: keep all */
    if (k < m && r[k] == 0) k++;
    if (k < m && r[k] == 1) k++;
  }
  memmove(r, r + k, sizeof(int32_t) * (size_t)(m - k));
  m -= k;
  int rc = af_spm_decode_hf(d->tok, r, (size_t)m, text);
  if (rc) {
    free(r);
    return rc;
  }
  *out = r, *nout = m;
  return 0;
}

/* the finished answer of sequence i: post-processing, JSON or newline, ids.txt */
static int seq_complete(af_describer *d, dout *o, int i) {
  dseq *q = &o->s[i];
  af_describe_item *it = q->it;
  char *text = NULL;
  int32_t *kept = NULL;
  int nk = 0;
  int rc = answer_ids(d, q->ids, q->produced, &kept, &nk, &text);
  if (rc) return rc;
  char *answer = af_answer_postprocess(text, d->sep);
  free(text);
  if (!answer) {
    free(kept);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  if (o->out && d->o.json) {
    cJSON *js = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(js, "ids");
    cJSON_AddStringToObject(js, "image", it->image);
    cJSON_AddStringToObject(js, "status", "ok");
    cJSON_AddStringToObject(js, "text", answer);
    for (int k = 0; k < nk; k++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(kept[k]));
    cJSON_AddNumberToObject(js, "prompt_positions", q->n);
    char *s = cJSON_PrintUnformatted(js);
    if (s) {
      rc = emit(o, i, s, strlen(s));
      if (!rc) rc = emit(o, i, "\n", 1);
    }
    free(s);
    cJSON_Delete(js);
  } else if (o->out) {
    rc = emit(o, i, "\n", 1);
  }
  if (!rc && it->dump_dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/ids.txt", it->dump_dir);
    rc = write_ids(p, kept, (size_t)nk, NULL, 0, 0);
  }
  if (rc) {
    free(answer), free(kept);
    return rc;
  }
  it->answer = answer;
  it->ids = kept;
  it->n_ids = nk;
  q->active = 0;
  emit_done(o, i);
  return 0;
}

/* What a streamed answer prints next: of `text` (sentencepiece's decode so
 * far, which only grows) the certain part not yet printed (before the first
 * separator, holding back one that may be forming; all of it on the last
 * token).  On the last token `final` (the answer's own decode, where special
 * tokens are written out and may add a space before the text of their run)
 * is printed instead when it continues what was printed, leading spaces
 * aside, so that the stream ends as the answer does.  Returns the bytes at
 * *p and sets *upto to the new count of printed bytes of text. */
static size_t stream_part(const char *text, const char *final, const char *sep, size_t printed, int last,
                          const char **p, size_t *upto) {
  if (last && final) {
    const char *t = text, *f = final;
    while (*t == ' ') t++;
    while (*f == ' ') f++;
    size_t lead = (size_t)(t - text), done = printed > lead ? printed - lead : 0;
    const char *fc = strstr(f, sep);
    size_t flen = fc ? (size_t)(fc - f) : strlen(f);
    if (done <= flen && !strncmp(t, f, done)) {
      *p = f + done, *upto = printed;
      return flen - done;
    }
  }
  const char *cut = strstr(text, sep);
  size_t len = cut ? (size_t)(cut - text) : strlen(text), hold = strlen(sep) - 1;
  size_t u = last || cut ? len : (len > hold ? len - hold : 0);
  *p = text + printed, *upto = u > printed ? u : printed;
  return u > printed ? u - printed : 0;
}

/* sequence i took token id: stop checks, streaming; 1 when it is done */
static int seq_step(af_describer *d, dout *o, int i, int32_t id, int *done) {
  dseq *q = &o->s[i];
  q->ids[q->produced++] = id;
  int stop = (d->eos >= 0 && id == d->eos) ||
             af_stop_match(q->ids, q->produced, (const int32_t *const *)d->stops, d->stop_lens, d->n_stops);
  int rc = 0, last = stop || q->produced == q->max_new;
  if (o->out && !d->o.json) { /* stream what is certain: the text before the first separator */
    char *text = NULL, *final = NULL;
    int32_t *kept = NULL;
    int nk = 0;
    if ((rc = af_spm_decode(d->tok, q->ids, (size_t)q->produced, &text))) return rc;
    if (last && (rc = answer_ids(d, q->ids, q->produced, &kept, &nk, &final))) {
      free(text);
      return rc;
    }
    const char *p;
    size_t upto, n = stream_part(text, final, d->sep, q->printed, last, &p, &upto);
    if (n) rc = emit(o, i, p, n);
    q->printed = upto;
    free(text), free(final), free(kept);
  }
  *done = last;
  return rc;
}

int af_describer_run_batch(af_describer *d, af_describe_item *items, int B, FILE *out) {
  for (int i = 0; i < B; i++) {
    items[i].rc = 0;
    items[i].error = items[i].answer = NULL;
    items[i].ids = NULL;
    items[i].n_ids = 0;
  }
  if (B < 1) return 0;
  af_error_clear(); /* each item's failure records its own message */
  const af_lm_shape *s = af_lm_shape_of(d->lm);
  size_t H = (size_t)s->hidden, V = (size_t)s->vocab;
  char *prompt = NULL, **segs = NULL;
  int nseg = 0, rc = 0;
  int32_t *pre = NULL, *post = NULL;
  size_t npre = 0, npost = 0;
  dseq *sq = calloc((size_t)B, sizeof *sq);
  float *x = malloc(sizeof(float) * H * (size_t)B), *lg = malloc(sizeof(float) * V * (size_t)B), *seq = NULL;
  int *slots = malloc(sizeof(int) * (size_t)B), *pos = malloc(sizeof(int) * (size_t)B);
  dout o = {out, sq, B, 0, 0, NULL};
  if (!sq || !x || !lg || !slots || !pos) {
    free(sq), free(x), free(lg), free(slots), free(pos);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < B; i++) sq[i].it = &items[i];
  /* the prompt: the same text for every image, tokenised once */
  if (!(rc = af_prompt_fill(d->tmpl, d->question, &prompt)) &&
      !(rc = af_prompt_split(prompt, &segs, &nseg)) && nseg != 2)
    rc = af_err(AF_ERR_FORMAT, "the prompt template has %d image places; describe gives one image", nseg - 1);
  if (!rc && !(rc = af_spm_encode_hf(d->tok, segs[0], strlen(segs[0]), 1, &pre, &npre)))
    rc = af_spm_encode_hf(d->tok, segs[1], strlen(segs[1]), 0, &post, &npost);
  /* positions: as the original Chat.answer(max_length = 2000), a prompt whose
   * positions plus max_new_tokens exceed max_length keeps only its last
   * max_length - max_new_tokens positions; max_length is at most the context */
  int max_new = d->o.max_new_tokens, need = 1;
  int max_len = d->o.max_length > 0 && d->o.max_length < s->ctx ? d->o.max_length : s->ctx;
  for (int i = 0; i < B; i++) {
    af_describe_item *it = &items[i];
    if (rc) {
      seq_fail(&o, i, rc);
      continue;
    }
    if (it->n_img < 0 || (it->n_img > 0 && !it->proj)) {
      seq_fail(&o, i, af_err(AF_ERR_INVALID, "%s: no image embeddings (%d rows)", it->image, it->n_img));
      continue;
    }
    int n_full = (int)(npre + (size_t)it->n_img + npost), begin = n_full + max_new - max_len;
    if (max_new < 1 || begin >= n_full) {
      seq_fail(&o, i,
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
    sq[i].n = n_full - (begin > 0 ? begin : 0);
    sq[i].max_new = max_new;
    if (sq[i].n + max_new > need) need = sq[i].n + max_new;
  }
  /* one KV-cache slot per image, sized for its prompt and answer */
  int grc = rc ? 0 : af_lm_reserve(d->lm, d->q, B, need);
  for (int i = 0; i < B && grc; i++) seq_fail(&o, i, grc);
  /* the prompts' rows: pre-image tokens, image embeddings, post-image
   * tokens, each item's last q->n positions, one item after another */
  size_t all_rows = 0;
  for (int i = 0; i < B; i++)
    if (!items[i].rc) all_rows += (size_t)sq[i].n;
  float *all = all_rows ? malloc(sizeof(float) * H * all_rows) : NULL;
  int *plen = malloc(sizeof(int) * (size_t)B), *pitem = malloc(sizeof(int) * (size_t)B), np = 0;
  size_t *prow = malloc(sizeof(size_t) * (size_t)B);
  for (int i = 0, r = 0; i < B; i++) {
    dseq *q = &sq[i];
    af_describe_item *it = q->it;
    if (it->rc) continue;
    int n_full = (int)(npre + (size_t)it->n_img + npost), begin = n_full - q->n;
    free(seq);
    seq = malloc(sizeof(float) * H * (size_t)n_full);
    q->logits = malloc(sizeof(float) * V);
    q->ids = malloc(sizeof(int32_t) * (size_t)max_new);
    if (!seq || !q->logits || !q->ids || !all || !plen || !pitem || !prow) {
      seq_fail(&o, i, af_err(AF_ERR_NOMEM, "out of memory"));
      continue;
    }
    memcpy(seq + npre * H, it->proj, sizeof(float) * H * (size_t)it->n_img);
    if ((r = af_lm_embed(d->lm, pre, (int)npre, seq)) ||
        (r = af_lm_embed(d->lm, post, (int)npost, seq + (npre + (size_t)it->n_img) * H))) {
      seq_fail(&o, i, r);
      continue;
    }
    prow[np] = np ? prow[np - 1] + (size_t)plen[np - 1] : 0;
    memcpy(all + prow[np] * H, seq + (size_t)begin * H, sizeof(float) * H * (size_t)q->n);
    plen[np] = q->n, pitem[np++] = i;
  }
  /* prefill: the prompts of up to PREFILL_ROWS positions together, each
   * into its own KV-cache slot (the weights are read once per group); when
   * a group fails, its prompts one at a time, so that a failure stays with
   * the item that causes it */
  for (int g0 = 0; g0 < np;) {
    int g1 = g0 + 1;
    size_t rows = (size_t)plen[g0];
    while (g1 < np && rows + (size_t)plen[g1] <= PREFILL_ROWS) rows += (size_t)plen[g1++];
    int r = -1; /* one prompt: af_lm_prefill below */
    if (g1 - g0 > 1)
      r = af_lm_prefill_batch(d->lm, d->q, g1 - g0, pitem + g0, plen + g0, all + prow[g0] * H, lg);
    if (!r)
      for (int k = g0; k < g1; k++) memcpy(sq[pitem[k]].logits, lg + (size_t)(k - g0) * V, sizeof(float) * V);
    else
      for (int k = g0; k < g1; k++) {
        af_error_clear();
        if ((r = af_lm_prefill(d->lm, d->q, pitem[k], all + prow[k] * H, plen[k], 0, sq[pitem[k]].logits)))
          seq_fail(&o, pitem[k], r);
      }
    g0 = g1;
  }
  free(all), free(plen), free(prow);
  /* the first token's logits are there: dumps, sampler, streamed heading */
  for (int k = 0; k < np; k++) {
    int i = pitem[k], r;
    dseq *q = &sq[i];
    af_describe_item *it = q->it;
    if (it->rc) continue;
    if (it->dump_dir) {
      char p[4200];
      int64_t shape[1] = {s->vocab};
      snprintf(p, sizeof p, "%s/logits0.npy", it->dump_dir);
      if ((r = af_npy_write(p, AF_DTYPE_F32, 1, shape, q->logits, 0))) goto bad;
      snprintf(p, sizeof p, "%s/prompt_ids.txt", it->dump_dir);
      if ((r = write_ids(p, pre, npre, post, npost, 1))) goto bad;
    }
    if ((r = af_sampler_init(&q->sm, &d->o.sampling, s->vocab))) goto bad;
    q->sm.lead = d->dummy_bos;
    if (out && !d->o.json) {
      char head[4200];
      snprintf(head, sizeof head, "%s: ", it->image);
      if ((r = emit(&o, i, head, strlen(head)))) goto bad;
    }
    q->active = 1;
    continue;
  bad:
    seq_fail(&o, i, r);
  }
  free(pitem);
  /* the decode steps need buffers for B rows, not for all the prompts' rows:
   * give those back while the KV cache grows (the next batch regrows them) */
  af_lm_trim(d->lm);
  /* decode: each step samples every unfinished sequence's next token, then
   * one batched pass gives all of their next logits */
  for (int step = 0;; step++) {
    if (d->o.progress) {
      int active = 0;
      for (int i = 0; i < B; i++) active += sq[i].active;
      d->o.progress(d->o.progress_arg, step, active, B - active, B);
    }
    int nb = 0;
    for (int i = 0; i < B; i++) {
      dseq *q = &sq[i];
      if (!q->active) continue;
      int32_t id = af_sampler_next(&q->sm, q->logits, q->ids, q->produced);
      int done = 0, r = seq_step(d, &o, i, id, &done);
      if (!r && done) r = seq_complete(d, &o, i);
      if (!r && !done) r = af_lm_embed(d->lm, &id, 1, x + (size_t)nb * H);
      if (r) {
        seq_fail(&o, i, r);
        continue;
      }
      if (done) continue;
      slots[nb] = i, pos[nb++] = q->n + q->produced - 1;
    }
    if (!nb) break;
    int r = af_lm_decode_batch(d->lm, d->q, nb, slots, pos, x, lg);
    for (int k = 0; k < nb; k++)
      if (r)
        seq_fail(&o, slots[k], r);
      else
        memcpy(sq[slots[k]].logits, lg + (size_t)k * V, sizeof(float) * V);
  }
  rc = 0;
  for (int i = 0; i < B && !rc; i++)
    if (items[i].rc)
      rc = af_err_replace(items[i].rc, "%s", items[i].error ? items[i].error : af_strerror(items[i].rc));
  for (int i = 0; i < B; i++) {
    af_sampler_free(&sq[i].sm);
    free(sq[i].ids), free(sq[i].logits), free(sq[i].held);
  }
  free(o.last_msg);
  free(sq), free(x), free(lg), free(slots), free(pos), free(seq), free(pre), free(post), free(prompt);
  af_prompt_free_segments(segs, nseg);
  return rc;
}

int af_describer_run(af_describer *d, const char *image, const float *proj, int n_img, const char *dump_dir,
                     FILE *out, char **answer_out, int32_t **ids_out, int *n_ids) {
  af_describe_item it = {.image = image, .proj = proj, .n_img = n_img, .dump_dir = dump_dir};
  int rc = af_describer_run_batch(d, &it, 1, out);
  if (answer_out) *answer_out = it.answer, it.answer = NULL;
  if (ids_out) *ids_out = it.ids, it.ids = NULL;
  if (n_ids) *n_ids = it.n_ids;
  free(it.answer), free(it.ids), free(it.error);
  return rc;
}

/* ---- chat (describer.h): the original Conversation / Chat, re-embedding the
 * whole history every turn (no KV reuse across turns, as the original) ---- */

typedef struct chat_msg {
  int role;   /* 0: the user (Human), 1: the model (Assistant) */
  char *text; /* NULL: not answered yet (rendered as "ROLE:") */
} chat_msg;

struct af_chat {
  af_describer *d;
  char *system, *roles[2], *img_msg; /* from the prompt template */
  float *proj;                       /* (n_images * n_img, hidden) */
  int n_images, n_img;
  chat_msg *msg;
  int n_msg, cap_msg;
  af_sampler sm;
};

static char *chat_strndup(const char *s, size_t n) {
  char *r = malloc(n + 1);
  if (r) memcpy(r, s, n), r[n] = 0;
  return r;
}

/* The template is what get_prompt() gives for one image and one question:
 *   SYSTEM sep ROLE0 ": " IMAGE_MESSAGE " {question}" sep ROLE1 ":" */
static int chat_parse_template(af_chat *c) {
  const char *t = c->d->tmpl, *sep = c->d->sep, *qk = " {question}";
  size_t ls = strlen(sep);
  const char *a = ls ? strstr(t, sep) : NULL;
  const char *colon = a ? strstr(a + ls, ": ") : NULL;
  const char *q = colon ? strstr(colon, qk) : NULL;
  const char *b = q ? q + strlen(qk) : NULL;
  size_t lb = b ? strlen(b) : 0;
  if (!b || strncmp(b, sep, ls) != 0 || lb < ls + 2 || b[lb - 1] != ':' || strstr(b + ls, sep) ||
      memchr(a + ls, sep[0], (size_t)(colon - a - (ptrdiff_t)ls)) || !strstr(colon, AF_IMAGE_PLACEHOLDER) ||
      strstr(colon, AF_IMAGE_PLACEHOLDER) > q)
    return af_err(
        AF_ERR_UNSUPPORTED,
        "%s: the prompt template is not 'SYSTEM%sROLE: <image message> {question}%sROLE:', which chat needs",
        af_gguf_path(af_weights_gguf(c->d->w)), sep, sep);
  c->system = chat_strndup(t, (size_t)(a - t));
  c->roles[0] = chat_strndup(a + ls, (size_t)(colon - a) - ls);
  c->img_msg = chat_strndup(colon + 2, (size_t)(q - colon) - 2);
  c->roles[1] = chat_strndup(b + ls, lb - ls - 1);
  if (!c->system || !c->roles[0] || !c->img_msg || !c->roles[1]) return af_err(AF_ERR_NOMEM, "out of memory");
  return 0;
}

static int chat_append(af_chat *c, int role, char *text /* takes ownership */) {
  if (c->n_msg == c->cap_msg) {
    int cap = c->cap_msg ? 2 * c->cap_msg : 16;
    chat_msg *m = realloc(c->msg, (size_t)cap * sizeof *m);
    if (!m) {
      free(text);
      return af_err(AF_ERR_NOMEM, "out of memory");
    }
    c->msg = m, c->cap_msg = cap;
  }
  c->msg[c->n_msg++] = (chat_msg){role, text};
  return 0;
}

static void chat_clear(af_chat *c) {
  for (int i = 0; i < c->n_msg; i++) free(c->msg[i].text);
  c->n_msg = 0;
}

/* Chat.upload_img for every image */
int af_chat_reset(af_chat *c) {
  chat_clear(c);
  int rc = 0;
  for (int i = 0; i < c->n_images && !rc; i++) {
    char *m = strdup(c->img_msg);
    rc = m ? chat_append(c, 0, m) : af_err(AF_ERR_NOMEM, "out of memory");
  }
  return rc;
}

void af_chat_free(af_chat *c) {
  if (!c) return;
  chat_clear(c);
  af_sampler_free(&c->sm);
  free(c->msg), free(c->proj), free(c->system), free(c->roles[0]), free(c->roles[1]), free(c->img_msg);
  free(c);
}

int af_chat_new(af_describer *d, const float *const *proj, int n_images, int n_img, af_chat **out) {
  *out = NULL;
  size_t H = (size_t)af_lm_shape_of(d->lm)->hidden, per = (size_t)n_img * H;
  af_chat *c = calloc(1, sizeof *c);
  if (!c) return af_err(AF_ERR_NOMEM, "out of memory");
  c->d = d;
  c->n_images = n_images;
  c->n_img = n_img;
  int rc = chat_parse_template(c);
  if (!rc && !(c->proj = malloc(sizeof(float) * per * (size_t)(n_images > 0 ? n_images : 1))))
    rc = af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0; !rc && i < n_images; i++) memcpy(c->proj + (size_t)i * per, proj[i], sizeof(float) * per);
  if (!rc) rc = af_sampler_init(&c->sm, &d->o.sampling, af_lm_shape_of(d->lm)->vocab);
  if (!rc) c->sm.lead = d->dummy_bos;
  if (!rc) rc = af_chat_reset(c);
  if (rc) {
    af_chat_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

/* Conversation.get_prompt() (SeparatorStyle.SINGLE) */
static char *chat_prompt(const af_chat *c) {
  const char *sep = c->d->sep;
  size_t n = strlen(c->system) + strlen(sep) + 1;
  for (int i = 0; i < c->n_msg; i++)
    n += strlen(c->roles[c->msg[i].role]) + 2 + (c->msg[i].text ? strlen(c->msg[i].text) : 0) + strlen(sep);
  char *p = malloc(n), *e = p;
  if (!p) return NULL;
  e += sprintf(e, "%s%s", c->system, sep);
  for (int i = 0; i < c->n_msg; i++) {
    const chat_msg *m = &c->msg[i];
    if (m->text && *m->text)
      e += sprintf(e, "%s: %s%s", c->roles[m->role], m->text, sep);
    else
      e += sprintf(e, "%s:", c->roles[m->role]);
  }
  return p;
}

/* Chat.ask: the question joins a last user message that ends with an image */
static int chat_ask(af_chat *c, const char *question, char **undo) {
  *undo = NULL;
  chat_msg *last = c->n_msg ? &c->msg[c->n_msg - 1] : NULL;
  size_t lt = last && last->text ? strlen(last->text) : 0;
  if (last && last->role == 0 && lt >= 6 && !strcmp(last->text + lt - 6, "</Img>")) {
    char *j = malloc(lt + strlen(question) + 2);
    if (!j) return af_err(AF_ERR_NOMEM, "out of memory");
    sprintf(j, "%s %s", last->text, question);
    *undo = last->text;
    last->text = j;
    return 0;
  }
  char *q = strdup(question);
  return q ? chat_append(c, 0, q) : af_err(AF_ERR_NOMEM, "out of memory");
}

static int chat_dump(const char *dir, const char *name, const char *text) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot write", p);
  fputs(text, f);
  return fclose(f) ? af_err(AF_ERR_IO, "%s: write failed", p) : 0;
}

static int chat_dump_ids(const char *dir, const char *name, int32_t *const *ids, const size_t *n, int lines) {
  size_t total = 1;
  for (int l = 0; l < lines; l++) total += n[l] * 12 + 1;
  char *s = malloc(total), *e = s;
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int l = 0; l < lines; l++) {
    for (size_t i = 0; i < n[l]; i++) e += sprintf(e, "%s%d", i ? " " : "", ids[l][i]);
    *e++ = '\n';
  }
  *e = 0;
  int rc = chat_dump(dir, name, s);
  free(s);
  return rc;
}

int af_chat_turn(af_chat *c, const char *question, FILE *out, const char *dump_dir, char **answer_out,
                 int32_t **ids_out, int *n_ids_out, int *positions) {
  if (answer_out) *answer_out = NULL;
  if (ids_out) *ids_out = NULL;
  if (n_ids_out) *n_ids_out = 0;
  if (positions) *positions = 0;
  af_describer *d = c->d;
  const af_lm_shape *s = af_lm_shape_of(d->lm);
  size_t H = (size_t)s->hidden;
  int n_msg0 = c->n_msg, nseg = 0, n = 0, produced = 0, rc;
  char *undo = NULL, *prompt = NULL, **segs = NULL, *text = NULL, *answer = NULL;
  int32_t **tok = NULL, *ids = NULL, *kept = NULL;
  size_t *ntok = NULL, printed = 0;
  char *final = NULL; /* the kept ids' text (answer_ids) */
  int nk = 0;
  float *seq = NULL, *logits = NULL;
  if ((rc = chat_ask(c, question, &undo)) || (rc = chat_append(c, 1, NULL))) goto out;
  if (!(prompt = chat_prompt(c))) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((rc = af_prompt_split(prompt, &segs, &nseg))) goto out;
  if (nseg != c->n_images + 1) {
    rc = af_err(AF_ERR_INVALID,
                "the conversation has %d image places for %d images (is there an %s in the question?)",
                nseg - 1, c->n_images, AF_IMAGE_PLACEHOLDER);
    goto out;
  }
  /* get_context_emb: segments tokenised separately, BOS on the first only */
  tok = calloc((size_t)nseg, sizeof *tok);
  ntok = calloc((size_t)nseg, sizeof *ntok);
  if (!tok || !ntok) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (int i = 0; i < nseg; i++) {
    if ((rc = af_spm_encode_hf(d->tok, segs[i], strlen(segs[i]), i == 0, &tok[i], &ntok[i]))) goto out;
    n += (int)ntok[i] + (i + 1 < nseg ? c->n_img : 0);
  }
  if (positions) *positions = n;
  int max_new = d->o.max_new_tokens, max_len = d->o.max_length > 0 ? d->o.max_length : 2000;
  int begin = n + max_new - max_len > 0 ? n + max_new - max_len : 0, keep = n - begin;
  if (begin > 0)
    fprintf(stderr,
            "artflow chat: warning: the conversation (%d positions and %d new tokens) exceeds the max length "
            "of %d; the oldest %d positions are left out\n",
            n, max_new, max_len, begin);
  if (keep + max_new > s->ctx) max_new = s->ctx - keep; /* the model's context holds prompt + answer */
  if (keep < 1 || max_new < 1) {
    rc = af_err(AF_ERR_RANGE,
                "chat: %d prompt positions and %d new tokens do not fit max length %d / context %d", n,
                d->o.max_new_tokens, max_len, s->ctx);
    goto out;
  }
  seq = malloc(sizeof(float) * H * (size_t)(n + 1));
  logits = malloc(sizeof(float) * (size_t)s->vocab);
  ids = malloc(sizeof(int32_t) * (size_t)max_new);
  if (!seq || !logits || !ids) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  size_t at = 0;
  for (int i = 0; i < nseg; i++) {
    if ((rc = af_lm_embed(d->lm, tok[i], (int)ntok[i], seq + at * H))) goto out;
    at += ntok[i];
    if (i + 1 < nseg) {
      memcpy(seq + at * H, c->proj + (size_t)i * (size_t)c->n_img * H, sizeof(float) * H * (size_t)c->n_img);
      at += (size_t)c->n_img;
    }
  }
  if (dump_dir) {
    char info[96];
    snprintf(info, sizeof info, "positions %d begin %d\n", n, begin);
    if ((rc = af_mkdirs(dump_dir)) || (rc = chat_dump_ids(dump_dir, "prompt_ids.txt", tok, ntok, nseg)) ||
        (rc = chat_dump(dump_dir, "info.txt", info)))
      goto out;
  }
  if ((rc = af_lm_forward(d->lm, d->q, seq + (size_t)begin * H, keep, 0, logits))) goto out;
  for (int pos = keep; produced < max_new; pos++) {
    int32_t id = af_sampler_next(&c->sm, logits, ids, produced);
    ids[produced++] = id;
    int stop = (d->eos >= 0 && id == d->eos) ||
               af_stop_match(ids, produced, (const int32_t *const *)d->stops, d->stop_lens, d->n_stops);
    int last = stop || produced == max_new;
    if (last && (rc = answer_ids(d, ids, produced, &kept, &nk, &final))) goto out;
    if (out) { /* stream the text before the first separator, holding back a forming one */
      free(text);
      text = NULL;
      if ((rc = af_spm_decode(d->tok, ids, (size_t)produced, &text))) goto out;
      const char *p;
      size_t upto, nw = stream_part(text, final, d->sep, printed, last, &p, &upto);
      if (nw) fwrite(p, 1, nw, out), fflush(out);
      printed = upto;
    }
    if (last) break;
    if ((rc = af_lm_embed(d->lm, &id, 1, seq)) || (rc = af_lm_forward(d->lm, d->q, seq, 1, pos, logits)))
      goto out;
  }
  if (!final && (rc = answer_ids(d, ids, produced, &kept, &nk, &final))) goto out; /* max_new 0 */
  if (!(answer = af_answer_postprocess(final, d->sep)) || !(c->msg[c->n_msg - 1].text = strdup(answer))) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (dump_dir) {
    size_t np = (size_t)nk;
    char *line = malloc(strlen(answer) + 2);
    if (!line) {
      rc = af_err(AF_ERR_NOMEM, "out of memory");
      goto out;
    }
    sprintf(line, "%s\n", answer);
    rc = chat_dump_ids(dump_dir, "ids.txt", &kept, &np, 1);
    if (!rc) rc = chat_dump(dump_dir, "answer.txt", line);
    free(line);
    if (rc) goto out;
  }
  if (answer_out) *answer_out = answer, answer = NULL;
  if (ids_out) *ids_out = kept, kept = NULL;
  if (n_ids_out) *n_ids_out = nk;
out:
  if (rc) { /* the conversation stays as it was before this turn */
    while (c->n_msg > n_msg0) free(c->msg[--c->n_msg].text);
    if (undo) free(c->msg[c->n_msg - 1].text), c->msg[c->n_msg - 1].text = undo, undo = NULL;
  }
  free(undo);
  for (int i = 0; tok && i < nseg; i++) free(tok[i]);
  free(tok), free(ntok), free(answer), free(text), free(ids), free(kept), free(final), free(seq),
      free(logits), free(prompt);
  af_prompt_free_segments(segs, nseg);
  return rc;
}
