/* Benchmark (not a test): decode + Pillow-exact resize + normalisation,
 * images per second on one thread, for a 4000x3000 JPEG and a 224x224 JPEG
 * thumbnail written here with libvips (quality 90, a smooth procedural image
 * with mild noise, roughly photo-like in file size).
 *
 *   build-dir/tests/image/image_bench [iterations_large] [iterations_small]
 *
 * Prints per-step times (best and mean) and images/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <vips/vips.h>

#include "af_test.h"
#include "image/image.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int write_jpeg(const char *path, int w, int h) {
  uint8_t *px = malloc((size_t)w * h * 3);
  if (!px) return -1;
  af_rng r;
  af_rng_seed(&r, 1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        int smooth = (x * 200 / w + y * 55 / h + c * 40 + ((x / 16) * (y / 16) % 97)) & 255;
        int v = smooth + (int)(af_rng_u32(&r) % 17) - 8;
        px[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
  VipsImage *im = vips_image_new_from_memory(px, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
  int rc = im ? vips_image_write_to_file(im, path, "Q", 90, NULL) : -1;
  if (im) g_object_unref(im);
  free(px);
  return rc;
}

static void bench(const char *label, const char *path, int iters) {
  struct stat st;
  stat(path, &st);
  const int S = 224;
  uint8_t *small = malloc((size_t)S * S * 3);
  float *out = malloc((size_t)S * S * 3 * sizeof(float));
  float lut[768];
  af_image_norm_lut(af_clip_mean, af_clip_std, lut);
  double t_dec = 0, t_rs = 0, t_norm = 0, best = 1e9;
  int w = 0, h = 0;
  for (int i = 0; i < iters; i++) {
    af_image_u8 im;
    double t0 = now();
    if (af_image_decode(path, NULL, &im)) {
      fprintf(stderr, "decode failed: %s\n", af_error_message());
      break;
    }
    double t1 = now();
    af_image_resize_bicubic(im.data, im.w, im.h, small, S, S);
    double t2 = now();
    af_image_normalize_ref(small, (size_t)S * S, lut, out);
    double t3 = now();
    w = im.w, h = im.h;
    af_image_free(&im);
    t_dec += t1 - t0, t_rs += t2 - t1, t_norm += t3 - t2;
    if (t3 - t0 < best) best = t3 - t0;
  }
  double total = (t_dec + t_rs + t_norm) / iters;
  printf(
      "%-10s %dx%d JPEG (%.2f MB), %d runs: decode %.2f ms + resize %.2f ms + normalise %.3f ms"
      " = %.2f ms mean (best %.2f ms) -> %.1f images/s on one thread\n",
      label, w, h, st.st_size / 1e6, iters, 1e3 * t_dec / iters, 1e3 * t_rs / iters, 1e3 * t_norm / iters,
      1e3 * total, 1e3 * best, 1.0 / total);
  free(small);
  free(out);
}

int main(int argc, char **argv) {
  int n_large = argc > 1 ? atoi(argv[1]) : 10, n_small = argc > 2 ? atoi(argv[2]) : 500;
  if (af_image_init()) return 1;
  char big[600], thumb[600];
  snprintf(big, sizeof big, "%s/bench_4000x3000.jpg", af_test_tmpdir());
  snprintf(thumb, sizeof thumb, "%s/bench_224.jpg", af_test_tmpdir());
  if (write_jpeg(big, 4000, 3000) || write_jpeg(thumb, 224, 224)) {
    fprintf(stderr, "cannot write the benchmark JPEGs: %s\n", vips_error_buffer());
    return 1;
  }
  printf("libvips %s, concurrency %d\n", vips_version_string(), vips_concurrency_get());
  bench("large", big, n_large);
  bench("thumbnail", thumb, n_small);
  remove(big);
  remove(thumb);
  return 0;
}
