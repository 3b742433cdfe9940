/* Multi-turn chat about one or more images, as the original Chat class
 * (minigpt4/conversation/conversation.py) does it: the conversation is a list
 * of (role, message); upload_img appends a "<Img><ImageHere></Img>" message
 * per image, ask() joins the question to that message or appends a new one,
 * answer() appends an empty Assistant message, renders the whole history with
 * get_prompt(), splits it at <ImageHere>, tokenises each segment separately
 * (BOS on the first only), embeds it with the images' embeddings in between,
 * keeps the last max_length - max_new_tokens positions when it is longer (the
 * original's max_length truncation, with a warning on stderr), generates, and
 * stores the post-processed answer as the Assistant message.  The roles, the
 * system text and the image message come from the model's prompt template.
 * Nothing here prints or writes files: a turn streams through a callback and
 * gives its results back (cli/cmd_chat.c shows them and writes --dump). */
#ifndef AF_NET_CHAT_H
#define AF_NET_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "net/generate.h"

typedef struct af_chat af_chat;

/* A new conversation about n_images images; proj[i] = n_img_tokens x hidden
 * floats (copied).  g is borrowed and must outlive the chat; its options
 * (sampling, max_new_tokens, max_length) apply to every turn. */
int af_chat_new(af_generator *g, const float *const *proj, int n_images, int n_img_tokens, af_chat **out);
/* Forgets the messages and starts again with the same images. */
int af_chat_reset(af_chat *c);
void af_chat_free(af_chat *c);

/* What one turn made, filled as the turn goes (free with
 * af_chat_result_free, also after a failed turn). */
typedef struct af_chat_result {
  int32_t **seg_ids; /* the prompt: each segment's ids (BOS on the first) */
  size_t *seg_n;
  int n_seg;
  int positions; /* the prompt's positions */
  int begin;     /* the first position kept (max_length truncation) */
  char *answer;  /* the post-processed answer */
  int32_t *ids;  /* the ids Chat.answer keeps */
  int n_ids;
} af_chat_result;

void af_chat_result_free(af_chat_result *r);

/* A turn's callbacks (each may be NULL).  `text` receives the answer as it
 * grows (the text before the first stop string; no newline added).
 * `prompt` is called once the prompt is embedded (seg_ids, positions and
 * begin set), `answered` once the answer is made (answer, ids), before the
 * turn counts; a nonzero return (a status, its message recorded) fails the
 * turn. */
typedef struct af_chat_io {
  void *arg;
  int (*text)(void *arg, const char *p, size_t len);
  int (*prompt)(void *arg, const af_chat_result *r);
  int (*answered)(void *arg, const af_chat_result *r);
} af_chat_io;

/* One turn: asks `question` and answers it; r receives the turn's results
 * (io may be NULL).  A failed turn leaves the conversation as it was. */
int af_chat_turn(af_chat *c, const char *question, const af_chat_io *io, af_chat_result *r);

#endif
