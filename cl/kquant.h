/* K-quant weights on the device (cl/kernels/kquant.cl): Q4_K, Q5_K and Q6_K
 * matrices used in place, as llama.cpp's Q4_K_M / Q5_K_M / Q6_K base LLMs
 * store them (formats/kquant.h has the layouts and the C reference).
 * Functions return 0 or an af_status (af_err set). */
#ifndef AF_CL_KQUANT_H
#define AF_CL_KQUANT_H

#include <stddef.h>

#include "cl/ops.h"
#include "cl/runtime.h"

/* 1 for AF_GGML_Q4_K, Q5_K, Q6_K */
int af_kq_type(int type);

/* y[b] = W x[b] (+ bias) for nb (1..8) vectors of k, W rows x k of `type`
 * (k a multiple of 256), each sub-block dequantised once for all vectors */
int af_op_gemv_kq(af_queue *q, cl_mem w, int type, size_t rows, size_t k, af_dbuf x, int nb, af_dbuf y,
                  cl_mem bias);

/* dst (n floats, n a multiple of 256) = the values of `type` at src */
int af_op_dequant_kq(af_queue *q, cl_mem src, int type, cl_mem dst, size_t n);

#endif
