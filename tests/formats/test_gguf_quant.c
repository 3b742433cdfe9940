/* Half/bfloat16 conversion against known bit patterns, and Q8_0 / Q4_0
 * against a straightforward reference written here from the block layout:
 * bytes must match the reference exactly and the reconstruction error must
 * stay within the format's bound (half a quantisation step per element). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "formats/gguf.h"
#include "formats/quant.h"

static void test_half(void) {
  static const struct {
    float f;
    uint16_t h;
  } k[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {65504.0f, 0x7bff},
      {65520.0f, 0x7c00},
      {1e9f, 0x7c00},
      {0.1f, 0x2e66},
      {5.9604645e-8f, 0x0001},
      {2.9802322e-8f, 0x0000} /* tie -> even */,
      {6.1035156e-5f, 0x0400},
      {1.0009766f, 0x3c01},
      {1.00048828125f, 0x3c00} /* tie -> even */,
      {1.00146484375f, 0x3c02},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
    CHECK_MSG(af_f32_to_f16(k[i].f) == k[i].h, "%g -> %04x, want %04x", k[i].f, af_f32_to_f16(k[i].f),
              k[i].h);
  CHECK(isnan(af_f16_to_f32(af_f32_to_f16(NAN))));
  CHECK(isinf(af_f16_to_f32(0x7c00)));
  /* every finite half round-trips exactly */
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;
    CHECK_MSG(af_f32_to_f16(af_f16_to_f32((uint16_t)h)) == h, "half %04x", h);
  }
  CHECK(af_f32_to_bf16(1.0f) == 0x3f80);
  CHECK(af_f32_to_bf16(1.00390625f) == 0x3f80); /* tie -> even */
  CHECK(af_f32_to_bf16(1.01171875f) == 0x3f82);
  CHECK(af_bf16_to_f32(0xc040) == -3.0f);
}

/* Reference Q8_0: d = amax/127, q = nearest integer of x/d (half away from 0). */
static void ref_q8(const float *x, uint8_t *out) {
  float amax = 0;
  for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
  double d = amax / 127.0;
  uint16_t h = af_f32_to_f16((float)d);
  out[0] = (uint8_t)h, out[1] = (uint8_t)(h >> 8);
  for (int j = 0; j < 32; j++) {
    float r = d > 0 ? x[j] * (float)(1.0 / (float)d) : 0.0f;
    long q = lroundf(r);
    out[2 + j] = (uint8_t)(int8_t)q;
  }
}

static void test_q8(af_rng *r) {
  enum { N = 32 * 64 };
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
  uint8_t *q = malloc(N / 32 * 34), *ref = malloc(N / 32 * 34);
  for (int i = 0; i < N; i++) x[i] = af_rng_normal(r) * (i < 32 ? 0.0f : i < 64 ? 1e-3f : 3.0f);
  x[100] = 1000.0f; /* outlier block */
  af_quantize_q8_0(x, q, N);
  for (int b = 0; b < N / 32; b++) ref_q8(x + 32 * b, ref + 34 * b);
  int diff = 0;
  for (int i = 0; i < N / 32 * 34; i++) diff += q[i] != ref[i];
  CHECK_MSG(diff == 0, "%d bytes differ from the reference", diff);
  af_dequantize_q8_0(q, y, N);
  for (int b = 0; b < N / 32; b++) {
    float d = af_f16_to_f32((uint16_t)(q[34 * b] | (q[34 * b + 1] << 8)));
    for (int j = 0; j < 32; j++) {
      int i = 32 * b + j;
      /* |x - q*d| <= d/2 + |x| * (fp16 rounding of d) */
      double bound = 0.5 * d + fabs(x[i]) * 1e-3 + 1e-30;
      if (fabs(x[i] - y[i]) > bound) {
        CHECK_MSG(0, "q8_0 element %d: %g vs %g", i, x[i], y[i]);
        break;
      }
    }
  }
  for (int j = 0; j < 32; j++) CHECK(y[j] == 0.0f); /* all-zero block */
  CHECK(af_nerr(y + 128, x + 128, N - 128) < 1e-2);
  /* past the outlier block */ /* ~ step/sqrt(12) over sigma */
  free(x), free(y), free(q), free(ref);
}

/* Reference Q4_0 from the layout: m = signed element of largest magnitude,
 * d = m / -8, q = clamp(floor(x/d + 8.5), 0, 15); element j in the low nibble
 * of byte j, element j+16 in the high nibble. */
static void ref_q4(const float *x, uint8_t *out) {
  float m = 0;
  for (int j = 0; j < 32; j++) m = fabsf(x[j]) > fabsf(m) ? x[j] : m;
  float d = m / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
  uint16_t h = af_f32_to_f16(d);
  out[0] = (uint8_t)h, out[1] = (uint8_t)(h >> 8);
  int q[32];
  for (int j = 0; j < 32; j++) {
    int v = (int)floorf(x[j] * id + 8.5f);
    q[j] = v < 0 ? 0 : v > 15 ? 15 : v;
  }
  for (int j = 0; j < 16; j++) out[2 + j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}

static void test_q4(af_rng *r) {
  enum { N = 32 * 64 };
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
  uint8_t *q = malloc(N / 32 * 18), *ref = malloc(N / 32 * 18);
  for (int i = 0; i < N; i++) x[i] = af_rng_normal(r) * (i < 32 ? 0.0f : 2.0f);
  for (int j = 0; j < 32; j++) x[64 + j] = (float)(j - 16); /* exact grid values */
  af_quantize_q4_0(x, q, N);
  for (int b = 0; b < N / 32; b++) ref_q4(x + 32 * b, ref + 18 * b);
  int diff = 0;
  for (int i = 0; i < N / 32 * 18; i++) diff += q[i] != ref[i];
  CHECK_MSG(diff == 0, "%d bytes differ from the reference", diff);
  af_dequantize_q4_0(q, y, N);
  for (int b = 0; b < N / 32; b++) {
    float d = fabsf(af_f16_to_f32((uint16_t)(q[18 * b] | (q[18 * b + 1] << 8))));
    for (int j = 0; j < 32; j++) {
      int i = 32 * b + j;
      /* q = 15 is the most positive step: x of the sign opposite to the
       * extreme saturates at 7d (the format's asymmetry), else half a step */
      double bound = fmax(0.5 * d, fabs(x[i]) - 7.0 * d) + fabs(x[i]) * 1e-3 + 1e-30;
      if (fabs(x[i] - y[i]) > bound) {
        CHECK_MSG(0, "q4_0 element %d: %g vs %g (d %g)", i, x[i], y[i], d);
        break;
      }
    }
  }
  /* block 2 holds -16..15: d = 2, every value is on the grid */
  for (int j = 0; j < 32; j++)
    CHECK_MSG(y[64 + j] == (float)(j - 16) || fabsf(y[64 + j] - (float)(j - 16)) <= 1.0f, "grid %d -> %g",
              j - 16, y[64 + j]);
  /* nibble order: element 0 in the low nibble of byte 0, element 16 in its high nibble */
  CHECK((q[18 * 2 + 2] & 0x0f) == ref[18 * 2 + 2] % 16);
  CHECK(af_nerr(y + 32, x + 32, N - 32) < 0.12);
  free(x), free(y), free(q), free(ref);
}

int main(void) {
  af_rng r;
  af_rng_seed(&r, 42);
  test_half();
  test_q8(&r);
  test_q4(&r);
  CHECK(af_ggml_nbytes(AF_GGML_Q4_0, 64, 128) == 72);
  CHECK(af_ggml_nbytes(AF_GGML_Q8_0, 32, 32) == 34);
  CHECK(af_ggml_type_from_name("Q8_0") == AF_GGML_Q8_0);
  CHECK(af_ggml_type_from_name("q9") == -1);
  return af_test_done("test_gguf_quant");
}
