/* artflow export --llm-only: the LLM part of a model file as a GGUF that
 * llama.cpp loads (convert/export.h). */
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "convert/export.h"

static const char usage[] =
    "usage: artflow export --llm-only --model MODEL.gguf [--llm BASE.gguf] -o OUT.gguf\n"
    "\n"
    "Writes the LLM part of an artflow model file as a GGUF file that llama.cpp\n"
    "and other GGUF tools load as a plain LLaMA (general.architecture \"llama\"):\n"
    "the token embeddings, each layer's attention and FFN matrices and RMSNorm\n"
    "gains, the final norm and the output matrix under llama.cpp's tensor names,\n"
    "q/k rows in llama.cpp's interleaved RoPE order, the llama.* hyper-parameters,\n"
    "general.file_type as llama.cpp's enum and the tokenizer (tokenizer.ggml.*).\n"
    "Tensors keep their stored type and bytes (f32, f16, q8_0, q4_0): nothing is\n"
    "re-quantised.  A summary of what was written and left out goes to stdout.\n"
    "\n"
    "Left out: the vision encoder, the Q-Former, the projection and ArtGPT-4's\n"
    "ImageAdapters.  An adapter adds up(GELU(down(h))) to every position after\n"
    "each attention block; the GELU between its two matrices is not linear, so\n"
    "no change to LLaMA's own matrices gives the same output, and llama.cpp's\n"
    "LLaMA has no place for the extra block.  ArtGPT-4's re-trained RMSNorm gains\n"
    "(they replace Vicuna's in the model file) ARE kept.  The export is therefore\n"
    "Vicuna with ArtGPT-4's gains, not ArtGPT-4's LLM: its text differs from what\n"
    "artflow generates with the adapters.\n"
    "\n"
    "options:\n"
    "  --llm-only         export the LLM (the only part artflow exports; required)\n"
    "  --model MODEL.gguf an artflow model file (artflow convert / mkmodel)\n"
    "  --llm BASE.gguf    MODEL was converted with --no-llm-base: the base LLM's\n"
    "                     tensors come from BASE.gguf, MODEL's gains win\n"
    "  -o, --output OUT   the file to write (never one of the inputs)\n";

int af_cmd_export(int argc, char **argv) {
  af_export_opts o = {0};
  int llm_only = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    }
    if (!strcmp(a, "--llm-only")) {
      llm_only = 1;
      continue;
    }
    const char **dst = !strcmp(a, "--model")                        ? &o.model
                       : !strcmp(a, "--llm")                        ? &o.llm
                       : !strcmp(a, "-o") || !strcmp(a, "--output") ? &o.out
                                                                    : NULL;
    if (!dst) return af_cli_usage_error("export", usage, "unknown option %s", a);
    if (i + 1 >= argc) return af_cli_usage_error("export", usage, "%s needs a value", a);
    *dst = argv[++i];
  }
  if (!llm_only)
    return af_cli_usage_error("export", usage,
                              "say what to export: --llm-only (the only part artflow exports)");
  if (!o.model || !o.out) return af_cli_usage_error("export", usage, "--model and -o are required");
  o.report = stdout;
  int rc = af_export_llm(&o);
  return rc ? af_cli_fail(rc, "export") : AF_EXIT_OK;
}
