/* Prefill GEMM over Q8_0 / Q4_0 weights with int8 activations
 * (cl/kernels/gemm_q8.cl): y = x·Wᵀ (+ bias) where x is first quantised per
 * 32-block to int8 with an fp32 scale (llama.cpp's numerics for quantised
 * weights, issue 20's product decision), W is used in place in its ggml
 * blocks, and the block sums are exact integer dot products (AVX-512 VNNI on
 * CPUs that have it).  Each output depends only on its own row of x and of W,
 * so a prompt's results do not depend on what it is batched with.
 *
 * Profile knobs: AF_QGEMM=1 turns it on for the LLM's quantised prefill
 * (net/lm.c; off: the weights are widened to fp32 for the float GEMM);
 * AF_QGEMM_VNNI=0 keeps the plain integer code on a VNNI CPU (tests compare
 * the two, which must agree bit for bit); AF_QG_MR rows of x per pass
 * (1..12, default 8).  Functions return 0 or an af_status (af_err set). */
#ifndef AF_CL_GEMM_Q8_H
#define AF_CL_GEMM_Q8_H

#include <stddef.h>

#include "cl/ops.h"
#include "cl/runtime.h"

/* 1 when the device profile sets AF_QGEMM=1 */
int af_qgemm_enabled(const af_cl *cl);

/* 1 when the kernels use the vpdpbusd instruction: a CPU device (the PoCL
 * device is this host) whose CPU reports AVX-512 VNNI, unless AF_QGEMM_VNNI=0 */
int af_qgemm_vnni(const af_cl *cl);

/* y (m x n, row stride n) = x (m x k, row stride k) · Wᵀ (+ bias[n]) with W
 * (n x k) in Q4_0 (q4 = 1) or Q8_0 blocks; k a multiple of 32.  Temporaries
 * come from the queue's scratch (AF_SCRATCH_QX: m * k * 1.25 bytes). */
int af_qgemm(af_queue *q, int q4, size_t m, size_t n, size_t k, af_dbuf x, cl_mem w, cl_mem bias, af_dbuf y);

#endif
