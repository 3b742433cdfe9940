/* Prompt assembly, sampling, stop sequences and answer post-processing
 * (see sampling.h).  The sampler follows transformers 4.28's warpers:
 * TopK keeps every score >= the k-th largest (ties kept); TopP sorts the
 * probabilities ascending and drops the tokens whose cumulative probability is
 * <= 1 - top_p, always keeping the most likely one. */
#include "net/sampling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"

static char *replace_all(const char *s, const char *what, const char *with) {
  size_t wl = strlen(what), rl = strlen(with), n = 0;
  for (const char *p = strstr(s, what); p; p = strstr(p + wl, what)) n++;
  char *out = malloc(strlen(s) + n * rl + 1), *o = out;
  if (!out) return NULL;
  for (const char *p = s, *q; (q = strstr(p, what)); p = q + wl) {
    memcpy(o, p, (size_t)(q - p));
    o += q - p;
    memcpy(o, with, rl);
    o += rl;
    s = q + wl;
  }
  strcpy(o, s);
  return out;
}

int af_prompt_fill(const char *tmpl, const char *question, char **out) {
  *out = NULL;
  if (!strstr(tmpl, AF_IMAGE_PLACEHOLDER))
    return af_err(AF_ERR_INVALID, "prompt template has no %s: '%s'", AF_IMAGE_PLACEHOLDER, tmpl);
  *out = replace_all(tmpl, "{question}", question ? question : "");
  return *out ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

int af_prompt_split(const char *prompt, char ***segs, int *n_segs) {
  int n = 1;
  size_t pl = strlen(AF_IMAGE_PLACEHOLDER);
  for (const char *p = strstr(prompt, AF_IMAGE_PLACEHOLDER); p; p = strstr(p + pl, AF_IMAGE_PLACEHOLDER)) n++;
  char **v = calloc((size_t)n, sizeof *v);
  if (!v) return af_err(AF_ERR_NOMEM, "out of memory");
  const char *p = prompt;
  for (int i = 0; i < n; i++) {
    const char *q = i < n - 1 ? strstr(p, AF_IMAGE_PLACEHOLDER) : p + strlen(p);
    v[i] = strndup(p, (size_t)(q - p));
    if (!v[i]) {
      af_prompt_free_segments(v, n);
      return af_err(AF_ERR_NOMEM, "out of memory");
    }
    p = q + pl;
  }
  *segs = v;
  *n_segs = n;
  return 0;
}

void af_prompt_free_segments(char **segs, int n) {
  if (!segs) return;
  for (int i = 0; i < n; i++) free(segs[i]);
  free(segs);
}

void af_sampling_default(af_sampling *s) {
  s->greedy = 0;
  s->temperature = 1.0f;
  s->top_k = 50;
  s->top_p = 0.9f;
  s->repetition_penalty = 1.0f;
  s->seed = 0;
}

int af_sampler_init(af_sampler *s, const af_sampling *p, int vocab) {
  memset(s, 0, sizeof *s);
  s->p = *p;
  s->vocab = vocab;
  s->lead = -1;
  s->state = p->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  s->work = malloc(sizeof(float) * (size_t)vocab);
  s->idx = malloc(sizeof(int32_t) * (size_t)vocab);
  if (!s->work || !s->idx) {
    af_sampler_free(s);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  return 0;
}

void af_sampler_free(af_sampler *s) {
  free(s->work);
  free(s->idx);
  s->work = NULL;
  s->idx = NULL;
}

static double next_uniform(af_sampler *s) { /* xorshift64*, [0, 1) */
  uint64_t x = s->state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  s->state = x;
  return ((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static const float *sort_keys;
static int by_score_desc(const void *a, const void *b) {
  float x = sort_keys[*(const int32_t *)a], y = sort_keys[*(const int32_t *)b];
  if (x != y) return x < y ? 1 : -1;
  return *(const int32_t *)a - *(const int32_t *)b;
}

/* transformers' RepetitionPenaltyLogitsProcessor: every distinct id of the
 * generation's input_ids (lead + history) once, from the unchanged score */
static void penalise(const af_sampler *s, float *logits, const int32_t *history, int n_history) {
  int V = s->vocab;
  for (int i = -1; i < n_history; i++) {
    int32_t t = i < 0 ? s->lead : history[i];
    if (t < 0 || t >= V) continue;
    int seen = i >= 0 && s->lead == t;
    for (int j = 0; j < i && !seen; j++) seen = history[j] == t;
    if (seen) continue;
    float v = logits[t];
    logits[t] = v < 0 ? v * s->p.repetition_penalty : v / s->p.repetition_penalty;
  }
}

int32_t af_sampler_next(af_sampler *s, float *logits, const int32_t *history, int n_history) {
  int V = s->vocab;
  if (s->p.repetition_penalty != 1.0f) penalise(s, logits, history, n_history);
  if (s->p.greedy) {
    int best = 0;
    for (int i = 1; i < V; i++)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  for (int i = 0; i < V; i++) logits[i] /= s->p.temperature;
  /* candidates sorted by score, descending (ties: lower id first) */
  for (int i = 0; i < V; i++) s->idx[i] = i;
  sort_keys = logits; /* qsort has no context pointer in C11; the sampler is per thread */
  qsort(s->idx, (size_t)V, sizeof *s->idx, by_score_desc);
  int keep = V;
  if (s->p.top_k > 0 && s->p.top_k < V) {
    float kth = logits[s->idx[s->p.top_k - 1]];
    keep = s->p.top_k;
    while (keep < V && logits[s->idx[keep]] >= kth) keep++; /* ties with the k-th stay */
  }
  float mx = logits[s->idx[0]];
  double sum = 0;
  for (int i = 0; i < keep; i++) sum += (s->work[i] = expf(logits[s->idx[i]] - mx));
  if (s->p.top_p < 1.0f) {
    /* ascending cumulative mass; remove while cum <= 1 - top_p (keep the top one) */
    double cum = 0, cut = 1.0 - s->p.top_p;
    int first_kept = 0;
    for (int i = keep - 1; i > 0; i--) {
      cum += s->work[i] / sum;
      if (cum <= cut) {
        first_kept = i;
      } else
        break;
    }
    if (first_kept > 0) keep = first_kept;
    sum = 0;
    for (int i = 0; i < keep; i++) sum += s->work[i];
  }
  double r = next_uniform(s) * sum, acc = 0;
  for (int i = 0; i < keep; i++) {
    acc += s->work[i];
    if (r < acc) return s->idx[i];
  }
  return s->idx[keep - 1];
}

int af_stop_match(const int32_t *ids, int n, const int32_t *const *stops, const int *stop_lens, int n_stops) {
  for (int s = 0; s < n_stops; s++) {
    int len = stop_lens[s];
    if (len <= 0 || n < len) continue;
    if (!memcmp(ids + n - len, stops[s], sizeof(int32_t) * (size_t)len)) return 1;
  }
  return 0;
}

/* byte length of the character at p[0..n) when Python's str.isspace() holds
 * for it (what str.strip() removes), else 0 */
static size_t py_space(const unsigned char *p, size_t n) {
  if (!n) return 0;
  if (p[0] < 0x80) return (p[0] >= 0x09 && p[0] <= 0x0d) || (p[0] >= 0x1c && p[0] <= 0x20);
  uint32_t c;
  size_t l;
  if ((p[0] & 0xe0) == 0xc0 && n >= 2)
    c = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f), l = 2;
  else if ((p[0] & 0xf0) == 0xe0 && n >= 3)
    c = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f), l = 3;
  else
    return 0;
  for (size_t k = 1; k < l; k++)
    if ((p[k] & 0xc0) != 0x80) return 0;
  int sp = c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
  return sp ? l : 0;
}

char *af_answer_postprocess(const char *text, const char *sep) {
  const char *end = sep && *sep ? strstr(text, sep) : NULL;
  size_t len = end ? (size_t)(end - text) : strlen(text);
  char *cut = strndup(text, len);
  if (!cut) return NULL;
  const char *start = cut;
  for (const char *p = strstr(cut, "Assistant:"); p; p = strstr(p + 1, "Assistant:")) start = p + 10;
  /* Python's strip(): ASCII and Unicode whitespace at both ends */
  const unsigned char *u = (const unsigned char *)start;
  size_t l = strlen(start), k;
  while ((k = py_space(u, l))) u += k, l -= k;
  while (l > 0) { /* the last character: back over at most 2 continuation bytes */
    size_t b = l - 1;
    while (b > 0 && l - b < 3 && (u[b] & 0xc0) == 0x80) b--;
    if (py_space(u + b, l - b) != l - b) break;
    l = b;
  }
  start = (const char *)u;
  char *out = strndup(start, l);
  free(cut);
  return out;
}
