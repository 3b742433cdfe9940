/* The op description table (see opdesc.h).  Tolerances: fp32 ops 1e-6
 * (reordered sums), GEMM/GEMV 1e-5 (long dot products), fp16-weight GEMV
 * 1e-3 against an fp32 reference of the rounded weights is not needed: the
 * reference uses the same fp16 values, so 1e-5 holds there too. */
#include "cl/opdesc.h"

#include <string.h>

#define F(name, expr)                                          \
  static double name(double m, double n, double k, double b) { \
    (void)m, (void)n, (void)k, (void)b;                        \
    return expr;                                               \
  }
F(gemm_flops, 2 * m * n * k)
F(gemm_bytes, 4 * (m * k + k * n + m * n))
F(gemv_flops, 2 * n * k * b)
F(gemv32_bytes, 4 * n * k + 4 * b * (k + n))
F(gemv16_bytes, 2 * n * k + 4 * b * (k + n))
F(gemvq8_bytes, 34.0 / 32 * n * k + 4 * (k + n))
F(gemvq4_bytes, 18.0 / 32 * n * k + 4 * (k + n))
F(row_flops, 5 * m * n)
F(row_bytes, 8 * m * n)
F(elem_flops, m)
F(elem_bytes, 8 * m)
F(elem2_bytes, 12 * m)
F(gelu_flops, 20 * m)
F(rope_flops, 6 * m * n)
F(rope_bytes, 8 * m * n)
F(gather_bytes, 8 * m * n)
F(zero, 0)
F(cvt_bytes, 6 * m)
#undef F

const af_opdesc af_opdescs[] = {
    {"gemm", "m x k times k x n", 1e-5, gemm_flops, gemm_bytes},
    {"gemv_f32", "b vectors of k through n x k fp32 weights", 1e-5, gemv_flops, gemv32_bytes},
    {"gemv_f16", "b vectors of k through n x k fp16 weights", 1e-5, gemv_flops, gemv16_bytes},
    {"gemv_q8_0", "1 vector of k through n x k Q8_0 weights", 1e-5, gemv_flops, gemvq8_bytes},
    {"gemv_q4_0", "1 vector of k through n x k Q4_0 weights", 1e-5, gemv_flops, gemvq4_bytes},
    {"layernorm", "m rows of n", 1e-6, row_flops, row_bytes},
    {"rmsnorm", "m rows of n", 1e-6, row_flops, row_bytes},
    {"softmax", "m rows of n", 1e-6, row_flops, row_bytes},
    {"gelu", "m elements", 1e-6, gelu_flops, elem_bytes},
    {"silu", "m elements", 1e-6, gelu_flops, elem_bytes},
    {"add", "m elements", 1e-7, elem_flops, elem2_bytes},
    {"mul", "m elements", 1e-7, elem_flops, elem2_bytes},
    {"rope", "m tokens of n values", 5e-5, /* fp32 angles up to position 2048, 4-ulp cos/sin */ rope_flops,
     rope_bytes},
    {"gather", "m rows of n", 0, zero, gather_bytes},
    {"f16_to_f32", "m elements", 0, zero, cvt_bytes},
    {"f32_to_f16", "m elements", 0, zero, cvt_bytes},
    {NULL, NULL, 0, NULL, NULL},
};

const af_opdesc *af_opdesc_find(const char *name) {
  for (const af_opdesc *d = af_opdescs; d->name; d++)
    if (!strcmp(d->name, name)) return d;
  return (const af_opdesc *)0;
}
