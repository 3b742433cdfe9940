/* Loading a pipeline file: libyaml document API -> instances with filled
 * config structs.  ${ENV} expansion in scalars, --set overrides, generic
 * validation from each stage's parameter table, paths resolved against the
 * pipeline's folder.  Every problem is reported before anything runs as
 * "file:line:column: stage 'x': key 'y': cause". */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "core/iofile.h"
#include "pipeline/internal.h"

typedef struct loader {
  af_pipeline *p;
  yaml_document_t doc;
} loader;

static const char *const top_keys[] = {"source",  "stages",  "sinks", "device",      "profile", "model",
                                       "plugins", "journal", "queue", "queue_bytes", "shard",   "shards"};

/* Records "file:line:col: stage 'x': key 'k': cause" and returns AF_ERR_CONFIG. */
static int cfg_err(loader *L, const yaml_node_t *at, const char *inst, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int cfg_err(loader *L, const yaml_node_t *at, const char *inst, const char *key, const char *fmt,
                   ...) {
  char cause[768], where[512] = "", who[256] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cause, sizeof cause, fmt, ap);
  va_end(ap);
  if (at)
    snprintf(where, sizeof where, "%s:%zu:%zu: ", L->p->path, at->start_mark.line + 1,
             at->start_mark.column + 1);
  else
    snprintf(where, sizeof where, "%s: ", L->p->path);
  size_t o = 0;
  if (inst) o += (size_t)snprintf(who, sizeof who, "stage '%s': ", inst);
  if (key && o < sizeof who) snprintf(who + o, sizeof who - o, "key '%s': ", key);
  return af_err(AF_ERR_CONFIG, "%s%s%s", where, who, cause);
}

static yaml_node_t *node(loader *L, int id) {
  return yaml_document_get_node(&L->doc, id);
}

/* Expands ${VAR} and ${VAR:-default}; "$$" is a literal '$'.  *out is
 * malloc'd.  0, or AF_ERR_CONFIG with why filled, or AF_ERR_NOMEM. */
static int expand_env(const char *in, char **out, char *why, size_t wn) {
  af_buf b = {0};
  for (const char *s = in; *s;) {
    if (s[0] == '$' && s[1] == '$') {
      af_buf_put(&b, "$", 1);
      s += 2;
    } else if (s[0] == '$' && s[1] == '{') {
      const char *e = strchr(s + 2, '}');
      if (!e) {
        snprintf(why, wn, "unterminated '${' in '%s'", in);
        af_buf_free(&b);
        return AF_ERR_CONFIG;
      }
      char name[256];
      snprintf(name, sizeof name, "%.*s", (int)(e - s - 2), s + 2);
      char *dflt = strstr(name, ":-");
      if (dflt) *dflt = 0, dflt += 2;
      const char *v = name[0] ? getenv(name) : NULL;
      if (!v || (!*v && dflt)) v = dflt;
      if (!v) {
        snprintf(why, wn, "environment variable '%s' is not set", name);
        af_buf_free(&b);
        return AF_ERR_CONFIG;
      }
      af_buf_puts(&b, v);
      s = e + 1;
    } else {
      af_buf_put(&b, s, 1);
      s++;
    }
  }
  af_buf_put(&b, "", 1);
  if (b.oom) {
    af_buf_free(&b);
    return AF_ERR_NOMEM;
  }
  *out = b.p;
  return 0;
}

/* The expanded text of a scalar node.  *out malloc'd. */
static int scalar(loader *L, yaml_node_t *n, const char *inst, const char *key, char **out) {
  static const char *kinds[] = {"nothing", "a scalar", "a list", "a mapping"};
  if (n->type != YAML_SCALAR_NODE)
    return cfg_err(L, n, inst, key, "expected a single value, got %s", kinds[n->type & 3]);
  char why[512];
  int rc = expand_env((const char *)n->data.scalar.value, out, why, sizeof why);
  if (rc == AF_ERR_NOMEM) return af_err(rc, "%s: out of memory", L->p->path);
  if (rc) return cfg_err(L, n, inst, key, "%s", why);
  return 0;
}

static int is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *v = (const char *)n->data.scalar.value;
  return !*v || !strcmp(v, "~") || !strcmp(v, "null");
}

/* Checks a mapping has no key twice and only scalar keys (the repeat is
 * found by sorting: af_yaml_first_repeat). */
static int check_keys(loader *L, yaml_node_t *m, const char *inst) {
  size_t n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *k = node(L, m->data.mapping.pairs.start[i].key);
    if (k->type != YAML_SCALAR_NODE) return cfg_err(L, k, inst, NULL, "keys must be plain names");
  }
  if (n < 2) return 0;
  const char **keys = malloc(n * sizeof *keys);
  if (!keys) return af_err(AF_ERR_NOMEM, "%s: out of memory", L->p->path);
  for (size_t i = 0; i < n; i++)
    keys[i] = (const char *)node(L, m->data.mapping.pairs.start[i].key)->data.scalar.value;
  size_t dup = af_yaml_first_repeat(keys, n);
  free(keys);
  if (dup == SIZE_MAX) return af_err(AF_ERR_NOMEM, "%s: out of memory", L->p->path);
  if (dup == n) return 0;
  yaml_node_t *k = node(L, m->data.mapping.pairs.start[dup].key);
  return cfg_err(L, k, inst, (char *)k->data.scalar.value, "given twice");
}

/* Lists the names of one kind of stage for "unknown stage" messages. */
static void kind_names(af_stage_kind kind, char *buf, size_t n) {
  int cnt = 0;
  const af_stage_desc *const *all = af_registry_list(&cnt);
  size_t o = 0;
  buf[0] = 0;
  for (int i = 0; i < cnt && o < n; i++)
    if (all[i]->kind == kind) o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? ", " : "", all[i]->name);
}

/* A YAML value as JSON (AF_PARAM_JSON): mappings and lists as they are,
 * plain scalars that read as null, true/false or a number as such, every
 * other scalar a string (${ENV} expanded).  *out NULL on failure (rc set). */
static int to_json(loader *L, yaml_node_t *v, const af_instance *in, const char *key, int depth,
                   cJSON **out) {
  *out = NULL;
  if (depth > 32) return cfg_err(L, v, in->name, key, "nested too deeply");
  int rc = 0;
  if (v->type == YAML_SEQUENCE_NODE) {
    cJSON *a = cJSON_CreateArray();
    for (yaml_node_item_t *it = v->data.sequence.items.start; a && !rc && it < v->data.sequence.items.top;
         it++) {
      cJSON *e = NULL;
      if (!(rc = to_json(L, node(L, *it), in, key, depth + 1, &e))) cJSON_AddItemToArray(a, e);
    }
    if (rc) cJSON_Delete(a);
    *out = rc ? NULL : a;
  } else if (v->type == YAML_MAPPING_NODE) {
    cJSON *o = cJSON_CreateObject();
    if (!(rc = check_keys(L, v, in->name)))
      for (yaml_node_pair_t *a = v->data.mapping.pairs.start; o && !rc && a < v->data.mapping.pairs.top;
           a++) {
        cJSON *e = NULL;
        if (!(rc = to_json(L, node(L, a->value), in, key, depth + 1, &e)))
          cJSON_AddItemToObject(o, (const char *)node(L, a->key)->data.scalar.value, e);
      }
    if (rc) cJSON_Delete(o);
    *out = rc ? NULL : o;
  } else {
    char *s = NULL, *end = NULL;
    if ((rc = scalar(L, v, in->name, key, &s))) return rc;
    int plain = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    double d = plain && *s ? strtod(s, &end) : 0;
    if (is_null(v))
      *out = cJSON_CreateNull();
    else if (plain && (!strcmp(s, "true") || !strcmp(s, "false")))
      *out = cJSON_CreateBool(s[0] == 't');
    else if (plain && *s && end && !*end && strcspn(s, "xXnN") == strlen(s))
      *out = cJSON_CreateNumber(d);
    else
      *out = cJSON_CreateString(s);
    free(s);
  }
  if (!rc && !*out) rc = af_err(AF_ERR_NOMEM, "%s: out of memory", L->p->path);
  return rc;
}

/* Sets one parameter from a YAML value node. */
static int set_param(loader *L, af_instance *in, const af_param *pr, yaml_node_t *v) {
  char why[512];
  int rc = 0;
  if (pr->type == AF_PARAM_JSON && is_null(v)) {
    char **f = (char **)((char *)in->config + pr->offset);
    free(*f);
    *f = NULL;
    return 0;
  }
  if (pr->type == AF_PARAM_JSON) {
    cJSON *j = NULL;
    if ((rc = to_json(L, v, in, pr->name, 0, &j))) return rc;
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return af_err(AF_ERR_NOMEM, "%s: out of memory", L->p->path);
    rc = af_param_set_text(pr, in->config, text, why, sizeof why);
    free(text);
    if (rc)
      rc = rc == AF_ERR_NOMEM ? af_err(rc, "%s: out of memory", L->p->path)
                              : cfg_err(L, v, in->name, pr->name, "%s", why);
    return rc;
  }
  if (pr->type == AF_PARAM_STRLIST && v->type == YAML_SEQUENCE_NODE) {
    af_param_strlist_clear(pr, in->config);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
      char *s = NULL;
      if ((rc = scalar(L, node(L, *it), in->name, pr->name, &s))) return rc;
      rc = af_param_strlist_append(pr, in->config, s);
      free(s);
      if (rc) return af_err(rc, "%s: out of memory", L->p->path);
    }
    return 0;
  }
  if (v->type == YAML_SEQUENCE_NODE)
    return cfg_err(L, v, in->name, pr->name, "expected %s, got a list", af_param_type_name(pr->type));
  if (is_null(v)) {
    if (pr->type == AF_PARAM_STRLIST) return af_param_strlist_clear(pr, in->config), 0;
    if (pr->type == AF_PARAM_STRING) {
      char **f = (char **)((char *)in->config + pr->offset);
      free(*f);
      *f = NULL;
      return 0;
    }
    return cfg_err(L, v, in->name, pr->name, "no value given (expected %s)", af_param_type_name(pr->type));
  }
  char *s = NULL;
  if ((rc = scalar(L, v, in->name, pr->name, &s))) return rc;
  if (pr->type == AF_PARAM_STRLIST) {
    /* a lone YAML scalar is one element, even with commas in it */
    af_param_strlist_clear(pr, in->config);
    rc = af_param_strlist_append(pr, in->config, s);
    if (rc) rc = af_err(rc, "%s: out of memory", L->p->path);
  } else {
    rc = af_param_set_text(pr, in->config, s, why, sizeof why);
    if (rc == AF_ERR_NOMEM)
      rc = af_err(rc, "%s: out of memory", L->p->path);
    else if (rc)
      rc = cfg_err(L, v, in->name, pr->name, "%s", why);
  }
  free(s);
  return rc;
}

static int parse_batch(loader *L, af_instance *in, yaml_node_t *v) {
  char *s = NULL, *end;
  int rc = scalar(L, v, in->name, "batch", &s);
  if (rc) return rc;
  long b = strtol(s, &end, 10);
  if (!*s || *end || b < 1 || b > 65536)
    rc = cfg_err(L, v, in->name, "batch", "expected an integer 1..65536, got '%s'", s);
  else
    in->batch = (int)b, in->batch_set = 1;
  free(s);
  return rc;
}

/* Builds one instance from `{stage: NAME, name: N, batch: B, ...params}`. */
static int load_entry(loader *L, yaml_node_t *m, af_stage_kind kind, af_instance *in) {
  const char *what = kind == AF_STAGE_SOURCE ? "source" : kind == AF_STAGE_SINK ? "sink" : "stage";
  in->line = (int)m->start_mark.line + 1;
  in->col = (int)m->start_mark.column + 1;
  if (m->type != YAML_MAPPING_NODE)
    return cfg_err(L, m, NULL, NULL, "a %s must be a mapping like {stage: NAME, ...}", what);
  int rc = check_keys(L, m, NULL);
  if (rc) return rc;
  yaml_node_t *sn = NULL, *nn = NULL;
  for (yaml_node_pair_t *a = m->data.mapping.pairs.start; a < m->data.mapping.pairs.top; a++) {
    const char *k = (char *)node(L, a->key)->data.scalar.value;
    if (!strcmp(k, "stage") || !strcmp(k, "type")) {
      if (sn) return cfg_err(L, node(L, a->key), NULL, k, "give either 'stage' or 'type', once");
      sn = node(L, a->value);
    } else if (!strcmp(k, "name")) {
      nn = node(L, a->value);
    }
  }
  if (!sn) return cfg_err(L, m, NULL, "stage", "missing: every %s names its stage type", what);
  char *sname = NULL;
  if ((rc = scalar(L, sn, NULL, "stage", &sname))) return rc;
  in->desc = af_registry_find(kind, sname);
  if (!in->desc) {
    char names[1024];
    kind_names(kind, names, sizeof names);
    const af_stage_kind others[] = {AF_STAGE_SOURCE, AF_STAGE_TRANSFORM, AF_STAGE_SINK};
    for (int i = 0; i < 3; i++)
      if (others[i] != kind && af_registry_find(others[i], sname)) {
        rc = cfg_err(L, sn, sname, NULL, "is a %s, not a %s (%ss: %s)", af_stage_kind_name(others[i]),
                     af_stage_kind_name(kind), what, names);
        break;
      }
    if (!rc) rc = cfg_err(L, sn, NULL, NULL, "unknown %s '%s' (known: %s)", what, sname, names);
    free(sname);
    return rc;
  }
  in->name = sname;
  if (nn) {
    char *nm = NULL;
    if ((rc = scalar(L, nn, sname, "name", &nm))) return rc;
    if (!*nm) {
      free(nm);
      return cfg_err(L, nn, sname, "name", "empty name");
    }
    free(in->name);
    in->name = nm;
  }
  in->batch = in->desc->batch_size > 0 ? in->desc->batch_size : 1;
  in->config = calloc(1, in->desc->config_size ? in->desc->config_size : 1);
  if (!in->config) return af_err(AF_ERR_NOMEM, "%s: out of memory", L->p->path);
  if ((rc = af_params_defaults(in->desc, in->config))) return rc;
  for (yaml_node_pair_t *a = m->data.mapping.pairs.start; a < m->data.mapping.pairs.top; a++) {
    yaml_node_t *kn = node(L, a->key), *vn = node(L, a->value);
    const char *k = (char *)kn->data.scalar.value;
    if (!strcmp(k, "stage") || !strcmp(k, "type") || !strcmp(k, "name")) continue;
    if (!strcmp(k, "batch")) {
      if ((rc = parse_batch(L, in, vn))) return rc;
      continue;
    }
    const af_param *pr = af_param_find(in->desc, k);
    if (!pr) {
      char keys[1024] = "";
      size_t o = 0;
      for (int i = 0; i < in->desc->n_params && o < sizeof keys; i++)
        o += (size_t)snprintf(keys + o, sizeof keys - o, "%s, ", in->desc->params[i].name);
      if (o < sizeof keys) snprintf(keys + o, sizeof keys - o, "name, batch");
      return cfg_err(L, kn, in->name, k, "unknown key (valid: %s)", keys);
    }
    if ((rc = set_param(L, in, pr, vn))) return rc;
  }
  return 0;
}

/* --set INSTANCE.PARAM=VALUE, applied after the file. */
static int apply_set(af_pipeline *p, const char *arg) {
  const char *eq = strchr(arg, '='), *dot = strchr(arg, '.');
  if (!eq || !dot || dot > eq || dot == arg || dot + 1 == eq)
    return af_err(AF_ERR_CONFIG, "--set %s: expected STAGE.PARAM=VALUE", arg);
  char inst[256], key[256];
  snprintf(inst, sizeof inst, "%.*s", (int)(dot - arg), arg);
  snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
  af_instance *in = NULL;
  for (int i = 0; i < p->n_inst && !in; i++)
    if (!strcmp(p->inst[i].name, inst)) in = &p->inst[i];
  if (!in && !strcmp(inst, "source")) in = &p->inst[0];
  if (!in) {
    char names[1024] = "source";
    size_t o = strlen(names);
    for (int i = 0; i < p->n_inst && o < sizeof names; i++)
      o += (size_t)snprintf(names + o, sizeof names - o, ", %s", p->inst[i].name);
    return af_err(AF_ERR_CONFIG, "--set %s: no stage named '%s' (stages: %s)", arg, inst, names);
  }
  const char *val = eq + 1;
  if (!strcmp(key, "batch")) {
    char *end;
    long b = strtol(val, &end, 10);
    if (!*val || *end || b < 1 || b > 65536)
      return af_err(AF_ERR_CONFIG, "--set %s: stage '%s': key 'batch': expected an integer 1..65536", arg,
                    in->name);
    in->batch = (int)b;
    in->batch_set = 1;
    return 0;
  }
  const af_param *pr = af_param_find(in->desc, key);
  if (!pr) return af_err(AF_ERR_CONFIG, "--set %s: stage '%s': key '%s': unknown key", arg, in->name, key);
  char why[512];
  int rc = af_param_set_text(pr, in->config, val, why, sizeof why);
  if (rc == AF_ERR_NOMEM) return af_err(rc, "--set: out of memory");
  if (rc) return af_err(AF_ERR_CONFIG, "--set %s: stage '%s': key '%s': %s", arg, in->name, key, why);
  return 0;
}

/* Joins a relative path onto the pipeline folder (made absolute so a stage
 * that joins again gets the same result).  Returns malloc'd or NULL. */
static char *resolve_path(af_pipeline *p, const char *v) {
  if (!v || v[0] == '/' || !p->dir || !strcmp(v, "-")) return v ? strdup(v) : NULL;
  return af_path_join(p->dir, v);
}

static int resolve_paths(af_pipeline *p) {
  for (int i = 0; i < p->n_inst; i++) {
    af_instance *in = &p->inst[i];
    for (int j = 0; j < in->desc->n_params; j++) {
      const af_param *pr = &in->desc->params[j];
      void *f = (char *)in->config + pr->offset;
      /* only strings and lists can be absent: numbers always hold a value */
      if ((pr->flags & AF_PARAM_REQUIRED) &&
          (((pr->type == AF_PARAM_STRING || pr->type == AF_PARAM_JSON) && !*(char **)f) ||
           (pr->type == AF_PARAM_STRLIST && !((af_strlist *)f)->n)))
        return af_err(AF_ERR_CONFIG, "%s:%d:%d: stage '%s': key '%s': required, not given", p->path, in->line,
                      in->col, in->name, pr->name);
      if (!(pr->flags & AF_PARAM_PATH)) continue;
      if (pr->type == AF_PARAM_STRING && *(char **)f) {
        char *r = resolve_path(p, *(char **)f);
        if (!r) return af_err(AF_ERR_NOMEM, "out of memory");
        free(*(char **)f);
        *(char **)f = r;
      } else if (pr->type == AF_PARAM_STRLIST) {
        af_strlist *l = f;
        for (int k = 0; k < l->n; k++) {
          char *r = resolve_path(p, l->v[k]);
          if (!r) return af_err(AF_ERR_NOMEM, "out of memory");
          free(l->v[k]);
          l->v[k] = r;
        }
      }
    }
  }
  return 0;
}

/* Top-level scalar settings. */
static int top_scalar(loader *L, yaml_node_t *k, yaml_node_t *v, char **dst, int path) {
  char *s = NULL;
  int rc = scalar(L, v, NULL, (char *)k->data.scalar.value, &s);
  if (rc) return rc;
  free(*dst);
  *dst = path ? resolve_path(L->p, s) : s;
  if (path) free(s);
  return *dst ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

/* model: FILE.gguf, or {vision: A.gguf, llm: B.gguf} for a two-file model
 * (our vision/adapter file and a base LLM GGUF, e.g. llama.cpp's) */
static int model_key(loader *L, yaml_node_t *k, yaml_node_t *v) {
  if (v->type != YAML_MAPPING_NODE) return top_scalar(L, k, v, &L->p->model, 1);
  int rc = check_keys(L, v, NULL);
  for (yaml_node_pair_t *a = v->data.mapping.pairs.start; !rc && a < v->data.mapping.pairs.top; a++) {
    yaml_node_t *mk = node(L, a->key), *mv = node(L, a->value);
    const char *name = (const char *)mk->data.scalar.value;
    if (!strcmp(name, "vision"))
      rc = top_scalar(L, mk, mv, &L->p->model, 1);
    else if (!strcmp(name, "llm"))
      rc = top_scalar(L, mk, mv, &L->p->llm_model, 1);
    else
      rc = cfg_err(L, mk, NULL, name, "unknown key in 'model' (valid: vision, llm)");
  }
  if (!rc && !L->p->model)
    rc = cfg_err(L, v, NULL, "model", "a mapping needs 'vision: FILE.gguf' (and 'llm: FILE.gguf')");
  return rc;
}

static int load_plugins(loader *L, yaml_node_t *v) {
  yaml_node_item_t one = 0, *b = &one, *e = &one + 1;
  if (v->type == YAML_SEQUENCE_NODE)
    b = v->data.sequence.items.start, e = v->data.sequence.items.top;
  else
    one = (yaml_node_item_t)(v - L->doc.nodes.start) + 1;
  for (yaml_node_item_t *it = b; it < e; it++) {
    yaml_node_t *n = node(L, *it);
    char *s = NULL;
    int rc = scalar(L, n, NULL, "plugins", &s);
    if (rc) return rc;
    char *path = strchr(s, '/') ? resolve_path(L->p, s) : strdup(s);
    free(s);
    if (!path) return af_err(AF_ERR_NOMEM, "out of memory");
#if __has_include("pipeline/plugin.c")
    rc = af_plugin_load(path);
    if (rc) {
      char why[768];
      snprintf(why, sizeof why, "%s", af_error_message());
      af_error_clear();
      rc = cfg_err(L, n, NULL, "plugins", "%s", why);
    }
#else
    rc = cfg_err(L, n, NULL, "plugins", "plugins are not supported in this build (%s)", path);
#endif
    free(path);
    if (rc) return rc;
  }
  return 0;
}

/* queue_bytes: 256M, 1G, 65536 ... (bytes, K/M/G binary suffixes) */
static int queue_bytes_key(loader *L, yaml_node_t *v) {
  char *s = NULL;
  int rc = scalar(L, v, NULL, "queue_bytes", &s);
  if (rc) return rc;
  if (af_parse_bytes(s, &L->p->queue_bytes) || L->p->queue_bytes < 1)
    rc = cfg_err(L, v, NULL, "queue_bytes", "expected a size like 256M or 1G, got '%s'", s);
  free(s);
  return rc;
}

static yaml_node_t *get(loader *L, yaml_node_t *root, const char *key, yaml_node_t **keynode) {
  for (yaml_node_pair_t *a = root->data.mapping.pairs.start; a < root->data.mapping.pairs.top; a++)
    if (!strcmp((char *)node(L, a->key)->data.scalar.value, key)) {
      if (keynode) *keynode = node(L, a->key);
      return node(L, a->value);
    }
  return NULL;
}

static int load_doc(loader *L) {
  af_pipeline *p = L->p;
  yaml_node_t *root = yaml_document_get_root_node(&L->doc);
  if (!root) return af_err(AF_ERR_CONFIG, "%s: empty pipeline file", p->path);
  if (root->type != YAML_MAPPING_NODE)
    return cfg_err(L, root, NULL, NULL, "the pipeline must be a mapping with source, stages, sinks");
  int rc = check_keys(L, root, NULL);
  if (rc) return rc;
  for (yaml_node_pair_t *a = root->data.mapping.pairs.start; a < root->data.mapping.pairs.top; a++) {
    yaml_node_t *k = node(L, a->key);
    int known = 0;
    for (int i = 0; i < AF_ARRAY_LEN(top_keys); i++)
      known |= !strcmp((char *)k->data.scalar.value, top_keys[i]);
    if (!known)
      return cfg_err(L, k, NULL, (char *)k->data.scalar.value,
                     "unknown key (valid: source, stages, sinks, device, profile, model, plugins, "
                     "journal, queue, queue_bytes, shard, shards)");
  }
  yaml_node_t *kn = NULL, *v;
  /* plugins first: their stages must be known before the entries are read */
  if ((v = get(L, root, "plugins", &kn)) && !is_null(v) && (rc = load_plugins(L, v))) return rc;
  if ((v = get(L, root, "device", &kn)) && !is_null(v) && (rc = top_scalar(L, kn, v, &p->device, 0)))
    return rc;
  if ((v = get(L, root, "profile", &kn)) && !is_null(v) && (rc = top_scalar(L, kn, v, &p->profile, 1)))
    return rc;
  if ((v = get(L, root, "model", &kn)) && !is_null(v) && (rc = model_key(L, kn, v))) return rc;
  if ((v = get(L, root, "journal", &kn)) && !is_null(v) && (rc = top_scalar(L, kn, v, &p->journal, 1)))
    return rc;
  if ((v = get(L, root, "queue", &kn))) {
    char *s = NULL, *end;
    if ((rc = scalar(L, v, NULL, "queue", &s))) return rc;
    long q = strtol(s, &end, 10);
    if (!*s || *end || q < 1 || q > 65536)
      rc = cfg_err(L, v, NULL, "queue", "expected an integer 1..65536, got '%s'", s);
    p->queue_depth = (int)q;
    free(s);
    if (rc) return rc;
  }
  if ((v = get(L, root, "queue_bytes", &kn)) && (rc = queue_bytes_key(L, v))) return rc;
  if ((v = get(L, root, "shard", &kn)) && !is_null(v) && (rc = top_scalar(L, kn, v, &p->shard_spec, 0)))
    return rc;
  if ((v = get(L, root, "shards", &kn)) && !is_null(v)) {
    char *s = NULL, *end;
    if ((rc = scalar(L, v, NULL, "shards", &s))) return rc;
    long c = strtol(s, &end, 10);
    if (!*s || *end || c < 1 || c > 1000000)
      rc = cfg_err(L, v, NULL, "shards", "expected an integer 1..1000000, got '%s'", s);
    p->shards = (int)c;
    free(s);
    if (rc) return rc;
  }
  yaml_node_t *src = get(L, root, "source", NULL), *st = get(L, root, "stages", &kn);
  yaml_node_t *sk = get(L, root, "sinks", NULL);
  if (!src) return cfg_err(L, root, NULL, "source", "missing: where do the items come from?");
  if (!sk) return cfg_err(L, root, NULL, "sinks", "missing: at least one sink is needed");
  if (st && !is_null(st) && st->type != YAML_SEQUENCE_NODE)
    return cfg_err(L, st, NULL, "stages", "expected a list of {stage: NAME, ...}");
  if (sk->type != YAML_SEQUENCE_NODE || sk->data.sequence.items.top == sk->data.sequence.items.start)
    return cfg_err(L, sk, NULL, "sinks", "expected a non-empty list of {stage: NAME, ...}");
  int nt = st && st->type == YAML_SEQUENCE_NODE
               ? (int)(st->data.sequence.items.top - st->data.sequence.items.start)
               : 0;
  int ns = (int)(sk->data.sequence.items.top - sk->data.sequence.items.start);
  p->inst = calloc((size_t)(1 + nt + ns), sizeof *p->inst);
  if (!p->inst) return af_err(AF_ERR_NOMEM, "out of memory");
  p->n_transforms = nt;
  p->n_sinks = ns;
  if ((rc = load_entry(L, src, AF_STAGE_SOURCE, &p->inst[p->n_inst++]))) return rc;
  for (int i = 0; i < nt; i++)
    if ((rc = load_entry(L, node(L, st->data.sequence.items.start[i]), AF_STAGE_TRANSFORM,
                         &p->inst[p->n_inst++])))
      return rc;
  for (int i = 0; i < ns; i++)
    if ((rc = load_entry(L, node(L, sk->data.sequence.items.start[i]), AF_STAGE_SINK, &p->inst[p->n_inst++])))
      return rc;
  for (int i = 0; i < p->n_inst; i++)
    for (int j = 0; j < i; j++)
      if (!strcmp(p->inst[i].name, p->inst[j].name))
        return af_err(AF_ERR_CONFIG, "%s:%d:%d: stage '%s': the name is used twice (give one a 'name:')",
                      p->path, p->inst[i].line, p->inst[i].col, p->inst[i].name);
  return 0;
}

/* Everything after parsing: overrides, paths, model, graph, JSON. */
static int finish(af_pipeline *p) {
  int rc = 0;
  for (int i = 0; i < p->opt.n_sets; i++)
    if ((rc = apply_set(p, p->sets[i]))) return rc;
  if ((rc = resolve_paths(p))) return rc;
  if (p->opt.model) { /* the command line's model wins over "model:" */
    free(p->model), free(p->llm_model);
    p->model = strdup(p->opt.model);
    p->llm_model = p->opt.llm_model ? strdup(p->opt.llm_model) : NULL;
    if (!p->model || (p->opt.llm_model && !p->llm_model)) return af_err(AF_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < p->n_inst; i++)
    if ((p->inst[i].desc->flags & AF_STAGE_NEEDS_MODEL) && !p->model)
      return af_err(AF_ERR_CONFIG, "%s:%d:%d: stage '%s' needs a model: add 'model: FILE.gguf'", p->path,
                    p->inst[i].line, p->inst[i].col, p->inst[i].name);
  char *jp = af_pipeline_default_journal(p);
  if (!jp) return af_err(AF_ERR_NOMEM, "out of memory");
  free(p->journal);
  p->journal = jp;
  if ((rc = af_graph_check(p))) return rc;
  if ((rc = af_pipeline_build_json(p))) return rc;
  /* after the JSON: records and settings show the {shard} template, the same
   * in every shard */
  return af_pipeline_shard_setup(p);
}

static int load_common(const char *yaml, const char *name, const char *dir, const af_run_options *opt,
                       af_pipeline **out) {
  *out = NULL;
  af_pipeline *p = calloc(1, sizeof *p);
  if (!p) return af_err(AF_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->finished_cv, NULL);
  p->expected = -1;
  if (opt) p->opt = *opt;
  int rc = 0;
  p->path = strdup(name ? name : "<string>");
  p->dir = dir ? strdup(dir) : NULL;
  if (!p->path || (dir && !p->dir)) {
    af_pipeline_free(p);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  if (p->opt.n_sets > 0) {
    int nomem = !(p->sets = calloc((size_t)p->opt.n_sets, sizeof *p->sets));
    for (int i = 0; !nomem && i < p->opt.n_sets; i++) nomem = !(p->sets[i] = strdup(p->opt.sets[i]));
    p->opt.sets = NULL;
    if (nomem) {
      af_pipeline_free(p);
      return af_err(AF_ERR_NOMEM, "out of memory");
    }
  }
  size_t len = strlen(yaml);
  if (len > AF_YAML_MAX_BYTES) {
    rc = af_err(AF_ERR_CONFIG, "%s: %zu bytes, more than the %d bytes a pipeline file may hold", p->path, len,
                AF_YAML_MAX_BYTES);
    af_pipeline_free(p);
    return rc;
  }
  af_sha256_hex(yaml, len, p->sha256);
  if ((rc = af_yaml_check_limits(p->path, yaml, len))) {
    af_pipeline_free(p);
    return rc;
  }
  loader L = {.p = p};
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    af_pipeline_free(p);
    return af_err(AF_ERR_NOMEM, "yaml: out of memory");
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &L.doc)) {
    rc = af_err(AF_ERR_CONFIG, "%s:%zu:%zu: syntax error: %s%s%s", p->path, parser.problem_mark.line + 1,
                parser.problem_mark.column + 1, parser.problem ? parser.problem : "malformed YAML",
                parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    af_pipeline_free(p);
    return rc;
  }
  yaml_parser_delete(&parser);
  rc = load_doc(&L);
  yaml_document_delete(&L.doc);
  if (!rc) rc = finish(p);
  if (rc) {
    af_pipeline_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

int af_pipeline_load_string(const char *yaml, const char *name, const af_run_options *opt,
                            af_pipeline **out) {
  return load_common(yaml, name, NULL, opt, out);
}

/* Absolute folder of `path`, or NULL when it is the current folder (paths
 * then stay as written, which keeps records short). */
static char *folder_of(const char *path) {
  char *d = af_path_dirname(path);
  if (!d || !strcmp(d, ".")) {
    free(d);
    return NULL;
  }
  char *abs = realpath(d, NULL);
  free(d);
  return abs;
}

int af_pipeline_load(const char *path, const af_run_options *opt, af_pipeline **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_CONFIG, "%s: cannot open pipeline file: %s", path, strerror(errno));
  af_buf b = {0};
  char chunk[65536];
  size_t n;
  /* read one byte past the limit at most: a 100 MB file is refused unread */
  while (b.n <= AF_YAML_MAX_BYTES && (n = fread(chunk, 1, sizeof chunk, f)) > 0) af_buf_put(&b, chunk, n);
  if (b.n > AF_YAML_MAX_BYTES) {
    fclose(f);
    af_buf_free(&b);
    return af_err(AF_ERR_CONFIG, "%s: more than the %d bytes a pipeline file may hold", path,
                  AF_YAML_MAX_BYTES);
  }
  int err = ferror(f);
  fclose(f);
  af_buf_put(&b, "", 1);
  if (err || b.oom) {
    af_buf_free(&b);
    return af_err(err ? AF_ERR_IO : AF_ERR_NOMEM, "%s: cannot read pipeline file", path);
  }
  if (strlen(b.p) != b.n - 1) {
    af_buf_free(&b);
    return af_err(AF_ERR_CONFIG, "%s: not a text file (NUL byte)", path);
  }
  char *dir = folder_of(path);
  int rc = load_common(b.p, path, dir, opt, out);
  free(dir);
  af_buf_free(&b);
  return rc;
}
