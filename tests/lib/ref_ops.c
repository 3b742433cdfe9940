/* Plain-C references of the op library (see ref_ops.h). */
#include "ref_ops.h"

#include <math.h>
#include <stdlib.h>

#include "formats/quant.h"

void ref_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
              const float *b, size_t ldb, float beta, float *c, size_t ldc) {
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (size_t p = 0; p < k; p++)
        s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = (float)(alpha * s + beta * c[i * ldc + j]);
    }
}

void ref_gemv(const float *w, size_t rows, size_t k, const float *x, int nb, const float *bias, float *y) {
  for (int b = 0; b < nb; b++)
    for (size_t r = 0; r < rows; r++) {
      double s = bias ? bias[r] : 0.0;
      for (size_t p = 0; p < k; p++) s += (double)w[r * k + p] * x[b * k + p];
      y[b * rows + r] = (float)s;
    }
}

void ref_rmsnorm_rows(const float *x, size_t rows, size_t n, const float *w, float eps, float *y) {
  for (size_t r = 0; r < rows; r++) {
    double ms = 0;
    for (size_t i = 0; i < n; i++) ms += (double)x[r * n + i] * x[r * n + i];
    double inv = 1.0 / sqrt(ms / n + eps);
    for (size_t i = 0; i < n; i++) y[r * n + i] = (float)(w[i] * (x[r * n + i] * inv));
  }
}

void ref_layernorm_rows(const float *x, size_t rows, size_t n, const float *w, const float *b, float eps,
                        float *y) {
  for (size_t r = 0; r < rows; r++) {
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += x[r * n + i];
    mean /= n;
    for (size_t i = 0; i < n; i++) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
    double inv = 1.0 / sqrt(var / n + eps);
    for (size_t i = 0; i < n; i++) y[r * n + i] = (float)((x[r * n + i] - mean) * inv * w[i] + b[i]);
  }
}

void ref_softmax_rows(float *x, size_t rows, size_t n, float scale, int causal, int q_rows, int offset) {
  for (size_t r = 0; r < rows; r++) {
    float *p = x + r * n;
    size_t lim = causal ? (size_t)(r % (size_t)q_rows) + (size_t)offset + 1 : n;
    if (lim > n) lim = n;
    double mx = -INFINITY, sum = 0;
    for (size_t j = 0; j < lim; j++) mx = fmax(mx, (double)p[j] * scale);
    for (size_t j = 0; j < lim; j++) sum += exp((double)p[j] * scale - mx);
    for (size_t j = 0; j < n; j++) p[j] = j < lim ? (float)(exp((double)p[j] * scale - mx) / sum) : 0.0f;
  }
}

void ref_rope(float *x, size_t tokens, int heads, int d, int pos0, float base, int interleaved) {
  for (size_t t = 0; t < tokens; t++)
    for (int h = 0; h < heads; h++)
      for (int i = 0; i < d / 2; i++) {
        /* the angle in fp32, as HF builds its cos/sin cache: t * inv_freq */
        float inv = 1.0f / powf(base, (float)(2 * i) / (float)d);
        double ang = (float)(pos0 + (int)t) * inv;
        float *v = x + (t * heads + h) * d;
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + d / 2;
        double x0 = v[a], x1 = v[b];
        v[a] = (float)(x0 * cos(ang) - x1 * sin(ang));
        v[b] = (float)(x1 * cos(ang) + x0 * sin(ang));
      }
}

/* The int8-activation GEMM (cl/gemm_q8.h): x quantised per 32-block with
 * d = amax / 127 and q = rint(x / d), W's blocks as stored, the integer block
 * sums exact, then acc = fma(isum * dw, dx, acc) block after block in fp32,
 * as the kernel does per output. */
void ref_qgemm(int q4, size_t m, size_t n, size_t k, const float *x, const void *w, const float *bias,
               float *y) {
  size_t nblk = k / 32, bsz = q4 ? AF_Q4_0_BLOCK_BYTES : AF_Q8_0_BLOCK_BYTES;
  signed char *qx = malloc(k);
  float *dx = malloc(sizeof(float) * (nblk ? nblk : 1));
  for (size_t i = 0; i < m; i++) {
    for (size_t b = 0; b < nblk; b++) {
      const float *p = x + i * k + 32 * b;
      float amax = 0;
      for (int j = 0; j < 32; j++) amax = fabsf(p[j]) > amax ? fabsf(p[j]) : amax;
      float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
      for (int j = 0; j < 32; j++) {
        float r = rintf(p[j] * id);
        qx[32 * b + j] = (signed char)(r > 127 ? 127 : r < -127 ? -127 : r);
      }
      dx[b] = d;
    }
    for (size_t r = 0; r < n; r++) {
      float acc = 0;
      for (size_t b = 0; b < nblk; b++) {
        const uint8_t *blk = (const uint8_t *)w + (r * nblk + b) * bsz;
        float dw = af_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
        int32_t s = 0;
        for (int j = 0; j < 32; j++) {
          int qw = q4 ? (j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4) - 8 : (int)(int8_t)blk[2 + j];
          s += qw * qx[32 * b + j];
        }
        acc = fmaf((float)s * dw, dx[b], acc);
      }
      y[i * n + r] = bias ? acc + bias[r] : acc;
    }
  }
  free(qx), free(dx);
}
