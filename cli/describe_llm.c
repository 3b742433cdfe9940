/* Text generation for `artflow describe` (see describe.h).  This build has no
 * LLM stage yet: af_describer_new says so, and describe runs with
 * --max-new-tokens 0 (the vision path) only. */
#include <stdlib.h>

#include "cli/describe.h"

void af_describe_opts_default(af_describe_opts *o) {
  o->question = NULL;
  af_sampling_default(&o->sampling);
  o->max_new_tokens = 300;
  o->dump_dir = NULL;
  o->json = 0;
}

int af_describer_new(af_cl *cl, const char *model, const af_describe_opts *o, af_describer **out) {
  (void)cl, (void)o;
  *out = NULL;
  return af_err(AF_ERR_NOT_IMPLEMENTED,
                "%s: text generation is not in this build yet; run the vision path with --max-new-tokens 0",
                model);
}

int af_describer_run(af_describer *d, const char *image, const float *proj, int n, const char *dump, FILE *out) {
  (void)d, (void)image, (void)proj, (void)n, (void)dump, (void)out;
  return af_err(AF_ERR_NOT_IMPLEMENTED, "text generation is not in this build yet");
}

void af_describer_free(af_describer *d) { (void)d; }
