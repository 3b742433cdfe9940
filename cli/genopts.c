/* The text-generation flags shared by `describe` and `chat` (see cli.h). */
#include <stdlib.h>

#include "cli/cli.h"
#include "stages/describer.h"

int af_cli_gen_option(int c, const char *arg, af_describe_opts *o, int min_new_tokens) {
  char *end = NULL;
  switch (c) {
    case AF_OPT_LLM: o->llm_model = arg; return 1;
    case AF_OPT_GREEDY: o->sampling.greedy = 1; return 1;
    case AF_OPT_TEMP:
      o->sampling.temperature = strtof(arg, &end);
      return *end || !(o->sampling.temperature > 0) ? -1 : 1;
    case AF_OPT_TOPK:
      o->sampling.top_k = (int)strtol(arg, &end, 10);
      return *end || o->sampling.top_k < 0 ? -1 : 1;
    case AF_OPT_TOPP:
      o->sampling.top_p = strtof(arg, &end);
      return *end || !(o->sampling.top_p > 0 && o->sampling.top_p <= 1) ? -1 : 1;
    case AF_OPT_SEED:
      o->sampling.seed = strtoull(arg, &end, 10);
      return *end || *arg == '-' ? -1 : 1;
    case AF_OPT_MAXNEW:
      o->max_new_tokens = (int)strtol(arg, &end, 10);
      return *end || o->max_new_tokens < min_new_tokens ? -1 : 1;
    case AF_OPT_MAXLEN:
      o->max_length = (int)strtol(arg, &end, 10);
      return *end || o->max_length < 2 ? -1 : 1;
    default: return 0;
  }
}

const char *af_cli_optname(char **argv, int optind_now, const char *value) {
  /* "--opt value": the value is argv[optind - 1] and the option the one before */
  const char *a = argv[optind_now - 1];
  return a == value && optind_now >= 2 ? argv[optind_now - 2] : a;
}
