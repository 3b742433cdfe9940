/* `jsonl` sink: one JSON object per item and line, ok and error items alike
 * (docs/record.schema.json, schema_version 1):
 *   {"schema_version", "id", "path", "status": "ok"|"error", "error",
 *    "error_stage", "question", "prompt", "language" (when a stage produced
 *    them: the llm stage does), "meta", "outputs" (texts; label outputs as
 *    their JSON arrays), "tensors" (dtype +
 *    shape, values for `values:` ones), "timings" (seconds per stage),
 *    "provenance"}
 * provenance: record (default) puts the engine's whole block in every record
 * {artflow, model, model_name, model_weight_type, model_sha256, demo, ...,
 *  pipeline, pipeline_sha256, device, device_selector, profile, batches,
 *  params, time}; run writes it once per run as a line of the run manifest
 * (`manifest:`, default <path>.runs.jsonl) and each record names the run
 * {"run_id", "manifest", "time"}; none leaves it out.
 * Text that is not valid UTF-8 is written with U+FFFD for each bad byte, and
 * an id or path that is not gets "id_bytes" / "path_bytes" (percent-encoded).
 * `path: "-"` writes to standard output (logs stay on stderr).
 * A batch is written with one write(2) on an O_APPEND fd (iofile.h), so each
 * line is whole or absent.  Under --resume the file is kept, a torn last line
 * cut, and items whose id is already in the file are not written again. */
#include <cjson/cJSON.h>
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

#define RECORD_SCHEMA_VERSION 1

/* provenance: none|record|run, and the old boolean spellings (false = none,
 * true = record; still accepted, see docs/pipeline-io.md) */
enum { PROV_NONE, PROV_RECORD, PROV_RUN, PROV_TRUE, PROV_FALSE };

typedef struct jsonl_sink_config {
  char *path;
  int fsync;
  int provenance;
  int hash_model;
  af_strlist values;
  char *manifest;
} jsonl_sink_config;

typedef struct jsonl_sink {
  const jsonl_sink_config *cfg;
  int mode;      /* PROV_NONE, PROV_RECORD or PROV_RUN */
  int to_stdout; /* path "-" */
  af_appendfile *file;
  af_idset *written; /* ids already in the file (resume) */
  char *prov;        /* provenance object without its closing "time" and braces */
  char run_id[17];   /* provenance: run */
  char *manifest;    /* provenance: run, the manifest file (resolved) */
  af_buf buf;
} jsonl_sink;

/* Collects the id of one existing record (resume).  Records written here
 * start with {"id":"...", so only that string is parsed (a full parse of a
 * large file costs seconds); other lines get a full parse. */
static int scan_id(const char *line, size_t len, void *user) {
  jsonl_sink *s = user;
  static const char key[] = "{\"id\":\"";
  const char *k = len > sizeof key && !memcmp(line, key, sizeof key - 1) ? line + 1 : NULL;
  size_t h = k ? sizeof key - 1 : 0, e = h;
  cJSON *o = NULL;
  const cJSON *id = NULL;
  if (k) {
    while (e < len && line[e] != '"') e += line[e] == '\\' ? 2 : 1;
    if (e < len) id = o = cJSON_ParseWithLength(line + h - 1, e - h + 2);
  }
  /* an id that was not UTF-8 is exact only in id_bytes (U+FFFD in "id") */
  if (!id || (cJSON_IsString(id) && strstr(id->valuestring, "\xEF\xBF\xBD"))) {
    cJSON_Delete(o);
    o = cJSON_ParseWithLength(line, len);
    id = cJSON_GetObjectItemCaseSensitive(o, "id_bytes");
    if (cJSON_IsString(id)) {
      size_t n = af_id_unescape(id->valuestring, strlen(id->valuestring));
      int rc = af_idset_add(s->written, id->valuestring, n);
      cJSON_Delete(o);
      return rc;
    }
    id = cJSON_GetObjectItemCaseSensitive(o, "id");
  }
  int rc = cJSON_IsString(id) ? af_idset_add(s->written, id->valuestring, strlen(id->valuestring)) : 0;
  cJSON_Delete(o);
  return rc;
}

static void utc_now(char now[32]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(now, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* the engine's provenance block, kept open ("...}" -> "...") so that each
 * record appends its own time */
static int take_provenance(jsonl_sink *s, const af_stage_ctx *ctx) {
  const char *p =
      ctx->provenance ? ctx->provenance(ctx, s->cfg->hash_model ? AF_PROVENANCE_MODEL_DIGEST : 0) : NULL;
  if (!p)
    return af_error_code() ? af_error_code() : af_err(AF_ERR_INVALID, "jsonl: no provenance from the engine");
  size_t n = strlen(p);
  if (!(s->prov = malloc(n))) return af_err(AF_ERR_NOMEM, "out of memory");
  memcpy(s->prov, p, n - 1);
  s->prov[n - 1] = 0;
  return 0;
}

/* provenance: run -- one line per run in the manifest:
 * {"schema_version", "run_id", "started", "records", "provenance"}; the run id
 * is 16 hex digits of the SHA-256 of the provenance, the start time and the
 * process id, so two runs of the same pipeline get different ids. */
static int write_manifest(jsonl_sink *s, const af_stage_ctx *ctx) {
  char now[32], hex[65], seed[64];
  utc_now(now);
  snprintf(seed, sizeof seed, "%s %ld", now, (long)getpid());
  af_buf b = {0};
  af_buf_puts(&b, s->prov);
  af_buf_puts(&b, seed);
  af_sha256_hex(b.p ? b.p : "", b.n, hex);
  memcpy(s->run_id, hex, 16);
  s->run_id[16] = 0;
  b.n = 0;
  af_buf_puts(&b, "{\"schema_version\":");
  char v[16];
  snprintf(v, sizeof v, "%d", RECORD_SCHEMA_VERSION);
  af_buf_puts(&b, v);
  af_buf_puts(&b, ",\"run_id\":\"");
  af_buf_puts(&b, s->run_id);
  af_buf_puts(&b, "\",\"started\":\"");
  af_buf_puts(&b, now);
  af_buf_puts(&b, "\",\"records\":");
  cJSON *rec = cJSON_CreateString(s->to_stdout ? "-" : s->cfg->path);
  char *rt = rec ? cJSON_PrintUnformatted(rec) : NULL;
  cJSON_Delete(rec);
  af_buf_puts(&b, rt ? rt : "null");
  free(rt);
  af_buf_puts(&b, ",\"provenance\":");
  af_buf_puts(&b, s->prov);
  af_buf_puts(&b, "}}\n");
  af_appendfile *f = NULL;
  int rc =
      b.oom ? af_err(AF_ERR_NOMEM, "out of memory") : af_appendfile_open(s->manifest, ctx->resume, 1, &f);
  if (!rc) rc = af_appendfile_write(f, b.p, b.n);
  int rc2 = af_appendfile_close(f);
  af_buf_free(&b);
  return rc ? rc : rc2;
}

/* the manifest's path: `manifest:`, else <path>.runs.jsonl, else (standard
 * output) next to the run journal */
static int manifest_path(jsonl_sink *s, const af_stage_ctx *ctx) {
  const char *base = s->cfg->manifest ? NULL : s->to_stdout ? ctx->journal_path : s->cfg->path;
  if (s->cfg->manifest) {
    s->manifest = strdup(s->cfg->manifest);
  } else {
    if (!base) base = "artflow";
    size_t n = strlen(base);
    if (s->to_stdout && n > 8 && !strcmp(base + n - 8, ".journal")) n -= 8;
    if ((s->manifest = malloc(n + 12))) snprintf(s->manifest, n + 12, "%.*s.runs.jsonl", (int)n, base);
  }
  return s->manifest ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

static int jsonl_create(const af_stage_ctx *ctx, const void *config, void **self) {
  jsonl_sink *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = config;
  s->mode = s->cfg->provenance == PROV_TRUE    ? PROV_RECORD
            : s->cfg->provenance == PROV_FALSE ? PROV_NONE
                                               : s->cfg->provenance;
  s->to_stdout = !strcmp(s->cfg->path, "-");
  int rc;
  char *dir = af_path_dirname(s->cfg->path);
  rc = dir ? (s->to_stdout ? 0 : af_mkdirs(dir)) : af_err(AF_ERR_NOMEM, "out of memory");
  free(dir);
  if (rc) return rc;
  if (!(s->written = af_idset_new())) return af_err(AF_ERR_NOMEM, "out of memory");
  if (ctx->resume && !s->to_stdout && (rc = af_lines_scan(s->cfg->path, scan_id, s))) return rc;
  if ((rc = af_appendfile_open(s->cfg->path, ctx->resume, (af_fsync_mode)s->cfg->fsync, &s->file))) return rc;
  if (s->mode != PROV_NONE && (rc = take_provenance(s, ctx))) return rc;
  if (s->mode == PROV_RUN && ((rc = manifest_path(s, ctx)) || (rc = write_manifest(s, ctx)))) return rc;
  return 0;
}

static cJSON *tensor_json(const af_tensor *t, int with_values) {
  cJSON *o = cJSON_CreateObject(), *shape = cJSON_AddArrayToObject(o, "shape");
  cJSON_AddStringToObject(o, "dtype", af_dtype_name(t->dtype));
  size_t count = 1;
  for (int d = 0; d < t->ndim; d++) {
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    count *= (size_t)t->shape[d];
  }
  if (with_values) {
    cJSON *v = cJSON_AddArrayToObject(o, "values");
    for (size_t i = 0; i < count; i++) {
      double x = t->dtype == AF_DTYPE_F32   ? ((const float *)t->data)[i]
                 : t->dtype == AF_DTYPE_I32 ? ((const int32_t *)t->data)[i]
                                            : ((const uint8_t *)t->data)[i];
      cJSON_AddItemToArray(v, cJSON_CreateNumber(x));
    }
  }
  return o;
}

static int wants_values(const jsonl_sink_config *c, const char *name) {
  for (int i = 0; i < c->values.n; i++)
    if (!strcmp(c->values.v[i], name)) return 1;
  return 0;
}

/* texts that are facts about the record rather than results: top-level */
static int is_top_text(const char *name) {
  return !strcmp(name, "question") || !strcmp(name, "prompt") || !strcmp(name, "language");
}

/* a label output (stages/outputs.h: a JSON array of {label, ...}) goes in
 * as that array, so that outputs.style[0].label is the best style; 1 when v
 * was one */
static int add_labels(cJSON *outs, const char *name, const char *v) {
  af_label *l = NULL;
  const char *why;
  int n = v[0] == '[' ? af_labels_parse(v, &l, &why) : -1;
  af_labels_free(l, n > 0 ? n : 0);
  cJSON *a = n >= 0 ? cJSON_Parse(v) : NULL;
  return a && cJSON_AddItemToObject(outs, name, a) ? 1 : (cJSON_Delete(a), 0);
}

/* Appends one record line to s->buf.  0 or AF_ERR_NOMEM. */
static int put_record(jsonl_sink *s, const af_item *it, const char *now) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return af_err(AF_ERR_NOMEM, "out of memory");
  af_json_add_text(o, "id", it->id, "id_bytes"); /* first: `grep '^{"id":"x"'` finds a record */
  cJSON_AddNumberToObject(o, "schema_version", RECORD_SCHEMA_VERSION);
  if (it->path)
    af_json_add_text(o, "path", it->path, "path_bytes");
  else
    cJSON_AddNullToObject(o, "path");
  int ok = it->status == AF_ITEM_OK;
  cJSON_AddStringToObject(o, "status", ok ? "ok" : "error");
  if (ok)
    cJSON_AddNullToObject(o, "error");
  else
    af_json_add_text(o, "error", it->error ? it->error : "unknown error", NULL);
  if (!ok && it->error_stage) af_json_add_text(o, "error_stage", it->error_stage, NULL);
  for (int i = 0; i < it->n_texts; i++)
    if (is_top_text(it->texts[i].key)) af_json_add_text(o, it->texts[i].key, it->texts[i].value, NULL);
  cJSON *meta = cJSON_AddObjectToObject(o, "meta");
  for (int i = 0; i < it->n_meta; i++) af_json_add_text(meta, it->meta[i].key, it->meta[i].value, NULL);
  cJSON *outs = cJSON_AddObjectToObject(o, "outputs");
  for (int i = 0; i < it->n_texts; i++)
    if (!is_top_text(it->texts[i].key) && !add_labels(outs, it->texts[i].key, it->texts[i].value))
      af_json_add_text(outs, it->texts[i].key, it->texts[i].value, NULL);
  cJSON *tens = cJSON_AddObjectToObject(o, "tensors");
  for (int i = 0; i < it->n_tensors; i++)
    cJSON_AddItemToObject(tens, it->tensors[i].name,
                          tensor_json(&it->tensors[i], wants_values(s->cfg, it->tensors[i].name)));
  cJSON *tim = cJSON_AddObjectToObject(o, "timings");
  for (int i = 0; i < it->n_timings; i++)
    cJSON_AddNumberToObject(tim, it->timings[i].stage, it->timings[i].seconds);
  if (s->mode == PROV_RUN) {
    cJSON *pr = cJSON_AddObjectToObject(o, "provenance");
    cJSON_AddStringToObject(pr, "run_id", s->run_id);
    const char *slash = strrchr(s->manifest, '/');
    af_json_add_text(pr, "manifest", slash ? slash + 1 : s->manifest, NULL);
    cJSON_AddStringToObject(pr, "time", now);
  }
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!text) return af_err(AF_ERR_NOMEM, "out of memory");
  if (s->mode == PROV_RECORD) {
    text[strlen(text) - 1] = 0; /* reopen the record for the provenance block */
    af_buf_puts(&s->buf, text);
    af_buf_puts(&s->buf, ",\"provenance\":");
    af_buf_puts(&s->buf, s->prov);
    af_buf_puts(&s->buf, s->prov[1] ? ",\"time\":\"" : "\"time\":\"");
    af_buf_puts(&s->buf, now);
    af_buf_puts(&s->buf, "\"}}\n");
  } else {
    af_buf_puts(&s->buf, text);
    af_buf_puts(&s->buf, "\n");
  }
  free(text);
  return s->buf.oom ? af_err(AF_ERR_NOMEM, "out of memory") : 0;
}

static af_flow jsonl_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  jsonl_sink *s = self;
  char now[32];
  utc_now(now);
  s->buf.n = 0;
  for (int i = 0; i < n; i++) {
    if (af_idset_has(s->written, items[i]->id)) continue; /* written before a crash */
    if (put_record(s, items[i], now)) return AF_FLOW_ERROR;
  }
  return af_appendfile_write(s->file, s->buf.p, s->buf.n) ? AF_FLOW_ERROR : AF_FLOW_OK;
}

static af_flow jsonl_flush(void *self, const af_stage_ctx *ctx) {
  jsonl_sink *s = self;
  if (s->file && s->file->fsync != AF_FSYNC_NONE && fsync(s->file->fd) != 0) {
    af_err(AF_ERR_IO, "%s: fsync failed", s->cfg->path);
    return AF_FLOW_ERROR;
  }
  return AF_FLOW_OK;
}

static void jsonl_destroy(void *self) {
  jsonl_sink *s = self;
  if (!s) return;
  (void)af_appendfile_close(s->file);
  af_idset_free(s->written);
  free(s->prov);
  free(s->manifest);
  af_buf_free(&s->buf);
  free(s);
}

static const af_param jsonl_params[] = {
    {"path", AF_PARAM_STRING, offsetof(jsonl_sink_config, path), NULL, 0, 0, NULL,
     "output file (relative to the pipeline file; '-' = standard output); the journal goes next to it",
     AF_PARAM_REQUIRED | AF_PARAM_PATH},
    {"fsync", AF_PARAM_ENUM, offsetof(jsonl_sink_config, fsync), "batch", 0, 0, AF_FSYNC_CHOICES,
     "when to force records to disk: never, after every batch, at the end", AF_PARAM_RUNTIME},
    {"provenance", AF_PARAM_ENUM, offsetof(jsonl_sink_config, provenance), "record", 0, 0,
     "none|record|run|true|false",
     "record: the provenance block (version, model, digests, device, batches, parameters, time) in every "
     "record; run: once per run in the manifest, records name the run; none (true/false: old spellings of "
     "record/none)",
     0},
    {"hash_model", AF_PARAM_BOOL, offsetof(jsonl_sink_config, hash_model), "true", 0, 0, NULL,
     "compute the model file's SHA-256 once at start (reads the whole file)", AF_PARAM_RUNTIME},
    {"values", AF_PARAM_STRLIST, offsetof(jsonl_sink_config, values), NULL, 0, 0, NULL,
     "tensors whose values are written in the record (e.g. small embeddings)", 0},
    {"manifest", AF_PARAM_STRING, offsetof(jsonl_sink_config, manifest), NULL, 0, 0, NULL,
     "provenance: run -- the run manifest, one JSON line per run (default <path>.runs.jsonl)", AF_PARAM_PATH},
};

const af_stage_desc af_stage_jsonl = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "jsonl",
    .doc = "one JSON object per item per line, with provenance; append-only, resumable",
    .kind = AF_STAGE_SINK,
    .params = jsonl_params,
    .n_params = AF_ARRAY_LEN(jsonl_params),
    .config_size = sizeof(jsonl_sink_config),
    .batch_size = 16,
    .create = jsonl_create,
    .process = jsonl_process,
    .flush = jsonl_flush,
    .destroy = jsonl_destroy,
};
