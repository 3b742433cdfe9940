/* The resume settings: what a pipeline's records depend on, as one canonical
 * JSON object, its SHA-256 and a readable diff between two of them.  The run
 * journal records them so that `artflow run --resume` refuses to append
 * records made with other settings to the same outputs (docs/pipeline-io.md,
 * "Resume").
 *
 * The object is flat, one key per setting, so that a change reads as one line
 * that names what to --set:
 *   "stages"         ["source:dir", "decode:decode", ..., "jsonl:jsonl"]
 *                    (instance:stage, in pipeline order)
 *   "NAME.PARAM"     every parameter of every instance, resolved (defaults,
 *                    YAML, --set; AF_PARAM_PATH values absolute), except rows
 *                    flagged AF_PARAM_RUNTIME (fsync, ...)
 *   "model", "llm_model"  "PATH (N bytes, modified TIME)" when a stage needs
 *                    the model: a replaced file of the same size (a re-converted
 *                    checkpoint) still shows through its time
 * Left out because they cannot change a record: batch sizes, queue depth,
 * device and profile, progress, the journal path.  Keys are sorted bytewise
 * so the same settings always give the same text (and hash) whatever order a
 * parameter table has. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/iofile.h"
#include "pipeline/internal.h"

cJSON *af_param_json(const af_param *pr, const void *config) {
  const void *f = (const char *)config + pr->offset;
  char buf[1024];
  switch (pr->type) {
    case AF_PARAM_INT:
      return cJSON_CreateNumber((double)*(const int64_t *)f);
    case AF_PARAM_FLOAT:
      return cJSON_CreateNumber(*(const double *)f);
    case AF_PARAM_BOOL:
      return cJSON_CreateBool(*(const int *)f);
    case AF_PARAM_STRING:
      return *(char *const *)f ? cJSON_CreateString(*(char *const *)f) : cJSON_CreateNull();
    case AF_PARAM_ENUM:
      af_param_format(pr, config, buf, sizeof buf);
      return cJSON_CreateString(buf);
    case AF_PARAM_STRLIST: {
      const af_strlist *l = f;
      cJSON *arr = cJSON_CreateArray();
      for (int k = 0; arr && k < l->n; k++) cJSON_AddItemToArray(arr, cJSON_CreateString(l->v[k]));
      return arr;
    }
    case AF_PARAM_JSON: {
      cJSON *j = *(char *const *)f ? cJSON_Parse(*(char *const *)f) : NULL;
      return j ? j : cJSON_CreateNull();
    }
  }
  return cJSON_CreateNull();
}

/* A path made absolute against the current folder (malloc'd; NULL when out
 * of memory).  The loader keeps paths relative when the pipeline file is in
 * the current folder, and `artflow run p.yaml`, then `artflow run
 * /data/p.yaml --resume` from elsewhere must give the same settings. */
static char *abs_path(const char *v) {
  char cwd[4096];
  if (v[0] == '/' || !strcmp(v, "-") || !getcwd(cwd, sizeof cwd)) return strdup(v);
  return af_path_join(cwd, v);
}

static cJSON *string_or_null(char *s) {
  cJSON *r = s ? cJSON_CreateString(s) : NULL;
  free(s);
  return r;
}

/* A parameter's value in the settings: as in provenance, paths absolute. */
static cJSON *setting_json(const af_param *pr, const void *config) {
  const void *f = (const char *)config + pr->offset;
  if (!(pr->flags & AF_PARAM_PATH)) return af_param_json(pr, config);
  if (pr->type == AF_PARAM_STRING)
    return *(char *const *)f ? string_or_null(abs_path(*(char *const *)f)) : cJSON_CreateNull();
  if (pr->type != AF_PARAM_STRLIST) return af_param_json(pr, config);
  const af_strlist *l = f;
  cJSON *arr = cJSON_CreateArray();
  for (int k = 0; arr && k < l->n; k++) {
    cJSON *v = string_or_null(abs_path(l->v[k]));
    if (!v || !cJSON_AddItemToArray(arr, v)) cJSON_Delete(v), cJSON_Delete(arr), arr = NULL;
  }
  return arr;
}

/* "PATH (N bytes, modified 2026-01-01T00:00:00Z)", or "PATH (missing)". */
static cJSON *model_json(const char *rel) {
  struct stat st;
  char buf[4200], when[32], *path = abs_path(rel);
  if (!path) return NULL;
  if (stat(path, &st) != 0) {
    snprintf(buf, sizeof buf, "%s (%s)", path, errno == ENOENT ? "missing" : "unreadable");
  } else {
    struct tm tm;
    time_t t = st.st_mtime;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(buf, sizeof buf, "%s (%lld bytes, modified %s)", path, (long long)st.st_size, when);
  }
  free(path);
  return cJSON_CreateString(buf);
}

typedef struct entry {
  char *key;
  cJSON *value;
} entry;

static int by_key(const void *a, const void *b) {
  return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

static int add(entry **e, int *n, int *cap, const char *a, const char *b, cJSON *value) {
  if (*n == *cap) {
    int c = *cap ? 2 * *cap : 32;
    entry *t = realloc(*e, (size_t)c * sizeof *t);
    if (!t) return cJSON_Delete(value), -1;
    *e = t, *cap = c;
  }
  size_t len = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;
  char *k = malloc(len);
  if (!k || !value) return free(k), cJSON_Delete(value), -1;
  snprintf(k, len, "%s%s%s", a, b ? "." : "", b ? b : "");
  (*e)[(*n)++] = (entry){k, value};
  return 0;
}

int af_settings_build(af_pipeline *p) {
  entry *e = NULL;
  int n = 0, cap = 0, bad = 0, need_model = 0;
  cJSON *chain = cJSON_CreateArray();
  for (int i = 0; i < p->n_inst && chain; i++) {
    const af_instance *in = &p->inst[i];
    char link[300];
    snprintf(link, sizeof link, "%s:%s", in->name, in->desc->name);
    cJSON_AddItemToArray(chain, cJSON_CreateString(link));
    need_model |= !!(in->desc->flags & AF_STAGE_NEEDS_MODEL);
    for (int k = 0; k < in->desc->n_params && !bad; k++) {
      const af_param *pr = &in->desc->params[k];
      if (!(pr->flags & AF_PARAM_RUNTIME))
        bad = add(&e, &n, &cap, in->name, pr->name, setting_json(pr, in->config));
    }
  }
  if (!bad) bad = add(&e, &n, &cap, "stages", NULL, chain); /* takes chain */
  chain = NULL;
  if (!bad && need_model && p->model) bad = add(&e, &n, &cap, "model", NULL, model_json(p->model));
  if (!bad && need_model && p->llm_model)
    bad = add(&e, &n, &cap, "llm_model", NULL, model_json(p->llm_model));
  cJSON_Delete(chain);
  cJSON *root = bad ? NULL : cJSON_CreateObject();
  if (root) qsort(e, (size_t)n, sizeof *e, by_key);
  for (int i = 0; i < n; i++) {
    if (root)
      cJSON_AddItemToObject(root, e[i].key, e[i].value);
    else
      cJSON_Delete(e[i].value);
    free(e[i].key);
  }
  free(e);
  free(p->settings_json);
  p->settings_json = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (!p->settings_json) return af_err(AF_ERR_NOMEM, "out of memory");
  af_sha256_hex(p->settings_json, strlen(p->settings_json), p->settings_hash);
  return 0;
}

/* ------------------------------------------------------------------ diff */

/* A value as JSON; "(default)" for null (a parameter left unset: the stage
 * or the model decides, e.g. llm.question), "(absent)" for a missing key. */
static void put_value(af_buf *b, const cJSON *v) {
  char *s = v && !cJSON_IsNull(v) ? cJSON_PrintUnformatted(v) : NULL;
  af_buf_puts(b, !v ? "(absent)" : cJSON_IsNull(v) ? "(default)" : s ? s : "?");
  free(s);
}

static void add_key(const char ***keys, int *n, const char *k) {
  for (int i = 0; i < *n; i++)
    if (!strcmp((*keys)[i], k)) return;
  (*keys)[(*n)++] = k;
}

static int by_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int af_settings_diff(const char *old_json, const char *new_json, char **lines, char **keys, int *n_changed) {
  *lines = NULL;
  if (keys) *keys = NULL;
  *n_changed = 0;
  cJSON *a = cJSON_Parse(old_json), *b = cJSON_Parse(new_json);
  const char **all = NULL;
  af_buf out = {0}, names = {0};
  int rc = 0, n = 0;
  if (!cJSON_IsObject(a) || !cJSON_IsObject(b)) {
    rc = af_err(AF_ERR_FORMAT, "settings: not a JSON object");
    goto out;
  }
  all = malloc(((size_t)cJSON_GetArraySize(a) + (size_t)cJSON_GetArraySize(b) + 1) * sizeof *all);
  if (!all) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (const cJSON *c = a->child; c; c = c->next) add_key(&all, &n, c->string);
  for (const cJSON *c = b->child; c; c = c->next) add_key(&all, &n, c->string);
  qsort(all, (size_t)n, sizeof *all, by_str);
  for (int i = 0; i < n; i++) {
    const cJSON *va = cJSON_GetObjectItemCaseSensitive(a, all[i]),
                *vb = cJSON_GetObjectItemCaseSensitive(b, all[i]);
    if (va && vb && cJSON_Compare(va, vb, 1)) continue;
    af_buf_puts(&out, all[i]);
    af_buf_puts(&out, ": ");
    put_value(&out, va);
    af_buf_puts(&out, " -> ");
    put_value(&out, vb);
    af_buf_puts(&out, "\n");
    if (names.n) af_buf_puts(&names, ", ");
    af_buf_puts(&names, all[i]);
    ++*n_changed;
  }
  af_buf_put(&out, "", 1);
  af_buf_put(&names, "", 1);
  if (out.oom || names.oom) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    *n_changed = 0;
    goto out;
  }
  if (*n_changed) {
    *lines = out.p, out.p = NULL;
    if (keys) *keys = names.p, names.p = NULL;
  }
out:
  af_buf_free(&out);
  af_buf_free(&names);
  free(all);
  cJSON_Delete(a);
  cJSON_Delete(b);
  return rc;
}
