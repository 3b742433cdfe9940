/* Plain-C references of the op library (cl/ops.h), straightforward loops with
 * double accumulators. */
#ifndef AF_REF_OPS_H
#define AF_REF_OPS_H
#include <stddef.h>
#include <stdint.h>

void ref_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
              const float *b, size_t ldb, float beta, float *c, size_t ldc);
void ref_gemv(const float *w, size_t rows, size_t k, const float *x, int nb, const float *bias, float *y);
void ref_rmsnorm_rows(const float *x, size_t rows, size_t n, const float *w, float eps, float *y);
void ref_layernorm_rows(const float *x, size_t rows, size_t n, const float *w, const float *b, float eps,
                        float *y);
void ref_softmax_rows(float *x, size_t rows, size_t n, float scale, int causal, int q_rows, int offset);
void ref_rope(float *x, size_t tokens, int heads, int d, int pos0, float base, int interleaved);
/* x (m x k) · Wᵀ with W (n x k) in Q4_0 (q4) or Q8_0 blocks and x quantised
 * per 32-block to int8, as cl/gemm_q8.h defines it (y is m x n) */
void ref_qgemm(int q4, size_t m, size_t n, size_t k, const float *x, const void *w, const float *bias,
               float *y);
#endif
