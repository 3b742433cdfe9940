/* See io_harness.h. */
#include "io_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"

static int set_one(const af_param *p, void *cfg, const char *v) {
  char *f = (char *)cfg + p->offset;
  switch (p->type) {
    case AF_PARAM_INT:
      *(int64_t *)f = strtoll(v, NULL, 10);
      return 0;
    case AF_PARAM_FLOAT:
      *(double *)f = strtod(v, NULL);
      return 0;
    case AF_PARAM_BOOL:
      *(int *)f = !strcmp(v, "true") || !strcmp(v, "1");
      return 0;
    case AF_PARAM_STRING:
    case AF_PARAM_JSON: /* the JSON text as given */
      free(*(char **)f);
      *(char **)f = strdup(v);
      return 0;
    case AF_PARAM_ENUM: {
      const char *c = p->choices;
      size_t len = strlen(v);
      for (int i = 0; c && *c; i++) {
        size_t l = strcspn(c, "|");
        if (l == len && !strncmp(c, v, l)) {
          *(int *)f = i;
          return 0;
        }
        c += l + (c[l] == '|');
      }
      return -1;
    }
    case AF_PARAM_STRLIST: {
      af_strlist *l = (af_strlist *)f;
      for (int i = 0; i < l->n; i++) free(l->v[i]);
      free(l->v);
      l->v = NULL;
      l->n = 0;
      const char *s = v;
      while (*s) {
        size_t k = strcspn(s, ",");
        l->v = realloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
        l->v[l->n++] = strndup(s, k);
        s += k + (s[k] == ',');
      }
      return 0;
    }
  }
  return -1;
}

void *io_config(const af_stage_desc *d, const char *const *sets) {
  void *cfg = calloc(1, d->config_size ? d->config_size : 1);
  for (int i = 0; i < d->n_params; i++)
    if (d->params[i].def) set_one(&d->params[i], cfg, d->params[i].def);
  for (int k = 0; sets && sets[k]; k++) {
    const char *eq = strchr(sets[k], '=');
    int found = 0;
    for (int i = 0; eq && i < d->n_params; i++)
      if (strlen(d->params[i].name) == (size_t)(eq - sets[k]) &&
          !strncmp(d->params[i].name, sets[k], (size_t)(eq - sets[k])))
        found = set_one(&d->params[i], cfg, eq + 1) == 0;
    if (!found) {
      fprintf(stderr, "io_config: bad setting '%s' for stage %s\n", sets[k], d->name);
      io_config_free(d, cfg);
      return NULL;
    }
  }
  return cfg;
}

void io_config_free(const af_stage_desc *d, void *cfg) {
  if (!cfg) return;
  for (int i = 0; i < d->n_params; i++) {
    char *f = (char *)cfg + d->params[i].offset;
    if (d->params[i].type == AF_PARAM_STRING || d->params[i].type == AF_PARAM_JSON) free(*(char **)f);
    if (d->params[i].type == AF_PARAM_STRLIST) {
      af_strlist *l = (af_strlist *)f;
      for (int j = 0; j < l->n; j++) free(l->v[j]);
      free(l->v);
    }
  }
  free(cfg);
}

/* the engine builds the real block (pipeline/provenance.c, tests/pipeline/
 * test_provenance.c); a stage tested alone gets this stand-in */
static const char *io_provenance(const af_stage_ctx *ctx, unsigned what) {
  return (what & AF_PROVENANCE_MODEL_DIGEST) ? "{\"artflow\":\"harness\",\"model_sha256\":\"digest\"}"
                                             : "{\"artflow\":\"harness\"}";
}

af_stage_ctx io_ctx(const char *instance, const char *pipeline_path, int resume) {
  af_stage_ctx c;
  memset(&c, 0, sizeof c);
  c.instance = instance;
  c.pipeline_path = pipeline_path;
  c.resume = resume;
  c.quiet = 1;
  c.batch = 64;
  c.provenance = io_provenance;
  return c;
}

int io_stage_setup(const af_stage_desc *d, af_stage_ctx *ctx, const void *cfg, const af_tensor_desc *inputs,
                   af_bindings *dims, void **self) {
  af_bindings none;
  if (!dims) dims = &none;
  memset(dims, 0, sizeof *dims);
  *self = NULL;
  int rc = d->create(ctx, cfg, self);
  if (!rc && d->negotiate) rc = d->negotiate(*self, ctx, dims);
  if (!rc && d->prepare) {
    af_tensor_desc open[8];
    for (int i = 0; !inputs && i < 8; i++) open[i] = (af_tensor_desc){0, -1, {-1, -1, -1, -1}};
    rc = d->prepare(*self, ctx, inputs ? inputs : open);
  }
  return rc;
}

af_item **io_drain(const af_stage_desc *d, const char *const *sets, const char *pipeline_path, int *n,
                   int *create_rc) {
  *n = 0;
  void *cfg = io_config(d, sets), *self = NULL;
  af_stage_ctx ctx = io_ctx(d->name, pipeline_path, 0);
  af_item **items = NULL;
  *create_rc = cfg ? d->create(&ctx, cfg, &self) : -1;
  if (*create_rc == 0) {
    af_item *it;
    af_flow f;
    while ((f = d->next(self, &ctx, &it)) == AF_FLOW_OK) {
      items = realloc(items, (size_t)(*n + 1) * sizeof *items);
      items[(*n)++] = it;
    }
    if (f == AF_FLOW_ERROR) *create_rc = 1;
  }
  d->destroy(self);
  io_config_free(d, cfg);
  return items;
}

void io_items_free(af_item **items, int n) {
  for (int i = 0; i < n; i++) af_item_free(items[i]);
  free(items);
}
