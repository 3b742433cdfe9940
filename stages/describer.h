/* The text half of describing an image (`artflow describe`, the llm stage): given one image's projected embeddings
 * (Q rows of the LLM width), build the prompt, run the LLM and print the answer
 * (streaming plain text, or one JSON object with --json); with a dump folder
 * also write logits0.npy, prompt_ids.txt and ids.txt there. */
#ifndef AF_STAGES_DESCRIBER_H
#define AF_STAGES_DESCRIBER_H

#include <stdio.h>

#include "cl/runtime.h"
#include "model/generate.h"

typedef struct af_describe_opts {
  const char *question;   /* NULL = the model's default question */
  af_sampling sampling;
  int max_new_tokens;
  const char *dump_dir;   /* root of --dump, or NULL */
  int json;
} af_describe_opts;

void af_describe_opts_default(af_describe_opts *o);

typedef struct af_describer af_describer;

/* Loads the LLM part of `model`.  Returns 0, or a status (AF_ERR_NOT_IMPLEMENTED
 * while this build has no LLM). */
int af_describer_new(af_cl *cl, const char *model, const af_describe_opts *o, af_describer **out);
/* Describes one image: proj = n_img_tokens x hidden floats (host).  dump_dir =
 * this image's dump folder or NULL.  out: stream the answer (plain text, or
 * one JSON object with opts.json) there, or NULL.  answer / ids / n_ids (each
 * may be NULL) receive the post-processed answer and the generated ids
 * (malloc'd; caller frees). */
int af_describer_run(af_describer *d, const char *image, const float *proj, int n_img_tokens,
                     const char *dump_dir, FILE *out, char **answer, int32_t **ids, int *n_ids);
void af_describer_free(af_describer *d);

#endif
