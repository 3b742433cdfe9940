/* libFuzzer target: zip container + PyTorch checkpoint + safetensors readers
 * on arbitrary bytes.  Every entry is read (bounded size), every tensor found
 * is resolved and converted. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "artflow/status.h"
#include "formats/safetensors.h"
#include "formats/torch.h"
#include "formats/zip.h"

#define MAX_READ (16u << 20)

static void read_tensors(const af_tsrc_tensor *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (t[i].numel > MAX_READ / 4) continue;
    float *x = malloc((t[i].numel ? t[i].numel : 1) * sizeof *x);
    if (x) af_tsrc_read_f32(&t[i], x);
    free(x);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  af_zip *z = NULL;
  if (af_zip_open_mem(data, size, "fuzz.zip", &z) == 0) {
    for (size_t i = 0; i < af_zip_count(z); i++) {
      const uint8_t *d;
      uint8_t *owned = NULL;
      const af_zip_entry *e = af_zip_at(z, i);
      if (af_zip_read(z, e, MAX_READ, &d, &owned) == 0 && !owned) af_zip_verify(z, e);
      free(owned);
    }
  }
  af_zip_close(z);
  af_torch *ck = NULL;
  if (af_torch_open_mem(data, size, "fuzz.pth", &ck) == 0) {
    af_tsrc_tensor *list = NULL;
    size_t n = 0;
    af_torch_tensors(ck, af_torch_pick_root(ck, ""), "", &list, &n);
    read_tensors(list, n);
    free(list);
  }
  af_torch_close(ck);
  af_safetensors *st = NULL;
  if (af_safetensors_open_mem(data, size, "fuzz.safetensors", &st) == 0)
    read_tensors(af_safetensors_tensors(st), af_safetensors_count(st));
  af_safetensors_close(st);
  af_error_clear();
  return 0;
}
