/* Row-wise and element-wise kernels used by the model stages (stages/nn.c).
 * CPU-friendly for PoCL: a work-item owns a whole row or a contiguous chunk
 * (no barriers, no local memory); GPUs get many rows per launch. */

/* y[r] = (x[r] - mean) / sqrt(var + eps) * w + b; one work-item per row.
 * w/b may be the same buffer as a dummy when has_w/has_b are 0. */
__kernel void af_nn_layernorm(__global const float *x, const long x_off, __global float *y, const long y_off,
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

/* erf through erfc's Chebyshev fit (Numerical Recipes' erfcc, fractional
 * error < 1.2e-7 everywhere): built from exp and mad only, so PoCL
 * vectorises it, while its built-in erf is a scalar call per element (7x
 * slower on GELU-sized buffers).  Selected with AF_NN_FAST_ERF (default 1). */
#ifndef AF_NN_FAST_ERF
#define AF_NN_FAST_ERF 1
#endif
inline float af_erf(float x) {
#if AF_NN_FAST_ERF
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

/* exact GELU: 0.5 x (1 + erf(x / sqrt 2)); one element per work-item so
 * PoCL vectorises across the work-group */
__kernel void af_nn_gelu(__global float *x, const long off, const long n) {
  long i = get_global_id(0);
  if (i >= n) return;
  float v = x[off + i];
  x[off + i] = 0.5f * v * (1.0f + af_erf(v * 0.70710678118654752f));
}

/* y += x */
__kernel void af_nn_add(__global float *y, const long y_off, __global const float *x, const long x_off,
                        const long n) {
  long i = get_global_id(0);
  if (i < n) y[y_off + i] += x[x_off + i];
}

/* y[r, :] += bias[:] for rows r of width n, row stride ld */
__kernel void af_nn_add_bias(__global float *y, const long y_off, const int ld, __global const float *bias,
                             const int rows, const int n) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global float *yr = y + y_off + (long)r * ld;
  for (int i = 0; i < n; i++) yr[i] += bias[i];
}
