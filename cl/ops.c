/* Host side of the op library (see ops.h): argument checks, kernel launch
 * geometry and CLBlast calls. */
#include "cl/ops.h"

#include "cl/gemm_tiled.h"

#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Work-group sizes: defaults below, overridable per device by the profile's
 * `kernels:` defines (read at run time from the device's tuning string). */
#define AF_ROW_WG af_cl_tuning_int(q->cl, "AF_ROW_WG", 8)           /* rows per work-group */
#define AF_ELEM_WG af_cl_tuning_int(q->cl, "AF_ELEM_WG", 64)        /* work-items per group, element-wise */
#define AF_GEMM_WG af_cl_tuning_int(q->cl, "AF_GEMM_WG", 4)         /* 4x4 tiles per group along m */
#define AF_GEMV_WG af_cl_tuning_int(q->cl, "AF_GEMV_WG", 8)         /* output rows per group */
#define AF_GEMV_RB af_cl_tuning_int(q->cl, "AF_GEMV_RB", 16)        /* CPU GEMV: rows per work-item */
#define AF_GEMV_CPU_WG af_cl_tuning_int(q->cl, "AF_GEMV_CPU_WG", 1) /* CPU GEMV: work-items per group */

static int kernel(af_queue *q, const char *name, cl_kernel *k) {
  return af_queue_kernel(q, "ops.cl", name, NULL, k);
}

/* sets args from a list of (size, pointer) pairs */
static int set_args(cl_kernel k, int n, const size_t *sizes, const void *const *vals) {
  for (int i = 0; i < n; i++) {
    cl_int e = clSetKernelArg(k, (cl_uint)i, sizes[i], vals[i]);
    if (e != CL_SUCCESS) return af_err(e, "argument %d of an op kernel: %s", i, af_strerror(e));
  }
  return 0;
}

#define ARGS(...)                            \
  const void *const vals_[] = {__VA_ARGS__}; \
  enum { n_args_ = sizeof vals_ / sizeof vals_[0] };

static int run1(af_queue *q, cl_kernel k, size_t g, size_t l, const char *label) {
  return af_queue_run(q, k, 1, &g, &l, label);
}

int af_op_gemm_xwt(af_queue *q, size_t m, size_t n, size_t k, af_dbuf x, size_t ldx, af_dbuf w, size_t ldw,
                   af_dbuf y, size_t ldy, cl_mem bias) {
  if (!m || !n) return 0;
  cl_kernel kk;
  int rc = kernel(q, "af_op_gemm_xwt", &kk);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off, wo = (cl_long)w.off, yo = (cl_long)y.off;
  cl_int lx = (cl_int)ldx, lw = (cl_int)ldw, ly = (cl_int)ldy, M = (cl_int)m, N = (cl_int)n, K = (cl_int)k;
  cl_int hb = bias != NULL;
  cl_mem bm = bias ? bias : x.mem;
  size_t sz[] = {sizeof x.mem, sizeof xo, sizeof lx, sizeof w.mem, sizeof wo, sizeof lw, sizeof y.mem,
                 sizeof yo,    sizeof ly, sizeof M,  sizeof N,     sizeof K,  sizeof bm, sizeof hb};
  ARGS(&x.mem, &xo, &lx, &w.mem, &wo, &lw, &y.mem, &yo, &ly, &M, &N, &K, &bm, &hb);
  if ((rc = set_args(kk, n_args_, sz, vals_))) return rc;
  size_t g[2] = {(m + 3) / 4, (n + 3) / 4}, l[2] = {AF_GEMM_WG, 1};
  return af_queue_run(q, kk, 2, g, l, "gemm_xwt");
}

int af_op_gemm_tiled_enabled(const af_cl *cl) {
  return cl->tuning_defines && strstr(cl->tuning_defines, "-DAF_GEMM_TILED=1") != NULL;
}

int af_op_gemm(af_queue *q, int ta, int tb, size_t m, size_t n, size_t k, float alpha, af_dbuf a, size_t lda,
               af_dbuf b, size_t ldb, float beta, af_dbuf c, size_t ldc) {
  if (!m || !n) return 0;
  if (af_gemm_tiled_enabled(q->cl)) /* the device profile's own GEMM (cl/gemm_tiled.h) */
    return af_gemm_tiled(q, ta, tb, m, n, k, alpha, a.mem, a.off, lda, b.mem, b.off, ldb, beta, c.mem, c.off,
                         ldc);
  if (!k) return 0; /* CLBlast rejects k = 0; callers never pass it on this path */
  if (!ta && tb && alpha == 1.0f && beta == 0.0f && af_op_gemm_tiled_enabled(q->cl))
    return af_op_gemm_xwt(q, m, n, k, a, lda, b, ldb, c, ldc, NULL);
  if (q->reserving) return 0; /* CLBlast sizes its own buffers */
  cl_event ev = NULL;
  CLBlastStatusCode st =
      CLBlastSgemm(CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                   tb ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a.mem, a.off, lda, b.mem,
                   b.off, ldb, beta, c.mem, c.off, ldc, &q->q, q->cl->profiling ? &ev : NULL);
  if (st != CLBlastSuccess)
    return af_err((int)st, "gemm %zux%zux%zu: CLBlast: %s", m, n, k, af_strerror((int)st));
  if (ev) af_queue_profile_event(q, ev, "gemm");
  return 0;
}

int af_op_gemv_cpu_enabled(const af_cl *cl) {
  const char *d = cl && cl->tuning_defines ? strstr(cl->tuning_defines, "-DAF_GEMV_IMPL=cpu") : NULL;
  return d && (d == cl->tuning_defines || d[-1] == ' ') && (d[18] == 0 || d[18] == ' ');
}

/* the CPU kernels of cl/kernels/gemv_cpu.cl: a work-item per AF_GEMV_RB
 * consecutive rows, AF_GEMV_CPU_WG items per group (1: PoCL then runs each
 * item's code as written, without interleaving items) */
static int gemv_cpu(af_queue *q, const char *type, cl_mem w, size_t rows, size_t k, af_dbuf x, int nb,
                    af_dbuf y, cl_mem bias, const char *label) {
  int nbk = nb == 1 ? 1 : nb == 2 ? 2 : nb <= 4 ? 4 : 8;
  char name[32];
  snprintf(name, sizeof name, "af_gemv_cpu_%s_%d", type, nbk);
  cl_kernel kk;
  int rc = af_queue_kernel(q, "gemv_cpu.cl", name, NULL, &kk);
  if (rc) return rc;
  cl_int r = (cl_int)rows, kc = (cl_int)k, b = nb, hb = bias != NULL, rb = AF_GEMV_RB;
  cl_long xo = (cl_long)x.off, yo = (cl_long)y.off;
  cl_mem bm = bias ? bias : w, lut = NULL;
  if (type[0] == 'q' && (rc = af_cl_half_lut(q->cl, &lut))) return rc; /* block scales */
  size_t sz[] = {sizeof w,     sizeof r,  sizeof kc, sizeof x.mem, sizeof xo, sizeof b,
                 sizeof y.mem, sizeof yo, sizeof bm, sizeof hb,    sizeof rb, sizeof lut};
  ARGS(&w, &r, &kc, &x.mem, &xo, &b, &y.mem, &yo, &bm, &hb, &rb, &lut);
  if ((rc = set_args(kk, n_args_ - (lut ? 0 : 1), sz, vals_))) return rc;
  size_t l = (size_t)AF_GEMV_CPU_WG, items = (rows + (size_t)rb - 1) / (size_t)rb,
         g = (items + l - 1) / l * l;
  return af_queue_run(q, kk, 1, &g, &l, label);
}

int af_op_gemv(af_queue *q, cl_mem w, int half_w, size_t rows, size_t k, af_dbuf x, int nb, af_dbuf y,
               cl_mem bias) {
  if (nb < 1 || nb > 8) return af_err(AF_ERR_INVALID, "gemv: %d vectors (1..8 supported)", nb);
  if (!rows) return 0;
  if (af_op_gemv_cpu_enabled(q->cl))
    return gemv_cpu(q, half_w ? "f16" : "f32", w, rows, k, x, nb, y, bias, half_w ? "gemv_f16" : "gemv_f32");
  int nbk = nb == 1 ? 1 : nb == 2 ? 2 : nb <= 4 ? 4 : 8; /* kernels exist for 1, 2, 4, 8 vectors */
  char name[32];
  snprintf(name, sizeof name, "af_op_gemv_%s_%d", half_w ? "f16" : "f32", nbk);
  cl_kernel kk;
  int rc = kernel(q, name, &kk);
  if (rc) return rc;
  cl_int r = (cl_int)rows, kc = (cl_int)k, b = nb, hb = bias != NULL;
  cl_long xo = (cl_long)x.off, yo = (cl_long)y.off;
  cl_mem bm = bias ? bias : w; /* any valid buffer when there is no bias */
  size_t sz[] = {sizeof w, sizeof r,     sizeof kc, sizeof x.mem, sizeof xo,
                 sizeof b, sizeof y.mem, sizeof yo, sizeof bm,    sizeof hb};
  ARGS(&w, &r, &kc, &x.mem, &xo, &b, &y.mem, &yo, &bm, &hb);
  if ((rc = set_args(kk, n_args_, sz, vals_))) return rc;
  return run1(q, kk, rows, AF_GEMV_WG, half_w ? "gemv_f16" : "gemv_f32");
}

int af_op_layernorm(af_queue *q, af_dbuf x, size_t rows, size_t n, cl_mem w, cl_mem b, float eps, af_dbuf y) {
  cl_kernel k;
  int rc = kernel(q, "af_op_layernorm", &k);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off, yo = (cl_long)y.off;
  cl_int r = (cl_int)rows, nn = (cl_int)n;
  size_t sz[] = {sizeof x.mem, sizeof xo, sizeof y.mem, sizeof yo, sizeof w,
                 sizeof b,     sizeof r,  sizeof nn,    sizeof eps};
  ARGS(&x.mem, &xo, &y.mem, &yo, &w, &b, &r, &nn, &eps);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, rows, AF_ROW_WG, "layernorm");
}

int af_op_rmsnorm(af_queue *q, af_dbuf x, size_t rows, size_t n, cl_mem w, float eps, af_dbuf y) {
  cl_kernel k;
  int rc = kernel(q, "af_op_rmsnorm", &k);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off, yo = (cl_long)y.off;
  cl_int r = (cl_int)rows, nn = (cl_int)n;
  size_t sz[] = {sizeof x.mem, sizeof xo, sizeof y.mem, sizeof yo, sizeof w, sizeof r, sizeof nn, sizeof eps};
  ARGS(&x.mem, &xo, &y.mem, &yo, &w, &r, &nn, &eps);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, rows, AF_ROW_WG, "rmsnorm");
}

int af_op_softmax(af_queue *q, af_dbuf x, size_t rows, size_t n, float scale, int causal, int q_rows,
                  int offset) {
  if (causal && q_rows <= 0) return af_err(AF_ERR_INVALID, "softmax: causal needs q_rows > 0");
  cl_kernel k;
  int rc = kernel(q, "af_op_softmax", &k);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off;
  cl_int r = (cl_int)rows, nn = (cl_int)n, c = causal, qr = q_rows > 0 ? q_rows : 1, off = offset;
  size_t sz[] = {sizeof x.mem, sizeof xo, sizeof r, sizeof nn, sizeof scale, sizeof c, sizeof qr, sizeof off};
  ARGS(&x.mem, &xo, &r, &nn, &scale, &c, &qr, &off);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, rows, AF_ROW_WG, "softmax");
}

static int unary(af_queue *q, const char *name, af_dbuf x, size_t n) {
  cl_kernel k;
  int rc = kernel(q, name, &k);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off, nl = (cl_long)n;
  size_t sz[] = {sizeof x.mem, sizeof xo, sizeof nl};
  ARGS(&x.mem, &xo, &nl);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, (n + 15) / 16, AF_ELEM_WG, name + 6); /* 16 elements per work-item */
}

int af_op_gelu(af_queue *q, af_dbuf x, size_t n) {
  return unary(q, "af_op_gelu", x, n);
}
int af_op_silu(af_queue *q, af_dbuf x, size_t n) {
  return unary(q, "af_op_silu", x, n);
}

static int binary(af_queue *q, af_dbuf y, af_dbuf x, size_t n, int op) {
  cl_kernel k;
  int rc = kernel(q, "af_op_binary", &k);
  if (rc) return rc;
  cl_long yo = (cl_long)y.off, xo = (cl_long)x.off, nl = (cl_long)n;
  cl_int o = op;
  size_t sz[] = {sizeof y.mem, sizeof yo, sizeof x.mem, sizeof xo, sizeof nl, sizeof o};
  ARGS(&y.mem, &yo, &x.mem, &xo, &nl, &o);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, n, AF_ELEM_WG, op ? "mul" : "add");
}

int af_op_add(af_queue *q, af_dbuf y, af_dbuf x, size_t n) {
  return binary(q, y, x, n, 0);
}
int af_op_mul(af_queue *q, af_dbuf y, af_dbuf x, size_t n) {
  return binary(q, y, x, n, 1);
}

int af_op_add_bias(af_queue *q, af_dbuf y, size_t ld, size_t rows, size_t n, cl_mem bias) {
  cl_kernel k;
  int rc = kernel(q, "af_op_add_bias", &k);
  if (rc) return rc;
  cl_long yo = (cl_long)y.off;
  cl_int l = (cl_int)ld, r = (cl_int)rows, nn = (cl_int)n;
  size_t sz[] = {sizeof y.mem, sizeof yo, sizeof l, sizeof bias, sizeof r, sizeof nn};
  ARGS(&y.mem, &yo, &l, &bias, &r, &nn);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, rows, AF_ROW_WG, "add_bias");
}

void af_rope_table(float base, int d, int positions, float *out) {
  int hd = d / 2;
  for (int i = 0; i < hd; i++) {
    float inv = 1.0f / powf(base, (float)(2 * i) / (float)d);
    for (int p = 0; p < positions; p++) {
      float ang = (float)p * inv;
      out[((size_t)p * hd + i) * 2] = cosf(ang);
      out[((size_t)p * hd + i) * 2 + 1] = sinf(ang);
    }
  }
}

int af_op_rope(af_queue *q, af_dbuf x, size_t tokens, int heads, int d, int pos0, float base, int interleaved,
               cl_mem tab) {
  if (d < 2 || d % 2) return af_err(AF_ERR_INVALID, "rope: head size %d must be even", d);
  cl_kernel k;
  int rc = kernel(q, "af_op_rope", &k);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off;
  cl_int t = (cl_int)tokens, h = heads, dd = d, p = pos0, il = interleaved;
  size_t sz[] = {sizeof x.mem, sizeof xo,   sizeof t,  sizeof h,  sizeof dd,
                 sizeof p,     sizeof base, sizeof il, sizeof tab};
  ARGS(&x.mem, &xo, &t, &h, &dd, &p, &base, &il, &tab);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, tokens * (size_t)heads, AF_ROW_WG, "rope");
}

int af_op_rope_pos(af_queue *q, af_dbuf x, size_t tokens, int heads, int d, cl_mem pos, float base,
                   int interleaved, cl_mem tab) {
  if (d < 2 || d % 2) return af_err(AF_ERR_INVALID, "rope: head size %d must be even", d);
  if (!tokens) return 0;
  cl_kernel k;
  int rc = kernel(q, "af_op_rope_pos", &k);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off;
  cl_int t = (cl_int)tokens, h = heads, dd = d, il = interleaved;
  size_t sz[] = {sizeof x.mem, sizeof xo,   sizeof t,  sizeof h,  sizeof dd,
                 sizeof pos,   sizeof base, sizeof il, sizeof tab};
  ARGS(&x.mem, &xo, &t, &h, &dd, &pos, &base, &il, &tab);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, tokens * (size_t)heads, AF_ROW_WG, "rope");
}

int af_op_gather(af_queue *q, cl_mem table, int half_table, size_t n_rows, size_t cols, cl_mem ids, size_t n,
                 af_dbuf out) {
  cl_kernel k;
  int rc = kernel(q, "af_op_gather", &k);
  if (rc) return rc;
  cl_int ht = half_table, nr = (cl_int)n_rows, c = (cl_int)cols, nn = (cl_int)n;
  cl_long oo = (cl_long)out.off;
  size_t sz[] = {sizeof table, sizeof ht, sizeof nr,      sizeof c,
                 sizeof ids,   sizeof nn, sizeof out.mem, sizeof oo};
  ARGS(&table, &ht, &nr, &c, &ids, &nn, &out.mem, &oo);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  size_t g[2] = {cols, n}, l[2] = {AF_ELEM_WG, 1};
  return af_queue_run(q, k, 2, g, l, "gather");
}

static int convert(af_queue *q, const char *name, cl_mem src, cl_mem dst, size_t n) {
  cl_kernel k;
  int rc = kernel(q, name, &k);
  if (rc) return rc;
  cl_long nl = (cl_long)n;
  size_t sz[] = {sizeof src, sizeof dst, sizeof nl};
  ARGS(&src, &dst, &nl);
  if ((rc = set_args(k, n_args_, sz, vals_))) return rc;
  return run1(q, k, n, AF_ELEM_WG, name + 6);
}

int af_op_f16_to_f32(af_queue *q, cl_mem src, cl_mem dst, size_t n) {
  return convert(q, "af_op_f16_to_f32", src, dst, n);
}
int af_op_f32_to_f16(af_queue *q, cl_mem src, cl_mem dst, size_t n) {
  return convert(q, "af_op_f32_to_f16", src, dst, n);
}

int af_op_gemv_q(af_queue *q, cl_mem w, int q4, size_t rows, size_t k, af_dbuf x, af_dbuf y, cl_mem bias) {
  return af_op_gemv_qn(q, w, q4, rows, k, x, 1, y, bias);
}

int af_op_gemv_qn(af_queue *q, cl_mem w, int q4, size_t rows, size_t k, af_dbuf x, int nb, af_dbuf y,
                  cl_mem bias) {
  if (k % 32) return af_err(AF_ERR_INVALID, "gemv_q: k = %zu is not a multiple of the 32-weight block", k);
  if (nb < 1 || nb > 8) return af_err(AF_ERR_INVALID, "gemv_q: %d vectors (1..8 supported)", nb);
  if (!rows) return 0;
  const char *label = q4 ? "gemv_q4_0" : "gemv_q8_0";
  if (af_op_gemv_cpu_enabled(q->cl)) return gemv_cpu(q, q4 ? "q4" : "q8", w, rows, k, x, nb, y, bias, label);
  cl_kernel kk;
  int rc = kernel(q, "af_op_gemv_q", &kk);
  if (rc) return rc;
  for (int v = 0; v < nb && !rc; v++) { /* the portable kernel takes one vector: one launch each */
    cl_int q4i = q4, r = (cl_int)rows, kc = (cl_int)k, hb = bias != NULL;
    cl_long xo = (cl_long)(x.off + (size_t)v * k), yo = (cl_long)(y.off + (size_t)v * rows);
    cl_mem bm = bias ? bias : w;
    size_t sz[] = {sizeof w,  sizeof q4i,   sizeof r,  sizeof kc, sizeof x.mem,
                   sizeof xo, sizeof y.mem, sizeof yo, sizeof bm, sizeof hb};
    ARGS(&w, &q4i, &r, &kc, &x.mem, &xo, &y.mem, &yo, &bm, &hb);
    if ((rc = set_args(kk, n_args_, sz, vals_))) return rc;
    rc = run1(q, kk, rows, AF_GEMV_WG, label);
  }
  return rc;
}

int af_op_dequant_q(af_queue *q, cl_mem src, int q4, cl_mem dst, size_t n) {
  if (n % 32) return af_err(AF_ERR_INVALID, "dequant: %zu values are not whole 32-weight blocks", n);
  cl_kernel kk;
  int rc = kernel(q, "af_op_dequant_q", &kk);
  if (rc) return rc;
  cl_int q4i = q4;
  cl_long nb = (cl_long)(n / 32);
  size_t sz[] = {sizeof src, sizeof q4i, sizeof dst, sizeof nb};
  ARGS(&src, &q4i, &dst, &nb);
  if ((rc = set_args(kk, n_args_, sz, vals_))) return rc;
  return run1(q, kk, n / 32, AF_ELEM_WG, q4 ? "dequant_q4_0" : "dequant_q8_0");
}
