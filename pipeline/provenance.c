/* The provenance block of a run: what produced its records (artflow version,
 * model and pipeline files with their digests, the device actually used and
 * what selected it, the device profile in effect, every stage's parameters).
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

/* "model": name, "model_sha256" (with the digest), "demo" (the model's note) */
static int add_model(cJSON *o, const char *key, const char *path, int digest) {
  char k[64], hex[65], note[512];
  cJSON_AddStringToObject(o, key, base_name(path));
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
  if (selector) cJSON_AddStringToObject(o, "device_selector", selector);
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
    cJSON *params = p->params_json ? cJSON_Parse(p->params_json) : NULL;
    if (params) cJSON_AddItemToObject(o, "params", params);
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
