/* Multi-head attention on the device (cl/kernels/attention.cl): one pass over
 * the keys with an online softmax, any context length, strided rows so Q, K, V
 * can live in a fused QKV buffer, separate buffers or a KV cache. */
#ifndef AF_CL_ATTENTION_H
#define AF_CL_ATTENTION_H

#include "cl/runtime.h"

typedef struct af_attn_view {
  cl_mem mem;
  size_t off;    /* elements to the first row of batch 0, head 0 */
  int row;       /* elements between consecutive rows */
  long batch;    /* elements between consecutive batches */
} af_attn_view;

/* out[b][i][h*d + t] = sum_j softmax_j(scale * q_i . k_j) v_j[t] for each head
 * h < heads, batch b < n_batch; query i sees keys j < n_kv, and only
 * j <= i + causal_offset when causal.  K and V share row/batch strides (kv).
 * d <= 128 (AF_ATT_MAX_D).  Returns 0 or a CL / artflow status. */
int af_attention(af_queue *q, af_attn_view qv, af_attn_view kv_k, af_attn_view kv_v, af_attn_view out,
                 int n_q, int n_kv, int heads, int d, int n_batch, float scale, int causal, int causal_offset);

#endif
