/* Multi-head attention on the device (cl/kernels/attention.cl): one pass over
 * the keys with an online softmax, any context length, strided rows so Q, K, V
 * can live in a fused QKV buffer, separate buffers or a KV cache. */
#ifndef AF_CL_ATTENTION_H
#define AF_CL_ATTENTION_H

#include "cl/ops.h"
#include "cl/runtime.h"

typedef struct af_attn_view {
  cl_mem mem;
  size_t off; /* elements to the first row of batch 0, head 0 */
  int row;    /* elements between consecutive rows */
  long batch; /* elements between consecutive batches */
} af_attn_view;

/* out[b][i][h*d + t] = sum_j softmax_j(scale * q_i . k_j) v_j[t] for each head
 * h < heads, batch b < n_batch; query i sees keys j < n_kv, and only
 * j <= i + causal_offset when causal.  K and V share row/batch strides (kv).
 * d <= 128 (AF_ATT_MAX_D).  Returns 0 or a CL / artflow status. */
int af_attention(af_queue *q, af_attn_view qv, af_attn_view kv_k, af_attn_view kv_v, af_attn_view out,
                 int n_q, int n_kv, int heads, int d, int n_batch, float scale, int causal,
                 int causal_offset);

/* The LLM's KV cache (cl/kernels/attention.cl): K and V buffers of (slots,
 * positions, row) values, fp32 or fp16 storage (half = 1), slot_stride
 * elements per slot.  Row r of a call belongs to sequence slot[r] at position
 * pos[r] (slot, pos: device int buffers of at least `rows` entries).
 *
 * af_kv_store: cache[slot[r]][pos[r]][0..n) = src[r][0..n) (fp16: rounded to
 * nearest even).
 * af_attention_cached: out[r] = causal attention of query row r (heads * d
 * values) over keys/values 0..pos[r] of slot[r]; rows of q and out are
 * heads * d apart, cached positions too.  d <= 128. */
int af_kv_store(af_queue *q, af_dbuf src, int rows, int n, cl_mem cache, int half, size_t slot_stride,
                cl_mem slot, cl_mem pos);
int af_attention_cached(af_queue *q, af_dbuf qv, int rows, int heads, int d, cl_mem k_cache, cl_mem v_cache,
                        int half, size_t slot_stride, cl_mem slot, cl_mem pos, float scale, af_dbuf out);
/* The same where row r skips the cached keys hole[2r] <= j < hole[2r+1]
 * (hole: a device int buffer of 2 * rows entries, or NULL for none): several
 * branches written after a shared prefix each see the prefix and their own
 * earlier rows only.  Rows without a hole give the bits af_attention_cached
 * gives. */
int af_attention_cached_hole(af_queue *q, af_dbuf qv, int rows, int heads, int d, cl_mem k_cache,
                             cl_mem v_cache, int half, size_t slot_stride, cl_mem slot, cl_mem pos,
                             cl_mem hole, float scale, af_dbuf out);

#endif
