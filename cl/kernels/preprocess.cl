/* Image preprocessing kernels (host side: image/resample.c).
 *
 * af_preprocess_normalize: interleaved uint8 RGB -> float32 CHW planes through
 * a 3 x 256 table holding ((v / 255) - mean[c]) / std[c] as computed on the
 * host in float32.  A look-up instead of device arithmetic makes the result
 * bit-identical to the host reference (and to torchvision) on every device,
 * whatever its division accuracy. */

/* global: (n_pix rounded up, n_img).  rgb: n_img * n_pix * 3 bytes;
 * out: n_img * 3 * n_pix floats. */
__kernel void af_preprocess_normalize(__global const uchar *rgb, __global const float *lut,
                                      __global float *out, const int n_pix) {
  int i = get_global_id(0);
  int img = get_global_id(1);
  if (i >= n_pix) return;
  size_t base = (size_t)img * (size_t)n_pix;
  __global const uchar *p = rgb + (base + (size_t)i) * 3;
  __global float *o = out + base * 3 + (size_t)i;
  o[0] = lut[p[0]];
  o[(size_t)n_pix] = lut[256 + p[1]];
  o[2 * (size_t)n_pix] = lut[512 + p[2]];
}
