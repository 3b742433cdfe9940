/* The op library's kernels (host side: cl/ops.c).  Written the way PoCL runs
 * well on CPUs and GPUs alike: a work-item owns a whole row (norms, softmax,
 * GEMV rows) or one element (element-wise ops), with no barriers and no
 * local memory; work-group sizes and variants are -D tuning defines.
 * Accumulation is always fp32; fp16 is storage only (vload_half/vstore_half,
 * no cl_khr_fp16 needed). */

/* ------------------------------------------------------------- row norms */

/* y[r] = (x[r] - mean) / sqrt(var + eps) * w + b (biased variance) */
__kernel void af_op_layernorm(__global const float *x, const long x_off, __global float *y, const long y_off,
                              __global const float *w, __global const float *b, const int rows, const int n,
                              const float eps) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + (long)r * n;
  __global float *yr = y + y_off + (long)r * n;
  float s = 0.0f;
  for (int i = 0; i < n; i++) s += xr[i];
  float mean = s / n, v = 0.0f;
  for (int i = 0; i < n; i++) {
    float d = xr[i] - mean;
    v = mad(d, d, v);
  }
  float inv = rsqrt(v / n + eps);
  for (int i = 0; i < n; i++) yr[i] = mad((xr[i] - mean) * inv, w[i], b[i]);
}

/* y[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w, as HF LlamaRMSNorm */
__kernel void af_op_rmsnorm(__global const float *x, const long x_off, __global float *y, const long y_off,
                            __global const float *w, const int rows, const int n, const float eps) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + (long)r * n;
  __global float *yr = y + y_off + (long)r * n;
  float ms = 0.0f;
  for (int i = 0; i < n; i++) ms = mad(xr[i], xr[i], ms);
  float inv = rsqrt(ms / n + eps);
  for (int i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
}

/* In-place softmax of each row of n after scaling; with causal, row r (query
 * r % q_rows of its block) keeps columns <= r % q_rows + offset, others 0. */
__kernel void af_op_softmax(__global float *x, const long off, const int rows, const int n, const float scale,
                            const int causal, const int q_rows, const int offset) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global float *p = x + off + (long)r * n;
  int lim = causal ? min(n, r % q_rows + offset + 1) : n;
  float m = -INFINITY;
  for (int j = 0; j < lim; j++) m = fmax(m, p[j] * scale);
  float sum = 0.0f;
  for (int j = 0; j < lim; j++) {
    float e = exp(p[j] * scale - m);
    p[j] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
  for (int j = 0; j < lim; j++) p[j] *= inv;
  for (int j = lim; j < n; j++) p[j] = 0.0f;
}

/* --------------------------------------------------------- element-wise */

/* erf through erfc's Chebyshev fit (Numerical Recipes' erfcc, fractional
 * error < 1.2e-7): exp and mad only, so PoCL vectorises it, while its
 * built-in erf is a scalar call per element (7x slower on GELU-sized
 * buffers).  AF_FAST_ERF=0 selects the built-in. */
#ifndef AF_FAST_ERF
#define AF_FAST_ERF 1
#endif
inline float af_erf(float x) {
#if AF_FAST_ERF
  float z = fabs(x), t = 1.0f / mad(0.5f, z, 1.0f);
  float p = mad(t, 0.17087277f, -0.82215223f);
  p = mad(t, p, 1.48851587f);
  p = mad(t, p, -1.13520398f);
  p = mad(t, p, 0.27886807f);
  p = mad(t, p, -0.18628806f);
  p = mad(t, p, 0.09678418f);
  p = mad(t, p, 0.37409196f);
  p = mad(t, p, 1.00002368f);
  p = mad(t, p, -1.26551223f);
  float erfc = t * exp(mad(-z, z, p));
  return x >= 0.0f ? 1.0f - erfc : erfc - 1.0f;
#else
  return erf(x);
#endif
}

/* exact GELU 0.5 x (1 + erf(x / sqrt 2)), in place */
__kernel void af_op_gelu(__global float *x, const long off, const long n) {
  long i = get_global_id(0);
  if (i >= n) return;
  float v = x[off + i];
  x[off + i] = 0.5f * v * (1.0f + af_erf(v * 0.70710678118654752f));
}

/* SiLU x / (1 + exp(-x)), in place */
__kernel void af_op_silu(__global float *x, const long off, const long n) {
  long i = get_global_id(0);
  if (i >= n) return;
  float v = x[off + i];
  x[off + i] = v / (1.0f + exp(-v));
}

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
 * (llama.cpp-permuted weights; interleaved = 1).  global: (d/2, heads, tokens).
 * The angle is pos * (1 / base^(2i/d)) in fp32, as HF computes its cache. */
__kernel void af_op_rope(__global float *x, const long off, const int tokens, const int heads, const int d,
                         const int pos0, const float base, const int interleaved) {
  int i = get_global_id(0), h = get_global_id(1), t = get_global_id(2);
  if (i >= d / 2 || h >= heads || t >= tokens) return;
  float inv = 1.0f / pow(base, (float)(2 * i) / (float)d);
  float ang = (float)(pos0 + t) * inv, c = cos(ang), s = sin(ang);
  __global float *v = x + off + ((long)t * heads + h) * d;
  int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + d / 2;
  float x0 = v[a], x1 = v[b];
  v[a] = x0 * c - x1 * s;
  v[b] = x1 * c + x0 * s;
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

#ifndef AF_GEMV_MAX_B
#define AF_GEMV_MAX_B 8 /* vectors per call: weights are read once for all */
#endif

/* y[b, r] = sum_k W[r, k] x[b, k] (+ bias[r]) for b < nb; W is rows x k,
 * fp32 or fp16 (half_w).  One work-item per output row (the CPU-friendly
 * variant: contiguous 8-wide loads along k; 44 GB/s on PoCL per the notes). */
__kernel void af_op_gemv(__global const void *w, const int half_w, const int rows, const int k,
                         __global const float *x, const long x_off, const int nb, __global float *y,
                         const long y_off, __global const float *bias, const int has_bias) {
  int r = get_global_id(0);
  if (r >= rows) return;
  float8 acc[AF_GEMV_MAX_B];
  for (int b = 0; b < AF_GEMV_MAX_B; b++) acc[b] = (float8)(0.0f);
  float tail[AF_GEMV_MAX_B];
  for (int b = 0; b < AF_GEMV_MAX_B; b++) tail[b] = 0.0f;
  int k8 = k / 8;
  long row = (long)r * k;
  for (int j = 0; j < k8; j++) {
    float8 wv = half_w ? vload_half8(0, (__global const half *)w + row + 8 * j)
                       : vload8(0, (__global const float *)w + row + 8 * j);
    for (int b = 0; b < nb; b++) acc[b] = mad(wv, vload8(0, x + x_off + (long)b * k + 8 * j), acc[b]);
  }
  for (int j = 8 * k8; j < k; j++) {
    float wv = half_w ? vload_half(row + j, (__global const half *)w) : ((__global const float *)w)[row + j];
    for (int b = 0; b < nb; b++) tail[b] = mad(wv, x[x_off + (long)b * k + j], tail[b]);
  }
  for (int b = 0; b < nb; b++) {
    float8 a = acc[b];
    float s = (a.s0 + a.s1) + (a.s2 + a.s3) + (a.s4 + a.s5) + (a.s6 + a.s7) + tail[b];
    y[y_off + (long)b * rows + r] = s + (has_bias ? bias[r] : 0.0f);
  }
}

/* ----------------------------------------------------- GEMM, CPU tiling */

/* y[m, n] = x[m, :] . w[n, :] (+ bias[n]): the model's "x times Wᵀ" with both
 * operands row-major and contiguous along k.  Each work-item computes a 4 x 4
 * tile with 16 float8 accumulators (register blocking; explicit vectors, since
 * PoCL runs work-items of a group one after another on one core).  Work-groups
 * walk m fastest, so a block of w rows stays in cache while all of x streams
 * past it.  Edges: rows past M / N are clamped on load and skipped on store.
 * global: (ceil(M/4), ceil(N/4)). */
#define AF_GT_LOAD(p, k) vload8(0, (p) + (k))
__kernel void af_op_gemm_xwt(__global const float *x, const long x_off, const int ldx, __global const float *w,
                             const long w_off, const int ldw, __global float *y, const long y_off, const int ldy,
                             const int M, const int N, const int K, __global const float *bias, const int has_bias) {
  int m0 = get_global_id(0) * 4, n0 = get_global_id(1) * 4;
  if (m0 >= M || n0 >= N) return;
  __global const float *x0 = x + x_off + (long)min(m0 + 0, M - 1) * ldx, *x1 = x + x_off + (long)min(m0 + 1, M - 1) * ldx;
  __global const float *x2 = x + x_off + (long)min(m0 + 2, M - 1) * ldx, *x3 = x + x_off + (long)min(m0 + 3, M - 1) * ldx;
  __global const float *w0 = w + w_off + (long)min(n0 + 0, N - 1) * ldw, *w1 = w + w_off + (long)min(n0 + 1, N - 1) * ldw;
  __global const float *w2 = w + w_off + (long)min(n0 + 2, N - 1) * ldw, *w3 = w + w_off + (long)min(n0 + 3, N - 1) * ldw;
  float8 c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  float8 c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  int k8 = K & ~7;
  for (int k = 0; k < k8; k += 8) {
    float8 a0 = AF_GT_LOAD(x0, k), a1 = AF_GT_LOAD(x1, k), a2 = AF_GT_LOAD(x2, k), a3 = AF_GT_LOAD(x3, k);
    float8 b = AF_GT_LOAD(w0, k);
    c00 = mad(a0, b, c00), c10 = mad(a1, b, c10), c20 = mad(a2, b, c20), c30 = mad(a3, b, c30);
    b = AF_GT_LOAD(w1, k);
    c01 = mad(a0, b, c01), c11 = mad(a1, b, c11), c21 = mad(a2, b, c21), c31 = mad(a3, b, c31);
    b = AF_GT_LOAD(w2, k);
    c02 = mad(a0, b, c02), c12 = mad(a1, b, c12), c22 = mad(a2, b, c22), c32 = mad(a3, b, c32);
    b = AF_GT_LOAD(w3, k);
    c03 = mad(a0, b, c03), c13 = mad(a1, b, c13), c23 = mad(a2, b, c23), c33 = mad(a3, b, c33);
  }
  float8 acc[16] = {c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33};
  __global const float *xs[4] = {x0, x1, x2, x3}, *ws[4] = {w0, w1, w2, w3};
  for (int i = 0; i < 4; i++) {
    if (m0 + i >= M) break;
    for (int j = 0; j < 4; j++) {
      if (n0 + j >= N) break;
      float8 a = acc[i * 4 + j];
      float s = ((a.s0 + a.s1) + (a.s2 + a.s3)) + ((a.s4 + a.s5) + (a.s6 + a.s7));
      for (int k = k8; k < K; k++) s = mad(xs[i][k], ws[j][k], s);
      if (has_bias) s += bias[n0 + j];
      y[y_off + (long)(m0 + i) * ldy + n0 + j] = s;
    }
  }
}
