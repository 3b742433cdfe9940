/* The text half of describing an image (`artflow describe`, the llm stage):
 * given each image's projected embeddings (Q rows of the LLM width), build
 * the original Chat's prompt, run the LLM and give back the answer.
 *
 * af_generator holds what generation needs of a model file (LLM weights,
 * tokenizer, prompt template, stop sequences, the generation config's ids);
 * af_generate_batch describes several images together.  Nothing here prints
 * or writes files: what a caller shows (a stream of text, JSON, --dump
 * files) it makes from the callbacks and results below (cli/images.c
 * for describe).  The multi-turn chat is net/chat.h. */
#ifndef AF_NET_GENERATE_H
#define AF_NET_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "net/sampling.h"

typedef struct af_gen_opts {
  const char *question; /* NULL = the model's default question */
  af_sampling sampling;
  int max_new_tokens;
  int max_length;             /* prompt + answer positions (the original Chat.answer's
                                 max_length, 2000): longer prompts keep their last
                                 max_length - max_new_tokens positions (with a warning) */
  const char *llm_model;      /* a second GGUF with the base LLM (two-file model), or NULL */
  struct af_weights *weights; /* the model already open (borrowed: a pipeline's, opened once for
                                 all its stages), or NULL: model + llm_model are opened here */
  struct af_queue *queue;     /* the command queue to run on (borrowed: a stage's), or NULL: one
                                 of the generator's own */
  /* af_generate_batch calls it once the prompts are prefilled (step 0),
   * then after every decode step: `active` answers still growing, `done`
   * finished (or failed), of n items.  NULL = not called. */
  void (*progress)(void *arg, int step, int active, int done, int n);
  void *progress_arg;
} af_gen_opts;

void af_gen_opts_default(af_gen_opts *o);

typedef struct af_generator af_generator;

/* Loads the LLM part of `model` (and of o->llm_model).  Returns 0 or a
 * status with its one-line message. */
int af_generator_new(af_cl *cl, const char *model, const af_gen_opts *o, af_generator **out);
void af_generator_free(af_generator *g);
/* Drops the model file's pages from the resident set (af_weights_release_host),
 * e.g. while another model runs; the next run faults them back.  NULL-safe. */
void af_generator_release_host(af_generator *g);
/* The generator's weights (for af_weights_turn_begin/end). */
struct af_weights *af_generator_weights(af_generator *g);
/* Changes what the next af_generate_batch asks and how it generates:
 * o->question (borrowed until the next change; NULL = the model's default),
 * sampling, max_new_tokens, max_length; the rest of *o is ignored (the model,
 * queue and callbacks stay).  Several describe tasks share one generator. */
int af_generator_configure(af_generator *g, const af_gen_opts *o);
/* The question asked (o.question, else the model's default): borrowed. */
const char *af_generator_question(const af_generator *g);
/* The prompt text the model's template makes of it (<ImageHere> where the
 * image embeddings go); *out malloc'd. */
int af_generator_prompt_text(const af_generator *g, char **out);
/* The LLM's hidden width: the rows of image embeddings it takes. */
int af_generator_hidden(const af_generator *g);
/* Sizes every device buffer that af_generate_batch of up to `batch` images
 * with n_img image rows each will use (KV cache, work buffers, scratch),
 * builds its kernels, and keeps them from then on (the buffers are no longer
 * given back between batches): a pipeline stage's prepare().  Nothing is
 * computed (the queue's reserve mode). */
int af_generator_reserve(af_generator *g, int batch, int n_img);

/* One image of a batch: inputs, then results.  The answer text is decoded
 * as transformers' slow LlamaTokenizer does (special tokens written out) and
 * post-processed as the original (cut at the first "###", stripped); ids are
 * the generated ids the original's Chat.answer keeps (a dummy bos 0 and a
 * first 1 after it go). */
typedef struct af_gen_item {
  const char *image; /* name for messages */
  const float *proj; /* n_img x hidden floats (host) */
  int n_img;
  int want_logits0; /* keep the logits of the first generated position */
  /* results (malloc'd; free answer, ids, error, logits0, or af_gen_item_clear) */
  int rc;
  char *error;  /* the message when rc != 0 */
  char *answer; /* when rc == 0 */
  int32_t *ids;
  int n_ids;
  int positions;  /* prompt positions the model sees (after max_length truncation) */
  float *logits0; /* vocab floats, with want_logits0, once the prompt is prefilled */
  int n_logits0;
} af_gen_item;

void af_gen_item_clear(af_gen_item *it);

/* A batch call in progress, as its callbacks see it. */
typedef struct af_gen_run af_gen_run;

/* Where a batch's output goes (every member may be 0/NULL).  The batch has
 * one byte stream in item order: `write` receives item k's bytes only after
 * items 0..k-1 are done (a later item's bytes are held back until then),
 * so that a batch streams what describing its items one by one would.  Into
 * it go each answer's text as it grows (with stream_answers: the text before
 * the first stop string, a forming one held back) and what the callbacks
 * add with af_gen_put.  A callback that returns nonzero (a status, its
 * message recorded with af_err) fails that item. */
typedef struct af_gen_sink {
  void *arg;
  void (*write)(void *arg, int item, const char *p, size_t len);
  int stream_answers;
  /* item i's prompt is prefilled: positions and logits0 are set, the prompt
   * ids are af_gen_prompt_ids'; called before its first token */
  int (*prefilled)(void *arg, af_gen_run *run, int i);
  /* item i's answer is complete (answer and ids set); called in the order
   * the answers end, before the stream moves past the item */
  int (*done)(void *arg, af_gen_run *run, int i);
  /* 1: write gets every item's bytes as they are made, the items' streams
   * interleaved (each call names its item) -- a server with one client per
   * item -- instead of in item order */
  int interleave;
  /* polled before each decode step for every unfinished item: nonzero ends
   * item i there (it fails with AF_ERR_INTERRUPTED, "cancelled"), freeing
   * its place in the batch's steps -- a client that went away */
  int (*cancelled)(void *arg, int i);
} af_gen_sink;

/* Adds len bytes to item i's place in the stream (nothing without a write).
 * With p NULL it adds mark number len (0..15) instead: write() then gets
 * (item, NULL, len) at that place, e.g. "this item's answer begins". */
int af_gen_put(af_gen_run *run, int i, const char *p, size_t len);
/* The batch's prompt ids: before the image (BOS first) and after it, the
 * same for every item; borrowed, valid during the call. */
void af_gen_prompt_ids(const af_gen_run *run, const int32_t **pre, size_t *n_pre, const int32_t **post,
                       size_t *n_post);

/* Several images described together: each prompt is prefilled into its own
 * KV-cache slot, then one batched decode step (net/lm.h) per token for all
 * unfinished sequences, each with its own sampler (same seed as a lone run)
 * and stop handling.  Every item's results equal describing it alone.
 * Returns 0 when every item succeeded, else the first failed item's status
 * (its message recorded); each item's own status and message are in the
 * item.  sink may be NULL. */
int af_generate_batch(af_generator *g, af_gen_item *items, int n, const af_gen_sink *sink);

#endif
