/* Half/bfloat16 conversion and the Q8_0 / Q4_0 block codecs (see quant.h). */
#include "formats/quant.h"

#include <math.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/gguf.h"
#include "formats/kquant.h"

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t af_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) /* inf or NaN: keep NaN quiet and non-zero */
    return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
    return (uint16_t)(sign | 0x7c00u);
  if (ax < 0x38800000u) {
    /* subnormal half (or zero): scale so the half ulp (2^-24) becomes 1 and
     * let the float adder round to nearest even. */
    float v = bits_f32(ax) * 16777216.0f; /* 2^24 */
    uint32_t m = (uint32_t)lrintf(v);     /* 0..1024 */
    return (uint16_t)(sign | m);
  }
  /* normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even */
  uint32_t mant_odd = (ax >> 13) & 1u;
  ax += 0xfffu + mant_odd;
  ax -= (uint32_t)(127 - 15) << 23;
  return (uint16_t)(sign | (ax >> 13));
}

float af_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    float v = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24 */
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

uint16_t af_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

float af_bf16_to_f32(uint16_t h) {
  return bits_f32((uint32_t)h << 16);
}

static void put_f16(uint8_t *p, float v) {
  uint16_t h = af_f32_to_f16(v);
  p[0] = (uint8_t)(h & 0xff);
  p[1] = (uint8_t)(h >> 8);
}

static float get_f16(const uint8_t *p) {
  return af_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

void af_quantize_q8_0(const float *src, void *dst, size_t n) {
  uint8_t *out = dst;
  for (size_t b = 0; b < n / AF_QK8_0; b++, src += AF_QK8_0, out += AF_Q8_0_BLOCK_BYTES) {
    float amax = 0.0f;
    for (int j = 0; j < AF_QK8_0; j++) amax = fabsf(src[j]) > amax ? fabsf(src[j]) : amax;
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(out, d);
    for (int j = 0; j < AF_QK8_0; j++) {
      /* roundf (half away from zero) without the libm call: |v| <= 127 here,
       * so the int conversion truncates exactly and v - i is exact */
      float v = src[j] * id;
      v = v > 127.0f ? 127.0f : v;
      v = v < -127.0f ? -127.0f : v; /* written so NaN ends as 0 below, not UB */
      v = v == v ? v : 0.0f;
      int i = (int)v;
      float fr = v - (float)i;
      i += (fr >= 0.5f) - (fr <= -0.5f); /* branch-free: random data defeats prediction */
      out[2 + j] = (uint8_t)(int8_t)i;
    }
  }
}

void af_dequantize_q8_0(const void *src, float *dst, size_t n) {
  const uint8_t *in = src;
  for (size_t b = 0; b < n / AF_QK8_0; b++, in += AF_Q8_0_BLOCK_BYTES, dst += AF_QK8_0) {
    float d = get_f16(in);
    for (int j = 0; j < AF_QK8_0; j++) dst[j] = (float)(int8_t)in[2 + j] * d;
  }
}

void af_quantize_q4_0(const float *src, void *dst, size_t n) {
  uint8_t *out = dst;
  for (size_t b = 0; b < n / AF_QK4_0; b++, src += AF_QK4_0, out += AF_Q4_0_BLOCK_BYTES) {
    /* The signed extreme maps to q = 0 (value -8*d), which uses the full
     * asymmetric range [-8, 7] on the side with the largest magnitude. */
    float amax = 0.0f, m = 0.0f;
    for (int j = 0; j < AF_QK4_0; j++) {
      if (fabsf(src[j]) > amax) {
        amax = fabsf(src[j]);
        m = src[j];
      }
    }
    float d = m / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(out, d);
    for (int j = 0; j < AF_QK4_0 / 2; j++) {
      float a = src[j] * id + 8.5f, c = src[j + AF_QK4_0 / 2] * id + 8.5f;
      a = a == a ? a : 8.0f; /* NaN -> the zero code */
      c = c == c ? c : 8.0f;
      a = a < 0.0f ? 0.0f : a > 15.0f ? 15.0f : a;
      c = c < 0.0f ? 0.0f : c > 15.0f ? 15.0f : c;
      int qa = (int)a, qc = (int)c;
      out[2 + j] = (uint8_t)(qa | (qc << 4));
    }
  }
}

void af_dequantize_q4_0(const void *src, float *dst, size_t n) {
  const uint8_t *in = src;
  for (size_t b = 0; b < n / AF_QK4_0; b++, in += AF_Q4_0_BLOCK_BYTES, dst += AF_QK4_0) {
    float d = get_f16(in);
    for (int j = 0; j < AF_QK4_0 / 2; j++) {
      dst[j] = (float)((in[2 + j] & 0x0f) - 8) * d;
      dst[j + AF_QK4_0 / 2] = (float)((in[2 + j] >> 4) - 8) * d;
    }
  }
}

int af_convert_from_f32(int type, const float *src, void *dst, size_t n) {
  uint8_t *o = dst;
  switch (type) {
    case AF_GGML_F32:
      memcpy(dst, src, n * 4);
      return 0;
    case AF_GGML_F16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h = af_f32_to_f16(src[i]);
        o[2 * i] = (uint8_t)h;
        o[2 * i + 1] = (uint8_t)(h >> 8);
      }
      return 0;
    case AF_GGML_BF16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h = af_f32_to_bf16(src[i]);
        o[2 * i] = (uint8_t)h;
        o[2 * i + 1] = (uint8_t)(h >> 8);
      }
      return 0;
    case AF_GGML_Q8_0:
    case AF_GGML_Q4_0:
      if (n % 32) return af_err(AF_ERR_INVALID, "quantize: %zu elements is not a multiple of 32", n);
      if (type == AF_GGML_Q8_0)
        af_quantize_q8_0(src, dst, n);
      else
        af_quantize_q4_0(src, dst, n);
      return 0;
    default:
      return af_err(AF_ERR_UNSUPPORTED, "cannot convert to tensor type %d", type);
  }
}

int af_convert_to_f32(int type, const void *src, float *dst, size_t n) {
  const uint8_t *in = src;
  switch (type) {
    case AF_GGML_F32:
      memcpy(dst, src, n * 4);
      return 0;
    case AF_GGML_F16:
      for (size_t i = 0; i < n; i++) dst[i] = af_f16_to_f32((uint16_t)(in[2 * i] | (in[2 * i + 1] << 8)));
      return 0;
    case AF_GGML_BF16:
      for (size_t i = 0; i < n; i++) dst[i] = af_bf16_to_f32((uint16_t)(in[2 * i] | (in[2 * i + 1] << 8)));
      return 0;
    case AF_GGML_Q8_0:
    case AF_GGML_Q4_0:
      if (n % 32) return af_err(AF_ERR_INVALID, "dequantize: %zu elements is not a multiple of 32", n);
      if (type == AF_GGML_Q8_0)
        af_dequantize_q8_0(src, dst, n);
      else
        af_dequantize_q4_0(src, dst, n);
      return 0;
    case AF_GGML_Q4_K:
    case AF_GGML_Q5_K:
    case AF_GGML_Q6_K:
      if (n % 256) return af_err(AF_ERR_INVALID, "dequantize: %zu elements is not a multiple of 256", n);
      af_dequantize_kq(type, src, dst, n);
      return 0;
    default:
      return af_err(AF_ERR_UNSUPPORTED, "cannot dequantize tensor type %s",
                    af_ggml_type_name(type) ? af_ggml_type_name(type) : "(unknown)");
  }
}
