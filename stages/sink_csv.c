/* `csv` sink: one row per item with flattened columns, RFC 4180 quoting.
 *
 * Columns: `columns:` when given, else id, path, status, error, error_stage
 * followed by the metadata keys and text outputs under their own names
 * (`title`, `text`; a label output as "awe (0.712); fear (0.178)"), then
 * tensor.<name> (dtype and shape) and time.<stage>,
 * for every key seen in the first batch, in first-seen order (a CSV file has
 * one header; later keys not in it are left out -- name them in `columns:` to
 * be sure).  A metadata key that is also a text output's name or a core
 * column is written as meta.<key>.  `column_names: prefixed` gives the old
 * header (meta.<key>, text.<name>; deprecated).  `bom: true` starts the file
 * with a UTF-8 byte-order mark so spreadsheet programs read it as UTF-8.
 * Under --resume the existing header is reused, a torn last row cut, and ids
 * already in the file are not written again.  Rows of a batch go out in one
 * write(2), so a row is whole or absent. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/csv.h"
#include "stages/outputs.h"

typedef struct csv_sink_config {
  char *path;
  int fsync;
  af_strlist columns;
  int bom;
  int prefixed; /* column_names: readable (0) | prefixed (1, deprecated) */
} csv_sink_config;

typedef struct csv_sink {
  const csv_sink_config *cfg;
  af_appendfile *file;
  af_idset *written;
  char **cols;
  int n_cols, cap_cols;
  af_buf buf;
} csv_sink;

static const char *core_cols[] = {"id", "path", "status", "error", "error_stage"};

static int add_col(csv_sink *s, const char *prefix, const char *name) {
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s%s", prefix, name);
  for (int i = 0; i < s->n_cols; i++)
    if (!strcmp(s->cols[i], tmp)) return 0;
  if (s->n_cols == s->cap_cols) {
    int cap = s->cap_cols ? s->cap_cols * 2 : 16;
    char **c = realloc(s->cols, (size_t)cap * sizeof *c);
    if (!c) return af_err(AF_ERR_NOMEM, "out of memory");
    s->cols = c;
    s->cap_cols = cap;
  }
  if (!(s->cols[s->n_cols] = strdup(tmp))) return af_err(AF_ERR_NOMEM, "out of memory");
  s->n_cols++;
  return 0;
}

/* Reads the header and the ids of an existing file (resume) and sets *good
 * to the offset just past the last complete row.  A row is complete when it
 * ends with a line break outside quotes: a quoted field may hold line breaks,
 * so cutting at the last '\n' would not be enough. */
static int scan_existing(csv_sink *s, int64_t *good) {
  *good = 0;
  FILE *fp = fopen(s->cfg->path, "rb");
  if (!fp) return 0;
  int rc = 0;
  af_csv_reader *r = af_csv_reader_new(fp, s->cfg->path);
  if (!r) {
    fclose(fp);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  char **f;
  int n, first = 1, got;
  int64_t line;
  while (!rc && (got = af_csv_next(r, &f, &n, &line)) == 1) {
    long end = ftell(fp);
    char last = 0;
    if (end <= 0 || pread(fileno(fp), &last, 1, end - 1) != 1 || last != '\n') break; /* torn */
    if (first) { /* a byte-order mark is not part of the first name */
      for (int i = 0; i < n && !rc; i++)
        rc = add_col(s, "", i == 0 && !strncmp(f[0], "\xEF\xBB\xBF", 3) ? f[0] + 3 : f[i]);
      first = 0;
    } else if (n > 0) {
      rc = af_idset_add(s->written, f[0], strlen(f[0]));
    }
    *good = end;
  }
  if (!rc) af_error_clear(); /* an unterminated quote is a torn row, not an error */
  af_csv_reader_free(r);
  fclose(fp);
  return rc;
}

static int csv_create(const af_stage_ctx *ctx, const void *config, void **self) {
  csv_sink *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = config;
  if (s->cfg->prefixed && ctx->log)
    ctx->log(ctx, AF_LOG_WARN,
             "column_names: prefixed is deprecated: the default header names metadata and text columns "
             "by their own names (title, text); meta.K and text.K still work in columns:");
  char *dir = af_path_dirname(s->cfg->path);
  int rc = dir ? af_mkdirs(dir) : af_err(AF_ERR_NOMEM, "out of memory");
  free(dir);
  if (rc) return rc;
  if (!(s->written = af_idset_new())) return af_err(AF_ERR_NOMEM, "out of memory");
  int64_t good = 0;
  if (ctx->resume && (rc = scan_existing(s, &good))) return rc;
  if (s->n_cols == 0)
    for (int i = 0; i < s->cfg->columns.n && !rc; i++) rc = add_col(s, "", s->cfg->columns.v[i]);
  if (rc) return rc;
  if ((rc = af_appendfile_open(s->cfg->path, ctx->resume, (af_fsync_mode)s->cfg->fsync, &s->file))) return rc;
  if (ctx->resume && s->file->size != good && (rc = af_appendfile_truncate(s->file, good))) return rc;
  return 0;
}

static void tensor_text(const af_tensor *t, char *buf, size_t n) {
  size_t o = (size_t)snprintf(buf, n, "%s[", af_dtype_name(t->dtype));
  for (int d = 0; d < t->ndim && o < n; d++)
    o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? "," : "", (long long)t->shape[d]);
  if (o < n) snprintf(buf + o, n - o, "]");
}

/* The value of column `col` for item `it` (may use buf), or NULL = empty. */
static const char *cell(const af_item *it, const char *col, char *buf, size_t n) {
  int ok = it->status == AF_ITEM_OK;
  if (!strcmp(col, "id")) return it->id;
  if (!strcmp(col, "path")) return it->path;
  if (!strcmp(col, "status")) return ok ? "ok" : "error";
  if (!strcmp(col, "error")) return ok ? NULL : it->error;
  if (!strcmp(col, "error_stage")) return ok ? NULL : it->error_stage;
  if (!strncmp(col, "meta.", 5)) return af_item_meta(it, col + 5);
  if (!strncmp(col, "text.", 5)) return af_item_text(it, col + 5);
  if (!strncmp(col, "tensor.", 7)) {
    const af_tensor *t = af_item_tensor(it, col + 7);
    if (!t) return NULL;
    tensor_text(t, buf, n);
    return buf;
  }
  if (!strncmp(col, "time.", 5)) {
    for (int i = 0; i < it->n_timings; i++)
      if (!strcmp(it->timings[i].stage, col + 5)) {
        snprintf(buf, n, "%.6f", it->timings[i].seconds);
        return buf;
      }
    return NULL;
  }
  /* a bare name: metadata first, then a text output */
  const char *v = af_item_meta(it, col);
  return v ? v : af_item_text(it, col);
}

static int is_core(const char *name) {
  for (int i = 0; i < AF_ARRAY_LEN(core_cols); i++)
    if (!strcmp(core_cols[i], name)) return 1;
  return 0;
}

static int is_text_of(af_item **items, int n, const char *name) {
  for (int k = 0; k < n; k++)
    if (af_item_text(items[k], name)) return 1;
  return 0;
}

static int is_meta_of(af_item **items, int n, const char *name) {
  for (int k = 0; k < n; k++)
    if (af_item_meta(items[k], name)) return 1;
  return 0;
}

static int choose_columns(csv_sink *s, af_item **items, int n) {
  int rc = 0, pre = s->cfg->prefixed;
  for (int i = 0; i < AF_ARRAY_LEN(core_cols) && !rc; i++) rc = add_col(s, "", core_cols[i]);
  for (int k = 0; k < n && !rc; k++) {
    const af_item *it = items[k];
    for (int i = 0; i < it->n_meta && !rc; i++) {
      const char *key = it->meta[i].key;
      /* a metadata key and a text output of the same name both keep their prefix */
      int clash = is_core(key) || is_text_of(items, n, key) || strchr(key, '.');
      rc = add_col(s, pre || clash ? "meta." : "", key);
    }
    for (int i = 0; i < it->n_texts && !rc; i++) {
      const char *key = it->texts[i].key;
      rc = add_col(s, pre || is_core(key) || strchr(key, '.') || is_meta_of(items, n, key) ? "text." : "",
                   key);
    }
    for (int i = 0; i < it->n_tensors && !rc; i++) rc = add_col(s, "tensor.", it->tensors[i].name);
    for (int i = 0; i < it->n_timings && !rc; i++) rc = add_col(s, "time.", it->timings[i].stage);
  }
  return rc;
}

/* a label output (stages/outputs.h) as a person reads it: "awe (0.712);
 * fear (0.178)", best first; NULL when v is not one (malloc'd) */
static char *labels_cell(const char *v) {
  af_label *l = NULL;
  const char *why;
  int n = v && v[0] == '[' ? af_labels_parse(v, &l, &why) : -1;
  if (n < 0) return NULL;
  af_buf b = {0};
  for (int i = 0; i < n; i++) {
    char p[48] = "";
    if (l[i].p == l[i].p) snprintf(p, sizeof p, " (%.3g)", l[i].p);
    af_buf_puts(&b, i ? "; " : "");
    af_buf_puts(&b, l[i].label);
    af_buf_puts(&b, p);
  }
  af_buf_put(&b, "", 1);
  af_labels_free(l, n);
  if (b.oom) af_buf_free(&b);
  return b.oom ? NULL : b.p;
}

static af_flow csv_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  csv_sink *s = self;
  s->buf.n = 0;
  if (s->file->size == 0) {
    /* the header goes out with the first rows: one write, nothing torn */
    if (s->n_cols == 0 && choose_columns(s, items, n)) return AF_FLOW_ERROR;
    if (s->cfg->bom) af_buf_put(&s->buf, "\xEF\xBB\xBF", 3);
    for (int i = 0; i < s->n_cols; i++) {
      if (i) af_buf_put(&s->buf, ",", 1);
      af_csv_put_field(&s->buf, s->cols[i]);
    }
    af_buf_put(&s->buf, "\r\n", 2);
  }
  char tmp[128];
  for (int k = 0; k < n; k++) {
    if (af_idset_has(s->written, items[k]->id)) continue;
    for (int i = 0; i < s->n_cols; i++) {
      if (i) af_buf_put(&s->buf, ",", 1);
      const char *v = cell(items[k], s->cols[i], tmp, sizeof tmp);
      char *lab = labels_cell(v);
      af_csv_put_field(&s->buf, lab ? lab : v);
      free(lab);
    }
    af_buf_put(&s->buf, "\r\n", 2);
  }
  if (s->buf.oom) {
    af_err(AF_ERR_NOMEM, "out of memory");
    return AF_FLOW_ERROR;
  }
  return af_appendfile_write(s->file, s->buf.p, s->buf.n) ? AF_FLOW_ERROR : AF_FLOW_OK;
}

static af_flow csv_flush(void *self, const af_stage_ctx *ctx) {
  csv_sink *s = self;
  if (s->file && s->file->fsync != AF_FSYNC_NONE && fsync(s->file->fd) != 0) {
    af_err(AF_ERR_IO, "%s: fsync failed", s->cfg->path);
    return AF_FLOW_ERROR;
  }
  return AF_FLOW_OK;
}

static void csv_destroy(void *self) {
  csv_sink *s = self;
  if (!s) return;
  (void)af_appendfile_close(s->file);
  af_idset_free(s->written);
  for (int i = 0; i < s->n_cols; i++) free(s->cols[i]);
  free(s->cols);
  af_buf_free(&s->buf);
  free(s);
}

static const af_param csv_params[] = {
    {"path", AF_PARAM_STRING, offsetof(csv_sink_config, path), NULL, 0, 0, NULL,
     "output file (relative to the pipeline file)", AF_PARAM_REQUIRED | AF_PARAM_PATH},
    {"fsync", AF_PARAM_ENUM, offsetof(csv_sink_config, fsync), "batch", 0, 0, AF_FSYNC_CHOICES,
     "when to force rows to disk: never, after every batch, at the end", AF_PARAM_RUNTIME},
    {"columns", AF_PARAM_STRLIST, offsetof(csv_sink_config, columns), NULL, 0, 0, NULL,
     "columns to write: id, path, status, error, error_stage, K (metadata, else text output), meta.K, "
     "text.K, tensor.K, time.STAGE (default: all seen in the first batch)",
     0},
    {"bom", AF_PARAM_BOOL, offsetof(csv_sink_config, bom), "false", 0, 0, NULL,
     "start a new file with a UTF-8 byte-order mark (spreadsheet programs then read it as UTF-8)", 0},
    {"column_names", AF_PARAM_ENUM, offsetof(csv_sink_config, prefixed), "readable", 0, 0,
     "readable|prefixed",
     "default header: readable (title, text) or prefixed (meta.title, text.text; deprecated)", 0},
};

const af_stage_desc af_stage_csv = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "csv",
    .doc = "one CSV row per item, flattened columns, RFC 4180 quoting; append-only, resumable",
    .kind = AF_STAGE_SINK,
    .params = csv_params,
    .n_params = AF_ARRAY_LEN(csv_params),
    .config_size = sizeof(csv_sink_config),
    .batch_size = 16,
    .create = csv_create,
    .process = csv_process,
    .flush = csv_flush,
    .destroy = csv_destroy,
};
