/* The graph check: every input port of a transform or sink is matched by
 * name to the earlier stage that outputs it, and the two tensor descriptions
 * must agree (dtype, rank, sizes; '*' matches anything, a symbol binds to one
 * size per stage).  Every output name is written by one stage only (a second
 * writer would silently overwrite the first's results); outputs a parameter
 * names (AF_PARAM_OUTPUTS: the llm stage's tasks) count like declared ones.  Also builds the JSON of the
 * resolved configuration that sinks put into provenance records (and, through settings.c, the settings a
 * resume checks). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

typedef struct binding {
  char sym[32];
  int64_t value;
} binding;

typedef struct produced {
  const char *name;    /* port name (tensor name in the item) */
  af_port_shape shape; /* resolved as far as known */
  const char *desc;    /* the port's text, for messages */
  int inst;
} produced;

static int64_t lookup(const binding *b, int nb, const char *sym) {
  for (int i = 0; i < nb; i++)
    if (!strcmp(b[i].sym, sym)) return b[i].value;
  return -2;
}

/* Unifies producer `ps` with consumer `cs`; binds consumer symbols.
 * 0 on success, else fills why. */
static int unify(const af_port_shape *ps, af_port_shape *cs, binding *b, int *nb, char *why, size_t n) {
  if (cs->kind == 1) return 0;
  if (cs->kind == 2 || ps->kind == 2) {
    if (cs->kind == ps->kind) return 0;
    snprintf(why, n, "%s vs %s", ps->kind == 2 ? "text" : "tensor", cs->kind == 2 ? "text" : "tensor");
    return -1;
  }
  if (ps->kind == 1) return 0; /* producer promises nothing: checked at run time */
  if (ps->dtype != cs->dtype) {
    snprintf(why, n, "dtype %s vs %s", af_dtype_name(ps->dtype), af_dtype_name(cs->dtype));
    return -1;
  }
  if (ps->ndim < 0 || cs->ndim < 0) return 0;
  if (ps->ndim != cs->ndim) {
    snprintf(why, n, "rank %d vs %d", ps->ndim, cs->ndim);
    return -1;
  }
  for (int i = 0; i < cs->ndim; i++) {
    int64_t pd = ps->dim[i], cd = cs->dim[i];
    if (cd == -2) {
      int64_t v = lookup(b, *nb, cs->sym[i]);
      if (v >= 0)
        cd = v;
      else if (pd >= 0 && *nb < 4 * AF_MAX_DIMS) {
        snprintf(b[*nb].sym, sizeof b[*nb].sym, "%s", cs->sym[i]);
        b[(*nb)++].value = pd;
        continue;
      }
    }
    if (pd < 0 || cd < 0) continue;
    if (pd != cd) {
      snprintf(why, n, "dimension %d: %lld vs %lld%s%s", i, (long long)pd, (long long)cd,
               cs->dim[i] == -2 ? " bound to " : "", cs->dim[i] == -2 ? cs->sym[i] : "");
      return -1;
    }
  }
  return 0;
}

/* Substitutes bound symbols into a shape. */
static void apply(af_port_shape *s, const binding *b, int nb) {
  for (int i = 0; i < s->ndim; i++)
    if (s->dim[i] == -2) {
      int64_t v = lookup(b, nb, s->sym[i]);
      if (v >= 0) s->dim[i] = v;
    }
}

/* The sizes an instance negotiated, as bindings of its own symbols. */
static int negotiated(const af_instance *in, binding *b) {
  int n = 0;
  for (int i = 0; i < in->dims.n && n < 4 * AF_MAX_DIMS; i++) {
    snprintf(b[n].sym, sizeof b[n].sym, "%s", in->dims.v[i].symbol);
    b[n++].value = in->dims.v[i].value;
  }
  return n;
}

/* What a message adds when an instance's sizes came from negotiation:
 * "; S = 56 from the model m.gguf" for the symbols of `desc`. */
static void origin(const af_pipeline *p, const af_instance *in, const char *desc, char *out, size_t n) {
  out[0] = 0;
  size_t l = 0;
  for (int i = 0; i < in->dims.n && l < n; i++) {
    const char *sym = in->dims.v[i].symbol, *at = strstr(desc, sym);
    size_t sl = strlen(sym);
    if (!at || (at > desc && (isalnum((unsigned char)at[-1]) || at[-1] == '_')) ||
        isalnum((unsigned char)at[sl]) || at[sl] == '_')
      continue;
    l +=
        (size_t)snprintf(out + l, n - l, "%s%s = %lld", l ? ", " : "; ", sym, (long long)in->dims.v[i].value);
  }
  if (l && l < n && (in->desc->flags & AF_STAGE_NEEDS_MODEL) && p->model)
    snprintf(out + l, n - l, " from the model %s%s%s", p->model, p->llm_model ? " + " : "",
             p->llm_model ? p->llm_model : "");
}

static void to_desc(const af_port_shape *prod, const af_port_shape *cons, af_tensor_desc *d) {
  memset(d, 0, sizeof *d);
  const af_port_shape *s = cons->kind == 0 ? cons : prod;
  if (!s || s->kind != 0) {
    d->ndim = -1;
    return;
  }
  d->dtype = s->dtype;
  d->ndim = s->ndim;
  for (int i = 0; i < AF_MAX_DIMS; i++) {
    int64_t v = i < s->ndim ? s->dim[i] : 1;
    if (v < 0 && prod && prod->kind == 0 && prod->ndim == s->ndim && prod->dim[i] >= 0) v = prod->dim[i];
    d->shape[i] = v < 0 ? -1 : v;
  }
}

/* The output names an instance's AF_PARAM_OUTPUTS parameters list (a
 * STRLIST's entries; a JSON list's strings and its mappings' "name"), added
 * to *names (malloc'd copies). */
static int listed_outputs(const af_instance *in, char ***names, int *n) {
  for (int i = 0; i < in->desc->n_params; i++) {
    const af_param *pr = &in->desc->params[i];
    if (!(pr->flags & AF_PARAM_OUTPUTS)) continue;
    const void *f = (const char *)in->config + pr->offset;
    cJSON *j = pr->type == AF_PARAM_JSON && *(char *const *)f ? cJSON_Parse(*(char *const *)f) : NULL;
    const af_strlist *l = pr->type == AF_PARAM_STRLIST ? f : NULL;
    int m = l ? l->n : cJSON_GetArraySize(j), rc = 0;
    char **v = m ? realloc(*names, sizeof(char *) * (size_t)(*n + m)) : *names;
    if (m && !v) rc = af_err(AF_ERR_NOMEM, "out of memory");
    if (v) *names = v;
    for (int k = 0; !rc && k < m; k++) {
      const cJSON *e = j ? cJSON_GetArrayItem(j, k) : NULL, *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
      const char *s = l                    ? l->v[k]
                      : cJSON_IsString(e)  ? e->valuestring
                      : cJSON_IsString(nm) ? nm->valuestring
                                           : NULL;
      if (s && !(v[(*n)++] = strdup(s))) (*n)--, rc = af_err(AF_ERR_NOMEM, "out of memory");
    }
    cJSON_Delete(j);
    if (rc) return rc;
  }
  return 0;
}

/* adds what instance i writes to the table: a name written twice, by two
 * stages or by one, is a configuration error, unless the later stage also
 * takes it as an input (it updates what it reads) */
static int add_output(af_pipeline *p, produced **tab, int *np, int *cap, produced pr) {
  const af_instance *in = &p->inst[pr.inst];
  for (int j = 0; j < *np; j++)
    if (!strcmp((*tab)[j].name, pr.name)) {
      const af_instance *o = &p->inst[(*tab)[j].inst];
      int reads = 0;
      for (int k = 0; k < in->desc->n_inputs && o != in; k++)
        reads |= !strcmp(in->desc->inputs[k].name, pr.name);
      if (reads) {
        (*tab)[j] = pr;
        return 0;
      }
      if (o == in)
        return af_err(AF_ERR_CONFIG, "%s:%d:%d: stage '%s' writes output '%s' twice (two tasks of one name?)",
                      p->path, in->line, in->col, in->name, pr.name);
      return af_err(AF_ERR_CONFIG,
                    "%s:%d:%d: stage '%s' output '%s': stage '%s' (line %d) writes it too; one would "
                    "overwrite the other (give one of them other names, e.g. with `tasks:`)",
                    p->path, in->line, in->col, in->name, pr.name, o->name, o->line);
    }
  if (*np == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    produced *t = realloc(*tab, (size_t)*cap * sizeof *t);
    if (!t) return af_err(AF_ERR_NOMEM, "out of memory");
    *tab = t;
  }
  (*tab)[(*np)++] = pr;
  return 0;
}

int af_graph_check(af_pipeline *p) {
  int np = 0, cap = 0, rc = 0, n_names = 0;
  produced *tab = NULL;
  char **names = NULL;
  char why[256], a[128], b2[128];
  for (int i = 0; i < p->n_inst && !rc; i++) {
    af_instance *in = &p->inst[i];
    const af_stage_desc *d = in->desc;
    binding bind[4 * AF_MAX_DIMS];
    int nb = negotiated(in, bind); /* sizes the stage fixed (none before negotiation) */
    free(in->in_shape), free(in->in_desc), free(in->out_shape); /* a second check after negotiation */
    in->in_shape = calloc((size_t)d->n_inputs + 1, sizeof *in->in_shape);
    in->in_desc = calloc((size_t)d->n_inputs + 1, sizeof *in->in_desc);
    in->out_shape = calloc((size_t)d->n_outputs + 1, sizeof *in->out_shape);
    if (!in->in_shape || !in->in_desc || !in->out_shape) {
      rc = af_err(AF_ERR_NOMEM, "out of memory");
      break;
    }
    for (int k = 0; k < d->n_inputs && !rc && d->kind != AF_STAGE_SOURCE; k++) {
      const af_port *port = &d->inputs[k];
      af_port_shape *cs = &in->in_shape[k];
      if (af_port_parse(port->desc, d, in->config, cs, why, sizeof why)) {
        rc = af_err(AF_ERR_CONFIG, "stage '%s': input '%s': %s", in->name, port->name, why);
        break;
      }
      const produced *pr = NULL;
      for (int j = np - 1; j >= 0 && !pr; j--)
        if (!strcmp(tab[j].name, port->name)) pr = &tab[j];
      if (!pr) {
        to_desc(NULL, cs, &in->in_desc[k]);
        if (port->flags & AF_PORT_OPTIONAL) continue;
        af_port_format(cs, a, sizeof a);
        rc = af_err(AF_ERR_CONFIG, "%s:%d:%d: stage '%s' input '%s' %s: no earlier stage outputs '%s'",
                    p->path, in->line, in->col, in->name, port->name, a, port->name);
        break;
      }
      apply(cs, bind, nb);
      if (unify(&pr->shape, cs, bind, &nb, why, sizeof why)) {
        char oa[300], ob[300];
        af_port_format(&pr->shape, a, sizeof a);
        af_port_format(cs, b2, sizeof b2);
        origin(p, &p->inst[pr->inst], pr->desc, oa, sizeof oa);
        origin(p, in, port->desc, ob, sizeof ob);
        rc = af_err(AF_ERR_CONFIG,
                    "%s:%d:%d: stage '%s' output '%s' %s (declared %s%s) does not fit stage '%s' "
                    "input '%s' %s (declared %s%s): %s",
                    p->path, in->line, in->col, p->inst[pr->inst].name, pr->name, a, pr->desc, oa, in->name,
                    port->name, b2, port->desc, ob, why);
        break;
      }
      apply(cs, bind, nb);
      to_desc(&pr->shape, cs, &in->in_desc[k]);
    }
    int first = n_names;
    if (!rc) rc = listed_outputs(in, &names, &n_names);
    for (int k = 0; k < d->n_outputs && !rc; k++) {
      const af_port *port = &d->outputs[k];
      af_port_shape *os = &in->out_shape[k];
      if (af_port_parse(port->desc, d, in->config, os, why, sizeof why)) {
        rc = af_err(AF_ERR_CONFIG, "stage '%s': output '%s': %s", in->name, port->name, why);
        break;
      }
      apply(os, bind, nb);
      if ((port->flags & AF_PORT_DEFAULT) && n_names > first) continue; /* replaced by the listed ones */
      rc = add_output(p, &tab, &np, &cap, (produced){port->name, *os, port->desc, i});
    }
    for (int k = first; k < n_names && !rc; k++)
      rc = add_output(p, &tab, &np, &cap, (produced){names[k], {.kind = 2, .ndim = -1}, "text", i});
  }
  for (int k = 0; k < n_names; k++) free(names[k]);
  free(names);
  free(tab);
  return rc;
}

/* ------------------------------------------------------------- params json */

static cJSON *instance_json(const af_instance *in) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "stage", in->desc->name);
  cJSON_AddStringToObject(o, "name", in->name);
  cJSON_AddNumberToObject(o, "batch", in->batch);
  for (int i = 0; i < in->desc->n_params; i++)
    cJSON_AddItemToObject(o, in->desc->params[i].name, af_param_json(&in->desc->params[i], in->config));
  return o;
}

/* Builds p->params_json, then the resume settings (settings.c).  0 or
 * AF_ERR_NOMEM. */
static int build_json(af_pipeline *p) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return af_err(AF_ERR_NOMEM, "out of memory");
  cJSON_AddItemToObject(root, "source", instance_json(&p->inst[0]));
  cJSON *st = cJSON_AddArrayToObject(root, "stages"), *sk = cJSON_AddArrayToObject(root, "sinks");
  for (int i = 1; i < p->n_inst; i++)
    cJSON_AddItemToArray(i <= p->n_transforms ? st : sk, instance_json(&p->inst[i]));
  if (p->device) cJSON_AddStringToObject(root, "device", p->device);
  if (p->profile) cJSON_AddStringToObject(root, "profile", p->profile);
  if (p->model) cJSON_AddStringToObject(root, "model", p->model);
  if (p->llm_model) cJSON_AddStringToObject(root, "llm_model", p->llm_model);
  free(p->params_json);
  p->params_json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!p->params_json) return af_err(AF_ERR_NOMEM, "out of memory");
  return af_settings_build(p);
}

/* With the {shard} templates in the sink paths, whenever it runs (at load,
 * or again when the device profile changes batches): every shard of a run
 * shows the same parameters and settings (pipeline/shard.c). */
int af_pipeline_build_json(af_pipeline *p) {
  af_shard_templates(p, 1);
  int rc = build_json(p);
  af_shard_templates(p, 0);
  return rc;
}
