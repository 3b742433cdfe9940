/* `checksum` stage: a 64-bit FNV-1a hash of each item's file bytes (or of a
 * named tensor's bytes) as the text output "checksum" (16 hex digits).
 * Small and CPU-only: it lets pipelines be tested and de-duplicated without
 * the image or model stages, and shows the whole stage contract in one page. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artflow/stage.h"
#include "artflow/status.h"

typedef struct checksum_config {
  char *tensor;      /* NULL: hash the source file */
  int64_t max_bytes; /* files larger than this fail the item */
} checksum_config;

typedef struct checksum_stage {
  const checksum_config *cfg;
  unsigned char *buf;
} checksum_stage;

#define CHUNK (1 << 16)

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static int cs_create(const af_stage_ctx *ctx, const void *config, void **self) {
  checksum_stage *s = calloc(1, sizeof *s);
  if (!s || !(s->buf = malloc(CHUNK))) {
    free(s);
    return af_err(AF_ERR_NOMEM, "checksum: out of memory");
  }
  s->cfg = config;
  *self = s;
  return 0;
}

/* Hashes one item; a failure marks the item, never the batch. */
static void hash_item(checksum_stage *s, const af_stage_ctx *ctx, af_item *it) {
  uint64_t h = 14695981039346656037ull;
  if (s->cfg->tensor) {
    const af_tensor *t = af_item_tensor(it, s->cfg->tensor);
    if (!t) {
      af_item_fail(it, ctx->instance, "%s: no tensor '%s'", it->id, s->cfg->tensor);
      return;
    }
    h = fnv1a(h, t->data, t->bytes);
  } else {
    if (!it->path) {
      af_item_fail(it, ctx->instance, "%s: item has no file path", it->id);
      return;
    }
    /* a FIFO would block fopen() until a writer comes: refuse special files
     * before opening anything */
    struct stat st;
    if (stat(it->path, &st) == 0 && !S_ISREG(st.st_mode)) {
      af_item_fail(it, ctx->instance, "%s: not a regular file", it->path);
      return;
    }
    FILE *f = fopen(it->path, "rb");
    if (!f) {
      af_item_fail(it, ctx->instance, "%s: %s", it->path, strerror(errno));
      return;
    }
    size_t n;
    int64_t total = 0;
    while ((n = fread(s->buf, 1, CHUNK, f)) > 0) {
      total += (int64_t)n;
      if (total > s->cfg->max_bytes) break;
      h = fnv1a(h, s->buf, n);
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
      af_item_fail(it, ctx->instance, "%s: read error", it->path);
      return;
    }
    if (total > s->cfg->max_bytes) {
      af_item_fail(it, ctx->instance, "%s: larger than max_bytes (%lld)", it->path,
                   (long long)s->cfg->max_bytes);
      return;
    }
  }
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  if (af_item_set_text(it, "checksum", hex)) af_item_fail(it, ctx->instance, "out of memory");
}

static af_flow cs_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  for (int i = 0; i < n; i++) hash_item(self, ctx, items[i]);
  return AF_FLOW_OK;
}

static void cs_destroy(void *self) {
  checksum_stage *s = self;
  if (!s) return;
  free(s->buf);
  free(s);
}

static const af_param cs_params[] = {
    {"tensor", AF_PARAM_STRING, offsetof(checksum_config, tensor), NULL, 0, 0, NULL,
     "hash this tensor's bytes instead of the source file", 0},
    {"max_bytes", AF_PARAM_INT, offsetof(checksum_config, max_bytes), "1099511627776", 1, 1e15, NULL,
     "files larger than this become error records", 0},
};

static const af_port cs_outputs[] = {
    {"checksum", "text", "FNV-1a 64-bit hash, 16 lowercase hex digits", 0},
};

const af_stage_desc af_stage_checksum = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "checksum",
    .doc = "64-bit FNV-1a hash of each file (or of one tensor) as text output 'checksum'",
    .kind = AF_STAGE_TRANSFORM,
    .params = cs_params,
    .n_params = AF_ARRAY_LEN(cs_params),
    .config_size = sizeof(checksum_config),
    .outputs = cs_outputs,
    .n_outputs = AF_ARRAY_LEN(cs_outputs),
    .batch_size = 8,
    .create = cs_create,
    .process = cs_process,
    .destroy = cs_destroy,
};
