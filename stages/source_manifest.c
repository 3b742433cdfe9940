/* Manifest sources: `csv` (a header row with id and path columns; every other
 * column rides along as item metadata) and `jsonl` (JSON Lines on stdin or in
 * a file: objects with "path", optional "id", other keys as metadata).  Both
 * stream one record at a time.  Relative paths resolve against the manifest's
 * folder (stdin: the current folder).  A bad row becomes an error record. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/csv.h"

/* ------------------------------------------------------------------ csv */

typedef struct csv_config {
  char *path;
  char *id_column;
  char *path_column;
} csv_config;

typedef struct csv_source {
  const csv_config *cfg;
  FILE *fp;
  af_csv_reader *rd;
  char *dir;
  char **header;
  int n_header, id_col, path_col;
} csv_source;

static int csv_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const csv_config *c = config;
  csv_source *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = c;
  if (!(s->fp = fopen(c->path, "rb")))
    return af_err(AF_ERR_CONFIG, "%s: manifest: %s", c->path, strerror(errno));
  if (!(s->rd = af_csv_reader_new(s->fp, c->path)) || !(s->dir = af_path_dirname(c->path)))
    return af_err(AF_ERR_NOMEM, "out of memory");
  char **f;
  int n;
  int64_t line;
  int r = af_csv_next(s->rd, &f, &n, &line);
  if (r < 0) return AF_ERR_CONFIG;
  if (r == 0) return af_err(AF_ERR_CONFIG, "%s: empty manifest (a header row is required)", c->path);
  if (!(s->header = calloc((size_t)n, sizeof *s->header))) return af_err(AF_ERR_NOMEM, "out of memory");
  s->n_header = n;
  s->id_col = s->path_col = -1;
  for (int i = 0; i < n; i++) {
    /* a UTF-8 byte-order mark (spreadsheet exports) is not part of the name */
    const char *h = (i == 0 && !strncmp(f[i], "\xEF\xBB\xBF", 3)) ? f[i] + 3 : f[i];
    if (!(s->header[i] = strdup(h))) return af_err(AF_ERR_NOMEM, "out of memory");
    if (!strcmp(h, c->id_column)) s->id_col = i;
    if (!strcmp(h, c->path_column)) s->path_col = i;
  }
  if (s->id_col < 0 || s->path_col < 0)
    return af_err(AF_ERR_CONFIG, "%s:1: manifest header has no '%s' column", c->path,
                  s->id_col < 0 ? c->id_column : c->path_column);
  return 0;
}

static af_flow csv_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  csv_source *s = self;
  char **f;
  int n;
  int64_t line;
  int r = af_csv_next(s->rd, &f, &n, &line);
  if (r == 0) return AF_FLOW_EOS;
  if (r < 0) return AF_FLOW_ERROR; /* unterminated quote: the rest is unreadable */
  const char *id = s->id_col < n ? f[s->id_col] : "";
  const char *rel = s->path_col < n ? f[s->path_col] : "";
  char lineid[64];
  if (!*id) id = *rel ? rel : (snprintf(lineid, sizeof lineid, "line %lld", (long long)line), lineid);
  char *full = *rel ? af_path_join(s->dir, rel) : NULL;
  af_item *it = af_item_new(id, full);
  free(full);
  if (!it) goto oom;
  for (int i = 0; i < n && i < s->n_header; i++)
    if (i != s->id_col && i != s->path_col && af_item_set_meta(it, s->header[i], f[i])) goto oom;
  if (n != s->n_header)
    af_item_fail(it, ctx->instance, "%s:%lld: %d fields, the header has %d", s->cfg->path, (long long)line, n,
                 s->n_header);
  else if (!*rel)
    af_item_fail(it, ctx->instance, "%s:%lld: empty '%s' field", s->cfg->path, (long long)line,
                 s->cfg->path_column);
  *out = it;
  return AF_FLOW_OK;
oom:
  af_item_free(it);
  af_err(AF_ERR_NOMEM, "out of memory");
  return AF_FLOW_ERROR;
}

static void csv_destroy(void *self) {
  csv_source *s = self;
  if (!s) return;
  af_csv_reader_free(s->rd);
  if (s->fp) fclose(s->fp);
  for (int i = 0; i < s->n_header; i++) free(s->header[i]);
  free(s->header);
  free(s->dir);
  free(s);
}

static const af_param csv_params[] = {
    {"path", AF_PARAM_STRING, offsetof(csv_config, path), NULL, 0, 0, NULL,
     "CSV manifest (RFC 4180, header row); image paths relative to it", AF_PARAM_REQUIRED | AF_PARAM_PATH},
    {"id_column", AF_PARAM_STRING, offsetof(csv_config, id_column), "id", 0, 0, NULL,
     "column holding the item id (empty cell: the path)", 0},
    {"path_column", AF_PARAM_STRING, offsetof(csv_config, path_column), "path", 0, 0, NULL,
     "column holding the image path", 0},
};

const af_stage_desc af_stage_src_csv = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "csv",
    .doc = "rows of a CSV manifest; extra columns become item metadata",
    .kind = AF_STAGE_SOURCE,
    .params = csv_params,
    .n_params = AF_ARRAY_LEN(csv_params),
    .config_size = sizeof(csv_config),
    .batch_size = 1,
    .create = csv_create,
    .next = csv_next,
    .destroy = csv_destroy,
};

/* ---------------------------------------------------------------- jsonl */

typedef struct jsonl_config {
  char *path;
} jsonl_config;

typedef struct jsonl_source {
  FILE *fp;
  int is_stdin;
  char *name; /* for messages */
  char *dir;  /* NULL for stdin: relative paths stay relative to the cwd */
  char *line;
  size_t cap;
  int64_t lineno;
} jsonl_source;

static int jsonl_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const jsonl_config *c = config;
  jsonl_source *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  if (!c->path || !strcmp(c->path, "-")) {
    s->fp = stdin;
    s->is_stdin = 1;
    s->name = strdup("stdin");
    return s->name ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
  }
  char *base = ctx && ctx->pipeline_path ? af_path_dirname(ctx->pipeline_path) : NULL;
  s->name = af_path_join(base, c->path);
  free(base);
  if (!s->name || !(s->dir = af_path_dirname(s->name))) return af_err(AF_ERR_NOMEM, "out of memory");
  if (!(s->fp = fopen(s->name, "r")))
    return af_err(AF_ERR_CONFIG, "%s: JSON Lines manifest: %s", s->name, strerror(errno));
  return 0;
}

/* Scalar JSON values as metadata text: strings as is, the rest as JSON. */
static char *meta_text(const cJSON *v) {
  if (cJSON_IsString(v)) return strdup(v->valuestring);
  return cJSON_PrintUnformatted(v);
}

static af_flow jsonl_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  jsonl_source *s = self;
  ssize_t len;
  while ((len = getline(&s->line, &s->cap, s->fp)) >= 0) {
    s->lineno++;
    while (len > 0 && (s->line[len - 1] == '\n' || s->line[len - 1] == '\r')) s->line[--len] = 0;
    size_t sp = strspn(s->line, " \t");
    if (s->line[sp] == 0) continue;
    char where[64];
    snprintf(where, sizeof where, "%s:%lld", s->name, (long long)s->lineno);
    cJSON *obj = cJSON_ParseWithLength(s->line, (size_t)len);
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(obj, "path");
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(obj, "id");
    char *idtext = jid && !cJSON_IsNull(jid) ? meta_text(jid) : NULL;
    const char *rel = cJSON_IsString(jp) ? jp->valuestring : NULL;
    char *full = rel && *rel ? af_path_join(s->dir, rel) : NULL;
    af_item *it = af_item_new(idtext && *idtext ? idtext : rel && *rel ? rel : where, full);
    free(full);
    free(idtext);
    int oom = !it;
    if (it && !cJSON_IsObject(obj))
      af_item_fail(it, ctx->instance, "%s: not a JSON object", where);
    else if (it && (!rel || !*rel))
      af_item_fail(it, ctx->instance, "%s: no \"path\" string", where);
    for (const cJSON *v = it && obj ? obj->child : NULL; v && !oom; v = v->next) {
      if (!v->string || !strcmp(v->string, "path") || !strcmp(v->string, "id")) continue;
      char *t = meta_text(v);
      oom = !t || af_item_set_meta(it, v->string, t) != 0;
      free(t);
    }
    cJSON_Delete(obj);
    if (oom) {
      af_item_free(it);
      af_err(AF_ERR_NOMEM, "out of memory");
      return AF_FLOW_ERROR;
    }
    *out = it;
    return AF_FLOW_OK;
  }
  return AF_FLOW_EOS;
}

static void jsonl_destroy(void *self) {
  jsonl_source *s = self;
  if (!s) return;
  if (s->fp && !s->is_stdin) fclose(s->fp);
  free(s->name);
  free(s->dir);
  free(s->line);
  free(s);
}

static const af_param jsonl_params[] = {
    {"path", AF_PARAM_STRING, offsetof(jsonl_config, path), "-", 0, 0, NULL,
     "JSON Lines file ('-' = stdin); objects with \"path\", optional \"id\", other keys as metadata", 0},
};

const af_stage_desc af_stage_src_jsonl = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "jsonl",
    .doc = "JSON Lines records from stdin or a file",
    .kind = AF_STAGE_SOURCE,
    .params = jsonl_params,
    .n_params = AF_ARRAY_LEN(jsonl_params),
    .config_size = sizeof(jsonl_config),
    .batch_size = 1,
    .create = jsonl_create,
    .next = jsonl_next,
    .destroy = jsonl_destroy,
};
