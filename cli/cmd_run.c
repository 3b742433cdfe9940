/* artflow run: loads a pipeline file, runs it (all of it, or one shard),
 * prints per-stage statistics.  Exit codes (docs/cli-contract): 0 every item
 * processed (some may be error records), 1 with --strict when any item failed
 * or when the run itself failed, 2 configuration or usage error, 75
 * interrupted (a signal): resumable. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "pipeline/pipeline.h"

static const char usage[] =
    "usage: artflow run PIPELINE.yaml [options]\n"
    "\n"
    "Runs the pipeline described by PIPELINE.yaml (see docs/pipeline-format.md):\n"
    "items from the source flow through the stages into the sinks.  A bad item\n"
    "becomes an error record; it never stops the run.\n"
    "\n"
    "Stopping: the first SIGTERM or Ctrl-C stops taking items at once, gives the\n"
    "items in flight --grace seconds to finish, abandons the rest, flushes the\n"
    "outputs and exits with status 75; --resume redoes the abandoned items.  A\n"
    "second signal exits at once (still resumable).\n"
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
    "  --shard I/N               take only shard I (0..N-1) of N: the items whose\n"
    "                            id hashes there (overrides 'shard:'); {shard} in\n"
    "                            sink paths becomes I\n"
    "  --shard auto              the shard from SLURM_ARRAY_TASK_ID (job arrays) or\n"
    "                            JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs);\n"
    "                            implies --resume\n"
    "  --shards N                the shard count for JOB_COMPLETION_INDEX (or\n"
    "                            'shards:' / ARTFLOW_SHARDS)\n"
    "  --no-resume               start over even under --shard auto\n"
    "  --grace SECONDS           after a stop signal, time the items in flight get\n"
    "                            to finish (default 20; keep it below the\n"
    "                            scheduler's kill delay)\n"
    "\n"
    "A jsonl sink with path '-' writes its records to standard output (logs and\n"
    "statistics go to standard error), so with a jsonl source on stdin\n"
    "`artflow run` works as a filter.\n"
    "\n"
    "exit status: 0 all items processed, 1 --strict and some failed (or the run\n"
    "failed), 2 configuration or usage error, 75 interrupted: resumable.\n";

static int parse_progress(const char *v, af_progress_mode *m) {
  static const char *names[] = {"auto", "bar", "log", "none"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(v, names[i])) return *m = (af_progress_mode)i, 0;
  return -1;
}

/* What an interrupted run did and what --resume will redo. */
static void print_interrupted(const af_pipeline *p, const char *file, const af_shard *sh) {
  const af_run_summary *s = af_pipeline_summary(p);
  int n = 0;
  const char *const *ids = af_pipeline_abandoned(p, &n);
  const char *by = s->signal == SIGTERM ? "SIGTERM" : s->signal == SIGINT ? "SIGINT" : "a stop request";
  fprintf(stderr, "artflow run: interrupted by %s (stopped %.1f s after it): %lld items done in this run", by,
          s->stop_s, (long long)s->total);
  if (s->skipped) fprintf(stderr, " (%lld done before)", (long long)s->skipped);
  fprintf(stderr, ", %lld abandoned", (long long)s->abandoned);
  for (int i = 0; i < n; i++) fprintf(stderr, "%s%s", i ? ", " : ": ", ids[i]);
  if (s->abandoned > n && n > 0) fprintf(stderr, " and %lld more", (long long)(s->abandoned - n));
  fputs(", the rest not started\n", stderr);
  if (s->stuck)
    fprintf(stderr, "artflow run: %d stage%s did not finish %s call within the grace: abandoned with it\n",
            s->stuck, s->stuck > 1 ? "s" : "", s->stuck > 1 ? "their" : "its");
  if (sh && af_pipeline_resumes(p))
    fprintf(stderr, "artflow run: a rerun of this task resumes by itself (--shard auto); exit status 75\n");
  else if (sh)
    fprintf(stderr,
            "artflow run: `artflow run %s --shard %d/%d --resume` redoes the abandoned items and goes on; "
            "exit status 75\n",
            file, sh->index, sh->count);
  else
    fprintf(stderr,
            "artflow run: `artflow run %s --resume` redoes the abandoned items and goes on; exit status 75\n",
            file);
}

/* "--name" or "--name=VALUE" */
static int is_opt(const char *a, const char *name) {
  size_t n = strlen(name);
  return !strncmp(a, name, n) && (a[n] == '=' || a[n] == 0);
}

/* The value of an option is_opt matched: after '=', else the next argument
 * (NULL when there is none). */
static const char *opt_value(const char *a, const char *name, int argc, char **argv, int *i) {
  size_t n = strlen(name);
  return a[n] == '=' ? a + n + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
}

typedef struct run_args {
  af_run_options opt;
  const char *file;
  const char **sets; /* the --set values (argc slots) */
  int strict;
} run_args;

/* One option with a value (argv[*i] matched `name`).  Returns -1 when taken,
 * else the exit code of a usage error. */
static int take_value(run_args *r, const char *name, const char *v) {
  af_run_options *o = &r->opt;
  char *end = NULL;
  if (!v || (!*v && !strcmp(name, "--journal")))
    return af_cli_usage_error("run", usage, "option '%s' needs a value", name);
  if (!strcmp(name, "--set")) {
    r->sets[o->n_sets++] = v;
  } else if (!strcmp(name, "--shards")) {
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < 1 || n > 1000000)
      return af_cli_usage_error("run", usage, "--shards: expected 1..1000000, got '%s'", v);
    o->shards = (int)n;
  } else if (!strcmp(name, "--shard")) {
    af_shard sh;
    char why[256];
    if (strcmp(v, "auto") && af_shard_parse(v, &sh, why, sizeof why))
      return af_cli_usage_error("run", usage, "--shard %s", why);
    o->shard = v;
  } else if (!strcmp(name, "--grace")) {
    double g = strtod(v, &end);
    if (!*v || *end || !(g >= 0 && g <= 86400))
      return af_cli_usage_error("run", usage, "--grace: expected seconds 0..86400, got '%s'", v);
    o->grace = g > 0 ? g : 1e-9; /* 0 = abandon at once (0 in the options means the default) */
  } else if (!strcmp(name, "--progress")) {
    if (parse_progress(v, &o->progress))
      return af_cli_usage_error("run", usage, "--progress: '%s' is not auto, bar, log or none", v);
  } else if (!strcmp(name, "--device")) {
    o->device = v;
  } else if (!strcmp(name, "--journal")) {
    o->journal = v;
  } else if (!strcmp(name, "--queue")) {
    long q = strtol(v, &end, 10);
    if (!*v || *end || q < 1 || q > 65536)
      return af_cli_usage_error("run", usage, "--queue: expected 1..65536, got '%s'", v);
    o->queue_depth = (int)q;
  } else if (!strcmp(name, "--queue-bytes")) {
    if (af_parse_bytes(v, &o->queue_bytes) || o->queue_bytes < 1)
      return af_cli_usage_error("run", usage, "--queue-bytes: expected a size like 64M or 1G, got '%s'", v);
  }
  return -1;
}

/* The command line into r (r->opt.sets allocated by the caller).  Returns -1
 * to run, else the exit code (help: 0; usage errors: 2). */
static int parse_args(run_args *r, int argc, char **argv) {
  static const char *const valued[] = {"--set",    "--shards",  "--shard", "--grace",       "--progress",
                                       "--device", "--journal", "--queue", "--queue-bytes", NULL};
  af_run_options *o = &r->opt;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *const *v = valued;
    while (*v && !is_opt(a, *v)) v++;
    int rc = -1;
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    } else if (*v) {
      rc = take_value(r, *v, opt_value(a, *v, argc, argv, &i));
    } else if (!strcmp(a, "--resume")) {
      o->resume = 1;
    } else if (!strcmp(a, "--allow-changed")) {
      o->allow_changed = 1;
    } else if (!strcmp(a, "--no-resume")) {
      o->no_resume = 1;
    } else if (!strcmp(a, "--strict")) {
      r->strict = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      o->quiet = 1;
    } else if (a[0] == '-' && a[1]) {
      rc = af_cli_usage_error("run", usage, "unknown option '%s'", a);
    } else if (!r->file) {
      r->file = a;
    } else {
      rc = af_cli_usage_error("run", usage, "one pipeline file only (got '%s' and '%s')", r->file, a);
    }
    if (rc >= 0) return rc;
  }
  if (!r->file) return af_cli_usage_error("run", usage, "missing the pipeline file");
  if (o->allow_changed && !o->resume && !(o->shard && !strcmp(o->shard, "auto") && !o->no_resume))
    return af_cli_usage_error("run", usage, "--allow-changed goes with --resume (or --shard auto)");
  if (o->resume && o->no_resume)
    return af_cli_usage_error("run", usage, "--resume and --no-resume contradict each other");
  return -1;
}

/* A run that failed: the message, and for a refused --resume what changed. */
static int report_failure(const af_pipeline *p, const af_run_summary *s, int rc) {
  /* a stage refusing its configuration at create() is still a config error */
  int cfg = rc == AF_ERR_CONFIG && !s->started;
  fprintf(stderr, "artflow run: %s\n", af_error_message());
  af_error_clear();
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
  return cfg ? AF_EXIT_USAGE : AF_EXIT_FAIL;
}

int af_cmd_run(int argc, char **argv) {
  run_args r = {.opt = {.handle_signals = 1}};
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!sets) return af_cli_fail(AF_ERR_NOMEM, "run");
  r.sets = sets;
  r.opt.sets = sets;
  int exitc = parse_args(&r, argc, argv);
  af_pipeline *p = NULL;
  if (exitc < 0 && af_pipeline_load(r.file, &r.opt, &p)) {
    fprintf(stderr, "artflow run: %s\n", af_error_message());
    af_error_clear();
    exitc = AF_EXIT_USAGE;
  }
  free(sets);
  if (exitc >= 0) return exitc;
  const af_run_options *opt = &r.opt;
  const af_shard *sh = af_pipeline_shard(p);
  if (sh && !opt->quiet)
    fprintf(
        stderr, "artflow run: shard %d/%d (%s)%s\n", sh->index, sh->count, af_pipeline_shard_origin(p),
        af_pipeline_resumes(p) && !opt->resume ? "; resumes: items its journal marks done are skipped" : "");
  int rc = af_pipeline_run(p);
  const af_run_summary *s = af_pipeline_summary(p);
  exitc = AF_EXIT_OK;
  if (!opt->quiet && s->started && !s->stuck) af_pipeline_print_stats(p, stderr);
  if (rc == AF_ERR_INTERRUPTED) {
    print_interrupted(p, r.file, sh);
    af_error_clear();
    exitc = AF_EXIT_INTERRUPTED;
    if (s->stuck) { /* threads still inside a stage call: no clean teardown */
      fflush(NULL);
      _exit(exitc);
    }
  } else if (rc) {
    exitc = report_failure(p, s, rc);
  } else if (r.strict && s->failed > 0) {
    fprintf(stderr, "artflow run: --strict: %lld of %lld items failed\n", (long long)s->failed,
            (long long)s->total);
    exitc = AF_EXIT_FAIL;
  } else if (opt->quiet && s->failed > 0) {
    fprintf(stderr, "artflow run: %lld ok, %lld errors\n", (long long)s->ok, (long long)s->failed);
  }
  af_pipeline_free(p);
  return exitc;
}
