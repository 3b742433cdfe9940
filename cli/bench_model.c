/* `artflow bench --model M.gguf`: whole-model benchmark on the selected
 * device: ViT (+ ln_vision) and Q-Former (+ projection) seconds and images/s
 * per batch size, LLM prefill and decode tokens/s, an end-to-end estimate per
 * described image; achieved GFLOPS and GB/s next to the device's peak
 * (measured copy and streaming-read bandwidth; FMA rate from a micro-benchmark on CPU devices,
 * from a table of spec-sheet numbers for known GPUs); the profile used.
 * `--compare P.yaml` runs a second profile in the same process (a fresh
 * context, weights and kernels each) and prints the ratios.  Timings are
 * best-of-N after a warm-up call (first calls compile kernels). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cl/devprofile.h"
#include "cl/runtime.h"
#include "cl/weights.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/json_out.h"
#include "core/iofile.h"
#include "formats/gguf.h"
#include "net/lm.h"
#include "net/vision.h"

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

/* LLM linear layers per position (attention scores left out: small at these lengths) */
static double llm_flops_per_pos(const af_lm_shape *s) {
  double H = s->hidden, F = s->ffn;
  return 2.0 * s->layers * (4 * H * H + 3 * H * F + 2 * H * s->adapter);
}

static const char usage[] =
    "usage: artflow bench --model MODEL.gguf [--images N] [--batch B] [--repeat R] [--json]\n"
    "       artflow bench --model MODEL.gguf --tag VOCAB... [--repeat R] [--json] [--device D]\n"
    "                     [--profile P.yaml] [--compare P2.yaml] [--vision-only | --llm-only] [--device D]\n"
    "       artflow bench ops [...]\n"
    "\n"
    "Whole-model benchmark on the device: ViT (+ ln_vision) and Q-Former (+ projection)\n"
    "seconds per image and images/s at batch 1 and batch B, LLM prefill and decode\n"
    "tokens/s, and an end-to-end estimate per described image (ViT + Q-Former at batch 1,\n"
    "prefill of the image queries + 40 prompt positions, 32 decode steps).  Next to the\n"
    "achieved GFLOPS and GB/s: the device's measured copy and streaming-read bandwidth\n"
    "(decode reads every weight once per step: read bandwidth is its limit), its FMA peak\n"
    "(a micro-benchmark on CPU devices, spec-sheet numbers for known GPUs), and the\n"
    "device profile used.  For the vision path of the full model use a random model from\n"
    "'artflow mkmodel --arch config/models/bench-vision-full.yaml --random -o M.gguf'.\n"
    "\n"
    "  --model FILE     model to run (required)\n"
    "  --images N       images per timed pass at batch B (default B)\n"
    "  --batch B        second batch size to time (default 4); also the number of sequences\n"
    "                   of the LLM's batched decode timing (default: the profile's batch.llm)\n"
    "  --repeat R       timed repetitions, best kept (default 2)\n"
    "  --profile FILE   device profile to use instead of the one selected for the device\n"
    "  --compare FILE   also run with this profile, in the same process, and print the\n"
    "                   ratios (first profile's time / second's: > 1 = the second is faster)\n"
    "  --vision-only    only the ViT and Q-Former\n"
    "  --llm-only       only the LLM: prefill of 100 positions and 16 decode steps, at batch 1\n"
    "                   and batched (B prompts prefilled in one pass, B sequences per decode\n"
    "                   step: aggregated and per-sequence tokens/s)\n"
    "  --tag VOCAB...   the tagging benchmark instead: per image, after the vision path, the\n"
    "                   vocabularies (files or shipped names) scored on one shared prefix, against\n"
    "                   one prompt prefill, one describe answer of 300 tokens, and the prompt\n"
    "                   re-prefilled per task and candidate (same model, same run)\n"
    "  --reference R.gguf  quality instead of speed: NMSE, KL divergence and top-1 agreement\n"
    "                   of MODEL's logits against R's (the f16 file of the same weights) over\n"
    "                   the positions of --text FILE (tokenised by MODEL's tokenizer, BOS first)\n"
    "  --text FILE      the text for --reference\n"
    "  --positions N    positions of the text compared (default 256)\n"
    "  --json           one JSON object instead of the table\n"
    "  --device D       OpenCL device index or name substring\n";

/* ---------------------------------------------------------------- peaks */

static double copy_bandwidth(af_cl *cl, af_queue *q) {
  size_t bytes = (size_t)256 << 20;
  if (bytes > cl->info.max_alloc / 2) bytes = (size_t)(cl->info.max_alloc / 2);
  cl_mem a = NULL, b = NULL;
  double best = 0;
  if (af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes, NULL, &a) ||
      af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes, NULL, &b))
    goto out;
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

/* Streaming read bandwidth, the limit of a decode step (every weight read
 * once): a 1 GiB sum, past the last-level cache, with the probe kernels of
 * gemv_cpu.cl (the one `bench ops` uses on CPUs; coalesced reads on GPUs). */
static double read_bandwidth(af_cl *cl, af_queue *q) {
  size_t bytes = (size_t)1 << 30;
  while (bytes > cl->info.max_alloc && bytes > ((size_t)64 << 20)) bytes /= 2;
  int cpu = cl->info.is_cpu;
  size_t items = cpu ? bytes / 65536 : 65536, l = cpu ? 1 : 64;
  cl_long n = (cl_long)(cpu ? 65536 / 64 : bytes / 16 / items); /* float16s or float4s per item */
  double best = 0;
  cl_kernel k;
  cl_mem buf = NULL, out = NULL;
  if (af_queue_kernel(q, "gemv_cpu.cl", cpu ? "af_gemv_cpu_stream" : "af_read_stream_coalesced", NULL, &k) ||
      af_cl_alloc(cl, CL_MEM_READ_ONLY, bytes, NULL, &buf) ||
      af_cl_alloc(cl, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &out))
    goto done;
  float zero = 0;
  clEnqueueFillBuffer(q->q, buf, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
  clSetKernelArg(k, 0, sizeof buf, &buf);
  clSetKernelArg(k, 1, sizeof n, &n);
  clSetKernelArg(k, 2, sizeof out, &out);
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    if (af_queue_run(q, k, 1, &items, &l, "read probe") || af_queue_finish(q)) goto done;
    double gbs = (double)bytes / (now() - t0) / 1e9;
    if (r > 0 && gbs > best) best = gbs;
  }
done:
  if (buf) clReleaseMemObject(buf);
  if (out) clReleaseMemObject(out);
  af_error_clear();
  return best;
}

/* FMA rate: 8 independent float16 fma chains per work-item; work-item 0 is
 * checked against the same recurrence in C (fmaf rounds once, as fma does). */
static const char fma_src[] =
    "__kernel void af_bench_fma(__global float *out, const int iters, const float a, const float b) {\n"
    "  float s0 = (float)get_global_id(0) * 1e-6f;\n"
    "  float16 x0 = s0 + (float16)(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 9.f, 10.f, 11.f, 12.f, 13.f, "
    "14.f, 15.f) * 0.01f;\n"
    "  float16 x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f, x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + "
    "0.6f, x7 = x0 + 0.7f;\n"
    "  for (int i = 0; i < iters; i++) {\n"
    "    x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);\n"
    "    x4 = fma(x4, a, b); x5 = fma(x5, a, b); x6 = fma(x6, a, b); x7 = fma(x7, a, b);\n"
    "  }\n"
    "  float16 s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));\n"
    "  float8 h = s.lo + s.hi; float4 q = h.lo + h.hi;\n"
    "  out[get_global_id(0)] = (q.s0 + q.s1) + (q.s2 + q.s3);\n"
    "}\n";

static double fma_reference(int iters, float a, float b) {
  float x[8][16];
  for (int c = 0; c < 8; c++)
    for (int l = 0; l < 16; l++) x[c][l] = 0.0f + (float)l * 0.01f + (c ? 0.1f * (float)c : 0.0f);
  for (int i = 0; i < iters; i++)
    for (int c = 0; c < 8; c++)
      for (int l = 0; l < 16; l++) x[c][l] = fmaf(x[c][l], a, b);
  double s = 0;
  for (int c = 0; c < 8; c++)
    for (int l = 0; l < 16; l++) s += x[c][l];
  return s;
}

static double fma_peak_measured(af_cl *cl, af_queue *q, int *checked) {
  cl_int e;
  const char *src = fma_src;
  double best = 0;
  *checked = 0;
  cl_program p = clCreateProgramWithSource(cl->ctx, 1, &src, NULL, &e);
  if (e != CL_SUCCESS) return 0;
  cl_kernel k = NULL;
  cl_mem out = NULL;
  size_t items = (size_t)(cl->info.compute_units ? cl->info.compute_units : 1) * 16;
  if (clBuildProgram(p, 1, &cl->device, "", NULL, NULL) != CL_SUCCESS) goto done;
  if (!(k = clCreateKernel(p, "af_bench_fma", &e)) || e != CL_SUCCESS) goto done;
  if (af_cl_alloc(cl, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &out)) goto done;
  int iters = 1 << 16;
  float a = 0.999999f, b = 1e-6f;
  for (int r = 0; r < 6; r++) {
    clSetKernelArg(k, 0, sizeof out, &out);
    clSetKernelArg(k, 1, sizeof iters, &iters);
    clSetKernelArg(k, 2, sizeof a, &a);
    clSetKernelArg(k, 3, sizeof b, &b);
    size_t l = 1;
    double t0 = now();
    if (clEnqueueNDRangeKernel(q->q, k, 1, NULL, &items, &l, 0, NULL, NULL) != CL_SUCCESS ||
        clFinish(q->q) != CL_SUCCESS)
      goto done;
    double t = now() - t0;
    if (r == 0) { /* check, and size the run to about 50 ms */
      float v0;
      if (clEnqueueReadBuffer(q->q, out, CL_TRUE, 0, sizeof v0, &v0, 0, NULL, NULL) != CL_SUCCESS) goto done;
      double ref = fma_reference(iters, a, b);
      if (!(fabs(v0 - ref) <= 1e-4 * fabs(ref))) goto done;
      *checked = 1;
      while (t < 0.05 && iters < (1 << 26)) iters *= 2, t *= 2;
      continue;
    }
    double gf = (double)items * iters * 8 * 16 * 2 / t / 1e9;
    if (gf > best) best = gf;
  }
done:
  if (out) clReleaseMemObject(out);
  if (k) clReleaseKernel(k);
  clReleaseProgram(p);
  af_error_clear();
  return *checked ? best : 0;
}

/* fp32 FMA peak from vendors' spec sheets (boost clocks), by device name */
static const struct {
  const char *name;
  double gflops;
} GPU_PEAK[] = {
    {"H200", 66900},   {"H100 PCIe", 51200}, {"H100", 66900},         {"A100", 19500},
    {"A10", 31200},    {"L40S", 91600},      {"L4", 30300},           {"V100", 15700},
    {"T4", 8100},      {"RTX 4090", 82600},  {"RTX 3090", 35600},     {"MI300X", 163400},
    {"MI250X", 47900}, {"MI210", 22600},     {"MI100", 23100},        {"gfx942", 163400},
    {"gfx90a", 47900}, {"gfx908", 23100},    {"Arc(TM) A770", 19700},
};

static double fma_peak(af_cl *cl, af_queue *q, const char **source) {
  if (!cl->info.is_cpu)
    for (size_t i = 0; i < sizeof GPU_PEAK / sizeof GPU_PEAK[0]; i++)
      if (strstr(cl->info.name, GPU_PEAK[i].name)) {
        *source = "spec sheet";
        return GPU_PEAK[i].gflops;
      }
  int checked;
  double g = fma_peak_measured(cl, q, &checked);
  *source = checked ? "measured" : "unknown";
  return g;
}

/* ---------------------------------------------------------------- runs */

typedef struct vis_res {
  int ok, nsizes, sizes[2], images;
  double vit_s[2], qf_s[2]; /* seconds per image */
  double warm, vf, qff;
  int layers, tokens, width, qlayers, queries;
} vis_res;

typedef struct llm_res {
  int ok, layers, hidden, n_prompt;
  double prefill_s, decode_s, flops_per_pos;
  unsigned long long wbytes;
  int dbatch;      /* sequences of the batched decode timing (0 = not run) */
  double dbatch_s; /* seconds per batched step (dbatch tokens) */
  double pbatch_s; /* seconds of the batched prefill (dbatch x n_prompt positions) */
  unsigned long long kv_bytes;
  int kv_half;
} llm_res;

typedef struct run_res {
  char profile[64], why[768];
  double copy_gbs, read_gbs, fma_gflops;
  const char *fma_source;
  vis_res v;
  llm_res l;
  double e2e_s;
  unsigned long long peak_rss, file_bytes; /* the process's VmHWM after the run; the model file's size */
} run_res;

typedef struct bench_opts {
  const char *model, *device;
  int batch, images, repeat, json, llm_only, vision_only;
  int batch_given; /* --batch given: also the LLM's decode batch (else the profile's batch.llm) */
} bench_opts;

/* LLM: prefill of n_prompt positions and n_decode single-token steps;
 * tokens/s and the weight bytes streamed per decode step / time. */
static int bench_llm(af_cl *cl, af_weights *w, int n_prompt, int n_decode, int dbatch, llm_res *res) {
  af_lm *lm = NULL;
  af_queue *q = NULL;
  uint64_t before = af_weights_device_bytes(w); /* the vision path may have loaded its weights already */
  int rc = af_lm_new(cl, w, n_prompt + n_decode + 2, &lm);
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
  if (!rc) rc = af_lm_forward(lm, q, x, 1, n_prompt, logits); /* warm-up of the decode kernels */
  t0 = now();
  for (int i = 0; i < n_decode && !rc; i++) rc = af_lm_forward(lm, q, x, 1, n_prompt + i, logits);
  double decode = (now() - t0) / n_decode;
  /* batched prefill: dbatch prompts of n_prompt positions in one pass, each
   * into its own KV-cache slot (one timed run: the kernels are the batch-1
   * prefill's); then batched decode: n_decode steps of one token for all */
  double dstep = 0, pstep = 0;
  if (!rc && dbatch > 1) {
    float *xb = malloc(sizeof(float) * (size_t)dbatch * H),
          *lb = malloc(sizeof(float) * (size_t)dbatch * s->vocab);
    float *xp = malloc(sizeof(float) * (size_t)dbatch * (size_t)n_prompt * H);
    int *slots = malloc(sizeof(int) * (size_t)dbatch), *pos = malloc(sizeof(int) * (size_t)dbatch);
    if (!xb || !lb || !xp || !slots || !pos) rc = af_err(AF_ERR_NOMEM, "out of memory");
    if (!rc) rc = af_lm_reserve(lm, q, dbatch, n_prompt + n_decode + 1);
    for (int b = 0; b < dbatch && !rc; b++) {
      memcpy(xp + (size_t)b * n_prompt * H, x, sizeof(float) * (size_t)n_prompt * H);
      slots[b] = b, pos[b] = n_prompt;
    }
    t0 = now();
    if (!rc) rc = af_lm_prefill_batch(lm, q, dbatch, slots, pos, xp, lb); /* pos[b] = n_prompt: the lengths */
    pstep = now() - t0;
    free(xp);
    for (int b = 0; b < dbatch && !rc; b++) memcpy(xb + (size_t)b * H, x, sizeof(float) * H);
    if (!rc) rc = af_lm_decode_batch(lm, q, dbatch, slots, pos, xb, lb); /* warm-up */
    t0 = now();
    for (int i = 0; i < n_decode && !rc; i++) {
      for (int b = 0; b < dbatch; b++) pos[b] = n_prompt + i;
      rc = af_lm_decode_batch(lm, q, dbatch, slots, pos, xb, lb);
    }
    dstep = (now() - t0) / n_decode;
    free(xb), free(lb), free(slots), free(pos);
  }
  if (!rc) {
    res->dbatch = dbatch > 1 ? dbatch : 0, res->dbatch_s = dstep, res->pbatch_s = pstep;
    res->kv_bytes = af_lm_kv_bytes(lm), res->kv_half = af_lm_kv_half(lm);
    res->ok = 1;
    res->layers = s->layers, res->hidden = s->hidden, res->n_prompt = n_prompt;
    res->prefill_s = prefill, res->decode_s = decode;
    res->wbytes = af_weights_device_bytes(w) - before; /* the LLM's weights only */
    res->flops_per_pos = llm_flops_per_pos(s);
  }
  free(x), free(logits);
out:
  af_queue_free(q);
  af_lm_free(lm);
  return rc;
}

static int bench_vision(af_cl *cl, af_weights *w, const bench_opts *o, vis_res *res) {
  af_vit *v = NULL;
  af_qformer *f = NULL;
  af_queue *q = NULL;
  float *pix = NULL, *vout = NULL, *pout = NULL;
  int batch = o->batch, rc = af_vit_new(cl, w, batch, &v);
  if (!rc) rc = af_qformer_new(cl, w, batch, af_vit_shape_of(v)->tokens, &f);
  if (!rc) rc = af_queue_new(cl, &q);
  if (rc) goto out;
  const af_vit_shape *vs = af_vit_shape_of(v);
  const af_qformer_shape *fs = af_qformer_shape_of(f);
  size_t npix = 3 * (size_t)vs->image_size * vs->image_size, nv = (size_t)vs->tokens * vs->width;
  pix = calloc(npix * batch, sizeof(float));
  vout = malloc(nv * batch * sizeof(float));
  pout = malloc((size_t)fs->queries * fs->proj_out * batch * sizeof(float));
  if (!pix || !vout || !pout) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < npix * batch; i++) pix[i] = sinf((float)i * 0.001f);
  double t0 = now();
  if ((rc = af_vit_encode(v, q, pix, 1, vout)) || (rc = af_qformer_forward(f, q, vout, 1, NULL, pout)))
    goto out; /* warm-up: uploads weights, compiles kernels */
  res->warm = now() - t0;
  int images = o->images > 0 ? o->images : batch;
  res->sizes[0] = 1, res->sizes[1] = batch, res->nsizes = batch > 1 || images > 1 ? 2 : 1,
  res->images = images;
  for (int s = 0; s < res->nsizes && !rc; s++) {
    int n_img = s ? images : 1;
    double bv = INFINITY, bq = INFINITY;
    for (int r = 0; r < o->repeat && !rc; r++) {
      double tv = 0, tq = 0;
      for (int done = 0; done < n_img && !rc; done += res->sizes[s]) {
        int nb = n_img - done < res->sizes[s] ? n_img - done : res->sizes[s];
        t0 = now();
        if ((rc = af_vit_encode(v, q, pix, nb, vout))) break;
        double t1 = now();
        if ((rc = af_qformer_forward(f, q, vout, nb, NULL, pout))) break;
        tv += t1 - t0, tq += now() - t1;
      }
      bv = fmin(bv, tv), bq = fmin(bq, tq);
    }
    res->vit_s[s] = bv / n_img, res->qf_s[s] = bq / n_img;
  }
  if (rc) goto out;
  res->vf = vit_flops(vs), res->qff = qformer_flops(fs);
  res->layers = vs->layers, res->tokens = vs->tokens, res->width = vs->width, res->qlayers = fs->layers;
  res->queries = fs->queries;
  res->ok = 1;
out:
  free(pix), free(vout), free(pout);
  af_queue_free(q);
  af_qformer_free(f);
  af_vit_free(v);
  return rc;
}

/* one whole run with one profile (NULL = the device's own selection): its own
 * context, weights and kernels */
static int run_profile(const bench_opts *o, const char *profile, run_res *r) {
  memset(r, 0, sizeof *r);
  af_cl *cl = NULL;
  af_weights *w = NULL;
  af_queue *q = NULL;
  int rc = af_cl_open_profile(&cl, o->device, profile); /* selects and applies it */
  if (rc) return rc;
  snprintf(r->profile, sizeof r->profile, "%s", cl->profile->name);
  snprintf(r->why, sizeof r->why, "%s", cl->profile->why);
  rc = af_queue_new(cl, &q);
  if (!rc) {
    r->copy_gbs = copy_bandwidth(cl, q);
    r->read_gbs = read_bandwidth(cl, q);
    r->fma_gflops = fma_peak(cl, q, &r->fma_source);
  }
  if (!rc) rc = af_weights_open(cl, o->model, &w);
  int has_llm = 0;
  if (!rc) {
    uint32_t layers;
    has_llm = !af_gguf_get_u32(af_weights_gguf(w), "llama.block_count", &layers) && layers > 0;
  }
  if (!rc && !o->llm_only) rc = bench_vision(cl, w, o, &r->v);
  int dbatch = o->batch_given ? o->batch : af_devprofile_batch(cl->profile, "llm");
  if (!rc && !o->vision_only && has_llm) rc = bench_llm(cl, w, 100, 16, dbatch, &r->l);
  if (!rc && r->v.ok && r->l.ok) {
    double pf = (r->v.queries + 40) * (r->l.prefill_s / r->l.n_prompt);
    r->e2e_s = r->v.vit_s[0] + r->v.qf_s[0] + pf + 32 * r->l.decode_s;
  }
  af_queue_free(q);
  af_weights_free(w);
  af_cl_close(cl);
  r->peak_rss = af_bench_peak_rss();
  struct stat st;
  r->file_bytes = stat(o->model, &st) ? 0 : (unsigned long long)st.st_size;
  return rc;
}

unsigned long long af_bench_peak_rss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) kb = strtoull(line + 6, NULL, 10);
  if (f) fclose(f);
  return kb * 1024;
}

/* ---------------------------------------------------------------- output */

static void print_text(const bench_opts *o, const run_res *r) {
  printf("profile: %s (%s)\n", r->profile, r->why);
  printf("device peak: copy %.1f GB/s, streaming read %.1f GB/s (measured), FMA %.0f GFLOPS (%s)\n",
         r->copy_gbs, r->read_gbs, r->fma_gflops, r->fma_source);
  const vis_res *v = &r->v;
  if (v->ok) {
    printf(
        "vision: ViT %d blocks, %d tokens x %d; Q-Former %d layers; first call (upload + compile) %.1f s\n",
        v->layers, v->tokens, v->width, v->qlayers, v->warm);
    printf("%-6s %7s %13s %10s %15s %16s %11s %15s\n", "batch", "images", "vit s/image", "vit img/s",
           "vit GFLOPS", "qformer s/image", "qformer img/s", "qformer GFLOPS");
    for (int s = 0; s < v->nsizes; s++) {
      double g = v->vf / v->vit_s[s] / 1e9, gq = v->qff / v->qf_s[s] / 1e9;
      printf("%-6d %7d %13.4f %10.3f %8.1f (%3.0f%%) %16.4f %11.2f %8.1f (%3.0f%%)\n", v->sizes[s],
             s ? v->images : 1, v->vit_s[s], 1 / v->vit_s[s], g,
             r->fma_gflops > 0 ? 100 * g / r->fma_gflops : 0, v->qf_s[s], 1 / v->qf_s[s], gq,
             r->fma_gflops > 0 ? 100 * gq / r->fma_gflops : 0);
    }
    printf("(ViT %.1f GFLOP/image, Q-Former %.2f GFLOP/image; %% of the FMA peak; best of %d)\n", v->vf / 1e9,
           v->qff / 1e9, o->repeat);
  }
  const llm_res *l = &r->l;
  if (l->ok) {
    double pg = l->flops_per_pos * l->n_prompt / l->prefill_s / 1e9, gbs = l->wbytes / l->decode_s / 1e9;
    printf("LLM (%d layers, hidden %d, %.2f GB of device weights):\n", l->layers, l->hidden, l->wbytes / 1e9);
    printf("  batch 1 prefill %d positions: %.2f tokens/s, %.1f GFLOPS (%.0f%% of FMA peak)\n", l->n_prompt,
           l->n_prompt / l->prefill_s, pg, r->fma_gflops > 0 ? 100 * pg / r->fma_gflops : 0);
    printf(
        "  batch 1 decode: %.1f ms/token = %.2f tokens/s, %.1f GB/s of weights (%.0f%% of streaming read, "
        "%.0f%% of copy bandwidth)\n",
        l->decode_s * 1e3, 1 / l->decode_s, gbs, r->read_gbs > 0 ? 100 * gbs / r->read_gbs : 0,
        r->copy_gbs > 0 ? 100 * gbs / r->copy_gbs : 0);
    if (l->dbatch) {
      printf("  batch %d prefill %d x %d positions: %.2f tokens/s aggregated (%.2fx the batch-1 prefill)\n",
             l->dbatch, l->dbatch, l->n_prompt, l->dbatch * l->n_prompt / l->pbatch_s,
             l->dbatch * l->prefill_s / l->pbatch_s);
      printf(
          "  batch %d decode: %.1f ms/step = %.2f tokens/s aggregated, %.2f tokens/s per sequence (%.2fx the "
          "batch-1 throughput)\n",
          l->dbatch, l->dbatch_s * 1e3, l->dbatch / l->dbatch_s, 1 / l->dbatch_s,
          l->dbatch * l->decode_s / l->dbatch_s);
    }
    int nseq = l->dbatch ? l->dbatch : 1;
    printf("  KV cache: %.1f MB (%s, %d sequence%s of %llu positions)\n", l->kv_bytes / 1e6,
           l->kv_half ? "fp16" : "fp32", nseq, nseq > 1 ? "s" : "",
           l->kv_bytes / (2ull * l->layers * l->hidden * (l->kv_half ? 2 : 4) * nseq));
  }
  if (r->peak_rss)
    printf("peak resident set: %.2f GB (model file %.2f GB: %.2fx)\n", r->peak_rss / 1e9, r->file_bytes / 1e9,
           r->file_bytes ? (double)r->peak_rss / (double)r->file_bytes : 0);
  if (r->e2e_s > 0)
    printf(
        "end-to-end per described image (estimate: ViT + Q-Former at batch 1, prefill of %d positions, 32 "
        "decode steps): %.3f s\n",
        v->queries + 40, r->e2e_s);
}

/* one profile's run as JSON keys of o (cli/json_out.h: cJSON, non-finite
 * numbers null), with the text output's precision */
static void json_run(cJSON *o, const run_res *r) {
  af_json_add_text(o, "profile", r->profile, NULL);
  af_json_add_text(o, "profile_why", r->why, NULL);
  af_json_num(o, "copy_gb_s", r->copy_gbs, 2);
  af_json_num(o, "read_gb_s", r->read_gbs, 2);
  af_json_num(o, "fma_gflops", r->fma_gflops, 1);
  cJSON_AddStringToObject(o, "fma_source", r->fma_source ? r->fma_source : "unknown");
  const vis_res *v = &r->v;
  if (v->ok) {
    af_json_num(o, "first_call_s", v->warm, 3);
    af_json_num(o, "vit_gflop_per_image", v->vf / 1e9, 2);
    af_json_num(o, "qformer_gflop_per_image", v->qff / 1e9, 3);
    cJSON *runs = cJSON_AddArrayToObject(o, "runs");
    for (int s = 0; s < v->nsizes; s++) {
      cJSON *x = cJSON_CreateObject();
      cJSON_AddNumberToObject(x, "batch", v->sizes[s]);
      cJSON_AddNumberToObject(x, "images", s ? v->images : 1);
      af_json_num(x, "vit_s_per_image", v->vit_s[s], 4);
      af_json_num(x, "vit_images_s", 1 / v->vit_s[s], 4);
      af_json_num(x, "vit_gflops", v->vf / v->vit_s[s] / 1e9, 2);
      af_json_num(x, "qformer_s_per_image", v->qf_s[s], 4);
      af_json_num(x, "qformer_images_s", 1 / v->qf_s[s], 3);
      af_json_num(x, "qformer_gflops", v->qff / v->qf_s[s] / 1e9, 2);
      cJSON_AddItemToArray(runs, x);
    }
  }
  const llm_res *l = &r->l;
  if (l->ok) {
    cJSON_AddNumberToObject(o, "llm_layers", l->layers);
    cJSON_AddNumberToObject(o, "hidden", l->hidden);
    cJSON_AddNumberToObject(o, "prefill_tokens", l->n_prompt);
    af_json_num(o, "prefill_tokens_s", l->n_prompt / l->prefill_s, 2);
    af_json_num(o, "prefill_gflops", l->flops_per_pos * l->n_prompt / l->prefill_s / 1e9, 2);
    af_json_num(o, "decode_ms_per_token", l->decode_s * 1e3, 2);
    af_json_num(o, "decode_tokens_s", 1 / l->decode_s, 3);
    af_json_num(o, "weight_gb_s", l->wbytes / l->decode_s / 1e9, 2);
  }
  if (l->ok && l->dbatch) {
    cJSON_AddNumberToObject(o, "decode_batch", l->dbatch);
    af_json_num(o, "decode_batch_ms_per_step", l->dbatch_s * 1e3, 2);
    af_json_num(o, "decode_batch_tokens_s", l->dbatch / l->dbatch_s, 3);
    af_json_num(o, "decode_batch_tokens_s_per_seq", 1 / l->dbatch_s, 3);
    af_json_num(o, "prefill_batch_tokens_s", l->dbatch * l->n_prompt / l->pbatch_s, 2);
  }
  if (l->ok) {
    cJSON_AddNumberToObject(o, "kv_cache_bytes", (double)l->kv_bytes);
    cJSON_AddStringToObject(o, "kv_cache", l->kv_half ? "f16" : "f32");
  }
  if (r->e2e_s > 0) af_json_num(o, "e2e_s_per_image", r->e2e_s, 4);
  if (r->peak_rss) {
    cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)r->peak_rss);
    cJSON_AddNumberToObject(o, "model_file_bytes", (double)r->file_bytes);
  }
}

/* first / second for each time measured by both (> 1: the second is faster):
 * a "ratio" object in json, else lines of text */
static void print_ratios(cJSON *json, const run_res *a, const run_res *b) {
  typedef struct {
    const char *name;
    double x, y;
  } metric;
  metric m[10];
  int n = 0;
  for (int s = 0; a->v.ok && b->v.ok && s < a->v.nsizes && s < b->v.nsizes; s++) {
    m[n++] = (metric){s ? "vit_batch" : "vit_batch1", a->v.vit_s[s], b->v.vit_s[s]};
    m[n++] = (metric){s ? "qformer_batch" : "qformer_batch1", a->v.qf_s[s], b->v.qf_s[s]};
  }
  if (a->l.ok && b->l.ok) {
    m[n++] = (metric){"prefill", a->l.prefill_s, b->l.prefill_s};
    m[n++] = (metric){"decode", a->l.decode_s, b->l.decode_s};
    if (a->l.dbatch && a->l.dbatch == b->l.dbatch) {
      m[n++] = (metric){"prefill_batch", a->l.pbatch_s, b->l.pbatch_s};
      m[n++] = (metric){"decode_batch", a->l.dbatch_s, b->l.dbatch_s};
    }
  }
  if (a->e2e_s > 0 && b->e2e_s > 0) m[n++] = (metric){"e2e", a->e2e_s, b->e2e_s};
  if (json) {
    cJSON *ratio = cJSON_AddObjectToObject(json, "ratio");
    for (int i = 0; i < n; i++) af_json_num(ratio, m[i].name, m[i].x / m[i].y, 3);
    return;
  }
  printf("\nratio %s / %s (time with the first profile / time with the second; > 1: the second is faster)\n",
         a->profile, b->profile);
  for (int i = 0; i < n; i++)
    printf("  %-15s %8.2fx   (%.4f s vs %.4f s)\n", m[i].name, m[i].x / m[i].y, m[i].x, m[i].y);
}

/* CLBlast overrides stay in force for the device once applied (CLBlast has
 * no way back to its database values), so the run whose profile overrides
 * fewer CLBlast kernels goes first */
static int count_overrides(const char *file, const af_cl *probe, int *n, char *names, size_t cap) {
  af_devprofile *p = malloc(sizeof *p);
  if (!p) return af_err(AF_ERR_NOMEM, "out of memory");
  int rc = af_devprofile_select(&probe->info, file, p);
  *n = rc ? 0 : p->n_overrides;
  names[0] = 0;
  for (int i = 0, l = 0; !rc && i < p->n_overrides && (size_t)l < cap; i++)
    l += snprintf(names + l, cap - (size_t)l, "%s%s/%d", i ? " " : "", p->overrides[i].kernel,
                  p->overrides[i].precision);
  free(p);
  return rc;
}

int af_bench_model(int argc, char **argv) {
  bench_opts o = {.batch = 4, .repeat = 2};
  const char *profile = NULL, *compare = NULL, *reference = NULL, *text = NULL;
  int positions = 256;
  const char **tags = calloc((size_t)argc, sizeof *tags);
  int n_tags = 0;
  if (!tags) return af_cli_fail(af_err(AF_ERR_NOMEM, "out of memory"), NULL);
  for (int i = 1; i < argc; i++) {
    if (af_cli_is_help(argv[i])) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    } else if (!strcmp(argv[i], "--json")) {
      o.json = 1;
    } else if (!strcmp(argv[i], "--tag")) {
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) tags[n_tags++] = argv[++i];
      if (!n_tags) return free(tags), af_cli_usage_error("bench", usage, "--tag needs vocabularies");
    } else if (!strcmp(argv[i], "--llm-only")) {
      o.llm_only = 1;
    } else if (!strcmp(argv[i], "--vision-only")) {
      o.vision_only = 1;
    } else if (i + 1 < argc && !strcmp(argv[i], "--model")) {
      o.model = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--device")) {
      o.device = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--reference")) {
      reference = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--text")) {
      text = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--positions")) {
      positions = atoi(argv[++i]);
      if (positions < 2 || positions > 65536)
        return af_cli_usage_error("bench", usage, "--positions must be 2..65536");
    } else if (i + 1 < argc && !strcmp(argv[i], "--profile")) {
      profile = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--compare")) {
      compare = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--batch")) {
      o.batch = atoi(argv[++i]);
      o.batch_given = 1;
      if (o.batch < 1 || o.batch > 64) return af_cli_usage_error("bench", usage, "--batch must be 1..64");
    } else if (i + 1 < argc && !strcmp(argv[i], "--images")) {
      o.images = atoi(argv[++i]);
      if (o.images < 1 || o.images > 4096)
        return af_cli_usage_error("bench", usage, "--images must be 1..4096");
    } else if (i + 1 < argc && !strcmp(argv[i], "--repeat")) {
      o.repeat = atoi(argv[++i]);
      if (o.repeat < 1 || o.repeat > 100)
        return af_cli_usage_error("bench", usage, "--repeat must be 1..100");
    } else {
      return af_cli_usage_error("bench", usage, "unknown option or missing value '%s'", argv[i]);
    }
  }
  if (!o.model) {
    free(tags);
    return af_cli_usage_error("bench", usage, "--model is required for the whole-model benchmark");
  }
  if (n_tags) {
    int ec = af_bench_tag(o.model, o.device, tags, n_tags, o.repeat, o.json);
    free(tags);
    return ec;
  }
  free(tags);
  if (!reference != !text) return af_cli_usage_error("bench", usage, "--reference and --text go together");
  if (reference) {
    int rc = af_bench_quality(o.model, reference, text, positions, o.device, o.json);
    return rc ? af_cli_fail(rc, NULL) : AF_EXIT_OK;
  }
  if (o.llm_only && o.vision_only)
    return af_cli_usage_error("bench", usage, "--llm-only and --vision-only exclude each other");
  run_res *res = calloc(2, sizeof *res);
  if (!res) return af_cli_fail(af_err(AF_ERR_NOMEM, "out of memory"), NULL);
  const char *files[2] = {profile, compare};
  int order[2] = {0, 1}, nruns = compare ? 2 : 1, rc = 0;
  char device_name[256] = "";
  {
    af_cl *probe = NULL; /* the device, for the profiles' CLBlast overrides */
    if ((rc = af_cl_open(&probe, o.device))) {
      free(res);
      return af_cli_fail(rc, NULL);
    }
    snprintf(device_name, sizeof device_name, "%s", probe->info.name);
    if (compare) {
      int n[2];
      char names[2][512];
      for (int k = 0; k < 2 && !rc; k++)
        rc = count_overrides(files[k], probe, &n[k], names[k], sizeof names[k]);
      if (!rc && n[1] < n[0]) order[0] = 1, order[1] = 0;
      if (!rc && n[0] && n[1] && strcmp(names[0], names[1]))
        fprintf(stderr,
                "bench: both profiles override CLBlast kernels (%s | %s); an override the second run lacks "
                "stays in force from the first\n",
                names[0], names[1]);
    }
    af_cl_close(probe);
    if (rc) {
      free(res);
      return af_cli_fail(rc, NULL);
    }
  }
  for (int k = 0; k < nruns && !rc; k++) {
    int i = order[k];
    if (!o.json)
      fprintf(stderr, "bench: run %d of %d with profile %s\n", k + 1, nruns,
              files[i] ? files[i] : "(device's own)");
    if ((rc = run_profile(&o, files[i], &res[i]))) rc = af_cli_fail(rc, o.model);
  }
  if (!rc) {
    if (o.json) {
      cJSON *j = cJSON_CreateObject();
      af_json_add_text(j, "device", device_name, NULL);
      af_json_add_text(j, "model", o.model, "model_bytes");
      if (compare) {
        cJSON *profiles = cJSON_AddArrayToObject(j, "profiles");
        for (int i = 0; i < 2; i++) {
          cJSON *p = cJSON_CreateObject();
          json_run(p, &res[i]);
          cJSON_AddItemToArray(profiles, p);
        }
        print_ratios(j, &res[0], &res[1]);
      } else {
        json_run(j, &res[0]);
      }
      rc = af_json_print(j);
    } else {
      printf("device: %s\nmodel: %s\n", device_name, o.model);
      for (int i = 0; i < nruns; i++) {
        if (compare)
          printf("\n== %s profile: %s\n", i ? "second" : "first", files[i] ? files[i] : "(device's own)");
        print_text(&o, &res[i]);
      }
      if (compare) print_ratios(NULL, &res[0], &res[1]);
      rc = AF_EXIT_OK;
    }
  }
  free(res);
  return rc;
}
