/* Vision path on OpenCL against the ORIGINAL code's golden tensors: the tiny
 * release-format checkpoints (tests/data/artgpt4-tiny) are converted with
 * af_convert (so naming/layout mistakes in the converter show up as wrong
 * numbers), then ViT, ln_vision, Q-Former and projection run on the device.
 * Also a batch of 3 (one GEMM over the batch) must equal batch 1 per image.
 *
 * Tolerances (normalised L2 error vs the original, fp32 weights): 1e-5 per
 * stage; with --type f16 storage (weights rounded to half): 5e-3.  On an f16
 * file the profile's weight policies (fp32 copy, fp16 read in place by the
 * tiled GEMM, fp16 widened per call for CLBlast) agree within 1e-5. */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "net/vision.h"
#include "ref/npy.h"

#define DIR "artgpt4-tiny/"

static float *golden(const char *name, size_t *n) {
  int nd;
  int64_t shape[4];
  char p[256];
  snprintf(p, sizeof p, DIR "golden/%s", name);
  float *d = npy_read_f32(af_test_data(p), &nd, shape, n);
  CHECK(d != NULL);
  return d;
}

static void check(const char *what, const float *got, const char *gold, size_t n_expected, double tol) {
  size_t n;
  float *g = golden(gold, &n);
  if (!g) return;
  CHECK_MSG(n == n_expected, "%s: %zu golden values, %zu computed", what, n, n_expected);
  if (n == n_expected) {
    double e = af_nerr(got, g, n);
    printf("  %-8s normalised error %.3g (tolerance %.0e)\n", what, e, tol);
    CHECK_MSG(e <= tol, "%s: %g > %g", what, e, tol);
  }
  free(g);
}

static void run(af_cl *cl, const char *tmp, int type, double tol) {
  char out[1024];
  CHECK_OK(af_test_convert_tiny(tmp, type, out, sizeof out));
  printf("%s weights:\n", af_ggml_type_name(type));
  af_weights *w = NULL;
  af_vit *v = NULL;
  af_qformer *f = NULL;
  af_queue *q = NULL;
  CHECK_OK(af_weights_open(cl, out, &w));
  if (w) CHECK_OK(af_vit_new(cl, w, 3, &v));
  if (v) CHECK_OK(af_qformer_new(cl, w, 3, af_vit_shape_of(v)->tokens, &f));
  CHECK_OK(af_queue_new(cl, &q));
  if (!v || !f || !q) goto out;
  const af_vit_shape *vs = af_vit_shape_of(v);
  const af_qformer_shape *qs = af_qformer_shape_of(f);
  size_t np, T = vs->tokens, W = vs->width, Q = qs->queries, D = qs->width, L = qs->proj_out;
  float *pix = golden("pixels.npy", &np);
  if (!pix) goto out;
  CHECK(np == 3u * vs->image_size * vs->image_size);
  /* batch of 3: the golden image, a scaled copy, the golden image again */
  float *pix3 = malloc(sizeof(float) * np * 3), *vit3 = malloc(sizeof(float) * 3 * T * W);
  float *q3 = malloc(sizeof(float) * 3 * Q * D), *p3 = malloc(sizeof(float) * 3 * Q * L);
  memcpy(pix3, pix, sizeof(float) * np);
  for (size_t i = 0; i < np; i++) pix3[np + i] = 0.5f * pix[i];
  memcpy(pix3 + 2 * np, pix, sizeof(float) * np);
  CHECK_OK(af_vit_encode(v, q, pix3, 3, vit3));
  check("vit", vit3, "vit.npy", T * W, tol);
  CHECK_OK(af_qformer_forward(f, q, vit3, 3, q3, p3));
  check("qformer", q3, "qformer.npy", Q * D, tol);
  check("proj", p3, "proj.npy", Q * L, tol);
  /* batch position must not matter: image 2 == image 0 bit for bit or nearly */
  CHECK(af_nerr(vit3 + 2 * T * W, vit3, T * W) < 1e-6);
  CHECK(af_nerr(p3 + 2 * Q * L, p3, Q * L) < 1e-6);
  /* batch 1 of the scaled image equals its slot in the batch of 3 */
  float *vit1 = malloc(sizeof(float) * T * W), *p1 = malloc(sizeof(float) * Q * L);
  CHECK_OK(af_vit_encode(v, q, pix3 + np, 1, vit1));
  CHECK_OK(af_qformer_forward(f, q, vit1, 1, NULL, p1));
  CHECK(af_nerr(vit1, vit3 + T * W, T * W) < 1e-6);
  CHECK(af_nerr(p1, p3 + Q * L, Q * L) < 1e-6);
  CHECK(af_vit_encode(v, q, pix3, 4, vit3) == AF_ERR_INVALID);
  af_error_clear();
  free(pix), free(pix3), free(vit3), free(q3), free(p3), free(vit1), free(p1);
out:
  af_queue_free(q);
  af_qformer_free(f);
  af_vit_free(v);
  af_weights_free(w);
}

/* 84-px input: the 4x4 position grid resized to 6x6 (original interpolate_pos_embed) */
static void run_resized(af_cl *cl, const char *tmp) {
  char out[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, out, sizeof out));
  af_weights *w = NULL;
  af_vit *v = NULL;
  af_queue *q = NULL;
  CHECK_OK(af_weights_open(cl, out, &w));
  if (w) CHECK_OK(af_vit_new_sized(cl, w, 1, 84, &v));
  CHECK_OK(af_queue_new(cl, &q));
  size_t np = 0;
  float *pix = golden("pixels84.npy", &np);
  if (v && q && pix) {
    const af_vit_shape *s = af_vit_shape_of(v);
    CHECK(s->image_size == 84 && s->tokens == 37 && np == 3u * 84 * 84);
    float *o = malloc(sizeof(float) * (size_t)s->tokens * s->width);
    CHECK_OK(af_vit_encode(v, q, pix, 1, o));
    printf("84 px (position grid 4x4 -> 6x6):\n");
    check("vit", o, "vit84.npy", (size_t)s->tokens * s->width, 1e-5);
    free(o);
  }
  if (w) {
    af_vit *bad = NULL;
    CHECK(af_vit_new_sized(cl, w, 1, 85, &bad) == AF_ERR_CONFIG); /* not a multiple of the patch */
    af_error_clear();
  }
  free(pix);
  af_queue_free(q);
  af_vit_free(v);
  af_weights_free(w);
}

/* The weight-storage policy of the profile on an f16 file: fp16 kept as fp16
 * (read in place by the tiled GEMM, or widened per call for CLBlast) must
 * give what the fp32 copy gives, with about half the device memory. */
static float *encode_with_profile(const char *tmp, const char *model, const char *name, const char *yaml,
                                  uint64_t *dev_bytes, size_t *n_out) {
  char prof[1024];
  snprintf(prof, sizeof prof, "%s/%s.yaml", tmp, name);
  FILE *pf = fopen(prof, "w");
  CHECK(pf != NULL);
  if (!pf) return NULL;
  fputs(yaml, pf);
  fclose(pf);
  setenv("ARTFLOW_PROFILE_FILE", prof, 1);
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  unsetenv("ARTFLOW_PROFILE_FILE");
  af_weights *w = NULL;
  af_vit *v = NULL;
  af_qformer *f = NULL;
  af_queue *q = NULL;
  float *pix = NULL, *vit = NULL, *proj = NULL;
  size_t np;
  if (!cl) return NULL;
  CHECK_OK(af_weights_open(cl, model, &w));
  if (w) CHECK_OK(af_vit_new(cl, w, 1, &v));
  if (v) CHECK_OK(af_qformer_new(cl, w, 1, af_vit_shape_of(v)->tokens, &f));
  CHECK_OK(af_queue_new(cl, &q));
  pix = golden("pixels.npy", &np);
  if (v && f && q && pix) {
    const af_vit_shape *vs = af_vit_shape_of(v);
    const af_qformer_shape *qs = af_qformer_shape_of(f);
    vit = malloc(sizeof(float) * vs->tokens * vs->width);
    *n_out = (size_t)qs->queries * qs->proj_out;
    proj = malloc(sizeof(float) * *n_out);
    CHECK_OK(af_vit_encode(v, q, pix, 1, vit));
    CHECK_OK(af_qformer_forward(f, q, vit, 1, NULL, proj));
    *dev_bytes = af_weights_device_bytes(w);
    printf("  profile %-13s device weights %llu bytes\n", name, (unsigned long long)*dev_bytes);
  }
  free(pix);
  free(vit);
  af_queue_free(q);
  af_qformer_free(f);
  af_vit_free(v);
  af_weights_free(w);
  af_cl_close(cl);
  return proj;
}

static void run_storage(const char *tmp) {
  char model[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F16, model, sizeof model));
  printf("f16 file, weight storage policies:\n");
  uint64_t b32 = 0, b16t = 0, b16c = 0;
  size_t n = 0;
  float *copy = encode_with_profile(tmp, model, "fp32-copy", "name: t1\nweights: fp32_copy\n", &b32, &n);
  float *tiled =
      encode_with_profile(tmp, model, "fp16-tiled",
                          "name: t2\nweights: fp16_storage\nkernels: {AF_GEMM_IMPL: tiled}\n", &b16t, &n);
  float *widen =
      encode_with_profile(tmp, model, "fp16-widen", "name: t3\nweights: fp16_storage\n", &b16c, &n);
  if (copy && tiled && widen) {
    double et = af_nerr(tiled, copy, n), ew = af_nerr(widen, copy, n);
    printf("  proj vs fp32 copy: fp16 in place %.3g, fp16 widened %.3g (tolerance 1e-5)\n", et, ew);
    CHECK(et <= 1e-5 && ew <= 1e-5);
    check("proj", tiled, "proj.npy", n, 5e-3);
    /* only the ViT's matrices are fp16 in the file (the Q-Former and the
     * projection stay fp32, as the original runs them): fp16 storage needs
     * under 80 % of the fp32 copy on the tiny model (measured 73 %) */
    CHECK_MSG(b16t < b32 * 8 / 10 && b16c == b16t, "device bytes: fp32 %llu, fp16 %llu / %llu",
              (unsigned long long)b32, (unsigned long long)b16t, (unsigned long long)b16c);
  }
  free(copy), free(tiled), free(widen);
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl || !tmp) return af_test_done("test_vision");
  run(cl, tmp, AF_GGML_F32, 1e-5);
  run(cl, tmp, AF_GGML_F16, 5e-3);
  run_resized(cl, tmp);
  af_cl_close(cl);
  run_storage(tmp);
  return af_test_done("test_vision");
}
