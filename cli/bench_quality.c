/* `artflow bench --model Q.gguf --reference R.gguf --text FILE`: how closely a
 * quantised LLM follows the reference (the f16 file of the same weights)
 * over a text.  Issue 20's measure for quantised kernels that take int8
 * activations: the logits of every position of the text, prefilled in one
 * pass by each model in turn (the reference first; one model in memory at a
 * time), compared as
 *   NMSE   sum (q - r)^2 / sum r^2 over all positions and the vocabulary,
 *   KL     mean over positions of sum_v p_r(v) (log p_r(v) - log p_q(v)),
 *          p = softmax of the logits (in double),
 *   top-1  share of positions whose largest logit is the same token.
 * The text is tokenised by Q's tokenizer as `artflow tokenize --bos` does (a
 * BOS, then the text), cut to --positions; tools/bench-peers.sh computes the
 * same three numbers for llama.cpp on the same ids and files. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/json_out.h"
#include "core/iofile.h"
#include "formats/gguf.h"
#include "formats/spm.h"
#include "net/lm.h"

static int read_text(const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot open the text", path);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap) break;
    char *nb = cap < (64u << 20) ? realloc(buf, 2 * cap + 1) : NULL;
    if (!nb) break;
    buf = nb, cap *= 2;
  }
  fclose(f);
  if (!buf) return af_err(AF_ERR_NOMEM, "out of memory");
  buf[n] = 0;
  *out = buf;
  return 0;
}

/* the logits (n x vocab) of every position of ids under the model in path */
static int run_model(af_cl *cl, const char *path, const int32_t *ids, int n, int *vocab, float **logits) {
  af_weights *w = NULL;
  af_lm *lm = NULL;
  af_queue *q = NULL;
  float *x = NULL;
  int rc = af_weights_open(cl, path, &w);
  if (!rc) rc = af_lm_new(cl, w, n + 1, &lm);
  if (!rc) rc = af_queue_new(cl, &q);
  if (rc) goto out;
  const af_lm_shape *s = af_lm_shape_of(lm);
  if (*vocab && *vocab != s->vocab) {
    rc =
        af_err(AF_ERR_INVALID, "%s: vocabulary of %d tokens, the other model has %d", path, s->vocab, *vocab);
    goto out;
  }
  *vocab = s->vocab;
  x = malloc(sizeof(float) * (size_t)n * (size_t)s->hidden);
  *logits = malloc(sizeof(float) * (size_t)n * (size_t)s->vocab);
  if (!x || !*logits) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (!(rc = af_lm_embed(lm, ids, n, x))) rc = af_lm_prefill_all(lm, q, 0, x, n, 0, *logits);
out:
  free(x);
  af_queue_free(q);
  af_lm_free(lm);
  af_weights_free(w);
  return rc;
}

/* log-softmax normaliser: max + log sum exp(x - max) */
static double lse(const float *x, int v, int *arg) {
  int a = 0;
  for (int i = 1; i < v; i++)
    if (x[i] > x[a]) a = i;
  double s = 0;
  for (int i = 0; i < v; i++) s += exp((double)x[i] - x[a]);
  *arg = a;
  return x[a] + log(s);
}

int af_bench_quality(const char *model, const char *reference, const char *text_path, int positions,
                     const char *device, int json) {
  char *text = NULL;
  int32_t *ids = NULL;
  size_t nid = 0;
  float *lr = NULL, *lq = NULL;
  af_cl *cl = NULL;
  af_gguf *g = NULL;
  af_spm *t = NULL;
  int rc = read_text(text_path, &text), vocab = 0;
  if (!rc) rc = af_gguf_open(model, &g);
  if (!rc) rc = af_spm_from_gguf(g, &t);
  if (!rc) rc = af_spm_encode_hf(t, text, strlen(text), 1, &ids, &nid);
  af_spm_free(t);
  af_gguf_close(g);
  if (!rc && nid < 2)
    rc = af_err(AF_ERR_INVALID, "%s: the text gives %zu tokens (2 or more needed)", text_path, nid);
  int n = rc ? 0 : (int)(nid < (size_t)positions ? nid : (size_t)positions);
  if (!rc) rc = af_cl_open(&cl, device);
  if (!rc) rc = run_model(cl, reference, ids, n, &vocab, &lr);
  if (!rc) rc = run_model(cl, model, ids, n, &vocab, &lq);
  if (rc) goto out;
  double se = 0, sr = 0, kl = 0, klmax = 0;
  int same = 0;
  for (int p = 0; p < n; p++) {
    const float *r = lr + (size_t)p * vocab, *qv = lq + (size_t)p * vocab;
    int ar, aq;
    double zr = lse(r, vocab, &ar), zq = lse(qv, vocab, &aq), k = 0;
    for (int v = 0; v < vocab; v++) {
      double d = (double)qv[v] - r[v], lpr = r[v] - zr;
      se += d * d, sr += (double)r[v] * r[v];
      k += exp(lpr) * (lpr - (qv[v] - zq));
    }
    kl += k, klmax = k > klmax ? k : klmax;
    same += ar == aq;
  }
  double nmse = sr > 0 ? se / sr : 0;
  if (json) {
    cJSON *o = cJSON_CreateObject();
    af_json_add_text(o, "model", model, "model_bytes");
    af_json_add_text(o, "reference", reference, "reference_bytes");
    cJSON_AddNumberToObject(o, "positions", n);
    af_json_num(o, "nmse", nmse, 9);
    af_json_num(o, "kl_mean", kl / n, 9);
    af_json_num(o, "kl_max", klmax, 9);
    af_json_num(o, "top1", (double)same / n, 6);
    if (af_json_print(o)) rc = AF_ERR_NOMEM;
  } else
    printf(
        "quality of %s against %s over %d positions of %s:\n"
        "  logits NMSE %.4g, KL divergence mean %.4g (max %.4g), top-1 agreement %.2f %% (%d of %d)\n",
        model, reference, n, text_path, nmse, kl / n, klmax, 100.0 * same / n, same, n);
out:
  free(text), free(ids), free(lr), free(lq);
  af_cl_close(cl);
  return rc;
}
