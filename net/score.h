/* Scoring answers instead of generating them (tagging): given an
 * image and a question, the model's log-likelihood of each candidate answer,
 * logprob = sum over the candidate's tokens of log softmax(next-token
 * logits), the candidate encoded as its own segment (SentencePiece with the
 * dummy prefix, no BOS: af_score_encode) right after the rendered prompt,
 * which ends with the template's "###Assistant:".
 *
 * How (share = 1): the prompt splits at <ImageHere>; the part before the
 * question (BOS + system text + image embeddings, the same for every
 * question, and the question tokens all its questions start with, e.g.
 * "</Img>" or a yesno template's words before {label}) is prefilled once per
 * image; every question of the image then
 * branches off it and every candidate off its question, all of them in one
 * batched pass over their rows (net/lm.h af_lm_rows: a tree of rows in one
 * set of GEMMs).  A question whose candidates need rows (candidates of more
 * than one token) gets a KV-cache slot of its own, a copy of the prefix
 * (af_lm_copy_prefix); the others share one.  A candidate's first token is
 * scored from its question's last position, so one-token candidates cost no
 * row at all.  share = 0 computes the same numbers the slow way (each
 * question's whole prompt prefilled again for every candidate): the
 * reference for tests and the baseline of `artflow bench --tag`. */
#ifndef AF_NET_SCORE_H
#define AF_NET_SCORE_H

#include <stdint.h>

#include "net/generate.h"

typedef struct af_score_query {
  const char *question;       /* {question} of the model's template */
  int n_cand;                 /* candidate answers (>= 1) */
  const int32_t *const *cand; /* each one's token ids (af_score_encode) */
  const int *cand_len;        /* and their counts (>= 1) */
  double *logprob;            /* out: n_cand natural-log likelihoods */
} af_score_query;

typedef struct af_score_item {
  const char *image; /* name for messages */
  const float *proj; /* n_img x hidden floats (host) */
  int n_img;
  af_score_query *q; /* the image's questions */
  int n_q;
  int rc;      /* out: 0, or the item's failure */
  char *error; /* out: its message (malloc'd; free it) */
} af_score_item;

/* A label's tokens as the model would write it as an answer: its own
 * segment, dummy prefix, no BOS.  *ids malloc'd.  A text that tokenises to
 * nothing is AF_ERR_INVALID naming it. */
int af_score_encode(const af_generator *g, const char *text, int32_t **ids, int *n);

/* The first tokens of "Yes"/"yes" and "No"/"no" as answers (each list
 * deduplicated, at most 2): P(yes) of a yes/no question is the sum of their
 * probabilities at the answer's first position. */
int af_score_yesno_ids(const af_generator *g, int32_t yes[2], int *n_yes, int32_t no[2], int *n_no);

/* Scores every item's questions.  Returns 0 when every item succeeded, else
 * the first failed item's status; each item's own status and message are in
 * it (a failure stays with its item). */
int af_score_batch(af_generator *g, af_score_item *items, int n, int share);

/* Sizes the KV cache and the LLM's buffers for af_score_batch of `batch`
 * items like `shape` (its questions and candidates; proj unused) with n_img
 * image rows each, and keeps them (a stage's prepare()).  A batch with longer
 * questions later grows them on first use. */
int af_score_reserve(af_generator *g, int batch, const af_score_item *shape);

#endif
