/* GEMM for CPU-like OpenCL devices (PoCL): C = alpha * op(A) * op(B) + beta * C,
 * row-major fp32, written for a device that runs the work-items of a group one
 * after another on one core (see toolchain-notes §9: explicit vectors, no
 * barriers, no local memory).  Two kernels: af_gemm_tiled over a packed B
 * (below) and af_gemm_dot for A·Bᵀ unpacked (at the end).  Both use fma():
 * mad() compiles to separate multiply and add on PoCL (half the speed).
 *
 * op(B) (K x N) is first packed into panels of GT_VW columns,
 *   bp[(p * K + k) * GT_VW + j] = op(B)[k][p * GT_VW + j]   (zero past N),
 * so that the inner loop reads one contiguous vector per panel and k.  Each
 * work-item then computes a register tile of GT_MR rows x GT_NP panels as an
 * outer product: per k, GT_NP vector loads, GT_MR scalar broadcasts of A and
 * GT_MR * GT_NP vector FMAs, with the accumulators in registers for the whole
 * K loop (no horizontal reductions, no partial sums written back).
 *
 * Cache use: work-items of a group (dimension 0 = consecutive row tiles) share
 * the same B panels, which stay in L2 (K * GT_VW * GT_NP * 4 bytes: 180 KB for
 * K = 1408, 16 x 2) while A rows stream past; the optional GT_KC blocks the K
 * loop so that a tile's A rows stay in L1 for K up to thousands (the C tile is
 * then accumulated in memory between blocks).
 *
 * Compile-time parameters (the host passes them; a device profile tunes them
 * through AF_GEMM_MR / AF_GEMM_NP / AF_GEMM_VW, see cl/gemm_tiled.h):
 *   GT_MR rows per work-item (1..16), GT_NP panels per work-item (1..4),
 *   GT_VW panel width = vector width (4, 8 or 16), GT_HALF_B = 1 when B is
 *   stored as fp16 (packing widens it; the packed panels are always fp32). */
#ifndef GT_MR
#define GT_MR 8
#endif
#ifndef GT_NP
#define GT_NP 2
#endif
#ifndef GT_VW
#define GT_VW 16
#endif

#define GT_CAT_(a, b) a##b
#define GT_CAT(a, b) GT_CAT_(a, b)
#define floatV GT_CAT(float, GT_VW)
#define vloadV GT_CAT(vload, GT_VW)
#define vstoreV GT_CAT(vstore, GT_VW)

/* Packs op(B) into panels.  One work-item per (GT_VW k values, panel): for
 * trans_b = 1 (B is N x K, B[n * ldb + k]) it reads GT_VW row pieces of GT_VW
 * floats and transposes them in registers; for trans_b = 0 (B is K x N,
 * B[k * ldb + n]) the panel rows are already contiguous.  Edges (past N or K)
 * go element by element, zero-filled past N.  global: (ceil(K / GT_VW), panels). */
__kernel void af_gemm_pack_b(const int N, const int K, const int trans_b, __global const float *b,
                             const long b_off, const int ldb, __global float *bp) {
  int k0 = get_global_id(0) * GT_VW, p = get_global_id(1);
  if (k0 >= K) return;
  int n0 = p * GT_VW;
  __global const float *src = b + b_off;
  __global float *dst = bp + ((long)p * K + k0) * GT_VW;
  if (n0 + GT_VW <= N && k0 + GT_VW <= K) {
    if (!trans_b) {
      for (int t = 0; t < GT_VW; t++) vstoreV(vloadV(0, src + (long)(k0 + t) * ldb + n0), t, dst);
      return;
    }
    float tile[GT_VW * GT_VW];
#pragma unroll
    for (int j = 0; j < GT_VW; j++) vstoreV(vloadV(0, src + (long)(n0 + j) * ldb + k0), j, tile);
#pragma unroll
    for (int t = 0; t < GT_VW; t++) {
      float col[GT_VW];
#pragma unroll
      for (int j = 0; j < GT_VW; j++) col[j] = tile[j * GT_VW + t];
      vstoreV(vloadV(0, col), t, dst);
    }
    return;
  }
  for (int t = 0; t < GT_VW && k0 + t < K; t++) {
    float col[GT_VW];
    for (int j = 0; j < GT_VW; j++) {
      int n = n0 + j, k = k0 + t;
      col[j] = n < N ? (trans_b ? src[(long)n * ldb + k] : src[(long)k * ldb + n]) : 0.0f;
    }
    vstoreV(vloadV(0, col), t, dst);
  }
}

/* The same from fp16 storage (B as half, widened with vload_half: no
 * cl_khr_fp16 needed).  Same geometry as af_gemm_pack_b. */
__kernel void af_gemm_pack_b_f16(const int N, const int K, const int trans_b, __global const half *b,
                                 const long b_off, const int ldb, __global float *bp) {
  int k0 = get_global_id(0) * GT_VW, p = get_global_id(1);
  if (k0 >= K) return;
  int n0 = p * GT_VW;
  __global const half *src = b + b_off;
  __global float *dst = bp + ((long)p * K + k0) * GT_VW;
  for (int t = 0; t < GT_VW && k0 + t < K; t++) {
    float col[GT_VW];
    for (int j = 0; j < GT_VW; j++) {
      int n = n0 + j, k = k0 + t;
      col[j] = n < N ? vload_half(0, src + (trans_b ? (long)n * ldb + k : (long)k * ldb + n)) : 0.0f;
    }
    vstoreV(vloadV(0, col), t, dst);
  }
}

/* One vector of a C row: c = alpha * acc (+ beta * c; beta is 1 for the
 * later K blocks), skipping columns >= N; C is not read when beta is 0. */
inline void gt_store(floatV acc, __global float *crow, int n0, int N, float alpha, float beta) {
  floatV r = alpha * acc;
  if (n0 + GT_VW <= N) {
    if (beta != 0.0f) r = mad((floatV)beta, vloadV(0, crow + n0), r);
    vstoreV(r, 0, crow + n0);
  } else {
    float t[GT_VW];
    vstoreV(r, 0, t);
    for (int j = 0; j < GT_VW && n0 + j < N; j++)
      crow[n0 + j] = beta != 0.0f ? mad(beta, crow[n0 + j], t[j]) : t[j];
  }
}

/* A element (m, k) is at a[a_off + m * a_rs + k * a_ks] (a_rs = lda, a_ks = 1
 * for op(A) = A; swapped for Aᵀ).  k0, kn: the K range of this launch; beta is
 * the caller's beta for the first block and 1 for the others.
 * global: (ceil(M / GT_MR) rounded to the group size, ceil(panels / GT_NP)).
 * af_gemm_tiled_h reads panels stored as fp16 (af_gemm_pack_b_h: weights
 * packed once at their own precision, half the bytes of fp32 panels; one
 * vcvtph2ps per panel vector and k, shared by the GT_MR rows). */
#define GT_PACKED_KERNEL(NAME, BT, B_LOADV)                                                                \
  __kernel void NAME(const int M, const int N, const int K, const int k0, const int kn, const float alpha, \
                     __global const float *a, const long a_off, const int a_rs, const int a_ks,            \
                     __global const BT *bp, const float beta, __global float *c, const long c_off,         \
                     const int ldc) {                                                                      \
    int m0 = get_global_id(0) * GT_MR, p0 = get_global_id(1) * GT_NP;                                      \
    int npan = (N + GT_VW - 1) / GT_VW;                                                                    \
    if (m0 >= M || p0 >= npan) return;                                                                     \
    __global const float *ar[GT_MR];                                                                       \
    __global const BT *bq[GT_NP];                                                                          \
    _Pragma("unroll") for (int i = 0; i < GT_MR; i++) ar[i] =                                              \
        a + a_off + (long)min(m0 + i, M - 1) * a_rs + (long)k0 * a_ks;                                     \
    _Pragma("unroll") for (int q = 0; q < GT_NP; q++) bq[q] =                                              \
        bp + ((long)min(p0 + q, npan - 1) * K + k0) * GT_VW;                                               \
    floatV acc[GT_MR][GT_NP];                                                                              \
    _Pragma("unroll") for (int i = 0; i < GT_MR; i++) _Pragma("unroll") for (int q = 0; q < GT_NP; q++)    \
        acc[i][q] = 0.0f;                                                                                  \
    for (int k = 0; k < kn; k++) {                                                                         \
      floatV bv[GT_NP];                                                                                    \
      _Pragma("unroll") for (int q = 0; q < GT_NP; q++) bv[q] = B_LOADV(k, bq[q]);                         \
      _Pragma("unroll") for (int i = 0; i < GT_MR; i++) {                                                  \
        floatV av = (floatV)(ar[i][(long)k * a_ks]);                                                       \
        _Pragma("unroll") for (int q = 0; q < GT_NP; q++) acc[i][q] = fma(av, bv[q], acc[i][q]);           \
      }                                                                                                    \
    }                                                                                                      \
    _Pragma("unroll") for (int i = 0; i < GT_MR; i++) {                                                    \
      if (m0 + i < M) {                                                                                    \
        __global float *crow = c + c_off + (long)(m0 + i) * ldc;                                           \
        _Pragma("unroll") for (int q = 0; q < GT_NP; q++) if (p0 + q < npan)                               \
            gt_store(acc[i][q], crow, (p0 + q) * GT_VW, N, alpha, beta);                                   \
      }                                                                                                    \
    }                                                                                                      \
  }
#define vload_halfV GT_CAT(vload_half, GT_VW)
GT_PACKED_KERNEL(af_gemm_tiled, float, vloadV)
GT_PACKED_KERNEL(af_gemm_tiled_h, half, vload_halfV)

/* op(B) = Bᵀ with B (N x K) stored as fp16, packed into fp16 panels (the
 * layout of af_gemm_pack_b, halves copied as they are, zero past N).
 * global: (ceil(K / GT_VW), panels). */
__kernel void af_gemm_pack_b_h(const int N, const int K, __global const ushort *b, const long b_off,
                               const int ldb, __global ushort *bp) {
  int k0 = get_global_id(0) * GT_VW, p = get_global_id(1);
  if (k0 >= K) return;
  int n0 = p * GT_VW;
  __global ushort *dst = bp + ((long)p * K + k0) * GT_VW;
  for (int t = 0; t < GT_VW && k0 + t < K; t++)
    for (int j = 0; j < GT_VW; j++)
      dst[t * GT_VW + j] = n0 + j < N ? b[b_off + (long)(n0 + j) * ldb + k0 + t] : 0;
}

/* ---------------------------------------------------------- no packing */

/* C = alpha * A * Bᵀ + beta * C with A (M x K) and B (N x K) both contiguous
 * along k: the model's X·Wᵀ without a packed copy of W (af_gemm_dot_f16b:
 * W stored as fp16).  Each work-item
 * computes GT_MR x GT_NC outputs as vector dot products along k (GT_MR +
 * GT_NC vector loads per GT_MR * GT_NC FMAs), reduced horizontally once at
 * the end.  global: (ceil(M / GT_MR) rounded to the group, ceil(N / GT_NC)). */
#ifndef GT_NC
#define GT_NC 4
#endif
inline float gt_hsum(floatV v) {
#if GT_VW == 16
  float8 h = v.lo + v.hi;
#elif GT_VW == 8
  float8 h = v;
#else
  float4 h = v;
#endif
#if GT_VW >= 8
  float4 f = h.lo + h.hi;
#else
  float4 f = h;
#endif
  return (f.s0 + f.s1) + (f.s2 + f.s3);
}

/* The kernel body, for B stored as BT (float, or half read with vload_half:
 * fp16 weights kept as fp16 on devices without cl_khr_fp16); B_LOADV / B_LOAD1
 * load a vector / one value of a B row as float. */
#define GT_DOT_KERNEL(NAME, BT, B_LOADV, B_LOAD1)                                                            \
  __kernel void NAME(const int M, const int N, const int K, const int k0, const float alpha,                 \
                     __global const float *a, const long a_off, const int lda, __global const BT *b,         \
                     const long b_off, const int ldb, const float beta, __global float *c, const long c_off, \
                     const int ldc) {                                                                        \
    int m0 = get_global_id(0) * GT_MR, n0 = get_global_id(1) * GT_NC;                                        \
    if (m0 >= M || n0 >= N) return;                                                                          \
    __global const float *ar[GT_MR];                                                                         \
    __global const BT *br[GT_NC];                                                                            \
    _Pragma("unroll") for (int i = 0; i < GT_MR; i++) ar[i] =                                                \
        a + a_off + (long)min(m0 + i, M - 1) * lda + k0;                                                     \
    _Pragma("unroll") for (int j = 0; j < GT_NC; j++) br[j] =                                                \
        b + b_off + (long)min(n0 + j, N - 1) * ldb + k0;                                                     \
    floatV acc[GT_MR][GT_NC];                                                                                \
    _Pragma("unroll") for (int i = 0; i < GT_MR; i++) _Pragma("unroll") for (int j = 0; j < GT_NC; j++)      \
        acc[i][j] = 0.0f;                                                                                    \
    int kv = K / GT_VW;                                                                                      \
    for (int k = 0; k < kv; k++) {                                                                           \
      floatV bv[GT_NC];                                                                                      \
      _Pragma("unroll") for (int j = 0; j < GT_NC; j++) bv[j] = B_LOADV(k, br[j]);                           \
      _Pragma("unroll") for (int i = 0; i < GT_MR; i++) {                                                    \
        floatV av = vloadV(k, ar[i]);                                                                        \
        _Pragma("unroll") for (int j = 0; j < GT_NC; j++) acc[i][j] = fma(av, bv[j], acc[i][j]);             \
      }                                                                                                      \
    }                                                                                                        \
    _Pragma("unroll") for (int i = 0; i < GT_MR; i++) {                                                      \
      if (m0 + i >= M) break;                                                                                \
      __global float *crow = c + c_off + (long)(m0 + i) * ldc;                                               \
      _Pragma("unroll") for (int j = 0; j < GT_NC; j++) {                                                    \
        if (n0 + j >= N) break;                                                                              \
        float s = gt_hsum(acc[i][j]);                                                                        \
        for (int k = kv * GT_VW; k < K; k++) s = fma(ar[i][k], B_LOAD1(k, br[j]), s);                        \
        s *= alpha;                                                                                          \
        crow[n0 + j] = beta != 0.0f ? fma(beta, crow[n0 + j], s) : s;                                        \
      }                                                                                                      \
    }                                                                                                        \
  }

#define GT_LOAD1_F32(k, p) ((p)[k])
GT_DOT_KERNEL(af_gemm_dot, float, vloadV, GT_LOAD1_F32)
GT_DOT_KERNEL(af_gemm_dot_f16b, half, vload_halfV, vload_half)
