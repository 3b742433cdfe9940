/* gemm_bench: GFLOPS of the model's GEMM shapes with CLBlast (its defaults,
 * then the tuned Xgemm parameters from a profile) and with the own tiled
 * kernel (cl/gemm_tiled.h), all in one process so that the ratios are
 * comparable on a noisy shared machine.  Every result is checked against
 * double-precision dot products at sampled entries.
 *
 *   gemm_bench [--shapes MxKxN,...] [--reps N] [--tiled MR,NP,VW,WG,WN,KC[,d];...]
 *              [--no-clblast] [--no-tuned] [--packed] [--f16] [--nn]
 *
 * Default shapes: the ViT-g / Q-Former shapes X·Wᵀ at batch 1 and 8.  The
 * "tuned" CLBlast parameters are the Xgemm values of config/profiles/pocl/
 * cpu.yaml (toolchain-notes §3), applied with CLBlastOverrideParameters after
 * the default runs (CLBlast recompiles then: up to ~30 s cold). */
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl/devprofile.h"
#include "cl/gemm_tiled.h"
#include "cl/ops.h"
#include "cl/runtime.h"

typedef struct {
  size_t m, k, n;
} shape;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float frand(unsigned *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* max relative error over 256 sampled entries of C = A·op(B) (A m x k, B as stored) */
static double check(const float *a, const float *b, int trans_b, const float *c, shape s) {
  unsigned seed = 7;
  double worst = 0;
  for (int t = 0; t < 256; t++) {
    seed = seed * 1103515245u + 12345u;
    size_t i = (seed >> 4) % s.m;
    seed = seed * 1103515245u + 12345u;
    size_t j = (seed >> 4) % s.n;
    double ref = 0, mag = 0;
    for (size_t p = 0; p < s.k; p++) {
      double bv = trans_b ? b[j * s.k + p] : b[p * s.n + j];
      ref += (double)a[i * s.k + p] * bv;
      mag += fabs((double)a[i * s.k + p] * bv);
    }
    double e = fabs(c[i * s.n + j] - ref) / (mag > 1e-30 ? mag : 1e-30);
    if (e > worst) worst = e;
  }
  return worst;
}

typedef int (*gemm_fn)(af_queue *q, void *ctx, shape s, cl_mem a, cl_mem b, cl_mem c);

typedef struct {
  int trans_b;
  const af_gemm_tiled_cfg *cfg;
  const af_gemm_packed *packed;
  cl_mem half; /* B as fp16, for run_f16 */
} run_ctx;

static int run_clblast(af_queue *q, void *ctx, shape s, cl_mem a, cl_mem b, cl_mem c) {
  run_ctx *r = ctx;
  CLBlastStatusCode st = CLBlastSgemm(
      CLBlastLayoutRowMajor, CLBlastTransposeNo, r->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, s.m,
      s.n, s.k, 1.0f, a, 0, s.k, b, 0, r->trans_b ? s.k : s.n, 0.0f, c, 0, s.n, &q->q, NULL);
  return st == CLBlastSuccess ? 0 : af_err((int)st, "CLBlastSgemm: %s", af_strerror((int)st));
}

/* B as fp16 (the ctx's half copy), x·Wᵀ */
static int run_f16(af_queue *q, void *ctx, shape s, cl_mem a, cl_mem b, cl_mem c) {
  (void)b;
  run_ctx *r = ctx;
  return af_gemm_tiled_f16b(q, s.m, s.n, s.k, 1.0f, a, 0, s.k, r->half, 0, s.k, 0.0f, c, 0, s.n);
}

static int run_tiled(af_queue *q, void *ctx, shape s, cl_mem a, cl_mem b, cl_mem c) {
  run_ctx *r = ctx;
  if (r->packed) return af_gemm_tiled_packed(q, r->cfg, 0, s.m, 1.0f, a, 0, s.k, r->packed, 0.0f, c, 0, s.n);
  return af_gemm_tiled_cfg_run(q, r->cfg, 0, r->trans_b, s.m, s.n, s.k, 1.0f, a, 0, s.k, b, 0,
                               r->trans_b ? s.k : s.n, 0.0f, c, 0, s.n);
}

/* the op library's own 4x4 x·Wᵀ kernel (af_op_gemm_xwt), for comparison */
static int run_xwt(af_queue *q, void *ctx, shape s, cl_mem a, cl_mem b, cl_mem c) {
  (void)ctx;
  return af_op_gemm_xwt(q, s.m, s.n, s.k, (af_dbuf){a, 0}, s.k, (af_dbuf){b, 0}, s.k, (af_dbuf){c, 0}, s.n,
                        NULL);
}

/* best time of `reps` after one warm-up; checks the result; prints a row */
static int bench(af_queue *q, const char *label, gemm_fn fn, void *ctx, shape s, cl_mem a, cl_mem b, cl_mem c,
                 const float *ha, const float *hb, int trans_b, float *hc, int reps, double *gflops) {
  /* C starts as NaN: beta is 0, so an entry that is read or not written shows */
  for (size_t i = 0; i < s.m * s.n; i++) hc[i] = NAN;
  int rc = af_queue_write(q, c, 0, s.m * s.n * sizeof(float), hc);
  if (!rc) rc = fn(q, ctx, s, a, b, c);
  if (!rc) rc = af_queue_finish(q);
  double best = 1e30;
  for (int r = 0; !rc && r < reps; r++) {
    double t0 = now();
    rc = fn(q, ctx, s, a, b, c);
    if (!rc) rc = af_queue_finish(q);
    double t = now() - t0;
    if (t < best) best = t;
  }
  if (rc) return rc;
  if ((rc = af_queue_read(q, c, 0, s.m * s.n * sizeof(float), hc))) return rc;
  double err = check(ha, hb, trans_b, hc, s);
  for (size_t i = 0; i < s.m * s.n; i++)
    if (isnan(hc[i])) err = INFINITY;
  *gflops = 2.0 * (double)s.m * (double)s.n * (double)s.k / best * 1e-9;
  printf("%5zux%5zux%5zu  %-34s %8.2f ms %8.1f GFLOPS  err %.1e%s\n", s.m, s.k, s.n, label, best * 1e3,
         *gflops, err, !(err <= 1e-4) ? "  WRONG" : "");
  fflush(stdout);
  return !(err <= 1e-4) ? af_err(AF_ERR_INVALID, "%s: result differs from the reference (%.1e)", label, err)
                        : 0;
}

static int parse_cfgs(const char *s, af_gemm_tiled_cfg *out, int max) {
  int n = 0;
  while (s && *s && n < max) {
    af_gemm_tiled_cfg c = {8, 2, 16, 8, 1, 0, 0};
    int used = 0;
    if (sscanf(s, "%d,%d,%d,%d,%d,%d%n", &c.mr, &c.np, &c.vw, &c.wg, &c.wn, &c.kc, &used) < 6) return -1;
    if (s[used] == ',' && s[used + 1] == 'd') c.dot = 1, used += 2;
    out[n++] = c;
    s += used;
    if (*s == ';') s++;
  }
  return n;
}

int main(int argc, char **argv) {
  shape shapes[16] = {{257, 1408, 4224},  {257, 1408, 6144},  {257, 6144, 1408},
                      {2056, 1408, 4224}, {2056, 1408, 6144}, {2056, 6144, 1408}};
  int nshapes = 6, reps = 3, do_clblast = 1, do_tuned = 1, packed = 0, trans_b = 1, f16 = 0;
  af_gemm_tiled_cfg cfgs[32];
  int ncfg = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shapes") && i + 1 < argc) {
      nshapes = 0;
      for (char *p = argv[++i]; *p && nshapes < 16;) {
        shape s;
        int used = 0;
        if (sscanf(p, "%zux%zux%zu%n", &s.m, &s.k, &s.n, &used) < 3) {
          fprintf(stderr, "gemm_bench: bad shape list '%s' (MxKxN,...)\n", argv[i]);
          return 2;
        }
        shapes[nshapes++] = s;
        p += used;
        if (*p == ',') p++;
      }
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--tiled") && i + 1 < argc) {
      if ((ncfg = parse_cfgs(argv[++i], cfgs, 30)) < 0) {
        fprintf(stderr, "gemm_bench: bad --tiled list (MR,NP,VW,WG,WN,KC[,d];...)\n");
        return 2;
      }
    } else if (!strcmp(argv[i], "--no-clblast")) {
      do_clblast = 0;
    } else if (!strcmp(argv[i], "--no-tuned")) {
      do_tuned = 0;
    } else if (!strcmp(argv[i], "--packed")) {
      packed = 1;
    } else if (!strcmp(argv[i], "--f16")) {
      f16 = 1;
    } else if (!strcmp(argv[i], "--nn")) {
      trans_b = 0;
    } else {
      fprintf(stderr,
              "usage: gemm_bench [--shapes MxKxN,...] [--reps N] [--tiled MR,NP,VW,WG,WN,KC[,d];...] "
              "[--no-clblast] "
              "[--no-tuned] [--packed] [--f16] [--nn]\n");
      return 2;
    }
  }
  /* start from the global default profile: CLBlast's own defaults, no overrides */
  if (!getenv("ARTFLOW_PROFILE_FILE"))
    setenv("ARTFLOW_PROFILE_FILE", AF_SOURCE_DIR "/config/profiles/default.yaml", 1);
  af_cl *cl = NULL;
  af_queue *q = NULL;
  int rc = af_cl_open(&cl, NULL);
  if (!rc) rc = af_queue_new(cl, &q);
  if (rc) {
    fprintf(stderr, "gemm_bench: %s\n", af_error_message());
    af_cl_close(cl);
    return 1;
  }
  if (!ncfg) { /* the built-in defaults (pocl/cpu.yaml repeats them): dot, and packed per call */
    af_gemm_tiled_config(cl, &cfgs[0]);
    af_gemm_tiled_packed_config(cl, &cfgs[1]);
    ncfg = 2;
  }
  printf("device: %s; B %s; best of %d after a warm-up\n", cl->info.name,
         trans_b ? "transposed (X·Wᵀ)" : "as is", reps);
  /* phase 0: tiled (all configs), phase 1: CLBlast defaults, phase 2: CLBlast tuned */
  double res[16][34];
  memset(res, 0, sizeof res);
  for (int phase = 0; phase < 3 && !rc; phase++) {
    if (phase == 1 && !do_clblast) continue;
    if (phase == 2 && (!do_clblast || !do_tuned)) continue;
    if (phase == 2) {
      af_devprofile prof;
      if ((rc = af_devprofile_select(&cl->info, AF_SOURCE_DIR "/config/profiles/pocl/cpu.yaml", &prof)))
        break;
      for (int i = 0; !rc && i < prof.n_overrides; i++) {
        const af_clblast_override *o = &prof.overrides[i];
        const char *names[AF_PROFILE_MAX_PARAMS];
        for (int j = 0; j < o->n; j++) names[j] = o->names[j];
        CLBlastStatusCode st = CLBlastOverrideParameters(
            cl->device, o->kernel, (CLBlastPrecision)o->precision, (size_t)o->n, names, o->values);
        if (st != CLBlastSuccess) rc = af_err((int)st, "override %s: %s", o->kernel, af_strerror((int)st));
      }
      if (rc) break;
    }
    for (int si = 0; si < nshapes && !rc; si++) {
      shape s = shapes[si];
      size_t na = s.m * s.k, nb = s.k * s.n, nc = s.m * s.n;
      float *ha = malloc(na * 4), *hb = malloc(nb * 4), *hc = malloc(nc * 4);
      cl_mem a = NULL, b = NULL, c = NULL;
      if (!ha || !hb || !hc) rc = af_err(AF_ERR_NOMEM, "out of memory");
      unsigned seed = 1;
      for (size_t i = 0; !rc && i < na; i++) ha[i] = frand(&seed);
      for (size_t i = 0; !rc && i < nb; i++) hb[i] = frand(&seed);
      if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, na * 4, NULL, &a);
      if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, nb * 4, NULL, &b);
      if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, nc * 4, NULL, &c);
      if (!rc) rc = af_queue_write(q, a, 0, na * 4, ha);
      if (!rc) rc = af_queue_write(q, b, 0, nb * 4, hb);
      run_ctx ctx = {trans_b, NULL, NULL, NULL};
      if (phase == 0 && f16 && trans_b && !rc) {
        /* W rounded to fp16: the reference then uses the rounded values */
        _Float16 *hh = malloc(nb * sizeof *hh);
        if (!hh) rc = af_err(AF_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !rc && i < nb; i++) hh[i] = (_Float16)hb[i], hb[i] = (float)hh[i];
        if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_ONLY, nb * 2, NULL, &ctx.half);
        if (!rc) rc = af_queue_write(q, ctx.half, 0, nb * 2, hh);
        if (!rc) rc = af_queue_write(q, b, 0, nb * 4, hb);
        free(hh);
        if (!rc)
          rc = bench(q, "own, fp16 W (af_gemm_tiled_f16b)", run_f16, &ctx, s, a, b, c, ha, hb, trans_b, hc,
                     reps, &res[si][32]);
        if (ctx.half) clReleaseMemObject(ctx.half);
        ctx.half = NULL;
      }
      if (phase == 0 && trans_b && !rc)
        rc = bench(q, "ops gemm_xwt (af_op_gemm_xwt)", run_xwt, &ctx, s, a, b, c, ha, hb, trans_b, hc, reps,
                   &res[si][33]);
      if (phase == 0) {
        for (int ci = 0; ci < ncfg && !rc; ci++) {
          af_gemm_tiled_cfg *cf = &cfgs[ci];
          char label[64];
          snprintf(label, sizeof label, "%s MR%d NP%d VW%d WG%dx%d KC%d%s", cf->dot ? "dot" : "tiled", cf->mr,
                   cf->np, cf->vw, cf->wg, cf->wn, cf->kc, packed ? " pk" : "");
          af_gemm_packed pk = {0};
          ctx.cfg = cf;
          ctx.packed = NULL;
          if (packed && !cf->dot) {
            /* the first packing compiles and warms up; time the second */
            rc = af_gemm_pack_b(q, cf, trans_b, 0, s.n, s.k, b, 0, trans_b ? s.k : s.n, &pk);
            if (!rc) rc = af_queue_finish(q);
            af_gemm_packed_release(&pk);
            double t0 = now();
            if (!rc) rc = af_gemm_pack_b(q, cf, trans_b, 0, s.n, s.k, b, 0, trans_b ? s.k : s.n, &pk);
            if (!rc) rc = af_queue_finish(q);
            if (!rc) printf("%5zux%5zux%5zu  pack B: %.2f ms\n", s.m, s.k, s.n, (now() - t0) * 1e3);
            ctx.packed = &pk;
          }
          if (!rc)
            rc = bench(q, label, run_tiled, &ctx, s, a, b, c, ha, hb, trans_b, hc, reps, &res[si][2 + ci]);
          af_gemm_packed_release(&pk);
        }
      } else {
        rc = bench(q, phase == 1 ? "CLBlast defaults" : "CLBlast tuned (pocl/cpu.yaml)", run_clblast, &ctx, s,
                   a, b, c, ha, hb, trans_b, hc, reps, &res[si][phase - 1]);
      }
      if (a) clReleaseMemObject(a);
      if (b) clReleaseMemObject(b);
      if (c) clReleaseMemObject(c);
      free(ha), free(hb), free(hc);
    }
  }
  if (!rc && do_clblast) {
    printf(
        "\nratios (same run): best own-kernel config / CLBlast defaults, / CLBlast tuned, / ops gemm_xwt\n");
    for (int si = 0; si < nshapes; si++) {
      double best = 0;
      for (int ci = 0; ci < ncfg; ci++) best = res[si][2 + ci] > best ? res[si][2 + ci] : best;
      printf("%5zux%5zux%5zu  best %.1f GFLOPS: %.2fx defaults, %.2fx tuned, %.2fx gemm_xwt\n", shapes[si].m,
             shapes[si].k, shapes[si].n, best, res[si][0] > 0 ? best / res[si][0] : 0.0,
             res[si][1] > 0 ? best / res[si][1] : 0.0, res[si][33] > 0 ? best / res[si][33] : 0.0);
    }
  }
  if (rc) fprintf(stderr, "gemm_bench: %s\n", af_error_message());
  af_queue_free(q);
  CLBlastClearCache();
  af_cl_close(cl);
  return rc ? 1 : 0;
}
