/* Prefill GEMM over Q8_0 / Q4_0 weights used in place, with the activations
 * quantised per 32-block to int8 as llama.cpp does for its CPU dot products
 * (the product decision of issue 20: quantised weights may take quantised
 * activations; f32/f16 weights never do).  Host side: cl/gemm_q8.c.
 *
 *   y[m, n] = sum_b dw[n, b] * dx[m, b] * sum_i qw[n, 32b + i] * qx[m, 32b + i]
 *
 * with qx = rint(x / dx), dx = amax / 127 per block of x (fp32, not rounded to
 * fp16 as llama.cpp's Q8_0 activations are), and the block sums exact in
 * int32.  The weights enter the integer dot product as unsigned bytes:
 * Q4_0's nibbles (0..15, the -8 moved into the sum: - 8 sum_i qx) and Q8_0's
 * bytes xor 0x80 (q + 128, moved out as - 128 sum_i qx), so one unsigned x
 * signed multiply-add (AVX-512 VNNI vpdpbusd) covers both.
 *
 * Layout of the product: a work-item owns 16 consecutive outputs n (weight
 * rows) for every row m.  It first copies its 16 weight rows into local
 * memory as lanes: for block b and quad t (bytes 4t..4t+3 of the block's 32
 * values) the 16 rows' four bytes side by side, one 64-byte vector, plus the
 * 16 rows' scales as floats.  The copy is made once and used for every row m,
 * so its cost shrinks with the prompt length.  Then per MR rows of x and per
 * block: 8 vpdpbusd with the row's four x bytes broadcast (a memory operand),
 * one int-to-float conversion, one multiply by the 16 weight scales and one
 * FMA with the row's scale: 11 vector operations per 512 multiply-adds,
 * against 32 FMAs for fp32 (and no fp32 copy of the weights to write and
 * read back, which the float prefill path needs).
 *
 * VNNI: PoCL 3.1 compiles for "skylake-avx512" (LLVM 15 does not know this
 * CPU's name), so the instruction is only available inside a function marked
 * target("avx512vnni") that is not inlined into PoCL's work-group wrapper
 * (inlined, LLVM fails with "Cannot select X86ISD::VPDPBUSD").  The host
 * sets AF_QG_VNNI=1 only when the CPU has it (cl/gemm_q8.c); otherwise the
 * same sums are formed with plain integer operations (slower, equal). */

#ifndef AF_QG_MR
#define AF_QG_MR 8
#endif
#if AF_QG_MR < 1 || AF_QG_MR > 12
#error "AF_QG_MR must be 1..12 (rows of x per pass)"
#endif

/* x (M x K fp32, row stride ldx) -> qb: qx (M x K int8), then dx (M x K/32
 * floats), then sx (M x K/32 ints: the sum of each block's qx).  One
 * work-item per block. */
__kernel void af_qg_quant_x(const int M, const int K, __global const float *x, const long x_off,
                            const int ldx, __global char *qb) {
  int b = get_global_id(0), m = get_global_id(1), nblk = K / 32;
  if (b >= nblk || m >= M) return;
  __global char *qx = qb;
  __global float *dx = (__global float *)(qb + (long)M * K);
  __global int *sx = (__global int *)(qb + (long)M * K + (long)M * nblk * 4);
  __global const float *p = x + x_off + (long)m * ldx + 32 * b;
  float16 a = vload16(0, p), c = vload16(1, p);
  float16 h = fmax(fabs(a), fabs(c));
  float8 h8 = fmax(h.lo, h.hi);
  float4 h4 = fmax(h8.lo, h8.hi);
  float amax = fmax(fmax(h4.s0, h4.s1), fmax(h4.s2, h4.s3));
  float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  int16 qa = convert_int16(rint(a * id)), qc = convert_int16(rint(c * id));
  qa = clamp(qa, -127, 127), qc = clamp(qc, -127, 127);
  long o = (long)m * K + 32 * b;
  vstore16(convert_char16(qa), 0, qx + o);
  vstore16(convert_char16(qc), 0, qx + o + 16);
  int16 s = qa + qc;
  int8 s8 = s.lo + s.hi;
  int4 s4 = s8.lo + s8.hi;
  dx[(long)m * nblk + b] = d;
  sx[(long)m * nblk + b] = (s4.s0 + s4.s1) + (s4.s2 + s4.s3);
}

/* acc + sum over each lane's 4 byte pairs of u (unsigned) x s (signed) */
#if AF_QG_VNNI
typedef int af_qg_v16si __attribute__((vector_size(64)));
typedef union {
  int16 e;
  af_qg_v16si v;
} af_qg_u16;
__attribute__((target("avx512vnni"))) inline int16 af_qg_dp(int16 acc, int16 u, int16 s) {
  af_qg_u16 a, b, c;
  a.e = acc, b.e = u, c.e = s;
  a.v = __builtin_ia32_vpdpbusd512(a.v, b.v, c.v);
  return a.e;
}
#define AF_QG_DP(acc, u, s) af_qg_dp(acc, u, s)
#define AF_QG_TARGET __attribute__((target("avx512vnni"), noinline))
#else
inline int16 af_qg_dp(int16 acc, int16 u, int16 s) {
  acc += (u & 0xff) * ((s << 24) >> 24);
  acc += ((u >> 8) & 0xff) * ((s << 16) >> 24);
  acc += ((u >> 16) & 0xff) * ((s << 8) >> 24);
  return acc + ((u >> 24) & 0xff) * (s >> 24);
}
#define AF_QG_DP(acc, u, s) af_qg_dp(acc, u, s)
#define AF_QG_TARGET
#endif

/* rows m0..M of x against the 16 weight rows in pw/ps, written to y */
AF_QG_TARGET void af_qg_rows(const int M, const int N, const int nblk, const int n0, const int off,
                             __local const int *pw, __local const float *ps, __global const int *qx,
                             __global const float *dx, __global const int *sx, __global float *y,
                             const long y_off, const int ldc, __global const float *bias,
                             const int has_bias) {
  float16 bv = 0.0f;
  if (has_bias)
    for (int i = 0; i < 16; i++) bv[i] = bias[min(n0 + i, N - 1)];
  for (int m0 = 0; m0 < M; m0 += AF_QG_MR) {
    __global const int *xr[AF_QG_MR];
    __global const float *dr[AF_QG_MR];
    __global const int *sr[AF_QG_MR];
    float16 fa[AF_QG_MR];
#pragma unroll
    for (int i = 0; i < AF_QG_MR; i++) {
      int m = min(m0 + i, M - 1);
      xr[i] = qx + (long)m * nblk * 8;
      dr[i] = dx + (long)m * nblk;
      sr[i] = sx + (long)m * nblk;
      fa[i] = 0.0f;
    }
    for (int b = 0; b < nblk; b++) {
      int16 ia[AF_QG_MR];
#pragma unroll
      for (int i = 0; i < AF_QG_MR; i++) ia[i] = (int16)(-off * sr[i][b]);
#pragma unroll
      for (int t = 0; t < 8; t++) {
        int16 wv = vload16(b * 8 + t, pw);
#pragma unroll
        for (int i = 0; i < AF_QG_MR; i++) ia[i] = AF_QG_DP(ia[i], wv, (int16)(xr[i][b * 8 + t]));
      }
      float16 dw = vload16(b, ps);
#pragma unroll
      for (int i = 0; i < AF_QG_MR; i++) fa[i] = fma(convert_float16(ia[i]) * dw, (float16)(dr[i][b]), fa[i]);
    }
#pragma unroll
    for (int i = 0; i < AF_QG_MR; i++) {
      if (m0 + i >= M) break;
      __global float *yr = y + y_off + (long)(m0 + i) * ldc + n0;
      float16 r = fa[i] + bv;
      if (n0 + 16 <= N)
        vstore16(r, 0, yr);
      else
        for (int j = 0; j < N - n0; j++) yr[j] = r[j];
    }
  }
}

/* y (M x N, row stride ldc) = x·Wᵀ (+ bias) with W (N x K) in ggml blocks
 * (q4: Q4_0, else Q8_0); qb from af_qg_quant_x; lut: the fp16 -> fp32
 * table of the block scales; pan: local memory of K/32 * 576 bytes.
 * global: ceil(N / 16) work-items, local size 1. */
__kernel void af_qg_gemm(const int M, const int N, const int K, const int q4, __global const uchar *w,
                         __global const uchar *qb, __global const float *lut, __global float *y,
                         const long y_off, const int ldc, __global const float *bias, const int has_bias,
                         __local int *pan) {
  int n0 = get_global_id(0) * 16, nblk = K / 32;
  if (n0 >= N) return;
  __global const int *qx = (__global const int *)qb;
  __global const float *dx = (__global const float *)(qb + (long)M * K);
  __global const int *sx = (__global const int *)(qb + (long)M * K + (long)M * nblk * 4);
  __local int *pw = pan;
  __local float *ps = (__local float *)(pan + nblk * 128);
  long bsz = q4 ? 18 : 34, rbytes = nblk * bsz;
  __global const uchar *wr[16];
  for (int i = 0; i < 16; i++) wr[i] = w + (long)min(n0 + i, N - 1) * rbytes;
  for (int b = 0; b < nblk; b++) {
    /* the 16 rows' quads side by side: rows 4g..4g+3 in the 128-bit lanes of
     * z[g] (one lane = one row's 4 quads), then a 16 x 4 transpose of dwords
     * with shuffles (vpermt2d): o[t] = quad t of every row */
    uint16 zl[4], zh[4];
    for (int g = 0; g < 4; g++) {
      uint4 a[4], c[4];
      for (int j = 0; j < 4; j++) {
        __global const uchar *blk = wr[4 * g + j] + b * bsz;
        ps[b * 16 + 4 * g + j] = lut[*(__global const ushort *)blk];
        if (q4) {
          uchar16 qb = vload16(0, blk + 2);
          a[j] = as_uint4(qb & (uchar)15), c[j] = as_uint4(qb >> (uchar)4);
        } else {
          a[j] = as_uint4(vload16(0, blk + 2) ^ (uchar)0x80),
          c[j] = as_uint4(vload16(0, blk + 18) ^ (uchar)0x80);
        }
      }
      zl[g] = (uint16)(a[0], a[1], a[2], a[3]);
      zh[g] = (uint16)(c[0], c[1], c[2], c[3]);
    }
    __local int *d = pw + b * 128;
    for (int t = 0; t < 4; t++) {
      const uint16 sel = (uint16)(t, t + 4, t + 8, t + 12, t + 16, t + 20, t + 24, t + 28, t, t + 4, t + 8,
                                  t + 12, t + 16, t + 20, t + 24, t + 28);
      const uint16 join = (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      uint16 lo = shuffle2(shuffle2(zl[0], zl[1], sel), shuffle2(zl[2], zl[3], sel), join);
      uint16 hi = shuffle2(shuffle2(zh[0], zh[1], sel), shuffle2(zh[2], zh[3], sel), join);
      vstore16(as_int16(lo), t, d);
      vstore16(as_int16(hi), t + 4, d);
    }
  }
  af_qg_rows(M, N, nblk, n0, q4 ? 8 : 128, pw, ps, qx, dx, sx, y, y_off, ldc, bias, has_bias);
}
