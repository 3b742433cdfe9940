/* Parameter tables and port descriptions: parsing a text value into a
 * stage's config struct by table row (type and range checks shared by every
 * stage), formatting it back, and the port grammar "f32[3,S,S]". */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline/pipeline.h"

#define FIELD(cfg, p, T) ((T *)((char *)(cfg) + (p)->offset))
#define CFIELD(cfg, p, T) ((const T *)((const char *)(cfg) + (p)->offset))

const char *af_param_type_name(af_param_type t) {
  switch (t) {
    case AF_PARAM_INT:
      return "int";
    case AF_PARAM_FLOAT:
      return "float";
    case AF_PARAM_BOOL:
      return "bool";
    case AF_PARAM_STRING:
      return "string";
    case AF_PARAM_ENUM:
      return "enum";
    case AF_PARAM_STRLIST:
      return "list";
    case AF_PARAM_JSON:
      return "json";
  }
  return "?";
}

const af_param *af_param_find(const af_stage_desc *d, const char *name) {
  for (int i = 0; i < d->n_params; i++)
    if (strcmp(d->params[i].name, name) == 0) return &d->params[i];
  return NULL;
}

static void strlist_clear(af_strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* Appends a copy of s[0..n).  0 or AF_ERR_NOMEM. */
static int strlist_push(af_strlist *l, const char *s, size_t n) {
  char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof *v);
  if (!v) return AF_ERR_NOMEM;
  l->v = v;
  if (!(v[l->n] = strndup(s, n))) return AF_ERR_NOMEM;
  l->n++;
  return 0;
}

/* Splits "a, b,c" or "[a, b]" on commas into the list (replacing it). */
static int strlist_parse(af_strlist *l, const char *text) {
  strlist_clear(l);
  const char *s = text, *e = text + strlen(text);
  while (s < e && isspace((unsigned char)*s)) s++;
  while (e > s && isspace((unsigned char)e[-1])) e--;
  if (s < e && *s == '[' && e[-1] == ']') s++, e--;
  while (s < e) {
    const char *c = memchr(s, ',', (size_t)(e - s));
    const char *end = c ? c : e, *a = s, *b = end;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    if (b > a && strlist_push(l, a, (size_t)(b - a))) return AF_ERR_NOMEM;
    s = c ? c + 1 : e;
  }
  return 0;
}

int af_param_strlist_append(const af_param *p, void *config, const char *item) {
  return strlist_push(FIELD(config, p, af_strlist), item, strlen(item)) ? AF_ERR_NOMEM : 0;
}

void af_param_strlist_clear(const af_param *p, void *config) {
  strlist_clear(FIELD(config, p, af_strlist));
}

/* Index of `text` in "a|b|c", or -1. */
static int enum_index(const char *choices, const char *text) {
  int i = 0;
  size_t n = strlen(text);
  for (const char *s = choices; s && *s; i++) {
    const char *bar = strchr(s, '|');
    size_t len = bar ? (size_t)(bar - s) : strlen(s);
    if (len == n && strncmp(s, text, n) == 0) return i;
    s = bar ? bar + 1 : NULL;
  }
  return -1;
}

static int range_ok(const af_param *p, double v, char *why, size_t n) {
  if (!(p->min < p->max)) return 0;
  if (v < p->min) {
    snprintf(why, n, "%g is below the minimum %g", v, p->min);
    return AF_ERR_CONFIG;
  }
  if (v > p->max) {
    snprintf(why, n, "%g is above the maximum %g", v, p->max);
    return AF_ERR_CONFIG;
  }
  return 0;
}

int af_param_set_text(const af_param *p, void *config, const char *text, char *why, size_t n) {
  char *end = NULL;
  switch (p->type) {
    case AF_PARAM_INT: {
      errno = 0;
      /* base 10, or hex with 0x: a leading zero must not mean octal */
      const char *t = text;
      while (isspace((unsigned char)*t)) t++;
      int hex = t[0] == '0' && (t[1] == 'x' || t[1] == 'X');
      long long v = strtoll(text, &end, hex ? 16 : 10);
      while (end && isspace((unsigned char)*end)) end++;
      if (!*text || errno || *end) {
        snprintf(why, n, "expected an integer, got '%s'", text);
        return AF_ERR_CONFIG;
      }
      if (range_ok(p, (double)v, why, n)) return AF_ERR_CONFIG;
      *FIELD(config, p, int64_t) = v;
      return 0;
    }
    case AF_PARAM_FLOAT: {
      errno = 0;
      double v = strtod(text, &end);
      while (end && isspace((unsigned char)*end)) end++;
      if (!*text || errno || *end || !isfinite(v)) {
        snprintf(why, n, "expected a number, got '%s'", text);
        return AF_ERR_CONFIG;
      }
      if (range_ok(p, v, why, n)) return AF_ERR_CONFIG;
      *FIELD(config, p, double) = v;
      return 0;
    }
    case AF_PARAM_BOOL: {
      static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
      for (int i = 0; i < 4; i++) {
        if (!strcasecmp(text, yes[i])) return *FIELD(config, p, int) = 1, 0;
        if (!strcasecmp(text, no[i])) return *FIELD(config, p, int) = 0, 0;
      }
      snprintf(why, n, "expected true or false, got '%s'", text);
      return AF_ERR_CONFIG;
    }
    case AF_PARAM_STRING: {
      char *s = strdup(text);
      if (!s) return AF_ERR_NOMEM;
      char **f = FIELD(config, p, char *);
      free(*f);
      *f = s;
      return 0;
    }
    case AF_PARAM_ENUM: {
      int i = enum_index(p->choices, text);
      if (i < 0) {
        snprintf(why, n, "'%s' is not one of %s", text, p->choices);
        return AF_ERR_CONFIG;
      }
      *FIELD(config, p, int) = i;
      return 0;
    }
    case AF_PARAM_STRLIST:
      return strlist_parse(FIELD(config, p, af_strlist), text) ? AF_ERR_NOMEM : 0;
    case AF_PARAM_JSON: { /* kept as compact JSON text, so that equal values compare equal */
      cJSON *j = cJSON_Parse(text);
      if (!j) {
        snprintf(why, n, "expected JSON (a YAML list or mapping in a pipeline file), got '%.60s'", text);
        return AF_ERR_CONFIG;
      }
      char *s = cJSON_PrintUnformatted(j);
      cJSON_Delete(j);
      if (!s) return AF_ERR_NOMEM;
      char **f = FIELD(config, p, char *);
      free(*f);
      *f = s;
      return 0;
    }
  }
  snprintf(why, n, "parameter '%s' has an unknown type", p->name);
  return AF_ERR_CONFIG;
}

int af_params_defaults(const af_stage_desc *d, void *config) {
  for (int i = 0; i < d->n_params; i++) {
    const af_param *p = &d->params[i];
    char why[256];
    if (!p->def || (p->flags & AF_PARAM_REQUIRED)) continue;
    int rc = af_param_set_text(p, config, p->def, why, sizeof why);
    if (rc == AF_ERR_NOMEM) return af_err(rc, "stage '%s': out of memory", d->name);
    if (rc) return af_err(AF_ERR_INVALID, "stage '%s': default of '%s': %s", d->name, p->name, why);
  }
  return 0;
}

void af_params_free(const af_stage_desc *d, void *config) {
  if (!config) return;
  for (int i = 0; i < d->n_params; i++) {
    const af_param *p = &d->params[i];
    if (p->type == AF_PARAM_STRING || p->type == AF_PARAM_JSON) {
      free(*FIELD(config, p, char *));
      *FIELD(config, p, char *) = NULL;
    } else if (p->type == AF_PARAM_STRLIST) {
      strlist_clear(FIELD(config, p, af_strlist));
    }
  }
}

void af_param_format(const af_param *p, const void *config, char *buf, size_t n) {
  buf[0] = 0;
  switch (p->type) {
    case AF_PARAM_INT:
      snprintf(buf, n, "%lld", (long long)*CFIELD(config, p, int64_t));
      break;
    case AF_PARAM_FLOAT:
      snprintf(buf, n, "%.9g", *CFIELD(config, p, double));
      break;
    case AF_PARAM_BOOL:
      snprintf(buf, n, "%s", *CFIELD(config, p, int) ? "true" : "false");
      break;
    case AF_PARAM_STRING:
    case AF_PARAM_JSON: {
      const char *s = *CFIELD(config, p, char *);
      snprintf(buf, n, "%s", s ? s : "");
      break;
    }
    case AF_PARAM_ENUM: {
      int idx = *CFIELD(config, p, int), i = 0;
      for (const char *s = p->choices; s && *s; i++) {
        const char *bar = strchr(s, '|');
        int len = bar ? (int)(bar - s) : (int)strlen(s);
        if (i == idx) {
          snprintf(buf, n, "%.*s", len, s);
          break;
        }
        s = bar ? bar + 1 : NULL;
      }
      break;
    }
    case AF_PARAM_STRLIST: {
      const af_strlist *l = CFIELD(config, p, af_strlist);
      size_t o = 0;
      o += (size_t)snprintf(buf + o, n - o, "[");
      for (int i = 0; i < l->n && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", l->v[i]);
      if (o < n) snprintf(buf + o, n - o, "]");
      break;
    }
  }
}

/* ------------------------------------------------------------------ ports */

int af_port_parse(const char *text, const af_stage_desc *d, const void *config, af_port_shape *out, char *why,
                  size_t n) {
  memset(out, 0, sizeof *out);
  if (!text) {
    snprintf(why, n, "no description");
    return AF_ERR_CONFIG;
  }
  if (!strcmp(text, "any")) return out->kind = 1, out->ndim = -1, 0;
  if (!strcmp(text, "text")) return out->kind = 2, out->ndim = -1, 0;
  const char *br = strchr(text, '[');
  size_t tl = br ? (size_t)(br - text) : strlen(text);
  if (tl == 3 && !strncmp(text, "f32", 3))
    out->dtype = AF_DTYPE_F32;
  else if (tl == 3 && !strncmp(text, "i32", 3))
    out->dtype = AF_DTYPE_I32;
  else if (tl == 2 && !strncmp(text, "u8", 2))
    out->dtype = AF_DTYPE_U8;
  else {
    snprintf(why, n, "'%s': expected f32, u8, i32, any or text before '['", text);
    return AF_ERR_CONFIG;
  }
  const char *e = br ? strchr(br, ']') : NULL;
  if (!br || !e || e[1]) {
    snprintf(why, n, "'%s': expected DTYPE[dims]", text);
    return AF_ERR_CONFIG;
  }
  const char *s = br + 1;
  if (e - s == 3 && !strncmp(s, "...", 3)) return out->ndim = -1, 0;
  if (s == e) return 0; /* scalar: rank 0 */
  while (s <= e) {
    const char *c = s;
    while (c < e && *c != ',') c++;
    const char *a = s, *b = c;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    if (out->ndim == AF_MAX_DIMS) {
      snprintf(why, n, "'%s': more than %d dimensions", text, AF_MAX_DIMS);
      return AF_ERR_CONFIG;
    }
    int k = out->ndim++;
    size_t len = (size_t)(b - a);
    if (len == 1 && *a == '*') {
      out->dim[k] = -1;
    } else if (len > 0 && (isdigit((unsigned char)*a) || (*a == '-' && len == 2 && a[1] == '1'))) {
      char num[32];
      snprintf(num, sizeof num, "%.*s", (int)len, a);
      char *end;
      long long v = strtoll(num, &end, 10);
      if (*end) {
        snprintf(why, n, "'%s': bad dimension '%s'", text, num);
        return AF_ERR_CONFIG;
      }
      out->dim[k] = v;
    } else if (len > 0 && len < sizeof out->sym[k] && (isalpha((unsigned char)*a) || *a == '_')) {
      snprintf(out->sym[k], sizeof out->sym[k], "%.*s", (int)len, a);
      out->dim[k] = -2;
      const af_param *p = d ? af_param_find(d, out->sym[k]) : NULL;
      if (p && p->type == AF_PARAM_INT && config) out->dim[k] = *CFIELD(config, p, int64_t);
    } else {
      snprintf(why, n, "'%s': bad dimension '%.*s'", text, (int)len, a);
      return AF_ERR_CONFIG;
    }
    s = c + 1;
  }
  return 0;
}

void af_port_format(const af_port_shape *s, char *buf, size_t n) {
  if (s->kind == 1) {
    snprintf(buf, n, "any");
    return;
  }
  if (s->kind == 2) {
    snprintf(buf, n, "text");
    return;
  }
  size_t o = (size_t)snprintf(buf, n, "%s[", af_dtype_name(s->dtype));
  if (s->ndim < 0 && o < n) o += (size_t)snprintf(buf + o, n - o, "...");
  for (int i = 0; i < s->ndim && o < n; i++) {
    const char *sep = i ? "," : "";
    if (s->dim[i] == -1)
      o += (size_t)snprintf(buf + o, n - o, "%s*", sep);
    else if (s->dim[i] == -2)
      o += (size_t)snprintf(buf + o, n - o, "%s%s", sep, s->sym[i]);
    else
      o += (size_t)snprintf(buf + o, n - o, "%s%lld", sep, (long long)s->dim[i]);
  }
  if (o < n) snprintf(buf + o, n - o, "]");
}

int af_parse_bytes(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !(v >= 0)) return -1;
  double mul = 1;
  if (*end == 'k' || *end == 'K')
    mul = 1024.0, end++;
  else if (*end == 'm' || *end == 'M')
    mul = 1048576.0, end++;
  else if (*end == 'g' || *end == 'G')
    mul = 1073741824.0, end++;
  if (*end == 'i' && mul > 1) end++; /* "256MiB" */
  if (*end == 'B' || *end == 'b') end++;
  if (*end || v * mul > 9.0e18) return -1;
  *out = (int64_t)(v * mul);
  return 0;
}
