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
                           const long out_off, const int n_q, const int n_kv, const int d,
                           const int q_row, const int kv_row, const int out_row, const long q_batch,
                           const long kv_batch, const long out_batch, const float scale, const int causal,
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

