/* `annotations` sink: W3C Web Annotation JSON-LD (Web Annotation Data Model,
 * W3C Recommendation 2017) for what the pipeline said about each image, as
 *   path:   JSON Lines, one annotation per line (each with its @context), and/or
 *   pages:  a folder with one IIIF Presentation 3 AnnotationPage per canvas
 *           (<safe canvas or id>.json), ready for a manifest's `annotations`.
 * Annotations:
 *   describing   one per text output in `describing:` (default [text]): a
 *                TextualBody with the text, `language` (the item's "language"
 *                output, else `language:`) and `format` text/plain;
 *   tagging / classifying   one per label of the label outputs named in
 *                `tagging:` / `classifying:` (a JSON array, stages/outputs.h),
 *                best first, at most `top_k`, p >= `min_p`: a TextualBody with
 *                the label (+ artflow:termId) and, when the label has an
 *                authority URI, that resource as a second, identifying body.
 * Each has a stable id (urn:artflow:annotation:<hash of target, motivation,
 * output, value>), `target` (the IIIF canvas id, else `target_base` + id, else
 * the image's file URI), `creator` (the model as a Software agent: name,
 * weight type, digest), `generator` (artflow and its version), `created`, and
 * for labels `artflow:confidence` (p) and `artflow:logprob`, defined by the
 * @context (docs/pipeline-io.md).  Error items and items without any of the
 * outputs write nothing.  The JSON Lines file is append-only and resumable as
 * the jsonl sink's; pages are written whole under a temporary name. */
#include <cjson/cJSON.h>
#include <errno.h>
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

#define ANNO_CONTEXT "http://www.w3.org/ns/anno.jsonld"
#define IIIF_CONTEXT "http://iiif.io/api/presentation/3/context.json"
#define AF_VOCAB "urn:artflow:vocab#"

typedef struct anno_config {
  char *path, *pages, *target_base, *page_base, *language;
  af_strlist describing, tagging, classifying;
  int64_t top_k;
  double min_p;
  int fsync, hash_model;
} anno_config;

typedef struct anno_sink {
  const anno_config *cfg;
  af_appendfile *file;
  af_idset *written; /* targets already in the file (resume) */
  af_agent agent;
  af_buf buf;
} anno_sink;

/* the extension terms, defined once: the W3C context defines the rest */
static cJSON *ext_context(void) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "artflow", AF_VOCAB);
  cJSON *conf = cJSON_AddObjectToObject(c, "artflow:confidence");
  cJSON_AddStringToObject(conf, "@type", "http://www.w3.org/2001/XMLSchema#double");
  cJSON *lp = cJSON_AddObjectToObject(c, "artflow:logprob");
  cJSON_AddStringToObject(lp, "@type", "http://www.w3.org/2001/XMLSchema#double");
  return c;
}

static cJSON *context(int iiif) {
  cJSON *a = cJSON_CreateArray();
  /* IIIF asks for its context last; it includes the W3C one */
  cJSON_AddItemToArray(a, cJSON_CreateString(ANNO_CONTEXT));
  cJSON_AddItemToArray(a, ext_context());
  if (iiif) cJSON_AddItemToArray(a, cJSON_CreateString(IIIF_CONTEXT));
  return a;
}

static int scan_target(const char *line, size_t len, void *user) {
  anno_sink *s = user;
  cJSON *o = cJSON_ParseWithLength(line, len);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "artflow:item");
  int rc = cJSON_IsString(t) ? af_idset_add(s->written, t->valuestring, strlen(t->valuestring)) : 0;
  cJSON_Delete(o);
  return rc;
}

static int anno_create(const af_stage_ctx *ctx, const void *config, void **self) {
  anno_sink *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = config;
  int rc = 0;
  if (!s->cfg->path && !s->cfg->pages)
    return af_err(AF_ERR_CONFIG, "%s: give `path:` (JSON Lines), `pages:` (a folder) or both", ctx->instance);
  if ((rc = af_agent_from_ctx(ctx, s->cfg->hash_model, &s->agent))) return rc;
  if (!(s->written = af_idset_new())) return af_err(AF_ERR_NOMEM, "out of memory");
  if (s->cfg->pages && (rc = af_mkdirs(s->cfg->pages))) return rc;
  if (s->cfg->path) {
    char *dir = af_path_dirname(s->cfg->path);
    rc = dir ? (strcmp(s->cfg->path, "-") ? af_mkdirs(dir) : 0) : af_err(AF_ERR_NOMEM, "out of memory");
    free(dir);
    if (!rc && ctx->resume && strcmp(s->cfg->path, "-")) rc = af_lines_scan(s->cfg->path, scan_target, s);
    if (!rc) rc = af_appendfile_open(s->cfg->path, ctx->resume, (af_fsync_mode)s->cfg->fsync, &s->file);
  }
  return rc;
}

/* valid UTF-8 whatever the bytes (U+FFFD for a bad byte) */
static void add_str(cJSON *o, const char *k, const char *v) {
  if (af_utf8_valid(v)) {
    cJSON_AddStringToObject(o, k, v);
    return;
  }
  char *t = af_utf8_lossy(v);
  if (t) cJSON_AddStringToObject(o, k, t);
  free(t);
}

static cJSON *agents(anno_sink *s, cJSON *a) {
  const af_agent *g = &s->agent;
  cJSON *cr = cJSON_AddObjectToObject(a, "creator");
  if (g->model_sha256) {
    char id[96];
    snprintf(id, sizeof id, "urn:sha256:%s", g->model_sha256);
    cJSON_AddStringToObject(cr, "id", id);
  }
  cJSON_AddStringToObject(cr, "type", "Software");
  add_str(cr, "name", g->model_name ? g->model_name : g->model ? g->model : "unknown model");
  if (g->model) add_str(cr, "artflow:modelFile", g->model);
  if (g->weight_type) cJSON_AddStringToObject(cr, "artflow:weightType", g->weight_type);
  if (g->model_sha256) cJSON_AddStringToObject(cr, "artflow:modelSha256", g->model_sha256);
  cJSON *ge = cJSON_AddObjectToObject(a, "generator");
  cJSON_AddStringToObject(ge, "type", "Software");
  char name[64];
  snprintf(name, sizeof name, "artflow %s", g->artflow ? g->artflow : AF_VERSION);
  cJSON_AddStringToObject(ge, "name", name);
  return a;
}

/* One annotation (without @context).  `value` is the body text; the id hashes
 * target, motivation, output name and value so a rerun gives the same ids. */
static cJSON *annotation(anno_sink *s, const af_item *it, const char *target, const char *motivation,
                         const char *output, const char *value, const char *lang, const af_label *l,
                         const char *now) {
  char hex[65], id[80];
  af_buf b = {0};
  af_buf_puts(&b, target);
  af_buf_put(&b, "\n", 1);
  af_buf_puts(&b, motivation);
  af_buf_put(&b, "\n", 1);
  af_buf_puts(&b, output);
  af_buf_put(&b, "\n", 1);
  af_buf_puts(&b, value);
  af_sha256_hex(b.p ? b.p : "", b.n, hex);
  af_buf_free(&b);
  snprintf(id, sizeof id, "urn:artflow:annotation:%.32s", hex);
  cJSON *a = cJSON_CreateObject();
  cJSON_AddStringToObject(a, "id", id);
  cJSON_AddStringToObject(a, "type", "Annotation");
  cJSON_AddStringToObject(a, "motivation", motivation);
  cJSON *body = cJSON_CreateObject();
  cJSON_AddStringToObject(body, "type", "TextualBody");
  add_str(body, "value", value);
  if (lang && *lang) add_str(body, "language", lang);
  cJSON_AddStringToObject(body, "format", "text/plain");
  cJSON_AddStringToObject(body, "purpose", motivation);
  if (l && l->id) add_str(body, "artflow:termId", l->id);
  if (l && l->uri) { /* the authority's term as a second, identifying body */
    cJSON *arr = cJSON_AddArrayToObject(a, "body"), *term = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, body);
    add_str(term, "id", l->uri);
    cJSON_AddStringToObject(term, "purpose", "identifying");
    cJSON_AddItemToArray(arr, term);
  } else {
    cJSON_AddItemToObject(a, "body", body);
  }
  add_str(a, "target", target);
  agents(s, a);
  cJSON_AddStringToObject(a, "created", now);
  if (l && !isnan(l->p)) cJSON_AddNumberToObject(a, "artflow:confidence", l->p);
  if (l && !isnan(l->logprob)) cJSON_AddNumberToObject(a, "artflow:logprob", l->logprob);
  add_str(a, "artflow:item", it->id);
  add_str(a, "artflow:output", output);
  return a;
}

/* Every annotation of one item into arr.  Returns how many. */
static int item_annotations(anno_sink *s, const af_stage_ctx *ctx, const af_item *it, const char *target,
                            const char *now, cJSON *arr) {
  const anno_config *c = s->cfg;
  const char *lang = af_item_text(it, "language");
  if (!lang) lang = c->language;
  int n = 0;
  for (int i = 0; i < c->describing.n; i++) {
    const char *t = af_item_text(it, c->describing.v[i]);
    if (t && *t)
      cJSON_AddItemToArray(arr,
                           annotation(s, it, target, "describing", c->describing.v[i], t, lang, NULL, now)),
          n++;
  }
  const af_strlist *lists[2] = {&c->tagging, &c->classifying};
  static const char *const mot[2] = {"tagging", "classifying"};
  for (int m = 0; m < 2; m++)
    for (int i = 0; i < lists[m]->n; i++) {
      const char *name = lists[m]->v[i], *t = af_item_text(it, name), *why;
      if (!t) continue;
      af_label *l;
      int nl = af_labels_parse(t, &l, &why);
      if (nl < 0) { /* a bad output is the producing stage's bug: say so, go on */
        if (ctx->log)
          ctx->log(ctx, AF_LOG_WARN, "%s: output '%s' is not a label list: %s", it->id, name, why);
        continue;
      }
      for (int k = 0, kept = 0; k < nl && (c->top_k <= 0 || kept < c->top_k); k++) {
        if (!isnan(l[k].p) && l[k].p < c->min_p) continue;
        cJSON_AddItemToArray(arr, annotation(s, it, target, mot[m], name, l[k].label, lang, &l[k], now));
        kept++, n++;
      }
      af_labels_free(l, nl);
    }
  return n;
}

/* One AnnotationPage per canvas: <pages>/<safe name>.json, written whole */
static int write_page(anno_sink *s, const char *target, cJSON *items) {
  char name[300], page_id[4400], tmp[4400], final[4400];
  af_safe_name(target, name, sizeof name);
  snprintf(final, sizeof final, "%s/%s.json", s->cfg->pages, name);
  snprintf(tmp, sizeof tmp, "%s/.%s.json.tmp", s->cfg->pages, name);
  if (s->cfg->page_base)
    snprintf(page_id, sizeof page_id, "%s%s.json", s->cfg->page_base, name);
  else
    snprintf(page_id, sizeof page_id, "urn:artflow:page:%s", name);
  cJSON *page = cJSON_CreateObject();
  cJSON_AddItemToObject(page, "@context", context(1));
  add_str(page, "id", page_id);
  cJSON_AddStringToObject(page, "type", "AnnotationPage");
  cJSON_AddItemReferenceToObject(page, "items", items);
  char *text = cJSON_Print(page);
  cJSON_Delete(page);
  if (!text) return af_err(AF_ERR_NOMEM, "out of memory");
  FILE *fp = fopen(tmp, "wb");
  int rc = fp ? 0 : af_err(AF_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
  if (!rc && (fputs(text, fp) < 0 || fputc('\n', fp) == EOF)) rc = af_err(AF_ERR_IO, "%s: write failed", tmp);
  if (fp && fclose(fp) && !rc) rc = af_err(AF_ERR_IO, "%s: close failed", tmp);
  if (!rc && rename(tmp, final))
    rc = af_err(AF_ERR_IO, "%s: cannot rename into place: %s", final, strerror(errno));
  free(text);
  return rc;
}

static af_flow anno_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  anno_sink *s = self;
  char now[32];
  time_t tt = time(NULL);
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
  s->buf.n = 0;
  int rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    const af_item *it = items[i];
    if (it->status != AF_ITEM_OK || af_idset_has(s->written, it->id)) continue;
    char *target = af_item_target(it, s->cfg->target_base);
    cJSON *arr = cJSON_CreateArray();
    if (!target || !arr) rc = af_err(AF_ERR_NOMEM, "out of memory");
    int k = rc ? 0 : item_annotations(s, ctx, it, target, now, arr);
    if (k && s->cfg->pages) rc = write_page(s, target, arr);
    for (cJSON *a = arr ? arr->child : NULL; a && !rc && s->file; a = a->next) {
      /* @context first, then the annotation's keys (borrowed references) */
      cJSON *w = cJSON_CreateObject();
      cJSON_AddItemToObject(w, "@context", context(0));
      for (cJSON *k = a->child; k; k = k->next) cJSON_AddItemReferenceToObject(w, k->string, k);
      char *line = cJSON_PrintUnformatted(w);
      cJSON_Delete(w);
      if (!line) rc = af_err(AF_ERR_NOMEM, "out of memory");
      af_buf_puts(&s->buf, line ? line : "");
      af_buf_put(&s->buf, "\n", 1);
      free(line);
    }
    cJSON_Delete(arr);
    free(target);
  }
  if (!rc && s->buf.oom) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc && s->file) rc = af_appendfile_write(s->file, s->buf.p, s->buf.n);
  return rc ? AF_FLOW_ERROR : AF_FLOW_OK;
}

static void anno_destroy(void *self) {
  anno_sink *s = self;
  if (!s) return;
  (void)af_appendfile_close(s->file);
  af_idset_free(s->written);
  af_agent_free(&s->agent);
  af_buf_free(&s->buf);
  free(s);
}

static const af_param anno_params[] = {
    {"path", AF_PARAM_STRING, offsetof(anno_config, path), NULL, 0, 0, NULL,
     "JSON Lines of annotations, one per line ('-' = standard output)", AF_PARAM_PATH},
    {"pages", AF_PARAM_STRING, offsetof(anno_config, pages), NULL, 0, 0, NULL,
     "folder for one IIIF AnnotationPage per canvas (<safe canvas id>.json)", AF_PARAM_PATH},
    {"describing", AF_PARAM_STRLIST, offsetof(anno_config, describing), "text", 0, 0, NULL,
     "text outputs that become describing annotations", 0},
    {"tagging", AF_PARAM_STRLIST, offsetof(anno_config, tagging), NULL, 0, 0, NULL,
     "label outputs (JSON arrays of {label, id, uri, logprob, p}) that become tagging annotations", 0},
    {"classifying", AF_PARAM_STRLIST, offsetof(anno_config, classifying), NULL, 0, 0, NULL,
     "label outputs that become classifying annotations", 0},
    {"top_k", AF_PARAM_INT, offsetof(anno_config, top_k), "0", 0, 100000, NULL,
     "at most this many labels per output, best first (0 = all)", 0},
    {"min_p", AF_PARAM_FLOAT, offsetof(anno_config, min_p), "0", 0, 1, NULL,
     "labels with a lower p are left out", 0},
    {"language", AF_PARAM_STRING, offsetof(anno_config, language), "en", 0, 0, NULL,
     "language of the bodies when the item has no 'language' output (BCP 47)", 0},
    {"target_base", AF_PARAM_STRING, offsetof(anno_config, target_base), NULL, 0, 0, NULL,
     "targets are this + the item id (unless the item has a IIIF canvas); default: the image's file URI", 0},
    {"page_base", AF_PARAM_STRING, offsetof(anno_config, page_base), NULL, 0, 0, NULL,
     "URL the pages folder will be published at: page ids are this + <name>.json", 0},
    {"fsync", AF_PARAM_ENUM, offsetof(anno_config, fsync), "batch", 0, 0, AF_FSYNC_CHOICES,
     "when to force the JSON Lines file to disk", 0},
    {"hash_model", AF_PARAM_BOOL, offsetof(anno_config, hash_model), "true", 0, 0, NULL,
     "name the model by its SHA-256 in creator (reads the model file once)", 0},
};

const af_stage_desc af_stage_annotations = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "annotations",
    .doc =
        "W3C Web Annotations (JSON-LD): describing, tagging and classifying; JSON Lines and IIIF "
        "AnnotationPages",
    .kind = AF_STAGE_SINK,
    .params = anno_params,
    .n_params = AF_ARRAY_LEN(anno_params),
    .config_size = sizeof(anno_config),
    .batch_size = 16,
    .create = anno_create,
    .process = anno_process,
    .destroy = anno_destroy,
};
