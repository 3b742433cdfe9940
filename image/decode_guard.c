/* What protects decoding from hostile and stuck files (image.h):
 *  - libvips starts with its untrusted loaders blocked, as libvips advises
 *    for untrusted input (ImageMagick, PDF, SVG, FITS, Matlab, OpenSlide,
 *    JPEG 2000, JPEG XL, ...), and only two are let back in: PPM (a trivial
 *    format the product has always read) and ImageMagick's file loader, which
 *    decode.c calls for files that start with a GIF signature only, with the
 *    GIF coder forced ("GIF:path"), for Pillow's transparent-pixel colours;
 *  - libvips warnings (g_log domain "VIPS") are attributed to the file being
 *    decoded: collected into its af_decode_notes, or logged with its path;
 *  - a PNG that fails gets its chunks' CRCs checked, so a damaged file says
 *    "bad CRC in chunk 'IDAT'" instead of "libpng read error";
 *  - a per-file deadline: the decode runs on a helper thread, and a result
 *    that does not come in time becomes the item's error while the helper is
 *    abandoned (it ends on its own and frees what it holds).
 * Why a thread and not a read timeout: libvips opens and reads the file
 * itself, and a stuck network mount blocks in open() or read() where no
 * timeout reaches; only the caller can stop waiting. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vips/vips.h>
#include <zlib.h>

#include "artflow/status.h"
#include "image/guard.h"
#include "image/image.h"

/* ------------------------------------------------------------ loaders */

void af_image_vips_policy_before_init(void) {
#if !(VIPS_MAJOR_VERSION > 8 || (VIPS_MAJOR_VERSION == 8 && VIPS_MINOR_VERSION >= 13))
  /* libvips < 8.13 has no call for it; its environment switch (read at
   * VIPS_INIT) blocks every untrusted loader, PPM and ImageMagick included */
  setenv("VIPS_BLOCK_UNTRUSTED", "1", 0);
#endif
}

void af_image_vips_policy_after_init(void) {
#if VIPS_MAJOR_VERSION > 8 || (VIPS_MAJOR_VERSION == 8 && VIPS_MINOR_VERSION >= 13)
  vips_block_untrusted_set(TRUE);
  vips_operation_block_set("VipsForeignLoadPpm", FALSE);
  vips_operation_block_set("VipsForeignLoadMagickFile", FALSE);
#endif
}

/* ------------------------------------------------------------ warnings */

/* Decodes in progress, to attribute libvips' warnings: libvips logs them
 * from its own worker threads, so a thread-local pointer would miss them. */
typedef struct active {
  const char *path;
  af_decode_notes *notes;
  struct active *next;
} active;

static pthread_mutex_t warn_mu = PTHREAD_MUTEX_INITIALIZER;
static active *actives;

static void note_add(af_decode_notes *n, const char *msg) {
  size_t o = strlen(n->text);
  if (o + 4 >= sizeof n->text) return;
  snprintf(n->text + o, sizeof n->text - o, "%s%s", o ? "; " : "", msg);
  for (char *p = n->text + o; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  n->n++;
}

static void on_vips_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer user) {
  (void)domain, (void)level, (void)user;
  pthread_mutex_lock(&warn_mu);
  int n = 0;
  for (active *a = actives; a; a = a->next) n++;
  if (n == 0) {
    fprintf(stderr, "artflow: libvips warning: %s\n", msg);
  } else {
    for (active *a = actives; a; a = a->next) {
      char one[600];
      /* with several decodes at once the culprit is one of them: say so */
      if (n > 1)
        snprintf(one, sizeof one, "%s (while %d files were decoding)", msg, n);
      else
        snprintf(one, sizeof one, "%s", msg);
      if (a->notes)
        note_add(a->notes, one);
      else
        fprintf(stderr, "artflow: %s: libvips warning: %s\n", a->path, one);
    }
  }
  pthread_mutex_unlock(&warn_mu);
}

void af_image_vips_log_install(void) {
  g_log_set_handler("VIPS",
                    G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION,
                    on_vips_log, NULL);
}

void *af_image_warnings_begin(const char *path, af_decode_notes *notes) {
  active *a = malloc(sizeof *a);
  if (!a) return NULL;
  *a = (active){path, notes, NULL};
  pthread_mutex_lock(&warn_mu);
  a->next = actives;
  actives = a;
  pthread_mutex_unlock(&warn_mu);
  return a;
}

void af_image_warnings_end(void *token) {
  if (!token) return;
  pthread_mutex_lock(&warn_mu);
  for (active **p = &actives; *p; p = &(*p)->next)
    if (*p == token) {
      *p = ((active *)token)->next;
      break;
    }
  pthread_mutex_unlock(&warn_mu);
  free(token);
}

/* ------------------------------------------------------------ PNG CRCs */

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int af_image_png_diagnose(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  unsigned char sig[8], head[8];
  int rc = 0;
  if (fread(sig, 1, 8, f) != 8 || memcmp(sig, "\x89PNG\r\n\x1a\n", 8)) goto out;
  unsigned char *buf = NULL;
  size_t cap = 0;
  for (long off = 8;; off += 12) {
    if (fread(head, 1, 8, f) != 8) break; /* the end, or truncation libvips reports itself */
    uint32_t len = be32(head);
    char type[5] = {0};
    memcpy(type, head + 4, 4);
    for (int i = 0; i < 4; i++)
      if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z'))) {
        rc = af_err(AF_ERR_FORMAT, "%s: PNG chunk at offset %ld has no valid type (corrupt file)", path, off);
        goto done;
      }
    if (len > 0x7fffffffu) {
      rc = af_err(AF_ERR_FORMAT, "%s: PNG chunk '%s' at offset %ld claims %u bytes (corrupt file)", path,
                  type, off, len);
      goto done;
    }
    uLong crc = crc32(0L, head + 4, 4);
    for (uint32_t left = len; left > 0;) {
      size_t k = left < 65536 ? left : 65536;
      if (cap < k && !(buf = realloc(buf, cap = 65536))) goto done;
      if (fread(buf, 1, k, f) != k) goto done; /* truncated: libvips' own message says so */
      crc = crc32(crc, buf, (uInt)k);
      left -= (uint32_t)k;
    }
    unsigned char stored[4];
    if (fread(stored, 1, 4, f) != 4) goto done;
    if (be32(stored) != (uint32_t)crc) {
      rc = af_err(AF_ERR_FORMAT, "%s: bad CRC in PNG chunk '%s' at offset %ld (stored %08x, computed %08x)",
                  path, type, off, be32(stored), (uint32_t)crc);
      goto done;
    }
    off += len;
    if (!strcmp(type, "IEND")) break;
  }
done:
  free(buf);
out:
  fclose(f);
  return rc;
}

/* ------------------------------------------------------------ deadline */

/* The decode's state, shared by the caller and the helper; whoever lets go
 * last frees it (an abandoned helper may end hours later). */
typedef struct job {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs, done, abandoned;
  char *path;
  af_decode_opts o;
  af_image_u8 im;
  af_decode_notes notes;
  int rc;
  char msg[1024];
} job;

static atomic_int stuck; /* helpers abandoned and still running */

static void job_release(job *j) {
  pthread_mutex_lock(&j->mu);
  int last = --j->refs == 0;
  pthread_mutex_unlock(&j->mu);
  if (!last) return;
  af_image_free(&j->im);
  free(j->path);
  pthread_mutex_destroy(&j->mu);
  pthread_cond_destroy(&j->cv);
  free(j);
}

static void *helper(void *arg) {
  job *j = arg;
  j->rc = af_image_decode_now(j->path, &j->o, &j->im, &j->notes);
  snprintf(j->msg, sizeof j->msg, "%s", af_error_message());
  af_error_clear();
  vips_thread_shutdown();
  pthread_mutex_lock(&j->mu);
  j->done = 1;
  if (j->abandoned) atomic_fetch_sub(&stuck, 1); /* the caller gave up on it */
  pthread_cond_signal(&j->cv);
  pthread_mutex_unlock(&j->mu);
  job_release(j);
  return NULL;
}

int af_image_decode_stuck(void) {
  return atomic_load(&stuck);
}

int af_image_decode_within(const char *path, const af_decode_opts *o, af_image_u8 *out,
                           af_decode_notes *notes) {
  memset(out, 0, sizeof *out);
  int n_stuck = atomic_load(&stuck);
  if (n_stuck >= AF_DECODE_MAX_STUCK)
    return af_err(AF_ERR_IO,
                  "%s: not decoded: %d earlier decodes are still stuck past their deadline (the storage "
                  "seems unresponsive)",
                  path, n_stuck);
  job *j = calloc(1, sizeof *j);
  if (!j || !(j->path = strdup(path))) {
    free(j);
    return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  }
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
  j->o = *o;
  j->refs = 2;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int e = pthread_create(&t, &attr, helper, j);
  pthread_attr_destroy(&attr);
  if (e) {
    j->refs = 1;
    job_release(j);
    return af_err(AF_ERR_NOMEM, "%s: cannot start a decode thread: %s", path, strerror(e));
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double whole = (double)(time_t)o->deadline_s;
  ts.tv_sec += (time_t)whole;
  ts.tv_nsec += (long)((o->deadline_s - whole) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&j->mu);
  while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &ts) != ETIMEDOUT) {
  }
  int rc;
  if (j->done) {
    *out = j->im;
    memset(&j->im, 0, sizeof j->im);
    if (notes) *notes = j->notes;
    rc = j->rc ? af_err(j->rc, "%s", j->msg) : 0;
  } else {
    j->abandoned = 1;
    atomic_fetch_add(&stuck, 1);
    rc = af_err(AF_ERR_IO,
                "%s: no result within the %g s decode deadline (a stuck read on slow storage, or a file "
                "that takes too long to decode); abandoned",
                path, o->deadline_s);
  }
  pthread_mutex_unlock(&j->mu);
  job_release(j);
  return rc;
}
