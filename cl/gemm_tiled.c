/* Host side of the own CPU-oriented GEMM (see gemm_tiled.h): configuration
 * from the device profile, B packing, launch geometry and K blocking. */
#include "cl/gemm_tiled.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "-DNAME=V" from the device's tuning defines (0 allowed, unlike
 * af_cl_tuning_int), else def */
static int knob(const af_cl *cl, const char *name, int def) {
  char key[64];
  snprintf(key, sizeof key, "-D%s=", name);
  for (const char *p = cl && cl->tuning_defines ? strstr(cl->tuning_defines, key) : NULL; p;
       p = strstr(p + 1, key)) {
    if (p != cl->tuning_defines && p[-1] != ' ') continue;
    char *end;
    long v = strtol(p + strlen(key), &end, 10);
    if ((*end == 0 || *end == ' ') && v >= 0 && v <= 4096) return (int)v;
  }
  return def;
}

void af_gemm_tiled_config(const af_cl *cl, af_gemm_tiled_cfg *cfg) {
  cfg->mr = knob(cl, "AF_TILED_MR", 4);
  cfg->np = knob(cl, "AF_TILED_NP", 4);
  cfg->vw = knob(cl, "AF_TILED_VW", 16);
  cfg->wg = knob(cl, "AF_TILED_WG", 8);
  cfg->wn = knob(cl, "AF_TILED_WN", 8);
  cfg->kc = knob(cl, "AF_TILED_KC", 0);
  cfg->dot = knob(cl, "AF_TILED_DOT", 1);
}

void af_gemm_tiled_packed_config(const af_cl *cl, af_gemm_tiled_cfg *cfg) {
  af_gemm_tiled_config(cl, cfg);
  cfg->mr = knob(cl, "AF_TILED_PMR", 6);
  cfg->wn = knob(cl, "AF_TILED_PWN", 4);
  cfg->dot = 0;
}

int af_gemm_tiled_enabled(const af_cl *cl) {
  const char *d = cl && cl->tuning_defines ? strstr(cl->tuning_defines, "-DAF_GEMM_IMPL=tiled") : NULL;
  return d && (d[20] == 0 || d[20] == ' ');
}

static int check_cfg(const af_gemm_tiled_cfg *c) {
  if (c->mr < 1 || c->mr > 16 || c->np < 1 || c->np > (c->dot ? 8 : 4) ||
      (c->vw != 4 && c->vw != 8 && c->vw != 16) || c->wg < 1 || c->wg > 1024 || c->wn < 1 || c->wn > 1024 ||
      c->kc < 0)
    return af_err(AF_ERR_INVALID,
                  "gemm_tiled: bad configuration MR=%d NP=%d VW=%d WG=%d KC=%d (MR 1..16, NP 1..4 or 1..8 "
                  "for the dot kernel, VW 4|8|16)",
                  c->mr, c->np, c->vw, c->wg, c->kc);
  return 0;
}

static int get_kernel(af_queue *q, const af_gemm_tiled_cfg *c, const char *name, cl_kernel *k) {
  char opts[96];
  snprintf(opts, sizeof opts, "-DGT_MR=%d -DGT_NP=%d -DGT_NC=%d -DGT_VW=%d", c->mr, c->np, c->np, c->vw);
  return af_queue_kernel(q, "gemm_tiled.cl", name, opts, k);
}

static int set_arg(cl_kernel k, cl_uint i, size_t size, const void *v) {
  cl_int e = clSetKernelArg(k, i, size, v);
  return e == CL_SUCCESS ? 0 : af_err(e, "gemm_tiled: kernel argument %u: %s", i, af_strerror(e));
}

#define ARG(i, v)                                            \
  do {                                                       \
    if ((rc = set_arg(kk, (i), sizeof(v), &(v)))) return rc; \
  } while (0)

static int fits_int(size_t v) {
  return v <= (size_t)INT_MAX;
}

/* 2-D launch over tiles x ntiles in groups of (up to) wg x wn tiles, within
 * the device's work-group limit */
static void geometry(af_queue *q, const af_gemm_tiled_cfg *cfg, size_t tiles, size_t ntiles, size_t g[2],
                     size_t l[2]) {
  size_t wg = (size_t)cfg->wg < tiles ? (size_t)cfg->wg : tiles,
         wn = (size_t)cfg->wn < ntiles ? (size_t)cfg->wn : ntiles;
  size_t max = q->cl->info.max_wg ? q->cl->info.max_wg : 64;
  while (wg * wn > max) {
    if (wg >= wn)
      wg = (wg + 1) / 2;
    else
      wn = (wn + 1) / 2;
  }
  l[0] = wg, l[1] = wn;
  g[0] = (tiles + wg - 1) / wg * wg, g[1] = (ntiles + wn - 1) / wn * wn;
}

/* Packs op(B) into `into` (a buffer of af_gemm_pack_b's size), or into a
 * buffer of its own when into is NULL; out->mem is owned only in that case. */
static int pack_b(af_queue *q, const af_gemm_tiled_cfg *cfg, int trans_b, int half_b, size_t n, size_t k,
                  cl_mem b, size_t b_off, size_t ldb, int scratch, af_gemm_packed *out) {
  memset(out, 0, sizeof *out);
  af_gemm_tiled_cfg def;
  if (!cfg) af_gemm_tiled_packed_config(q->cl, &def), cfg = &def;
  int rc = check_cfg(cfg);
  if (rc) return rc;
  if (!n || !k || !fits_int(n) || !fits_int(k) || !fits_int(ldb) || ldb < (trans_b ? k : n))
    return af_err(AF_ERR_INVALID, "gemm_pack_b: bad shape n=%zu k=%zu ldb=%zu (trans_b %d)", n, k, ldb,
                  trans_b);
  size_t panels = (n + (size_t)cfg->vw - 1) / (size_t)cfg->vw,
         bytes = panels * k * (size_t)cfg->vw * sizeof(float);
  cl_mem mem = NULL;
  if ((rc = scratch ? af_queue_scratch(q, AF_SCRATCH_GEMM_PACK, bytes, &mem)
                    : af_cl_alloc(q->cl, CL_MEM_READ_WRITE, bytes, NULL, &mem)))
    return rc;
  cl_kernel kk;
  if ((rc = get_kernel(q, cfg, half_b ? "af_gemm_pack_b_f16" : "af_gemm_pack_b", &kk))) goto fail;
  cl_int N = (cl_int)n, K = (cl_int)k, tb = trans_b != 0, lb = (cl_int)ldb;
  cl_long bo = (cl_long)b_off;
  if ((rc = set_arg(kk, 0, sizeof N, &N)) || (rc = set_arg(kk, 1, sizeof K, &K)) ||
      (rc = set_arg(kk, 2, sizeof tb, &tb)) || (rc = set_arg(kk, 3, sizeof b, &b)) ||
      (rc = set_arg(kk, 4, sizeof bo, &bo)) || (rc = set_arg(kk, 5, sizeof lb, &lb)) ||
      (rc = set_arg(kk, 6, sizeof mem, &mem)))
    goto fail;
  size_t kb = (k + (size_t)cfg->vw - 1) / (size_t)cfg->vw, l0 = kb < 16 ? kb : 16;
  size_t g[2] = {(kb + l0 - 1) / l0 * l0, panels}, l[2] = {l0, 1};
  if ((rc = af_queue_run(q, kk, 2, g, l, "gemm_pack_b"))) goto fail;
  out->mem = mem;
  out->n = n;
  out->k = k;
  out->vw = cfg->vw;
  out->borrowed = scratch;
  return 0;
fail:
  if (!scratch) clReleaseMemObject(mem);
  return rc;
}

int af_gemm_pack_b(af_queue *q, const af_gemm_tiled_cfg *cfg, int trans_b, int half_b, size_t n, size_t k,
                   cl_mem b, size_t b_off, size_t ldb, af_gemm_packed *out) {
  return pack_b(q, cfg, trans_b, half_b, n, k, b, b_off, ldb, 0, out);
}

int af_gemm_pack_b_h(af_queue *q, const af_gemm_tiled_cfg *cfg, size_t n, size_t k, cl_mem b, size_t b_off,
                     size_t ldb, af_gemm_packed *out) {
  memset(out, 0, sizeof *out);
  af_gemm_tiled_cfg def;
  if (!cfg) af_gemm_tiled_packed_config(q->cl, &def), cfg = &def;
  int rc = check_cfg(cfg);
  if (rc) return rc;
  if (!n || !k || !fits_int(n) || !fits_int(k) || !fits_int(ldb) || ldb < k)
    return af_err(AF_ERR_INVALID, "gemm_pack_b_h: bad shape n=%zu k=%zu ldb=%zu", n, k, ldb);
  size_t panels = (n + (size_t)cfg->vw - 1) / (size_t)cfg->vw, bytes = panels * k * (size_t)cfg->vw * 2;
  cl_mem mem = NULL;
  if ((rc = af_cl_alloc(q->cl, CL_MEM_READ_WRITE, bytes, NULL, &mem))) return rc;
  cl_kernel kk;
  cl_int N = (cl_int)n, K = (cl_int)k, lb = (cl_int)ldb;
  cl_long bo = (cl_long)b_off;
  if ((rc = get_kernel(q, cfg, "af_gemm_pack_b_h", &kk)) || (rc = set_arg(kk, 0, sizeof N, &N)) ||
      (rc = set_arg(kk, 1, sizeof K, &K)) || (rc = set_arg(kk, 2, sizeof b, &b)) ||
      (rc = set_arg(kk, 3, sizeof bo, &bo)) || (rc = set_arg(kk, 4, sizeof lb, &lb)) ||
      (rc = set_arg(kk, 5, sizeof mem, &mem))) {
    clReleaseMemObject(mem);
    return rc;
  }
  size_t kb = (k + (size_t)cfg->vw - 1) / (size_t)cfg->vw, l0 = kb < 16 ? kb : 16;
  size_t g[2] = {(kb + l0 - 1) / l0 * l0, panels}, l[2] = {l0, 1};
  if ((rc = af_queue_run(q, kk, 2, g, l, "gemm_pack_b_h"))) {
    clReleaseMemObject(mem);
    return rc;
  }
  *out = (af_gemm_packed){mem, n, k, cfg->vw, 0, 1};
  return 0;
}

void af_gemm_packed_release(af_gemm_packed *p) {
  if (p && p->mem && !p->borrowed) clReleaseMemObject(p->mem);
  if (p) memset(p, 0, sizeof *p);
}

int af_gemm_tiled_packed(af_queue *q, const af_gemm_tiled_cfg *cfg, int trans_a, size_t m, float alpha,
                         cl_mem a, size_t a_off, size_t lda, const af_gemm_packed *bp, float beta, cl_mem c,
                         size_t c_off, size_t ldc) {
  af_gemm_tiled_cfg def;
  if (!cfg) af_gemm_tiled_packed_config(q->cl, &def), cfg = &def;
  int rc = check_cfg(cfg);
  if (rc) return rc;
  if (!m || !bp->n) return 0;
  size_t n = bp->n, k = bp->k;
  if (cfg->vw != bp->vw)
    return af_err(AF_ERR_INVALID, "gemm_tiled: B was packed %d wide, the kernel is %d wide", bp->vw, cfg->vw);
  if (!fits_int(m) || !fits_int(lda) || !fits_int(ldc) || ldc < n || lda < (trans_a ? m : k))
    return af_err(AF_ERR_INVALID, "gemm_tiled: bad shape m=%zu n=%zu k=%zu lda=%zu ldc=%zu", m, n, k, lda,
                  ldc);
  cl_kernel kk;
  if ((rc = get_kernel(q, cfg, bp->half ? "af_gemm_tiled_h" : "af_gemm_tiled", &kk))) return rc;
  cl_int M = (cl_int)m, N = (cl_int)n, K = (cl_int)k, rs = trans_a ? 1 : (cl_int)lda,
         ks = trans_a ? (cl_int)lda : 1;
  cl_int lc = (cl_int)ldc;
  cl_long ao = (cl_long)a_off, co = (cl_long)c_off;
  ARG(0, M);
  ARG(1, N);
  ARG(2, K);
  ARG(5, alpha);
  ARG(6, a);
  ARG(7, ao);
  ARG(8, rs);
  ARG(9, ks);
  ARG(10, bp->mem);
  ARG(12, c);
  ARG(13, co);
  ARG(14, lc);
  size_t tiles = (m + (size_t)cfg->mr - 1) / (size_t)cfg->mr,
         panels = (n + (size_t)cfg->vw - 1) / (size_t)cfg->vw;
  size_t ntiles = (panels + (size_t)cfg->np - 1) / (size_t)cfg->np;
  size_t g[2], l[2];
  geometry(q, cfg, tiles, ntiles, g, l);
  /* later K blocks add to what the earlier ones stored; K = 0 still runs
   * once (C = beta C) */
  size_t kc = cfg->kc ? (size_t)cfg->kc : k, k0 = 0;
  do {
    cl_int K0 = (cl_int)k0, KN = (cl_int)(k - k0 < kc ? k - k0 : kc);
    float b = k0 ? 1.0f : beta;
    ARG(3, K0);
    ARG(4, KN);
    ARG(11, b);
    if ((rc = af_queue_run(q, kk, 2, g, l, "gemm_tiled"))) return rc;
    k0 += kc;
  } while (k0 < k);
  return 0;
}

static int dot_run(af_queue *q, const af_gemm_tiled_cfg *cfg, int half_b, size_t m, size_t n, size_t k,
                   float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                   float beta, cl_mem c, size_t c_off, size_t ldc) {
  int rc = check_cfg(cfg);
  if (rc) return rc;
  if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc) ||
      lda < k || ldb < k || ldc < n)
    return af_err(AF_ERR_INVALID, "gemm_tiled: bad shape m=%zu n=%zu k=%zu lda=%zu ldb=%zu ldc=%zu", m, n, k,
                  lda, ldb, ldc);
  cl_kernel kk;
  if ((rc = get_kernel(q, cfg, half_b ? "af_gemm_dot_f16b" : "af_gemm_dot", &kk))) return rc;
  cl_int M = (cl_int)m, N = (cl_int)n, la = (cl_int)lda, lb = (cl_int)ldb, lc = (cl_int)ldc;
  cl_long ao = (cl_long)a_off, bo = (cl_long)b_off, co = (cl_long)c_off;
  ARG(0, M);
  ARG(1, N);
  ARG(4, alpha);
  ARG(5, a);
  ARG(6, ao);
  ARG(7, la);
  ARG(8, b);
  ARG(9, bo);
  ARG(10, lb);
  ARG(12, c);
  ARG(13, co);
  ARG(14, lc);
  size_t tiles = (m + (size_t)cfg->mr - 1) / (size_t)cfg->mr,
         ntiles = (n + (size_t)cfg->np - 1) / (size_t)cfg->np;
  size_t g[2], l[2];
  geometry(q, cfg, tiles, ntiles, g, l);
  /* K blocks (a multiple of the vector width) keep a tile's rows in L1;
   * later blocks add to what the earlier ones stored */
  size_t kc = cfg->kc ? ((size_t)cfg->kc + (size_t)cfg->vw - 1) / (size_t)cfg->vw * (size_t)cfg->vw : k;
  for (size_t k0 = 0; k0 < k; k0 += kc) {
    cl_int K0 = (cl_int)k0, KN = (cl_int)(k - k0 < kc ? k - k0 : kc);
    float b1 = k0 ? 1.0f : beta;
    ARG(2, KN);
    ARG(3, K0);
    ARG(11, b1);
    if ((rc = af_queue_run(q, kk, 2, g, l, "gemm_dot"))) return rc;
  }
  return 0;
}

int af_gemm_tiled_cfg_run(af_queue *q, const af_gemm_tiled_cfg *cfg, int trans_a, int trans_b, size_t m,
                          size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                          size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc) {
  if (!m || !n) return 0;
  if (cfg->dot && !trans_a && trans_b && k)
    return dot_run(q, cfg, 0, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc);
  if (!k) { /* C = beta * C: no product to pack; keep the contract with a zero-K launch */
    af_gemm_packed z = {NULL, n, 0, cfg->vw, 1, 0};
    int rc = af_queue_scratch(q, AF_SCRATCH_ZERO, sizeof(float) * 16, &z.mem);
    af_gemm_tiled_cfg one = *cfg;
    one.kc = 0;
    if (!rc)
      rc = af_gemm_tiled_packed(q, &one, trans_a, m, alpha, a, a_off, lda ? lda : 1, &z, beta, c, c_off, ldc);
    return rc;
  }
  af_gemm_packed bp; /* in the queue's scratch: the next GEMM on this queue reuses it */
  int rc = pack_b(q, cfg, trans_b, 0, n, k, b, b_off, ldb, 1, &bp);
  if (rc) return rc;
  return af_gemm_tiled_packed(q, cfg, trans_a, m, alpha, a, a_off, lda, &bp, beta, c, c_off, ldc);
}

size_t af_gemm_tiled_rowwise_max(const af_cl *cl) {
  if (!af_gemm_tiled_enabled(cl)) return 0;
  af_gemm_tiled_cfg cfg;
  af_gemm_tiled_config(cl, &cfg);
  int pack_m = knob(cl, "AF_TILED_PACK_M", 1024);
  return cfg.dot && pack_m > 1 ? (size_t)pack_m - 1 : 0;
}

int af_gemm_tiled(af_queue *q, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, cl_mem a,
                  size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                  size_t c_off, size_t ldc) {
  /* A·Bᵀ with few rows: the unpacked dot-product kernel (when the profile
   * allows it).  Otherwise pack B per call: the copy (N x K, mostly page
   * faults of the fresh buffer) pays for itself from about 1000 rows
   * (measured: M = 257 dot 1.3-1.5x faster, M = 2056 packed 1.1-1.35x). */
  af_gemm_tiled_cfg cfg;
  af_gemm_tiled_config(q->cl, &cfg);
  int pack_m = knob(q->cl, "AF_TILED_PACK_M", 1024);
  if (!(cfg.dot && !trans_a && trans_b && k && m < (size_t)pack_m)) af_gemm_tiled_packed_config(q->cl, &cfg);
  return af_gemm_tiled_cfg_run(q, &cfg, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta,
                               c, c_off, ldc);
}

int af_gemm_tiled_f16b(af_queue *q, size_t m, size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                       size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                       size_t ldc) {
  if (!m || !n) return 0;
  af_gemm_tiled_cfg cfg;
  af_gemm_tiled_config(q->cl, &cfg);
  if (k && cfg.dot && m < (size_t)knob(q->cl, "AF_TILED_PACK_M", 1024))
    return dot_run(q, &cfg, 1, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc);
  af_gemm_tiled_packed_config(q->cl, &cfg);
  if (!k)
    return af_gemm_tiled_cfg_run(q, &cfg, 0, 1, m, n, 0, alpha, a, a_off, lda, b, b_off, ldb, beta, c, c_off,
                                 ldc);
  af_gemm_packed bp;
  int rc = pack_b(q, &cfg, 1, 1, n, k, b, b_off, ldb, 1, &bp);
  if (rc) return rc;
  return af_gemm_tiled_packed(q, &cfg, 0, m, alpha, a, a_off, lda, &bp, beta, c, c_off, ldc);
}
