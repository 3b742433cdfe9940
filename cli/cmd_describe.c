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
#include "cl/weights.h"
#include "cli/cli.h"
#include "pipeline/iofile.h"
#include "stages/describer.h"
#include "stages/image.h"
#include "stages/vision.h"

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
  af_weights *w = NULL;
  af_vit *vit = NULL;
  af_qformer *qf = NULL;
  af_queue *q = NULL;
  af_describer *llm = NULL;
  float *pix = NULL, *vt = NULL, *qo = NULL, *po = NULL;
  uint8_t *small = NULL;
  int rc = af_cl_open(&cl, device), failures = 0;
  if (!rc) rc = af_weights_open(cl, model, &w);
  if (!rc) rc = af_vit_new(cl, w, 1, &vit);
  if (!rc) rc = af_qformer_new(cl, w, 1, af_vit_shape_of(vit)->tokens, &qf);
  if (!rc) rc = af_queue_new(cl, &q);
  if (!rc && o.max_new_tokens > 0) rc = af_describer_new(cl, model, &o, &llm);
  if (rc) {
    int code = rc;
    rc = af_cli_fail(code, NULL);
    if (code == AF_ERR_NOT_IMPLEMENTED) rc = AF_EXIT_USAGE;
    goto out;
  }
  const af_vit_shape *vs = af_vit_shape_of(vit);
  const af_qformer_shape *fs = af_qformer_shape_of(qf);
  int S = vs->image_size;
  size_t T = vs->tokens, W = vs->width, Q = fs->queries, D = fs->width, L = fs->proj_out;
  float lut[3 * 256];
  af_image_norm_lut(vs->mean, vs->std, lut);
  pix = malloc(sizeof(float) * 3 * S * S);
  vt = malloc(sizeof(float) * T * W);
  qo = malloc(sizeof(float) * Q * D);
  po = malloc(sizeof(float) * Q * L);
  small = malloc((size_t)S * S * 3);
  if (!pix || !vt || !qo || !po || !small) {
    rc = af_cli_fail(af_err(AF_ERR_NOMEM, "out of memory"), NULL);
    goto out;
  }
  for (int i = optind; i < argc; i++) {
    const char *path = argv[i];
    af_image_u8 im = {0};
    char dir[4096] = "";
    int r = af_image_decode(path, NULL, &im);
    if (!r) r = af_image_resize_bicubic(im.data, im.w, im.h, small, S, S);
    af_image_free(&im);
    if (!r) {
      af_image_normalize_ref(small, (size_t)S * S, lut, pix);
      r = af_vit_encode(vit, q, pix, 1, vt);
    }
    if (!r) r = af_qformer_forward(qf, q, vt, 1, qo, po);
    if (!r && dump) {
      int64_t ps[3] = {3, S, S}, vsh[2] = {(int64_t)T, (int64_t)W}, qsh[2] = {(int64_t)Q, (int64_t)D},
              psh[2] = {(int64_t)Q, (int64_t)L};
      r = dump_dir(dump, path, dir, sizeof dir);
      if (!r) r = dump_tensor(dir, "pixels.npy", 3, ps, pix);
      if (!r) r = dump_tensor(dir, "vit.npy", 2, vsh, vt);
      if (!r) r = dump_tensor(dir, "qformer.npy", 2, qsh, qo);
      if (!r) r = dump_tensor(dir, "proj.npy", 2, psh, po);
    }
    if (!r && llm) r = af_describer_run(llm, path, po, (int)Q, dir[0] ? dir : NULL, stdout, NULL, NULL, NULL);
    if (!r && !llm) {
      if (json)
        printf("{\"image\":\"%s\",\"status\":\"ok\",\"text\":null}\n", path);
      else
        printf("%s: vision path done (%zu image embeddings of width %zu)%s%s\n", path, Q, L,
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
  free(pix), free(vt), free(qo), free(po), free(small);
  af_describer_free(llm);
  af_queue_free(q);
  af_qformer_free(qf);
  af_vit_free(vit);
  af_weights_free(w);
  af_cl_close(cl);
  return rc;
}
