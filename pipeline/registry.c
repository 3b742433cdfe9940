/* The stage registry: one X-macro list of built-in stage descriptors, plus
 * stages added at run time (plugins, tests), and the descriptor sanity check.
 *
 * Each built-in stage file exports `const af_stage_desc af_stage_<sym>`,
 * listed in AF_BUILTIN_STAGES; the references are strong, which is what pulls
 * the stage's object out of the static library. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "pipeline/pipeline.h"

/* Every built-in stage, in the order `artflow inspect stages` lists them. */
// clang-format off
#define AF_BUILTIN_STAGES(X) \
  X(src_dir) X(src_glob) X(src_list) X(src_csv) X(src_jsonl) X(src_iiif) \
  X(decode) X(preprocess) X(vit) X(qformer) X(llm) X(checksum) \
  X(jsonl) X(csv) X(npy) X(annotations) X(xmp)
// clang-format on

#define AF_REG_DECL(sym) extern const af_stage_desc af_stage_##sym;
AF_BUILTIN_STAGES(AF_REG_DECL)
#undef AF_REG_DECL

#define AF_REG_PTR(sym) &af_stage_##sym,
static const af_stage_desc *const builtins[] = {AF_BUILTIN_STAGES(AF_REG_PTR)};
#undef AF_REG_PTR

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static const af_stage_desc **all; /* builtins then added ones */
static int n_all, cap_all;

const char *af_stage_kind_name(af_stage_kind kind) {
  switch (kind) {
    case AF_STAGE_SOURCE:
      return "source";
    case AF_STAGE_TRANSFORM:
      return "transform";
    case AF_STAGE_SINK:
      return "sink";
  }
  return "?";
}

/* Fills the list with the built-ins on first use.  Caller holds reg_lock. */
static int ensure_builtins(void) {
  if (all) return 0;
  int n = AF_ARRAY_LEN(builtins);
  cap_all = n + 16;
  all = malloc((size_t)cap_all * sizeof *all);
  if (!all) return af_err(AF_ERR_NOMEM, "stage registry: out of memory");
  for (int i = 0; i < n; i++) all[i] = builtins[i];
  n_all = n;
  return 0;
}

static const af_stage_desc *find_locked(af_stage_kind kind, const char *name) {
  for (int i = 0; i < n_all; i++)
    if (all[i]->kind == kind && strcmp(all[i]->name, name) == 0) return all[i];
  return NULL;
}

const af_stage_desc *af_registry_find(af_stage_kind kind, const char *name) {
  if (!name) return NULL;
  pthread_mutex_lock(&reg_lock);
  const af_stage_desc *d = ensure_builtins() ? NULL : find_locked(kind, name);
  pthread_mutex_unlock(&reg_lock);
  return d;
}

const af_stage_desc *const *af_registry_list(int *n) {
  pthread_mutex_lock(&reg_lock);
  int rc = ensure_builtins();
  *n = rc ? 0 : n_all;
  const af_stage_desc *const *r = all;
  pthread_mutex_unlock(&reg_lock);
  return r;
}

static int valid_name(const char *s) {
  if (!s || !*s) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
  return 1;
}

/* Parses every port of the descriptor so a bad description is caught when
 * the stage is registered, not when a pipeline first uses it. */
static int check_ports(const af_stage_desc *d, const af_port *ports, int n, const char *what) {
  if (n < 0 || (n > 0 && !ports))
    return af_err(AF_ERR_INVALID, "stage '%s': bad %s port list", d->name, what);
  for (int i = 0; i < n; i++) {
    af_port_shape s;
    char why[256];
    if (!ports[i].name || !*ports[i].name)
      return af_err(AF_ERR_INVALID, "stage '%s': %s port %d has no name", d->name, what, i);
    if (af_port_parse(ports[i].desc, d, NULL, &s, why, sizeof why))
      return af_err(AF_ERR_INVALID, "stage '%s': %s port '%s': %s", d->name, what, ports[i].name, why);
  }
  return 0;
}

int af_stage_desc_check(const af_stage_desc *d) {
  if (!d) return af_err(AF_ERR_INVALID, "stage descriptor is NULL");
  if (d->abi_version != AF_STAGE_ABI_VERSION)
    return af_err(AF_ERR_INVALID, "stage '%s': ABI version %u, this artflow needs %u",
                  d->name ? d->name : "?", d->abi_version, AF_STAGE_ABI_VERSION);
  if (!valid_name(d->name))
    return af_err(AF_ERR_INVALID, "stage name '%s' must be [a-z0-9_]+", d->name ? d->name : "");
  if (d->kind != AF_STAGE_SOURCE && d->kind != AF_STAGE_TRANSFORM && d->kind != AF_STAGE_SINK)
    return af_err(AF_ERR_INVALID, "stage '%s': unknown kind %d", d->name, (int)d->kind);
  if (!d->create || !d->destroy)
    return af_err(AF_ERR_INVALID, "stage '%s': create and destroy are required", d->name);
  if (d->kind == AF_STAGE_SOURCE && !d->next)
    return af_err(AF_ERR_INVALID, "stage '%s': a source needs next()", d->name);
  if (d->kind != AF_STAGE_SOURCE && !d->process)
    return af_err(AF_ERR_INVALID, "stage '%s': a %s needs process()", d->name, af_stage_kind_name(d->kind));
  if (d->batch_size < 0 || d->batch_size > 65536)
    return af_err(AF_ERR_INVALID, "stage '%s': batch size %d out of range", d->name, d->batch_size);
  if (d->n_params < 0 || (d->n_params > 0 && !d->params))
    return af_err(AF_ERR_INVALID, "stage '%s': bad parameter table", d->name);
  for (int i = 0; i < d->n_params; i++) {
    const af_param *p = &d->params[i];
    if (!valid_name(p->name)) return af_err(AF_ERR_INVALID, "stage '%s': parameter %d: bad name", d->name, i);
    if (p->type < AF_PARAM_INT || p->type > AF_PARAM_JSON)
      return af_err(AF_ERR_INVALID, "stage '%s': parameter '%s': bad type", d->name, p->name);
    if (!strcmp(p->name, "stage") || !strcmp(p->name, "name") || !strcmp(p->name, "batch") ||
        !strcmp(p->name, "type"))
      return af_err(AF_ERR_INVALID, "stage '%s': parameter '%s' is a reserved key", d->name, p->name);
    if (p->type == AF_PARAM_ENUM && (!p->choices || !*p->choices))
      return af_err(AF_ERR_INVALID, "stage '%s': enum parameter '%s' has no choices", d->name, p->name);
    size_t sz = p->type == AF_PARAM_STRLIST                              ? sizeof(af_strlist)
                : p->type == AF_PARAM_STRING || p->type == AF_PARAM_JSON ? sizeof(char *)
                : p->type == AF_PARAM_INT                                ? sizeof(int64_t)
                : p->type == AF_PARAM_FLOAT                              ? sizeof(double)
                                                                         : sizeof(int);
    if (p->offset + sz > d->config_size)
      return af_err(AF_ERR_INVALID, "stage '%s': parameter '%s' lies outside the config struct", d->name,
                    p->name);
    for (int j = 0; j < i; j++)
      if (!strcmp(d->params[j].name, p->name))
        return af_err(AF_ERR_INVALID, "stage '%s': parameter '%s' declared twice", d->name, p->name);
  }
  int rc = check_ports(d, d->inputs, d->n_inputs, "input");
  if (!rc) rc = check_ports(d, d->outputs, d->n_outputs, "output");
  return rc;
}

int af_registry_add(const af_stage_desc *d) {
  int rc = af_stage_desc_check(d);
  if (rc) return rc;
  pthread_mutex_lock(&reg_lock);
  if ((rc = ensure_builtins())) goto out;
  const af_stage_desc *old = find_locked(d->kind, d->name);
  if (old == d) goto out; /* the same plugin loaded twice: nothing to do */
  if (old) {
    rc = af_err(AF_ERR_CONFIG, "a %s stage named '%s' already exists", af_stage_kind_name(d->kind), d->name);
    goto out;
  }
  if (n_all == cap_all) {
    const af_stage_desc **p = realloc(all, (size_t)cap_all * 2 * sizeof *all);
    if (!p) {
      rc = af_err(AF_ERR_NOMEM, "stage registry: out of memory");
      goto out;
    }
    all = p;
    cap_all *= 2;
  }
  all[n_all++] = d;
out:
  pthread_mutex_unlock(&reg_lock);
  return rc;
}
