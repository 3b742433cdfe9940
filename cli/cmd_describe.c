/* artflow describe: images -> text, without a pipeline file.  The images go
 * through the same engine and stages as `artflow run` (cli/images.c):
 * decode, Pillow-exact preprocessing, ViT + Q-Former + projection and, unless
 * --max-new-tokens 0, the llm stage.  Its generation flags are the llm
 * stage's parameter rows (cli/flags.c): the same names, defaults and ranges
 * as a pipeline's `llm:` keys.  --dump DIR writes the intermediate tensors per
 * image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "core/iofile.h"
#include "formats/gguf.h"

static const char head[] =
    "usage: artflow describe IMAGE... --model MODEL.gguf [options]\n"
    "\n"
    "Describes each image with the model: decode, resize (Pillow BICUBIC), normalise,\n"
    "EVA ViT + Q-Former + projection on the OpenCL device, then the LLM writes the text\n"
    "(the pipeline engine and stages of 'artflow run'; the answer is streamed as it grows).\n"
    "\n"
    "options:\n"
    "  --model FILE          model file made by 'artflow convert' or 'artflow mkmodel' (required)\n"
    "  --llm FILE            a GGUF with the base LLM (e.g. a llama.cpp Vicuna f16/q8_0/q4_0 file);\n"
    "                        tensors and metadata are taken from --model first, then from FILE\n";
static const char tail[] =
    "  --dump DIR            write DIR/<image stem>/{pixels,vit,qformer,proj}.npy (and with N > 0\n"
    "                        logits0.npy, prompt_ids.txt, ids.txt); images with the same stem get\n"
    "                        DIR/<stem>-2, -3, ...\n"
    "  --json                one JSON object per image on stdout instead of plain text\n"
    "  --device D            OpenCL device index or name substring (default: ARTFLOW_DEVICE,\n"
    "                        else the first GPU, else the first CPU)\n"
    "\n"
    "The generation flags are the llm stage's parameters ('artflow inspect stage llm').\n"
    "exit status: 0 every image described, 1 an image or the run failed, 2 usage error.\n";
static const char *const skip[] = {"details", "tasks", "interleave",
                                   NULL}; /* tasks: artflow tag, pipelines; interleave: serve */
static const char *const extra[] = {"max_new_tokens", "; 0 runs the vision path only", NULL};

/* --max-new-tokens 0: the vision path only (the llm stage's rows start at 1) */
static int vision_only(const char *a, const char *next) {
  return (!strcmp(a, "--max-new-tokens") && next && !strcmp(next, "0")) || !strcmp(a, "--max-new-tokens=0");
}

int af_cmd_describe(int argc, char **argv) {
  af_cli_flags f;
  int rc = af_cli_flags_init(&f, "llm", skip);
  char *usage = rc ? NULL : af_cli_usage_text(head, &f, extra, tail);
  af_cli_images r = {.cmd = "describe", .with_llm = 1};
  const char **images = calloc((size_t)argc, sizeof *images);
  char **args = calloc((size_t)argc + 1, sizeof *args);
  int exitc = usage && images && args ? -1 : af_cli_fail(rc ? rc : AF_ERR_NOMEM, "describe"), n = 0;
  /* --max-new-tokens 0 (the vision path only) is describe's own: the llm
   * stage's rows start at 1 */
  for (int i = 0; exitc < 0 && i < argc; i++) {
    if (i && vision_only(argv[i], i + 1 < argc ? argv[i + 1] : NULL))
      r.with_llm = 0, i += argv[i][16] != '=';
    else
      args[n++] = argv[i];
  }
  const af_cli_opt opts[] = {{"--model", &r.model, NULL}, {"--llm", &r.llm_model, NULL},
                             {"--dump", &r.dump, NULL},   {"--device", &r.device, NULL},
                             {"--json", NULL, &r.json},   {NULL, NULL, NULL}};
  if (exitc < 0) exitc = af_cli_parse(n, args, "describe", usage, opts, &f, images, &r.n_images);
  if (exitc < 0 && !r.model) exitc = af_cli_usage_error("describe", usage, "--model is required");
  if (exitc < 0 && !r.n_images) exitc = af_cli_usage_error("describe", usage, "no image given");
  if (exitc < 0) {
    r.images = images;
    r.sets = (const char *const *)f.sets, r.n_sets = f.n_sets;
    exitc = af_cli_images_run(&r);
  }
  free(args);
  free(images);
  free(usage);
  af_cli_flags_free(&f);
  return exitc;
}
