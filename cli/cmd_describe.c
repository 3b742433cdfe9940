/* artflow describe: images -> (vision path) -> text, without a pipeline file.
 * Decode and Pillow-exact preprocessing on the host, ViT + Q-Former + projection
 * on the device, then text generation by the LLM (stages/llm.c) unless
 * --max-new-tokens 0.  --dump DIR writes the intermediate tensors per image. */
#include <getopt.h>
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
  const char *model = NULL, *device = NULL, *dump = NULL;
  int json = 0;
  enum { O_MODEL = 256, O_QUESTION, O_DUMP, O_JSON, O_DEVICE };
  static const struct option opts[] = {
      {"model", required_argument, 0, O_MODEL}, {"question", required_argument, 0, O_QUESTION},
      {"dump", required_argument, 0, O_DUMP},   {"json", no_argument, 0, O_JSON},
      {"device", required_argument, 0, O_DEVICE}, {"help", no_argument, 0, 'h'},
      AF_CLI_GEN_OPTIONS, {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
    int g = af_cli_gen_option(c, optarg, &o, 0);
    if (g > 0) continue;
    if (g < 0) goto bad;
    switch (c) {
      case 'h': fputs(usage, stdout); return AF_EXIT_OK;
      case O_MODEL: model = optarg; break;
      case O_QUESTION: o.question = optarg; break;
      case O_DUMP: dump = optarg; break;
      case O_JSON: json = 1; break;
      case O_DEVICE: device = optarg; break;
      case '?':
        if (optopt) return af_cli_usage_error("describe", usage, "option '%s' needs a value", argv[optind - 1]);
        return af_cli_usage_error("describe", usage, "unknown option '%s'", argv[optind - 1]);
      default:
      bad:
        return af_cli_usage_error("describe", usage, "bad value '%s' for %s", optarg, af_cli_optname(argv, optind, optarg));
    }
  }
  if (!model) return af_cli_usage_error("describe", usage, "--model is required");
  if (optind >= argc) return af_cli_usage_error("describe", usage, "no image given");
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
  for (int i = optind; i < argc; i++) {
    const char *path = argv[i];
    char dir[4096] = "";
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
