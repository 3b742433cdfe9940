/* `xmp` sink: XMP metadata for each image through Exempi (Debian's
 * libexempi-dev, the C API of Adobe's XMP Toolkit SDK: the reference
 * implementation of ISO 16684-1, which does the RDF/XML, language
 * alternatives, arrays and packet wrapping right -- docs/pipeline-io.md says
 * why it was chosen over Exiv2).  Written per ok item:
 *   dc:description                      lang-alt: the `description:` text
 *                                       output under the item's language
 *                                       (x-default too when first)
 *   Iptc4xmpCore:AltTextAccessibility   lang-alt: the `alt_text:` output
 *                                       (default the same text)
 *   dc:subject                          bag: the labels of the `subjects:`
 *                                       label outputs (stages/outputs.h),
 *                                       best first, top_k / min_p, no repeats
 *   Iptc4xmpExt:AISystemUsed,           IPTC 2025.1: the machine origin of
 *   Iptc4xmpExt:AISystemVersionUsed,    these fields (artflow, the model's
 *   Iptc4xmpExt:AIPromptInformation     name and weight type; the model's
 *                                       SHA-256; the question asked)
 *   xmp:CreatorTool, xmp:MetadataDate
 * Iptc4xmpExt:DigitalSourceType is NOT written: it describes how the image
 * itself was made, and an AI-written caption does not make a photograph of a
 * painting "trainedAlgorithmicMedia".
 * Where: a sidecar next to the image (`naming: name` -> photo.jpg.xmp, or
 * `stem` -> photo.xmp), or in the `path:` folder (<safe id>.xmp); an existing
 * sidecar is read and updated (other fields kept).  `embed: true` writes into
 * the image file itself where Exempi can (JPEG, TIFF, PNG, ...; the original
 * is changed: opt in only).  Files are written under a temporary name and
 * renamed into place. */
#include <errno.h>
#include <exempi/xmp.h>
#include <exempi/xmpconsts.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "stages/outputs.h"

#define NS_IPTC_EXT "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"

typedef struct xmp_config {
  char *path, *description, *alt_text, *language;
  af_strlist subjects;
  int naming; /* 0 name (photo.jpg.xmp), 1 stem (photo.xmp) */
  int embed, hash_model;
  int64_t top_k;
  double min_p;
} xmp_config;

typedef struct xmp_sink {
  const xmp_config *cfg;
  af_agent agent;
  char *system; /* Iptc4xmpExt:AISystemUsed */
  int inited;
} xmp_sink;

static int xmp_create(const af_stage_ctx *ctx, const void *config, void **self) {
  xmp_sink *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = config;
  if (s->cfg->embed && s->cfg->path)
    return af_err(AF_ERR_CONFIG, "%s: embed: true writes into the images; leave `path:` out", ctx->instance);
  if (!xmp_init()) return af_err(AF_ERR_IO, "%s: the XMP library (Exempi) did not start", ctx->instance);
  s->inited = 1;
  xmp_register_namespace(NS_IPTC_EXT, "Iptc4xmpExt", NULL);
  int rc = af_agent_from_ctx(ctx, s->cfg->hash_model, &s->agent);
  if (rc) return rc;
  af_buf b = {0};
  af_buf_puts(&b, "artflow ");
  af_buf_puts(&b, s->agent.artflow ? s->agent.artflow : AF_VERSION);
  af_buf_puts(&b, " with ");
  af_buf_puts(&b, s->agent.model_name ? s->agent.model_name : s->agent.model ? s->agent.model : "no model");
  if (s->agent.weight_type) {
    af_buf_puts(&b, " (");
    af_buf_puts(&b, s->agent.weight_type);
    af_buf_puts(&b, ")");
  }
  if (b.oom) return af_err(AF_ERR_NOMEM, "out of memory");
  s->system = b.p;
  if (s->cfg->path) rc = af_mkdirs(s->cfg->path);
  return rc;
}

/* the sidecar's file name (malloc'd), or NULL when the item has no place */
static char *sidecar_path(const xmp_sink *s, const af_item *it) {
  char *p = NULL;
  if (s->cfg->path) {
    char name[300];
    af_safe_name(it->id, name, sizeof name);
    size_t n = strlen(s->cfg->path) + strlen(name) + 6;
    if ((p = malloc(n))) snprintf(p, n, "%s/%s.xmp", s->cfg->path, name);
    return p;
  }
  if (!it->path) return NULL;
  size_t n = strlen(it->path);
  const char *slash = strrchr(it->path, '/'), *dot = strrchr(it->path, '.');
  if (s->cfg->naming == 1 && dot && (!slash || dot > slash + 1)) n = (size_t)(dot - it->path);
  if ((p = malloc(n + 5))) snprintf(p, n + 5, "%.*s.xmp", (int)n, it->path);
  return p;
}

static int set_alt(XmpPtr x, const char *ns, const char *prop, const char *lang, const char *value) {
  /* valid UTF-8 only: the toolkit refuses other bytes */
  char *v = af_utf8_valid(value) ? NULL : af_utf8_lossy(value);
  /* the specific language, and x-default when the array is new */
  bool ok = xmp_set_localized_text(x, ns, prop, "", lang, v ? v : value, 0);
  free(v);
  return ok ? 0 : -1;
}

static int has_subject(XmpPtr x, const char *label) {
  XmpStringPtr v = xmp_string_new();
  int found = 0;
  for (int32_t i = 1; !found && xmp_get_array_item(x, NS_DC, "subject", i, v, NULL); i++)
    found = !strcmp(xmp_string_cstr(v), label);
  xmp_string_free(v);
  return found;
}

/* Fills x with this item's fields.  0, or -1 with *why. */
static int fill(xmp_sink *s, const af_stage_ctx *ctx, const af_item *it, XmpPtr x, const char **why) {
  const xmp_config *c = s->cfg;
  const char *lang = af_item_text(it, "language");
  if (!lang || !*lang) lang = c->language;
  const char *desc = c->description ? af_item_text(it, c->description) : NULL;
  const char *alt = af_item_text(it, c->alt_text ? c->alt_text : c->description ? c->description : "");
  *why = "cannot set dc:description";
  if (desc && *desc && set_alt(x, NS_DC, "description", lang, desc)) return -1;
  *why = "cannot set Iptc4xmpCore:AltTextAccessibility";
  if (alt && *alt && set_alt(x, NS_IPTC4XMP, "AltTextAccessibility", lang, alt)) return -1;
  for (int i = 0; i < c->subjects.n; i++) {
    const char *t = af_item_text(it, c->subjects.v[i]), *bad;
    if (!t) continue;
    af_label *l;
    int nl = af_labels_parse(t, &l, &bad);
    if (nl < 0) {
      if (ctx->log)
        ctx->log(ctx, AF_LOG_WARN, "%s: output '%s' is not a label list: %s", it->id, c->subjects.v[i], bad);
      continue;
    }
    for (int k = 0, kept = 0; k < nl && (c->top_k <= 0 || kept < c->top_k); k++) {
      if ((!isnan(l[k].p) && l[k].p < c->min_p) || !af_utf8_valid(l[k].label)) continue;
      kept++;
      if (!has_subject(x, l[k].label) &&
          !xmp_append_array_item(x, NS_DC, "subject", XMP_PROP_VALUE_IS_ARRAY, l[k].label, 0)) {
        af_labels_free(l, nl);
        *why = "cannot add to dc:subject";
        return -1;
      }
    }
    af_labels_free(l, nl);
  }
  const char *q = af_item_text(it, "question");
  *why = "cannot set the IPTC AI fields";
  if (!xmp_set_property(x, NS_IPTC_EXT, "AISystemUsed", s->system, 0)) return -1;
  if (s->agent.model_sha256 &&
      !xmp_set_property(x, NS_IPTC_EXT, "AISystemVersionUsed", s->agent.model_sha256, 0))
    return -1;
  if (q && af_utf8_valid(q) && !xmp_set_property(x, NS_IPTC_EXT, "AIPromptInformation", q, 0)) return -1;
  char tool[64], now[32];
  snprintf(tool, sizeof tool, "artflow %s", s->agent.artflow ? s->agent.artflow : AF_VERSION);
  time_t tt = time(NULL);
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
  *why = "cannot set xmp:CreatorTool";
  if (!xmp_set_property(x, NS_XAP, "CreatorTool", tool, 0)) return -1;
  if (!xmp_set_property(x, NS_XAP, "MetadataDate", now, 0)) return -1;
  return 0;
}

/* Reads an existing sidecar (0 when there is none or it parsed) */
static int load_existing(const char *file, XmpPtr x) {
  size_t n = 0;
  FILE *fp = fopen(file, "rb");
  if (!fp) return errno == ENOENT ? 0 : af_err(AF_ERR_IO, "%s: cannot read: %s", file, strerror(errno));
  af_buf b = {0};
  char chunk[8192];
  while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) af_buf_put(&b, chunk, n);
  fclose(fp);
  int rc = b.oom ? af_err(AF_ERR_NOMEM, "out of memory")
           : b.n && !xmp_parse(x, b.p, b.n)
               ? af_err(AF_ERR_FORMAT, "%s: not an XMP packet (Exempi error %d)", file, xmp_get_error())
               : 0;
  af_buf_free(&b);
  return rc;
}

static int write_sidecar(const char *file, XmpPtr x) {
  XmpStringPtr out = xmp_string_new();
  int rc = 0;
  if (!xmp_serialize(x, out, XMP_SERIAL_OMITPACKETWRAPPER, 0)) {
    rc = af_err(AF_ERR_IO, "%s: XMP serialisation failed (Exempi error %d)", file, xmp_get_error());
  } else {
    size_t n = strlen(file) + 8;
    char *tmp = malloc(n);
    if (!tmp) rc = af_err(AF_ERR_NOMEM, "out of memory");
    if (tmp) snprintf(tmp, n, "%s.tmp~", file);
    FILE *fp = tmp ? fopen(tmp, "wb") : NULL;
    const char *t = xmp_string_cstr(out);
    if (!rc && !fp) rc = af_err(AF_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    if (!rc && fwrite(t, 1, strlen(t), fp) != strlen(t)) rc = af_err(AF_ERR_IO, "%s: write failed", tmp);
    if (fp && fclose(fp) && !rc) rc = af_err(AF_ERR_IO, "%s: close failed", tmp);
    if (!rc && rename(tmp, file))
      rc = af_err(AF_ERR_IO, "%s: cannot rename into place: %s", file, strerror(errno));
    if (rc && tmp) unlink(tmp);
    free(tmp);
  }
  xmp_string_free(out);
  return rc;
}

static int embed(xmp_sink *s, const af_stage_ctx *ctx, const af_item *it, const char **why) {
  XmpFilePtr f = xmp_files_open_new(it->path, XMP_OPEN_FORUPDATE);
  if (!f) return *why = "Exempi cannot open it for update (format without XMP support?)", -1;
  XmpPtr x = xmp_files_get_new_xmp(f);
  if (!x) x = xmp_new_empty();
  int rc = fill(s, ctx, it, x, why);
  if (!rc && !xmp_files_can_put_xmp(f, x)) rc = -1, *why = "this file format cannot hold XMP";
  if (!rc && !xmp_files_put_xmp(f, x)) rc = -1, *why = "writing the XMP into the file failed";
  if (!xmp_files_close(f, XMP_CLOSE_SAFEUPDATE) && !rc) rc = -1, *why = "closing the file failed";
  xmp_files_free(f);
  xmp_free(x);
  return rc;
}

static af_flow xmp_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  xmp_sink *s = self;
  for (int i = 0; i < n; i++) {
    const af_item *it = items[i];
    if (it->status != AF_ITEM_OK) continue;
    const char *why = NULL;
    if (s->cfg->embed) {
      if (!it->path || embed(s, ctx, it, &why))
        ctx->log(ctx, AF_LOG_WARN, "%s: not embedded: %s", it->path ? it->path : it->id,
                 why ? why : "no local file");
      continue;
    }
    char *file = sidecar_path(s, it);
    if (!file) {
      ctx->log(ctx, AF_LOG_WARN, "%s: no local file to put a sidecar next to: set `path:`", it->id);
      continue;
    }
    XmpPtr x = xmp_new_empty();
    int rc = x ? load_existing(file, x) : af_err(AF_ERR_NOMEM, "out of memory");
    if (!rc && fill(s, ctx, it, x, &why)) rc = af_err(AF_ERR_IO, "%s: %s", file, why);
    if (!rc) rc = write_sidecar(file, x);
    if (x) xmp_free(x);
    free(file);
    if (rc == AF_ERR_FORMAT) { /* someone's damaged sidecar: leave it, go on */
      ctx->log(ctx, AF_LOG_WARN, "%s", af_error_message());
      af_error_clear();
    } else if (rc) {
      return AF_FLOW_ERROR;
    }
  }
  return AF_FLOW_OK;
}

static void xmp_destroy(void *self) {
  xmp_sink *s = self;
  if (!s) return;
  af_agent_free(&s->agent);
  free(s->system);
  if (s->inited) xmp_terminate();
  free(s);
}

static const af_param xmp_params[] = {
    {"path", AF_PARAM_STRING, offsetof(xmp_config, path), NULL, 0, 0, NULL,
     "folder for the sidecars (<safe id>.xmp); default: next to each image", AF_PARAM_PATH},
    {"naming", AF_PARAM_ENUM, offsetof(xmp_config, naming), "name", 0, 0, "name|stem",
     "sidecar next to the image: name = photo.jpg.xmp, stem = photo.xmp (Adobe's; two images with one "
     "stem share it)",
     0},
    {"description", AF_PARAM_STRING, offsetof(xmp_config, description), "text", 0, 0, NULL,
     "text output for dc:description", 0},
    {"alt_text", AF_PARAM_STRING, offsetof(xmp_config, alt_text), NULL, 0, 0, NULL,
     "text output for Iptc4xmpCore:AltTextAccessibility (default: the description's)", 0},
    {"subjects", AF_PARAM_STRLIST, offsetof(xmp_config, subjects), NULL, 0, 0, NULL,
     "label outputs whose labels become dc:subject keywords", 0},
    {"top_k", AF_PARAM_INT, offsetof(xmp_config, top_k), "0", 0, 100000, NULL,
     "at most this many keywords per label output (0 = all)", 0},
    {"min_p", AF_PARAM_FLOAT, offsetof(xmp_config, min_p), "0", 0, 1, NULL,
     "labels with a lower p are left out", 0},
    {"language", AF_PARAM_STRING, offsetof(xmp_config, language), "en", 0, 0, NULL,
     "language of the texts when the item has no 'language' output (BCP 47)", 0},
    {"embed", AF_PARAM_BOOL, offsetof(xmp_config, embed), "false", 0, 0, NULL,
     "write into the image files themselves (changes the originals) instead of sidecars", 0},
    {"hash_model", AF_PARAM_BOOL, offsetof(xmp_config, hash_model), "true", 0, 0, NULL,
     "record the model's SHA-256 as Iptc4xmpExt:AISystemVersionUsed (reads the model once)", 0},
};

const af_stage_desc af_stage_xmp = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "xmp",
    .doc =
        "XMP sidecars (or embedded XMP): dc:description, IPTC alt text, dc:subject keywords, IPTC AI fields",
    .kind = AF_STAGE_SINK,
    .params = xmp_params,
    .n_params = AF_ARRAY_LEN(xmp_params),
    .config_size = sizeof(xmp_config),
    .batch_size = 8,
    .create = xmp_create,
    .process = xmp_process,
    .destroy = xmp_destroy,
};
