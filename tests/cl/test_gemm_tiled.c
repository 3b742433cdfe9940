/* The own CPU-oriented GEMM (cl/gemm_tiled.h) against a plain-C reference
 * (double accumulation) on random inputs: every transpose combination, alpha
 * and beta, offsets and padded leading dimensions, sizes that are not
 * multiples of any tile (1, 17, 257, ...), K blocking, both kernels (packed
 * outer products and unpacked dot products), pre-packed and fp16 weights,
 * and bad arguments.  Tolerance: normalised error 1e-5 (fp32 accumulation
 * over K <= 1408). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/gemm_tiled.h"

static af_cl *CL;
static af_queue *Q;

/* C = alpha op(A) op(B) + beta C, row-major, all with leading dimensions */
static void ref_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                     const float *b, size_t ldb, float beta, float *c, size_t ldc) {
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (size_t p = 0; p < k; p++)
        s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = (float)(alpha * s + (beta != 0.0f ? (double)beta * c[i * ldc + j] : 0.0));
    }
}

/* fp16 bits of a value exactly representable as a normal fp16 (or zero) */
static uint16_t to_half(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  if ((u & 0x7fffffff) == 0) return sign;
  int e = (int)((u >> 23) & 0xff) - 127 + 15;
  return (uint16_t)(sign | (e << 10) | ((u >> 13) & 0x3ff));
}

typedef struct {
  int ta, tb;
  size_t m, n, k;
  float alpha, beta;
} gcase;

/* one case with one configuration (cfg NULL = the device profile's);
 * pack = 1: pre-packed B (half_b: B uploaded as fp16), 2: fp16 B packed into
 * fp16 panels (af_gemm_pack_b_h; the kernel widens them) */
static void run_case(gcase g, const af_gemm_tiled_cfg *cfg, int pack, int half_b, uint64_t seed) {
  af_rng r;
  af_rng_seed(&r, seed);
  size_t ar = g.ta ? g.k : g.m, ac = g.ta ? g.m : g.k, br = g.tb ? g.n : g.k, bc = g.tb ? g.k : g.n;
  size_t lda = ac + 3, ldb = bc + (half_b ? 0 : 5), ldc = g.n + 2, aoff = 7, boff = half_b ? 0 : 11,
         coff = 13;
  size_t na = aoff + ar * lda, nb = boff + br * ldb, nc = coff + g.m * ldc;
  float *a = calloc(na, 4), *b = calloc(nb, 4), *c = calloc(nc, 4), *want = calloc(nc, 4),
        *got = calloc(nc, 4);
  if (!a || !b || !c || !want || !got) {
    CHECK(!"out of memory");
    goto out;
  }
  af_rng_fill(&r, a, na, -1, 1);
  for (size_t i = 0; i < nb; i++)
    b[i] = half_b ? (float)((int)(af_rng_u32(&r) % 257) - 128) / 64.0f : af_rng_uniform(&r, -1, 1);
  af_rng_fill(&r, c, nc, -1, 1);
  if (g.beta == 0.0f)
    for (size_t i = 0; i < g.m; i++)
      for (size_t j = 0; j < g.n; j++) c[coff + i * ldc + j] = NAN; /* must not be read */
  memcpy(want, c, nc * 4);
  ref_gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a + aoff, lda, b + boff, ldb, g.beta, want + coff, ldc);
  cl_mem da = af_test_upload(Q, a, sizeof(float) * na), dc = af_test_upload(Q, c, sizeof(float) * nc),
         db = NULL;
  if (half_b) {
    uint16_t *h = malloc(nb * 2);
    CHECK_OK(af_cl_alloc(CL, CL_MEM_READ_WRITE, nb * 2, NULL, &db));
    for (size_t i = 0; h && i < nb; i++) h[i] = to_half(b[i]);
    if (h && db) CHECK_OK(af_queue_write(Q, db, 0, nb * 2, h));
    free(h);
  } else {
    db = af_test_upload(Q, b, sizeof(float) * nb);
  }
  if (!da || !db || !dc) goto rel;
  if (pack) {
    af_gemm_packed p;
    if (pack == 2) /* fp16 panels (fp16 B, Bᵀ only) */
      CHECK_OK(af_gemm_pack_b_h(Q, cfg, g.n, g.k, db, boff, ldb, &p));
    else
      CHECK_OK(af_gemm_pack_b(Q, cfg, g.tb, half_b, g.n, g.k, db, boff, ldb, &p));
    CHECK(p.half == (pack == 2));
    CHECK_OK(af_gemm_tiled_packed(Q, cfg, g.ta, g.m, g.alpha, da, aoff, lda, &p, g.beta, dc, coff, ldc));
    af_gemm_packed_release(&p);
  } else if (half_b) {
    CHECK_OK(
        af_gemm_tiled_f16b(Q, g.m, g.n, g.k, g.alpha, da, aoff, lda, db, boff, ldb, g.beta, dc, coff, ldc));
  } else if (cfg) {
    CHECK_OK(af_gemm_tiled_cfg_run(Q, cfg, g.ta, g.tb, g.m, g.n, g.k, g.alpha, da, aoff, lda, db, boff, ldb,
                                   g.beta, dc, coff, ldc));
  } else {
    CHECK_OK(af_gemm_tiled(Q, g.ta, g.tb, g.m, g.n, g.k, g.alpha, da, aoff, lda, db, boff, ldb, g.beta, dc,
                           coff, ldc));
  }
  CHECK_OK(af_queue_read(Q, dc, 0, nc * 4, got));
  double e = af_nerr(got, want, nc);
  CHECK_MSG(e < 1e-5, "%s%s %zux%zux%zu ta%d tb%d alpha %g beta %g cfg %d,%d,%d,%d,%d,%d%s: nerr %.2e",
            pack ? "packed " : "", half_b ? "fp16 " : "", g.m, g.k, g.n, g.ta, g.tb, g.alpha, g.beta,
            cfg ? cfg->mr : -1, cfg ? cfg->np : -1, cfg ? cfg->vw : -1, cfg ? cfg->wg : -1,
            cfg ? cfg->kc : -1, cfg ? cfg->dot : -1, cfg && cfg->dot ? " dot" : "", e);
  /* padding around C untouched */
  int pad_ok = 1;
  for (size_t i = 0; i < g.m; i++)
    for (size_t j = g.n; j < ldc; j++) pad_ok &= got[coff + i * ldc + j] == c[coff + i * ldc + j];
  for (size_t i = 0; i < coff; i++) pad_ok &= got[i] == c[i];
  CHECK_MSG(pad_ok, "%zux%zux%zu: wrote outside C", g.m, g.k, g.n);
rel:
  if (da) clReleaseMemObject(da);
  if (db) clReleaseMemObject(db);
  if (dc) clReleaseMemObject(dc);
out:
  free(a), free(b), free(c), free(want), free(got);
}

int main(void) {
  unsetenv("ARTFLOW_PROFILE_FILE");
  if (af_cl_open(&CL, NULL) || af_queue_new(CL, &Q)) {
    fprintf(stderr, "test_gemm_tiled: no OpenCL device: %s\n", af_error_message());
    af_cl_close(CL);
    return 1;
  }
  const gcase shapes[] = {
      {0, 1, 1, 1, 1, 1.0f, 0.0f},      {0, 1, 17, 5, 9, 1.0f, 0.0f},     {0, 1, 6, 257, 17, 0.5f, 2.0f},
      {0, 1, 257, 33, 140, 1.0f, 0.0f}, {0, 1, 33, 70, 1408, 1.0f, 0.0f}, {0, 0, 19, 40, 23, 1.0f, 0.0f},
      {1, 0, 13, 29, 31, -1.5f, 0.25f}, {1, 1, 9, 18, 1, 2.0f, -1.0f},
  };
  /* each distinct MR/NP/VW is one program build (seconds on PoCL): few */
  af_gemm_tiled_cfg cfgs[] = {
      {4, 4, 16, 3, 2, 0, 0}, /* packed outer products, whole K */
      {4, 4, 16, 3, 2, 0, 1}, /* unpacked dot products for A·Bᵀ (same program) */
      {3, 3, 8, 2, 2, 16, 1}, /* 8 wide, K in blocks of 16, odd tiles */
      {5, 1, 4, 4, 1, 24, 0}, /* 4 wide, packed, K blocks */
  };
  uint64_t seed = 1;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    run_case(shapes[s], NULL, 0, 0, seed++);
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
      if (s % 2 == 0 || c == 0)
        run_case(shapes[s], &cfgs[c], 0, 0, seed++); /* fewer local sizes to compile */
  }
  /* pre-packed weights, fp32 and fp16 storage, both B layouts */
  const gcase packed[] = {
      {0, 1, 257, 48, 64, 1.0f, 0.0f}, {0, 1, 17, 21, 33, 1.0f, 1.0f}, {1, 0, 7, 19, 5, 1.0f, 0.0f}};
  for (size_t s = 0; s < sizeof packed / sizeof packed[0]; s++) {
    run_case(packed[s], &cfgs[0], 1, 0, seed++);
    run_case(packed[s], &cfgs[0], 1, 1, seed++);
    run_case(packed[s], &cfgs[3], 1, 1, seed++);
    if (packed[s].tb) {
      run_case(packed[s], &cfgs[0], 2, 1, seed++);
      run_case(packed[s], &cfgs[3], 2, 1, seed++);
    }
  }
  /* fp16 weights used in place (x·Wᵀ) */
  run_case((gcase){0, 1, 257, 48, 70, 1.0f, 0.0f}, NULL, 0, 1, seed++);
  run_case((gcase){0, 1, 3, 5, 17, 0.5f, 1.0f}, NULL, 0, 1, seed++);
  /* K = 0: C = beta C */
  run_case((gcase){0, 1, 5, 7, 0, 1.0f, 3.0f}, &cfgs[0], 0, 0, seed++);
  run_case((gcase){0, 1, 5, 7, 0, 1.0f, 3.0f}, &cfgs[1], 0, 0, seed++);
  /* bad arguments: clean errors, nothing launched */
  cl_mem m = af_test_upload(Q, NULL, sizeof(float) * 64);
  af_gemm_tiled_cfg badc = {0, 2, 16, 8, 1, 0, 0};
  CHECK(af_gemm_tiled_cfg_run(Q, &badc, 0, 1, 4, 4, 4, 1, m, 0, 4, m, 0, 4, 0, m, 0, 4) == AF_ERR_INVALID);
  CHECK(strstr(af_error_message(), "MR=0") != NULL);
  af_error_clear();
  badc = cfgs[0], badc.vw = 12;
  CHECK(af_gemm_tiled_cfg_run(Q, &badc, 0, 1, 4, 4, 4, 1, m, 0, 4, m, 0, 4, 0, m, 0, 4) == AF_ERR_INVALID);
  af_error_clear();
  CHECK(af_gemm_tiled_cfg_run(Q, &cfgs[0], 0, 1, 4, 8, 4, 1, m, 0, 4, m, 0, 4, 0, m, 0, 4) == AF_ERR_INVALID);
  CHECK(strstr(af_error_message(), "ldc=4") != NULL); /* ldc < n */
  af_error_clear();
  CHECK(af_gemm_tiled_cfg_run(Q, &cfgs[1], 0, 1, 4, 4, 8, 1, m, 0, 4, m, 0, 8, 0, m, 0, 4) == AF_ERR_INVALID);
  af_error_clear(); /* lda < k */
  af_gemm_packed p8;
  CHECK_OK(af_gemm_pack_b(Q, &cfgs[2], 1, 0, 4, 4, m, 0, 4, &p8));
  CHECK(af_gemm_tiled_packed(Q, &cfgs[0], 0, 4, 1, m, 0, 4, &p8, 0, m, 0, 4) ==
        AF_ERR_INVALID); /* 8 vs 16 wide */
  CHECK(strstr(af_error_message(), "packed 8 wide") != NULL);
  af_error_clear();
  af_gemm_packed_release(&p8);
  if (m) clReleaseMemObject(m);
  /* the profile switch */
  CHECK(af_gemm_tiled_enabled(NULL) == 0);
  af_queue_free(Q);
  af_cl_close(CL);
  return af_test_done("test_gemm_tiled");
}
