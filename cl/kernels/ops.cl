/* The op library's kernels (host side: cl/ops.c).  Written the way PoCL runs
 * well on CPUs and GPUs alike: a work-item owns a whole row (norms, softmax,
 * GEMV rows, RoPE), 16 contiguous elements (GELU, SiLU) or one element
 * (add, mul, gather, convert), with no barriers and no
 * local memory; work-group sizes and variants are -D tuning defines.
 * Accumulation is always fp32; fp16 is storage only (vload_half/vstore_half,
 * no cl_khr_fp16 needed). */

/* ------------------------------------------------------------- row norms */

/* Row kernels: one work-item per row, 8-wide vector loops along the row
 * plus a scalar tail (PoCL runs a group's work-items one after another, so
 * explicit vectors are what makes them use SIMD: 3-10x over scalar loops). */
inline float af_hsum8(float8 a) {
  float4 q = a.lo + a.hi;
  return (q.s0 + q.s1) + (q.s2 + q.s3);
}
inline float af_hmax8(float8 a) {
  float4 q = fmax(a.lo, a.hi);
  return fmax(fmax(q.s0, q.s1), fmax(q.s2, q.s3));
}

/* y[r] = (x[r] - mean) / sqrt(var + eps) * w + b (biased variance, two passes) */
__kernel void af_op_layernorm(__global const float *x, const long x_off, __global float *y, const long y_off,
                              __global const float *w, __global const float *b, const int rows, const int n,
                              const float eps) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + (long)r * n;
  __global float *yr = y + y_off + (long)r * n;
  int n8 = n & ~7, i;
  float8 s8 = 0.0f;
  for (i = 0; i < n8; i += 8) s8 += vload8(0, xr + i);
  float s = af_hsum8(s8);
  for (; i < n; i++) s += xr[i];
  float mean = s / n;
  float8 v8 = 0.0f;
  for (i = 0; i < n8; i += 8) {
    float8 d = vload8(0, xr + i) - mean;
    v8 = mad(d, d, v8);
  }
  float v = af_hsum8(v8);
  for (; i < n; i++) {
    float d = xr[i] - mean;
    v = mad(d, d, v);
  }
  float inv = rsqrt(v / n + eps);
  for (i = 0; i < n8; i += 8)
    vstore8(mad((vload8(0, xr + i) - mean) * inv, vload8(0, w + i), vload8(0, b + i)), 0, yr + i);
  for (; i < n; i++) yr[i] = mad((xr[i] - mean) * inv, w[i], b[i]);
}

/* y[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w, as HF LlamaRMSNorm */
__kernel void af_op_rmsnorm(__global const float *x, const long x_off, __global float *y, const long y_off,
                            __global const float *w, const int rows, const int n, const float eps) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + (long)r * n;
  __global float *yr = y + y_off + (long)r * n;
  int n8 = n & ~7, i;
  float8 m8 = 0.0f;
  for (i = 0; i < n8; i += 8) {
    float8 a = vload8(0, xr + i);
    m8 = mad(a, a, m8);
  }
  float ms = af_hsum8(m8);
  for (; i < n; i++) ms = mad(xr[i], xr[i], ms);
  float inv = rsqrt(ms / n + eps);
  for (i = 0; i < n8; i += 8) vstore8(vload8(0, w + i) * (vload8(0, xr + i) * inv), 0, yr + i);
  for (; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
}

/* In-place softmax of each row of n after scaling; with causal, row r (query
 * r % q_rows of its block) keeps columns <= r % q_rows + offset, others 0. */
__kernel void af_op_softmax(__global float *x, const long off, const int rows, const int n, const float scale,
                            const int causal, const int q_rows, const int offset) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global float *p = x + off + (long)r * n;
  int lim = causal ? min(n, r % q_rows + offset + 1) : n;
  int l8 = lim & ~7, j;
  float8 m8 = -INFINITY;
  for (j = 0; j < l8; j += 8) m8 = fmax(m8, vload8(0, p + j) * scale);
  float m = af_hmax8(m8);
  for (; j < lim; j++) m = fmax(m, p[j] * scale);
  float8 s8 = 0.0f;
  for (j = 0; j < l8; j += 8) {
    float8 e = exp(vload8(0, p + j) * scale - m);
    vstore8(e, 0, p + j);
    s8 += e;
  }
  float sum = af_hsum8(s8);
  for (; j < lim; j++) {
    float e = exp(p[j] * scale - m);
    p[j] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
  for (j = 0; j < l8; j += 8) vstore8(vload8(0, p + j) * inv, 0, p + j);
  for (; j < lim; j++) p[j] *= inv;
  for (j = max(lim, 0); j < n; j++) p[j] = 0.0f;
}

/* --------------------------------------------------------- element-wise */

/* erf through erfc's Chebyshev fit (Numerical Recipes' erfcc, fractional
 * error < 1.2e-7): exp and mad only, so PoCL vectorises it, while its
 * built-in erf is a scalar call per element (7x slower on GELU-sized
 * buffers).  AF_FAST_ERF=0 selects the built-in erfc. */
#ifndef AF_FAST_ERF
#define AF_FAST_ERF 1
#endif
/* erfc(z) for z >= 0.  GELU is written through erfc, 0.5 v erfc(|v|/sqrt 2)
 * for v < 0 and 0.5 v (2 - erfc) otherwise, so negative inputs keep full
 * relative precision (1 + erf(x) cancels to a few ulp of 1 near x = -3). */
#if AF_FAST_ERF
#define AF_ERFC_DEF(NAME, T)                 \
  inline T NAME(T z) {                       \
    T t = 1.0f / mad(0.5f, z, 1.0f);         \
    T p = mad(t, 0.17087277f, -0.82215223f); \
    p = mad(t, p, 1.48851587f);              \
    p = mad(t, p, -1.13520398f);             \
    p = mad(t, p, 0.27886807f);              \
    p = mad(t, p, -0.18628806f);             \
    p = mad(t, p, 0.09678418f);              \
    p = mad(t, p, 0.37409196f);              \
    p = mad(t, p, 1.00002368f);              \
    p = mad(t, p, -1.26551223f);             \
    return t * exp(mad(-z, z, p));           \
  }
#else
#define AF_ERFC_DEF(NAME, T) \
  inline T NAME(T z) {       \
    return erfc(z);          \
  }
#endif
AF_ERFC_DEF(af_erfc16, float16)

/* Element-wise activations: each work-item owns 16 contiguous elements as
 * one float16, so PoCL runs vector exp (one element per work-item ran 3-4x
 * slower there).  The ragged end goes through the same vector function on a
 * zero-padded copy: a scalar exp can differ from the vector one in the last
 * bit, and an element's result would then depend on where the array ends
 * (a prompt prefilled alone or batched with others, say). */
#define AF_ACT_KERNEL(NAME, F)                                          \
  __kernel void NAME(__global float *x, const long off, const long n) { \
    long i = get_global_id(0) * 16;                                     \
    if (i >= n) return;                                                 \
    __global float *p = x + off + i;                                    \
    if (i + 16 <= n) {                                                  \
      float16 v = vload16(0, p);                                        \
      vstore16(F(v, af_erfc16), 0, p);                                  \
    } else {                                                            \
      float t[16];                                                      \
      int m = (int)(n - i);                                             \
      for (int j = 0; j < 16; j++) t[j] = j < m ? p[j] : 0.0f;          \
      float16 v = vload16(0, t);                                        \
      vstore16(F(v, af_erfc16), 0, t);                                  \
      for (int j = 0; j < m; j++) p[j] = t[j];                          \
    }                                                                   \
  }
/* exact GELU 0.5 x (1 + erf(x / sqrt 2)); SiLU x / (1 + exp(-x)); in place */
#define AF_GELU_E(v, e) (0.5f * (v)*select((e), 2.0f - (e), isgreaterequal((v), 0.0f)))
#define AF_GELU(v, ERFC) AF_GELU_E(v, ERFC(fabs(v) * 0.70710678118654752f))
#define AF_SILU(v, ERFC) ((v) / (1.0f + exp(-(v))))
AF_ACT_KERNEL(af_op_gelu, AF_GELU)
AF_ACT_KERNEL(af_op_silu, AF_SILU)

/* y += x (op 0) or y *= x (op 1) */
__kernel void af_op_binary(__global float *y, const long y_off, __global const float *x, const long x_off,
                           const long n, const int op) {
  long i = get_global_id(0);
  if (i >= n) return;
  if (op == 0)
    y[y_off + i] += x[x_off + i];
  else
    y[y_off + i] *= x[x_off + i];
}

/* y[r, 0..n) += bias[0..n), rows of stride ld */
__kernel void af_op_add_bias(__global float *y, const long y_off, const int ld, __global const float *bias,
                             const int rows, const int n) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global float *yr = y + y_off + (long)r * ld;
  for (int i = 0; i < n; i++) yr[i] += bias[i];
}

/* ------------------------------------------------------------------ RoPE */

/* x: tokens x (heads * d), rotated in place at positions pos0 + t.
 * Pairs: (i, i + d/2) (HF rotate-half; interleaved = 0) or (2i, 2i + 1)
 * (llama.cpp-permuted weights; interleaved = 1).  One work-item per (token,
 * head) row, 8 pairs at a time with vector pow/sincos (PoCL maps them to
 * vector math; a work-item per pair with scalar calls was 10x slower).
 * The angle is pos * (1 / base^(2i/d)) in fp32, as HF computes its cache.
 * With `tab` (af_rope_table: HF's cache computed on the host with powf,
 * cosf, sinf; d/2 (cos, sin) pairs per position) the values are read from it:
 * PoCL's pow and sincos put them up to 1.2e-4 off HF's near position 2048.
 * Products and sums are rounded one by one (no FMA contraction), as
 * q * cos + rotate_half(q) * sin is in PyTorch.
 * global: tokens * heads. */
/* rotates one row of d values (one head of one token) at position pos */
void af_rope_row(__global float *v, const int pos, const int d, const float base, const int interleaved,
                 __global const float *tab) {
#pragma OPENCL FP_CONTRACT OFF
  int hd = d / 2, i = 0;
  __global const float *tr = tab ? tab + (long)pos * d : tab;
  for (; i + 8 <= hd; i += 8) {
    float8 c, s;
    if (tr) {
      float16 cs = vload16(0, tr + 2 * i);
      c = cs.even, s = cs.odd;
    } else {
      float8 iv = (float8)(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f) + (float)i;
      float8 inv = 1.0f / pow((float8)(base), (2.0f * iv) / (float)d);
      s = sincos((float)pos * inv, &c);
    }
    if (interleaved) {
      float16 p = vload16(0, v + 2 * i), o;
      o.even = p.even * c - p.odd * s;
      o.odd = p.odd * c + p.even * s;
      vstore16(o, 0, v + 2 * i);
    } else {
      float8 x0 = vload8(0, v + i), x1 = vload8(0, v + i + hd);
      vstore8(x0 * c - x1 * s, 0, v + i);
      vstore8(x1 * c + x0 * s, 0, v + i + hd);
    }
  }
  for (; i < hd; i++) {
    float c, s;
    if (tr) {
      c = tr[2 * i], s = tr[2 * i + 1];
    } else {
      float ang = (float)pos * (1.0f / pow(base, (float)(2 * i) / (float)d));
      c = cos(ang), s = sin(ang);
    }
    int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + hd;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x1 * c + x0 * s;
  }
}

__kernel void af_op_rope(__global float *x, const long off, const int tokens, const int heads, const int d,
                         const int pos0, const float base, const int interleaved, __global const float *tab) {
  int row = get_global_id(0);
  if (row >= tokens * heads) return;
  af_rope_row(x + off + (long)row * d, pos0 + row / heads, d, base, interleaved, tab);
}

/* the same with each token at its own position pos[t] (batched decode) */
__kernel void af_op_rope_pos(__global float *x, const long off, const int tokens, const int heads,
                             const int d, __global const int *pos, const float base, const int interleaved,
                             __global const float *tab) {
  int row = get_global_id(0);
  if (row >= tokens * heads) return;
  af_rope_row(x + off + (long)row * d, pos[row / heads], d, base, interleaved, tab);
}

/* ------------------------------------------------------- gather, convert */

/* out[r, c] = table[ids[r], c]; table fp32 (half_table = 0) or fp16 storage.
 * ids outside [0, n_rows) give zeros (the host validates ids first).
 * global: (cols, n). */
__kernel void af_op_gather(__global const void *table, const int half_table, const int n_rows, const int cols,
                           __global const int *ids, const int n, __global float *out, const long out_off) {
  int c = get_global_id(0), r = get_global_id(1);
  if (c >= cols || r >= n) return;
  int id = ids[r];
  float v = 0.0f;
  if (id >= 0 && id < n_rows) {
    long k = (long)id * cols + c;
    v = half_table ? vload_half(k, (__global const half *)table) : ((__global const float *)table)[k];
  }
  out[out_off + (long)r * cols + c] = v;
}

__kernel void af_op_f16_to_f32(__global const half *src, __global float *dst, const long n) {
  long i = get_global_id(0);
  if (i < n) dst[i] = vload_half(i, src);
}

__kernel void af_op_f32_to_f16(__global const float *src, __global half *dst, const long n) {
  long i = get_global_id(0);
  if (i < n) vstore_half_rte(src[i], i, dst);
}

/* ------------------------------------------------------------------ GEMV */

/* y[b, r] = sum_k W[r, k] x[b, k] (+ bias[r]) for b < nb; W is rows x k,
 * fp32 or fp16 storage.  One work-item per output row (the CPU-friendly
 * variant: contiguous 16-wide loads along k, 44 GB/s on PoCL per the notes).
 * One kernel per weight type and vector count NB (1, 2, 4, 8: constant loop
 * bounds keep the NB accumulators in registers; a runtime-indexed array was
 * spilled and ran 5-8x slower).  nb < NB repeats the last vector (x reads are
 * cheap next to W's) and stores only b < nb. */
#define AF_GEMV_KERNEL(NAME, WT, NB, LOAD16, LOAD1)                                              \
  __kernel void NAME(__global const WT *w, const int rows, const int k, __global const float *x, \
                     const long x_off, const int nb, __global float *y, const long y_off,        \
                     __global const float *bias, const int has_bias) {                           \
    int r = get_global_id(0);                                                                    \
    if (r >= rows) return;                                                                       \
    __global const WT *wr = w + (long)r * k;                                                     \
    __global const float *xb[NB];                                                                \
    float16 acc[NB];                                                                             \
    float tail[NB];                                                                              \
    for (int b = 0; b < NB; b++) {                                                               \
      xb[b] = x + x_off + (long)min(b, nb - 1) * k;                                              \
      acc[b] = (float16)(0.0f);                                                                  \
      tail[b] = 0.0f;                                                                            \
    }                                                                                            \
    int k16 = k / 16;                                                                            \
    for (int j = 0; j < k16; j++) {                                                              \
      float16 wv = LOAD16(j, wr);                                                                \
      for (int b = 0; b < NB; b++) acc[b] = mad(wv, vload16(j, xb[b]), acc[b]);                  \
    }                                                                                            \
    for (int j = 16 * k16; j < k; j++) {                                                         \
      float wv = LOAD1(j, wr);                                                                   \
      for (int b = 0; b < NB; b++) tail[b] = mad(wv, xb[b][j], tail[b]);                         \
    }                                                                                            \
    float bv = has_bias ? bias[r] : 0.0f;                                                        \
    for (int b = 0; b < NB; b++) {                                                               \
      if (b >= nb) break;                                                                        \
      float8 h = acc[b].lo + acc[b].hi;                                                          \
      float4 q = h.lo + h.hi;                                                                    \
      y[y_off + (long)b * rows + r] = ((q.s0 + q.s1) + (q.s2 + q.s3)) + tail[b] + bv;            \
    }                                                                                            \
  }

#define AF_LOAD16_F32(j, p) vload16(j, p)
#define AF_LOAD1_F32(j, p) (p)[j]
#define AF_LOAD16_F16(j, p) vload_half16(j, p)
#define AF_LOAD1_F16(j, p) vload_half(j, p)
AF_GEMV_KERNEL(af_op_gemv_f32_1, float, 1, AF_LOAD16_F32, AF_LOAD1_F32)
AF_GEMV_KERNEL(af_op_gemv_f32_2, float, 2, AF_LOAD16_F32, AF_LOAD1_F32)
AF_GEMV_KERNEL(af_op_gemv_f32_4, float, 4, AF_LOAD16_F32, AF_LOAD1_F32)
AF_GEMV_KERNEL(af_op_gemv_f32_8, float, 8, AF_LOAD16_F32, AF_LOAD1_F32)
AF_GEMV_KERNEL(af_op_gemv_f16_1, half, 1, AF_LOAD16_F16, AF_LOAD1_F16)
AF_GEMV_KERNEL(af_op_gemv_f16_2, half, 2, AF_LOAD16_F16, AF_LOAD1_F16)
AF_GEMV_KERNEL(af_op_gemv_f16_4, half, 4, AF_LOAD16_F16, AF_LOAD1_F16)
AF_GEMV_KERNEL(af_op_gemv_f16_8, half, 8, AF_LOAD16_F16, AF_LOAD1_F16)

/* ----------------------------------------------------- GEMM, CPU tiling */

/* y[m, n] = x[m, :] . w[n, :] (+ bias[n]): the model's "x times Wᵀ" with both
 * operands row-major and contiguous along k.  Each work-item computes a 4 x 4
 * tile with 16 float8 accumulators (register blocking; explicit vectors, since
 * PoCL runs work-items of a group one after another on one core).  Work-groups
 * walk m fastest, so a block of w rows stays in cache while all of x streams
 * past it.  Edges: rows past M / N are clamped on load and skipped on store.
 * global: (ceil(M/4), ceil(N/4)). */
#ifndef AF_GEMM_VW
#define AF_GEMM_VW 8 /* vector width along k: 8 (AVX2-sized) or 16 (AVX-512-sized) */
#endif
#define AF_CAT_(a, b) a##b
#define AF_CAT(a, b) AF_CAT_(a, b)
#define floatV AF_CAT(float, AF_GEMM_VW)
#define AF_GT_LOAD(p, k) AF_CAT(vload, AF_GEMM_VW)(0, (p) + (k))
__kernel void af_op_gemm_xwt(__global const float *x, const long x_off, const int ldx,
                             __global const float *w, const long w_off, const int ldw, __global float *y,
                             const long y_off, const int ldy, const int M, const int N, const int K,
                             __global const float *bias, const int has_bias) {
  int m0 = get_global_id(0) * 4, n0 = get_global_id(1) * 4;
  if (m0 >= M || n0 >= N) return;
  __global const float *x0 = x + x_off + (long)min(m0 + 0, M - 1) * ldx,
                       *x1 = x + x_off + (long)min(m0 + 1, M - 1) * ldx;
  __global const float *x2 = x + x_off + (long)min(m0 + 2, M - 1) * ldx,
                       *x3 = x + x_off + (long)min(m0 + 3, M - 1) * ldx;
  __global const float *w0 = w + w_off + (long)min(n0 + 0, N - 1) * ldw,
                       *w1 = w + w_off + (long)min(n0 + 1, N - 1) * ldw;
  __global const float *w2 = w + w_off + (long)min(n0 + 2, N - 1) * ldw,
                       *w3 = w + w_off + (long)min(n0 + 3, N - 1) * ldw;
  floatV c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  floatV c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  int k8 = K - K % AF_GEMM_VW;
  for (int k = 0; k < k8; k += AF_GEMM_VW) {
    floatV a0 = AF_GT_LOAD(x0, k), a1 = AF_GT_LOAD(x1, k), a2 = AF_GT_LOAD(x2, k), a3 = AF_GT_LOAD(x3, k);
    floatV b = AF_GT_LOAD(w0, k);
    c00 = mad(a0, b, c00), c10 = mad(a1, b, c10), c20 = mad(a2, b, c20), c30 = mad(a3, b, c30);
    b = AF_GT_LOAD(w1, k);
    c01 = mad(a0, b, c01), c11 = mad(a1, b, c11), c21 = mad(a2, b, c21), c31 = mad(a3, b, c31);
    b = AF_GT_LOAD(w2, k);
    c02 = mad(a0, b, c02), c12 = mad(a1, b, c12), c22 = mad(a2, b, c22), c32 = mad(a3, b, c32);
    b = AF_GT_LOAD(w3, k);
    c03 = mad(a0, b, c03), c13 = mad(a1, b, c13), c23 = mad(a2, b, c23), c33 = mad(a3, b, c33);
  }
  floatV acc[16] = {c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33};
  __global const float *xs[4] = {x0, x1, x2, x3}, *ws[4] = {w0, w1, w2, w3};
  for (int i = 0; i < 4; i++) {
    if (m0 + i >= M) break;
    for (int j = 0; j < 4; j++) {
      if (n0 + j >= N) break;
      floatV a = acc[i * 4 + j];
#if AF_GEMM_VW == 16
      float8 h = a.lo + a.hi;
#else
      float8 h = a;
#endif
      float s = ((h.s0 + h.s1) + (h.s2 + h.s3)) + ((h.s4 + h.s5) + (h.s6 + h.s7));
      for (int k = k8; k < K; k++) s = mad(xs[i][k], ws[j][k], s);
      if (has_bias) s += bias[n0 + j];
      y[y_off + (long)(m0 + i) * ldy + n0 + j] = s;
    }
  }
}

/* -------------------------------------------- ggml Q8_0 / Q4_0 weights */

/* Blocks of 32 weights: Q8_0 = fp16 scale d + 32 int8 (w = d q), 34 bytes;
 * Q4_0 = fp16 d + 16 bytes, byte j holding element j (low nibble) and j + 16
 * (high nibble), w = d (q - 8), 18 bytes.  One work-item per output row. */
inline float af_q8_dot(__global const uchar *blk, __global const float *x) {
  float d = vload_half(0, (__global const half *)blk);
  float16 q0 = convert_float16(as_char16(vload16(0, blk + 2)));
  float16 q1 = convert_float16(as_char16(vload16(1, blk + 2)));
  float16 p = q0 * vload16(0, x) + q1 * vload16(1, x);
  float8 h = p.lo + p.hi;
  float4 f = h.lo + h.hi;
  return d * ((f.s0 + f.s1) + (f.s2 + f.s3));
}

inline float af_q4_dot(__global const uchar *blk, __global const float *x) {
  float d = vload_half(0, (__global const half *)blk);
  uchar16 b = vload16(0, blk + 2);
  float16 lo = convert_float16(b & (uchar)15) - 8.0f, hi = convert_float16(b >> (uchar)4) - 8.0f;
  float16 p = lo * vload16(0, x) + hi * vload16(1, x);
  float8 h = p.lo + p.hi;
  float4 f = h.lo + h.hi;
  return d * ((f.s0 + f.s1) + (f.s2 + f.s3));
}

/* y[r] = W[r, :] . x (+ bias[r]); k a multiple of 32; q4 selects Q4_0 */
__kernel void af_op_gemv_q(__global const uchar *w, const int q4, const int rows, const int k,
                           __global const float *x, const long x_off, __global float *y, const long y_off,
                           __global const float *bias, const int has_bias) {
  int r = get_global_id(0);
  if (r >= rows) return;
  int nb = k / 32, bsz = q4 ? 18 : 34;
  __global const uchar *row = w + (long)r * nb * bsz;
  float s = 0.0f;
  for (int b = 0; b < nb; b++)
    s += q4 ? af_q4_dot(row + b * bsz, x + x_off + 32 * b) : af_q8_dot(row + b * bsz, x + x_off + 32 * b);
  y[y_off + r] = s + (has_bias ? bias[r] : 0.0f);
}

/* dst[32 b .. 32 b + 31] = block b of src, widened to fp32 (for prefill GEMMs) */
__kernel void af_op_dequant_q(__global const uchar *src, const int q4, __global float *dst,
                              const long n_blocks) {
  long b = get_global_id(0);
  if (b >= n_blocks) return;
  __global const uchar *blk = src + b * (q4 ? 18 : 34);
  float d = vload_half(0, (__global const half *)blk);
  __global float *o = dst + 32 * b;
  if (q4) {
    uchar16 v = vload16(0, blk + 2);
    vstore16(d * (convert_float16(v & (uchar)15) - 8.0f), 0, o);
    vstore16(d * (convert_float16(v >> (uchar)4) - 8.0f), 1, o);
  } else {
    vstore16(d * convert_float16(as_char16(vload16(0, blk + 2))), 0, o);
    vstore16(d * convert_float16(as_char16(vload16(1, blk + 2))), 1, o);
  }
}
