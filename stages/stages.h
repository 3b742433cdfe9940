/* The few things of the built-in stages that commands use besides their
 * descriptors: how the llm stage's parameters become generation options, so
 * that `artflow chat` generates with exactly what the stage would (same
 * table, same defaults and ranges, same mapping). */
#ifndef AF_STAGES_STAGES_H
#define AF_STAGES_STAGES_H

#include "net/net.h"

/* The llm stage's config struct (filled from its parameter table, e.g. by
 * af_params_defaults + af_param_set_text) as generation options. */
void af_llm_gen_opts(const void *llm_config, af_gen_opts *o);

#endif
