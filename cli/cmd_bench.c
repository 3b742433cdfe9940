/* artflow bench: `bench ops` is not in this build yet; the whole-model
 * benchmark lives in cli/bench_model.c. */
#include <string.h>

#include "cli/bench.h"
#include "cli/cli.h"

static const char usage[] =
    "usage: artflow bench --model MODEL.gguf [options]   (whole model; see --model --help)\n"
    "       artflow bench ops                          (not in this build yet)\n";

int af_cmd_bench(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "ops")) return af_cli_not_implemented("bench ops", usage, argc - 1, argv + 1);
  if (argc > 1 && af_cli_is_help(argv[1])) return af_bench_model(argc, argv);
  return af_bench_model(argc, argv);
}
