/* Decoding parity with Pillow 9.4's Image.open(p).convert('RGB'): every
 * source in tests/data/image/decode_cases.txt (gray, 1-bit, gray+alpha, RGBA,
 * palette, palette with transparency, 16-bit gray / RGB / gray+alpha / RGBA
 * PNG, RGB / gray / CMYK / EXIF-rotated JPEG, animated GIF, WebP lossless /
 * lossy / alpha, TIFF RGB / gray LZW / CMYK, PPM, GIF with a transparent
 * palette entry) is decoded with
 * af_image_decode and compared with the RGB that Pillow produced (stored as a
 * plain RGB PNG).  Tolerance per file from the manifest (0 = exact).  Plus an
 * AVIF smoke test and the pixel-limit option. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>
#include "af_test.h"
#include "image/image.h"

int main(void) {
  FILE *f = fopen(af_test_data("image/decode_cases.txt"), "r");
  CHECK(f != NULL);
  if (!f) return af_test_done("test_image_decode");
  char line[512], src[128], exp[128], path[512];
  int tol, cases = 0, exact_cases = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || sscanf(line, "%127s %127s %d", src, exp, &tol) != 3) continue;
    af_image_u8 a = {0}, b = {0};
    snprintf(path, sizeof path, "image/%s", src);
    snprintf(path, sizeof path, "%s", af_test_data(path));
    int rc = af_image_decode(path, NULL, &a);
    CHECK_MSG(rc == 0, "%s: %s", src, af_error_message());
    af_error_clear();
    snprintf(path, sizeof path, "image/%s", exp);
    CHECK_OK(af_image_decode(af_test_data(path), NULL, &b));
    CHECK_MSG(a.w == b.w && a.h == b.h, "%s: %dx%d, Pillow %dx%d", src, a.w, a.h, b.w, b.h);
    if (a.data && b.data && a.w == b.w && a.h == b.h) {
      size_t n = (size_t)a.w * a.h * 3, same = 0;
      int maxd = 0;
      for (size_t i = 0; i < n; i++) {
        int d = abs((int)a.data[i] - (int)b.data[i]);
        same += d == 0;
        if (d > maxd) maxd = d;
      }
      printf("%-20s %dx%d: max diff %d, %.2f%% exact\n", src, a.w, a.h, maxd, 100.0 * same / n);
      CHECK_MSG(maxd <= tol, "%s: max diff %d > %d", src, maxd, tol);
      exact_cases += maxd == 0;
    }
    af_image_free(&a);
    af_image_free(&b);
    cases++;
  }
  fclose(f);
  printf("decode parity: %d files, %d bit-exact with Pillow\n", cases, exact_cases);
  CHECK(cases >= 20);

  /* AVIF (libheif), when this libvips has it: a smoke test, the file is lossy
   * and Pillow 9.4 cannot read it, so only size and closeness are checked. */
  if (vips_type_find("VipsOperation", "heifload")) {
    af_image_u8 a = {0}, b = {0};
    CHECK_OK(af_image_decode(af_test_data("image/dec_smoke.avif"), NULL, &a));
    CHECK_OK(af_image_decode(af_test_data("image/dec_rgb_jpg.expect.png"), NULL, &b));
    CHECK(a.w == 40 && a.h == 30);
    if (a.data && b.data && a.w == b.w && a.h == b.h) {
      double sum = 0;
      for (size_t i = 0; i < (size_t)a.w * a.h * 3; i++) sum += abs((int)a.data[i] - (int)b.data[i]);
      double mad = sum / ((size_t)a.w * a.h * 3);
      printf("dec_smoke.avif       40x30: mean abs diff %.2f from its lossless source\n", mad);
      CHECK(mad < 12.0);
    }
    af_image_free(&a);
    af_image_free(&b);
  } else {
    printf("dec_smoke.avif: skipped (this libvips has no heifload)\n");
  }

  /* The pixel limit counts width*height from the header (40x30 = 1200). */
  af_decode_opts o = {.max_pixels = 1199, .fail_on = AF_FAIL_ON_ERROR};
  af_image_u8 im;
  CHECK(af_image_decode(af_test_data("image/dec_rgb.jpg"), &o, &im) == AF_ERR_RANGE);
  CHECK(im.data == NULL && im.w == 0);
  af_error_clear();
  o.max_pixels = 1200;
  CHECK_OK(af_image_decode(af_test_data("image/dec_rgb.jpg"), &o, &im));
  af_image_free(&im);
  o.max_pixels = -1; /* no limit */
  CHECK_OK(af_image_decode(af_test_data("image/dec_rgb.jpg"), &o, &im));
  af_image_free(&im);
  return af_test_done("test_image_decode");
}
