/* K-quant weights (Q4_K, Q5_K, Q6_K: llama.cpp's Q4_K_M / Q5_K_M / Q6_K base
 * LLMs) used in place: decode GEMVs that dequantise each 32-value sub-block
 * in registers, and a dequantiser into fp32 for the prefill GEMM.  The block
 * layouts and the plain-C reference: formats/kquant.h; host side:
 * cl/kquant.c.  fp16 scales are read through the fp16 -> fp32 table
 * (af_cl_half_lut), as gemv_cpu.cl does.
 *
 * AF_KQ_SUB(T, b, j, w0, w1): values 0-15 and 16-31 of sub-block j (0..7)
 * of the super-block at b, as floats with their scale (and min) applied;
 * no contraction, so the values equal formats/kquant.c's bit for bit. */
#pragma OPENCL FP_CONTRACT OFF

inline ushort af_kq_u16(__global const uchar *p) {
  return (ushort)(p[0] | (p[1] << 8));
}

/* Q4_K / Q5_K: value = d sc q - dmin m (q 4 bits, Q5_K's fifth bit from qh) */
inline void af_kq_sub45(__global const uchar *b, const int j, const int five, __global const float *lut,
                        float16 *w0, float16 *w1) {
  __global const uchar *s = b + 4;
  int sc, m;
  if (j < 4) {
    sc = s[j] & 63, m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
  float ds = lut[af_kq_u16(b)] * (float)sc, dm = lut[af_kq_u16(b + 2)] * (float)m;
  __global const uchar *qs = b + (five ? 48 : 16) + 32 * (j >> 1);
  uchar16 q0 = vload16(0, qs), q1 = vload16(1, qs);
  q0 = (j & 1) ? q0 >> (uchar)4 : q0 & (uchar)15;
  q1 = (j & 1) ? q1 >> (uchar)4 : q1 & (uchar)15;
  if (five) {
    uchar sh = (uchar)j;
    q0 |= ((vload16(0, b + 16) >> sh) & (uchar)1) << (uchar)4;
    q1 |= ((vload16(1, b + 16) >> sh) & (uchar)1) << (uchar)4;
  }
  *w0 = ds * convert_float16(q0) - dm;
  *w1 = ds * convert_float16(q1) - dm;
}

/* Q6_K: value = d sc (q - 32), q 6 bits, a scale per 16 values */
inline void af_kq_sub6(__global const uchar *b, const int j, __global const float *lut, float16 *w0,
                       float16 *w1) {
  int h = j >> 2, s = j & 3;
  __global const uchar *ql = b + 64 * h + 32 * (s & 1), *qh = b + 128 + 32 * h;
  uchar16 l0 = vload16(0, ql), l1 = vload16(1, ql);
  l0 = s < 2 ? l0 & (uchar)15 : l0 >> (uchar)4;
  l1 = s < 2 ? l1 & (uchar)15 : l1 >> (uchar)4;
  uchar sh = (uchar)(2 * s);
  l0 |= ((vload16(0, qh) >> sh) & (uchar)3) << (uchar)4;
  l1 |= ((vload16(1, qh) >> sh) & (uchar)3) << (uchar)4;
  __global const char *sc = (__global const char *)(b + 192) + 8 * h + 2 * s;
  float d = lut[af_kq_u16(b + 208)];
  *w0 = convert_float16(convert_int16(l0) - 32) * (d * (float)sc[0]);
  *w1 = convert_float16(convert_int16(l1) - 32) * (d * (float)sc[1]);
}

#define AF_KQ_BYTES(T) ((T) == 12 ? 144 : (T) == 13 ? 176 : 210)
#define AF_KQ_SUB(T, b, j, w0, w1) \
  ((T) == 14 ? af_kq_sub6(b, j, lut, w0, w1) : af_kq_sub45(b, j, (T) == 13, lut, w0, w1))

/* dst[256 s ..] = the values of super-block s; one work-item per super-block */
#define AF_KQ_DEQUANT(NAME, T)                                                       \
  __kernel void NAME(__global const uchar *src, __global float *dst, const long nsb, \
                     __global const float *lut) {                                    \
    long s = get_global_id(0);                                                       \
    if (s >= nsb) return;                                                            \
    __global const uchar *b = src + s * AF_KQ_BYTES(T);                              \
    for (int j = 0; j < 8; j++) {                                                    \
      float16 w0, w1;                                                                \
      AF_KQ_SUB(T, b, j, &w0, &w1);                                                  \
      vstore16(w0, 0, dst + 256 * s + 32 * j);                                       \
      vstore16(w1, 0, dst + 256 * s + 32 * j + 16);                                  \
    }                                                                                \
  }
AF_KQ_DEQUANT(af_kq_dequant_q4_k, 12)
AF_KQ_DEQUANT(af_kq_dequant_q5_k, 13)
AF_KQ_DEQUANT(af_kq_dequant_q6_k, 14)

inline float af_kq_hsum(float16 a) {
  float8 h = a.lo + a.hi;
  float4 q = h.lo + h.hi;
  return (q.s0 + q.s1) + (q.s2 + q.s3);
}

/* y[b, r] = W[r, :] . x[b, :] (+ bias[r]) for b < nb (NB vectors, the last
 * repeated past nb), W rows of k / 256 super-blocks.  A work-item owns rb
 * consecutive rows and walks them R at a time (R read streams per core, as
 * the CPU GEMVs of gemv_cpu.cl); each sub-block is dequantised once and used
 * for every vector.  global: ceil(rows / rb) items. */
#define AF_KQ_GEMV(NAME, T, NB, R)                                                                          \
  __kernel void NAME(__global const uchar *w, const int rows, const int k, __global const float *x,         \
                     const long x_off, const int nb, __global float *y, const long y_off,                   \
                     __global const float *bias, const int has_bias, const int rb,                          \
                     __global const float *lut) {                                                           \
    int r0 = get_global_id(0) * rb;                                                                         \
    if (r0 >= rows) return;                                                                                 \
    int r1 = min(r0 + rb, rows), nsb = k / 256;                                                             \
    long rbytes = (long)nsb * AF_KQ_BYTES(T);                                                               \
    __global const float *xb[NB];                                                                           \
    _Pragma("unroll") for (int b = 0; b < NB; b++) xb[b] = x + x_off + (long)min(b, nb - 1) * k;            \
    for (int r = r0; r < r1; r += R) {                                                                      \
      float16 acc[R][NB];                                                                                   \
      _Pragma("unroll") for (int i = 0; i < R; i++) _Pragma("unroll") for (int b = 0; b < NB; b++)          \
          acc[i][b] = (float16)(0.0f);                                                                      \
      for (int sb = 0; sb < nsb; sb++)                                                                      \
        for (int j = 0; j < 8; j++) {                                                                       \
          int c = 256 * sb + 32 * j;                                                                        \
          _Pragma("unroll") for (int i = 0; i < R; i++) {                                                   \
            float16 w0, w1;                                                                                 \
            AF_KQ_SUB(T, w + (long)min(r + i, rows - 1) * rbytes + (long)sb * AF_KQ_BYTES(T), j, &w0, &w1); \
            _Pragma("unroll") for (int b = 0; b < NB; b++) acc[i][b] =                                      \
                fma(w1, vload16(0, xb[b] + c + 16), fma(w0, vload16(0, xb[b] + c), acc[i][b]));             \
          }                                                                                                 \
        }                                                                                                   \
      _Pragma("unroll") for (int i = 0; i < R; i++) {                                                       \
        if (r + i >= r1) break;                                                                             \
        float bv = has_bias ? bias[r + i] : 0.0f;                                                           \
        _Pragma("unroll") for (int b = 0; b < NB; b++) if (b < nb) y[y_off + (long)b * rows + r + i] =      \
            af_kq_hsum(acc[i][b]) + bv;                                                                     \
      }                                                                                                     \
    }                                                                                                       \
  }
#define AF_KQ_GEMVS(TN, T)                 \
  AF_KQ_GEMV(af_kq_gemv_##TN##_1, T, 1, 4) \
  AF_KQ_GEMV(af_kq_gemv_##TN##_2, T, 2, 4) \
  AF_KQ_GEMV(af_kq_gemv_##TN##_4, T, 4, 2) \
  AF_KQ_GEMV(af_kq_gemv_##TN##_8, T, 8, 1)
AF_KQ_GEMVS(q4_k, 12)
AF_KQ_GEMVS(q5_k, 13)
AF_KQ_GEMVS(q6_k, 14)
