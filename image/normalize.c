/* ToTensor + Normalize as torchvision computes them in float32: a per-channel
 * table of ((float)v / 255 - mean) / std, applied on the host or by an
 * OpenCL kernel (cl/kernels/preprocess.cl); both give the same bits. */
#include <stddef.h>
#include <stdint.h>

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

int af_image_normalize_cl(af_queue *q, const uint8_t *rgb, int n_img, size_t n_pix, const float lut[3 * 256],
                          float *out) {
  int rc = 0;
  cl_mem in = NULL, tab = NULL, res = NULL;
  cl_kernel k;
  size_t in_bytes = (size_t)n_img * n_pix * 3, out_bytes = in_bytes * sizeof(float);
  if (n_img <= 0 || n_pix == 0 || n_pix > 0x7fffffff)
    return af_err(AF_ERR_INVALID, "normalize: invalid batch %d x %zu pixels", n_img, n_pix);
  AF_TRY(rc, af_queue_kernel(q, "preprocess.cl", "af_preprocess_normalize", NULL, &k), out);
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_READ_ONLY, in_bytes, NULL, &in), out);
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_READ_ONLY, 3 * 256 * sizeof(float), NULL, &tab), out);
  AF_TRY(rc, af_cl_alloc(q->cl, CL_MEM_WRITE_ONLY, out_bytes, NULL, &res), out);
  AF_TRY(rc, af_queue_write(q, in, 0, in_bytes, rgb), out);
  AF_TRY(rc, af_queue_write(q, tab, 0, 3 * 256 * sizeof(float), lut), out);
  cl_int np = (cl_int)n_pix;
  AF_ARG(rc, k, 0, in, out);
  AF_ARG(rc, k, 1, tab, out);
  AF_ARG(rc, k, 2, res, out);
  AF_ARG(rc, k, 3, np, out);
  size_t global[2] = {(n_pix + 63) / 64 * 64, (size_t)n_img}, local[2] = {64, 1};
  AF_TRY(rc, af_queue_run(q, k, 2, global, local, "preprocess_normalize"), out);
  AF_TRY(rc, af_queue_read(q, res, 0, out_bytes, out), out);
out:
  if (in) clReleaseMemObject(in);
  if (tab) clReleaseMemObject(tab);
  if (res) clReleaseMemObject(res);
  return rc;
}
