/* Element conversions for model weights: IEEE half and bfloat16 <-> float,
 * and ggml's public Q8_0 / Q4_0 block formats.
 *
 * Q8_0 block (34 bytes, 32 elements): fp16 scale d, then 32 int8 q;
 *   value = q * d, d = max|x| / 127, q = round(x / d).
 * Q4_0 block (18 bytes, 32 elements): fp16 scale d, then 16 bytes; byte j holds
 *   element j in its low nibble and element j+16 in its high nibble;
 *   value = (q - 8) * d, with d = m / -8 where m is the element of largest
 *   magnitude (sign kept), q = clamp(round-half-up(x / d + 8), 0, 15).
 * These are the layouts llama.cpp files use, so quantized files interoperate. */
#ifndef AF_FORMATS_QUANT_H
#define AF_FORMATS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AF_QK8_0 32
#define AF_QK4_0 32
#define AF_Q8_0_BLOCK_BYTES 34
#define AF_Q4_0_BLOCK_BYTES 18

/* Round-to-nearest-even float -> half (overflow to inf, NaN kept NaN). */
uint16_t af_f32_to_f16(float f);
float af_f16_to_f32(uint16_t h);
/* Round-to-nearest-even float -> bfloat16. */
uint16_t af_f32_to_bf16(float f);
float af_bf16_to_f32(uint16_t h);

/* Quantize n floats (n a multiple of 32) into n/32 blocks at dst. */
void af_quantize_q8_0(const float *src, void *dst, size_t n);
void af_quantize_q4_0(const float *src, void *dst, size_t n);
void af_dequantize_q8_0(const void *src, float *dst, size_t n);
void af_dequantize_q4_0(const void *src, float *dst, size_t n);

/* Converts n floats to `type` (af_ggml_type F32/F16/BF16/Q8_0/Q4_0) at dst,
 * which holds af_ggml_nbytes(type, n, n) bytes.  Returns 0 or AF_ERR_UNSUPPORTED
 * / AF_ERR_INVALID (n not a multiple of the block). */
int af_convert_from_f32(int type, const float *src, void *dst, size_t n);
/* Converts n elements of `type` (F32/F16/BF16/Q8_0/Q4_0, and the
 * K-quants Q4_K/Q5_K/Q6_K of formats/kquant.h) at src to floats.
 * Returns 0 or AF_ERR_UNSUPPORTED / AF_ERR_INVALID. */
int af_convert_to_f32(int type, const void *src, float *dst, size_t n);

#ifdef __cplusplus
}
#endif
#endif
