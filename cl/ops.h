/* The op library: every compute primitive the model stages use, enqueued on
 * an af_queue (cl/runtime.h) over float32 device buffers addressed as
 * (cl_mem, element offset).  Kernels are in cl/kernels/ops.cl (attention in
 * cl/attention.h); GEMM goes through CLBlast.  Each op has a plain-C
 * reference and a random-input test (tests/cl/test_ops.c, tests/lib/ref_ops.c) and is
 * described once in cl/opdesc.c for the tests and `artflow bench ops`.
 * All functions return 0 or a CL / CLBlast / artflow status. */
#ifndef AF_CL_OPS_H
#define AF_CL_OPS_H

#include <stddef.h>

#include "cl/runtime.h"

/* A float32 device buffer view: elements from `off`. */
typedef struct af_dbuf {
  cl_mem mem;
  size_t off;
} af_dbuf;

static inline af_dbuf af_dbuf_at(af_dbuf b, size_t elements) {
  b.off += elements;
  return b;
}

/* C = alpha * op(A) * op(B) + beta * C, row-major, fp32 (CLBlastSgemm). */
int af_op_gemm(af_queue *q, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, af_dbuf a,
               size_t lda, af_dbuf b, size_t ldb, float beta, af_dbuf c, size_t ldc);

/* y[m, n] = x[m, :] . w[n, :] (+ bias[n]) with the own register-tiled kernel
 * (both operands contiguous along k).  af_op_gemm uses it for (no-trans,
 * trans, alpha 1, beta 0) when the device profile sets AF_GEMM_TILED=1. */
int af_op_gemm_xwt(af_queue *q, size_t m, size_t n, size_t k, af_dbuf x, size_t ldx, af_dbuf w, size_t ldw,
                   af_dbuf y, size_t ldy, cl_mem bias);
int af_op_gemm_tiled_enabled(const af_cl *cl);

/* y[b, r] = W[r, :] . x[b, :] (+ bias[r]) for b < nb (1..8), W rows x k stored
 * fp32 or fp16 (half_w = 1); the weights are read once for all nb vectors.
 * x holds nb rows of k floats, y nb rows of `rows` floats. */
int af_op_gemv(af_queue *q, cl_mem w, int half_w, size_t rows, size_t k, af_dbuf x, int nb, af_dbuf y,
               cl_mem bias);

/* 1 when the device profile selects the CPU GEMV kernels
 * (cl/kernels/gemv_cpu.cl, `kernels: {AF_GEMV_IMPL: cpu}`) for af_op_gemv and
 * af_op_gemv_qn; else they use the portable ones in ops.c. */
int af_op_gemv_cpu_enabled(const af_cl *cl);

/* y[r] = W[r, :] . x (+ bias[r]) with W in ggml's Q8_0 (q4 = 0) or Q4_0
 * (q4 = 1) block layout (rows x k, k a multiple of 32), dequantised in the
 * kernel; and the widening of n such weights to fp32 (for prefill GEMMs). */
int af_op_gemv_q(af_queue *q, cl_mem w, int q4, size_t rows, size_t k, af_dbuf x, af_dbuf y, cl_mem bias);
/* The same for nb (1..8) vectors, laid out as in af_op_gemv (batched decode):
 * with the CPU kernels the weights are read once for all of them. */
int af_op_gemv_qn(af_queue *q, cl_mem w, int q4, size_t rows, size_t k, af_dbuf x, int nb, af_dbuf y,
                  cl_mem bias);
int af_op_dequant_q(af_queue *q, cl_mem src, int q4, cl_mem dst, size_t n);

/* Row norms over rows x n (y may equal x). */
int af_op_layernorm(af_queue *q, af_dbuf x, size_t rows, size_t n, cl_mem w, cl_mem b, float eps, af_dbuf y);
int af_op_rmsnorm(af_queue *q, af_dbuf x, size_t rows, size_t n, cl_mem w, float eps, af_dbuf y);

/* In-place row softmax of scale * x over rows x n; with causal, row r keeps
 * columns <= (r % q_rows) + offset (the rest become 0). */
int af_op_softmax(af_queue *q, af_dbuf x, size_t rows, size_t n, float scale, int causal, int q_rows,
                  int offset);

/* In place over n elements. */
int af_op_gelu(af_queue *q, af_dbuf x, size_t n); /* exact erf GELU */
int af_op_silu(af_queue *q, af_dbuf x, size_t n);
int af_op_add(af_queue *q, af_dbuf y, af_dbuf x, size_t n); /* y += x */
int af_op_mul(af_queue *q, af_dbuf y, af_dbuf x, size_t n); /* y *= x */
/* y[r, 0..n) += bias for rows of stride ld */
int af_op_add_bias(af_queue *q, af_dbuf y, size_t ld, size_t rows, size_t n, cl_mem bias);

/* RoPE in place on tokens x (heads * d) at positions pos0 + t; interleaved = 0
 * pairs (i, i + d/2) as HF LLaMA, 1 pairs (2i, 2i + 1) as llama.cpp files.
 * tab: af_rope_table's cos/sin for every position used (device copy), or NULL
 * to compute them on the device (pow/sincos, up to ~1e-4 off HF's at
 * positions near 2048). */
int af_op_rope(af_queue *q, af_dbuf x, size_t tokens, int heads, int d, int pos0, float base, int interleaved,
               cl_mem tab);
/* The same with token t at position pos[t] (pos: tokens ints on the device),
 * for batched decode where every sequence is at its own position. */
int af_op_rope_pos(af_queue *q, af_dbuf x, size_t tokens, int heads, int d, cl_mem pos, float base,
                   int interleaved, cl_mem tab);
/* RoPE's cos/sin as HF's LlamaRotaryEmbedding builds its cache in fp32:
 * inv_freq[i] = 1 / powf(base, (2i) / d), angle = (float)p * inv_freq[i],
 * out[(p * d/2 + i) * 2] = cosf(angle), [.. + 1] = sinf(angle), for p <
 * positions (host; positions * d floats). */
void af_rope_table(float base, int d, int positions, float *out);

/* out[r, :] = table[ids[r], :] for r < n; table n_rows x cols, fp32 or fp16. */
int af_op_gather(af_queue *q, cl_mem table, int half_table, size_t n_rows, size_t cols, cl_mem ids, size_t n,
                 af_dbuf out);

/* n elements between fp16 storage and fp32 (round to nearest even). */
int af_op_f16_to_f32(af_queue *q, cl_mem src, cl_mem dst, size_t n);
int af_op_f32_to_f16(af_queue *q, cl_mem src, cl_mem dst, size_t n);

#endif
