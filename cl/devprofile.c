/* Device profile files: reading and validating them (libyaml document API),
 * matching them against a device, merging the three levels, and applying
 * the result (see devprofile.h). */
#include "cl/devprofile.h"

#include <clblast_c.h>
#include <dirent.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "core/datadir.h"

typedef struct match_rule {
  char platform[128], vendor[128], device[128], regex[128], type[16], drv_min[32], drv_max[32];
  long min_cu, max_cu;
  int n_keys;
} match_rule;

/* CLBlast kernels whose parameter sets we know (CLBlast 1.5.3 database):
 * an override must name exactly these, or CLBlast rejects it at run time
 * with -2047; checking here gives the file and line instead. */
static const struct {
  const char *kernel, *params;
} KNOWN[] = {
    {"Xgemm", "GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN"},
    {"XgemmDirect", "KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD"},
    {"GemmRoutine", "XGEMM_MIN_INDIRECT_SIZE"},
    {"Xgemv", "WGS1 WPT1"},
    {"XgemvFast", "VW2 WGS2 WPT2"},
    {"XgemvFastRot", "VW3 WGS3 WPT3"},
    {"Copy", "COPY_DIMX COPY_DIMY COPY_VW COPY_WPT"},
    {"Pad", "PAD_DIMX PAD_DIMY PAD_WPTX PAD_WPTY"},
    {"Transpose", "TRA_DIM TRA_PAD TRA_SHUFFLE TRA_WPT"},
    {"Padtranspose", "PADTRA_PAD PADTRA_TILE PADTRA_WPT"},
    {"Xaxpy", "VW WGS WPT"},
    {"Xdot", "WGS1 WGS2"},
    {"Xger", "WGS1 WGS2 WPT"},
};

/* one file being read: for error messages */
typedef struct reader {
  const char *path;
  yaml_document_t *doc;
} reader;

static int bad(const reader *r, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(const reader *r, const yaml_node_t *n, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return af_err(AF_ERR_CONFIG, "%s:%zu:%zu: %s", r->path, n ? n->start_mark.line + 1 : 0,
                n ? n->start_mark.column + 1 : 0, msg);
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int parse_long(const char *s, long *out) {
  char *e;
  if (!s || !*s) return -1;
  errno = 0;
  long v = strtol(s, &e, 10);
  if (*e || errno) return -1;
  *out = v;
  return 0;
}

static int copy_str(const reader *r, const yaml_node_t *n, const char *key, char *dst, size_t cap) {
  const char *v = scalar(n);
  if (!v || !*v) return bad(r, n, "%s needs a non-empty text value", key);
  if (strlen(v) >= cap) return bad(r, n, "%s is longer than %zu characters", key, cap - 1);
  memcpy(dst, v, strlen(v) + 1);
  return 0;
}

static int read_match(const reader *r, yaml_node_t *map, match_rule *m) {
  if (map->type != YAML_MAPPING_NODE) return bad(r, map, "match must be a mapping");
  int rc = 0;
  for (yaml_node_pair_t *e = map->data.mapping.pairs.start; !rc && e < map->data.mapping.pairs.top; e++) {
    yaml_node_t *kn = yaml_document_get_node(r->doc, e->key), *vn = yaml_document_get_node(r->doc, e->value);
    const char *k = scalar(kn);
    m->n_keys++;
    if (!k)
      rc = bad(r, kn, "match: keys must be text");
    else if (!strcmp(k, "platform"))
      rc = copy_str(r, vn, k, m->platform, sizeof m->platform);
    else if (!strcmp(k, "vendor"))
      rc = copy_str(r, vn, k, m->vendor, sizeof m->vendor);
    else if (!strcmp(k, "device"))
      rc = copy_str(r, vn, k, m->device, sizeof m->device);
    else if (!strcmp(k, "driver_min"))
      rc = copy_str(r, vn, k, m->drv_min, sizeof m->drv_min);
    else if (!strcmp(k, "driver_max"))
      rc = copy_str(r, vn, k, m->drv_max, sizeof m->drv_max);
    else if (!strcmp(k, "device_regex")) {
      regex_t re;
      if (!(rc = copy_str(r, vn, k, m->regex, sizeof m->regex))) {
        int e2 = regcomp(&re, m->regex, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (e2)
          rc = bad(r, vn, "device_regex '%s' is not a valid extended regular expression", m->regex);
        else
          regfree(&re);
      }
    } else if (!strcmp(k, "type")) {
      const char *v = scalar(vn);
      if (!v || (strcmp(v, "cpu") && strcmp(v, "gpu") && strcmp(v, "accelerator")))
        rc = bad(r, vn, "match.type must be cpu, gpu or accelerator");
      else
        snprintf(m->type, sizeof m->type, "%s", v);
    } else if (!strcmp(k, "min_compute_units") || !strcmp(k, "max_compute_units")) {
      long v;
      if (parse_long(scalar(vn), &v) || v < 1)
        rc = bad(r, vn, "match.%s must be a positive integer", k);
      else
        *(k[1] == 'i' ? &m->min_cu : &m->max_cu) = v;
    } else
      rc = bad(
          r, kn,
          "match: unknown key '%s' (platform, vendor, device, device_regex, type, driver_min, driver_max, "
          "min_compute_units, max_compute_units)",
          k);
  }
  return rc;
}

/* one CLBlast override: {precision: P, params: {...}} or {precision: P, NAME: V, ...} */
static int read_override(const reader *r, const char *kernel, yaml_node_t *map, af_clblast_override *o) {
  memset(o, 0, sizeof *o);
  snprintf(o->kernel, sizeof o->kernel, "%s", kernel);
  o->precision = 32;
  if (map->type != YAML_MAPPING_NODE)
    return bad(r, map, "clblast.%s must map parameter names to values", kernel);
  int rc = 0;
  for (yaml_node_pair_t *e = map->data.mapping.pairs.start; !rc && e < map->data.mapping.pairs.top; e++) {
    yaml_node_t *kn = yaml_document_get_node(r->doc, e->key), *vn = yaml_document_get_node(r->doc, e->value);
    const char *k = scalar(kn);
    long v;
    if (!k) {
      rc = bad(r, kn, "clblast.%s: keys must be text", kernel);
    } else if (!strcmp(k, "params")) {
      if (vn->type != YAML_MAPPING_NODE) rc = bad(r, vn, "clblast.%s.params must be a mapping", kernel);
      for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; !rc && p < vn->data.mapping.pairs.top; p++) {
        yaml_node_t *pk = yaml_document_get_node(r->doc, p->key),
                    *pv = yaml_document_get_node(r->doc, p->value);
        const char *name = scalar(pk);
        if (!name || parse_long(scalar(pv), &v) || v < 0)
          rc = bad(r, pk, "clblast.%s: '%s' needs a non-negative integer", kernel, name ? name : "?");
        else if (o->n >= AF_PROFILE_MAX_PARAMS || strlen(name) >= sizeof o->names[0])
          rc = bad(r, pk, "clblast.%s: too many or too long parameter names", kernel);
        else
          snprintf(o->names[o->n], sizeof o->names[0], "%s", name), o->values[o->n++] = (size_t)v;
      }
    } else if (parse_long(scalar(vn), &v) || v < 0) {
      rc = bad(r, vn, "clblast.%s: '%s' needs a non-negative integer", kernel, k);
    } else if (!strcmp(k, "precision")) {
      if (v != 16 && v != 32 && v != 64 && v != 3232 && v != 6464)
        rc = bad(r, vn, "clblast.%s: precision must be 16, 32, 64, 3232 or 6464", kernel);
      o->precision = (int)v;
    } else if (o->n >= AF_PROFILE_MAX_PARAMS || strlen(k) >= sizeof o->names[0]) {
      rc = bad(r, kn, "clblast.%s: too many or too long parameter names", kernel);
    } else {
      snprintf(o->names[o->n], sizeof o->names[0], "%s", k);
      o->values[o->n++] = (size_t)v;
    }
  }
  /* known kernels: exactly their parameter set */
  for (size_t i = 0; !rc && i < sizeof KNOWN / sizeof KNOWN[0]; i++) {
    if (strcmp(KNOWN[i].kernel, kernel)) continue;
    char want[256];
    snprintf(want, sizeof want, "%s", KNOWN[i].params);
    int n_want = 0;
    for (char *save = NULL, *t = strtok_r(want, " ", &save); !rc && t;
         t = strtok_r(NULL, " ", &save), n_want++) {
      int found = 0;
      for (int j = 0; j < o->n; j++) found |= !strcmp(o->names[j], t);
      if (!found)
        rc = bad(r, map, "clblast.%s: parameter %s is missing (CLBlast needs all of: %s)", kernel, t,
                 KNOWN[i].params);
    }
    if (!rc && o->n != n_want)
      rc = bad(r, map, "clblast.%s: unknown or repeated parameter (CLBlast takes exactly: %s)", kernel,
               KNOWN[i].params);
  }
  return rc;
}

static void put_override(af_devprofile *p, const af_clblast_override *o) {
  int i = 0;
  while (i < p->n_overrides &&
         !(strcmp(p->overrides[i].kernel, o->kernel) == 0 && p->overrides[i].precision == o->precision))
    i++;
  p->overrides[i] = *o; /* a later level replaces the same kernel and precision */
  if (i == p->n_overrides) p->n_overrides++;
}

static int read_clblast(const reader *r, yaml_node_t *map, af_devprofile *p) {
  if (map->type != YAML_MAPPING_NODE) return bad(r, map, "clblast must be a mapping of kernel names");
  int rc = 0;
  for (yaml_node_pair_t *e = map->data.mapping.pairs.start; !rc && e < map->data.mapping.pairs.top; e++) {
    yaml_node_t *kn = yaml_document_get_node(r->doc, e->key), *vn = yaml_document_get_node(r->doc, e->value);
    const char *k = scalar(kn);
    if (!k || !*k || strlen(k) >= sizeof p->overrides[0].kernel) {
      rc = bad(r, kn, "clblast: kernel names must be short text");
      continue;
    }
    /* one mapping, or a list of them (one per precision) */
    yaml_node_item_t *it = NULL, *end = NULL;
    yaml_node_item_t self = e->value;
    if (vn->type == YAML_SEQUENCE_NODE)
      it = vn->data.sequence.items.start, end = vn->data.sequence.items.top;
    else
      it = &self, end = &self + 1;
    for (; !rc && it < end; it++) {
      af_clblast_override o;
      if ((rc = read_override(r, k, yaml_document_get_node(r->doc, *it), &o))) break;
      if (p->n_overrides >= AF_PROFILE_MAX_OVERRIDES)
        rc = bad(r, kn, "clblast: more than %d overrides", AF_PROFILE_MAX_OVERRIDES);
      else
        put_override(p, &o);
    }
  }
  return rc;
}

static int read_kernels(const reader *r, yaml_node_t *map, af_devprofile *p) {
  if (map->type != YAML_MAPPING_NODE) return bad(r, map, "kernels must be a mapping of defines");
  int rc = 0;
  for (yaml_node_pair_t *e = map->data.mapping.pairs.start; !rc && e < map->data.mapping.pairs.top; e++) {
    yaml_node_t *kn = yaml_document_get_node(r->doc, e->key), *vn = yaml_document_get_node(r->doc, e->value);
    const char *k = scalar(kn), *v = scalar(vn);
    if (!k || !*k || strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(k) || strlen(k) >= 48)
      rc = bad(r, kn, "kernels: '%s' must be an upper-case define name", k ? k : "?");
    else if (!v || !*v || strlen(v) >= 48 ||
             strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(v))
      rc = bad(r, vn, "kernels.%s: the value must be a number or a word", k);
    else {
      int i = 0;
      while (i < p->n_defines && strcmp(p->defines[i][0], k)) i++;
      if (i == AF_PROFILE_MAX_DEFINES) {
        rc = bad(r, kn, "kernels: more than %d defines", AF_PROFILE_MAX_DEFINES);
        break;
      }
      if (i == p->n_defines) p->n_defines++;
      snprintf(p->defines[i][0], sizeof p->defines[i][0], "%s", k);
      snprintf(p->defines[i][1], sizeof p->defines[i][1], "%s", v);
    }
  }
  return rc;
}

static int read_batch(const reader *r, yaml_node_t *map, af_devprofile *p) {
  if (map->type != YAML_MAPPING_NODE)
    return bad(r, map, "batch must be a mapping {vit: N, qformer: N, llm: N}");
  int rc = 0;
  for (yaml_node_pair_t *e = map->data.mapping.pairs.start; !rc && e < map->data.mapping.pairs.top; e++) {
    yaml_node_t *kn = yaml_document_get_node(r->doc, e->key), *vn = yaml_document_get_node(r->doc, e->value);
    const char *k = scalar(kn);
    long v;
    int *dst = !k                      ? NULL
               : !strcmp(k, "vit")     ? &p->batch_vit
               : !strcmp(k, "qformer") ? &p->batch_qformer
               : !strcmp(k, "llm")     ? &p->batch_llm
                                       : NULL;
    if (!dst)
      rc = bad(r, kn, "batch: unknown stage '%s' (vit, qformer, llm)", k ? k : "?");
    else if (parse_long(scalar(vn), &v) || v < 1 || v > 256)
      rc = bad(r, vn, "batch.%s must be an integer 1..256", k);
    else
      *dst = (int)v;
  }
  return rc;
}

/* Reads one file over what p already holds; its match rule into *m. */
static int load_file(const char *path, af_devprofile *p, match_rule *m) {
  memset(m, 0, sizeof *m);
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
  yaml_parser_t parser;
  yaml_document_t doc;
  int rc = 0;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = af_err(AF_ERR_CONFIG, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
                parser.problem_mark.column + 1, parser.problem ? parser.problem : "YAML syntax error");
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
  }
  reader r = {path, &doc};
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || root->type != YAML_MAPPING_NODE) rc = bad(&r, root, "a profile must be a mapping");
  for (yaml_node_pair_t *kv = root ? root->data.mapping.pairs.start : NULL;
       !rc && kv < root->data.mapping.pairs.top; kv++) {
    yaml_node_t *kn = yaml_document_get_node(&doc, kv->key), *vn = yaml_document_get_node(&doc, kv->value);
    const char *key = scalar(kn), *val = scalar(vn);
    if (!key)
      rc = bad(&r, kn, "keys must be text");
    else if (!strcmp(key, "name"))
      rc = copy_str(&r, vn, key, p->name, sizeof p->name);
    else if (!strcmp(key, "match"))
      rc = read_match(&r, vn, m);
    else if (!strcmp(key, "clblast"))
      rc = read_clblast(&r, vn, p);
    else if (!strcmp(key, "kernels"))
      rc = read_kernels(&r, vn, p);
    else if (!strcmp(key, "batch"))
      rc = read_batch(&r, vn, p);
    else if (!strcmp(key, "weights")) {
      if (!val || (strcmp(val, "fp16_storage") && strcmp(val, "fp32_copy")))
        rc = bad(&r, vn, "weights must be fp16_storage or fp32_copy");
      else
        p->fp16_storage = !strcmp(val, "fp16_storage");
    } else if (!strcmp(key, "kv_cache")) {
      if (!val || (strcmp(val, "auto") && strcmp(val, "f16") && strcmp(val, "f32")))
        rc = bad(&r, vn, "kv_cache must be f16, f32 or auto");
      else
        p->kv_cache = !strcmp(val, "f16") ? AF_KV_F16 : !strcmp(val, "f32") ? AF_KV_F32 : AF_KV_AUTO;
    } else if (!strcmp(key, "memory_budget_mb")) {
      if (parse_long(val, &p->memory_budget_mb) || p->memory_budget_mb < 0)
        rc = bad(&r, vn, "memory_budget_mb must be a non-negative integer");
    } else
      rc = bad(&r, kn,
               "unknown key '%s' (name, match, clblast, kernels, batch, weights, kv_cache, memory_budget_mb)",
               key);
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

/* the leading dotted number of a version text ("535.104.05", "3.1+debian") */
static void version_parts(const char *s, long v[4]) {
  memset(v, 0, 4 * sizeof v[0]);
  while (*s && (*s < '0' || *s > '9')) s++;
  for (int i = 0; i < 4 && *s >= '0' && *s <= '9'; i++) {
    v[i] = strtol(s, (char **)&s, 10);
    if (*s != '.') break;
    s++;
  }
}

static int version_cmp(const char *a, const char *b) {
  long x[4], y[4];
  version_parts(a, x);
  version_parts(b, y);
  for (int i = 0; i < 4; i++)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}

/* 1 when every rule fits; appends the rules that matched to why */
static int fits(const match_rule *m, const af_device_info *i, char *why, size_t cap) {
  if (m->platform[0] && !strcasestr(i->platform, m->platform)) return 0;
  if (m->vendor[0] && !strcasestr(i->vendor, m->vendor)) return 0;
  if (m->device[0] && !strcasestr(i->name, m->device)) return 0;
  if (m->regex[0]) {
    regex_t re;
    if (regcomp(&re, m->regex, REG_EXTENDED | REG_ICASE | REG_NOSUB)) return 0;
    int hit = regexec(&re, i->name, 0, NULL, 0) == 0;
    regfree(&re);
    if (!hit) return 0;
  }
  if (m->type[0] && !(!strcmp(m->type, "cpu")   ? i->is_cpu
                      : !strcmp(m->type, "gpu") ? i->is_gpu
                                                : (i->type & CL_DEVICE_TYPE_ACCELERATOR) != 0))
    return 0;
  if (m->drv_min[0] && version_cmp(i->driver, m->drv_min) < 0) return 0;
  if (m->drv_max[0] && version_cmp(i->driver, m->drv_max) > 0) return 0;
  if (m->min_cu && i->compute_units < (cl_uint)m->min_cu) return 0;
  if (m->max_cu && i->compute_units > (cl_uint)m->max_cu) return 0;
  if (why) {
    size_t l = strlen(why);
#define WHY(...) (l += l < cap ? (size_t)snprintf(why + l, cap - l, __VA_ARGS__) : 0)
    WHY(" [");
    const char *sep = "";
    if (m->platform[0]) WHY("%splatform~'%s'", sep, m->platform), sep = ", ";
    if (m->vendor[0]) WHY("%svendor~'%s'", sep, m->vendor), sep = ", ";
    if (m->device[0]) WHY("%sdevice~'%s'", sep, m->device), sep = ", ";
    if (m->regex[0]) WHY("%sdevice=~/%s/", sep, m->regex), sep = ", ";
    if (m->type[0]) WHY("%stype %s", sep, m->type), sep = ", ";
    if (m->drv_min[0] || m->drv_max[0])
      WHY("%sdriver %s in [%s, %s]", sep, i->driver, m->drv_min[0] ? m->drv_min : "-",
          m->drv_max[0] ? m->drv_max : "-"),
          sep = ", ";
    if (m->min_cu || m->max_cu) WHY("%s%u compute units", sep, i->compute_units);
    WHY("]");
#undef WHY
  }
  return 1;
}

const char *af_devprofile_dir(void) {
  static _Thread_local af_data_where where;
  return af_data_locate(AF_DATA_PROFILES, &where) == 0 ? where.dir : NULL;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The best-fitting vendor default and device file under dir/<sub>/ (sorted,
 * so ties go to the first path).  Every file is read, so a broken file is
 * reported even when another one would win. */
static int find_best(const char *dir, const af_device_info *info, char *vend, char *dev, size_t cap) {
  char *names[512];
  int n = 0, rc = 0;
  DIR *d = opendir(dir);
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d)) && n < 512;) {
    if (e->d_name[0] == '.') continue;
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(sub, &st) || !S_ISDIR(st.st_mode)) continue;
    DIR *sd = opendir(sub);
    for (struct dirent *f; sd && (f = readdir(sd)) && n < 512;) {
      size_t l = strlen(f->d_name);
      if (f->d_name[0] == '.' || l < 6 || strcmp(f->d_name + l - 5, ".yaml")) continue;
      size_t need = strlen(sub) + l + 2;
      if (!(names[n] = malloc(need))) continue;
      snprintf(names[n++], need, "%s/%s", sub, f->d_name);
    }
    if (sd) closedir(sd);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], cmp_str);
  int best_v = 0, best_d = 0;
  for (int i = 0; i < n; i++) {
    af_devprofile tmp;
    match_rule m;
    memset(&tmp, 0, sizeof tmp);
    if (!rc) rc = load_file(names[i], &tmp, &m);
    int is_default = strlen(names[i]) >= 13 && !strcmp(names[i] + strlen(names[i]) - 13, "/default.yaml");
    int *best = is_default ? &best_v : &best_d;
    if (!rc && m.n_keys > *best && fits(&m, info, NULL, 0)) {
      *best = m.n_keys;
      snprintf(is_default ? vend : dev, cap, "%s", names[i]);
    }
    free(names[i]);
  }
  return rc;
}

/* path relative to the profile folder, for messages */
static const char *rel(const char *path, const char *dir) {
  size_t l = strlen(dir);
  return !strncmp(path, dir, l) && path[l] == '/' ? path + l + 1 : path;
}

int af_devprofile_select(const af_device_info *info, const char *explicit_file, af_devprofile *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "default");
  out->batch_vit = out->batch_llm = 1, out->batch_qformer = 1;
  af_data_where where;
  const char *dir = af_data_locate(AF_DATA_PROFILES, &where) == 0 ? where.dir : NULL;
  char base[1024] = "", vend[1024] = "", dev[1024] = "";
  match_rule m;
  struct stat st;
  int rc = 0;
  size_t l = 0, cap = sizeof out->why;
  if (dir) snprintf(base, sizeof base, "%s/default.yaml", dir);
  if (!dir) {
    /* an installed binary without its share/artflow: say so once, run anyway */
    af_data_warn_missing(AF_DATA_PROFILES, &where);
    l += (size_t)snprintf(out->why, cap, "built-in defaults (no profile folder; tried %s)", where.tried);
  } else if (stat(base, &st) == 0) {
    if ((rc = load_file(base, out, &m))) return rc;
    l += (size_t)snprintf(out->why, cap, "%s: default.yaml", dir);
  } else {
    l += (size_t)snprintf(out->why, cap, "built-in defaults (no %s)", base);
  }
  if (l >= cap) l = cap - 1;
  const char *forced = explicit_file && *explicit_file ? explicit_file : getenv("ARTFLOW_PROFILE_FILE");
  if (forced && *forced) {
    if ((rc = load_file(forced, out, &m))) return rc;
    snprintf(out->file, sizeof out->file, "%s", forced);
    if (l < cap) snprintf(out->why + l, cap - l, " + %s (given explicitly)", forced);
    return 0;
  }
  if (dir && (rc = find_best(dir, info, vend, dev, sizeof vend))) return rc;
  const char *levels[2] = {vend, dev};
  for (int i = 0; i < 2; i++) {
    if (!levels[i][0]) continue;
    if ((rc = load_file(levels[i], out, &m))) return rc;
    snprintf(out->file, sizeof out->file, "%s", levels[i]);
    if (l < cap) l += (size_t)snprintf(out->why + l, cap - l, " + %s", rel(levels[i], dir));
    if (l < cap) fits(&m, info, out->why, cap);
    l = strlen(out->why);
  }
  if (!vend[0] && !dev[0] && l < cap) snprintf(out->why + l, cap - l, " (no vendor or device file matches)");
  return 0;
}

const char *af_devprofile_defines(const af_devprofile *p) {
  static _Thread_local char buf[2048];
  size_t l = 0;
  buf[0] = 0;
  for (int i = 0; i < p->n_defines && l < sizeof buf; i++)
    l += (size_t)snprintf(buf + l, sizeof buf - l, "%s-D%s=%s", i ? " " : "", p->defines[i][0],
                          p->defines[i][1]);
  return buf;
}

int af_devprofile_apply(af_cl *cl, const af_devprofile *p) {
  int rc = af_cl_set_tuning(cl, p->n_defines ? af_devprofile_defines(p) : NULL);
  for (int i = 0; !rc && i < p->n_overrides; i++) {
    const af_clblast_override *o = &p->overrides[i];
    const char *names[AF_PROFILE_MAX_PARAMS];
    for (int k = 0; k < o->n; k++) names[k] = o->names[k];
    CLBlastStatusCode st = CLBlastOverrideParameters(cl->device, o->kernel, (CLBlastPrecision)o->precision,
                                                     (size_t)o->n, names, o->values);
    if (st != CLBlastSuccess)
      rc = af_err(
          (int)st,
          "profile %s: CLBlast rejects the %s override (%s): every parameter of the kernel must be given",
          p->file[0] ? p->file : p->name, o->kernel, af_strerror((int)st));
  }
  return rc;
}

const char *af_devprofile_define(const af_devprofile *p, const char *name) {
  for (int i = 0; p && i < p->n_defines; i++)
    if (!strcmp(p->defines[i][0], name)) return p->defines[i][1];
  return NULL;
}

int af_devprofile_gemm_impl(const af_devprofile *p) {
  const char *v = af_devprofile_define(p, "AF_GEMM_IMPL");
  return v && !strcmp(v, "tiled") ? AF_GEMM_IMPL_TILED : AF_GEMM_IMPL_CLBLAST;
}

int af_devprofile_batch(const af_devprofile *p, const char *stage) {
  return !strcmp(stage, "vit")       ? p->batch_vit
         : !strcmp(stage, "qformer") ? p->batch_qformer
         : !strcmp(stage, "llm")     ? p->batch_llm
                                     : 0;
}

int af_devprofile_fp16_storage(const af_devprofile *p) {
  return p->fp16_storage;
}

int af_devprofile_kv_cache(const af_devprofile *p) {
  return p->kv_cache;
}

long af_devprofile_memory_budget_mb(const af_devprofile *p) {
  return p->memory_budget_mb;
}

void af_devprofile_describe(const af_devprofile *p, FILE *f) {
  fprintf(f, "profile %s\n", p->name);
  fprintf(f, "        from: %s\n", p->why);
  fprintf(
      f, "        GEMM: %s\n",
      af_devprofile_gemm_impl(p) == AF_GEMM_IMPL_TILED ? "own tiled kernel (AF_GEMM_IMPL=tiled)" : "CLBlast");
  for (int i = 0; i < p->n_overrides; i++) {
    const af_clblast_override *o = &p->overrides[i];
    fprintf(f, "        CLBlast %s (precision %d):", o->kernel, o->precision);
    for (int k = 0; k < o->n; k++) fprintf(f, " %s=%zu", o->names[k], o->values[k]);
    fputc('\n', f);
  }
  if (p->n_defines) fprintf(f, "        kernel defines: %s\n", af_devprofile_defines(p));
  fprintf(f, "        batch: vit %d, qformer %d, llm %d; weights: %s; KV cache: %s; memory budget: %s",
          p->batch_vit, p->batch_qformer, p->batch_llm, p->fp16_storage ? "fp16 storage" : "fp32 copy",
          p->kv_cache == AF_KV_F16   ? "f16"
          : p->kv_cache == AF_KV_F32 ? "f32"
                                     : "auto",
          p->memory_budget_mb ? "" : "device limits\n");
  if (p->memory_budget_mb) fprintf(f, "%ld MiB\n", p->memory_budget_mb);
}
