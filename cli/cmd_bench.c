/* artflow bench: `bench ops` (cli/bench_ops.c) or the whole model
 * (cli/bench_model.c). */
#include <stdio.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/cli.h"

static const char usage[] =
    "usage: artflow bench ops [--json] [--repeat N] [--device D]\n"
    "       artflow bench --model MODEL.gguf [--images N] [--batch B] [--repeat R] [--json]\n"
    "                     [--profile P.yaml] [--compare P2.yaml] [--vision-only | --llm-only] [--device D]\n"
    "\n"
    "bench ops    every op (GEMM, GEMV fp32/fp16, norms, softmax, GELU, SiLU, add, mul,\n"
    "             RoPE, gather) on the model's real shapes: ms, GFLOPS, GB/s, and GB/s as a\n"
    "             share of the device's measured copy bandwidth.\n"
    "bench --model  the whole model: ViT and Q-Former s/image and images/s at batch 1\n"
    "             and B, LLM prefill and decode tokens/s, an end-to-end estimate per\n"
    "             described image, GFLOPS and GB/s next to the device's peak, the profile\n"
    "             used; --compare P2.yaml runs a second profile in the same process and\n"
    "             prints the ratios ('artflow bench --model M --help' for all options).\n"
    "\n"
    "Timings are the best of N after a warm-up run; compare ratios measured in one run.\n";

int af_cmd_bench(int argc, char **argv) {
  if (argc < 2) return af_cli_usage_error("bench", usage, "say 'ops' or give --model");
  if (af_cli_is_help(argv[1])) {
    fputs(usage, stdout);
    return AF_EXIT_OK;
  }
  if (!strcmp(argv[1], "ops")) {
    const char *device = NULL;
    char *rest[64];
    int n = 0;
    for (int i = 1; i < argc && n < 63; i++) {
      if (af_cli_is_help(argv[i])) {
        fputs(usage, stdout);
        return AF_EXIT_OK;
      }
      if (!strcmp(argv[i], "--device") && i + 1 < argc)
        device = argv[++i];
      else
        rest[n++] = argv[i];
    }
    rest[n] = NULL;
    return af_bench_ops(n, rest, device);
  }
  return af_bench_model(argc, argv);
}
