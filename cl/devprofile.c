/* Device profile files: loading (libyaml), matching and applying (see
 * devprofile.h). */
#include "cl/devprofile.h"

#include <clblast_c.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct {
  char platform[128], vendor[128], device[128], type[16];
  long min_cu, max_cu;
  int n_keys;
} match_rule;

static const char *scalar(yaml_document_t *d, yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

#define BAD(node, ...) \
  (af_err(AF_ERR_CONFIG, "%s:%zu:%zu: " __VA_ARGS__), rc = AF_ERR_CONFIG)

static int parse_long(const char *s, long *out) {
  char *e;
  if (!s) return -1;
  long v = strtol(s, &e, 10);
  if (*e || e == s) return -1;
  *out = v;
  return 0;
}

/* Fills p (over what it already holds) and the match rule from one file. */
static int load_file(const char *path, af_devprofile *p, match_rule *m) {
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
  yaml_parser_t parser;
  yaml_document_t doc;
  int rc = 0;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = af_err(AF_ERR_CONFIG, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                parser.problem ? parser.problem : "YAML syntax error");
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    rc = af_err(AF_ERR_CONFIG, "%s: a profile must be a mapping", path);
    goto out;
  }
  for (yaml_node_pair_t *kv = root->data.mapping.pairs.start; kv < root->data.mapping.pairs.top && !rc; kv++) {
    yaml_node_t *kn = yaml_document_get_node(&doc, kv->key), *vn = yaml_document_get_node(&doc, kv->value);
    const char *key = scalar(&doc, kn), *val = scalar(&doc, vn);
    size_t line = kn->start_mark.line + 1, col = kn->start_mark.column + 1;
    if (!key) {
      BAD(kn, "keys must be scalars", path, line, col);
    } else if (!strcmp(key, "name") && val) {
      snprintf(p->name, sizeof p->name, "%s", val);
    } else if (!strcmp(key, "weights") && val) {
      if (strcmp(val, "fp16_storage") && strcmp(val, "fp32_copy"))
        BAD(vn, "weights: '%s' is not fp16_storage or fp32_copy", path, line, col, val);
      p->fp16_storage = !strcmp(val, "fp16_storage");
    } else if (!strcmp(key, "memory_budget_mb") && val) {
      if (parse_long(val, &p->memory_budget_mb)) BAD(vn, "memory_budget_mb: '%s' is not an integer", path, line, col, val);
    } else if (vn->type == YAML_MAPPING_NODE &&
               (!strcmp(key, "match") || !strcmp(key, "clblast") || !strcmp(key, "kernels") || !strcmp(key, "batch"))) {
      for (yaml_node_pair_t *e = vn->data.mapping.pairs.start; e < vn->data.mapping.pairs.top && !rc; e++) {
        yaml_node_t *ek = yaml_document_get_node(&doc, e->key), *ev = yaml_document_get_node(&doc, e->value);
        const char *k2 = scalar(&doc, ek), *v2 = scalar(&doc, ev);
        size_t l2 = ek->start_mark.line + 1, c2 = ek->start_mark.column + 1;
        long num = 0;
        if (!k2) {
          BAD(ek, "keys must be scalars", path, l2, c2);
        } else if (!strcmp(key, "match")) {
          m->n_keys++;
          if (!strcmp(k2, "platform") && v2) snprintf(m->platform, sizeof m->platform, "%s", v2);
          else if (!strcmp(k2, "vendor") && v2) snprintf(m->vendor, sizeof m->vendor, "%s", v2);
          else if (!strcmp(k2, "device") && v2) snprintf(m->device, sizeof m->device, "%s", v2);
          else if (!strcmp(k2, "type") && v2 && (!strcmp(v2, "cpu") || !strcmp(v2, "gpu")))
            snprintf(m->type, sizeof m->type, "%s", v2);
          else if (!strcmp(k2, "min_compute_units") && !parse_long(v2, &m->min_cu)) {
          } else if (!strcmp(k2, "max_compute_units") && !parse_long(v2, &m->max_cu)) {
          } else
            BAD(ek, "match: unknown key or bad value '%s' (platform, vendor, device, type: cpu|gpu, "
                    "min_compute_units, max_compute_units)", path, l2, c2, k2);
        } else if (!strcmp(key, "kernels")) {
          if (!v2 || p->n_defines >= AF_PROFILE_MAX_DEFINES || strspn(k2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(k2))
            BAD(ek, "kernels: '%s' must be an upper-case define with a scalar value", path, l2, c2, k2);
          else {
            int i = 0;
            while (i < p->n_defines && strcmp(p->defines[i][0], k2)) i++;
            if (i == p->n_defines) p->n_defines++;
            snprintf(p->defines[i][0], sizeof p->defines[i][0], "%s", k2);
            snprintf(p->defines[i][1], sizeof p->defines[i][1], "%s", v2);
          }
        } else if (!strcmp(key, "batch")) {
          if (parse_long(v2, &num) || num < 1 || num > 256)
            BAD(ek, "batch: %s must be an integer 1..256", path, l2, c2, k2);
          else if (!strcmp(k2, "vit")) p->batch_vit = (int)num;
          else if (!strcmp(k2, "qformer")) p->batch_qformer = (int)num;
          else if (!strcmp(k2, "llm")) p->batch_llm = (int)num;
          else BAD(ek, "batch: unknown stage '%s' (vit, qformer, llm)", path, l2, c2, k2);
        } else { /* clblast: KERNEL: {precision: P, NAME: V, ...} */
          if (ev->type != YAML_MAPPING_NODE || p->n_overrides >= AF_PROFILE_MAX_OVERRIDES) {
            BAD(ek, "clblast: %s must map parameter names to values", path, l2, c2, k2);
            continue;
          }
          af_clblast_override *o = &p->overrides[p->n_overrides++];
          memset(o, 0, sizeof *o);
          snprintf(o->kernel, sizeof o->kernel, "%s", k2);
          o->precision = 32;
          for (yaml_node_pair_t *pp = ev->data.mapping.pairs.start; pp < ev->data.mapping.pairs.top && !rc; pp++) {
            yaml_node_t *pk = yaml_document_get_node(&doc, pp->key), *pv = yaml_document_get_node(&doc, pp->value);
            const char *name = scalar(&doc, pk), *value = scalar(&doc, pv);
            if (!name || parse_long(value, &num) || num < 0)
              BAD(pk, "clblast.%s: '%s' needs a non-negative integer", path, pk->start_mark.line + 1,
                  pk->start_mark.column + 1, k2, name ? name : "?");
            else if (!strcmp(name, "precision"))
              o->precision = (int)num;
            else if (o->n < AF_PROFILE_MAX_PARAMS) {
              snprintf(o->names[o->n], sizeof o->names[o->n], "%s", name);
              o->values[o->n++] = (size_t)num;
            }
          }
        }
      }
    } else {
      BAD(kn, "unknown key '%s' (name, match, clblast, kernels, batch, weights, memory_budget_mb)", path, line, col,
          key);
    }
  }
out:
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

static int fits(const match_rule *m, const af_device_info *i) {
  if (m->platform[0] && !strcasestr(i->platform, m->platform)) return 0;
  if (m->vendor[0] && !strcasestr(i->vendor, m->vendor)) return 0;
  if (m->device[0] && !strcasestr(i->name, m->device)) return 0;
  if (m->type[0] && (!strcmp(m->type, "cpu") ? !i->is_cpu : !i->is_gpu)) return 0;
  if (m->min_cu && i->compute_units < (cl_uint)m->min_cu) return 0;
  if (m->max_cu && i->compute_units > (cl_uint)m->max_cu) return 0;
  return 1;
}

static const char *profile_dir(void) {
  const char *d = getenv("ARTFLOW_PROFILE_DIR");
  return d && *d ? d : AF_SOURCE_DIR "/config/profiles";
}

/* best-matching non-default file under dir (one level of vendor folders) */
static int find_best(const char *dir, const af_device_info *info, char *best, size_t n, int *best_keys) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int rc = 0;
  for (struct dirent *e; !rc && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t l = strlen(e->d_name);
    if (l > 5 && !strcmp(e->d_name + l - 5, ".yaml")) {
      if (!strcmp(path + strlen(path) - 13, "/default.yaml") && !strcmp(dir, profile_dir())) continue; /* the base */
      af_devprofile tmp;
      match_rule m;
      memset(&tmp, 0, sizeof tmp);
      memset(&m, 0, sizeof m);
      rc = load_file(path, &tmp, &m);
      if (!rc && m.n_keys > 0 && fits(&m, info) && m.n_keys > *best_keys) {
        *best_keys = m.n_keys;
        snprintf(best, n, "%s", path);
      }
    } else if (e->d_type == DT_DIR && strcmp(dir, profile_dir()) == 0) {
      rc = find_best(path, info, best, n, best_keys);
    }
  }
  closedir(d);
  return rc;
}

int af_devprofile_select(const af_device_info *info, const char *explicit_file, af_devprofile *out) {
  memset(out, 0, sizeof *out);
  match_rule m;
  memset(&m, 0, sizeof m);
  snprintf(out->name, sizeof out->name, "default");
  char base[1024];
  snprintf(base, sizeof base, "%s/default.yaml", profile_dir());
  FILE *f = fopen(base, "rb");
  int rc = 0;
  if (f) {
    fclose(f);
    if ((rc = load_file(base, out, &m))) return rc;
  }
  const char *forced = explicit_file && *explicit_file ? explicit_file : getenv("ARTFLOW_PROFILE_FILE");
  char best[1024] = "";
  int keys = 0;
  if (forced && *forced) {
    snprintf(best, sizeof best, "%s", forced);
    snprintf(out->why, sizeof out->why, "given explicitly");
  } else {
    if ((rc = find_best(profile_dir(), info, best, sizeof best, &keys))) return rc;
    if (best[0]) snprintf(out->why, sizeof out->why, "%d match rule%s fit the device", keys, keys == 1 ? "" : "s");
    else snprintf(out->why, sizeof out->why, "no device profile matches; built-in defaults");
  }
  if (best[0]) {
    memset(&m, 0, sizeof m);
    if ((rc = load_file(best, out, &m))) return rc;
    snprintf(out->file, sizeof out->file, "%s", best);
  }
  return 0;
}

const char *af_devprofile_defines(const af_devprofile *p) {
  static _Thread_local char buf[2048];
  size_t l = 0;
  buf[0] = 0;
  for (int i = 0; i < p->n_defines && l < sizeof buf; i++)
    l += (size_t)snprintf(buf + l, sizeof buf - l, "%s-D%s=%s", i ? " " : "", p->defines[i][0], p->defines[i][1]);
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
      rc = af_err((int)st, "profile %s: CLBlast rejects the %s override (%s): every parameter of the kernel must be given",
                  p->file[0] ? p->file : p->name, o->kernel, af_strerror((int)st));
  }
  return rc;
}

void af_devprofile_describe(const af_devprofile *p, FILE *f) {
  fprintf(f, "profile %s (%s)%s%s\n", p->name, p->why, p->file[0] ? ": " : "", p->file);
  for (int i = 0; i < p->n_overrides; i++)
    fprintf(f, "  CLBlast %s (precision %d): %d parameters overridden\n", p->overrides[i].kernel,
            p->overrides[i].precision, p->overrides[i].n);
  if (p->n_defines) fprintf(f, "  kernel defines: %s\n", af_devprofile_defines(p));
  fprintf(f, "  batch: vit %d, qformer %d, llm %d; weights: %s\n", p->batch_vit, p->batch_qformer, p->batch_llm,
          p->fp16_storage ? "fp16 storage" : "fp32 copy");
}
