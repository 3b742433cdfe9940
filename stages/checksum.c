/* `checksum` stage: a digest of each item's file bytes (or of a named
 * tensor's bytes) as the text output "checksum", lower-case hex:
 *   fnv1a64 (default)  64-bit FNV-1a, 16 digits: fast, for de-duplication
 *   sha256, md5        through OpenSSL's libcrypto, for fixity checks as
 *                      PREMIS and BagIt manifests record them
 * Small and CPU-only: it lets pipelines be tested and de-duplicated without
 * the image or model stages, and shows the whole stage contract in one page. */
#include <errno.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artflow/stage.h"
#include "artflow/status.h"

enum { ALG_FNV1A64, ALG_SHA256, ALG_MD5 };

typedef struct checksum_config {
  char *tensor;      /* NULL: hash the source file */
  int64_t max_bytes; /* files larger than this fail the item */
  int algorithm;     /* ALG_* */
} checksum_config;

typedef struct checksum_stage {
  const checksum_config *cfg;
  unsigned char *buf;
  EVP_MD_CTX *md; /* sha256 / md5 */
  uint64_t h;     /* fnv1a64 */
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
  if (s->cfg->algorithm != ALG_FNV1A64 && !(s->md = EVP_MD_CTX_new()))
    return af_err(AF_ERR_NOMEM, "checksum: out of memory");
  return 0;
}

/* the digest in three steps, whichever the algorithm */
static int dg_init(checksum_stage *s) {
  s->h = 14695981039346656037ull;
  if (!s->md) return 0;
  return EVP_DigestInit_ex(s->md, s->cfg->algorithm == ALG_SHA256 ? EVP_sha256() : EVP_md5(), NULL) == 1 ? 0
                                                                                                         : -1;
}

static int dg_update(checksum_stage *s, const void *p, size_t n) {
  if (!s->md) {
    s->h = fnv1a(s->h, p, n);
    return 0;
  }
  return EVP_DigestUpdate(s->md, p, n) == 1 ? 0 : -1;
}

static int dg_final(checksum_stage *s, char hex[65]) {
  if (!s->md) {
    snprintf(hex, 65, "%016llx", (unsigned long long)s->h);
    return 0;
  }
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (EVP_DigestFinal_ex(s->md, d, &n) != 1 || n > 32) return -1;
  for (unsigned i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  return 0;
}

/* Hashes one item; a failure marks the item, never the batch. */
static void hash_item(checksum_stage *s, const af_stage_ctx *ctx, af_item *it) {
  if (dg_init(s)) {
    af_item_fail(it, ctx->instance, "%s: libcrypto digest failed", it->id);
    return;
  }
  if (s->cfg->tensor) {
    const af_tensor *t = af_item_tensor(it, s->cfg->tensor);
    if (!t) {
      af_item_fail(it, ctx->instance, "%s: no tensor '%s'", it->id, s->cfg->tensor);
      return;
    }
    dg_update(s, t->data, t->bytes);
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
      dg_update(s, s->buf, n);
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
  char hex[65];
  if (dg_final(s, hex)) {
    af_item_fail(it, ctx->instance, "%s: libcrypto digest failed", it->id);
    return;
  }
  if (af_item_set_text(it, "checksum", hex)) af_item_fail(it, ctx->instance, "out of memory");
}

static af_flow cs_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  for (int i = 0; i < n; i++) hash_item(self, ctx, items[i]);
  return AF_FLOW_OK;
}

static void cs_destroy(void *self) {
  checksum_stage *s = self;
  if (!s) return;
  EVP_MD_CTX_free(s->md);
  free(s->buf);
  free(s);
}

static const af_param cs_params[] = {
    {"tensor", AF_PARAM_STRING, offsetof(checksum_config, tensor), NULL, 0, 0, NULL,
     "hash this tensor's bytes instead of the source file", 0},
    {"max_bytes", AF_PARAM_INT, offsetof(checksum_config, max_bytes), "1099511627776", 1, 1e15, NULL,
     "files larger than this become error records", 0},
    {"algorithm", AF_PARAM_ENUM, offsetof(checksum_config, algorithm), "fnv1a64", 0, 0, "fnv1a64|sha256|md5",
     "fnv1a64 (fast, de-duplication) or sha256 / md5 (fixity, as PREMIS and BagIt record it)", 0},
};

static const af_port cs_outputs[] = {
    {"checksum", "text", "the digest in lower-case hex (fnv1a64: 16 digits, sha256: 64, md5: 32)", 0},
};

const af_stage_desc af_stage_checksum = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "checksum",
    .doc = "digest of each file (or of one tensor): FNV-1a 64, SHA-256 or MD5, as text output 'checksum'",
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
