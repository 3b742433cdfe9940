/* Text-side pieces of generation that do not touch the device: the prompt as
 * the original Chat builds it, sampling as transformers 4.28 does it, stop
 * sequences and the answer's post-processing (docs/model.md §7).
 *
 * Prompt: the architecture's template holds "{question}" and one
 * "<ImageHere>" per image.  The filled string is split at every <ImageHere>;
 * each segment is tokenised separately (BOS only on the first) and the image
 * embeddings go in between.  Chat turns are rendered as
 * Conversation.get_prompt() does by net/chat.c (af_chat). */
#ifndef AF_NET_SAMPLING_H
#define AF_NET_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AF_IMAGE_PLACEHOLDER "<ImageHere>"

/* Replaces every "{question}" in tmpl by question.  *out malloc'd (caller
 * frees).  AF_ERR_INVALID when the template lacks <ImageHere>. */
int af_prompt_fill(const char *tmpl, const char *question, char **out);

/* Splits at <ImageHere>: *n_segs = placeholders + 1 malloc'd strings in a
 * malloc'd array (free with af_prompt_free_segments). */
int af_prompt_split(const char *prompt, char ***segs, int *n_segs);
void af_prompt_free_segments(char **segs, int n_segs);

/* Sampling parameters.  Defaults (af_sampling_default) are the original
 * demo's: do_sample, temperature 1.0, top_k 50 (transformers' default),
 * top_p 0.9, repetition_penalty 1.0. */
typedef struct af_sampling {
  int greedy;               /* 1: argmax (first maximum) after the repetition
                               penalty; temperature, top-k/p ignored */
  float temperature;        /* > 0 */
  int top_k;                /* 0 = off */
  float top_p;              /* 1.0 = off */
  float repetition_penalty; /* 1.0 = off */
  uint64_t seed;
} af_sampling;

void af_sampling_default(af_sampling *s);

typedef struct af_sampler {
  af_sampling p;
  uint64_t state;
  float *work;  /* scratch, vocab floats */
  int32_t *idx; /* scratch, vocab ints */
  int vocab;
  /* an id generate() holds before the first generated one (-1: none): the
   * repetition penalty counts it, as transformers does with the dummy BOS
   * it starts inputs_embeds generation from.  Set after af_sampler_init. */
  int32_t lead;
} af_sampler;

int af_sampler_init(af_sampler *s, const af_sampling *p, int vocab);
void af_sampler_free(af_sampler *s);

/* Picks the next id from logits[vocab] (modified in place) given the ids
 * generated so far (for the repetition penalty, with s->lead), in
 * transformers' order: repetition penalty -> temperature -> top-k -> top-p ->
 * softmax -> draw.  Greedy search applies the penalty too (transformers'
 * logits processors run in greedy_search as well), then takes the argmax. */
int32_t af_sampler_next(af_sampler *s, float *logits, const int32_t *history, int n_history);

/* 1 when ids[0..n) ends with one of the stop sequences. */
int af_stop_match(const int32_t *ids, int n, const int32_t *const *stops, const int *stop_lens, int n_stops);

/* The original's post-processing of the decoded answer: cut at the first sep,
 * keep what follows the last "Assistant:", strip whitespace (Python's: ASCII
 * and Unicode white space, U+001C-U+001F included).  Returns a
 * malloc'd string (caller frees) or NULL when out of memory. */
char *af_answer_postprocess(const char *text, const char *sep);

#ifdef __cplusplus
}
#endif
#endif
