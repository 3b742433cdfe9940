/* The generator (see generate.h): what generation needs of a model file,
 * loaded once (LLM, tokenizer, the original Chat's prompt template, stop
 * sequences, the generation config's eos and dummy bos), and the text-side
 * steps every answer takes: the stop check, the ids and text Chat.answer
 * keeps, and the streaming of a growing answer.  The batch engine is
 * generate_batch.c, the chat chat.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "net/generate_impl.h"

void af_gen_opts_default(af_gen_opts *o) {
  o->question = NULL;
  af_sampling_default(&o->sampling);
  o->max_new_tokens = 300;
  o->max_length = 2000;
  o->llm_model = NULL;
  o->weights = NULL;
  o->queue = NULL;
  o->progress = NULL;
  o->progress_arg = NULL;
}

void af_gen_item_clear(af_gen_item *it) {
  free(it->error), free(it->answer), free(it->ids), free(it->logits0);
  it->error = it->answer = NULL;
  it->ids = NULL;
  it->logits0 = NULL;
  it->n_ids = it->n_logits0 = 0;
}

void af_generator_release_host(af_generator *g) {
  if (g) af_weights_release_host(g->w);
}

af_weights *af_generator_weights(af_generator *g) {
  return g ? g->w : NULL;
}

void af_generator_free(af_generator *g) {
  if (!g) return;
  for (int i = 0; i < g->n_stops; i++) free(g->stops[i]);
  if (g->own_q) af_queue_free(g->q);
  af_spm_free(g->tok);
  af_lm_free(g->lm);
  if (g->own_w) af_weights_free(g->w);
  free(g);
}

/* an artflow.generate.* id: absent keeps *id; present, it must be an integer
 * id of the vocabulary or -1 (none) */
static int generate_id(const af_generator *g, const char *model, const char *key, int32_t *id) {
  int32_t v;
  int rc = af_gguf_get_i32(af_weights_meta(g->w, key), key, &v);
  if (rc == AF_ERR_NOT_FOUND) {
    af_error_clear();
    return 0;
  }
  if (rc) return rc;
  if (v < -1 || v >= af_lm_shape_of(g->lm)->vocab)
    return af_err(AF_ERR_FORMAT, "%s: %s is %d, not a token id of the %d-piece vocabulary (or -1)", model,
                  key, v, af_lm_shape_of(g->lm)->vocab);
  *id = v;
  return 0;
}

/* the prompt template, the question and the stop strings (each in both
 * tokenisations: after a space, the dummy prefix, and glued on) */
static int load_prompt(af_generator *g, const char *model) {
  const af_gguf *gg = af_weights_gguf(g->w);
  if (af_gguf_get_str(gg, "artflow.prompt.template", &g->tmpl))
    return af_err(AF_ERR_FORMAT, "%s: no prompt template (artflow.prompt.template)", model);
  if (af_gguf_get_str(gg, "artflow.prompt.default_question", &g->model_question)) g->model_question = NULL;
  af_error_clear();
  if (!g->o.question && !g->model_question)
    return af_err(AF_ERR_FORMAT, "%s: no default question; give --question", model);
  g->question = g->o.question ? g->o.question : g->model_question;
  const af_gguf_str *stops = NULL;
  uint64_t ns = 0;
  g->sep = "###";
  if (af_gguf_get_arr_str(gg, "artflow.prompt.stop", &stops, &ns) == 0 && ns > 0) g->sep = stops[0].s;
  int rc = 0;
  for (uint64_t i = 0; !rc && i < (ns ? ns : 1); i++)
    for (int dummy = 1; dummy >= 0 && !rc && g->n_stops < AF_GEN_MAX_STOPS; dummy--) {
      const char *s = ns ? stops[i].s : g->sep;
      size_t n = 0;
      rc = af_spm_encode(g->tok, s, strlen(s), 0, dummy, &g->stops[g->n_stops], &n);
      g->stop_lens[g->n_stops++] = (int)n;
    }
  return rc;
}

int af_generator_new(af_cl *cl, const char *model, const af_gen_opts *o, af_generator **out) {
  *out = NULL;
  af_generator *g = calloc(1, sizeof *g);
  if (!g) return af_err(AF_ERR_NOMEM, "out of memory");
  g->o = *o;
  g->w = o->weights, g->q = o->queue;
  g->own_w = !g->w, g->own_q = !g->q;
  int rc = g->own_w ? af_weights_open_pair(cl, model, o->llm_model, &g->w) : 0;
  const char *base = NULL; /* made by convert --no-llm-base: the LLM is in another file */
  if (!rc && !o->llm_model && af_gguf_get_str(af_weights_gguf(g->w), "artflow.llm_base", &base) == 0)
    rc = af_err(AF_ERR_NOT_FOUND,
                "%s: holds no base LLM (converted with --no-llm-base); give --llm VICUNA.gguf", model);
  if (!rc) rc = af_lm_new(cl, g->w, 0, &g->lm);
  if (!rc) rc = af_spm_from_gguf(af_weights_meta(g->w, "tokenizer.ggml.tokens"), &g->tok);
  if (!rc && g->own_q) rc = af_queue_new(cl, &g->q);
  if (!rc) { /* converted files carry the LLM folder's generation config; others: the tokenizer's ids */
    g->eos = af_spm_options(g->tok)->eos_id, g->dummy_bos = af_spm_options(g->tok)->bos_id;
    rc = generate_id(g, model, "artflow.generate.eos_token_id", &g->eos);
    if (!rc) rc = generate_id(g, model, "artflow.generate.bos_token_id", &g->dummy_bos);
  }
  if (!rc) rc = load_prompt(g, model);
  if (rc) {
    af_generator_free(g);
    return rc;
  }
  *out = g;
  return 0;
}

int af_generator_configure(af_generator *g, const af_gen_opts *o) {
  if (!o->question && !g->model_question) return af_err(AF_ERR_INVALID, "the model has no default question");
  g->o.question = o->question, g->o.sampling = o->sampling;
  g->o.max_new_tokens = o->max_new_tokens, g->o.max_length = o->max_length;
  g->question = o->question ? o->question : g->model_question;
  return 0;
}

const char *af_generator_question(const af_generator *g) {
  return g->question;
}

int af_generator_prompt_text(const af_generator *g, char **out) {
  return af_prompt_fill(g->tmpl, g->question, out);
}

int af_generator_hidden(const af_generator *g) {
  return af_lm_shape_of(g->lm)->hidden;
}

int af_gen_stopped(const af_generator *g, const int32_t *ids, int n) {
  return (g->eos >= 0 && ids[n - 1] == g->eos) ||
         af_stop_match(ids, n, (const int32_t *const *)g->stops, g->stop_lens, g->n_stops);
}

/* generate() from inputs_embeds returns a dummy `dummy_bos` followed by the
 * generated ids; Chat.answer drops a leading 0, then a leading 1
 * (docs/model.md §7.3): the dummy goes when it is 0 or 1, and after a dummy
 * 0 a first generated 1 goes too (Vicuna v0 configs say bos 0).  The text is
 * Hugging Face's slow-tokenizer decode of the kept ids. */
int af_gen_answer_ids(const af_generator *g, const int32_t *ids, int n, int32_t **out, int *nout,
                      char **text) {
  int32_t *r = malloc(sizeof(int32_t) * (size_t)(n + 1));
  *out = NULL, *nout = 0, *text = NULL;
  if (!r) return af_err(AF_ERR_NOMEM, "out of memory");
  int m = 0, k = 0;
  if (g->dummy_bos >= 0) r[m++] = g->dummy_bos;
  memcpy(r + m, ids, sizeof(int32_t) * (size_t)n);
  m += n;
  if (g->dummy_bos >= 0) { /* without a dummy the original cannot generate from embeddings: keep all */
    if (k < m && r[k] == 0) k++;
    if (k < m && r[k] == 1) k++;
  }
  memmove(r, r + k, sizeof(int32_t) * (size_t)(m - k));
  m -= k;
  int rc = af_spm_decode_hf(g->tok, r, (size_t)m, text);
  if (rc) {
    free(r);
    return rc;
  }
  *out = r, *nout = m;
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

int af_gen_stream(const af_generator *g, const int32_t *ids, int n, int last, const char *final,
                  size_t *printed, int (*put)(void *arg, const char *p, size_t len), void *arg) {
  char *text = NULL;
  int rc = af_spm_decode(g->tok, ids, (size_t)n, &text);
  if (rc) return rc;
  const char *p;
  size_t upto, len = stream_part(text, final, g->sep, *printed, last, &p, &upto);
  if (len) rc = put(arg, p, len);
  *printed = upto;
  free(text);
  return rc;
}
