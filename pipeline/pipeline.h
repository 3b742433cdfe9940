/* Internal API of the pipeline engine: stage registry, YAML loading and
 * validation, graph check, scheduler and run statistics.  The public stage
 * contract is include/artflow/stage.h.
 *
 * Life of a run (cli/cmd_run.c):
 *   af_pipeline_load(path, &opt, &p)   parse YAML, apply --set, validate every
 *                                      parameter, check the graph (AF_ERR_CONFIG
 *                                      with "file:line:col: ..." on any problem)
 *   af_pipeline_run(p)                 open device, create+prepare stages, run
 *                                      the threads, flush, destroy stages
 *   af_pipeline_print_stats(p, stderr)
 *   af_pipeline_free(p)
 */
#ifndef AF_PIPELINE_H
#define AF_PIPELINE_H

#include <stdint.h>
#include <stdio.h>

#include "artflow/stage.h"
#include "artflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------- registry */

/* Looks a stage up by kind and name: built-ins first (pipeline/registry.c),
 * then stages added with af_registry_add.  Borrowed, NULL when unknown. */
const af_stage_desc *af_registry_find(af_stage_kind kind, const char *name);
/* All known stages in a stable order; *n set.  Borrowed array of pointers
 * valid until the next af_registry_add. */
const af_stage_desc *const *af_registry_list(int *n);
/* Adds a stage (plugins, tests).  The descriptor is borrowed and must outlive
 * every pipeline using it.  Checks the ABI version and that the descriptor is
 * well formed (name, kind, callbacks, parameter table, ports) and that no stage
 * of the same kind has this name.  Thread-safe.  0 or AF_ERR_INVALID /
 * AF_ERR_CONFIG (with the reason). */
int af_registry_add(const af_stage_desc *desc);
/* Checks a descriptor as af_registry_add does, without adding it. */
int af_stage_desc_check(const af_stage_desc *desc);
const char *af_stage_kind_name(af_stage_kind kind);

/* Plugins (pipeline/plugin.c, written alongside the sources and sinks):
 * loads a shared library by path, or by file name from ARTFLOW_PLUGIN_PATH,
 * checks AF_PLUGIN_SYMBOL and its ABI version, and af_registry_add()s each of
 * its stages.  The engine calls it only when pipeline/plugin.c exists
 * (__has_include), so it links at every stage of development. */
int af_plugin_load(const char *path);

/* ------------------------------------------------------------- params */

/* Stores a default into the config struct (all rows), then frees. */
int af_params_defaults(const af_stage_desc *desc, void *config);
/* Frees the strings and lists a config struct owns (not the struct). */
void af_params_free(const af_stage_desc *desc, void *config);
/* Parses `text` as the value of row `p` into config.  On failure returns
 * AF_ERR_CONFIG and writes the cause ("expected an integer, got 'abc'",
 * "4096 is above the maximum 2048") to why[0..n). */
int af_param_set_text(const af_param *p, void *config, const char *text, char *why, size_t n);
/* Finds a parameter row by name (NULL when absent). */
const af_param *af_param_find(const af_stage_desc *desc, const char *name);
/* Formats the current value of row p in config (YAML scalar syntax). */
void af_param_format(const af_param *p, const void *config, char *buf, size_t n);
const char *af_param_type_name(af_param_type t);
/* STRLIST helpers for the YAML loader: append a copy / empty the list.
 * 0 or AF_ERR_NOMEM. */
int af_param_strlist_append(const af_param *p, void *config, const char *item);
void af_param_strlist_clear(const af_param *p, void *config);

/* ------------------------------------------------------------- ports */

/* Parses a port description ("f32[3,S,S]", "any", "text") and resolves
 * symbols that name INT parameters of `desc` from `config` (config may be
 * NULL: symbols stay symbolic).  0 or AF_ERR_CONFIG with why filled. */
typedef struct af_port_shape {
  int kind; /* 0 tensor, 1 any, 2 text */
  af_dtype dtype;
  int ndim;                  /* -1 = any rank */
  int64_t dim[AF_MAX_DIMS];  /* >= 0 fixed, -1 wildcard, -2 symbol */
  char sym[AF_MAX_DIMS][32]; /* symbol names where dim == -2 */
} af_port_shape;
int af_port_parse(const char *text, const af_stage_desc *desc, const void *config, af_port_shape *out,
                  char *why, size_t n);
/* Writes a shape back as text ("f32[3,224,224]"). */
void af_port_format(const af_port_shape *s, char *buf, size_t n);

/* ------------------------------------------------------------- pipeline */

typedef enum af_progress_mode {
  AF_PROGRESS_AUTO = 0, /* bar on a TTY, log lines otherwise */
  AF_PROGRESS_BAR,
  AF_PROGRESS_LOG,
  AF_PROGRESS_NONE,
} af_progress_mode;

typedef struct af_run_options {
  const char *const *sets; /* "instance.param=value" overrides, applied last */
  int n_sets;
  int resume;        /* skip items the journal marks complete */
  int allow_changed; /* with resume: go on although the settings changed */
  int quiet;         /* no progress, no statistics, warnings only */
  af_progress_mode progress;
  const char *device;  /* overrides "device:" when not NULL */
  int queue_depth;     /* items per inter-stage queue; 0 = "queue:" or 64 */
  int64_t queue_bytes; /* tensor bytes per queue; 0 = "queue_bytes:" or 256 MiB */
  double log_interval; /* seconds between progress log lines; 0 = 10 */
  int handle_signals;  /* install SIGINT/SIGTERM handlers during the run */
  /* Sharding (pipeline/shard.c): "I/N" or "auto"; NULL = the YAML's `shard:`,
   * else the whole source.  Borrowed, read during af_pipeline_load only. */
  const char *shard;
  int shards;    /* the count for `auto` with JOB_COMPLETION_INDEX (0 = `shards:`
                  * or ARTFLOW_SHARDS) */
  int no_resume; /* 1: start over even under `shard: auto` (which resumes) */
  /* Preemption: seconds the items in flight get to finish after the first
   * stop request (signal or af_pipeline_stop); then they are abandoned (the
   * journal has them redone by --resume).  0 = the default, 20 s; < 0 = no
   * limit (drain everything). */
  double grace;
  /* Follows text outputs as stages produce them (ctx->stream): called on the
   * producing stage's thread with the bytes that extend output `name` of
   * `item`.  NULL = nobody listens (stages then skip the work). */
  void (*stream)(void *arg, const af_item *item, const char *name, const char *bytes, size_t n);
  void *stream_arg;
  /* 1 when the listener no longer wants `item` (arg: stream_arg; called on
   * stage threads): the engine fails such an item before each transform
   * ("cancelled") and stages may end it early (ctx->cancelled).  NULL: no
   * item is ever cancelled. */
  int (*cancelled)(void *arg, const af_item *item);
  /* A command that builds its pipeline in memory (describe, chat, tag):
   * the model files as given (override "model:"), and no run journal (a
   * one-off run has nothing to resume). */
  const char *model, *llm_model;
  int no_journal;
  const char *journal; /* the run journal's path (`--journal`); overrides "journal:" */
  /* How long a transform waits to fill its batch.  0 (the default): until
   * the batch is full or the source ends, as a collection run wants.  > 0:
   * once it holds an item it waits at most this many seconds for more, then
   * runs what it has -- a source that blocks for its items (`artflow serve`'s
   * requests) must not leave a lone item waiting for company, while items
   * that arrive together still share a batch. */
  double batch_linger;
} af_run_options;

typedef struct af_pipeline af_pipeline;

/* Loads and validates a pipeline file (see docs/pipeline-format.md).  Nothing
 * is created or opened yet.  Returns 0, or AF_ERR_CONFIG / AF_ERR_IO with the
 * message "file:line:column: stage 'x': key 'y': cause".  Caller frees *out
 * with af_pipeline_free.  `opt` may be NULL; it is copied. */
int af_pipeline_load(const char *path, const af_run_options *opt, af_pipeline **out);
/* Same from a string; `name` is used in messages and as pipeline_path
 * (relative paths resolve against the current folder). */
int af_pipeline_load_string(const char *yaml, const char *name, const af_run_options *opt, af_pipeline **out);

/* Per-instance statistics after (or during) a run. */
typedef struct af_stage_stats {
  const char *instance; /* borrowed from the pipeline */
  const char *stage;    /* descriptor name */
  af_stage_kind kind;
  int64_t items;  /* items handed to the stage (ok items for transforms) */
  int64_t errors; /* items this stage marked failed */
  int64_t batches;
  double busy_s;           /* time inside callbacks */
  int queue_max;           /* highest fill of its input queue */
  int64_t queue_max_bytes; /* highest tensor bytes in its input queue */
} af_stage_stats;

typedef struct af_run_summary {
  int64_t total; /* items that reached the end of the pipeline */
  int64_t ok, failed;
  int64_t skipped; /* already completed (resume) */
  double wall_s;
  int interrupted;   /* 1 when a signal stopped the source early */
  int source_failed; /* the source returned AF_FLOW_ERROR */
  int started;       /* setup worked and the stage threads ran */
  int signal;        /* the signal that stopped the run (0: none, or af_pipeline_stop) */
  int64_t abandoned; /* items that entered the pipeline and did not complete:
                      * `--resume` redoes them (af_pipeline_abandoned lists them) */
  double stop_s;     /* seconds from the stop request to the end of the run */
  int stuck;         /* threads still inside a stage call when the grace ended:
                      * the run returned without them, see af_pipeline_run */
} af_run_summary;

/* Runs the pipeline to the end.  Returns 0 when the run itself worked (items
 * may have failed; see af_pipeline_summary), AF_ERR_INTERRUPTED after a stop
 * request (signal or af_pipeline_stop), or a negative status when setup
 * failed (device, create/prepare, journal) or the source failed.  Call once.
 *
 * Stopping (preemption): the first request stops the source at once and
 * drops the items no stage has started; the items in flight get opt.grace
 * seconds to finish.  Then every queue is closed and what is left is
 * abandoned (never journalled as done, so --resume redoes it); sinks flush.
 * A thread still inside a stage call one second after the grace cannot be
 * joined: the run then returns without it (summary.stuck > 0), and the caller
 * must end the process (_exit) instead of calling af_pipeline_free, which
 * leaves such a pipeline alone.  Outputs and journal are safe at any instant
 * (append-only, whole lines), exactly as after a kill -9.
 * With opt.handle_signals, SIGINT/SIGTERM make the first request; a second
 * signal ends the process at once (the default action of that signal). */
int af_pipeline_run(af_pipeline *p);
/* Asks a running pipeline to stop (see af_pipeline_run); a second request
 * ends the grace at once.  Async-signal-safe (it only sets a flag). */
void af_pipeline_stop(af_pipeline *p);
/* After an interrupted run: the ids of the abandoned items (summary.abandoned
 * of them, at most the first `max` kept), in source order; *n set.  Borrowed. */
const char *const *af_pipeline_abandoned(const af_pipeline *p, int *n);

const af_run_summary *af_pipeline_summary(const af_pipeline *p);
/* Statistics of every instance in pipeline order; *n set.  Borrowed. */
const af_stage_stats *af_pipeline_stats(const af_pipeline *p, int *n);
/* Prints the per-stage table and the summary line. */
void af_pipeline_print_stats(const af_pipeline *p, FILE *out);
/* The resolved configuration as JSON (same as ctx->params_json).  Borrowed. */
const char *af_pipeline_params_json(const af_pipeline *p);
/* The settings the records depend on (pipeline/settings.c: every stage's
 * resolved parameters except AF_PARAM_RUNTIME rows, the chain of stages, the
 * model files' path, size and time) as canonical JSON (one line, keys
 * sorted), and its SHA-256 in hex: equal hashes mean records made with the
 * same settings.  Set by af_pipeline_load.  Borrowed. */
const char *af_pipeline_settings_json(const af_pipeline *p);
const char *af_pipeline_settings_hash(const af_pipeline *p);
/* After af_pipeline_run with resume: the settings that differ from the
 * journal's latest ones, one "key: old -> new" line each (values as JSON,
 * "(default)" for null: a parameter left unset, "(absent)" for a key only one
 * side has); NULL when nothing changed.  Set
 * both when the run refused to resume (AF_ERR_CONFIG) and when
 * allow_changed let it go on.  Borrowed. */
const char *af_pipeline_settings_diff(const af_pipeline *p);
/* Compares two settings texts (af_pipeline_settings_json) key by key.
 * *lines: malloc'd "key: old -> new\n" lines in key order, NULL when equal;
 * *keys (may be NULL): malloc'd "a, b" list of the changed keys; *n_changed.
 * 0, AF_ERR_FORMAT (a text is not a JSON object) or AF_ERR_NOMEM. */
int af_settings_diff(const char *old_json, const char *new_json, char **lines, char **keys, int *n_changed);
/* Journal path in effect (--journal, else the "journal:" key, else next to the
 * first sink's "path" parameter, else next to the pipeline file).  Borrowed. */
const char *af_pipeline_journal_path(const af_pipeline *p);
void af_pipeline_free(af_pipeline *p);

/* ------------------------------------------------------------- shards */

/* Shard `index` of `count` (0 <= index < count). */
typedef struct af_shard {
  int index, count;
} af_shard;
/* The shard an id belongs to among `count`: the first 16 hex digits of the
 * SHA-256 of the id (its UTF-8 bytes) as an unsigned integer, mod count. */
int af_shard_of(const char *id, int count);
/* "I/N".  0, or AF_ERR_CONFIG with why filled. */
int af_shard_parse(const char *text, af_shard *out, char *why, size_t n);
/* From the environment: SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (or
 * _MIN/_MAX/_STEP), else JOB_COMPLETION_INDEX with `count` (> 0) or
 * ARTFLOW_SHARDS.  origin gets "SLURM_ARRAY_TASK_ID=2 of 1-3" or similar.
 * 0, or AF_ERR_CONFIG with why filled. */
int af_shard_auto(int count, af_shard *out, char *why, size_t n, char *origin, size_t on);
/* `tmpl` with every "{shard}" replaced by the index, zero-padded to the width
 * of count-1.  *out malloc'd.  0 or AF_ERR_NOMEM. */
int af_shard_expand(const char *tmpl, af_shard s, char **out);
/* The loaded pipeline's shard, or NULL when the run is not sharded.  Borrowed. */
const af_shard *af_pipeline_shard(const af_pipeline *p);
/* Where the shard came from: "--shard 1/4", "SLURM_ARRAY_TASK_ID=2 of 1-3",
 * "JOB_COMPLETION_INDEX=0 of 3" ("" when not sharded).  Borrowed. */
const char *af_pipeline_shard_origin(const af_pipeline *p);
/* 1 when the run resumes: --resume, or `shard: auto` without no_resume. */
int af_pipeline_resumes(const af_pipeline *p);
/* Creates only the source and calls fn for each of its items that belong to
 * the pipeline's shard (every item when it has none), in source order; stops
 * at the first non-zero return of fn and returns it.  For `artflow merge
 * --source`.  0 or a status. */
int af_pipeline_each_source_item(af_pipeline *p, int (*fn)(void *arg, const af_item *item), void *arg);

/* Test hook: the maximum fill observed on every queue (backpressure test). */
int af_pipeline_queue_capacity(const af_pipeline *p);
/* Tensor bytes each queue may hold (--queue-bytes, "queue_bytes:", else
 * 256 MiB); one item larger than that still passes, alone. */
int64_t af_pipeline_queue_bytes(const af_pipeline *p);
/* "65536", "512K", "256M", "1G" (binary multiples) -> bytes.  0, or -1 when
 * the text is not such a size. */
int af_parse_bytes(const char *s, int64_t *out);

/* ------------------------------------------------------------- journal */

/* The run journal (pipeline/journal.c, written with the sinks).  Used only
 * when that file exists (__has_include); otherwise runs have no journal and
 * --resume is refused.
 *  - af_journal_open: resume = 0 starts a fresh journal (truncating); 1 loads
 *    the ids completed earlier.  `settings` (may be NULL: no check, no
 *    settings line) are the run's settings: a fresh journal records them; a
 *    resumed one compares them with its latest settings line (see
 *    af_journal_settings).  Caller frees with af_journal_close.
 *  - af_journal_is_done: 1 if `id` completed in an earlier run (the pipeline
 *    then drops the item before any stage sees it), else 0.  Called from the
 *    source thread.
 *  - af_journal_commit: called from the last thread, in input order, after
 *    every sink's process() returned for this batch (sinks flush per batch);
 *    records the items as completed (ok or error).  0 or a status (a failed
 *    commit stops the run: losing track of completed work is not allowed). */
typedef struct af_journal af_journal;
/* In: hash and json (af_pipeline_settings_hash/_json), allow_changed.
 * Out (resume only): when the journal's latest settings differ, diff and
 * changed are set (diff malloc'd, the caller frees it) and open fails with
 * AF_ERR_CONFIG naming the journal and the changed keys, or, with
 * allow_changed, appends the new settings line and succeeds; unchecked = 1
 * when the journal records no settings (format 1): the settings line is
 * appended and the run goes on (the caller warns). */
typedef struct af_journal_settings {
  const char *hash;
  const char *json;
  int allow_changed;
  char *diff;
  int changed;
  int unchecked;
} af_journal_settings;
int af_journal_open(const char *path, int resume, af_journal_settings *settings, af_journal **out);
int af_journal_is_done(af_journal *j, const char *id);
int af_journal_commit(af_journal *j, af_item *const *items, int n);
void af_journal_close(af_journal *j);

#ifdef __cplusplus
}
#endif
#endif
