/* Multi-head scaled-dot-product attention, one work-item per (query row, head,
 * batch), with a single pass over the keys and an online (running-maximum)
 * softmax, so no score buffer is needed whatever the context length.
 * CPU-friendly for PoCL: each work-item streams contiguous rows of K and V;
 * there are no barriers and no local memory.
 *
 * Rows are addressed with element strides so the same kernel reads Q, K, V
 * out of a fused QKV buffer (ViT), separate projections (Q-Former) or a KV
 * cache (LLM).  Query i may see keys j <= i + causal_offset when causal != 0.
 * AF_ATT_MAX_D bounds the head size (private accumulator). */
#ifndef AF_ATT_MAX_D
#define AF_ATT_MAX_D 128
#endif

__kernel void af_attention(__global const float *q, const long q_off, __global const float *k,
                           const long k_off, __global const float *v, const long v_off, __global float *out,
                           const long out_off, const int n_q, const int n_kv, const int d, const int q_row,
                           const int kv_row, const int out_row, const long q_batch, const long kv_batch,
                           const long out_batch, const float scale, const int causal,
                           const int causal_offset) {
  int i = get_global_id(0);
  int h = get_global_id(1);
  int b = get_global_id(2);
  if (i >= n_q) return;
  __global const float *qi = q + q_off + b * q_batch + (long)i * q_row + h * d;
  __global const float *kb = k + k_off + b * kv_batch + h * d;
  __global const float *vb = v + v_off + b * kv_batch + h * d;
  float qv[AF_ATT_MAX_D], acc[AF_ATT_MAX_D];
  for (int t = 0; t < d; t++) {
    qv[t] = qi[t] * scale;
    acc[t] = 0.0f;
  }
  int lim = causal ? min(n_kv, i + causal_offset + 1) : n_kv;
  float m = -INFINITY, l = 0.0f;
  for (int j = 0; j < lim; j++) {
    __global const float *kj = kb + (long)j * kv_row;
    float s = 0.0f;
    for (int t = 0; t < d; t++) s = mad(qv[t], kj[t], s);
    float mn = fmax(m, s);
    float corr = exp(m - mn); /* exp(-inf) = 0 on the first key */
    float p = exp(s - mn);
    l = l * corr + p;
    __global const float *vj = vb + (long)j * kv_row;
    for (int t = 0; t < d; t++) acc[t] = mad(p, vj[t], acc[t] * corr);
    m = mn;
  }
  float inv = l > 0.0f ? 1.0f / l : 0.0f;
  __global float *o = out + out_off + b * out_batch + (long)i * out_row + h * d;
  for (int t = 0; t < d; t++) o[t] = acc[t] * inv;
}

/* ------------------------------------------------- attention over a KV cache
 *
 * The LLM's KV cache: per layer one K and one V buffer of (slots, positions,
 * row) values, fp32 or fp16 storage (vload_half / vstore_half, no
 * cl_khr_fp16 needed).  Query row r belongs to sequence slot[r] and sits at
 * position pos[r]: it sees that slot's keys 0..pos[r] (causal).  The same
 * kernels serve prefill (rows = consecutive positions of one slot) and
 * batched decode (rows = one new position of each of B sequences).
 * Kernel variants per storage type come from one template. */
#define AF_LOAD_F32(p, i) ((p)[i])
#define AF_LOAD_F16(p, i) vload_half((i), (p))
#define AF_STORE_F32(v, p, i) ((p)[i] = (v))
#define AF_STORE_F16(v, p, i) vstore_half_rte((v), (i), (p))

/* cache[slot[r]][pos[r]][c] = src[r][c] for r < rows, c < n.  global: (n, rows) */
#define AF_KV_STORE(NAME, T, STORE)                                                              \
  __kernel void NAME(__global const float *src, const long src_off, const int n, const int rows, \
                     __global T *cache, const long slot_stride, __global const int *slot,        \
                     __global const int *pos) {                                                  \
    int c = get_global_id(0), r = get_global_id(1);                                              \
    if (c >= n || r >= rows) return;                                                             \
    long dst = (long)slot[r] * slot_stride + (long)pos[r] * n + c;                               \
    STORE(src[src_off + (long)r * n + c], cache, dst);                                           \
  }
AF_KV_STORE(af_kv_store_f32, float, AF_STORE_F32)
AF_KV_STORE(af_kv_store_f16, half, AF_STORE_F16)

/* out[r][h*d + t] = sum_{j <= pos[r]} softmax_j(scale * q_r . k_j) v_j[t] over
 * slot[r]'s cache, one work-item per (row, head), online softmax as above.
 * kv_row: values per cached position (heads * d).  global: (n_q, heads).
 * hole (NULL = none): row r skips the keys hole[2r] <= j < hole[2r+1] (a
 * branch that sees a shared prefix and its own rows, not its siblings'). */
#define AF_ATT_HOLE(hole, i, lim, hlo, hhi)   \
  do {                                        \
    hlo = min(hole[2 * (i)], lim);            \
    hhi = clamp(hole[2 * (i) + 1], hlo, lim); \
  } while (0)
#define AF_ATT_CACHED(NAME, T, LOAD)                                                                         \
  __kernel void NAME(__global const float *q, const long q_off, const int q_row, __global const T *kc,       \
                     __global const T *vc, const long slot_stride, const int kv_row,                         \
                     __global const int *slot, __global const int *pos, __global const int *hole,            \
                     const int n_q, __global float *out, const long out_off, const int out_row, const int d, \
                     const float scale) {                                                                    \
    int i = get_global_id(0), h = get_global_id(1);                                                          \
    if (i >= n_q) return;                                                                                    \
    __global const float *qi = q + q_off + (long)i * q_row + h * d;                                          \
    long base = (long)slot[i] * slot_stride + h * d;                                                         \
    float qv[AF_ATT_MAX_D], acc[AF_ATT_MAX_D];                                                               \
    for (int t = 0; t < d; t++) {                                                                            \
      qv[t] = qi[t] * scale;                                                                                 \
      acc[t] = 0.0f;                                                                                         \
    }                                                                                                        \
    int lim = pos[i] + 1, hlo = lim, hhi = lim;                                                              \
    if (hole) AF_ATT_HOLE(hole, i, lim, hlo, hhi);                                                           \
    float m = -INFINITY, l = 0.0f;                                                                           \
    for (int j = 0; j < lim; j++) {                                                                          \
      if (j == hlo && (j = hhi) >= lim) break;                                                               \
      long kj = base + (long)j * kv_row;                                                                     \
      float s = 0.0f;                                                                                        \
      for (int t = 0; t < d; t++) s = mad(qv[t], LOAD(kc, kj + t), s);                                       \
      float mn = fmax(m, s);                                                                                 \
      float corr = exp(m - mn);                                                                              \
      float p = exp(s - mn);                                                                                 \
      l = l * corr + p;                                                                                      \
      for (int t = 0; t < d; t++) acc[t] = mad(p, LOAD(vc, kj + t), acc[t] * corr);                          \
      m = mn;                                                                                                \
    }                                                                                                        \
    float inv = l > 0.0f ? 1.0f / l : 0.0f;                                                                  \
    __global float *o = out + out_off + (long)i * out_row + h * d;                                           \
    for (int t = 0; t < d; t++) o[t] = acc[t] * inv;                                                         \
  }
AF_ATT_CACHED(af_attention_cached_f32, float, AF_LOAD_F32)
AF_ATT_CACHED(af_attention_cached_f16, half, AF_LOAD_F16)

/* The same attention with head sizes that are a multiple of 16 (LLaMA: 128):
 * q, the accumulator and each K/V row as float16 vectors (vload_half16 is one
 * vcvtph2ps on x86; a scalar vload_half is a ~17-instruction software
 * conversion in PoCL 3.1), and the accumulator rescaled only when the running
 * maximum moves.  PoCL, 7B decode shape (32 heads of 128, f16 cache): 118
 * positions 0.16 ms per layer instead of 1.34, 1000 positions 1.4 instead of
 * 7.6, 8 sequences of 500 4.2 instead of 33. */
inline float af_att_hsum16(float16 a) {
  float8 h = a.lo + a.hi;
  float4 q = h.lo + h.hi;
  return (q.s0 + q.s1) + (q.s2 + q.s3);
}
#define AF_LOAD16_F32(u, p) vload16((u), (p))
#define AF_LOAD16_F16(u, p) vload_half16((u), (p))
#define AF_ATT_CACHED16(NAME, T, LOAD16)                                                                     \
  __kernel void NAME(__global const float *q, const long q_off, const int q_row, __global const T *kc,       \
                     __global const T *vc, const long slot_stride, const int kv_row,                         \
                     __global const int *slot, __global const int *pos, __global const int *hole,            \
                     const int n_q, __global float *out, const long out_off, const int out_row, const int d, \
                     const float scale) {                                                                    \
    int i = get_global_id(0), h = get_global_id(1), d16 = d / 16;                                            \
    if (i >= n_q) return;                                                                                    \
    __global const float *qi = q + q_off + (long)i * q_row + h * d;                                          \
    long base = (long)slot[i] * slot_stride + h * d;                                                         \
    float16 qv[AF_ATT_MAX_D / 16], acc[AF_ATT_MAX_D / 16];                                                   \
    _Pragma("unroll") for (int u = 0; u < AF_ATT_MAX_D / 16; u++) {                                          \
      qv[u] = u < d16 ? vload16(u, qi) * scale : (float16)(0.0f);                                            \
      acc[u] = (float16)(0.0f);                                                                              \
    }                                                                                                        \
    int lim = pos[i] + 1, hlo = lim, hhi = lim;                                                              \
    if (hole) AF_ATT_HOLE(hole, i, lim, hlo, hhi);                                                           \
    float m = -INFINITY, l = 0.0f;                                                                           \
    for (int j = 0; j < lim; j++) {                                                                          \
      if (j == hlo && (j = hhi) >= lim) break;                                                               \
      __global const T *kj = kc + base + (long)j * kv_row, *vj = vc + base + (long)j * kv_row;               \
      float16 s16 = (float16)(0.0f);                                                                         \
      _Pragma("unroll") for (int u = 0; u < AF_ATT_MAX_D / 16; u++) if (u < d16) s16 =                       \
          fma(qv[u], LOAD16(u, kj), s16);                                                                    \
      float s = af_att_hsum16(s16);                                                                          \
      if (s > m) { /* new running maximum: rescale what was summed so far */                                 \
        float corr = exp(m - s);                                                                             \
        l *= corr;                                                                                           \
        _Pragma("unroll") for (int u = 0; u < AF_ATT_MAX_D / 16; u++) acc[u] *= corr;                        \
        m = s;                                                                                               \
      }                                                                                                      \
      float p = exp(s - m);                                                                                  \
      l += p;                                                                                                \
      _Pragma("unroll") for (int u = 0; u < AF_ATT_MAX_D / 16; u++) if (u < d16) acc[u] =                    \
          fma((float16)(p), LOAD16(u, vj), acc[u]);                                                          \
    }                                                                                                        \
    float inv = l > 0.0f ? 1.0f / l : 0.0f;                                                                  \
    __global float *o = out + out_off + (long)i * out_row + h * d;                                           \
    _Pragma("unroll") for (int u = 0; u < AF_ATT_MAX_D / 16; u++) if (u < d16) vstore16(acc[u] * inv, u, o); \
  }
AF_ATT_CACHED16(af_attention_cached16_f32, float, AF_LOAD16_F32)
AF_ATT_CACHED16(af_attention_cached16_f16, half, AF_LOAD16_F16)
