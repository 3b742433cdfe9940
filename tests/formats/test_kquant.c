/* K-quant dequantisation (formats/kquant.c) against gguf-py's on the committed
 * fixture tests/data/kquant/kquant.gguf (make_kquant_fixture.py: random Q4_K,
 * Q5_K and Q6_K super-blocks with sane fp16 scales, one subnormal, and the
 * float32 values gguf-py 0.19.0 dequantises them to).  Tolerance: every value
 * within 1 ulp-scale of its magnitude (1e-6 relative, plus 1e-12 absolute for
 * values near 0): the two compute d * sc * q - dmin * m in float32 but may
 * associate the products differently.  Also: af_convert_to_f32 routes the
 * types, refuses an element count that is not whole super-blocks, the block
 * sizes match the GGUF type table, and the 6-bit scale unpacking hits both
 * halves of its layout (values past 15 come from the high bits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "formats/gguf.h"
#include "formats/kquant.h"
#include "formats/quant.h"

int main(void) {
  af_gguf *g = NULL;
  CHECK_OK(af_gguf_open(af_test_data("kquant/kquant.gguf"), &g));
  if (!g) return af_test_done("test_kquant");
  static const char *const names[] = {"q4_k", "q5_k", "q6_k"};
  static const int types[] = {AF_GGML_Q4_K, AF_GGML_Q5_K, AF_GGML_Q6_K};
  for (int i = 0; i < 3; i++) {
    char fn[32];
    snprintf(fn, sizeof fn, "%s.f32", names[i]);
    const af_gguf_tensor *t = af_gguf_find_tensor(g, names[i]), *f = af_gguf_find_tensor(g, fn);
    CHECK_MSG(t && f, "%s: tensors missing", names[i]);
    if (!t || !f) continue;
    CHECK(t->type == types[i] && f->type == AF_GGML_F32 && t->n_elements == f->n_elements);
    CHECK((size_t)af_kq_block_bytes(types[i]) == af_ggml_type_size(types[i]));
    size_t n = (size_t)t->n_elements;
    float *got = malloc(n * sizeof *got);
    const float *want = f->data;
    CHECK_OK(af_convert_to_f32(t->type, t->data, got, n));
    size_t bad = 0, exact = 0;
    double amax = 0;
    for (size_t j = 0; j < n; j++) {
      double e = fabs((double)got[j] - want[j]);
      bad += !(e <= 1e-6 * fabs(want[j]) + 1e-12);
      exact += got[j] == want[j];
      amax = fabs(want[j]) > amax ? fabs(want[j]) : amax;
    }
    printf("%s: %zu values, %zu bit-equal to gguf-py, %zu outside tolerance, max |v| %.3g\n", names[i], n,
           exact, bad, amax);
    CHECK_MSG(bad == 0, "%s: %zu values differ from gguf-py", names[i], bad);
    CHECK(amax > 0 && isfinite(amax));
    CHECK(af_convert_to_f32(t->type, t->data, got, 255) == AF_ERR_INVALID);
    free(got);
  }
  /* scale/min unpacking: sub-blocks 4..7 take their high 2 bits from bytes 0..7 */
  uint8_t s[12] = {0xC1, 0x42, 0x03, 0x04, 0x85, 0x06, 0x07, 0x08, 0xA9, 0x3B, 0x0C, 0xFD};
  int sc, m;
  af_kq_scale_min(0, s, &sc, &m);
  CHECK(sc == 1 && m == 5);
  af_kq_scale_min(4, s, &sc, &m);
  CHECK(sc == (0x9 | (3 << 4)) && m == (0xA | (2 << 4)));
  af_kq_scale_min(7, s, &sc, &m);
  CHECK(sc == 0xD && m == 0xF);
  af_gguf_close(g);
  return af_test_done("test_kquant");
}
