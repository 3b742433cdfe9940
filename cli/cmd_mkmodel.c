/* artflow mkmodel: writes a random-weight model of any size (tests, demo,
 * full-size benchmarks), streaming so memory stays small. */
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "convert/arch.h"
#include "convert/mkmodel.h"
#include "formats/gguf.h"

static const char usage[] =
    "usage: artflow mkmodel --arch ARCH.yaml --random [--seed S] [--type f32|f16|q8_0|q4_0]\n"
    "                       [--tokenizer tokenizer.model] -o MODEL.gguf\n"
    "\n"
    "Writes a model with random weights and the shapes of ARCH.yaml (its llm section\n"
    "must give hidden, layers, heads, ffn; vocab defaults to the tokenizer's size).\n"
    "Matrices ~ N(0, 0.02) (approximately), norm gains 1, biases 0.  Without --tokenizer a built-in\n"
    "byte-level vocabulary (367 pieces) is stored.\n"
    "\n"
    "  --arch FILE        architecture YAML (config/models/*.yaml)\n"
    "  --random           required: the only weight source mkmodel has\n"
    "  --seed S           random seed (default 1)\n"
    "  --type T           storage type of the large matrices (default f16)\n"
    "  --tokenizer FILE   SentencePiece tokenizer.model to store\n"
    "  -o FILE            output GGUF file\n";

int af_cmd_mkmodel(int argc, char **argv) {
  const char *arch_path = NULL, *out = NULL, *tok = NULL, *type_name = "f16";
  int random = 0;
  unsigned long long seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    }
    if (strcmp(a, "--random") == 0) {
      random = 1;
      continue;
    }
    static const char *const valued[] = {"--arch", "-o", "--output", "--tokenizer", "--type", "--seed"};
    int known = 0;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= strcmp(a, valued[k]) == 0;
    if (!known) return af_cli_usage_error("mkmodel", usage, "unknown option %s", a);
    if (i + 1 >= argc) return af_cli_usage_error("mkmodel", usage, "%s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--arch") == 0)
      arch_path = v;
    else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
      out = v;
    else if (strcmp(a, "--tokenizer") == 0)
      tok = v;
    else if (strcmp(a, "--type") == 0)
      type_name = v;
    else if (strcmp(a, "--seed") == 0) {
      char *end;
      seed = strtoull(v, &end, 10);
      if (!*v || *end) return af_cli_usage_error("mkmodel", usage, "--seed: not a number: %s", v);
    } else
      return af_cli_usage_error("mkmodel", usage, "unknown option %s", a);
  }
  if (!arch_path) return af_cli_usage_error("mkmodel", usage, "--arch is required");
  if (!out) return af_cli_usage_error("mkmodel", usage, "-o is required");
  if (!random) return af_cli_usage_error("mkmodel", usage, "--random is required");
  int type = af_ggml_type_from_name(type_name);
  if (type != AF_GGML_F32 && type != AF_GGML_F16 && type != AF_GGML_Q8_0 && type != AF_GGML_Q4_0)
    return af_cli_usage_error("mkmodel", usage, "--type must be f32, f16, q8_0 or q4_0 (not %s)", type_name);
  af_arch arch;
  int rc = af_arch_load(arch_path, &arch);
  if (rc)
    return rc == AF_ERR_CONFIG ? (af_cli_fail(rc, "mkmodel"), AF_EXIT_USAGE) : af_cli_fail(rc, "mkmodel");
  af_mkmodel_opts o = {.seed = seed, .type = type, .tokenizer = tok, .log = stderr};
  rc = af_mkmodel(&arch, arch_path, &o, out);
  if (rc) return af_cli_fail(rc, "mkmodel");
  fprintf(stderr, "mkmodel: wrote %s\n", out);
  return AF_EXIT_OK;
}
