/* Private to image/: the guards around libvips (decode_guard.c) that
 * decode.c calls.  Nothing outside image/ includes this file. */
#ifndef AF_IMAGE_GUARD_H
#define AF_IMAGE_GUARD_H

#include "image/image.h"

/* Loader policy, around VIPS_INIT: untrusted loaders blocked, PPM and the
 * ImageMagick file loader (used for GIF only) let back in. */
void af_image_vips_policy_before_init(void);
void af_image_vips_policy_after_init(void);
/* Routes libvips' g_log warnings to the decodes in progress. */
void af_image_vips_log_install(void);
/* Brackets one decode: warnings logged meanwhile go to `notes` (or to stderr
 * with `path` when notes is NULL).  Returns a token for _end (NULL is fine). */
void *af_image_warnings_begin(const char *path, af_decode_notes *notes);
void af_image_warnings_end(void *token);

/* For a PNG that failed to decode: checks every chunk's CRC and, at the first
 * bad one, records "PATH: bad CRC in PNG chunk 'IDAT' at offset N (stored X,
 * computed Y)" and returns AF_ERR_FORMAT; 0 when the chunks look whole (or the
 * file is not a PNG). */
int af_image_png_diagnose(const char *path);

/* The decode itself (file checks included), on the calling thread, no
 * deadline. */
int af_image_decode_now(const char *path, const af_decode_opts *o, af_image_u8 *out, af_decode_notes *notes);
/* The decode on a helper thread, waiting at most o->deadline_s seconds. */
int af_image_decode_within(const char *path, const af_decode_opts *o, af_image_u8 *out,
                           af_decode_notes *notes);

#endif
