/* ggml's K-quant super-blocks (256 values each), as llama.cpp's Q4_K_M /
 * Q5_K_M / Q6_K files store a base LLM:
 *   Q4_K (144 bytes): fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins for
 *     8 sub-blocks of 32, 128 bytes of 4-bit q; value = d sc q - dmin m.
 *   Q5_K (176 bytes): the same plus 32 bytes holding each value's fifth bit.
 *   Q6_K (210 bytes): 128 bytes of low 4 bits, 64 of high 2 bits, 16 int8
 *     scales (one per 16 values), fp16 d; value = d sc (q - 32).
 * Plain C, the reference for the device kernels (cl/kernels/kquant.cl). */
#ifndef AF_FORMATS_KQUANT_H
#define AF_FORMATS_KQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h"

/* bytes of one super-block of `type` (Q4_K, Q5_K, Q6_K), 0 for other types */
int af_kq_block_bytes(int type);
/* the 6-bit scale and min of sub-block j (0..7) from a Q4_K/Q5_K block's 12
 * scale bytes */
void af_kq_scale_min(int j, const uint8_t *scales, int *sc, int *m);
/* n values (a multiple of 256) of `type` at src into floats */
void af_dequantize_kq(int type, const void *src, float *dst, size_t n);

#endif
