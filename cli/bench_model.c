/* `artflow bench --model M.gguf`: whole-model benchmark of the vision path
 * (ViT + ln_vision, Q-Former + projection) on the selected device: seconds and
 * images/s per batch size, achieved GFLOPS from the model's shapes, and the
 * device's measured copy bandwidth and FMA rate next to them.  Timings are
 * best-of-N after a warm-up call (first calls compile kernels). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl/runtime.h"
#include "cl/weights.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "stages/lm.h"
#include "stages/vision.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* FLOPs of one image through the ViT (2 per multiply-add) */
static double vit_flops(const af_vit_shape *s) {
  double T = s->tokens, W = s->width, M = s->mlp_width, P = s->patch_size, G = s->image_size / s->patch_size;
  double per_layer = 2 * T * (W * 3 * W + W * W + 2 * W * M) + 4 * T * T * W;
  return 2 * G * G * 3 * P * P * W + s->layers * per_layer;
}

static double qformer_flops(const af_qformer_shape *s) {
  double Q = s->queries, D = s->width, F = s->ffn, T = s->image_tokens, Dv = s->vision_width;
  double f = 0;
  for (int l = 0; l < s->layers; l++) {
    f += 2 * Q * 4 * D * D + 4 * Q * Q * D + 2 * Q * 2 * D * F;
    if (l % s->cross_every == 0) f += 2 * Q * 2 * D * D + 2 * T * 2 * Dv * D + 4 * Q * T * D;
  }
  return f + 2 * Q * D * s->proj_out;
}

static const char usage[] =
    "usage: artflow bench --model MODEL.gguf [--images N] [--batch B] [--repeat R] [--json] [--device D]\n"
    "       artflow bench ops [...]\n"
    "\n"
    "Whole-model benchmark of the vision path on the device: ViT (+ ln_vision) and\n"
    "Q-Former (+ projection) seconds per image at batch 1 and batch B, achieved GFLOPS,\n"
    "and the device's measured copy bandwidth.  Use a full-size random model from\n"
    "'artflow mkmodel --arch config/models/bench-vision-full.yaml --random -o M.gguf'.\n"
    "--llm-only times the LLM instead: prefill of 100 positions and 16 decode steps\n"
    "(tokens/s, and weight GB/s against the copy bandwidth of `bench ops`).\n"
    "\n"
    "  --model FILE   model to run (required)\n"
    "  --batch B      second batch size to time (default 4)\n"
    "  --repeat R     timed repetitions, best kept (default 2)\n"
    "  --json         one JSON object instead of the table\n"
    "  --llm-only     benchmark the LLM (prefill, decode) instead of the vision path\n"
    "  --device D     OpenCL device index or name substring\n";

static double copy_bandwidth(af_cl *cl, af_queue *q) {
  size_t bytes = (size_t)256 << 20;
  if (bytes > cl->info.max_alloc / 2) bytes = (size_t)(cl->info.max_alloc / 2);
  cl_mem a = NULL, b = NULL;
  double best = 0;
  if (af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes, NULL, &a) || af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes, NULL, &b)) goto out;
  float zero = 0;
  clEnqueueFillBuffer(q->q, a, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
  clFinish(q->q);
  for (int r = 0; r < 4; r++) {
    double t0 = now();
    clEnqueueCopyBuffer(q->q, a, b, 0, 0, bytes, 0, NULL, NULL);
    clFinish(q->q);
    double gbs = 2.0 * bytes / (now() - t0) / 1e9; /* read + write */
    if (r > 0 && gbs > best) best = gbs;
  }
out:
  if (a) clReleaseMemObject(a);
  if (b) clReleaseMemObject(b);
  af_error_clear();
  return best;
}

/* LLM: prefill of n_prompt positions and n_decode single-token steps;
 * tokens/s and the weight bytes streamed per decode step / time. */
static int bench_llm(af_cl *cl, af_weights *w, int json, int n_prompt, int n_decode) {
  af_lm *lm = NULL;
  af_queue *q = NULL;
  int rc = af_lm_new(cl, w, n_prompt + n_decode + 1, &lm);
  if (!rc) rc = af_queue_new(cl, &q);
  if (rc) goto out;
  const af_lm_shape *s = af_lm_shape_of(lm);
  size_t H = (size_t)s->hidden;
  float *x = calloc((size_t)n_prompt * H, sizeof(float)), *logits = malloc(sizeof(float) * (size_t)s->vocab);
  if (!x || !logits) {
    free(x), free(logits);
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < (size_t)n_prompt * H; i++) x[i] = 0.01f * sinf((float)i);
  rc = af_lm_forward(lm, q, x, n_prompt, 0, logits); /* warm-up: uploads weights, compiles */
  double t0 = now();
  if (!rc) rc = af_lm_forward(lm, q, x, n_prompt, 0, logits);
  double prefill = now() - t0;
  t0 = now();
  for (int i = 0; i < n_decode && !rc; i++) rc = af_lm_forward(lm, q, x, 1, n_prompt + i, logits);
  double decode = (now() - t0) / n_decode;
  uint64_t wbytes = af_weights_device_bytes(w);
  if (!rc) {
    if (json)
      printf("{\"llm_layers\":%d,\"hidden\":%d,\"prefill_tokens\":%d,\"prefill_tokens_s\":%.2f,"
             "\"decode_ms_per_token\":%.2f,\"decode_tokens_s\":%.3f,\"weight_gb_s\":%.2f}\n",
             s->layers, s->hidden, n_prompt, n_prompt / prefill, decode * 1e3, 1.0 / decode, wbytes / decode / 1e9);
    else
      printf("LLM (%d layers, hidden %d, %.2f GB of device weights): prefill %d positions %.2f tokens/s; "
             "decode %.1f ms/token = %.2f tokens/s, %.1f GB/s of weights\n",
             s->layers, s->hidden, wbytes / 1e9, n_prompt, n_prompt / prefill, decode * 1e3, 1.0 / decode,
             wbytes / decode / 1e9);
  }
  free(x), free(logits);
out:
  af_queue_free(q);
  af_lm_free(lm);
  return rc;
}

int af_bench_model(int argc, char **argv) {
  const char *model = NULL, *device = NULL;
  int batch = 4, repeat = 2, json = 0, llm_only = 0;
  for (int i = 1; i < argc; i++) {
    if (af_cli_is_help(argv[i])) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--llm-only")) {
      llm_only = 1;
    } else if (i + 1 < argc && !strcmp(argv[i], "--model")) {
      model = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--device")) {
      device = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--batch")) {
      batch = atoi(argv[++i]);
      if (batch < 1 || batch > 64) return af_cli_usage_error("bench", usage, "--batch must be 1..64");
    } else if (i + 1 < argc && !strcmp(argv[i], "--repeat")) {
      repeat = atoi(argv[++i]);
      if (repeat < 1 || repeat > 100) return af_cli_usage_error("bench", usage, "--repeat must be 1..100");
    } else {
      return af_cli_usage_error("bench", usage, "unknown option or missing value '%s'", argv[i]);
    }
  }
  if (!model) return af_cli_usage_error("bench", usage, "--model is required for the whole-model benchmark");
  af_cl *cl = NULL;
  af_weights *w = NULL;
  af_vit *v = NULL;
  af_qformer *f = NULL;
  af_queue *q = NULL;
  float *pix = NULL, *vout = NULL, *pout = NULL;
  int rc = af_cl_open(&cl, device);
  if (!rc) rc = af_weights_open(cl, model, &w);
  if (!rc && llm_only) {
    rc = bench_llm(cl, w, json, 100, 16);
    if (rc) rc = af_cli_fail(rc, model);
    goto out;
  }
  if (!rc) rc = af_vit_new(cl, w, batch, &v);
  if (!rc) rc = af_qformer_new(cl, w, batch, af_vit_shape_of(v)->tokens, &f);
  if (!rc) rc = af_queue_new(cl, &q);
  if (rc) {
    rc = af_cli_fail(rc, model);
    goto out;
  }
  const af_vit_shape *vs = af_vit_shape_of(v);
  const af_qformer_shape *fs = af_qformer_shape_of(f);
  size_t npix = 3 * (size_t)vs->image_size * vs->image_size, nv = (size_t)vs->tokens * vs->width;
  pix = calloc(npix * batch, sizeof(float));
  vout = malloc(nv * batch * sizeof(float));
  pout = malloc((size_t)fs->queries * fs->proj_out * batch * sizeof(float));
  if (!pix || !vout || !pout) {
    rc = af_cli_fail(af_err(AF_ERR_NOMEM, "out of memory"), NULL);
    goto out;
  }
  for (size_t i = 0; i < npix * batch; i++) pix[i] = sinf((float)i * 0.001f);
  double bw = copy_bandwidth(cl, q);
  int sizes[2] = {1, batch}, nsizes = batch > 1 ? 2 : 1;
  double vit_s[2] = {0}, qf_s[2] = {0};
  double t0 = now();
  if ((rc = af_vit_encode(v, q, pix, 1, vout)) || (rc = af_qformer_forward(f, q, vout, 1, NULL, pout))) {
    rc = af_cli_fail(rc, model); /* warm-up: uploads weights, compiles kernels */
    goto out;
  }
  double warm = now() - t0;
  for (int s = 0; s < nsizes; s++) {
    vit_s[s] = qf_s[s] = INFINITY;
    for (int r = 0; r < repeat; r++) {
      t0 = now();
      if ((rc = af_vit_encode(v, q, pix, sizes[s], vout))) break;
      double t1 = now();
      if ((rc = af_qformer_forward(f, q, vout, sizes[s], NULL, pout))) break;
      vit_s[s] = fmin(vit_s[s], t1 - t0);
      qf_s[s] = fmin(qf_s[s], now() - t1);
    }
    if (rc) {
      rc = af_cli_fail(rc, model);
      goto out;
    }
  }
  double vf = vit_flops(vs), qff = qformer_flops(fs);
  if (json) {
    printf("{\"device\":\"%s\",\"model\":\"%s\",\"copy_gb_s\":%.2f,\"first_call_s\":%.3f,\"vit_gflop_per_image\":%.2f,"
           "\"qformer_gflop_per_image\":%.3f,\"runs\":[",
           cl->info.name, model, bw, warm, vf / 1e9, qff / 1e9);
    for (int s = 0; s < nsizes; s++)
      printf("%s{\"batch\":%d,\"vit_s_per_image\":%.4f,\"vit_gflops\":%.2f,\"qformer_s_per_image\":%.4f,"
             "\"qformer_gflops\":%.2f}",
             s ? "," : "", sizes[s], vit_s[s] / sizes[s], vf * sizes[s] / vit_s[s] / 1e9, qf_s[s] / sizes[s],
             qff * sizes[s] / qf_s[s] / 1e9);
    printf("]}\n");
  } else {
    printf("device: %s\nmodel: %s (ViT %d blocks, %d tokens x %d; Q-Former %d layers)\n", cl->info.name, model,
           vs->layers, vs->tokens, vs->width, fs->layers);
    printf("device copy bandwidth: %.1f GB/s; first call (upload + compile): %.1f s\n", bw, warm);
    printf("%-6s %14s %12s %12s %16s %14s\n", "batch", "vit s/image", "vit img/s", "vit GFLOPS", "qformer s/image",
           "qformer GFLOPS");
    for (int s = 0; s < nsizes; s++)
      printf("%-6d %14.3f %12.3f %12.1f %16.4f %14.1f\n", sizes[s], vit_s[s] / sizes[s], sizes[s] / vit_s[s],
             vf * sizes[s] / vit_s[s] / 1e9, qf_s[s] / sizes[s], qff * sizes[s] / qf_s[s] / 1e9);
    printf("(ViT %.1f GFLOP/image, Q-Former %.2f GFLOP/image; best of %d)\n", vf / 1e9, qff / 1e9, repeat);
  }
  rc = AF_EXIT_OK;
out:
  free(pix), free(vout), free(pout);
  af_queue_free(q);
  af_qformer_free(f);
  af_vit_free(v);
  af_weights_free(w);
  af_cl_close(cl);
  return rc;
}
