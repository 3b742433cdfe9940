/* `artflow bench ops`: every op of cl/ops.h on the model's real shapes, with
 * GFLOPS and GB/s from its cl/opdesc.c description, next to the device's
 * measured copy bandwidth (the memory-bound ops' ceiling).  Best of N runs
 * after a warm-up run (the first run compiles kernels). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "artflow/status.h"
#include "cl/opdesc.h"
#include "cl/ops.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/json_out.h"
#include "core/iofile.h"

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
  if (!strcmp(c->op, "rope")) return af_op_rope(q, b0, m, 32, 128, 0, 10000.0f, 0, NULL);
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

/* ---- decode GEMVs with the weights streamed from DRAM: each case cycles
 * through enough copies of its weight matrix (>= 640 MiB) that none is still in
 * the last-level cache, as in a real model's decode step, and times the
 * portable kernels (ops.cl) and the CPU kernels (gemv_cpu.cl) in the same
 * run, next to a plain streaming read of the same buffers. */
typedef struct {
  const char *type; /* f32 f16 q8_0 q4_0 */
  size_t rows, k;
  int nb;
} gcase;

static const gcase gcases[] = {
    {"f32", 4096, 4096, 1},   {"f16", 4096, 4096, 1},   {"f16", 11008, 4096, 1},  {"q8_0", 4096, 4096, 1},
    {"q8_0", 11008, 4096, 1}, {"q4_0", 4096, 4096, 1},  {"q4_0", 11008, 4096, 1}, {"f16", 11008, 4096, 8},
    {"q8_0", 11008, 4096, 8}, {"q4_0", 11008, 4096, 8},
};

static size_t gcase_bytes(const gcase *c) {
  size_t n = c->rows * c->k;
  return !strcmp(c->type, "f32")   ? 4 * n
         : !strcmp(c->type, "f16") ? 2 * n
                                   : n / 32 * (c->type[1] == '8' ? 34 : 18);
}

static int gemv_run(af_queue *q, const gcase *c, cl_mem w, cl_mem x, cl_mem y) {
  af_dbuf xv = {x, 0}, yv = {y, 0};
  if (c->type[0] == 'q') return af_op_gemv_qn(q, w, c->type[1] == '4', c->rows, c->k, xv, c->nb, yv, NULL);
  return af_op_gemv(q, w, c->type[1] == '1', c->rows, c->k, xv, c->nb, yv, NULL);
}

/* best seconds per pass over the n copies / n (after a warm-up pass);
 * stream = 1 times the read probe instead of the GEMV */
static int time_copies(af_queue *q, const gcase *c, cl_mem *w, int n, cl_mem x, cl_mem y, int repeat,
                       int stream, double *out) {
  cl_kernel sk = NULL;
  int rc = stream ? af_queue_kernel(q, "gemv_cpu.cl", "af_gemv_cpu_stream", NULL, &sk) : 0;
  size_t bytes = gcase_bytes(c);
  cl_long chunk = 1024; /* float16 vectors per work-item: 64 KiB */
  size_t items = bytes / (64 * (size_t)chunk) / 8 * 8, l = 8;
  *out = INFINITY;
  for (int r = 0; r <= repeat && !rc; r++) {
    double t0 = now();
    for (int i = 0; i < n && !rc; i++) {
      if (!stream) {
        rc = gemv_run(q, c, w[i], x, y);
        continue;
      }
      cl_int e = clSetKernelArg(sk, 0, sizeof w[i], &w[i]);
      if (!e) e = clSetKernelArg(sk, 1, sizeof chunk, &chunk);
      if (!e) e = clSetKernelArg(sk, 2, sizeof y, &y);
      rc = e ? af_err(e, "bench: stream probe arguments: %s", af_strerror(e))
             : af_queue_run(q, sk, 1, &items, &l, "stream");
    }
    if (!rc) rc = af_queue_finish(q);
    double t = (now() - t0) / n;
    if (stream) t *= (double)bytes / (double)(items * 64 * (size_t)chunk); /* per matrix */
    if (r && t < *out) *out = t;
  }
  return rc;
}

/* tuning defines without AF_GEMV_IMPL=cpu (portable) or with it */
static char *impl_defines(const char *base, int cpu) {
  const char *key = "-DAF_GEMV_IMPL=cpu";
  size_t n = (base ? strlen(base) : 0) + strlen(key) + 2;
  char *s = malloc(n);
  if (!s) return NULL;
  snprintf(s, n, "%s", base ? base : "");
  char *p;
  while ((p = strstr(s, key)) != NULL) memmove(p, p + strlen(key), strlen(p + strlen(key)) + 1);
  if (cpu) strcat(s, " "), strcat(s, key);
  return s;
}

/* json: the array the cases go to as objects; NULL: lines of text */
static int bench_gemv_dram(af_cl *cl, af_queue *q, cJSON *json, int repeat) {
  char *base = cl->tuning_defines ? strdup(cl->tuning_defines) : NULL;
  char *defs[2] = {impl_defines(base, 0), impl_defines(base, 1)};
  cl_mem x = NULL, y = NULL, w[64] = {0};
  int rc = defs[0] && defs[1] ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, 8 * 11008 * sizeof(float), NULL, &x);
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, 8 * 11008 * sizeof(float), NULL, &y);
  float v = 0.001f;
  if (!rc) clEnqueueFillBuffer(q->q, x, &v, sizeof v, 0, 8 * 11008 * sizeof(float), 0, NULL, NULL);
  if (!json)
    printf(
        "\ndecode GEMV, weights streamed from DRAM (>= 640 MiB of copies; portable = ops.cl, cpu = "
        "gemv_cpu.cl):\n"
        "%-10s %-22s %10s %10s %10s %10s %9s\n",
        "weights", "vectors x k x rows", "read GB/s", "portable", "cpu ms", "cpu GB/s", "of read");
  for (size_t ci = 0; ci < sizeof gcases / sizeof *gcases && !rc; ci++) {
    const gcase *c = &gcases[ci];
    size_t bytes = gcase_bytes(c);
    int n = (int)(((size_t)640 << 20) / bytes + 1); /* past a 300 MiB L3 */
    if (n > 64) n = 64;
    for (int i = 0; i < n && !rc; i++) {
      rc = af_cl_alloc(cl, CL_MEM_READ_ONLY, bytes, NULL, &w[i]);
      unsigned char zero = 0; /* zero weights: valid in every format, no subnormal slow paths */
      if (!rc) clEnqueueFillBuffer(q->q, w[i], &zero, 1, 0, bytes, 0, NULL, NULL);
    }
    double t[3] = {0, 0, 0}; /* stream, portable, cpu */
    if (!rc) rc = time_copies(q, c, w, n, x, y, repeat, 1, &t[0]);
    for (int impl = 0; impl < 2 && !rc; impl++) {
      rc = af_cl_set_tuning(cl, defs[impl]);
      if (!rc) rc = time_copies(q, c, w, n, x, y, repeat, 0, &t[1 + impl]);
    }
    for (int i = 0; i < n; i++)
      if (w[i]) clReleaseMemObject(w[i]), w[i] = NULL;
    if (rc) break;
    double gs = bytes / t[0] / 1e9, gp = bytes / t[1] / 1e9, gc = bytes / t[2] / 1e9;
    if (json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "type", c->type);
      cJSON_AddNumberToObject(o, "nb", c->nb);
      cJSON_AddNumberToObject(o, "k", (double)c->k);
      cJSON_AddNumberToObject(o, "rows", (double)c->rows);
      af_json_num(o, "read_gb_s", gs, 2);
      af_json_num(o, "portable_ms", t[1] * 1e3, 4);
      af_json_num(o, "portable_gb_s", gp, 2);
      af_json_num(o, "cpu_ms", t[2] * 1e3, 4);
      af_json_num(o, "cpu_gb_s", gc, 2);
      af_json_num(o, "cpu_of_read", gc / gs, 3);
      cJSON_AddItemToArray(json, o);
    } else {
      char shape[48], pv[24];
      snprintf(shape, sizeof shape, "%dx%zux%zu", c->nb, c->k, c->rows);
      snprintf(pv, sizeof pv, "%.1f GB/s", gp);
      printf("%-10s %-22s %10.1f %10s %10.3f %10.1f %8.0f%%\n", c->type, shape, gs, pv, t[2] * 1e3, gc,
             100 * gc / gs);
    }
  }
  int rc2 = af_cl_set_tuning(cl, base);
  if (!rc) rc = rc2;
  if (x) clReleaseMemObject(x);
  if (y) clReleaseMemObject(y);
  free(defs[0]), free(defs[1]), free(base);
  return rc;
}

/* a failure: with --json, what was measured so far and "error" (the
 * message) as one object on stdout, then the message on stderr; frees j.
 * Returns the exit code (1). */
static int fail(cJSON *j, int code, const char *what) {
  if (j) {
    char msg[1024];
    const char *m = af_error_message();
    snprintf(msg, sizeof msg, "%s: %s", what, m && *m ? m : af_strerror(code));
    af_json_add_text(j, "error", msg, NULL);
    af_json_print(j);
  }
  return af_cli_fail(code, what);
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
  size_t bytes = (size_t)200 << 20;              /* covers the largest case (11008 x 4096 fp32 = 180 MB) */
  cJSON *j = json ? cJSON_CreateObject() : NULL; /* what --json prints */
  int rc = af_cl_open(&cl, device);
  if (!rc && bytes > cl->info.max_alloc) bytes = (size_t)cl->info.max_alloc;
  if (!rc) rc = af_queue_new(cl, &q);
  for (int i = 0; i < 3 && !rc; i++) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes, NULL, &buf[i]);
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, bytes / 2, NULL, &w16);
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, 4096 * sizeof(int32_t), NULL, &ids);
  if (rc) {
    rc = fail(j, rc, "bench ops");
    j = NULL;
    goto out;
  }
  float v = 0.001f;
  for (int i = 0; i < 3; i++) clEnqueueFillBuffer(q->q, buf[i], &v, sizeof v, 0, bytes, 0, NULL, NULL);
  clEnqueueFillBuffer(q->q, w16, &v, sizeof v, 0, bytes / 2, 0, NULL, NULL);
  int zero = 0;
  clEnqueueFillBuffer(q->q, ids, &zero, sizeof zero, 0, 4096 * sizeof(int32_t), 0, NULL, NULL);
  clFinish(q->q);
  double bw = copy_gbs(q, buf[0], buf[1], bytes);
  cJSON *ops = NULL;
  if (json) {
    af_json_add_text(j, "device", cl->info.name, NULL);
    af_json_num(j, "copy_gb_s", bw, 2);
    ops = cJSON_AddArrayToObject(j, "ops");
  } else {
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
      rc = fail(j, rc, c->op);
      j = NULL;
      goto out;
    }
    double fl = d->flops(c->m, c->n, c->k, c->b) / best / 1e9,
           gb = d->bytes(c->m, c->n, c->k, c->b) / best / 1e9;
    if (json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "op", c->op);
      cJSON_AddStringToObject(o, "shape", c->label);
      af_json_num(o, "ms", best * 1e3, 4);
      af_json_num(o, "gflops", fl, 2);
      af_json_num(o, "gb_s", gb, 2);
      af_json_num(o, "of_copy", gb / bw, 3);
      cJSON_AddItemToArray(ops, o);
    } else
      printf("%-10s %-30s %10.3f %10.1f %10.1f %8.0f%%\n", c->op, c->label, best * 1e3, fl, gb,
             100 * gb / bw);
  }
  if ((rc = bench_gemv_dram(cl, q, json ? cJSON_AddArrayToObject(j, "gemv_dram") : NULL,
                            repeat < 2 ? repeat : 2))) {
    rc = fail(j, rc, "bench ops: GEMV from DRAM");
    j = NULL;
    goto out;
  }
  rc = json ? af_json_print(j) : AF_EXIT_OK;
  j = NULL;
out:
  cJSON_Delete(j);
  for (int i = 0; i < 3; i++)
    if (buf[i]) clReleaseMemObject(buf[i]);
  if (ids) clReleaseMemObject(ids);
  if (w16) clReleaseMemObject(w16);
  af_queue_free(q);
  af_cl_close(cl);
  return rc;
}
