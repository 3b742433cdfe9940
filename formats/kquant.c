/* Plain-C dequantisation of ggml's K-quant super-blocks Q4_K, Q5_K, Q6_K (the
 * formats of llama.cpp's Q4_K_M / Q5_K_M / Q6_K files; see kquant.h).  Written
 * from the block layouts documented in ggml's ggml-common.h; checked against
 * gguf-py's dequantisation on tests/data/kquant (make_kquant_fixture.py). */
#include "formats/kquant.h"

#include "formats/quant.h"

static float half_at(const uint8_t *p) {
  return af_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

void af_kq_scale_min(int j, const uint8_t *s, int *sc, int *m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

/* Q4_K / Q5_K: d, dmin (fp16), 12 bytes of 6-bit scales and mins, [Q5_K: 32
 * bytes of high bits], 128 bytes of nibbles.  Sub-block j (32 values) of the
 * 256: nibbles of bytes 32 (j / 2).. (low for even j, high for odd), plus bit j
 * of qh[l] as 16 (Q5_K); value = d sc_j q - dmin m_j. */
static void dequant_q45(const uint8_t *b, int five, float *y) {
  float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t *sc = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
  for (int j = 0; j < 8; j++) {
    int s, m;
    af_kq_scale_min(j, sc, &s, &m);
    float ds = d * (float)s, dm = dmin * (float)m;
    const uint8_t *q = qs + 32 * (j / 2);
    for (int l = 0; l < 32; l++) {
      int v = j % 2 ? q[l] >> 4 : q[l] & 15;
      if (five && (qh[l] >> j) & 1) v += 16;
      y[32 * j + l] = ds * (float)v - dm;
    }
  }
}

/* Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8
 * scales (one per 16 values), fp16 d.  Half h (128 values): ql = 64 h.., qh =
 * 32 h..; quarter s of the half: low nibbles of ql[l + 32 (s % 2)] for s < 2,
 * high ones for s >= 2, high bits (qh[l] >> 2 s) & 3; value = d sc (q - 32). */
static void dequant_q6(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = half_at(b + 208);
  for (int h = 0; h < 2; h++)
    for (int s = 0; s < 4; s++)
      for (int l = 0; l < 32; l++) {
        int lo = ql[64 * h + l + 32 * (s % 2)],
            v = (s < 2 ? lo & 15 : lo >> 4) | ((qh[32 * h + l] >> (2 * s)) & 3) << 4;
        y[128 * h + 32 * s + l] = d * (float)sc[8 * h + 2 * s + l / 16] * (float)(v - 32);
      }
}

int af_kq_block_bytes(int type) {
  return type == AF_GGML_Q4_K ? 144 : type == AF_GGML_Q5_K ? 176 : type == AF_GGML_Q6_K ? 210 : 0;
}

void af_dequantize_kq(int type, const void *src, float *dst, size_t n) {
  const uint8_t *b = src;
  size_t bytes = (size_t)af_kq_block_bytes(type);
  for (size_t i = 0; i < n / 256; i++, b += bytes, dst += 256) {
    if (type == AF_GGML_Q6_K)
      dequant_q6(b, dst);
    else
      dequant_q45(b, type == AF_GGML_Q5_K, dst);
  }
}
