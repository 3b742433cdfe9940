/* The provenance block of a run: what produced its records (artflow version,
 * model and pipeline files with their digests, the model's own name and weight
 * type, the device actually used and what was asked for, the device profile in
 * effect, the batch each stage actually ran with, every stage's parameters).
 * Built once per run by the engine and handed to sinks through
 * ctx->provenance(), so no sink reaches into device or model internals. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cl/devprofile.h"
#include "cl/runtime.h"
#include "core/iofile.h"
#include "formats/gguf.h"
#include "pipeline/internal.h"

static const char *base_name(const char *p) {
  const char *s = p ? strrchr(p, '/') : NULL;
  return s ? s + 1 : p;
}

/* "<key>_name" (general.name) and "<key>_weight_type" (general.file_type as
 * "q4_0", ...), null when the file does not say */
static void add_model_facts(cJSON *o, const char *key, const char *path) {
  char k[64];
  af_gguf *g = NULL;
  const char *name = NULL, *type = NULL;
  if (!af_gguf_open(path, &g)) {
    if (af_gguf_get_str(g, "general.name", &name)) name = NULL;
    type = af_gguf_weight_type(g);
  }
  af_error_clear(); /* an unreadable file is reported by the stage that opens it */
  snprintf(k, sizeof k, "%s_name", key);
  if (name)
    cJSON_AddStringToObject(o, k, name);
  else
    cJSON_AddNullToObject(o, k);
  snprintf(k, sizeof k, "%s_weight_type", key);
  if (type)
    cJSON_AddStringToObject(o, k, type);
  else
    cJSON_AddNullToObject(o, k);
  af_gguf_close(g);
}

/* "model": name, "model_sha256" (with the digest), "demo" (the model's note) */
static int add_model(cJSON *o, const char *key, const char *path, int digest) {
  char k[64], hex[65], note[512];
  cJSON_AddStringToObject(o, key, base_name(path));
  add_model_facts(o, key, path);
  if (!strcmp(key, "model") && af_model_demo_note(path, note, sizeof note))
    cJSON_AddStringToObject(o, "demo", note);
  if (!digest) return 0;
  int rc = af_sha256_file(path, hex);
  if (rc) return rc;
  snprintf(k, sizeof k, "%s_sha256", key);
  cJSON_AddStringToObject(o, k, hex);
  return 0;
}

static void add_device(cJSON *o, const af_pipeline *p, const char *selector) {
  const af_cl *cl = p->cl;
  if (cl) { /* the device actually used, not just the selector that picked it */
    char dev[800];
    snprintf(dev, sizeof dev, "%s / %s (driver %s)", cl->info.platform, cl->info.name, cl->info.driver);
    cJSON_AddStringToObject(o, "device", dev);
  } else if (selector) {
    cJSON_AddStringToObject(o, "device", selector);
  } else {
    cJSON_AddNullToObject(o, "device");
  }
  /* what was asked (--device, ARTFLOW_DEVICE or device:), null = the default */
  if (selector)
    cJSON_AddStringToObject(o, "device_selector", selector);
  else
    cJSON_AddNullToObject(o, "device_selector");
  if (!cl || !cl->profile) return;
  /* the device profile in effect: its name, the most specific file, and which
   * files applied and which match rules fitted */
  const af_devprofile *pr = cl->profile;
  cJSON *po = cJSON_AddObjectToObject(o, "profile");
  if (!po) return;
  cJSON_AddStringToObject(po, "name", pr->name);
  if (pr->file[0])
    cJSON_AddStringToObject(po, "file", pr->file);
  else
    cJSON_AddNullToObject(po, "file");
  cJSON_AddStringToObject(po, "why", pr->why);
}

/* "settings_sha256": what `artflow merge` compares across shard outputs: the
 * resume settings' hash (pipeline/settings.c, the journal's "P" line) where
 * the build has them; else the SHA-256 of the parameters without the ones
 * that cannot change a record (batch sizes, fsync, hash_model) and of the
 * model file names.  {shard} templates are still unexpanded in both, so every
 * shard of one run has the same value. */
static void settings_digest(const af_pipeline *p, char hex[65]) {
#if __has_include("pipeline/settings.c")
  snprintf(hex, 65, "%s", af_pipeline_settings_hash(p));
#else
  cJSON *o = p->params_json ? cJSON_Parse(p->params_json) : NULL;
  cJSON *all[2] = {cJSON_GetObjectItemCaseSensitive(o, "stages"),
                   cJSON_GetObjectItemCaseSensitive(o, "sinks")};
  cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "source"), "batch");
  for (int k = 0; k < 2; k++)
    for (cJSON *e = all[k] ? all[k]->child : NULL; e; e = e->next) {
      cJSON_DeleteItemFromObjectCaseSensitive(e, "batch");
      cJSON_DeleteItemFromObjectCaseSensitive(e, "fsync");
      cJSON_DeleteItemFromObjectCaseSensitive(e, "hash_model");
    }
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  af_buf b = {0};
  af_buf_puts(&b, text ? text : "");
  af_buf_puts(&b, "\nmodel ");
  af_buf_puts(&b, p->model ? base_name(p->model) : "");
  af_buf_puts(&b, "\nllm_model ");
  af_buf_puts(&b, p->llm_model ? base_name(p->llm_model) : "");
  af_sha256_hex(b.p ? b.p : "", b.n, hex);
  af_buf_free(&b);
  free(text);
  cJSON_Delete(o);
#endif
}

static char *build(af_pipeline *p, int digest) {
  cJSON *o = cJSON_CreateObject();
  char *text = NULL;
  int rc = o ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) cJSON_AddStringToObject(o, "artflow", AF_VERSION);
  if (!rc && p->model)
    rc = add_model(o, "model", p->model, digest);
  else if (!rc)
    cJSON_AddNullToObject(o, "model");
  if (!rc && p->llm_model) rc = add_model(o, "llm_model", p->llm_model, digest); /* two-file models */
  if (!rc) {
    if (p->path) cJSON_AddStringToObject(o, "pipeline", base_name(p->path));
    cJSON_AddStringToObject(o, "pipeline_sha256", p->sha256);
    const char *sel = p->opt.device              ? p->opt.device
                      : getenv("ARTFLOW_DEVICE") ? getenv("ARTFLOW_DEVICE")
                                                 : p->device;
    add_device(o, p, sel);
    /* the batch each stage ran with: the device profile may have replaced
     * the configured one (params keep what the file said) */
    cJSON *batches = cJSON_AddObjectToObject(o, "batches");
    for (int i = 1; batches && i < p->n_inst; i++)
      cJSON_AddNumberToObject(batches, p->inst[i].name, p->inst[i].batch);
    cJSON *params = p->params_json ? cJSON_Parse(p->params_json) : NULL;
    if (params) cJSON_AddItemToObject(o, "params", params);
    char hex[65];
    settings_digest(p, hex);
    cJSON_AddStringToObject(o, "settings_sha256", hex);
    if (p->sharded) { /* artflow merge checks the shards against each other */
      cJSON *sh = cJSON_AddObjectToObject(o, "shard");
      cJSON_AddNumberToObject(sh, "index", p->shard.index);
      cJSON_AddNumberToObject(sh, "count", p->shard.count);
    }
    text = cJSON_PrintUnformatted(o);
    if (!text) af_err(AF_ERR_NOMEM, "out of memory");
  }
  cJSON_Delete(o);
  return text;
}

const char *af_pipeline_provenance(af_pipeline *p, unsigned what) {
  int digest = (what & AF_PROVENANCE_MODEL_DIGEST) != 0;
  pthread_mutex_lock(&p->mu);
  if (!p->prov[digest]) p->prov[digest] = build(p, digest);
  const char *r = p->prov[digest];
  pthread_mutex_unlock(&p->mu);
  return r;
}
