/* artflow convert: the release checkpoints into one GGUF model file. */
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "convert/convert.h"
#include "formats/gguf.h"

static const char usage[] =
    "usage: artflow convert --arch ARCH.yaml --vit eva_vit_g.pth\n"
    "                       --qformer blip2_pretrained_flant5xxl.pth --llm VICUNA_DIR\n"
    "                       [--adapter ArtGPT-4.pth] -o MODEL.gguf [--type f32|f16|q8_0|q4_0]\n"
    "                       [--no-llm-base] [--demo NOTE]\n"
    "\n"
    "Reads the original checkpoints (PyTorch zip .pth/.bin, safetensors, sharded HF\n"
    "folders; no Python needed) and writes one GGUF file.  Prints a key-coverage\n"
    "report (used / ignored with reason / missing) and fails on any missing tensor\n"
    "or a shape that disagrees with ARCH.yaml.  --adapter gives llama_proj and, for\n"
    "ArtGPT-4, the ImageAdapters and the re-trained RMSNorm gains.\n"
    "\n"
    "Each component keeps the precision the original runs it at; --type is the LLM's:\n"
    "  ViT (EVA ViT-g) matrices      f16 (the original's vit_precision)\n"
    "  Q-Former and projection       f32\n"
    "  LLM matrices                  --type: f16 (default), q8_0 or q4_0 (rows that\n"
    "                                do not fill a quant block: f16)\n"
    "  norms, biases, small tensors  f32\n"
    "--type f32 stores every component in f32.\n"
    "\n"
    "--no-llm-base leaves out what comes unchanged from the Vicuna\n"
    "folder (its matrices, embeddings and the norms ArtGPT-4 did not re-train): the\n"
    "file then runs with a base LLM GGUF, e.g. one made by llama.cpp\n"
    "(artflow describe --model MODEL.gguf --llm VICUNA.gguf).  --demo NOTE marks a\n"
    "file whose weights are not meaningful (e.g. random test checkpoints): describe,\n"
    "chat and run then warn with NOTE and the records carry it.\n"
    "\n"
    "Memory: the inputs are mapped, not read in (the page cache holds them), and\n"
    "the heap stays within 64 MiB of converted floats, plus per PyTorch file its\n"
    "data.pkl (at most 64 MiB) and the objects it builds (at most 256 MiB), per\n"
    "safetensors file its header (at most 16 MiB), and one deflated storage at a\n"
    "time, inflated only as far as the tensors the architecture accepted reach\n"
    "(torch.save stores storages uncompressed: they are read through the map).\n"
    "A file past these limits, or a zip bomb (an entry inflating past its declared\n"
    "size or claiming more than deflate's 1032:1), is refused with one line.\n";

int af_cmd_convert(int argc, char **argv) {
  af_convert_opts o = {0};
  const char *type_name = "f16";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    }
    if (strcmp(a, "--no-llm-base") == 0) {
      o.no_llm_base = 1;
      continue;
    }
    static const char *const valued[] = {"--arch", "--vit",    "--qformer", "--llm", "--adapter",
                                         "-o",     "--output", "--type",    "--demo"};
    int known = 0;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= strcmp(a, valued[k]) == 0;
    if (!known) return af_cli_usage_error("convert", usage, "unknown option %s", a);
    if (i + 1 >= argc) return af_cli_usage_error("convert", usage, "%s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--arch") == 0)
      o.arch = v;
    else if (strcmp(a, "--vit") == 0)
      o.vit = v;
    else if (strcmp(a, "--qformer") == 0)
      o.qformer = v;
    else if (strcmp(a, "--llm") == 0)
      o.llm = v;
    else if (strcmp(a, "--adapter") == 0)
      o.adapter = v;
    else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
      o.out = v;
    else if (strcmp(a, "--type") == 0)
      type_name = v;
    else if (strcmp(a, "--demo") == 0)
      o.demo = v;
    else
      return af_cli_usage_error("convert", usage, "unknown option %s", a);
  }
  if (!o.arch || !o.vit || !o.qformer || !o.llm || !o.out)
    return af_cli_usage_error("convert", usage, "--arch, --vit, --qformer, --llm and -o are required");
  o.type = af_ggml_type_from_name(type_name);
  if (o.type != AF_GGML_F32 && o.type != AF_GGML_F16 && o.type != AF_GGML_Q8_0 && o.type != AF_GGML_Q4_0)
    return af_cli_usage_error("convert", usage, "--type must be f32, f16, q8_0 or q4_0 (not %s)", type_name);
  o.report = stdout;
  int rc = af_convert(&o);
  if (rc) return af_cli_fail(rc, "convert");
  return AF_EXIT_OK;
}
