/* `artflow bench ops`: every op of cl/ops.h on the model's real shapes, with
 * GFLOPS and GB/s from its cl/opdesc.c description, next to the device's
 * measured copy bandwidth (the memory-bound ops' ceiling).  Best of N runs
 * after a warm-up run (the first run compiles kernels). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl/opdesc.h"
#include "cl/ops.h"
#include "cli/bench.h"
#include "cli/cli.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
  const char *op;
  const char *label;
  double m, n, k, b;
} bcase;

/* ViT-g and LLaMA-7B decode shapes (issue text), plus the row/element ops at
 * the sizes the model runs them. */
static const bcase cases[] = {
    {"gemm", "ViT qkv 257x1408x4224", 257, 4224, 1408, 1},
    {"gemm", "ViT fc1 257x1408x6144", 257, 6144, 1408, 1},
    {"gemm", "ViT fc2 257x6144x1408", 257, 1408, 6144, 1},
    {"gemv_f32", "decode 1x4096x4096", 0, 4096, 4096, 1},
    {"gemv_f16", "decode 1x4096x4096", 0, 4096, 4096, 1},
    {"gemv_f16", "decode 1x4096x11008", 0, 11008, 4096, 1},
    {"gemv_f16", "decode 8x4096x11008", 0, 11008, 4096, 8},
    {"gemv_f32", "decode 8x4096x4096", 0, 4096, 4096, 8},
    {"layernorm", "ViT 257x1408", 257, 1408, 0, 0},
    {"rmsnorm", "LLM prefill 100x4096", 100, 4096, 0, 0},
    {"softmax", "ViT scores 16x257x257", 16 * 257, 257, 0, 0},
    {"gelu", "ViT MLP 257x6144", 257 * 6144, 0, 0, 0},
    {"silu", "LLM MLP 100x11008", 100 * 11008, 0, 0, 0},
    {"add", "residual 257x1408", 257 * 1408, 0, 0, 0},
    {"mul", "SwiGLU 100x11008", 100 * 11008, 0, 0, 0},
    {"rope", "prefill 100 tokens x 32x128", 100, 4096, 0, 0},
    {"gather", "embeddings 100x4096", 100, 4096, 0, 0},
};

static int run_case(af_queue *q, const bcase *c, cl_mem *buf, cl_mem ids, cl_mem w16) {
  af_dbuf b0 = {buf[0], 0}, b1 = {buf[1], 0}, b2 = {buf[2], 0};
  size_t m = (size_t)c->m, n = (size_t)c->n, k = (size_t)c->k;
  if (!strcmp(c->op, "gemm")) return af_op_gemm(q, 0, 1, m, n, k, 1.0f, b0, k, b1, k, 0.0f, b2, n);
  if (!strcmp(c->op, "gemv_f32")) return af_op_gemv(q, buf[1], 0, n, k, b0, (int)c->b, b2, NULL);
  if (!strcmp(c->op, "gemv_f16")) return af_op_gemv(q, w16, 1, n, k, b0, (int)c->b, b2, NULL);
  if (!strcmp(c->op, "layernorm")) return af_op_layernorm(q, b0, m, n, buf[1], buf[1], 1e-6f, b2);
  if (!strcmp(c->op, "rmsnorm")) return af_op_rmsnorm(q, b0, m, n, buf[1], 1e-6f, b2);
  if (!strcmp(c->op, "softmax")) return af_op_softmax(q, b0, m, n, 1.0f, 0, 0, 0);
  if (!strcmp(c->op, "gelu")) return af_op_gelu(q, b0, m);
  if (!strcmp(c->op, "silu")) return af_op_silu(q, b0, m);
  if (!strcmp(c->op, "add")) return af_op_add(q, b2, b0, m);
  if (!strcmp(c->op, "mul")) return af_op_mul(q, b2, b0, m);
  if (!strcmp(c->op, "rope")) return af_op_rope(q, b0, m, 32, 128, 0, 10000.0f, 0);
  if (!strcmp(c->op, "gather")) return af_op_gather(q, buf[1], 0, 1000, n, ids, m, b2);
  return af_err(AF_ERR_INVALID, "bench: unknown op %s", c->op);
}

static double copy_gbs(af_queue *q, cl_mem a, cl_mem b, size_t bytes) {
  double best = 0;
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    clEnqueueCopyBuffer(q->q, a, b, 0, 0, bytes, 0, NULL, NULL);
    clFinish(q->q);
    double g = 2.0 * bytes / (now() - t0) / 1e9;
    if (r && g > best) best = g;
  }
  return best;
}

int af_bench_ops(int argc, char **argv, const char *device) {
  int json = 0, repeat = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json"))
      json = 1;
    else if (i + 1 < argc && !strcmp(argv[i], "--repeat"))
      repeat = atoi(argv[++i]);
    else
      return af_cli_usage_error("bench", NULL, "unknown option '%s' for 'bench ops'", argv[i]);
  }
  if (repeat < 1 || repeat > 1000) return af_cli_usage_error("bench", NULL, "--repeat must be 1..1000");
  af_cl *cl = NULL;
  af_queue *q = NULL;
  cl_mem buf[3] = {0}, ids = NULL, w16 = NULL;
  size_t bytes = (size_t)200 << 20; /* covers the largest case (11008 x 4096 fp32 = 180 MB) */
  int rc = af_cl_open(&cl, device);
  if (!rc && bytes > cl->info.max_alloc) bytes = (size_t)cl->info.max_alloc;
  if (!rc) rc = af_queue_new(cl, &q);
  for (int i = 0; i < 3 && !rc; i++) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes, NULL, &buf[i]);
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes / 2, NULL, &w16);
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, 4096 * sizeof(int32_t), NULL, &ids);
  if (rc) {
    rc = af_cli_fail(rc, "bench ops");
    goto out;
  }
  float v = 0.001f;
  for (int i = 0; i < 3; i++) clEnqueueFillBuffer(q->q, buf[i], &v, sizeof v, 0, bytes, 0, NULL, NULL);
  clEnqueueFillBuffer(q->q, w16, &v, sizeof v, 0, bytes / 2, 0, NULL, NULL);
  int zero = 0;
  clEnqueueFillBuffer(q->q, ids, &zero, sizeof zero, 0, 4096 * sizeof(int32_t), 0, NULL, NULL);
  clFinish(q->q);
  double bw = copy_gbs(q, buf[0], buf[1], bytes);
  if (json)
    printf("{\"device\":\"%s\",\"copy_gb_s\":%.2f,\"ops\":[", cl->info.name, bw);
  else {
    printf("device: %s\ndevice copy bandwidth (read + write): %.1f GB/s\n", cl->info.name, bw);
    printf("%-10s %-30s %10s %10s %10s %9s\n", "op", "shape", "ms", "GFLOPS", "GB/s", "of copy");
  }
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const bcase *c = &cases[i];
    const af_opdesc *d = af_opdesc_find(c->op);
    double best = INFINITY;
    for (int r = 0; r <= repeat && !rc; r++) { /* r = 0 is the warm-up */
      double t0 = now();
      rc = run_case(q, c, buf, ids, w16);
      if (!rc) rc = af_queue_finish(q);
      if (r) best = fmin(best, now() - t0);
    }
    if (rc) {
      rc = af_cli_fail(rc, c->op);
      goto out;
    }
    double fl = d->flops(c->m, c->n, c->k, c->b) / best / 1e9, gb = d->bytes(c->m, c->n, c->k, c->b) / best / 1e9;
    if (json)
      printf("%s{\"op\":\"%s\",\"shape\":\"%s\",\"ms\":%.4f,\"gflops\":%.2f,\"gb_s\":%.2f,\"of_copy\":%.3f}",
             i ? "," : "", c->op, c->label, best * 1e3, fl, gb, gb / bw);
    else
      printf("%-10s %-30s %10.3f %10.1f %10.1f %8.0f%%\n", c->op, c->label, best * 1e3, fl, gb, 100 * gb / bw);
  }
  if (json) printf("]}\n");
  rc = AF_EXIT_OK;
out:
  for (int i = 0; i < 3; i++)
    if (buf[i]) clReleaseMemObject(buf[i]);
  if (ids) clReleaseMemObject(ids);
  if (w16) clReleaseMemObject(w16);
  af_queue_free(q);
  af_cl_close(cl);
  return rc;
}
