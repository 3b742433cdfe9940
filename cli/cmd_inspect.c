/* artflow inspect: a model file's contents, the list of stages, one
 * stage's parameter table and ports, or a tag vocabulary (after loading --plugin libraries, so a
 * plugin author sees their stage as a pipeline would). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "formats/tagvocab.h"
#include "pipeline/pipeline.h"

#if __has_include("convert/inspect.c")
#include "convert/inspect.h"
#define AF_HAVE_MODEL_INSPECT 1
#else
#define AF_HAVE_MODEL_INSPECT 0
#endif

static const char usage[] =
    "usage: artflow inspect MODEL.gguf\n"
    "       artflow inspect stages [--plugin LIB.so]...\n"
    "       artflow inspect stage NAME [--plugin LIB.so]...\n"
    "       artflow inspect vocab FILE|NAME\n"
    "\n"
    "MODEL.gguf    header, metadata and tensor table of a model file\n"
    "stages        every stage this build knows (sources, transforms, sinks)\n"
    "stage NAME    a stage's parameters (type, default, range, doc) and ports;\n"
    "              NAME may be prefixed with its kind: source:csv, sink:csv\n"
    "vocab FILE    a tag vocabulary (name, question, mode, labels with id and URI);\n"
    "              a bare NAME is a shipped one (config/vocabularies/NAME.yaml)\n"
    "\n"
    "options:\n"
    "  --plugin LIB.so   load a stage plugin first (repeatable; a bare file name is\n"
    "                    looked up in ARTFLOW_PLUGIN_PATH, as in a pipeline's plugins:)\n";

static void list_stages(void) {
  int n = 0;
  const af_stage_desc *const *all = af_registry_list(&n);
  const af_stage_kind kinds[] = {AF_STAGE_SOURCE, AF_STAGE_TRANSFORM, AF_STAGE_SINK};
  const char *titles[] = {"sources", "transforms", "sinks"};
  for (int k = 0; k < 3; k++) {
    printf("%s:\n", titles[k]);
    for (int i = 0; i < n; i++)
      if (all[i]->kind == kinds[k]) printf("  %-14s %s\n", all[i]->name, all[i]->doc ? all[i]->doc : "");
  }
}

static void print_ports(const char *title, const af_port *ports, int n) {
  if (n <= 0) return;
  printf("%s:\n", title);
  for (int i = 0; i < n; i++)
    printf("  %-12s %-22s %s%s\n", ports[i].name, ports[i].desc, ports[i].doc ? ports[i].doc : "",
           ports[i].flags & AF_PORT_OPTIONAL ? " (optional)" : "");
}

static void print_stage(const af_stage_desc *d) {
  printf("%s (%s): %s\n", d->name, af_stage_kind_name(d->kind), d->doc ? d->doc : "");
  printf("batch size: %d%s%s\n", d->batch_size > 0 ? d->batch_size : 1,
         d->flags & AF_STAGE_NEEDS_DEVICE ? ", uses the OpenCL device" : "",
         d->flags & AF_STAGE_NEEDS_MODEL ? ", needs 'model:'" : "");
  printf("parameters:\n");
  printf("  %-14s %-8s %-18s %-20s %s\n", "name", "type", "default", "range/choices", "doc");
  for (int i = 0; i < d->n_params; i++) {
    const af_param *p = &d->params[i];
    char range[128] = "";
    if (p->type == AF_PARAM_ENUM && p->choices)
      snprintf(range, sizeof range, "%s", p->choices);
    else if (p->min < p->max)
      snprintf(range, sizeof range, "%g..%g", p->min, p->max);
    const char *def = p->flags & AF_PARAM_REQUIRED ? "(required)" : p->def ? p->def : "-";
    printf("  %-14s %-8s %-18s %-20s %s\n", p->name, af_param_type_name(p->type), def, range,
           p->doc ? p->doc : "");
  }
  printf("  %-14s %-8s %-18s %-20s %s\n", "name", "string", "(stage name)", "",
         "instance name for --set and records");
  printf("  %-14s %-8s %-18d %-20s %s\n", "batch", "int", d->batch_size > 0 ? d->batch_size : 1, "1..65536",
         "items per process() call");
  print_ports("inputs", d->inputs, d->n_inputs);
  print_ports("outputs", d->outputs, d->n_outputs);
}

static int inspect_stage(const char *arg) {
  const af_stage_kind kinds[] = {AF_STAGE_TRANSFORM, AF_STAGE_SOURCE, AF_STAGE_SINK};
  const char *colon = strchr(arg, ':'), *name = colon ? colon + 1 : arg;
  int found = 0;
  for (int k = 0; k < 3; k++) {
    if (colon && strncmp(arg, af_stage_kind_name(kinds[k]), (size_t)(colon - arg))) continue;
    const af_stage_desc *d = af_registry_find(kinds[k], name);
    if (!d) continue;
    if (found) putchar('\n');
    print_stage(d);
    found++;
  }
  if (!found) {
    fprintf(stderr, "artflow inspect: no stage named '%s' (see `artflow inspect stages`)\n", arg);
    return AF_EXIT_USAGE;
  }
  return AF_EXIT_OK;
}

/* the vocabulary as a person reads it: one label a line, id and URI beside */
static int inspect_vocab(const char *spec) {
  af_tagvocab *v = NULL;
  int rc = af_tagvocab_open(spec, NULL, &v);
  if (rc) {
    fprintf(stderr, "artflow inspect: %s\n", af_error_message());
    af_error_clear();
    return rc == AF_ERR_NOT_FOUND || rc == AF_ERR_FORMAT ? AF_EXIT_USAGE : AF_EXIT_FAIL;
  }
  printf("vocabulary %s (%s)\n  mode: %s\n  question: %s\n  labels: %d\n", v->name, v->path,
         af_tag_mode_name(v->mode), v->question ? v->question : "(none: give one with the task)",
         v->n_labels);
  int with_uri = 0;
  for (int i = 0; i < v->n_labels; i++) with_uri += v->labels[i].uri != NULL;
  printf("  authority URIs: %d of %d\n\n", with_uri, v->n_labels);
  printf("  %-4s %-28s %-28s %s\n", "#", "label", "id", "uri / aliases");
  for (int i = 0; i < v->n_labels; i++) {
    const af_tag_label *l = &v->labels[i];
    printf("  %-4d %-28s %-28s %s", i, l->label, l->id, l->uri ? l->uri : "-");
    for (int k = 0; k < l->n_aliases; k++) printf("%s%s", k ? ", " : " / ", l->aliases[k]);
    putchar('\n');
  }
  af_tagvocab_free(v);
  return AF_EXIT_OK;
}

/* Loads every --plugin; a bad one is a configuration error naming the file
 * (exit 2), like a pipeline's `plugins:` entry. */
static int load_plugins(char **plugins, int n) {
  for (int i = 0; i < n; i++) {
#if __has_include("pipeline/plugin.c")
    int rc = af_plugin_load(plugins[i]);
    if (rc) {
      fprintf(stderr, "artflow inspect: %s\n", af_error_message());
      af_error_clear();
      return AF_EXIT_USAGE;
    }
#else
    fprintf(stderr, "artflow inspect: plugins are not supported in this build (%s)\n", plugins[i]);
    return AF_EXIT_USAGE;
#endif
  }
  return AF_EXIT_OK;
}

int af_cmd_inspect(int argc, char **argv) {
  /* --plugin X / --plugin=X may come anywhere; the rest are positional */
  char **pos = calloc((size_t)argc + 1, sizeof *pos), **plugins = calloc((size_t)argc + 1, sizeof *plugins);
  int n_pos = 0, n_plugins = 0, rc = AF_EXIT_OK;
  if (!pos || !plugins) {
    rc = af_cli_fail(af_err(AF_ERR_NOMEM, "out of memory"), "inspect");
    goto out;
  }
  for (int i = 1; i < argc; i++) {
    if (af_cli_is_help(argv[i])) {
      fputs(usage, stdout);
      goto out;
    }
    if (!strcmp(argv[i], "--plugin")) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        rc = af_cli_usage_error("inspect", usage, "--plugin needs a library path");
        goto out;
      }
      plugins[n_plugins++] = argv[++i];
    } else if (!strncmp(argv[i], "--plugin=", 9) && argv[i][9]) {
      plugins[n_plugins++] = argv[i] + 9;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      rc = af_cli_usage_error("inspect", usage, "unknown option '%s'", argv[i]);
      goto out;
    } else {
      pos[n_pos++] = argv[i];
    }
  }
  if (n_pos < 1) {
    rc = af_cli_usage_error("inspect", usage, "missing what to inspect");
  } else if (!strcmp(pos[0], "stages")) {
    if (n_pos > 1)
      rc = af_cli_usage_error("inspect", usage, "unexpected '%s'", pos[1]);
    else if (!(rc = load_plugins(plugins, n_plugins)))
      list_stages();
  } else if (!strcmp(pos[0], "stage")) {
    if (n_pos != 2)
      rc = af_cli_usage_error("inspect", usage, "expected: inspect stage NAME");
    else if (!(rc = load_plugins(plugins, n_plugins)))
      rc = inspect_stage(pos[1]);
  } else if (n_plugins) {
    rc = af_cli_usage_error("inspect", usage, "--plugin goes with 'stages' or 'stage NAME'");
  } else if (!strcmp(pos[0], "vocab")) {
    if (n_pos != 2)
      rc = af_cli_usage_error("inspect", usage, "expected: inspect vocab FILE");
    else
      rc = inspect_vocab(pos[1]);
  } else if (n_pos > 1) {
    rc = af_cli_usage_error("inspect", usage, "one file at a time");
  } else {
#if AF_HAVE_MODEL_INSPECT
    int st = af_model_inspect_print(pos[0], stdout);
    rc = st ? af_cli_fail(st, "inspect") : AF_EXIT_OK;
#else
    fprintf(stderr, "artflow inspect: model inspection not available in this build\n");
    rc = AF_EXIT_USAGE;
#endif
  }
out:
  free(pos);
  free(plugins);
  return rc;
}
