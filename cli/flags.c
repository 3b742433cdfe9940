/* Command-line flags made from a stage's parameter table (cli.h): describe
 * and chat offer the llm stage's rows as --flags (tag the rows of one of its
 * tasks, stages/llm_tasks.h), checked by the same
 * row (type, range) the YAML loader uses and passed to the pipeline as
 * "--set stage.name=value", so a default, a range or a doc line is written
 * once, in the stage's table. */
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"

static int skipped(const af_cli_flags *f, const char *name) {
  for (int i = 0; f->skip && f->skip[i]; i++)
    if (!strcmp(f->skip[i], name)) return 1;
  return 0;
}

/* the row a "--flag-name" stands for, or NULL */
static const af_param *row_of(const af_cli_flags *f, const char *flag, size_t len) {
  char name[64];
  if (len >= sizeof name) return NULL;
  for (size_t i = 0; i < len; i++) name[i] = flag[i] == '-' ? '_' : flag[i];
  name[len] = 0;
  const af_param *p = af_param_find(f->desc, name);
  return p && !skipped(f, p->name) ? p : NULL;
}

int af_cli_flags_init(af_cli_flags *f, const char *stage, const char *const *skip) {
  const af_stage_desc *d = af_registry_find(AF_STAGE_TRANSFORM, stage);
  if (!d) {
    memset(f, 0, sizeof *f);
    return af_err(AF_ERR_NOT_FOUND, "no stage '%s'", stage);
  }
  return af_cli_flags_init_desc(f, d, skip);
}

int af_cli_flags_init_desc(af_cli_flags *f, const af_stage_desc *desc, const char *const *skip) {
  memset(f, 0, sizeof *f);
  f->desc = desc;
  f->skip = skip;
  f->config = calloc(1, f->desc->config_size ? f->desc->config_size : 1);
  if (!f->config) return af_err(AF_ERR_NOMEM, "out of memory");
  return af_params_defaults(f->desc, f->config);
}

void af_cli_flags_free(af_cli_flags *f) {
  if (f->config) af_params_free(f->desc, f->config);
  free(f->config);
  for (int i = 0; i < f->n_sets; i++) free(f->sets[i]);
  free(f->sets);
  memset(f, 0, sizeof *f);
}

int af_cli_flags_parse(af_cli_flags *f, int argc, char **argv, int *i, const char *cmd, const char *usage) {
  const char *a = argv[*i];
  if (strncmp(a, "--", 2)) return 0;
  const char *eq = strchr(a, '=');
  const af_param *p = row_of(f, a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
  if (!p) return 0;
  const char *v = eq ? eq + 1 : NULL;
  if (!v && p->type == AF_PARAM_BOOL) v = "true";
  if (!v && *i + 1 >= argc) return -af_cli_usage_error(cmd, usage, "option '%s' needs a value", a);
  if (!v) v = argv[++*i];
  char why[256];
  if (af_param_set_text(p, f->config, v, why, sizeof why))
    return -af_cli_usage_error(cmd, usage, "bad value '%s' for --%.*s: %s", v,
                               (int)(eq ? (size_t)(eq - a - 2) : strlen(a + 2)), a + 2, why);
  char **ns = realloc(f->sets, sizeof *ns * (size_t)(f->n_sets + 1));
  size_t n = strlen(f->desc->name) + strlen(p->name) + strlen(v) + 3;
  char *set = malloc(n);
  if (!ns || !set) {
    free(set);
    if (ns) f->sets = ns;
    return -af_cli_fail(af_err(AF_ERR_NOMEM, "out of memory"), cmd);
  }
  snprintf(set, n, "%s.%s=%s", f->desc->name, p->name, v);
  f->sets = ns;
  f->sets[f->n_sets++] = set;
  return 1;
}

const char *af_cli_flags_value(const af_cli_flags *f, const char *name, char *buf, size_t n) {
  const af_param *p = af_param_find(f->desc, name);
  if (!p) return NULL;
  af_param_format(p, f->config, buf, n);
  return buf;
}

/* "  --max-new-tokens N    longest answer in tokens (default 300)", the text
 * wrapped at 100 columns under its own column */
static void help_row(af_buf *b, const af_param *p, const char *extra) {
  char flag[96], text[1200], def[256] = "";
  const char *metavar = p->type == AF_PARAM_INT     ? " N"
                        : p->type == AF_PARAM_FLOAT ? " X"
                        : p->type == AF_PARAM_BOOL  ? ""
                                                    : " TEXT";
  int k = snprintf(flag, sizeof flag, "--%s%s", p->name, metavar);
  for (int i = 2; i < k && flag[i] != ' '; i++)
    if (flag[i] == '_') flag[i] = '-';
  if (p->def && p->type != AF_PARAM_BOOL) snprintf(def, sizeof def, " (default %s)", p->def);
  snprintf(text, sizeof text, "%s%s%s", p->doc, def, extra ? extra : "");
  char line[256];
  snprintf(line, sizeof line, k <= 21 ? "  %-21s " : "  %s\n%24s", flag, "");
  af_buf_puts(b, line);
  const char *t = text;
  while (*t) { /* words up to column 100 */
    size_t room = 76, n = strlen(t);
    if (n > room) {
      n = room;
      while (n > 0 && t[n] != ' ') n--;
      if (n == 0) n = room;
    }
    af_buf_put(b, t, n);
    af_buf_puts(b, "\n");
    t += n;
    while (*t == ' ') t++;
    if (*t) af_buf_puts(b, "                        ");
  }
}

void af_cli_flags_help(const af_cli_flags *f, af_buf *out, const char *const *extra) {
  for (int i = 0; i < f->desc->n_params; i++) {
    const af_param *p = &f->desc->params[i];
    if (skipped(f, p->name)) continue;
    const char *more = NULL;
    for (int k = 0; extra && extra[k]; k += 2)
      if (!strcmp(extra[k], p->name)) more = extra[k + 1];
    help_row(out, p, more);
  }
}

char *af_cli_usage_text(const char *head, const af_cli_flags *f, const char *const *extra, const char *tail) {
  af_buf b = {0};
  af_buf_puts(&b, head);
  af_cli_flags_help(f, &b, extra);
  af_buf_puts(&b, tail);
  af_buf_put(&b, "", 1);
  if (!b.oom) return b.p;
  af_buf_free(&b);
  return NULL;
}

int af_cli_parse(int argc, char **argv, const char *cmd, const char *usage, const af_cli_opt *opts,
                 af_cli_flags *f, const char **operands, int *n_operands) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const af_cli_opt *o = opts;
    while (o && o->name && strcmp(o->name, a)) o++;
    int k;
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    } else if (o && o->name && o->flag) {
      *o->flag = 1;
    } else if (o && o->name) {
      if (i + 1 >= argc) return af_cli_usage_error(cmd, usage, "option '%s' needs a value", a);
      *o->value = argv[++i];
    } else if ((k = af_cli_flags_parse(f, argc, argv, &i, cmd, usage)) < 0) {
      return -k;
    } else if (k == 0 && a[0] == '-' && a[1]) {
      return af_cli_usage_error(cmd, usage, "unknown option '%s'", a);
    } else if (k == 0) {
      operands[(*n_operands)++] = a;
    }
  }
  return -1;
}
