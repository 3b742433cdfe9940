/* Row-wise and element-wise kernels used by the model stages (stages/nn.c).
 * CPU-friendly for PoCL: a work-item owns a whole row or a contiguous chunk
 * (no barriers, no local memory); GPUs get many rows per launch. */
#ifndef AF_NN_CHUNK
#define AF_NN_CHUNK 64 /* elements per work-item in element-wise kernels */
#endif

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

/* exact GELU: 0.5 x (1 + erf(x / sqrt 2)) */
__kernel void af_nn_gelu(__global float *x, const long off, const long n) {
  long i0 = (long)get_global_id(0) * AF_NN_CHUNK;
  long i1 = min(i0 + AF_NN_CHUNK, n);
  __global float *p = x + off;
  for (long i = i0; i < i1; i++) p[i] = 0.5f * p[i] * (1.0f + erf(p[i] * 0.70710678118654752f));
}

/* y += x */
__kernel void af_nn_add(__global float *y, const long y_off, __global const float *x, const long x_off,
                        const long n) {
  long i0 = (long)get_global_id(0) * AF_NN_CHUNK;
  long i1 = min(i0 + AF_NN_CHUNK, n);
  for (long i = i0; i < i1; i++) y[y_off + i] += x[x_off + i];
}

/* y[r, :] += bias[:] for rows r of width n, row stride ld */
__kernel void af_nn_add_bias(__global float *y, const long y_off, const int ld, __global const float *bias,
                             const int rows, const int n) {
  int r = get_global_id(0);
  if (r >= rows) return;
  __global float *yr = y + y_off + (long)r * ld;
  for (int i = 0; i < n; i++) yr[i] += bias[i];
}
