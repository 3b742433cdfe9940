/* Shared by the annotations and xmp sinks: label outputs, targets, the
 * software agent.  See outputs.h. */
#include "stages/outputs.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/npy.h"

static char *dup_str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (cJSON_IsString(v)) return strdup(v->valuestring);
  if (cJSON_IsNumber(v)) { /* vocabulary ids are sometimes numbers */
    char b[64];
    snprintf(b, sizeof b, "%.17g", v->valuedouble);
    return strdup(b);
  }
  return NULL;
}

static double num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

void af_labels_free(af_label *l, int n) {
  for (int i = 0; l && i < n; i++) free(l[i].label), free(l[i].id), free(l[i].uri);
  free(l);
}

int af_labels_parse(const char *text, af_label **out, const char **why) {
  *out = NULL;
  *why = NULL;
  cJSON *a = cJSON_Parse(text);
  if (!cJSON_IsArray(a)) {
    cJSON_Delete(a);
    *why = "not a JSON array";
    return -1;
  }
  int n = cJSON_GetArraySize(a), k = 0;
  af_label *l = calloc((size_t)(n ? n : 1), sizeof *l);
  if (!l) {
    cJSON_Delete(a);
    *why = "out of memory";
    return -1;
  }
  for (const cJSON *e = a->child; e; e = e->next, k++) {
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(e, "label");
    if (!cJSON_IsString(lab)) {
      af_labels_free(l, k);
      cJSON_Delete(a);
      *why = "an entry without a \"label\" string";
      return -1;
    }
    l[k].label = strdup(lab->valuestring);
    l[k].id = dup_str(e, "id");
    l[k].uri = dup_str(e, "uri");
    l[k].logprob = num(e, "logprob");
    l[k].logprob_per_token = num(e, "logprob_per_token");
    l[k].p = num(e, "p");
    if (!l[k].label) {
      af_labels_free(l, k + 1);
      cJSON_Delete(a);
      *why = "out of memory";
      return -1;
    }
  }
  cJSON_Delete(a);
  *out = l;
  return n;
}

/* file:// URI of an absolute path: RFC 8089, every byte outside the
 * unreserved set and '/' percent-encoded */
static char *file_uri(const char *path) {
  static const char hex[] = "0123456789ABCDEF";
  af_buf b = {0};
  af_buf_puts(&b, "file://");
  for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
        strchr("-._~/", *p)) {
      af_buf_put(&b, (const char *)p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      af_buf_put(&b, e, 3);
    }
  }
  if (b.oom) {
    af_buf_free(&b);
    return NULL;
  }
  return b.p;
}

char *af_item_target(const af_item *it, const char *base) {
  const char *canvas = af_item_meta(it, "iiif_canvas");
  if (canvas && *canvas) return strdup(canvas);
  if (base && *base) {
    size_t n = strlen(base) + strlen(it->id) + 1;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s%s", base, it->id);
    return t;
  }
  if (it->path && it->path[0] == '/') return file_uri(it->path);
  if (it->path) {
    char cwd[4096], *abs;
    if (!getcwd(cwd, sizeof cwd) || !(abs = af_path_join(cwd, it->path))) return strdup(it->id);
    char *u = file_uri(abs);
    free(abs);
    return u;
  }
  return strdup(it->id);
}

static char *get_str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

int af_agent_from_ctx(const af_stage_ctx *ctx, int digest, af_agent *a) {
  memset(a, 0, sizeof *a);
  const char *p = ctx->provenance ? ctx->provenance(ctx, digest ? AF_PROVENANCE_MODEL_DIGEST : 0) : NULL;
  if (!p)
    return af_error_code() ? af_error_code() : af_err(AF_ERR_INVALID, "%s: no provenance", ctx->instance);
  cJSON *o = cJSON_Parse(p);
  if (!o) return af_err(AF_ERR_INVALID, "%s: provenance is not JSON", ctx->instance);
  a->artflow = get_str(o, "artflow");
  a->model = get_str(o, "model");
  a->model_name = get_str(o, "model_name");
  a->weight_type = get_str(o, "model_weight_type");
  a->model_sha256 = get_str(o, "model_sha256");
  cJSON_Delete(o);
  return 0;
}

void af_agent_free(af_agent *a) {
  free(a->artflow), free(a->model), free(a->model_name), free(a->weight_type), free(a->model_sha256);
  memset(a, 0, sizeof *a);
}

void af_safe_name(const char *id, char *out, size_t n) {
  af_npy_safe_name(id, out, n);
}
