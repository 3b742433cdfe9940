/* Private structures of the pipeline engine, shared by yaml.c, graph.c,
 * queue.c, scheduler.c and progress.c.  Nothing outside pipeline/ includes
 * this file. */
#ifndef AF_PIPELINE_INTERNAL_H
#define AF_PIPELINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "pipeline/pipeline.h"

/* ---------------------------------------------------------------- queue */

/* One slot: an item and the scheduler's private flags for it. */
#define AF_SLOT_SINK_FAILED 1u /* a sink could not write it: do not journal it */
typedef struct af_slot {
  af_item *item;
  unsigned flags;
  int64_t bytes; /* the item's tensor bytes, counted by the queue it is in */
} af_slot;

/* Bounded FIFO between two stage threads: push blocks while full (after
 * close it drops the item: the run is being abandoned), pop blocks
 * while empty; after close() pop drains what is left, then reports the end. */
typedef struct af_fifo {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  af_slot *ring;
  int cap, head, count, closed;
  int max_seen;           /* highest count ever observed (backpressure test) */
  int64_t budget, bytes;  /* tensor bytes allowed / queued (budget 0 = no limit) */
  int64_t max_bytes_seen; /* highest `bytes` ever observed */
} af_fifo;

/* A queue holds at most `cap` items and, past its first item, at most
 * `budget` bytes of tensors: a push that would go over waits, so one item
 * larger than the budget still passes (alone). */
int af_fifo_init(af_fifo *q, int cap, int64_t budget);
void af_fifo_destroy(af_fifo *q);
void af_fifo_push(af_fifo *q, af_slot s);
/* 1 with *s set, or 0 when closed and empty. */
int af_fifo_pop(af_fifo *q, af_slot *s);
/* Non-blocking: 1 with *s set, 0 when nothing is queued right now. */
int af_fifo_trypop(af_fifo *q, af_slot *s);
/* Waits until `deadline` (af_now() seconds) at most: 1 with *s set, 0 when
 * nothing came by then, -1 when closed and empty. */
int af_fifo_pop_until(af_fifo *q, af_slot *s, double deadline);
void af_fifo_close(af_fifo *q);

/* ------------------------------------------------------------- instance */

typedef struct af_instance {
  const af_stage_desc *desc;
  char *name;               /* instance name */
  void *config;             /* desc->config_size bytes, filled by the loader */
  int batch;                /* batch size in effect */
  int batch_set;            /* 1: set by the pipeline or --set (else the device
                             * profile's batch for the stage may replace it) */
  int line, col;            /* position of its YAML entry (1-based; 0 = none) */
  af_port_shape *in_shape;  /* desc->n_inputs, resolved by the graph check */
  af_tensor_desc *in_desc;  /* the same as given to prepare() */
  af_port_shape *out_shape; /* desc->n_outputs */
  af_stage_ctx ctx;
  struct af_queue *queue; /* the stage's own command queue (NEEDS/USES_DEVICE), owned */
  af_bindings dims;       /* sizes its negotiate() fixed (n = 0 before / without) */
  int negotiated;         /* 1 once negotiate() ran */
  void *self;             /* create()'s instance */
  int created;
  af_fifo in; /* input queue (not used by the source) */
  pthread_t thread;
  int started;
  af_stage_stats stats;
} af_instance;

struct af_pipeline {
  char *path; /* pipeline file (or the name of a string) */
  char *dir;  /* folder for relative paths; NULL = as written */
  char sha256[65];
  char *device, *profile, *model, *journal;
  char *llm_model; /* model: {vision: A, llm: B} -> model = A, llm_model = B; else NULL */
  int queue_depth;
  int64_t queue_bytes;               /* "queue_bytes:"; 0 = not given */
  char *shard_spec;                  /* `shard:` (I/N or auto), or NULL */
  int shards;                        /* `shards:` (0 = not given) */
  af_shard shard;                    /* this run's shard ({0, 1} when not sharded) */
  int sharded;                       /* a shard was asked for (provenance shows it) */
  char shard_origin[128];            /* "--shard 1/4", "SLURM_ARRAY_TASK_ID=2 of 1-3", ... */
  struct af_shard_path *shard_paths; /* sink paths with {shard}: field, template, expansion */
  int n_shard_paths;
  int shard_on; /* 1 while the templates are in place */
  af_run_options opt;
  char **sets;       /* copies of opt.sets */
  af_instance *inst; /* [0] = source, then transforms, then sinks */
  int n_inst, n_transforms, n_sinks;
  char *params_json;
  char *settings_json;    /* the resume settings (settings.c), canonical JSON */
  char settings_hash[65]; /* its SHA-256 */
  char *settings_diff;    /* what --resume found changed (journal), or NULL */
  af_stage_stats *stats;  /* n_inst copies for af_pipeline_stats */
  af_run_summary summary;
  struct af_cl *cl;
  struct af_weights *weights; /* the model (pair), opened once for every NEEDS_MODEL stage */
  char *prov[2];              /* provenance JSON without / with the model digest (built once) */
  af_journal *jr;
  int lock_fd, locked;     /* the run lock (runlock.c), held while locked = 1 */
  atomic_int stop;         /* 0 run, 1 drain (grace), 2 abort */
  atomic_int stop_signal;  /* the signal behind the first stop request */
  struct af_inflight *fly; /* ids between the source and the end (pipeline/scheduler.c) */
  char **abandoned;        /* after an interrupt: the first abandoned ids */
  int n_abandoned;
  atomic_llong done, ok, failed, skipped, produced;
  int64_t expected; /* source count(), -1 unknown */
  int fatal;        /* first fatal status of a thread */
  char fatal_msg[512];
  pthread_mutex_t mu; /* guards fatal, fatal_msg, log output */
  pthread_cond_t finished_cv;
  int finished;  /* stage threads that have ended */
  double t_stop; /* when the run saw the first stop request (af_now), 0 = none */
  int ran;
};

/* Records the first fatal error of the run (thread-safe). */
void af_pipeline_fatal(af_pipeline *p, int code, const char *msg);

/* graph.c: checks every link and resolves port shapes, with the sizes the
 * stages negotiated where they did (run it again after negotiation).  0 or
 * AF_ERR_CONFIG naming both stages and both descriptions (and the model file
 * when a negotiated size is involved). */
int af_graph_check(af_pipeline *p);
/* graph.c: fills p->params_json and (af_settings_build) the settings.  0 or
 * AF_ERR_NOMEM. */
int af_pipeline_build_json(af_pipeline *p);
/* settings.c: fills p->settings_json and p->settings_hash.  0 or
 * AF_ERR_NOMEM. */
int af_settings_build(af_pipeline *p);
/* settings.c: one parameter's value as JSON (as provenance and the settings
 * show it).  Caller owns the result; NULL when out of memory. */
struct cJSON *af_param_json(const af_param *pr, const void *config);

/* provenance.c: the run's provenance block (ctx->provenance), built once per
 * flag set and kept in p->prov; NULL with the message recorded on failure.
 * Thread-safe. */
const char *af_pipeline_provenance(af_pipeline *p, unsigned what);

/* shard.c: resolves the shard (options, `shard:`, the environment) and
 * expands {shard} in sink paths and the journal; called at the end of the
 * load, after the JSON is built.  0 or AF_ERR_CONFIG. */
int af_pipeline_shard_setup(af_pipeline *p);
/* shard.c: on = 1 puts the {shard} templates back into the sink paths it
 * expanded, on = 0 the expansions again (JSON building only; nothing else
 * runs meanwhile). */
void af_shard_templates(af_pipeline *p, int on);
/* shard.c: frees the kept templates. */
void af_shard_free(af_pipeline *p);

/* scheduler.c: "journal:", else "<first sink's path>.journal", else
 * "artflow.journal".  malloc'd, NULL when out of memory. */
char *af_pipeline_default_journal(const af_pipeline *p);

/* yaml_limits.c: limits on pipeline files (docs/pipeline-format.md) */
#define AF_YAML_MAX_BYTES (1 << 20) /* file size */
#define AF_YAML_MAX_DEPTH 64        /* nested lists and mappings */
#define AF_YAML_MAX_NODES 100000    /* values, lists and mappings, aliases expanded */
/* Walks the events of yaml[0..len) once and refuses it at the first limit it
 * crosses (depth; node count, an alias counting as what it repeats), with
 * "name:line:col: ..." .  Syntax errors are left to the loader.  0,
 * AF_ERR_CONFIG or AF_ERR_NOMEM. */
int af_yaml_check_limits(const char *name, const char *yaml, size_t len);
/* Index of the first key (in file order) equal to an earlier one, n when all
 * differ, SIZE_MAX when out of memory.  O(n log n): a pairwise check took a
 * minute for a 40,000-key mapping. */
size_t af_yaml_first_repeat(const char *const *keys, size_t n);

/* runlock.c: takes the exclusive lock "<journal>.lock" for the run, or
 * fails with AF_ERR_CONFIG naming the holder's PID and host (another run is
 * writing the same outputs) or AF_ERR_IO (the file system refuses locks).
 * *fd is the lock, for af_runlock_release. */
int af_runlock_acquire(const char *journal, int *fd);
void af_runlock_release(int fd);

/* progress.c */
typedef struct af_progress af_progress;
af_progress *af_progress_new(af_pipeline *p);
void af_progress_tick(af_progress *pr, int final);
void af_progress_free(af_progress *pr);
/* Logs one line for a stage (ctx->log). */
void af_stage_log_cb(const af_stage_ctx *ctx, af_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

double af_now(void);

#endif
