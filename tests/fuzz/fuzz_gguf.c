/* libFuzzer target: the GGUF reader on arbitrary bytes.  Every key, array
 * element and tensor the reader accepts is touched, and small tensors are
 * dequantized, so ASan sees any read the validation let through. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "artflow/status.h"
#include "formats/gguf.h"
#include "formats/quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  af_gguf *g = NULL;
  if (af_gguf_open_buffer(data, size, "fuzz.gguf", &g) == 0) {
    volatile double sink = 0;
    for (uint64_t i = 0; i < af_gguf_n_kv(g); i++) {
      const af_gguf_value *v = &af_gguf_kv_at(g, i)->value;
      if (v->type == AF_GGUF_ARRAY && v->v.arr.raw)
        for (uint64_t j = 0; j < v->v.arr.n && j < 4096; j++) sink += af_gguf_arr_num(v, j);
      if (v->type == AF_GGUF_ARRAY && v->v.arr.strs)
        for (uint64_t j = 0; j < v->v.arr.n && j < 4096; j++) sink += (double)v->v.arr.strs[j].len;
    }
    for (uint64_t i = 0; i < af_gguf_n_tensors(g); i++) {
      const af_gguf_tensor *t = af_gguf_tensor_at(g, i);
      const uint8_t *p = t->data;
      if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
      if (t->n_elements <= (1u << 20)) {
        float *x = malloc(t->n_elements * sizeof *x);
        if (x && af_convert_to_f32(t->type, t->data, x, t->n_elements) == 0) sink += x[0];
        free(x);
      }
    }
    (void)sink;
    af_gguf_close(g);
  }
  af_error_clear();
  return 0;
}
