/* The text half of describing an image (`artflow describe`, the llm stage): given one image's projected
 * embeddings (Q rows of the LLM width), build the prompt, run the LLM and print the answer (streaming plain
 * text, or one JSON object with --json); with a dump folder also write logits0.npy, prompt_ids.txt and
 * ids.txt there. */
#ifndef AF_NET_DESCRIBER_H
#define AF_NET_DESCRIBER_H

#include <stdio.h>

#include "cl/runtime.h"
#include "net/sampling.h"

typedef struct af_describe_opts {
  const char *question; /* NULL = the model's default question */
  af_sampling sampling;
  int max_new_tokens;
  int max_length;       /* prompt + answer positions (the original Chat.answer's
                           max_length, 2000): longer prompts keep their last
                           max_length - max_new_tokens positions (with a warning) */
  const char *dump_dir; /* root of --dump, or NULL */
  int json;
  const char *llm_model;      /* a second GGUF with the base LLM (two-file model), or NULL */
  struct af_weights *weights; /* the model already open (borrowed, e.g. the pipeline's), or NULL:
                                 af_describer_new opens model + llm_model itself */
  /* af_describer_run_batch calls it once the prompts are prefilled (step 0),
   * then after every decode step: `active` answers still growing, `done`
   * finished (or failed), of n items.  NULL = not called. */
  void (*progress)(void *arg, int step, int active, int done, int n);
  void *progress_arg;
} af_describe_opts;

void af_describe_opts_default(af_describe_opts *o);

typedef struct af_describer af_describer;

/* Loads the LLM part of `model`.  Returns 0, or a status (AF_ERR_NOT_IMPLEMENTED
 * while this build has no LLM). */
int af_describer_new(af_cl *cl, const char *model, const af_describe_opts *o, af_describer **out);
/* Describes one image: proj = n_img_tokens x hidden floats (host).  dump_dir =
 * this image's dump folder or NULL.  out: stream the answer (plain text, or
 * one JSON object with opts.json) there, or NULL.  answer / ids / n_ids (each
 * may be NULL) receive the post-processed answer and the generated ids that
 * the original's Chat.answer keeps (a first 1 after a dummy bos 0 goes;
 * malloc'd; caller frees).  The answer's text is decoded as transformers'
 * slow LlamaTokenizer does (special tokens written out). */
int af_describer_run(af_describer *d, const char *image, const float *proj, int n_img_tokens,
                     const char *dump_dir, FILE *out, char **answer, int32_t **ids, int *n_ids);

/* Several images described together: each prompt is prefilled into its own
 * KV-cache slot, then one batched decode step (net/lm.h) per token for
 * all unfinished sequences, each with its own sampler (same seed as a lone
 * run), stop handling and dump folder.  The answers, ids and the text on
 * `out` are what af_describer_run gives image by image, in item order (an
 * item's streamed text is held back until the items before it are done).
 * Returns 0 when every item succeeded, else the first failed item's status;
 * each item's own status and message are in the item. */
typedef struct af_describe_item {
  const char *image; /* name printed and put in the JSON */
  const float *proj; /* n_img x hidden floats (host) */
  int n_img;
  const char *dump_dir; /* this image's dump folder or NULL */
  /* results (free answer, ids, error) */
  int rc;
  char *error;  /* malloc'd message when rc != 0 */
  char *answer; /* malloc'd post-processed answer */
  int32_t *ids;
  int n_ids;
} af_describe_item;

int af_describer_run_batch(af_describer *d, af_describe_item *items, int n, FILE *out);
void af_describer_free(af_describer *d);
/* Drops the model file's pages from the resident set (af_weights_release_host),
 * e.g. while another model runs; the next run faults them back.  NULL-safe. */
void af_describer_release_host(af_describer *d);
/* The describer's weights (for af_weights_turn_begin/end). */
struct af_weights *af_describer_weights(af_describer *d);
/* The LLM's hidden width: the rows of image embeddings it takes. */
int af_describer_hidden(const af_describer *d);

/* ---- multi-turn chat about one or more images, as the original Chat class
 * (minigpt4/conversation/conversation.py) does it: the conversation is a list
 * of (role, message); upload_img appends a "<Img><ImageHere></Img>" message
 * per image, ask() joins the question to that message or appends a new one,
 * answer() appends an empty Assistant message, renders the whole history with
 * get_prompt(), splits it at <ImageHere>, tokenises each segment separately
 * (BOS on the first only), embeds it with the images' embeddings in between,
 * keeps the last max_length - max_new_tokens positions when it is longer (the
 * original's max_length truncation, with a warning on stderr), generates, and
 * stores the post-processed answer as the Assistant message.  The roles, the
 * system text and the image message come from the model's prompt template. */
typedef struct af_chat af_chat;

/* A new conversation about n_images images; proj[i] = n_img_tokens x hidden
 * floats (copied).  d is borrowed and must outlive the chat. */
int af_chat_new(af_describer *d, const float *const *proj, int n_images, int n_img_tokens, af_chat **out);
/* Forgets the messages and starts again with the same images. */
int af_chat_reset(af_chat *c);
/* One turn: asks `question` and answers it.  out: the answer is streamed
 * there as plain text (no newline added), or NULL.  dump_dir (or NULL) gets
 * prompt_ids.txt (one line per segment), ids.txt, answer.txt and info.txt
 * ("positions P begin B": prompt positions and the truncation start).
 * answer / ids (malloc'd, caller frees) and positions may be NULL. */
int af_chat_turn(af_chat *c, const char *question, FILE *out, const char *dump_dir, char **answer,
                 int32_t **ids, int *n_ids, int *positions);
void af_chat_free(af_chat *c);

#endif
