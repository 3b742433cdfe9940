/* Image decoding with libvips into 8-bit RGB, matching what Pillow 9.4 gives
 * for Image.open(path).convert('RGB') (the reference code path).  Measured
 * against Debian's python3-pil 9.4.0 (tests/data/image/make_fixtures.py):
 *  - 8-bit gray (and 1-bit): the gray value replicated into R, G, B;
 *  - alpha is dropped, NOT composited (gray+alpha keeps the gray, RGBA keeps
 *    RGB, palette entries keep their colour whatever their transparency);
 *  - 16-bit gray PNG: Pillow opens it as 32-bit integer mode "I" and converts
 *    by clamping, so every value above 255 becomes 255 (not v >> 8!);
 *  - 16-bit RGB, RGBA and gray+alpha: Pillow keeps the high byte (v >> 8);
 *  - CMYK (JPEG with the Adobe inversion undone by the decoder, TIFF):
 *    R = (255 - C) * (255 - K) / 255 rounded (Pillow's integer MULDIV255),
 *    likewise G from M and B from Y; ICC profiles are ignored, as Pillow does;
 *  - no EXIF auto-rotation (Pillow's open() does not rotate either);
 *  - the first frame of animations and the first page of multi-page files;
 *  - GIF goes through ImageMagick when libvips has it: libvips' own GIF
 *    loader zeroes transparent pixels, Pillow keeps their palette colour.
 * JPEG pixels come from libjpeg(-turbo) with default settings in both, so
 * they agree too.  No shrink-on-load: a JPEG DCT-domain shrink changes pixels
 * by far more than the ±1 budget of the resize golden test.
 *
 * Loaders: libvips' trusted raster loaders (jpeg, png, webp, tiff, gif,
 * heif/avif) and ppm; ImageMagick only for files with a GIF signature, with
 * its GIF coder forced.  Everything libvips marks untrusted (ImageMagick's
 * other formats such as BMP, jpeg2000, jpeg-xl, pdf, svg, fits, matrix, ...)
 * is blocked at libvips' level and refused here by name (decode_guard.c). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "artflow/status.h"
#include "image/guard.h"
#include "image/image.h"

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_init_rc;

static void vips_start(void) {
  af_image_vips_policy_before_init();
  if (VIPS_INIT("artflow")) {
    vips_init_rc = -1;
    return;
  }
  af_image_vips_policy_after_init();
  af_image_vips_log_install();
  /* The operation cache keys loads by file name: a file rewritten between two
   * runs in one process would come back stale.  Decoding never repeats. */
  vips_cache_set_max(0);
}

int af_image_init(void) {
  pthread_once(&vips_once, vips_start);
  if (vips_init_rc) return af_err(AF_ERR_UNSUPPORTED, "libvips failed to start: %s", vips_error_buffer());
  return 0;
}

void af_image_free(af_image_u8 *im) {
  if (!im) return;
  free(im->data);
  im->data = NULL;
  im->w = im->h = 0;
}

/* libvips' accumulated error text as one line (and the buffer cleared).  The
 * buffer is process-wide: concurrent decoders may see each other's text, so
 * callers always prefix their own cause. */
static void vips_reason(char *buf, size_t n) {
  char *msg = vips_error_buffer_copy();
  size_t o = 0;
  for (const char *p = msg ? msg : ""; *p && o + 2 < n; p++) {
    if (*p == '\n') {
      if (p[1]) buf[o++] = ';', buf[o++] = ' ';
    } else {
      buf[o++] = *p;
    }
  }
  buf[o] = 0;
  if (!o) snprintf(buf, n, "unknown libvips error");
  g_free(msg);
}

/* `loader` is a type name ("VipsForeignLoadJpegFile") or a nickname
 * ("jpegload"): match the format part case-insensitively. */
static int loader_allowed(const char *loader) {
  static const char *const ok[] = {"jpeg", "png", "webp", "tiff", "gif", "heif", "ppm"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (strcasestr(loader, ok[i])) return 1;
  return 0;
}

static int is_image_ext(const char *ext) {
  static const char *const exts[] = {"jpg",  "jpeg", "jpe",  "png",  "gif", "webp", "tif",
                                     "tiff", "heic", "heif", "avif", "jp2", "j2k",  "jxl",
                                     "bmp",  "ppm",  "pgm",  "pbm",  "pnm"};
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
    if (!strcasecmp(ext, exts[i])) return 1;
  return 0;
}

/* File-level checks first, so the common failures get a precise reason.
 * Nothing here opens the file: opening a FIFO for reading blocks until a
 * writer comes (forever, in a collection), opening a device can have
 * effects, and an open that blocks on stuck storage belongs inside the
 * decode deadline (decode_guard.c), where libvips does it. */
static int check_file(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    int e = errno;
    if (e == ENOENT) return af_err(AF_ERR_IO, "%s: no such file", path);
    if (e == EACCES || e == EPERM) return af_err(AF_ERR_IO, "%s: permission denied", path);
    return af_err(AF_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) return af_err(AF_ERR_IO, "%s: is a folder, not an image file", path);
  if (!S_ISREG(st.st_mode)) {
    const char *what = S_ISFIFO(st.st_mode)   ? "a FIFO"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "a special file";
    return af_err(AF_ERR_IO, "%s: not a regular file (%s)", path, what);
  }
  if (access(path, R_OK) != 0) {
    int e = errno;
    if (e == EACCES || e == EPERM) return af_err(AF_ERR_IO, "%s: permission denied", path);
    return af_err(AF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
  }
  if (st.st_size == 0) return af_err(AF_ERR_FORMAT, "%s: empty file (0 bytes)", path);
  return 0;
}

static inline uint8_t muldiv255(int a, int b) {
  int t = a * b + 128;
  return (uint8_t)(((t >> 8) + t) >> 8);
}

/* Native pixels (fmt UCHAR or USHORT, `bands` interleaved) -> RGB. */
static void to_rgb(const void *src, VipsBandFormat fmt, int bands, int cmyk, size_t n, uint8_t *rgb) {
  if (fmt == VIPS_FORMAT_USHORT) {
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++, s += bands, rgb += 3) {
      if (cmyk) {
        int k = 255 - (s[3] >> 8);
        rgb[0] = muldiv255(255 - (s[0] >> 8), k);
        rgb[1] = muldiv255(255 - (s[1] >> 8), k);
        rgb[2] = muldiv255(255 - (s[2] >> 8), k);
      } else if (bands == 1) {
        uint8_t v = s[0] > 255 ? 255 : (uint8_t)s[0]; /* Pillow mode "I" clamps */
        rgb[0] = rgb[1] = rgb[2] = v;
      } else if (bands == 2) {
        rgb[0] = rgb[1] = rgb[2] = (uint8_t)(s[0] >> 8);
      } else {
        rgb[0] = (uint8_t)(s[0] >> 8), rgb[1] = (uint8_t)(s[1] >> 8), rgb[2] = (uint8_t)(s[2] >> 8);
      }
    }
    return;
  }
  const uint8_t *s = src;
  for (size_t i = 0; i < n; i++, s += bands, rgb += 3) {
    if (cmyk) {
      int k = 255 - s[3];
      rgb[0] = muldiv255(255 - s[0], k);
      rgb[1] = muldiv255(255 - s[1], k);
      rgb[2] = muldiv255(255 - s[2], k);
    } else if (bands < 3) {
      rgb[0] = rgb[1] = rgb[2] = s[0];
    } else {
      rgb[0] = s[0], rgb[1] = s[1], rgb[2] = s[2];
    }
  }
}

static int is_colour_space(VipsInterpretation t) {
  switch (t) {
    case VIPS_INTERPRETATION_LAB:
    case VIPS_INTERPRETATION_LABQ:
    case VIPS_INTERPRETATION_LABS:
    case VIPS_INTERPRETATION_LCH:
    case VIPS_INTERPRETATION_CMC:
    case VIPS_INTERPRETATION_XYZ:
    case VIPS_INTERPRETATION_YXY:
    case VIPS_INTERPRETATION_scRGB:
    case VIPS_INTERPRETATION_HSV:
      return 1;
    default:
      return 0;
  }
}

int af_image_decode(const char *path, const af_decode_opts *o, af_image_u8 *out) {
  return af_image_decode_notes(path, o, out, NULL);
}

int af_image_decode_notes(const char *path, const af_decode_opts *o, af_image_u8 *out,
                          af_decode_notes *notes) {
  memset(out, 0, sizeof *out);
  if (notes) memset(notes, 0, sizeof *notes);
  int rc = af_image_init();
  if (rc) return rc;
  if (!path || !*path) return af_err(AF_ERR_INVALID, "decode: empty path");
  /* with a deadline even stat() runs on the helper: it blocks on a hung mount */
  if (o && o->deadline_s > 0) return af_image_decode_within(path, o, out, notes);
  return af_image_decode_now(path, o, out, notes);
}

static int decode_vips(const char *path, const af_decode_opts *o, af_image_u8 *out);

int af_image_decode_now(const char *path, const af_decode_opts *o, af_image_u8 *out, af_decode_notes *notes) {
  int rc = check_file(path);
  if (rc) return rc;
  af_decode_notes mine = {0};
  void *w = af_image_warnings_begin(path, &mine);
  rc = decode_vips(path, o, out);
  af_image_warnings_end(w);
  if (notes)
    *notes = mine;
  else if (mine.n)
    fprintf(stderr, "artflow: %s: libvips warning: %s\n", path, mine.text);
  /* libvips' worker threads report a region that failed to decode as a
   * warning ("error in tile 0 x 0"), and the write can still return success
   * (a PNG with a bad IDAT CRC does, now and then): unless fail_on none asks
   * for whatever decodes, that is a corrupt file */
  if (!rc && (!o || o->fail_on != AF_FAIL_ON_NONE) && strstr(mine.text, "error in tile") &&
      !strstr(mine.text, "files were decoding")) {
    af_image_free(out);
    rc = af_err(AF_ERR_FORMAT, "%s: corrupt or truncated image data: %s", path, mine.text);
  }
  /* a PNG whose chunks are damaged says which one, not "libpng read error" */
  if (rc == AF_ERR_FORMAT) {
    char msg[700];
    snprintf(msg, sizeof msg, "%s", af_error_message());
    af_error_clear();
    if (!af_image_png_diagnose(path)) af_err(rc, "%s", msg);
  }
  return rc;
}

static int decode_vips(const char *path, const af_decode_opts *o, af_image_u8 *out) {
  int rc = 0;

  int64_t limit = o ? o->max_pixels : 0;
  if (limit == 0) limit = AF_IMAGE_DEFAULT_MAX_PIXELS;
  VipsFailOn fail = VIPS_FAIL_ON_ERROR;
  if (o) {
    static const VipsFailOn map[] = {VIPS_FAIL_ON_NONE, VIPS_FAIL_ON_TRUNCATED, VIPS_FAIL_ON_ERROR,
                                     VIPS_FAIL_ON_WARNING};
    if ((unsigned)o->fail_on < 4u) fail = map[o->fail_on];
  }

  char why[512];
  const char *loader = vips_foreign_find_load(path);
  if (!loader) {
    vips_error_clear();
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/') && is_image_ext(dot + 1))
      return af_err(AF_ERR_FORMAT,
                    "%s: not a recognised image: the bytes are not %s data (nor any "
                    "format libvips loads)",
                    path, dot + 1);
    return af_err(AF_ERR_FORMAT, "%s: not a recognised image format", path);
  }
  if (!loader_allowed(loader)) {
    /* "VipsForeignLoadSvgFile" -> "svg" */
    char fmt_name[32] = "";
    const char *p = strncmp(loader, "VipsForeignLoad", 15) ? loader : loader + 15;
    size_t k = 0;
    for (; p[k] && k + 1 < sizeof fmt_name; k++) fmt_name[k] = (char)tolower((unsigned char)p[k]);
    fmt_name[k] = 0;
    char *tail = strstr(fmt_name, "file");
    if (tail && tail != fmt_name && !tail[4]) *tail = 0;
    return af_err(AF_ERR_UNSUPPORTED,
                  "%s: unsupported format '%s' (decoded: JPEG, PNG, WebP, TIFF, GIF, HEIF/AVIF, PPM; "
                  "libvips' loaders for untrusted input are blocked)",
                  path, fmt_name);
  }

  VipsImage *img = NULL;
  if (strcasestr(loader, "gif") && vips_type_find("VipsOperation", "magickload")) {
    /* libvips' own GIF loader blanks transparent pixels to 0; Pillow (and
     * ImageMagick) keep the palette colour there, and alpha is dropped.
     * libvips found a GIF signature; "GIF:" makes ImageMagick use its GIF
     * coder and nothing else, whatever the name holds. */
    size_t pl = strlen(path) + 5;
    char *forced = malloc(pl);
    if (!forced) return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
    snprintf(forced, pl, "GIF:%s", path);
    if (vips_magickload(forced, &img, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", fail, NULL)) img = NULL;
    free(forced);
  } else {
    img = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", fail, NULL);
  }
  VipsImage *tmp = NULL;
  void *buf = NULL;
  if (!img) {
    vips_reason(why, sizeof why);
    return af_err(AF_ERR_FORMAT, "%s: cannot read the image header: %s", path, why);
  }
  int w = vips_image_get_width(img), h = vips_image_get_height(img);
  if (limit > 0 && (int64_t)w * h > limit) {
    rc = af_err(AF_ERR_RANGE, "%s: %dx%d = %lld pixels (%.1f MP), over the limit of %lld (max_pixels)", path,
                w, h, (long long)w * h, (double)w * h / 1e6, (long long)limit);
    goto out;
  }
  VipsInterpretation interp = vips_image_get_interpretation(img);
  if (is_colour_space(interp)) {
    if (vips_colourspace(img, &tmp, VIPS_INTERPRETATION_sRGB, NULL)) goto vips_fail;
    g_object_unref(img);
    img = tmp, tmp = NULL;
  }
  VipsBandFormat fmt = vips_image_get_format(img);
  if (fmt != VIPS_FORMAT_UCHAR && fmt != VIPS_FORMAT_USHORT) {
    if (vips_cast(img, &tmp, VIPS_FORMAT_UCHAR, NULL)) goto vips_fail; /* clips to 0..255 */
    g_object_unref(img);
    img = tmp, tmp = NULL;
    fmt = VIPS_FORMAT_UCHAR;
  }
  int bands = vips_image_get_bands(img);
  int cmyk = vips_image_get_interpretation(img) == VIPS_INTERPRETATION_CMYK && bands >= 4;
  size_t size = 0;
  buf = vips_image_write_to_memory(img, &size);
  if (!buf) goto vips_fail;
  size_t n = (size_t)w * h;
  if (size != n * bands * (fmt == VIPS_FORMAT_USHORT ? 2 : 1)) {
    rc = af_err(AF_ERR_UNSUPPORTED, "%s: unexpected pixel layout (%d bands, %zu bytes)", path, bands, size);
    goto out;
  }
  if (fmt == VIPS_FORMAT_UCHAR && bands == 3 && !cmyk) {
    /* Already RGB: keep the buffer.  GLib >= 2.46 allocates with the system
     * malloc, so free() releases it. */
    out->data = buf;
    buf = NULL;
  } else {
    out->data = malloc(n * 3);
    if (!out->data) {
      rc = af_err(AF_ERR_NOMEM, "%s: out of memory for %dx%d RGB", path, w, h);
      goto out;
    }
    to_rgb(buf, fmt, bands, cmyk, n, out->data);
  }
  out->w = w;
  out->h = h;
  goto out;

vips_fail:
  vips_reason(why, sizeof why);
  rc = af_err(AF_ERR_FORMAT, "%s: corrupt or truncated image data: %s", path, why);
out:
  g_free(buf);
  if (tmp) g_object_unref(tmp);
  g_object_unref(img);
  return rc;
}
