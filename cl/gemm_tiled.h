/* Own GEMM for CPU-like OpenCL devices (PoCL), cl/kernels/gemm_tiled.cl:
 * op(B) packed into vector-wide column panels, register-tiled outer-product
 * kernel.  Same contract as af_op_gemm (cl/ops.h): row-major fp32,
 * C = alpha * op(A) * op(B) + beta * C, op(A) M x K, op(B) K x N; with beta 0
 * C is not read.  The model's main case is C = X * Wᵀ (trans_b = 1, W stored
 * [out, in]).
 *
 * Two kernels: for A·Bᵀ (both operands contiguous along k) an unpacked
 * dot-product kernel, no copy of B needed; for the other layouts, and for
 * weights packed once with af_gemm_pack_b, an outer-product kernel over B
 * packed into vector-wide column panels (faster, measured 1.2-1.3x).
 *
 * A device profile selects it with `kernels: {AF_GEMM_IMPL: tiled}` and tunes
 * it with AF_TILED_MR (rows per work-item), AF_TILED_NP (columns / panels per
 * work-item), AF_TILED_VW (vector width), AF_TILED_WG / AF_TILED_WN (row and
 * column tiles per work-group: the block that stays in L2), AF_TILED_KC (K
 * block, 0 = whole K), AF_TILED_DOT (0 = always pack), AF_TILED_PACK_M (from
 * this many rows A·Bᵀ packs B per call too, default 1024) and AF_TILED_PMR /
 * AF_TILED_PWN (the packed kernel's MR and WN).  All functions return 0 or a
 * CL / artflow status (message via af_err). */
#ifndef AF_CL_GEMM_TILED_H
#define AF_CL_GEMM_TILED_H

#include <stddef.h>

#include "cl/runtime.h"

typedef struct af_gemm_tiled_cfg {
  int mr;  /* rows of C per work-item, 1..16 */
  int np;  /* panels (vw columns each) per work-item, 1..4 */
  int vw;  /* vector width: 4, 8 or 16 */
  int wg;  /* row tiles per work-group (they share the B panels in cache) */
  int wn;  /* column tiles per work-group (they share the A rows): a group's
            * A and B blocks are what stays in L2 */
  int kc;  /* K block (0 = all of K in one pass) */
  int dot; /* 1: for A·Bᵀ use the unpacked dot-product kernel, np = columns
            * per work-item (1..8); 0: pack B (outer products) */
} af_gemm_tiled_cfg;

/* The configuration in effect for this device: the profile's AF_TILED_*
 * defines over the defaults (MR 4, NP 4, VW 16, WG 8, WN 8, KC 0, DOT 1),
 * used for A·Bᵀ by the unpacked dot-product kernel.  The packed kernel's
 * variant takes MR from AF_TILED_PMR (6) and WN from AF_TILED_PWN (4), dot 0:
 * the two kernels like different tiles (measured, docs/profiles.md). */
void af_gemm_tiled_config(const af_cl *cl, af_gemm_tiled_cfg *cfg);
void af_gemm_tiled_packed_config(const af_cl *cl, af_gemm_tiled_cfg *cfg);

/* 1 when the device profile selects this kernel for af_op_gemm
 * (-DAF_GEMM_IMPL=tiled in the tuning defines), else 0. */
int af_gemm_tiled_enabled(const af_cl *cl);

/* Rows up to which af_op_gemm's A·Bᵀ computes each row of C with the same
 * operations whatever the other rows are (the dot kernel: m below
 * AF_TILED_PACK_M); 0 when that is not known (the packed kernel, CLBlast).
 * Callers that split a GEMM into chunks of at most this many rows get
 * results that do not depend on how rows were grouped (batched prefill). */
size_t af_gemm_tiled_rowwise_max(const af_cl *cl);

/* C = alpha * op(A) * op(B) + beta * C with the profile's configuration.
 * A·Bᵀ with m < AF_TILED_PACK_M runs unpacked; the rest packs op(B) into a temporary device buffer
 * on each call (N * K floats, freed when the queue is done with it).  For a
 * constant weight matrix, pack once with af_gemm_pack_b and call
 * af_gemm_tiled_packed: faster, and no per-call copy. */
int af_gemm_tiled(af_queue *q, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, cl_mem a,
                  size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                  size_t c_off, size_t ldc);

/* C = alpha * A * Bᵀ + beta * C with B (n x k, row stride ldb, offset in
 * elements) stored as fp16 and read with vload_half (no cl_khr_fp16 needed):
 * fp16 weights used in place, at half the memory.  A and C are fp32. */
int af_gemm_tiled_f16b(af_queue *q, size_t m, size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                       size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                       size_t ldc);

/* Same with an explicit configuration (benchmarks, `artflow tune`). */
int af_gemm_tiled_cfg_run(af_queue *q, const af_gemm_tiled_cfg *cfg, int trans_a, int trans_b, size_t m,
                          size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                          size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc);

/* op(B) packed for the kernel: ceil(n / vw) panels of k x vw floats. */
typedef struct af_gemm_packed {
  cl_mem mem; /* owned (unless borrowed); af_gemm_packed_release frees it */
  size_t n, k;
  int vw;
  int borrowed; /* 1: mem is a queue's scratch buffer (af_queue_scratch), not released */
  int half;     /* 1: the panels hold fp16 values (af_gemm_pack_b_h) */
} af_gemm_packed;

/* Packs op(B) (trans_b = 1: B is n x k, else k x n; half_b = 1: B holds fp16
 * values, widened while packing) into out->mem, a new device buffer the
 * caller releases with af_gemm_packed_release (ceil(n / vw) * vw * k floats:
 * no more than B itself when n is a multiple of vw).  Uses the vector width
 * of `cfg` (NULL = af_gemm_tiled_packed_config's). */
int af_gemm_pack_b(af_queue *q, const af_gemm_tiled_cfg *cfg, int trans_b, int half_b, size_t n, size_t k,
                   cl_mem b, size_t b_off, size_t ldb, af_gemm_packed *out);
void af_gemm_packed_release(af_gemm_packed *p);
/* The same for Bᵀ with B (n x k, row stride ldb) stored as fp16: the panels
 * stay fp16 (ceil(n / vw) * vw * k halves, the size of B when n is a
 * multiple of vw), widened in the kernel.  For fp16 weights kept at their
 * precision and packed once (the ViT's linear layers). */
int af_gemm_pack_b_h(af_queue *q, const af_gemm_tiled_cfg *cfg, size_t n, size_t k, cl_mem b, size_t b_off,
                     size_t ldb, af_gemm_packed *out);

/* C = alpha * op(A) * B + beta * C with B packed by af_gemm_pack_b (its n and
 * k give N and K).  cfg NULL = af_gemm_tiled_packed_config's; its vw must
 * equal the packing's. */
int af_gemm_tiled_packed(af_queue *q, const af_gemm_tiled_cfg *cfg, int trans_a, size_t m, float alpha,
                         cl_mem a, size_t a_off, size_t lda, const af_gemm_packed *bp, float beta, cl_mem c,
                         size_t c_off, size_t ldc);

#endif
