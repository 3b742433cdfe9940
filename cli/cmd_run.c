/* artflow run: loads a pipeline file, runs it, prints per-stage statistics.
 * Exit codes (docs/cli-contract): 0 every item processed (some may be error
 * records), 1 with --strict when any item failed or when the run itself
 * failed, 2 configuration or usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "pipeline/pipeline.h"

static const char usage[] =
    "usage: artflow run PIPELINE.yaml [options]\n"
    "\n"
    "Runs the pipeline described by PIPELINE.yaml (see docs/pipeline-format.md):\n"
    "items from the source flow through the stages into the sinks.  A bad item\n"
    "becomes an error record; it never stops the run.  Ctrl-C drains the items in\n"
    "flight and flushes the sinks; a second Ctrl-C drops them and stops at once.\n"
    "\n"
    "options:\n"
    "  --set STAGE.PARAM=VALUE   override a parameter (repeatable; STAGE is the\n"
    "                            stage's name, or 'source')\n"
    "  --resume                  skip items the run journal marks done; refused\n"
    "                            (exit 2, the changes shown) when the settings that\n"
    "                            change records differ from the journal's (stage\n"
    "                            parameters, stages, model file)\n"
    "  --allow-changed           with --resume: go on anyway; the records appended\n"
    "                            from now on use the new settings (the journal\n"
    "                            keeps both)\n"
    "  --strict                  exit 1 if any item failed\n"
    "  --progress=MODE           auto (bar on a terminal, else log lines), bar,\n"
    "                            log or none\n"
    "  --quiet, -q               no progress and no statistics\n"
    "  --device D                OpenCL device (index or name substring); overrides\n"
    "                            ARTFLOW_DEVICE and 'device:' in the file\n"
    "  --queue N                 items per queue between stages (default 64)\n"
    "  --queue-bytes SIZE        tensor bytes per queue between stages, e.g. 64M\n"
    "                            (default 256M; one larger item still passes alone)\n"
    "  --journal PATH            the run journal (default: 'journal:' in the file,\n"
    "                            else next to the first sink's file, else next to\n"
    "                            the pipeline file)\n"
    "\n"
    "A jsonl sink with path '-' writes its records to standard output (logs and\n"
    "statistics go to standard error), so with a jsonl source on stdin\n"
    "`artflow run` works as a filter.\n"
    "\n"
    "exit status: 0 all items processed, 1 --strict and some failed (or the run\n"
    "failed), 2 configuration or usage error.\n";

static int parse_progress(const char *v, af_progress_mode *m) {
  static const char *names[] = {"auto", "bar", "log", "none"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(v, names[i])) return *m = (af_progress_mode)i, 0;
  return -1;
}

int af_cmd_run(int argc, char **argv) {
  const char *file = NULL;
  int strict = 0, rc, exitc = AF_EXIT_OK;
  af_run_options opt = {.handle_signals = 1};
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!sets) return af_cli_fail(AF_ERR_NOMEM, "run");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      free(sets);
      return AF_EXIT_OK;
    } else if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
      const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) goto missing;
      sets[opt.n_sets++] = v;
    } else if (!strcmp(a, "--resume")) {
      opt.resume = 1;
    } else if (!strcmp(a, "--allow-changed")) {
      opt.allow_changed = 1;
    } else if (!strcmp(a, "--strict")) {
      strict = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      opt.quiet = 1;
    } else if (!strncmp(a, "--progress", 10) && (a[10] == '=' || a[10] == 0)) {
      const char *v = a[10] == '=' ? a + 11 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) goto missing;
      if (parse_progress(v, &opt.progress)) {
        free(sets);
        return af_cli_usage_error("run", usage, "--progress: '%s' is not auto, bar, log or none", v);
      }
    } else if (!strncmp(a, "--device", 8) && (a[8] == '=' || a[8] == 0)) {
      const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) goto missing;
      opt.device = v;
    } else if (!strncmp(a, "--journal", 9) && (a[9] == '=' || a[9] == 0)) {
      const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v || !*v) goto missing;
      opt.journal = v;
    } else if (!strncmp(a, "--queue", 7) && (a[7] == '=' || a[7] == 0)) {
      const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      char *end;
      if (!v) goto missing;
      long q = strtol(v, &end, 10);
      if (!*v || *end || q < 1 || q > 65536) {
        free(sets);
        return af_cli_usage_error("run", usage, "--queue: expected 1..65536, got '%s'", v);
      }
      opt.queue_depth = (int)q;
    } else if (!strncmp(a, "--queue-bytes", 13) && (a[13] == '=' || a[13] == 0)) {
      const char *v = a[13] == '=' ? a + 14 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) goto missing;
      if (af_parse_bytes(v, &opt.queue_bytes) || opt.queue_bytes < 1) {
        free(sets);
        return af_cli_usage_error("run", usage, "--queue-bytes: expected a size like 64M or 1G, got '%s'", v);
      }
    } else if (a[0] == '-' && a[1]) {
      free(sets);
      return af_cli_usage_error("run", usage, "unknown option '%s'", a);
    } else if (!file) {
      file = a;
    } else {
      free(sets);
      return af_cli_usage_error("run", usage, "one pipeline file only (got '%s' and '%s')", file, a);
    }
  }
  if (!file) {
    free(sets);
    return af_cli_usage_error("run", usage, "missing the pipeline file");
  }
  if (opt.allow_changed && !opt.resume) {
    free(sets);
    return af_cli_usage_error("run", usage, "--allow-changed goes with --resume");
  }
  opt.sets = sets;
  af_pipeline *p = NULL;
  rc = af_pipeline_load(file, &opt, &p);
  free(sets);
  if (rc) {
    fprintf(stderr, "artflow run: %s\n", af_error_message());
    af_error_clear();
    return AF_EXIT_USAGE;
  }
  rc = af_pipeline_run(p);
  const af_run_summary *s = af_pipeline_summary(p);
  if (!opt.quiet && s->started) af_pipeline_print_stats(p, stderr);
  if (rc == AF_ERR_INTERRUPTED) {
    fprintf(stderr, "artflow run: interrupted; `artflow run %s --resume` goes on\n", file);
    af_error_clear();
    exitc = AF_EXIT_FAIL;
  } else if (rc) {
    /* a stage refusing its configuration at create() is still a config error */
    int cfg = rc == AF_ERR_CONFIG && !s->started;
    fprintf(stderr, "artflow run: %s\n", af_error_message());
    af_error_clear();
    exitc = cfg ? AF_EXIT_USAGE : AF_EXIT_FAIL;
    const char *diff = af_pipeline_settings_diff(p);
    if (cfg && diff) { /* --resume refused: what changed, one line per setting */
      for (const char *l = diff; *l;) {
        size_t n = strcspn(l, "\n");
        fprintf(stderr, "  %.*s\n", (int)n, l);
        l += n + (l[n] == '\n');
      }
      fputs("artflow run: use --resume --allow-changed to append records made with the new settings anyway\n",
            stderr);
    }
  } else if (strict && s->failed > 0) {
    fprintf(stderr, "artflow run: --strict: %lld of %lld items failed\n", (long long)s->failed,
            (long long)s->total);
    exitc = AF_EXIT_FAIL;
  } else if (opt.quiet && s->failed > 0) {
    fprintf(stderr, "artflow run: %lld ok, %lld errors\n", (long long)s->ok, (long long)s->failed);
  }
  af_pipeline_free(p);
  return exitc;
missing:
  free(sets);
  return af_cli_usage_error("run", usage, "option '%s' needs a value", argv[argc - 1]);
}
