/* ToTensor + Normalize as torchvision computes them in float32: a per-channel
 * table of ((float)v / 255 - mean) / std, applied on the host or by an
 * OpenCL kernel (cl/kernels/preprocess.cl); both give the same bits. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "artflow/status.h"
#include "cl/runtime.h"
#include "image/image.h"

const float af_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float af_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

void af_image_norm_lut(const float mean[3], const float std[3], float lut[3 * 256]) {
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) {
      /* float32 at every step, like ToTensor (div 255) then Normalize (sub, div) */
      volatile float x = (float)v / 255.0f;
      volatile float d = x - mean[c];
      lut[c * 256 + v] = d / std[c];
    }
}

void af_image_normalize_ref(const uint8_t *rgb, size_t n_pix, const float lut[3 * 256], float *out) {
  for (size_t i = 0; i < n_pix; i++)
    for (int c = 0; c < 3; c++) out[c * n_pix + i] = lut[c * 256 + rgb[3 * i + c]];
}

struct af_normalizer {
  af_queue *q;
  int max_img;
  size_t n_pix;
  cl_mem in, tab, res; /* max_img images of n_pix RGB bytes, the table, the float planes */
  cl_kernel k;
};

void af_normalizer_free(af_normalizer *d) {
  if (!d) return;
  if (d->in) clReleaseMemObject(d->in);
  if (d->tab) clReleaseMemObject(d->tab);
  if (d->res) clReleaseMemObject(d->res);
  free(d);
}

int af_normalizer_new(af_queue *q, int max_img, size_t n_pix, const float lut[3 * 256], af_normalizer **out) {
  *out = NULL;
  if (max_img <= 0 || n_pix == 0 || n_pix > 0x7fffffff)
    return af_err(AF_ERR_INVALID, "normalize: invalid batch %d x %zu pixels", max_img, n_pix);
  af_normalizer *d = calloc(1, sizeof *d);
  if (!d) return af_err(AF_ERR_NOMEM, "out of memory");
  d->q = q, d->max_img = max_img, d->n_pix = n_pix;
  size_t in_bytes = (size_t)max_img * n_pix * 3;
  int rc = 0;
  AF_TRY(rc, af_queue_kernel(q, "preprocess.cl", "af_preprocess_normalize", NULL, &d->k), out);
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_READ_ONLY, in_bytes, NULL, &d->in), out);
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_READ_ONLY, 3 * 256 * sizeof(float), NULL, &d->tab), out);
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_WRITE_ONLY, in_bytes * sizeof(float), NULL, &d->res), out);
  AF_TRY(rc, af_queue_write(q, d->tab, 0, 3 * 256 * sizeof(float), lut), out);
out:
  if (rc) {
    af_normalizer_free(d);
    return rc;
  }
  *out = d;
  return 0;
}

int af_normalizer_run(af_normalizer *d, const uint8_t *rgb, int n_img, float *out) {
  if (n_img <= 0 || n_img > d->max_img)
    return af_err(AF_ERR_INVALID, "normalize: batch %d outside 1..%d", n_img, d->max_img);
  af_queue *q = d->q;
  cl_kernel k = d->k;
  size_t in_bytes = (size_t)n_img * d->n_pix * 3;
  int rc = 0;
  cl_int np = (cl_int)d->n_pix;
  AF_TRY(rc, af_queue_write(q, d->in, 0, in_bytes, rgb), out);
  AF_ARG(rc, k, 0, d->in, out);
  AF_ARG(rc, k, 1, d->tab, out);
  AF_ARG(rc, k, 2, d->res, out);
  AF_ARG(rc, k, 3, np, out);
  size_t global[2] = {(d->n_pix + 63) / 64 * 64, (size_t)n_img}, local[2] = {64, 1};
  AF_TRY(rc, af_queue_run(q, k, 2, global, local, "preprocess_normalize"), out);
  AF_TRY(rc, af_queue_read(q, d->res, 0, in_bytes * sizeof(float), out), out);
out:
  return rc;
}

int af_image_normalize_cl(af_queue *q, const uint8_t *rgb, int n_img, size_t n_pix, const float lut[3 * 256],
                          float *out) {
  af_normalizer *d = NULL;
  int rc = af_normalizer_new(q, n_img, n_pix, lut, &d);
  if (!rc) rc = af_normalizer_run(d, rgb, n_img, out);
  af_normalizer_free(d);
  return rc;
}
