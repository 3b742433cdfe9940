/* Inside the generator (net/generate.c), shared by its batch engine
 * (net/generate_batch.c) and the chat (net/chat.c); not for callers. */
#ifndef AF_NET_GENERATE_IMPL_H
#define AF_NET_GENERATE_IMPL_H

#include "cl/weights.h"
#include "formats/spm.h"
#include "net/generate.h"
#include "net/lm.h"

#define AF_GEN_MAX_STOPS 8

struct af_generator {
  af_gen_opts o;
  af_weights *w;
  af_lm *lm;
  af_spm *tok;
  af_queue *q;
  int own_w, own_q; /* w and q are the generator's (not o.weights / o.queue) */
  int reserved;     /* af_generator_reserve sized the LLM's buffers: keep them between batches */
  const char *tmpl, *question, *sep;
  const char *model_question; /* the model's default question, or NULL */
  int32_t *stops[AF_GEN_MAX_STOPS];
  int stop_lens[AF_GEN_MAX_STOPS], n_stops;
  /* generate()'s ids in the original: it stops on `eos` (-1: never) and its
   * output starts with a dummy `dummy_bos` that Chat.answer drops (see
   * af_gen_answer_ids) */
  int32_t eos, dummy_bos;
};

/* 1 when the answer ids[0..n) ends generation: the last id is eos, or the
 * ids end with a stop sequence */
int af_gen_stopped(const af_generator *g, const int32_t *ids, int n);

/* The ids that Chat.answer keeps of generate()'s output ids[0..n) and the
 * text it makes of them (slow-tokenizer decode).  *out and *text malloc'd. */
int af_gen_answer_ids(const af_generator *g, const int32_t *ids, int n, int32_t **out, int *nout,
                      char **text);

/* Streams a growing answer: after ids[0..n) (last: its final id, `final`
 * then the kept ids' text, else NULL), puts the bytes of the answer's text
 * that are certain and not yet put (*printed of them so far) through
 * put(arg, p, len). */
int af_gen_stream(const af_generator *g, const int32_t *ids, int n, int last, const char *final,
                  size_t *printed, int (*put)(void *arg, const char *p, size_t len), void *arg);

#endif
