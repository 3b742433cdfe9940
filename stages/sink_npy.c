/* `npy` sink: one NumPy .npy file per item and selected tensor, named
 *   <path>/<safe id>.<tensor>.npy
 * where the safe id keeps [A-Za-z0-9._-], turns every other byte into '_'
 * and, when it changed anything, appends '-' and 8 hex digits of a hash of
 * the real id so "a/b.jpg" and "a_b.jpg" never collide.  An id too long for
 * NAME_MAX (255 bytes, with the tensor name and the temporary suffix) keeps
 * a prefix and gets 32 hex digits of its SHA-256 instead; the records of the
 * other sinks keep the full id.  Files are written through a temporary name
 * and rename(2): whole or absent, and rewriting one after a resume gives the
 * same bytes.  Error items write nothing.  A file the item itself cannot
 * have (e.g. a name the file system refuses) fails that item, which the
 * sinks after this one record as an error; a full disk or an I/O error
 * stops the run. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/npy.h"

typedef struct npy_config {
  char *path;
  af_strlist tensors;
  int fsync;
} npy_config;

typedef struct npy_sink {
  const npy_config *cfg;
} npy_sink;

void af_npy_safe_name(const char *id, char *out, size_t n) {
  size_t o = 0, len = strlen(id), room = n - 10; /* leave space for "-XXXXXXXX" */
  int changed = 0;
  if (len + 10 > n) {
    /* too long for the name: a prefix, then 32 hex digits (128 bits) of the
     * id's SHA-256, so ids that share their first couple of hundred bytes
     * still get different files */
    char hex[65];
    af_sha256_hex(id, len, hex);
    size_t keep = n - 1 - 33;
    for (size_t i = 0; i < keep && id[i]; i++) {
      unsigned char c = (unsigned char)id[i];
      int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
      out[o] = ok && !(o == 0 && c == '.') ? (char)c : '_';
      o++;
    }
    snprintf(out + o, n - o, "-%.32s", hex);
    return;
  }
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
    h = (h ^ *p) * 16777619u;
    int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               *p == '.' || *p == '_' || *p == '-';
    if (o == 0 && *p == '.') keep = 0; /* no hidden files, no ".." */
    if (!keep) changed = 1;
    if (o + 1 < room)
      out[o++] = keep ? (char)*p : '_';
    else
      changed = 1;
  }
  if (o == 0) changed = 1;
  out[o] = 0;
  if (changed) snprintf(out + o, n - o, "-%08x", h);
}

static int npy_create(const af_stage_ctx *ctx, const void *config, void **self) {
  npy_sink *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = config;
  /* every file name fits NAME_MAX; the folder must leave room for one */
  size_t len = strlen(s->cfg->path);
  if (len + 1 + NAME_MAX >= PATH_MAX)
    return af_err(AF_ERR_CONFIG,
                  "npy: output folder path is %zu bytes; with file names of up to %d bytes it "
                  "must stay under %d (PATH_MAX)",
                  len, NAME_MAX, PATH_MAX - 1 - NAME_MAX);
  return af_mkdirs(s->cfg->path);
}

/* I/O failures that are the output's (full disk, quota, read-only or broken
 * file system) stop the run; any other failure is the item's own. */
static int output_failure(int e) {
  return e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == ENOMEM || e == EMFILE || e == ENFILE;
}

static int selected(const npy_config *c, const char *name) {
  if (c->tensors.n == 0) return 1;
  for (int i = 0; i < c->tensors.n; i++)
    if (!strcmp(c->tensors.v[i], name)) return 1;
  return 0;
}

static af_flow npy_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  npy_sink *s = self;
  char safe[NAME_MAX + 1];
  for (int k = 0; k < n; k++) {
    af_item *it = items[k];
    if (it->status != AF_ITEM_OK) continue;
    for (int i = 0; i < it->n_tensors && it->status == AF_ITEM_OK; i++) {
      const af_tensor *t = &it->tensors[i];
      if (!selected(s->cfg, t->name)) continue;
      /* "<safe id>.<tensor>.npy" and af_npy_write's ".tmp.XXXXXX" within NAME_MAX */
      size_t fixed = 1 + strlen(t->name) + 4 + 11;
      if (fixed + 48 > NAME_MAX) {
        af_item_fail(it, ctx->instance, "%s: tensor name '%.40s...' too long for a file name", it->id,
                     t->name);
        break;
      }
      af_npy_safe_name(it->id, safe, NAME_MAX + 1 - fixed);
      size_t len = strlen(s->cfg->path) + strlen(safe) + strlen(t->name) + 8;
      char *file = malloc(len);
      if (!file) {
        af_err(AF_ERR_NOMEM, "out of memory");
        return AF_FLOW_ERROR;
      }
      snprintf(file, len, "%s/%s.%s.npy", s->cfg->path, safe, t->name);
      errno = 0;
      int rc = af_npy_write(file, t->dtype, t->ndim, t->shape, t->data, s->cfg->fsync == AF_FSYNC_BATCH);
      int e = errno;
      free(file);
      if (!rc) continue;
      if (rc == AF_ERR_NOMEM || (rc == AF_ERR_IO && output_failure(e))) return AF_FLOW_ERROR;
      /* this item's doing (its name, its data): its error record, not the run's end */
      af_item_fail(it, ctx->instance, "%s", af_error_message());
      af_error_clear();
    }
  }
  return AF_FLOW_OK;
}

static void npy_destroy(void *self) {
  free(self);
}

static const af_param npy_params[] = {
    {"path", AF_PARAM_STRING, offsetof(npy_config, path), NULL, 0, 0, NULL,
     "output folder (relative to the pipeline file), created if missing", AF_PARAM_REQUIRED | AF_PARAM_PATH},
    {"tensors", AF_PARAM_STRLIST, offsetof(npy_config, tensors), NULL, 0, 0, NULL,
     "tensors to write (default: every tensor of the item)", 0},
    {"fsync", AF_PARAM_ENUM, offsetof(npy_config, fsync), "none", 0, 0, AF_FSYNC_CHOICES,
     "batch: fsync every file before its rename", AF_PARAM_RUNTIME},
};

const af_stage_desc af_stage_npy = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "npy",
    .doc = "one .npy file (NumPy 1.0, little-endian, C order) per item and tensor",
    .kind = AF_STAGE_SINK,
    .params = npy_params,
    .n_params = AF_ARRAY_LEN(npy_params),
    .config_size = sizeof(npy_config),
    .batch_size = 8,
    .create = npy_create,
    .process = npy_process,
    .destroy = npy_destroy,
};
