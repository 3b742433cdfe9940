/* The OpenCL normalisation kernel (cl/kernels/preprocess.cl) against the host
 * reference: random uint8 RGB batches of awkward sizes (not multiples of the
 * work-group size) must give bit-identical float32 CHW planes. */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/runtime.h"
#include "image/image.h"

int main(void) {
  af_cl *cl = NULL;
  af_queue *q = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_image_norm");
  CHECK_OK(af_queue_new(cl, &q));
  float lut[768];
  af_image_norm_lut(af_clip_mean, af_clip_std, lut);
  af_rng r;
  af_rng_seed(&r, 3);
  const int sizes[][2] = {{1, 1}, {3, 37 * 37}, {2, 224 * 224}, {5, 65}};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    int n = sizes[t][0];
    size_t px = (size_t)sizes[t][1];
    uint8_t *rgb = malloc((size_t)n * px * 3);
    float *dev = malloc((size_t)n * px * 3 * sizeof(float));
    float *ref = malloc((size_t)n * px * 3 * sizeof(float));
    for (size_t i = 0; i < (size_t)n * px * 3; i++) rgb[i] = (uint8_t)af_rng_u32(&r);
    for (int k = 0; k < n; k++) af_image_normalize_ref(rgb + px * 3 * k, px, lut, ref + px * 3 * k);
    memset(dev, 0xff, (size_t)n * px * 3 * sizeof(float));
    CHECK_OK(af_image_normalize_cl(q, rgb, n, px, lut, dev));
    CHECK_MSG(!memcmp(dev, ref, (size_t)n * px * 3 * sizeof(float)), "batch %d x %zu differs", n, px);
    /* plane layout: image k, channel c, pixel i */
    CHECK(dev[px * 3 * (n - 1) + px * 2 + (px - 1)] == lut[512 + rgb[px * 3 * (n - 1) + (px - 1) * 3 + 2]]);
    free(rgb);
    free(dev);
    free(ref);
  }
  CHECK(af_image_normalize_cl(q, (const uint8_t *)"", 0, 1, lut, NULL) == AF_ERR_INVALID);
  af_error_clear();
  af_queue_free(q);
  af_cl_close(cl);
  return af_test_done("test_image_norm");
}
