/* Text generation for `artflow describe` and the llm stage (see describer.h): the original
 * Chat's prompt (template from the model file, split at <ImageHere>, each
 * segment tokenised separately, BOS on the first only), the image embeddings
 * spliced in, prefill, then decode steps with the KV cache until a stop
 * sequence ("###" in either tokenisation), EOS or max_new_tokens; the answer
 * is cut at the first "###" and stripped, and streamed as it grows. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/weights.h"
#include "stages/describer.h"
#include "model/gguf.h"
#include "model/spm.h"
#include "pipeline/iofile.h"
#include "stages/lm.h"

#define MAX_STOPS 8

struct af_describer {
  af_describe_opts o;
  af_weights *w;
  af_lm *lm;
  af_spm *tok;
  af_queue *q;
  const char *tmpl, *question, *sep;
  int32_t *stops[MAX_STOPS];
  int stop_lens[MAX_STOPS], n_stops;
};

void af_describe_opts_default(af_describe_opts *o) {
  o->question = NULL;
  af_sampling_default(&o->sampling);
  o->max_new_tokens = 300;
  o->dump_dir = NULL;
  o->json = 0;
}

void af_describer_free(af_describer *d) {
  if (!d) return;
  for (int i = 0; i < d->n_stops; i++) free(d->stops[i]);
  af_queue_free(d->q);
  af_spm_free(d->tok);
  af_lm_free(d->lm);
  af_weights_free(d->w);
  free(d);
}

int af_describer_new(af_cl *cl, const char *model, const af_describe_opts *o, af_describer **out) {
  *out = NULL;
  af_describer *d = calloc(1, sizeof *d);
  if (!d) return af_err(AF_ERR_NOMEM, "out of memory");
  d->o = *o;
  int rc = af_weights_open(cl, model, &d->w);
  if (!rc) rc = af_lm_new(cl, d->w, 0, &d->lm);
  if (!rc) rc = af_spm_from_gguf(af_weights_gguf(d->w), &d->tok);
  if (!rc) rc = af_queue_new(cl, &d->q);
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

int af_describer_run(af_describer *d, const char *image, const float *proj, int n_img, const char *dump_dir,
                     FILE *out, char **answer_out, int32_t **ids_out, int *n_ids) {
  if (answer_out) *answer_out = NULL;
  if (ids_out) *ids_out = NULL;
  if (n_ids) *n_ids = 0;
  const af_lm_shape *s = af_lm_shape_of(d->lm);
  size_t H = (size_t)s->hidden;
  char *prompt = NULL, **segs = NULL, *text = NULL, *answer = NULL;
  int nseg = 0, rc, n = 0, produced = 0;
  int32_t *pre = NULL, *post = NULL, *ids = NULL;
  size_t npre = 0, npost = 0, printed = 0;
  float *seq = NULL, *logits = malloc(sizeof(float) * (size_t)s->vocab);
  af_sampler sm;
  memset(&sm, 0, sizeof sm);
  if (!logits) return af_err(AF_ERR_NOMEM, "out of memory");
  if ((rc = af_prompt_fill(d->tmpl, d->question, &prompt)) || (rc = af_prompt_split(prompt, &segs, &nseg))) goto out;
  if (nseg != 2) {
    rc = af_err(AF_ERR_FORMAT, "the prompt template has %d image places; describe gives one image", nseg - 1);
    goto out;
  }
  if ((rc = af_spm_encode(d->tok, segs[0], strlen(segs[0]), 1, -1, &pre, &npre)) ||
      (rc = af_spm_encode(d->tok, segs[1], strlen(segs[1]), 0, -1, &post, &npost)))
    goto out;
  n = (int)(npre + (size_t)n_img + npost);
  int max_new = d->o.max_new_tokens;
  if (n + max_new > s->ctx) max_new = s->ctx - n; /* the context holds prompt + answer */
  if (max_new < 1) {
    rc = af_err(AF_ERR_RANGE, "%s: the prompt (%d positions) fills the model's context of %d", image, n, s->ctx);
    goto out;
  }
  seq = malloc(sizeof(float) * H * (size_t)(n + 1));
  ids = malloc(sizeof(int32_t) * (size_t)max_new);
  if (!seq || !ids) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if ((rc = af_lm_embed(d->lm, pre, (int)npre, seq))) goto out;
  memcpy(seq + npre * H, proj, sizeof(float) * H * (size_t)n_img);
  if ((rc = af_lm_embed(d->lm, post, (int)npost, seq + (npre + (size_t)n_img) * H))) goto out;
  if ((rc = af_lm_forward(d->lm, d->q, seq, n, 0, logits))) goto out;
  if (dump_dir) {
    char p[4200];
    int64_t shape[1] = {s->vocab};
    snprintf(p, sizeof p, "%s/logits0.npy", dump_dir);
    if ((rc = af_npy_write(p, AF_DTYPE_F32, 1, shape, logits, 0))) goto out;
    snprintf(p, sizeof p, "%s/prompt_ids.txt", dump_dir);
    if ((rc = write_ids(p, pre, npre, post, npost, 1))) goto out;
  }
  if ((rc = af_sampler_init(&sm, &d->o.sampling, s->vocab))) goto out;
  if (out && !d->o.json) fprintf(out, "%s: ", image);
  for (int pos = n; produced < max_new; pos++) {
    int32_t id = af_sampler_next(&sm, logits, ids, produced);
    ids[produced++] = id;
    int stop = id == af_spm_options(d->tok)->eos_id ||
               af_stop_match(ids, produced, (const int32_t *const *)d->stops, d->stop_lens, d->n_stops);
    if (out && !d->o.json) { /* stream what is certain: the text before the first separator */
      free(text);
      text = NULL;
      if ((rc = af_spm_decode(d->tok, ids, (size_t)produced, &text))) goto out;
      char *cut = strstr(text, d->sep);
      size_t len = cut ? (size_t)(cut - text) : strlen(text);
      size_t hold = strlen(d->sep) - 1; /* a separator may be forming at the end */
      size_t upto = stop || cut ? len : (len > hold ? len - hold : 0);
      if (upto > printed) {
        fwrite(text + printed, 1, upto - printed, out);
        fflush(out);
        printed = upto;
      }
    }
    if (stop || produced == max_new) break;
    if ((rc = af_lm_embed(d->lm, &id, 1, seq)) || (rc = af_lm_forward(d->lm, d->q, seq, 1, pos, logits))) goto out;
  }
  free(text);
  text = NULL;
  /* the original's post-processing of the whole answer */
  if ((rc = af_spm_decode(d->tok, ids, (size_t)produced, &text))) goto out;
  answer = af_answer_postprocess(text, d->sep);
  if (!answer) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (out && d->o.json) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "ids");
    cJSON_AddStringToObject(o, "image", image);
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "text", answer);
    for (int i = 0; i < produced; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
    cJSON_AddNumberToObject(o, "prompt_positions", n);
    char *js = cJSON_PrintUnformatted(o);
    if (js) fprintf(out, "%s\n", js);
    free(js);
    cJSON_Delete(o);
  } else if (out) {
    fputc('\n', out);
  }
  if (dump_dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/ids.txt", dump_dir);
    rc = write_ids(p, ids, (size_t)produced, NULL, 0, 0);
  }
  if (!rc && answer_out) *answer_out = answer, answer = NULL;
  if (!rc && ids_out) *ids_out = ids, ids = NULL;
  if (!rc && n_ids) *n_ids = produced;
out:
  af_sampler_free(&sm);
  free(answer), free(text), free(ids), free(seq), free(logits), free(pre), free(post), free(prompt);
  af_prompt_free_segments(segs, nseg);
  return rc;
}
