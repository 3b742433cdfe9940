/* The command line shared by `describe` and `chat` (see cli.h). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/gguf.h"
#include "net/generate.h"

enum {
  O_MODEL = 256,
  O_QUESTION,
  O_DUMP,
  O_JSON,
  O_DEVICE,
  AF_OPT_LLM = 1000,
  AF_OPT_GREEDY,
  AF_OPT_TEMP,
  AF_OPT_TOPK,
  AF_OPT_TOPP,
  AF_OPT_SEED,
  AF_OPT_MAXNEW,
  AF_OPT_MAXLEN,
  AF_OPT_REPPEN
};

/* applies generation option `c` with value `arg` to *o: 1 done, 0 not a
 * generation option, -1 a bad value */
static int gen_option(int c, const char *arg, af_gen_opts *o, int min_new_tokens) {
  char *end = NULL;
  switch (c) {
    case AF_OPT_LLM:
      o->llm_model = arg;
      return 1;
    case AF_OPT_GREEDY:
      o->sampling.greedy = 1;
      return 1;
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
    case AF_OPT_REPPEN:
      o->sampling.repetition_penalty = strtof(arg, &end);
      return *end || !(o->sampling.repetition_penalty > 0) ? -1 : 1;
    case AF_OPT_MAXNEW:
      o->max_new_tokens = (int)strtol(arg, &end, 10);
      return *end || o->max_new_tokens < min_new_tokens ? -1 : 1;
    case AF_OPT_MAXLEN:
      o->max_length = (int)strtol(arg, &end, 10);
      return *end || o->max_length < 2 ? -1 : 1;
    default:
      return 0;
  }
}

/* the option a getopt_long value belongs to, for messages: with "--opt
 * value" the value is argv[optind - 1] and the option the one before */
static const char *optname(char **argv, int optind_now, const char *value) {
  const char *a = argv[optind_now - 1];
  return a == value && optind_now >= 2 ? argv[optind_now - 2] : a;
}

int af_cli_image_args_parse(int argc, char **argv, const char *cmd, const char *usage, int min_new_tokens,
                            af_gen_opts *o, af_cli_image_args *a) {
  static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                       {"question", required_argument, 0, O_QUESTION},
                                       {"dump", required_argument, 0, O_DUMP},
                                       {"json", no_argument, 0, O_JSON},
                                       {"device", required_argument, 0, O_DEVICE},
                                       {"help", no_argument, 0, 'h'},
                                       {"llm", required_argument, 0, AF_OPT_LLM},
                                       {"greedy", no_argument, 0, AF_OPT_GREEDY},
                                       {"temperature", required_argument, 0, AF_OPT_TEMP},
                                       {"top-k", required_argument, 0, AF_OPT_TOPK},
                                       {"top-p", required_argument, 0, AF_OPT_TOPP},
                                       {"seed", required_argument, 0, AF_OPT_SEED},
                                       {"max-new-tokens", required_argument, 0, AF_OPT_MAXNEW},
                                       {"max-length", required_argument, 0, AF_OPT_MAXLEN},
                                       {"repetition-penalty", required_argument, 0, AF_OPT_REPPEN},
                                       {0, 0, 0, 0}};
  memset(a, 0, sizeof *a);
  optind = 1;
  opterr = 0;
  for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
    int g = gen_option(c, optarg, o, min_new_tokens);
    if (g > 0) continue;
    if (g < 0) goto bad;
    switch (c) {
      case 'h':
        fputs(usage, stdout);
        return AF_EXIT_OK;
      case O_MODEL:
        a->model = optarg;
        break;
      case O_QUESTION:
        a->question = optarg;
        break;
      case O_DUMP:
        a->dump = optarg;
        break;
      case O_JSON:
        a->json = 1;
        break;
      case O_DEVICE:
        a->device = optarg;
        break;
      case '?':
        if (optopt) return af_cli_usage_error(cmd, usage, "option '%s' needs a value", argv[optind - 1]);
        return af_cli_usage_error(cmd, usage, "unknown option '%s'", argv[optind - 1]);
      default:
      bad:
        return af_cli_usage_error(cmd, usage, "bad value '%s' for %s", optarg, optname(argv, optind, optarg));
    }
  }
  if (!a->model) return af_cli_usage_error(cmd, usage, "--model is required");
  if (optind >= argc) return af_cli_usage_error(cmd, usage, "no image given");
  a->first_image = optind;
  af_model_warn_demo(a->model, stderr); /* the bundled demo, mkmodel's random models */
  return -1;
}
