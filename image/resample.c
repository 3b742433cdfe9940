/* Pillow-exact BICUBIC resize of 8-bit RGB images
 * (the float32 normalisation that follows it is image/normalize.c).
 *
 * The resize reproduces the semantics of Pillow 9.x's uint8 resampler
 * (written from its documented behaviour and checked against Debian's
 * python3-pil output, tests/data/image/):
 *  - separable: a horizontal pass (only when the width changes) into a uint8
 *    intermediate, then a vertical pass (only when the height changes);
 *  - per output position x: scale = in/out, filterscale = max(scale, 1),
 *    support = 2 * filterscale, center = (x + 0.5) * scale,
 *    taps from trunc(center - support + 0.5) (>= 0) to
 *    trunc(center + support + 0.5) (<= in), weights
 *    cubic((i - center + 0.5) / filterscale) with a = -0.5, normalised to sum 1
 *    over the clipped window, then rounded half away from zero to integers
 *    with 22 fractional bits;
 *  - each output = (sum(pixel * weight) + 2^21) >> 22, clamped to 0..255.
 * Double precision is used for the weights exactly where Pillow uses it, so
 * the integers (and hence the pixels) are identical. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "image/image.h"

#define PREC_BITS 22 /* 32 - 8 - 2: room for 8-bit pixels and weights above 1 */

/* Keys cubic convolution kernel with a = -0.5 (Catmull-Rom). */
static double cubic(double x) {
  const double a = -0.5;
  if (x < 0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

/* Tap windows and fixed-point weights for one axis. */
typedef struct axis {
  int ksize;  /* weights stored per output position */
  int *first; /* first input index per output */
  int *count; /* taps per output */
  int32_t *w; /* out * ksize weights */
} axis;

static void axis_free(axis *a) {
  free(a->first);
  free(a->count);
  free(a->w);
}

static int axis_init(axis *a, int in, int out) {
  memset(a, 0, sizeof *a);
  double scale = (double)in / out;
  double fscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * fscale;
  a->ksize = (int)ceil(support) * 2 + 1;
  a->first = malloc(sizeof(int) * (size_t)out);
  a->count = malloc(sizeof(int) * (size_t)out);
  a->w = malloc(sizeof(int32_t) * (size_t)out * (size_t)a->ksize);
  double *tmp = malloc(sizeof(double) * (size_t)a->ksize);
  if (!a->first || !a->count || !a->w || !tmp) {
    free(tmp);
    axis_free(a);
    return af_err(AF_ERR_NOMEM, "resize: out of memory for %d->%d weights", in, out);
  }
  double inv = 1.0 / fscale;
  for (int o = 0; o < out; o++) {
    double center = (o + 0.5) * scale;
    /* (int) truncates toward zero like Pillow; negatives clamp to 0 anyway */
    int lo = (int)(center - support + 0.5);
    int hi = (int)(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in) hi = in;
    int n = hi - lo;
    if (n > a->ksize) n = a->ksize; /* cannot happen; keeps the bound obvious */
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
      tmp[i] = cubic((i + lo - center + 0.5) * inv);
      sum += tmp[i];
    }
    int32_t *w = a->w + (size_t)o * a->ksize;
    for (int i = 0; i < a->ksize; i++) {
      double v = i < n ? (sum != 0.0 ? tmp[i] / sum : tmp[i]) : 0.0;
      double s = v * (double)(1 << PREC_BITS);
      w[i] = (int32_t)(v < 0 ? s - 0.5 : s + 0.5); /* half away from zero */
    }
    a->first[o] = lo;
    a->count[o] = n;
  }
  free(tmp);
  return 0;
}

static inline uint8_t clamp8(int32_t acc) {
  if (acc < 0) return 0;
  acc >>= PREC_BITS;
  return acc > 255 ? 255 : (uint8_t)acc;
}

/* Rows [y0, y1) of src (width sw) -> rows of dst (width dw). */
static void pass_h(const uint8_t *src, int sw, int y0, int y1, const axis *ax, uint8_t *dst, int dw) {
  for (int y = y0; y < y1; y++) {
    const uint8_t *row = src + (size_t)y * sw * 3;
    uint8_t *o = dst + (size_t)(y - y0) * dw * 3;
    for (int x = 0; x < dw; x++) {
      const int32_t *w = ax->w + (size_t)x * ax->ksize;
      const uint8_t *p = row + (size_t)ax->first[x] * 3;
      int32_t r = 1 << (PREC_BITS - 1), g = r, b = r;
      for (int i = 0; i < ax->count[x]; i++) {
        r += p[3 * i] * w[i];
        g += p[3 * i + 1] * w[i];
        b += p[3 * i + 2] * w[i];
      }
      o[3 * x] = clamp8(r);
      o[3 * x + 1] = clamp8(g);
      o[3 * x + 2] = clamp8(b);
    }
  }
}

/* src has rows starting at input row `base`; width w; dst has dh rows.  The
 * taps run in the outer loop over a row of accumulators so the inner loop is
 * contiguous (same sums, same order per pixel as a per-pixel loop). */
static int pass_v(const uint8_t *src, int base, int w, const axis *ax, uint8_t *dst, int dh) {
  size_t stride = (size_t)w * 3;
  int32_t *acc = malloc(sizeof(int32_t) * stride);
  if (!acc) return af_err(AF_ERR_NOMEM, "resize: out of memory");
  for (int y = 0; y < dh; y++) {
    const int32_t *wt = ax->w + (size_t)y * ax->ksize;
    const uint8_t *top = src + (size_t)(ax->first[y] - base) * stride;
    uint8_t *o = dst + (size_t)y * stride;
    for (size_t x = 0; x < stride; x++) acc[x] = 1 << (PREC_BITS - 1);
    for (int i = 0; i < ax->count[y]; i++) {
      const uint8_t *row = top + (size_t)i * stride;
      int32_t wi = wt[i];
      for (size_t x = 0; x < stride; x++) acc[x] += row[x] * wi;
    }
    for (size_t x = 0; x < stride; x++) o[x] = clamp8(acc[x]);
  }
  free(acc);
  return 0;
}

int af_image_resize_bicubic(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
  if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0)
    return af_err(AF_ERR_INVALID, "resize: invalid sizes %dx%d -> %dx%d", sw, sh, dw, dh);
  int need_h = sw != dw, need_v = sh != dh;
  if (!need_h && !need_v) {
    memcpy(dst, src, (size_t)sw * sh * 3);
    return 0;
  }
  int rc = 0;
  axis ah = {0}, av = {0};
  uint8_t *mid = NULL;
  if ((need_h && (rc = axis_init(&ah, sw, dw))) || (need_v && (rc = axis_init(&av, sh, dh)))) goto out;
  if (!need_v) {
    pass_h(src, sw, 0, sh, &ah, dst, dw);
    goto out;
  }
  if (!need_h) {
    rc = pass_v(src, 0, sw, &av, dst, dh);
    goto out;
  }
  /* Only the input rows the vertical taps touch go through the first pass. */
  int y0 = av.first[0];
  int y1 = av.first[dh - 1] + av.count[dh - 1];
  mid = malloc((size_t)(y1 - y0) * dw * 3);
  if (!mid) {
    rc = af_err(AF_ERR_NOMEM, "resize: out of memory (%dx%d intermediate)", dw, y1 - y0);
    goto out;
  }
  pass_h(src, sw, y0, y1, &ah, mid, dw);
  rc = pass_v(mid, y0, dw, &av, dst, dh);
out:
  free(mid);
  axis_free(&ah);
  axis_free(&av);
  return rc;
}
