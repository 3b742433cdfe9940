/* GEMV kernels for CPU devices (PoCL): decode's y[b, r] = W[r, :] . x[b, :]
 * (+ bias[r]) for b < nb, with W stored fp32, fp16, or ggml Q8_0 / Q4_0
 * blocks.  Host side: af_op_gemv / af_op_gemv_qn in cl/ops.c, used when the
 * device profile sets `AF_GEMV_IMPL: cpu` (the portable kernels in ops.cl
 * stay the default, e.g. for GPUs).
 *
 * Why this shape (PoCL 3.1 on a 2-core AVX-512 machine, docs/profiles.md):
 * - each work-item owns `rb` consecutive rows (one contiguous stretch of W)
 *   and walks them R rows at a time: R independent read streams per core
 *   keep more cache misses in flight than one row at a time (0.8 vs 0.6 of
 *   a plain streaming-sum kernel for fp16);
 * - explicit float16 vectors along k (vload_half16 -> vcvtph2ps; Q8_0/Q4_0
 *   bytes widened with convert_float16) inside one work-item; work-groups of
 *   one item, so PoCL's work-group vectoriser does not interleave rows;
 * - no local memory, no barriers; the x vectors (at most 8 x k floats) stay
 *   in L1/L2 and are loaded once per 16 columns for all R rows.
 * Accumulation is fp32 (fma); each output's sum is reduced once at the end.
 * nb < NB repeats the last vector and stores only b < nb (as in ops.cl). */

inline float af_gc_hsum(float16 a) {
  float8 h = a.lo + a.hi;
  float4 q = h.lo + h.hi;
  return (q.s0 + q.s1) + (q.s2 + q.s3);
}

#define AF_GC_ARGS(WT)                                                                                   \
  __global const WT *w, const int rows, const int k, __global const float *x, const long x_off,          \
      const int nb, __global float *y, const long y_off, __global const float *bias, const int has_bias, \
      const int rb

/* stores the R x NB sums of rows r.. (those below r1) with the bias when
 * FIRST, else adds them to what y holds (a later chunk of k); TAIL adds the
 * columns past the vectorised part to s */
#define AF_GC_STORE(NB, R, TAIL, FIRST)                \
  _Pragma("unroll") for (int i = 0; i < R; i++) {      \
    if (r + i < r1) {                                  \
      float bv = has_bias ? bias[r + i] : 0.0f;        \
      _Pragma("unroll") for (int b = 0; b < NB; b++) { \
        if (b < nb) {                                  \
          long o = y_off + (long)b * rows + r + i;     \
          float s = af_gc_hsum(acc[i][b]);             \
          TAIL;                                        \
          y[o] = (FIRST) ? s + bv : y[o] + s;          \
        }                                              \
      }                                                \
    }                                                  \
  }

/* Software prefetch AF_GEMV_PF bytes ahead of every row stream (0: off).
 * A work-item walks R rows at once, so each core has R interleaved streams
 * that advance 18-34 bytes per step; the hardware prefetchers fall behind on
 * those, and each demand miss then holds a fill buffer for a DRAM round trip.
 * A probe that only reads Q4_0 blocks in this pattern reached ~9-10 GB/s;
 * with the prefetch ~16-20, against ~26 for one contiguous read (2-core
 * PoCL machine, 11008 x 4096 from DRAM; docs/profiles.md).  OpenCL's own
 * prefetch() is a no-op in PoCL 3.1, clang's builtin becomes prefetcht0;
 * compilers without it get no prefetch. */
#ifndef AF_GEMV_PF
#define AF_GEMV_PF 384
#endif
#if AF_GEMV_PF < 0 || AF_GEMV_PF > 8192
#error "AF_GEMV_PF must be 0..8192 (bytes prefetched ahead)"
#endif
#if defined(__has_builtin)
#if __has_builtin(__builtin_prefetch) && AF_GEMV_PF > 0
#define AF_GC_PREFETCH(p, off) __builtin_prefetch((__global const char *)(p) + (off))
#endif
#endif
#ifndef AF_GC_PREFETCH
#define AF_GC_PREFETCH(p, off) ((void)0)
#endif
/* The byte offset to prefetch at, from a row stream's start, when the walk
 * is at byte `at` of a stretch of `len` bytes per row: AF_GEMV_PF ahead, and
 * with AF_GEMV_PF_NEXT (default 1) past the stretch's end into the same
 * stretch of the row R further on (the one this stream reads next) instead
 * of the start of the next row, which another stream is already reading.
 * Without the jump each pass of R rows started on R cold streams.  11008 x
 * 4096 from DRAM in 4 KiB pages (like the mapped model file), medians of 5
 * alternating runs: Q8_0 22.1 -> 23.3 GB/s (another 5: 20.2 -> 23.4), f16
 * unchanged; whole 7B decode: docs/profiles.md. */
#ifndef AF_GEMV_PF_NEXT
#define AF_GEMV_PF_NEXT 1
#endif
#define AF_GC_PF_OFF(at, len, R, row_bytes)                          \
  ((at) + AF_GEMV_PF < (len) || !AF_GEMV_PF_NEXT ? (at) + AF_GEMV_PF \
                                                 : (at) + AF_GEMV_PF - (len) + (long)(R) * (row_bytes))

/* fp32 / fp16 weights: any k (scalar tail past the last 16 columns) */
#define AF_GC_DENSE(NAME, WT, NB, R, LOAD16, LOAD1)                                                        \
  __kernel void NAME(AF_GC_ARGS(WT)) {                                                                     \
    int r0 = get_global_id(0) * rb;                                                                        \
    if (r0 >= rows) return;                                                                                \
    int r1 = min(r0 + rb, rows), k16 = k / 16;                                                             \
    __global const float *xb[NB];                                                                          \
    _Pragma("unroll") for (int b = 0; b < NB; b++) xb[b] = x + x_off + (long)min(b, nb - 1) * k;           \
    for (int r = r0; r < r1; r += R) {                                                                     \
      __global const WT *wr[R];                                                                            \
      float16 acc[R][NB];                                                                                  \
      _Pragma("unroll") for (int i = 0; i < R; i++) {                                                      \
        wr[i] = w + (long)min(r + i, rows - 1) * k;                                                        \
        _Pragma("unroll") for (int b = 0; b < NB; b++) acc[i][b] = (float16)(0.0f);                        \
      }                                                                                                    \
      for (int j = 0; j < k16; j++) {                                                                      \
        float16 wv[R];                                                                                     \
        long pfo = AF_GC_PF_OFF((long)j * 16 * sizeof(WT), (long)k * sizeof(WT), R, (long)k * sizeof(WT)); \
        _Pragma("unroll") for (int i = 0; i < R; i++) {                                                    \
          AF_GC_PREFETCH(wr[i], pfo);                                                                      \
          wv[i] = LOAD16(j, wr[i]);                                                                        \
        }                                                                                                  \
        _Pragma("unroll") for (int b = 0; b < NB; b++) {                                                   \
          float16 xv = vload16(j, xb[b]);                                                                  \
          _Pragma("unroll") for (int i = 0; i < R; i++) acc[i][b] = fma(wv[i], xv, acc[i][b]);             \
        }                                                                                                  \
      }                                                                                                    \
      AF_GC_STORE(NB, R, for (int j = 16 * k16; j < k; j++) s = fma(LOAD1(j, wr[i]), xb[b][j], s), 1)      \
    }                                                                                                      \
  }

#define AF_GC_LOAD16_F32(j, p) vload16(j, p)
#define AF_GC_LOAD1_F32(j, p) (p)[j]
#define AF_GC_LOAD16_F16(j, p) vload_half16(j, p)
#define AF_GC_LOAD1_F16(j, p) vload_half(j, p)
/* R rows at once: 4, or 2 with 8 vectors (R x NB float16 accumulators must
 * fit the 32 vector registers).  One vector: AF_GEMV_R1 rows (default 8):
 * more read streams in flight per core; on the 2-core PoCL machine, 11008 x
 * 4096 from DRAM, q8_0 went from ~16.4 to ~18 GB/s and q4_0 from ~8.2 to
 * ~9.6 (medians of 3, same run), f16 unchanged (~21.5); fp32 stays at 4. */
#ifndef AF_GEMV_R1
#define AF_GEMV_R1 8
#endif
#if AF_GEMV_R1 < 1 || AF_GEMV_R1 > 16
#error "AF_GEMV_R1 must be 1..16 (rows walked at once)"
#endif
AF_GC_DENSE(af_gemv_cpu_f32_1, float, 1, 4, AF_GC_LOAD16_F32, AF_GC_LOAD1_F32)
AF_GC_DENSE(af_gemv_cpu_f32_2, float, 2, 4, AF_GC_LOAD16_F32, AF_GC_LOAD1_F32)
AF_GC_DENSE(af_gemv_cpu_f32_4, float, 4, 4, AF_GC_LOAD16_F32, AF_GC_LOAD1_F32)
AF_GC_DENSE(af_gemv_cpu_f32_8, float, 8, 2, AF_GC_LOAD16_F32, AF_GC_LOAD1_F32)
AF_GC_DENSE(af_gemv_cpu_f16_1, half, 1, AF_GEMV_R1, AF_GC_LOAD16_F16, AF_GC_LOAD1_F16)
AF_GC_DENSE(af_gemv_cpu_f16_2, half, 2, 4, AF_GC_LOAD16_F16, AF_GC_LOAD1_F16)
AF_GC_DENSE(af_gemv_cpu_f16_4, half, 4, 4, AF_GC_LOAD16_F16, AF_GC_LOAD1_F16)
AF_GC_DENSE(af_gemv_cpu_f16_8, half, 8, 2, AF_GC_LOAD16_F16, AF_GC_LOAD1_F16)

/* ggml blocks of 32 weights, k a multiple of 32: Q8_0 = fp16 scale d + 32
 * int8 (w = d q, 34 bytes), Q4_0 = fp16 d + 16 bytes, byte j holding element
 * j (low nibble) and j + 16 (high nibble), w = d (q - 8) (18 bytes).
 * The scale: a scalar vload_half is a ~17-instruction software conversion in
 * PoCL 3.1 (vload_half16 alone becomes vcvtph2ps), so the kernels look the
 * fp16 bits up in `lut`, the fp32 value of every fp16 pattern (65536 floats,
 * af_cl_half_lut): one load that LLVM folds into the FMA as a broadcast
 * operand.  Against rebuilding the float from its bits (9 instructions, a
 * move to the vector unit and a broadcast per block and row), 11008 x 4096
 * from DRAM, 3 runs each: Q8_0 17.2 -> 18.6 GB/s, Q4_0 9.2 -> 10.4.
 * AF_GEMV_LUT=0 keeps the bit rebuild (the fp16 bits in an fp32's sign,
 * exponent and mantissa fields times 2^112: exact for finite halves).
 * DEQ(blk, q0, q1) widens a block's 32 integers (elements 0-15, 16-31);
 * Q4_0 see AF_GEMV_PERM below (the 512-bit operations share two ports and,
 * with the memory stalls, are what limits these kernels).
 * One vector: acc += d (q0 x0 + q1 x1), the scale applied once per block;
 * several: the weights d q are formed once and used for every x. */
#ifndef AF_GEMV_LUT
#define AF_GEMV_LUT 1
#endif
inline float af_gc_scale(__global const uchar *blk, __global const float *lut) {
  uint u = *(__global const ushort *)blk;
  if (AF_GEMV_LUT) return lut[u];
  return as_float(((u << 16) & 0x80000000u) | ((u << 13) & 0x0fffe000u)) * 0x1p112f;
}
#define AF_GC_DEQ_Q8(blk, q0, q1)                                 \
  float16 q0 = convert_float16(as_char16(vload16(0, (blk) + 2))); \
  float16 q1 = convert_float16(as_char16(vload16(0, (blk) + 18)))
/* Q4_0 on AVX-512 (AF_GEMV_PERM 1, the default, where the compiler offers
 * the builtin): the 16 bytes are widened once to 32-bit lanes and each
 * nibble becomes q - 8 through a 16-entry table, vpermps (it reads only the
 * low 4 bits of each index, so the low nibble needs no mask): 4 vector
 * operations per block instead of 9, the same exact values.  11008 x 4096
 * from DRAM with the prefetch: ~10.4 -> ~12.8 GB/s (medians of 5). */
#ifndef AF_GEMV_PERM
#define AF_GEMV_PERM 1
#endif
#if AF_GEMV_PERM && defined(__AVX512F__) && defined(__has_builtin)
#if __has_builtin(__builtin_ia32_permvarsf512)
#define AF_GC_Q4_PERM 1
#endif
#endif
#ifdef AF_GC_Q4_PERM
#define AF_GC_DEQ_Q4(blk, q0, q1)                                                                        \
  const float16 tab_ =                                                                                   \
      (float16)(-8.f, -7.f, -6.f, -5.f, -4.f, -3.f, -2.f, -1.f, 0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f); \
  int16 qd_ = as_int16(convert_uint16(vload16(0, (blk) + 2)));                                           \
  float16 q0 = as_float16(__builtin_ia32_permvarsf512(tab_, qd_));                                       \
  float16 q1 = as_float16(__builtin_ia32_permvarsf512(tab_, qd_ >> 4))
#else
#define AF_GC_DEQ_Q4(blk, q0, q1)                                     \
  uchar16 qb_ = vload16(0, (blk) + 2);                                \
  float16 q0 = convert_float16(as_char16(qb_ & (uchar)15) - (char)8); \
  float16 q1 = convert_float16(as_char16(qb_ >> (uchar)4) - (char)8)
#endif

/* Several vectors: the blocks in chunks of AF_GEMV_KC (default 16, 0 = all
 * of k), all of a work-item's rows per chunk, so that the chunk's columns of
 * the 8 x-vectors (8 x 512 floats) stay in L1 instead of 8 x k floats
 * streaming through it for every row pair; each chunk's sums are added to
 * y.  11008 x 4096 Q8_0 with 8 vectors from DRAM, medians of 5 alternating
 * runs: 6.2 -> 7.8 GB/s (32 blocks: 7.3).  One vector: one chunk, as before. */
#ifndef AF_GEMV_KC
#define AF_GEMV_KC 16
#endif
#if AF_GEMV_KC < 0 || AF_GEMV_KC > 4096
#error "AF_GEMV_KC must be 0..4096 (blocks per chunk of k)"
#endif
#define AF_GC_QUANT(NAME, BSZ, DEQ, NB, R)                                                                  \
  __kernel void NAME(AF_GC_ARGS(uchar), __global const float *lut) {                                        \
    int r0 = get_global_id(0) * rb;                                                                         \
    if (r0 >= rows) return;                                                                                 \
    int r1 = min(r0 + rb, rows), nblk = k / 32, kcb = NB > 1 && AF_GEMV_KC > 0 ? AF_GEMV_KC : nblk;         \
    long rbytes = (long)nblk * BSZ;                                                                         \
    __global const float *xb[NB];                                                                           \
    _Pragma("unroll") for (int b = 0; b < NB; b++) xb[b] = x + x_off + (long)min(b, nb - 1) * k;            \
    for (int c0 = 0; c0 < nblk; c0 += kcb) {                                                                \
      int c1 = min(c0 + kcb, nblk);                                                                         \
      for (int r = r0; r < r1; r += R) {                                                                    \
        __global const uchar *wr[R];                                                                        \
        float16 acc[R][NB];                                                                                 \
        _Pragma("unroll") for (int i = 0; i < R; i++) {                                                     \
          wr[i] = w + (long)min(r + i, rows - 1) * rbytes;                                                  \
          _Pragma("unroll") for (int b = 0; b < NB; b++) acc[i][b] = (float16)(0.0f);                       \
        }                                                                                                   \
        for (int j = c0; j < c1; j++) {                                                                     \
          float16 x0 = vload16(2 * j, xb[0]), x1 = vload16(2 * j + 1, xb[0]);                               \
          long pfo = (long)c0 * BSZ + AF_GC_PF_OFF((long)(j - c0) * BSZ, (long)(c1 - c0) * BSZ, R, rbytes); \
          _Pragma("unroll") for (int i = 0; i < R; i++) {                                                   \
            __global const uchar *blk = wr[i] + (long)j * BSZ;                                              \
            AF_GC_PREFETCH(wr[i], pfo);                                                                     \
            float d = af_gc_scale(blk, lut);                                                                \
            DEQ(blk, q0, q1);                                                                               \
            if (NB == 1) {                                                                                  \
              acc[i][0] = fma((float16)(d), fma(q1, x1, q0 * x0), acc[i][0]);                               \
            } else {                                                                                        \
              float16 w0 = d * q0, w1 = d * q1;                                                             \
              _Pragma("unroll") for (int b = 0; b < NB; b++) acc[i][b] =                                    \
                  fma(w1, vload16(2 * j + 1, xb[b]), fma(w0, vload16(2 * j, xb[b]), acc[i][b]));            \
            }                                                                                               \
          }                                                                                                 \
        }                                                                                                   \
        AF_GC_STORE(NB, R, (void)0, c0 == 0)                                                                \
      }                                                                                                     \
    }                                                                                                       \
  }

AF_GC_QUANT(af_gemv_cpu_q8_1, 34, AF_GC_DEQ_Q8, 1, AF_GEMV_R1)
AF_GC_QUANT(af_gemv_cpu_q8_2, 34, AF_GC_DEQ_Q8, 2, 4)
AF_GC_QUANT(af_gemv_cpu_q8_4, 34, AF_GC_DEQ_Q8, 4, 4)
AF_GC_QUANT(af_gemv_cpu_q8_8, 34, AF_GC_DEQ_Q8, 8, 2)
AF_GC_QUANT(af_gemv_cpu_q4_1, 18, AF_GC_DEQ_Q4, 1, AF_GEMV_R1)
AF_GC_QUANT(af_gemv_cpu_q4_2, 18, AF_GC_DEQ_Q4, 2, 4)
AF_GC_QUANT(af_gemv_cpu_q4_4, 18, AF_GC_DEQ_Q4, 4, 4)
AF_GC_QUANT(af_gemv_cpu_q4_8, 18, AF_GC_DEQ_Q4, 8, 2)

/* Read-bandwidth probes for `artflow bench` (not ops).  CPU-style: work-item
 * i sums the n float16 vectors from i * n (contiguous chunk, 4 accumulators),
 * the access pattern a GEMV should approach; PoCL runs a group's items one
 * after another, so a strided loop there reads at a fraction of the rate. */
__kernel void af_gemv_cpu_stream(__global const float16 *p, const long n, __global float *out) {
  long i = get_global_id(0);
  __global const float16 *q = p + i * n;
  float16 a = 0, b = 0, c = 0, d = 0;
  for (long j = 0; j + 3 < n; j += 4) a += q[j], b += q[j + 1], c += q[j + 2], d += q[j + 3];
  out[i] = af_gc_hsum((a + b) + (c + d));
}

/* GPU-style: consecutive work-items read consecutive float4s (coalesced),
 * n of them each, a global size apart. */
__kernel void af_read_stream_coalesced(__global const float4 *p, const long n, __global float *out) {
  size_t i = get_global_id(0), g = get_global_size(0);
  float4 a = 0;
  for (long j = 0; j < n; j++) a += p[i + (size_t)j * g];
  out[i] = (a.x + a.y) + (a.z + a.w);
}
