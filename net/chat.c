/* The chat (see chat.h): the original Conversation / Chat over the
 * generator's model, re-embedding the whole history every turn (no KV reuse
 * across turns, as the original).  One sampler lives as long as the chat, so
 * that a seeded conversation goes on drawing from where the last turn left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/chat.h"
#include "net/generate_impl.h"

typedef struct chat_msg {
  int role;   /* 0: the user (Human), 1: the model (Assistant) */
  char *text; /* NULL: not answered yet (rendered as "ROLE:") */
} chat_msg;

struct af_chat {
  af_generator *g;
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
  const char *t = c->g->tmpl, *sep = c->g->sep, *qk = " {question}";
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
        af_gguf_path(af_weights_gguf(c->g->w)), sep, sep);
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

int af_chat_new(af_generator *g, const float *const *proj, int n_images, int n_img, af_chat **out) {
  *out = NULL;
  size_t H = (size_t)af_lm_shape_of(g->lm)->hidden, per = (size_t)n_img * H;
  af_chat *c = calloc(1, sizeof *c);
  if (!c) return af_err(AF_ERR_NOMEM, "out of memory");
  c->g = g;
  c->n_images = n_images;
  c->n_img = n_img;
  int rc = chat_parse_template(c);
  if (!rc && !(c->proj = malloc(sizeof(float) * per * (size_t)(n_images > 0 ? n_images : 1))))
    rc = af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0; !rc && i < n_images; i++) memcpy(c->proj + (size_t)i * per, proj[i], sizeof(float) * per);
  if (!rc) rc = af_sampler_init(&c->sm, &g->o.sampling, af_lm_shape_of(g->lm)->vocab);
  if (!rc) c->sm.lead = g->dummy_bos;
  if (!rc) rc = af_chat_reset(c);
  if (rc) {
    af_chat_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void af_chat_result_free(af_chat_result *r) {
  for (int i = 0; r->seg_ids && i < r->n_seg; i++) free(r->seg_ids[i]);
  free(r->seg_ids), free(r->seg_n), free(r->answer), free(r->ids);
  memset(r, 0, sizeof *r);
}

/* Conversation.get_prompt() (SeparatorStyle.SINGLE) */
static char *chat_prompt(const af_chat *c) {
  const char *sep = c->g->sep;
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

/* get_context_emb's ids: the history rendered, split at <ImageHere> and each
 * segment tokenised separately (BOS on the first only) into r */
static int chat_tokens(const af_chat *c, af_chat_result *r) {
  char *prompt = chat_prompt(c), **segs = NULL;
  int nseg = 0, rc = prompt ? af_prompt_split(prompt, &segs, &nseg) : af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc && nseg != c->n_images + 1)
    rc = af_err(AF_ERR_INVALID,
                "the conversation has %d image places for %d images (is there an %s in the question?)",
                nseg - 1, c->n_images, AF_IMAGE_PLACEHOLDER);
  if (!rc) {
    r->seg_ids = calloc((size_t)nseg, sizeof *r->seg_ids);
    r->seg_n = calloc((size_t)nseg, sizeof *r->seg_n);
    if (!r->seg_ids || !r->seg_n)
      rc = af_err(AF_ERR_NOMEM, "out of memory");
    else
      r->n_seg = nseg;
  }
  for (int i = 0; !rc && i < nseg; i++) {
    rc = af_spm_encode_hf(c->g->tok, segs[i], strlen(segs[i]), i == 0, &r->seg_ids[i], &r->seg_n[i]);
    if (!rc) r->positions += (int)r->seg_n[i] + (i + 1 < nseg ? c->n_img : 0);
  }
  free(prompt);
  af_prompt_free_segments(segs, nseg);
  return rc;
}

/* The positions the model sees: the last max_length - max_new_tokens of the
 * prompt's n (with a warning when that leaves some out), and the new tokens
 * the model's context then holds */
static int chat_window(const af_chat *c, int n, int *begin, int *max_new) {
  const af_gen_opts *o = &c->g->o;
  int ctx = af_lm_shape_of(c->g->lm)->ctx, max_len = o->max_length > 0 ? o->max_length : 2000;
  *max_new = o->max_new_tokens;
  *begin = n + *max_new - max_len > 0 ? n + *max_new - max_len : 0;
  int keep = n - *begin;
  if (*begin > 0)
    fprintf(stderr,
            "artflow chat: warning: the conversation (%d positions and %d new tokens) exceeds the max length "
            "of %d; the oldest %d positions are left out\n",
            n, *max_new, max_len, *begin);
  if (keep + *max_new > ctx) *max_new = ctx - keep; /* the model's context holds prompt + answer */
  if (keep < 1 || *max_new < 1)
    return af_err(AF_ERR_RANGE,
                  "chat: %d prompt positions and %d new tokens do not fit max length %d / context %d", n,
                  o->max_new_tokens, max_len, ctx);
  return 0;
}

/* the prompt's rows: each segment's token embeddings, the images' between */
static int chat_embed(const af_chat *c, const af_chat_result *r, float *seq) {
  size_t H = (size_t)af_lm_shape_of(c->g->lm)->hidden, at = 0;
  for (int i = 0; i < r->n_seg; i++) {
    int rc = af_lm_embed(c->g->lm, r->seg_ids[i], (int)r->seg_n[i], seq + at * H);
    if (rc) return rc;
    at += r->seg_n[i];
    if (i + 1 < r->n_seg) {
      memcpy(seq + at * H, c->proj + (size_t)i * (size_t)c->n_img * H, sizeof(float) * H * (size_t)c->n_img);
      at += (size_t)c->n_img;
    }
  }
  return 0;
}

/* Generates from the prompt rows seq[begin, begin + keep): prefill, then one
 * token at a time (seq's first row reused), streaming through io->text, until
 * a stop or max_new ids; the kept ids and their text go to *kept, *final. */
static int chat_generate(af_chat *c, const af_chat_io *io, float *seq, int begin, int keep, int max_new,
                         int32_t **kept, int *nk, char **final) {
  af_generator *g = c->g;
  size_t H = (size_t)af_lm_shape_of(g->lm)->hidden, printed = 0;
  float *logits = malloc(sizeof(float) * (size_t)af_lm_shape_of(g->lm)->vocab);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)max_new);
  int produced = 0, rc = logits && ids ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_lm_forward(g->lm, g->q, seq + (size_t)begin * H, keep, 0, logits);
  for (int pos = keep; !rc && produced < max_new; pos++) {
    int32_t id = af_sampler_next(&c->sm, logits, ids, produced);
    ids[produced++] = id;
    int last = af_gen_stopped(g, ids, produced) || produced == max_new;
    if (last && (rc = af_gen_answer_ids(g, ids, produced, kept, nk, final))) break;
    /* stream the text before the first separator, holding back a forming one */
    if (io && io->text && (rc = af_gen_stream(g, ids, produced, last, *final, &printed, io->text, io->arg)))
      break;
    if (last) break;
    if ((rc = af_lm_embed(g->lm, &id, 1, seq)) || (rc = af_lm_forward(g->lm, g->q, seq, 1, pos, logits)))
      break;
  }
  if (!rc && !*final) rc = af_gen_answer_ids(g, ids, produced, kept, nk, final); /* max_new 0 */
  free(logits), free(ids);
  return rc;
}

int af_chat_turn(af_chat *c, const char *question, const af_chat_io *io, af_chat_result *r) {
  memset(r, 0, sizeof *r);
  size_t H = (size_t)af_lm_shape_of(c->g->lm)->hidden;
  int n_msg0 = c->n_msg, begin = 0, max_new = 0, rc;
  char *undo = NULL, *final = NULL; /* final: the kept ids' text */
  float *seq = NULL;
  if ((rc = chat_ask(c, question, &undo)) || (rc = chat_append(c, 1, NULL))) goto out;
  if ((rc = chat_tokens(c, r)) || (rc = chat_window(c, r->positions, &begin, &max_new))) goto out;
  r->begin = begin;
  if (!(seq = malloc(sizeof(float) * H * (size_t)(r->positions + 1)))) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((rc = chat_embed(c, r, seq)) || (io && io->prompt && (rc = io->prompt(io->arg, r)))) goto out;
  rc = chat_generate(c, io, seq, begin, r->positions - begin, max_new, &r->ids, &r->n_ids, &final);
  if (rc) goto out;
  if (!(r->answer = af_answer_postprocess(final, c->g->sep)) ||
      !(c->msg[c->n_msg - 1].text = strdup(r->answer))) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (io && io->answered) rc = io->answered(io->arg, r);
out:
  if (rc) { /* the conversation stays as it was before this turn */
    while (c->n_msg > n_msg0) free(c->msg[--c->n_msg].text);
    if (undo) free(c->msg[c->n_msg - 1].text), c->msg[c->n_msg - 1].text = undo, undo = NULL;
  }
  free(undo), free(final), free(seq);
  return rc;
}
