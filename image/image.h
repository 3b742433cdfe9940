/* Image ingest library behind the `decode` and `preprocess` stages:
 *  - af_image_decode: any file libvips loads -> 8-bit RGB, converted the way
 *    Pillow 9.4's Image.open(p).convert('RGB') does (see image/decode.c);
 *  - af_image_resize_bicubic: Pillow's BICUBIC resize of uint8 images,
 *    bit-exact (see image/resample.c);
 *  - af_image_normalize_*: /255 and per-channel mean/std into float32 CHW,
 *    on the host or as an OpenCL kernel (cl/kernels/preprocess.cl), both giving
 *    the same bits as torchvision's ToTensor + Normalize in float32. */
#ifndef AF_IMAGE_IMAGE_H
#define AF_IMAGE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct af_queue;

/* Interleaved RGB, 3 bytes per pixel, rows packed (stride = 3*w). */
typedef struct af_image_u8 {
  int w, h;
  uint8_t *data; /* malloc'd; owned by whoever holds the struct */
} af_image_u8;

/* How strictly broken files are rejected (libvips' fail_on levels). */
typedef enum af_fail_on {
  AF_FAIL_ON_NONE = 0,      /* decode whatever can be decoded */
  AF_FAIL_ON_TRUNCATED = 1, /* reject truncated files */
  AF_FAIL_ON_ERROR = 2,     /* also reject decoder errors (default) */
  AF_FAIL_ON_WARNING = 3,   /* also reject anything the decoder warns about */
} af_fail_on;

#define AF_IMAGE_DEFAULT_MAX_PIXELS 100000000LL

typedef struct af_decode_opts {
  int64_t max_pixels; /* width*height limit; 0 = default (100 MP), < 0 = none */
  af_fail_on fail_on;
  /* > 0: give up on a file whose decode has not finished after this many
   * seconds (a stuck read on a network mount, a pathological file): the call
   * returns AF_ERR_IO and the decode goes on, abandoned, on a helper thread
   * that frees what it holds when it ends.  While AF_DECODE_MAX_STUCK such
   * helpers are still running, further calls fail at once (the storage is
   * unresponsive).  0 = no deadline (decode on the calling thread). */
  double deadline_s;
} af_decode_opts;

#define AF_DECODE_MAX_STUCK 8

/* Warnings libvips gave while decoding one file (e.g. "Premature end of JPEG
 * file" under fail_on none), "; "-separated, for the item's record. */
typedef struct af_decode_notes {
  int n;
  char text[1024];
} af_decode_notes;

/* Initialises libvips once per process (thread-safe, idempotent).  0, or
 * AF_ERR_UNSUPPORTED when libvips cannot start.  af_image_decode calls it. */
int af_image_init(void);

/* Decodes the first frame/page of `path` into 8-bit RGB (out->data malloc'd,
 * caller frees with af_image_free).  `o` may be NULL (defaults).
 * Errors (one line, "PATH: cause", through af_err):
 *   AF_ERR_IO          missing file, permission denied, a folder, read error
 *   AF_ERR_FORMAT      empty file, unrecognised bytes, corrupt or truncated data
 *   AF_ERR_RANGE       width*height over the pixel limit (checked from the
 *                      header, before any pixel is decoded)
 *   AF_ERR_UNSUPPORTED an image layout we cannot convert
 * On failure *out is zeroed. */
int af_image_decode(const char *path, const af_decode_opts *o, af_image_u8 *out);
/* The same, with libvips' warnings for this file collected into *notes
 * (af_image_decode logs them to stderr with the path instead).  Special
 * files (FIFOs, devices, sockets) are refused without being opened. */
int af_image_decode_notes(const char *path, const af_decode_opts *o, af_image_u8 *out,
                          af_decode_notes *notes);
/* Helpers abandoned at their deadline that are still running. */
int af_image_decode_stuck(void);
void af_image_free(af_image_u8 *im);

/* Pillow BICUBIC resize (a = -0.5, antialiased when shrinking, fixed point with
 * 22 fractional bits, horizontal pass then vertical pass with a clamped uint8
 * intermediate).  src is sw x sh x 3, dst is dw x dh x 3 (caller-allocated).
 * 0, AF_ERR_INVALID (sizes) or AF_ERR_NOMEM. */
int af_image_resize_bicubic(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);

/* Table lut[c*256 + v] = ((float)v / 255 - mean[c]) / std[c] in float32,
 * the exact values torchvision's ToTensor + Normalize produce. */
void af_image_norm_lut(const float mean[3], const float std[3], float lut[3 * 256]);

/* Host reference: n_pix interleaved RGB pixels -> float32 planes out[3][n_pix]. */
void af_image_normalize_ref(const uint8_t *rgb, size_t n_pix, const float lut[3 * 256], float *out);

/* Same on an OpenCL device through queue q (kernel af_preprocess_normalize in
 * cl/kernels/preprocess.cl): n_img images of n_pix pixels each, packed, to
 * n_img x [3][n_pix] floats.  Bit-identical to the host version (a table
 * look-up, no device arithmetic).  0 or a CL / artflow status. */
int af_image_normalize_cl(struct af_queue *q, const uint8_t *rgb, int n_img, size_t n_pix,
                          const float lut[3 * 256], float *out);

/* The same with its device buffers made once, for batches of up to max_img
 * images of n_pix pixels on queue q (the preprocess stage's prepare()):
 * af_normalizer_run then allocates nothing.  Free with af_normalizer_free. */
typedef struct af_normalizer af_normalizer;
int af_normalizer_new(struct af_queue *q, int max_img, size_t n_pix, const float lut[3 * 256],
                      af_normalizer **out);
int af_normalizer_run(af_normalizer *d, const uint8_t *rgb, int n_img, float *out);
void af_normalizer_free(af_normalizer *d);

/* OpenAI CLIP normalisation constants (docs/model.md §2). */
extern const float af_clip_mean[3];
extern const float af_clip_std[3];

#ifdef __cplusplus
}
#endif
#endif
