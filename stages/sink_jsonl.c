/* `jsonl` sink: one JSON object per item and line, ok and error items alike:
 *   {"id", "path", "status": "ok"|"error", "error", "error_stage", "meta",
 *    "outputs" (texts), "tensors" (dtype + shape, values for `values:` ones),
 *    "timings" (seconds per stage), "provenance" {artflow, model,
 *    model_sha256, demo (the model's artflow.demo note, when it has one),
 *    llm_model + llm_model_sha256 (two-file models),
 *    pipeline, pipeline_sha256, device, device_selector,
 *    profile {name, file, why} (the device profile in effect), params, time}}
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

typedef struct jsonl_sink_config {
  char *path;
  int fsync;
  int provenance;
  int hash_model;
  af_strlist values;
} jsonl_sink_config;

typedef struct jsonl_sink {
  const jsonl_sink_config *cfg;
  af_appendfile *file;
  af_idset *written; /* ids already in the file (resume) */
  char *prov;        /* provenance object without its closing "time" and braces */
  af_buf buf;
} jsonl_sink;

/* Collects the id of one existing record (resume).  Records written here
 * start with {"id":"...", so only that string is parsed (a full parse of a
 * large file costs seconds); other lines get a full parse. */
static int scan_id(const char *line, size_t len, void *user) {
  jsonl_sink *s = user;
  static const char head[] = "{\"id\":\"";
  size_t h = sizeof head - 1, e = h;
  cJSON *o = NULL;
  const cJSON *id = NULL;
  if (len > h && !memcmp(line, head, h)) {
    while (e < len && line[e] != '"') e += line[e] == '\\' ? 2 : 1;
    if (e < len) id = o = cJSON_ParseWithLength(line + h - 1, e - h + 2);
  }
  if (!id) {
    cJSON_Delete(o);
    o = cJSON_ParseWithLength(line, len);
    id = cJSON_GetObjectItemCaseSensitive(o, "id");
  }
  int rc = cJSON_IsString(id) ? af_idset_add(s->written, id->valuestring, strlen(id->valuestring)) : 0;
  cJSON_Delete(o);
  return rc;
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

static int jsonl_create(const af_stage_ctx *ctx, const void *config, void **self) {
  jsonl_sink *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = config;
  int rc;
  char *dir = af_path_dirname(s->cfg->path);
  rc = dir ? af_mkdirs(dir) : af_err(AF_ERR_NOMEM, "out of memory");
  free(dir);
  if (rc) return rc;
  if (!(s->written = af_idset_new())) return af_err(AF_ERR_NOMEM, "out of memory");
  if (ctx->resume && (rc = af_lines_scan(s->cfg->path, scan_id, s))) return rc;
  if ((rc = af_appendfile_open(s->cfg->path, ctx->resume, (af_fsync_mode)s->cfg->fsync, &s->file))) return rc;
  if (s->cfg->provenance && (rc = take_provenance(s, ctx))) return rc;
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

/* Appends one record line to s->buf.  0 or AF_ERR_NOMEM. */
static int put_record(jsonl_sink *s, const af_item *it, const char *now) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return af_err(AF_ERR_NOMEM, "out of memory");
  cJSON_AddStringToObject(o, "id", it->id);
  if (it->path)
    cJSON_AddStringToObject(o, "path", it->path);
  else
    cJSON_AddNullToObject(o, "path");
  int ok = it->status == AF_ITEM_OK;
  cJSON_AddStringToObject(o, "status", ok ? "ok" : "error");
  if (ok)
    cJSON_AddNullToObject(o, "error");
  else
    cJSON_AddStringToObject(o, "error", it->error ? it->error : "unknown error");
  if (!ok && it->error_stage) cJSON_AddStringToObject(o, "error_stage", it->error_stage);
  cJSON *meta = cJSON_AddObjectToObject(o, "meta");
  for (int i = 0; i < it->n_meta; i++) cJSON_AddStringToObject(meta, it->meta[i].key, it->meta[i].value);
  cJSON *outs = cJSON_AddObjectToObject(o, "outputs");
  for (int i = 0; i < it->n_texts; i++) cJSON_AddStringToObject(outs, it->texts[i].key, it->texts[i].value);
  cJSON *tens = cJSON_AddObjectToObject(o, "tensors");
  for (int i = 0; i < it->n_tensors; i++)
    cJSON_AddItemToObject(tens, it->tensors[i].name,
                          tensor_json(&it->tensors[i], wants_values(s->cfg, it->tensors[i].name)));
  cJSON *tim = cJSON_AddObjectToObject(o, "timings");
  for (int i = 0; i < it->n_timings; i++)
    cJSON_AddNumberToObject(tim, it->timings[i].stage, it->timings[i].seconds);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!text) return af_err(AF_ERR_NOMEM, "out of memory");
  if (s->prov) {
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
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
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
  af_buf_free(&s->buf);
  free(s);
}

static const af_param jsonl_params[] = {
    {"path", AF_PARAM_STRING, offsetof(jsonl_sink_config, path), NULL, 0, 0, NULL,
     "output file (relative to the pipeline file); the journal goes next to it",
     AF_PARAM_REQUIRED | AF_PARAM_PATH},
    {"fsync", AF_PARAM_ENUM, offsetof(jsonl_sink_config, fsync), "batch", 0, 0, AF_FSYNC_CHOICES,
     "when to force records to disk: never, after every batch, at the end", AF_PARAM_RUNTIME},
    {"provenance", AF_PARAM_BOOL, offsetof(jsonl_sink_config, provenance), "true", 0, 0, NULL,
     "add the provenance block (version, model and pipeline digests, device, parameters, time)", 0},
    {"hash_model", AF_PARAM_BOOL, offsetof(jsonl_sink_config, hash_model), "true", 0, 0, NULL,
     "compute the model file's SHA-256 once at start (reads the whole file)", AF_PARAM_RUNTIME},
    {"values", AF_PARAM_STRLIST, offsetof(jsonl_sink_config, values), NULL, 0, 0, NULL,
     "tensors whose values are written in the record (e.g. small embeddings)", 0},
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
