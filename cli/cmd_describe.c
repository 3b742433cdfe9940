/* artflow describe: images -> (vision path) -> text, without a pipeline file.
 * Decode and Pillow-exact preprocessing on the host, ViT + Q-Former + projection
 * on the device, then text generation by the LLM (stages/llm.c) unless
 * --max-new-tokens 0.  --dump DIR writes the intermediate tensors per image. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/runtime.h"
#include "cli/cli.h"
#include "pipeline/iofile.h"
#include "stages/describer.h"

static const char usage[] =
    "usage: artflow describe IMAGE... --model MODEL.gguf [options]\n"
    "\n"
    "Describes each image with the model: decode, resize (Pillow BICUBIC), normalise,\n"
    "EVA ViT + Q-Former + projection on the OpenCL device, then the LLM writes the text.\n"
    "\n"
    "options:\n"
    "  --model FILE          model file made by 'artflow convert' or 'artflow mkmodel' (required)\n"
    "  --llm FILE            a GGUF with the base LLM (e.g. a llama.cpp Vicuna f16/q8_0/q4_0 file);\n"
    "                        tensors and metadata are taken from --model first, then from FILE\n"
    "  --question TEXT       question about the image (default: the model's, e.g.\n"
    "                        'Describe this image in detail.')\n"
    "  --greedy              pick the most likely token each step (deterministic)\n"
    "  --temperature T       sampling temperature (default 1.0)\n"
    "  --top-k K             keep the K most likely tokens (default 50; 0 = off)\n"
    "  --top-p P             nucleus sampling mass (default 0.9)\n"
    "  --seed S              random seed for sampling (default 0)\n"
    "  --max-new-tokens N    longest answer in tokens (default 300); 0 runs the vision path only\n"
    "  --max-length N        prompt + answer positions (default 2000, at most the model's context);\n"
    "                        a longer prompt keeps its last N - max-new-tokens positions, as the\n"
    "                        original Chat.answer does (with a warning)\n"
    "  --dump DIR            write DIR/<image stem>/{pixels,vit,qformer,proj}.npy (and with N > 0\n"
    "                        logits0.npy, prompt_ids.txt, ids.txt)\n"
    "  --json                one JSON object per image on stdout instead of plain text\n"
    "  --device D            OpenCL device index or name substring (default: ARTFLOW_DEVICE,\n"
    "                        else the first GPU, else the first CPU)\n";

static int dump_tensor(const char *dir, const char *name, int ndim, const int64_t *shape, const float *data) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return af_npy_write(path, AF_DTYPE_F32, ndim, shape, data, 0);
}

/* DIR/<stem of path>, created */
static int dump_dir(const char *root, const char *image, char *out, size_t n) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", image);
  char *base = basename(tmp), *dot = strrchr(base, '.');
  if (dot && dot != base) *dot = 0;
  snprintf(out, n, "%s/%s", root, base);
  return af_mkdirs(out);
}

int af_cmd_describe(int argc, char **argv) {
  af_describe_opts o;
  af_describe_opts_default(&o);
  af_cli_image_args a;
  int pr = af_cli_image_args_parse(argc, argv, "describe", usage, 0, &o, &a);
  if (pr >= 0) return pr;
  const char *model = a.model, *device = a.device, *dump = a.dump;
  int json = a.json;
  if (a.question) o.question = a.question;
  o.dump_dir = dump;
  o.json = json;

  af_cl *cl = NULL;
  af_cli_embedder e = {0};
  af_describer *llm = NULL;
  int rc = af_cl_open(&cl, device), failures = 0;
  if (!rc) rc = af_cli_embedder_open(cl, model, &e);
  if (!rc && o.max_new_tokens > 0) rc = af_describer_new(cl, model, &o, &llm);
  if (rc) {
    int code = rc;
    rc = af_cli_fail(code, NULL);
    if (code == AF_ERR_NOT_IMPLEMENTED) rc = AF_EXIT_USAGE;
    goto out;
  }
  for (int i = a.first_image; i < argc; i++) {
    const char *path = argv[i];
    char dir[4096] = "";
    if (llm && i > a.first_image) af_describer_release_host(llm);
    int r = af_cli_embed(&e, path);
    if (!r && dump) {
      int64_t ps[3] = {3, e.S, e.S}, vsh[2] = {(int64_t)e.T, (int64_t)e.W}, qsh[2] = {(int64_t)e.Q, (int64_t)e.D},
              psh[2] = {(int64_t)e.Q, (int64_t)e.L};
      r = dump_dir(dump, path, dir, sizeof dir);
      if (!r) r = dump_tensor(dir, "pixels.npy", 3, ps, e.pix);
      if (!r) r = dump_tensor(dir, "vit.npy", 2, vsh, e.vt);
      if (!r) r = dump_tensor(dir, "qformer.npy", 2, qsh, e.qo);
      if (!r) r = dump_tensor(dir, "proj.npy", 2, psh, e.po);
    }
    /* each model's mapped pages leave the resident set while the other one
     * runs (the LLM's above, before the next image's vision path; the vision
     * model's here): peak RSS of a 7B q4_0 model with ViT-g 6.0 -> 4.0 GiB,
     * time within 1 % (docs/profiles.md); the pages come back from the page cache */
    if (llm) af_weights_release_host(e.w);
    if (!r && llm) r = af_describer_run(llm, path, e.po, (int)e.Q, dir[0] ? dir : NULL, stdout, NULL, NULL, NULL);
    if (!r && !llm) {
      if (json)
        printf("{\"image\":\"%s\",\"status\":\"ok\",\"text\":null}\n", path);
      else
        printf("%s: vision path done (%zu image embeddings of width %zu)%s%s\n", path, e.Q, e.L,
               dir[0] ? ", tensors in " : "", dir);
    }
    if (r) {
      failures++;
      fprintf(stderr, "artflow describe: %s\n", af_error_message()[0] ? af_error_message() : af_strerror(r));
      af_error_clear();
    }
    fflush(stdout);
  }
  rc = failures ? AF_EXIT_FAIL : AF_EXIT_OK;
out:
  af_describer_free(llm);
  af_cli_embedder_close(&e);
  af_cl_close(cl);
  return rc;
}
