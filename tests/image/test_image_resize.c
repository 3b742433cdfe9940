/* Golden test of the Pillow-exact BICUBIC resize: procedural sources (the
 * formula mirrors pattern() in tests/data/image/make_fixtures.py, and each
 * source's byte sum is checked against the one Python recorded) resized by
 * af_image_resize_bicubic and compared with Pillow 9.4's Image.resize output.
 * Requirement: |diff| <= 1 on every pixel and >= 99% exact per case; the
 * total exact share is printed.  A sweep of 400 random sizes (1..400 per
 * side, non-square targets included) compares CRC-32s of the whole output.  Also checks the normalisation
 * table against an independent float32 formula and host/OpenCL agreement lives in test_image_norm.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "af_test.h"
#include "image/image.h"

static uint8_t *pattern(int w, int h, int pat, uint32_t seed, uint64_t *sum) {
  uint8_t *img = malloc((size_t)w * h * 3);
  if (!img) return NULL;
  uint64_t wm = w > 1 ? (uint64_t)w - 1 : 1, hm = h > 1 ? (uint64_t)h - 1 : 1, s = 0;
  for (uint64_t y = 0; y < (uint64_t)h; y++)
    for (uint64_t x = 0; x < (uint64_t)w; x++)
      for (uint64_t c = 0; c < 3; c++) {
        uint32_t hs = (uint32_t)(x * 73856093u) ^ (uint32_t)(y * 19349663u) ^ (uint32_t)(c * 83492791u) ^
                      (uint32_t)(seed * 2654435761u);
        hs *= 2246822519u;
        hs ^= hs >> 15;
        uint64_t noise = hs & 255u;
        uint64_t smooth = (x * 200 / wm + y * 55 / hm + c * 40 + ((x * y) >> 6)) & 255u;
        uint64_t v;
        if (pat == 0)
          v = noise;
        else if (pat == 1)
          v = smooth;
        else if (pat == 2)
          v = (smooth * 3 + noise) >> 2;
        else
          v = (((x / 7) + (y / 5) + c) & 1u) * 255u;
        img[(y * (uint64_t)w + x) * 3 + c] = (uint8_t)v;
        s += v;
      }
  *sum = s;
  return img;
}

int main(void) {
  FILE *f = fopen(af_test_data("image/resize_cases.txt"), "r");
  CHECK(f != NULL);
  if (!f) return af_test_done("test_image_resize");
  char line[256], name[64];
  int w, h, s, pat, cases = 0;
  unsigned seed;
  unsigned long long want_sum;
  uint64_t total = 0, exact = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    if (sscanf(line, "%63s %d %d %d %d %u %llu", name, &w, &h, &s, &pat, &seed, &want_sum) != 7) continue;
    uint64_t sum = 0;
    uint8_t *src = pattern(w, h, pat, seed, &sum);
    CHECK(src != NULL);
    if (!src) break;
    CHECK_MSG(sum == want_sum, "%s: source pattern differs from the Python one", name);
    uint8_t *out = malloc((size_t)s * s * 3);
    CHECK_OK(af_image_resize_bicubic(src, w, h, out, s, s));
    char ref_name[128];
    snprintf(ref_name, sizeof ref_name, "image/resize_%s.png", name);
    af_image_u8 ref;
    CHECK_OK(af_image_decode(af_test_data(ref_name), NULL, &ref));
    CHECK(ref.w == s && ref.h == s);
    if (ref.data && ref.w == s && ref.h == s) {
      size_t n = (size_t)s * s * 3, same = 0;
      int maxd = 0;
      for (size_t i = 0; i < n; i++) {
        int d = abs((int)out[i] - (int)ref.data[i]);
        if (d == 0) same++;
        if (d > maxd) maxd = d;
      }
      printf("%-12s %5dx%-5d -> %3d: %6.2f%% exact, max diff %d\n", name, w, h, s, 100.0 * same / n, maxd);
      CHECK_MSG(maxd <= 1, "%s: max diff %d", name, maxd);
      CHECK_MSG(same * 100 >= n * 99, "%s: only %zu of %zu exact", name, same, n);
      total += n;
      exact += same;
    }
    af_image_free(&ref);
    free(out);
    free(src);
    cases++;
  }
  fclose(f);
  CHECK(cases >= 15);
  /* The requirement is +-1 and 99% exact; the implementation reproduces Pillow
   * exactly, so demand that too: anything less is a regression. */
  CHECK_MSG(exact == total, "%llu values differ from Pillow", (unsigned long long)(total - exact));
  printf("resize golden: %d cases, %llu of %llu values exact (%.4f%%)\n", cases, (unsigned long long)exact,
         (unsigned long long)total, total ? 100.0 * exact / total : 0.0);

  /* Sweep: 400 random sizes (non-square targets too), CRC-32 of Pillow's bytes. */
  FILE *sw = fopen(af_test_data("image/resize_sweep.txt"), "r");
  CHECK(sw != NULL);
  int swept = 0, sweep_bad = 0;
  while (sw && fgets(line, sizeof line, sw)) {
    int ow, oh;
    unsigned crc_want;
    if (line[0] == '#' || sscanf(line, "%d %d %d %d %d %u %x", &w, &h, &ow, &oh, &pat, &seed, &crc_want) != 7)
      continue;
    uint64_t sum;
    uint8_t *src = pattern(w, h, pat, seed, &sum), *out = malloc((size_t)ow * oh * 3);
    CHECK_OK(af_image_resize_bicubic(src, w, h, out, ow, oh));
    unsigned crc = (unsigned)crc32(0, out, (uInt)((size_t)ow * oh * 3));
    if (crc != crc_want) {
      if (sweep_bad++ < 5) fprintf(stderr, "sweep: %dx%d -> %dx%d (pattern %d) differs\n", w, h, ow, oh, pat);
    }
    free(src);
    free(out);
    swept++;
  }
  if (sw) fclose(sw);
  printf("resize sweep: %d of %d random sizes identical to Pillow\n", swept - sweep_bad, swept);
  CHECK(swept == 400);
  CHECK(sweep_bad == 0);

  /* Argument checks. */
  uint8_t px[3] = {1, 2, 3}, o[3];
  CHECK(af_image_resize_bicubic(px, 0, 1, o, 1, 1) == AF_ERR_INVALID);
  CHECK(af_image_resize_bicubic(px, 1, 1, o, 1, -1) == AF_ERR_INVALID);
  af_error_clear();
  CHECK_OK(af_image_resize_bicubic(px, 1, 1, o, 1, 1));
  CHECK(o[0] == 1 && o[1] == 2 && o[2] == 3);

  /* Normalisation table: ((v/255) - mean) / std in float32 at each step. */
  float lut[768];
  af_image_norm_lut(af_clip_mean, af_clip_std, lut);
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v += 17) {
      float x = (float)v / 255.0f;
      float d = x - af_clip_mean[c];
      float want = d / af_clip_std[c];
      CHECK(lut[c * 256 + v] == want);
    }
  CHECK(lut[0] < -1.79f && lut[0] > -1.80f);    /* (0 - 0.4815) / 0.2686 = -1.7923 */
  CHECK(lut[255] > 1.93f && lut[255] < 1.931f); /* (1 - 0.4815) / 0.2686 = 1.9303 */
  uint8_t rgb[6] = {0, 128, 255, 10, 20, 30};
  float planes[6];
  af_image_normalize_ref(rgb, 2, lut, planes);
  CHECK(planes[0] == lut[0] && planes[1] == lut[10]);
  CHECK(planes[2] == lut[256 + 128] && planes[3] == lut[256 + 20]);
  CHECK(planes[4] == lut[512 + 255] && planes[5] == lut[512 + 30]);
  return af_test_done("test_image_resize");
}
