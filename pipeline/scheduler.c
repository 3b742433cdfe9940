/* Running a loaded pipeline: one thread per stage instance, bounded queues
 * between them, batches, error items bypassing transforms, the journal, the
 * shard filter, and preemption: on SIGINT/SIGTERM intake stops at once, the
 * items in flight get a grace period, the rest is abandoned for --resume (a
 * second signal ends the process).
 *
 * Order: the chain is linear and every queue is a FIFO with one consumer, so
 * items leave the last sink in source order without any reordering buffer. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cl/devprofile.h"
#include "cl/runtime.h"
#include "cl/weights.h"
#include "core/iofile.h"
#include "formats/gguf.h"
#include "pipeline/internal.h"

#if __has_include("pipeline/journal.c")
#define AF_HAVE_JOURNAL 1
#else
#define AF_HAVE_JOURNAL 0
#endif

#define DEFAULT_QUEUE 64
#define DEFAULT_QUEUE_BYTES ((int64_t)256 << 20) /* per queue (docs/pipeline-format.md, "Memory") */
#define DEFAULT_GRACE 20.0                       /* seconds (Kubernetes' default grace is 30 s) */
#define LINGER 0.5        /* seconds after the grace for transforms to leave their calls */
#define SINK_LINGER 0.25  /* then for the sinks to write what they hold and flush */
#define KEEP_ABANDONED 10 /* abandoned ids kept for the closing message */

double af_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void af_pipeline_fatal(af_pipeline *p, int code, const char *msg) {
  pthread_mutex_lock(&p->mu);
  if (!p->fatal) {
    p->fatal = code ? code : AF_ERR_INVALID;
    snprintf(p->fatal_msg, sizeof p->fatal_msg, "%s", msg);
  }
  pthread_mutex_unlock(&p->mu);
}

void af_pipeline_stop(af_pipeline *p) {
  if (p) atomic_fetch_add(&p->stop, 1);
}

/* ------------------------------------------------------------ in flight */

/* The ids between the source and the end of the chain, in source order, so
 * that an interrupted run can say which items --resume will redo.  Items end
 * in source order (linear chain, FIFO queues), so an item that completes
 * pops the list's head; entries before it were dropped on the way. */
typedef struct fly_node {
  struct fly_node *next;
  uint64_t seq;
  char id[];
} fly_node;

struct af_inflight {
  pthread_mutex_t mu;
  fly_node *head, *tail;
};

static void keep_abandoned(af_pipeline *p, const char *id) {
  if (p->n_abandoned >= KEEP_ABANDONED) return;
  if (!p->abandoned && !(p->abandoned = calloc(KEEP_ABANDONED, sizeof *p->abandoned))) return;
  if ((p->abandoned[p->n_abandoned] = strdup(id))) p->n_abandoned++;
}

static void fly_add(af_pipeline *p, const af_item *it) {
  struct af_inflight *f = p->fly;
  size_t n = strlen(it->id) + 1;
  fly_node *e = f ? malloc(sizeof *e + n) : NULL;
  if (!e) return; /* only the closing message loses this id */
  e->next = NULL;
  e->seq = it->seq;
  memcpy(e->id, it->id, n);
  pthread_mutex_lock(&f->mu);
  if (f->tail)
    f->tail->next = e;
  else
    f->head = e;
  f->tail = e;
  pthread_mutex_unlock(&f->mu);
}

/* `seq` completed: entries before it were dropped on the way (abandoned).
 * all = 1: everything left is abandoned (end of the run). */
static void fly_done(af_pipeline *p, uint64_t seq, int all) {
  struct af_inflight *f = p->fly;
  if (!f) return;
  pthread_mutex_lock(&f->mu);
  while (f->head && (all || f->head->seq <= seq)) {
    fly_node *e = f->head;
    int hit = !all && e->seq == seq;
    if (!hit) keep_abandoned(p, e->id);
    if (!(f->head = e->next)) f->tail = NULL;
    free(e);
    if (hit) break;
  }
  pthread_mutex_unlock(&f->mu);
}

static void fly_free(af_pipeline *p) {
  if (!p->fly) return;
  fly_done(p, 0, 1);
  pthread_mutex_destroy(&p->fly->mu);
  free(p->fly);
  p->fly = NULL;
}

/* ------------------------------------------------------------- threads */

/* Marks the calling stage thread finished (the run waits for all of them,
 * but no longer than the grace allows). */
static void thread_exit(af_pipeline *p) {
  pthread_mutex_lock(&p->mu);
  p->finished++;
  pthread_cond_broadcast(&p->finished_cv);
  pthread_mutex_unlock(&p->mu);
}

/* Hands slots to the next instance, or ends them after the last sink:
 * journal commit (in order), counters, free. */
static void forward(af_pipeline *p, int i, af_slot *s, int n) {
  if (i + 1 < p->n_inst) {
    for (int k = 0; k < n; k++) af_fifo_push(&p->inst[i + 1].in, s[k]);
    return;
  }
  af_item *done[n > 0 ? n : 1];
  int nd = 0;
  for (int k = 0; k < n; k++)
    if (!(s[k].flags & AF_SLOT_SINK_FAILED)) done[nd++] = s[k].item;
#if AF_HAVE_JOURNAL
  if (p->jr && nd > 0) {
    int rc = af_journal_commit(p->jr, done, nd);
    if (rc) {
      af_pipeline_fatal(p, rc, af_error_message());
      af_error_clear();
      if (atomic_load(&p->stop) == 0) af_pipeline_stop(p);
    }
  }
#endif
  for (int k = 0; k < n; k++) {
    fly_done(p, s[k].item->seq, 0);
    atomic_fetch_add(&p->done, 1);
    atomic_fetch_add(s[k].item->status == AF_ITEM_OK ? &p->ok : &p->failed, 1);
    af_item_free(s[k].item);
  }
}

static void *source_main(void *arg) {
  af_instance *in = arg;
  af_pipeline *p = in->ctx.pipeline;
  const af_stage_desc *d = in->desc;
  uint64_t seq = 0;
  const af_shard sh = p->shard;
  for (;;) {
    if (atomic_load(&p->stop)) {
      p->summary.interrupted = 1;
      /* intake stops at once: items no stage has started are not worth the
       * grace (unless the grace is unlimited: then everything drains) */
      af_slot s;
      if (p->opt.grace >= 0)
        while (af_fifo_trypop(&p->inst[1].in, &s)) af_item_free(s.item);
      break;
    }
    af_item *it = NULL;
    double t0 = af_now();
    af_flow r = d->next(in->self, &in->ctx, &it);
    in->stats.busy_s += af_now() - t0;
    if (r == AF_FLOW_EOS) break;
    if (r != AF_FLOW_OK || !it) {
      char msg[600];
      snprintf(msg, sizeof msg, "source '%s': %s", in->name,
               *af_error_message() ? af_error_message() : "next() failed without a message");
      int code = af_error_code();
      af_error_clear();
      af_item_free(it);
      p->summary.source_failed = 1;
      af_pipeline_fatal(p, code ? code : AF_ERR_IO, msg);
      break;
    }
    if (sh.count > 1 && af_shard_of(it->id, sh.count) != sh.index) { /* another shard's */
      af_item_free(it);
      continue;
    }
    in->stats.items++;
    in->stats.batches++;
#if AF_HAVE_JOURNAL
    if (p->jr && af_journal_is_done(p->jr, it->id)) {
      atomic_fetch_add(&p->skipped, 1);
      af_item_free(it);
      continue;
    }
#endif
    if (it->status != AF_ITEM_OK) in->stats.errors++;
    it->seq = seq++;
    atomic_fetch_add(&p->produced, 1);
    fly_add(p, it);
    af_fifo_push(&p->inst[1].in, (af_slot){it, 0, 0});
  }
  if (d->flush) d->flush(in->self, &in->ctx);
  af_fifo_close(&p->inst[1].in);
  thread_exit(p);
  return NULL;
}

/* Runs one batch through a transform or sink. */
static void run_batch(af_pipeline *p, af_instance *in, af_slot *s, int n) {
  const af_stage_desc *d = in->desc;
  af_item *arr[n];
  unsigned char was_ok[n];
  int m = 0;
  for (int k = 0; k < n; k++) {
    /* an item nobody wants any more (a server's client went away) is not
     * worth a transform's work; its error record still reaches the sinks */
    if (d->kind == AF_STAGE_TRANSFORM && p->opt.cancelled && s[k].item->status == AF_ITEM_OK &&
        p->opt.cancelled(p->opt.stream_arg, s[k].item))
      af_item_fail(s[k].item, in->name, "cancelled");
    if (d->kind == AF_STAGE_SINK || s[k].item->status == AF_ITEM_OK) {
      was_ok[m] = s[k].item->status == AF_ITEM_OK;
      arr[m++] = s[k].item;
    }
  }
  if (m == 0) return;
  double t0 = af_now();
  /* a model stage works in the device's weight turn (cl/weights.h) */
  int turn = (d->flags & AF_STAGE_NEEDS_MODEL) ? af_weights_turn_begin(p->weights) : 0;
  af_flow r = d->process(in->self, &in->ctx, arr, m);
  af_weights_turn_end(p->weights, turn);
  double dt = af_now() - t0;
  in->stats.busy_s += dt;
  in->stats.batches++;
  in->stats.items += m;
  if (r == AF_FLOW_ERROR) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", *af_error_message() ? af_error_message() : "stage failed");
    int code = af_error_code();
    af_error_clear();
    if (d->kind == AF_STAGE_SINK) {
      /* a record that was not written must not be journalled as done */
      for (int k = 0; k < n; k++) s[k].flags |= AF_SLOT_SINK_FAILED;
      char f[700];
      snprintf(f, sizeof f, "sink '%s': %s", in->name, msg);
      af_pipeline_fatal(p, code ? code : AF_ERR_IO, f);
      if (atomic_load(&p->stop) == 0) af_pipeline_stop(p);
    }
    for (int k = 0; k < m; k++) af_item_fail(arr[k], in->name, "%s", msg);
  }
  for (int k = 0; k < m; k++) {
    if (d->kind == AF_STAGE_TRANSFORM) {
      if (arr[k]->status != AF_ITEM_OK) in->stats.errors++;
      af_item_add_timing(arr[k], in->name, dt / m);
    } else if (r == AF_FLOW_ERROR || (was_ok[k] && arr[k]->status != AF_ITEM_OK)) {
      /* a sink that failed one item (its name, its data): that item's error
       * record in the sinks after this one, and done in the journal */
      in->stats.errors++;
    }
  }
}

static void *stage_main(void *arg) {
  af_instance *in = arg;
  af_pipeline *p = in->ctx.pipeline;
  int i = (int)(in - p->inst), bs = in->batch;
  af_slot one, *s = malloc((size_t)bs * sizeof *s);
  if (!s) { /* no batch buffer: go on one item at a time rather than lose items */
    s = &one;
    bs = 1;
  }
  int eos = 0;
  while (!eos) {
    int n = 0;
    /* a batch is also bounded by the queue's byte budget: eight 100 MP
     * images waiting for one preprocess batch would be 2.4 GB */
    int64_t bytes = 0, budget = in->in.budget;
    double linger = p->opt.batch_linger, until = 0;
    while (n < bs && !(budget > 0 && bytes >= budget)) {
      /* with a linger, only the batch's first item is waited for without limit */
      int got = n > 0 && linger > 0           ? af_fifo_pop_until(&in->in, &s[n], until)
                : af_fifo_pop(&in->in, &s[n]) ? 1
                                              : -1;
      if (got == 0) break; /* the linger is over: run what is there */
      if (got < 0) {
        eos = 1;
        break;
      }
      if (n == 0 && linger > 0) until = af_now() + linger;
      bytes += s[n].bytes;
      n++;
    }
    if (n == 0) continue;
    /* abort: transforms drop what is in flight; sinks still write done work */
    if (atomic_load(&p->stop) >= 2 && in->desc->kind != AF_STAGE_SINK) {
      for (int k = 0; k < n; k++) af_item_free(s[k].item);
      continue;
    }
    run_batch(p, in, s, n);
    forward(p, i, s, n);
  }
  if (s != &one) free(s);
  if (in->desc->flush && in->desc->flush(in->self, &in->ctx) == AF_FLOW_ERROR) {
    char msg[700];
    snprintf(msg, sizeof msg, "stage '%s': flush: %s", in->name, af_error_message());
    af_pipeline_fatal(p, af_error_code() ? af_error_code() : AF_ERR_IO, msg);
    af_error_clear();
  }
  if (i + 1 < p->n_inst) af_fifo_close(&p->inst[i + 1].in);
  thread_exit(p);
  return NULL;
}

/* ------------------------------------------------------------- signals */

static af_pipeline *volatile sig_target;

/* The first signal asks for a stop (the grace starts); a second one ends the
 * process at once by the signal's default action: outputs and journal are
 * whole at any instant, so --resume redoes what was in flight. */
static void on_signal(int sig) {
  af_pipeline *p = sig_target;
  if (!p) return;
  int none = 0;
  if (atomic_compare_exchange_strong(&p->stop_signal, &none, sig)) {
    int run = 0;
    atomic_compare_exchange_strong(&p->stop, &run, 1);
    return;
  }
  static const char msg[] = "\nartflow: second signal: exiting now; --resume redoes the items in flight\n";
  ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)w;
  struct sigaction dfl = {0};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  raise(sig); /* delivered when the handler returns */
}

/* ------------------------------------------------------------- run */

const char *af_pipeline_journal_path(const af_pipeline *p) {
  return p->journal;
}

/* Journal path: --journal, else "journal:", else "<first sink's path>.journal",
 * else (every sink writes to standard output or a folder without a path) next
 * to the pipeline file as "<pipeline file>.journal", else "artflow.journal".
 * *out malloc'd. */
char *af_pipeline_default_journal(const af_pipeline *p) {
  if (p->opt.journal) return strdup(p->opt.journal);
  if (p->journal) return strdup(p->journal);
  for (int i = 1 + p->n_transforms; i < p->n_inst; i++) {
    const af_param *pr = af_param_find(p->inst[i].desc, "path");
    if (pr && pr->type == AF_PARAM_STRING) {
      const char *v = *(char *const *)((const char *)p->inst[i].config + pr->offset);
      if (v && strcmp(v, "-")) {
        size_t n = strlen(v);
        while (n > 1 && v[n - 1] == '/') n--;
        char *j = malloc(n + 9);
        if (j) snprintf(j, n + 9, "%.*s.journal", (int)n, v);
        return j;
      }
    }
  }
  if (p->dir && p->path) { /* a pipeline file: next to it */
    const char *base = strrchr(p->path, '/');
    base = base ? base + 1 : p->path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".yaml")) n -= 5;
    char *name = malloc(n + 9);
    if (!name) return NULL;
    snprintf(name, n + 9, "%.*s.journal", (int)n, base);
    char *j = af_path_join(p->dir, name);
    free(name);
    return j;
  }
  return strdup("artflow.journal");
}

#if AF_HAVE_JOURNAL
/* Opens the journal; on --resume it checks that the settings are the ones the
 * journal records (docs/pipeline-io.md, "Resume"): a change stops the run
 * with AF_ERR_CONFIG before any stage is created, unless --allow-changed.
 * The diff stays in p->settings_diff for the caller to show. */
static int open_journal(af_pipeline *p) {
  af_journal_settings s = {
      .hash = p->settings_hash, .json = p->settings_json, .allow_changed = p->opt.allow_changed};
  int rc = af_journal_open(p->journal, p->opt.resume, &s, &p->jr);
  free(p->settings_diff);
  p->settings_diff = s.diff;
  if (!rc && s.unchecked)
    af_stage_log_cb(NULL, AF_LOG_WARN,
                    "%s records no settings (journal format 1): resuming without checking that they are "
                    "the same; later resumes check against this run's",
                    p->journal);
  if (!rc && s.changed) {
    af_stage_log_cb(NULL, AF_LOG_WARN,
                    "--allow-changed: %d setting(s) differ from %s; the records appended from now on use the "
                    "new ones:",
                    s.changed, p->journal);
    for (const char *l = s.diff; l && *l;) {
      const char *e = strchr(l, '\n');
      int n = e ? (int)(e - l) : (int)strlen(l);
      fprintf(stderr, "  %.*s\n", n, l);
      l += n + (e != NULL);
    }
  }
  return rc;
}
#endif

/* Prefixes the recorded message with the instance, so a setup failure names
 * the stage (and its YAML position) whatever the stage wrote. */
static int wrap(int rc, const af_instance *in, const char *what) {
  char msg[700];
  snprintf(msg, sizeof msg, "%s", *af_error_message() ? af_error_message() : af_strerror(rc));
  return af_err_replace(rc, "%s:%d:%d: stage '%s': %s%s", in->ctx.pipeline_path, in->line, in->col, in->name,
                        what, msg);
}

/* ctx->provenance and ctx->stream: the engine's services to its stages */
static const char *ctx_provenance(const af_stage_ctx *ctx, unsigned what) {
  return af_pipeline_provenance(ctx->pipeline, what);
}

static void ctx_stream(const af_stage_ctx *ctx, const af_item *item, const char *name, const char *bytes,
                       size_t n) {
  const af_pipeline *p = ctx->pipeline;
  if (p->opt.stream) p->opt.stream(p->opt.stream_arg, item, name, bytes, n);
}

static int ctx_cancelled(const af_stage_ctx *ctx, const af_item *item) {
  const af_pipeline *p = ctx->pipeline;
  return p->opt.cancelled(p->opt.stream_arg, item);
}

/* A model file that is not there is a configuration error (exit 2), as a
 * missing source folder is, found before the device is opened. */
static int check_model_file(const af_pipeline *p, const char *path) {
  struct stat st;
  if (!path) return 0;
  if (stat(path, &st) != 0)
    return af_err(AF_ERR_CONFIG, "%s: model file: %s (pipeline %s)", path, strerror(errno), p->path);
  if (!S_ISREG(st.st_mode))
    return af_err(AF_ERR_CONFIG, "%s: model file: not a regular file (pipeline %s)", path, p->path);
  return 0;
}

/* The device, its profile and the stages' batches; the model once for all. */
static int open_device_and_model(af_pipeline *p, int need_dev, int need_model, const char **dev) {
  int rc = 0;
  if (need_model && ((rc = check_model_file(p, p->model)) || (rc = check_model_file(p, p->llm_model))))
    return rc;
  *dev = p->opt.device ? p->opt.device : getenv("ARTFLOW_DEVICE") ? NULL : p->device;
  /* the pipeline's `profile:` file, unless ARTFLOW_PROFILE_FILE names one
   * (the environment wins, as ARTFLOW_DEVICE does over `device:`) */
  const char *prof = p->profile && !getenv("ARTFLOW_PROFILE_FILE") ? p->profile : NULL;
  rc = need_dev ? af_cl_open_profile(&p->cl, *dev, prof) : 0;
  if (rc) return rc;
  /* stages whose batch the pipeline leaves open take the profile's (vit,
   * qformer, llm: `batch:` in the device profile) */
  int changed = 0;
  for (int i = 0; p->cl && p->cl->profile && i < p->n_inst; i++) {
    af_instance *in = &p->inst[i];
    int b = in->batch_set ? 0 : af_devprofile_batch(p->cl->profile, in->desc->name);
    if (b > 0 && b != in->batch) in->batch = b, changed = 1;
  }
  /* the parameters in the provenance say the batch that runs, not the one
   * the file asked for */
  if (changed && (rc = af_pipeline_build_json(p))) return rc;
  if (!need_model) return 0;
  if (!p->cl) return af_err(AF_ERR_CONFIG, "%s: a model stage needs the OpenCL device", p->path);
  af_model_warn_demo(p->model, stderr); /* the bundled demo, mkmodel's random models */
  return af_weights_open_pair(p->cl, p->model, p->llm_model, &p->weights);
}

static void init_ctx(af_pipeline *p, af_instance *in, const char *dev) {
  in->ctx = (af_stage_ctx){.instance = in->name,
                           .cl = p->cl,
                           .queue = in->queue,
                           .weights = (in->desc->flags & AF_STAGE_NEEDS_MODEL) ? p->weights : NULL,
                           .batch = in->batch,
                           .model_path = p->model,
                           .llm_model_path = p->llm_model,
                           .device = p->cl ? p->cl->info.name : dev,
                           .profile = p->profile,
                           .pipeline_path = p->path,
                           .pipeline_sha256 = p->sha256,
                           .params_json = p->params_json,
                           .journal_path = p->journal,
                           .resume = p->opt.resume,
                           .quiet = p->opt.quiet,
                           .log = af_stage_log_cb,
                           .provenance = ctx_provenance,
                           .stream = p->opt.stream ? ctx_stream : NULL,
                           .pipeline = p,
                           .cancelled = p->opt.cancelled ? ctx_cancelled : NULL};
  in->stats.instance = in->name;
  in->stats.stage = in->desc->name;
  in->stats.kind = in->desc->kind;
}

/* create(), negotiate(), the graph check with the negotiated sizes, then
 * prepare(): every stage's buffers exist before the first item is read. */
static int build_stages(af_pipeline *p) {
  int rc = 0;
  for (int i = 0; i < p->n_inst && !rc; i++) {
    af_instance *in = &p->inst[i];
    if ((rc = in->desc->create(&in->ctx, in->config, &in->self))) return wrap(rc, in, "");
    in->created = 1;
  }
  if (p->inst[0].desc->count) p->expected = p->inst[0].desc->count(p->inst[0].self, &p->inst[0].ctx);
  if (p->expected > 0 && p->shard.count > 1) /* about 1/N of them are this shard's */
    p->expected = (p->expected + p->shard.count - 1 - p->shard.index) / p->shard.count;
  int negotiated = 0;
  for (int i = 0; i < p->n_inst && !rc; i++) {
    af_instance *in = &p->inst[i];
    if (!in->desc->negotiate) continue;
    memset(&in->dims, 0, sizeof in->dims);
    if ((rc = in->desc->negotiate(in->self, &in->ctx, &in->dims))) return wrap(rc, in, "negotiate: ");
    in->negotiated = negotiated = 1;
  }
  if (negotiated && (rc = af_graph_check(p))) return rc;
  for (int i = 0; i < p->n_inst && !rc; i++) {
    af_instance *in = &p->inst[i];
    if (in->desc->prepare && (rc = in->desc->prepare(in->self, &in->ctx, in->in_desc)))
      return wrap(rc, in, "prepare: ");
  }
  return 0;
}

static int setup(af_pipeline *p) {
  int rc = 0, need_dev = 0, need_model = 0;
  for (int i = 0; i < p->n_inst; i++) {
    need_dev |= !!(p->inst[i].desc->flags & (AF_STAGE_NEEDS_DEVICE | AF_STAGE_NEEDS_MODEL));
    need_model |= !!(p->inst[i].desc->flags & AF_STAGE_NEEDS_MODEL);
  }
  /* one writer per output: before the journal or any sink touches a file
   * (a run without a journal, e.g. describe's, writes no resumable output) */
  if (!p->opt.no_journal) {
    if ((rc = af_runlock_acquire(p->journal, &p->lock_fd))) return rc;
    p->locked = 1;
  }
  /* the journal first: a resume with other settings stops before the device
   * and the model are opened */
#if AF_HAVE_JOURNAL
  if (!p->opt.no_journal && (rc = open_journal(p))) return rc;
#else
  if (p->opt.resume) return af_err(AF_ERR_CONFIG, "--resume: this build has no run journal");
#endif
  const char *dev = NULL;
  if ((rc = open_device_and_model(p, need_dev, need_model, &dev))) return rc;
  for (int i = 0; i < p->n_inst && !rc; i++) {
    af_instance *in = &p->inst[i];
    if (p->cl && (in->desc->flags & (AF_STAGE_NEEDS_DEVICE | AF_STAGE_NEEDS_MODEL | AF_STAGE_USES_DEVICE)))
      rc = af_queue_new(p->cl, &in->queue);
    init_ctx(p, in, dev);
  }
  if (!rc) rc = build_stages(p);
  int depth = p->opt.queue_depth > 0 ? p->opt.queue_depth
              : p->queue_depth > 0   ? p->queue_depth
                                     : DEFAULT_QUEUE;
  int64_t budget = af_pipeline_queue_bytes(p);
  for (int i = 1; i < p->n_inst && !rc; i++) rc = af_fifo_init(&p->inst[i].in, depth, budget);
  return rc;
}

static void teardown(af_pipeline *p) {
  for (int i = p->n_inst - 1; i >= 0; i--) {
    af_instance *in = &p->inst[i];
    if (in->created) in->desc->destroy(in->self);
    in->created = 0;
    in->self = NULL;
    af_queue_free(in->queue);
    in->queue = NULL;
    if (in->in.ring) {
      in->stats.queue_max = in->in.max_seen;
      in->stats.queue_max_bytes = in->in.max_bytes_seen;
      af_fifo_destroy(&in->in);
    }
  }
#if AF_HAVE_JOURNAL
  if (p->jr) af_journal_close(p->jr);
#endif
  p->jr = NULL;
  if (p->locked) af_runlock_release(p->lock_fd);
  p->locked = 0;
  af_weights_free(p->weights);
  p->weights = NULL;
  if (p->cl) af_cl_close(p->cl);
  p->cl = NULL;
}

/* Waits for the stage threads, ticking the progress, and runs the stop.
 * After the first request the items in flight get the grace.  Then the
 * transforms' queues are closed: a transform ends after its current call, and
 * what is queued is dropped, except that the last transform's results still
 * reach the sinks (cheap, and they are done work).  LINGER seconds later the
 * sinks' queues are closed too, and the sinks get SINK_LINGER to write and
 * flush what they hold.  Returns the number of threads still running then
 * (0 when all ended). */
static int wait_threads(af_pipeline *p, int started, af_progress *pr) {
  double grace = p->opt.grace > 0 ? p->opt.grace : p->opt.grace < 0 ? -1 : DEFAULT_GRACE;
  double t_close = 0, t_sinks = 0;
  pthread_mutex_lock(&p->mu);
  while (p->finished < started) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&p->finished_cv, &p->mu, &ts);
    if (p->finished >= started) break;
    pthread_mutex_unlock(&p->mu);
    af_progress_tick(pr, 0);
    int st = atomic_load(&p->stop);
    double now = af_now();
    if (st && p->t_stop == 0) {
      p->t_stop = now;
      int sig = atomic_load(&p->stop_signal);
      long long fly = atomic_load(&p->produced) - atomic_load(&p->done);
      if (grace >= 0)
        af_stage_log_cb(NULL, AF_LOG_WARN,
                        "%s: intake stopped; up to %lld items in flight get %g s to finish",
                        sig == SIGTERM  ? "SIGTERM"
                        : sig == SIGINT ? "SIGINT"
                                        : "stop requested",
                        fly, grace);
    }
    if (st == 1 && grace >= 0 && now - p->t_stop >= grace) {
      int one = 1;
      atomic_compare_exchange_strong(&p->stop, &one, 2);
      st = atomic_load(&p->stop);
    }
    if (st >= 2 && t_close == 0) {
      t_close = now;
      for (int i = 1; i <= p->n_transforms; i++) af_fifo_close(&p->inst[i].in);
    }
    if (t_close > 0 && t_sinks == 0 && now - t_close >= LINGER) {
      t_sinks = now;
      for (int i = 1 + p->n_transforms; i < p->n_inst; i++) af_fifo_close(&p->inst[i].in);
    }
    pthread_mutex_lock(&p->mu);
    if (t_sinks > 0 && now - t_sinks >= SINK_LINGER && p->finished < started) break;
  }
  int left = started - p->finished;
  pthread_mutex_unlock(&p->mu);
  if (left > 0)
    af_stage_log_cb(NULL, AF_LOG_WARN, "%d stage thread%s still busy after the grace: leaving %s", left,
                    left > 1 ? "s" : "", left > 1 ? "them" : "it");
  return left;
}

int af_pipeline_run(af_pipeline *p) {
  if (p->ran) return af_err(AF_ERR_INVALID, "pipeline %s: already run", p->path);
  p->ran = 1;
  double t0 = af_now();
  int rc = setup(p);
  if (rc) {
    char msg[700];
    snprintf(msg, sizeof msg, "%s", af_error_message());
    teardown(p);
    return af_err_replace(rc, "%s", msg);
  }
  if (!(p->fly = calloc(1, sizeof *p->fly))) {
    teardown(p);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  pthread_mutex_init(&p->fly->mu, NULL);
  struct sigaction sa = {0}, old_int, old_term;
  if (p->opt.handle_signals) {
    sig_target = p;
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  p->summary.started = 1;
  af_progress *pr = af_progress_new(p);
  int started = 0;
  for (int i = p->n_inst - 1; i >= 0; i--) {
    af_instance *in = &p->inst[i];
    if (pthread_create(&in->thread, NULL, i ? stage_main : source_main, in)) {
      af_pipeline_fatal(p, AF_ERR_NOMEM, "cannot start a stage thread");
      /* threads already started wait on their queues: close them so they end */
      for (int k = i + 1; k < p->n_inst; k++) af_fifo_close(&p->inst[k].in);
      break;
    }
    in->started = 1;
    started++;
  }
  int stuck = wait_threads(p, started, pr);
  for (int i = 0; !stuck && i < p->n_inst; i++)
    if (p->inst[i].started) pthread_join(p->inst[i].thread, NULL);
  af_progress_tick(pr, 1);
  af_progress_free(pr);
  if (p->opt.handle_signals) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sig_target = NULL;
  }
  /* threads still in a stage call own the stages, the device and the
   * journal: nothing can be freed under them (the caller ends the process) */
  if (!stuck) teardown(p);
  p->summary.stuck = stuck;
  p->summary.total = atomic_load(&p->done);
  p->summary.ok = atomic_load(&p->ok);
  p->summary.failed = atomic_load(&p->failed);
  p->summary.skipped = atomic_load(&p->skipped);
  p->summary.abandoned = atomic_load(&p->produced) - p->summary.total;
  p->summary.signal = atomic_load(&p->stop_signal);
  p->summary.wall_s = af_now() - t0;
  if (p->t_stop > 0) p->summary.stop_s = af_now() - p->t_stop;
  fly_done(p, 0, 1); /* what is left in flight is abandoned (its ids kept for the message) */
  if (!stuck) fly_free(p);
  if (atomic_load(&p->stop) && !p->summary.source_failed) p->summary.interrupted = 1;
  if (p->fatal) return af_err_replace(p->fatal, "%s", p->fatal_msg);
  if (p->summary.interrupted)
    return af_err_replace(AF_ERR_INTERRUPTED,
                          "interrupted: %lld items done, %lld abandoned, the rest not started",
                          (long long)p->summary.total, (long long)p->summary.abandoned);
  return 0;
}

/* ------------------------------------------------------------- accessors */

const af_run_summary *af_pipeline_summary(const af_pipeline *p) {
  return &p->summary;
}

const af_stage_stats *af_pipeline_stats(const af_pipeline *p, int *n) {
  af_pipeline *q = (af_pipeline *)p;
  if (!q->stats) q->stats = calloc((size_t)p->n_inst, sizeof *q->stats);
  if (!q->stats) return *n = 0, NULL;
  for (int i = 0; i < p->n_inst; i++) q->stats[i] = p->inst[i].stats;
  *n = p->n_inst;
  return q->stats;
}

const char *af_pipeline_params_json(const af_pipeline *p) {
  return p->params_json;
}

const char *af_pipeline_settings_json(const af_pipeline *p) {
  return p->settings_json;
}

const char *af_pipeline_settings_hash(const af_pipeline *p) {
  return p->settings_hash;
}

const char *af_pipeline_settings_diff(const af_pipeline *p) {
  return p->settings_diff;
}

int64_t af_pipeline_queue_bytes(const af_pipeline *p) {
  return p->opt.queue_bytes > 0 ? p->opt.queue_bytes
         : p->queue_bytes > 0   ? p->queue_bytes
                                : DEFAULT_QUEUE_BYTES;
}

int af_pipeline_queue_capacity(const af_pipeline *p) {
  return p->opt.queue_depth > 0 ? p->opt.queue_depth : p->queue_depth > 0 ? p->queue_depth : DEFAULT_QUEUE;
}

const char *const *af_pipeline_abandoned(const af_pipeline *p, int *n) {
  *n = p->n_abandoned;
  return (const char *const *)p->abandoned;
}

void af_pipeline_free(af_pipeline *p) {
  /* threads left running after the grace still use it: the process ends
   * instead (see af_pipeline_run) */
  if (!p || p->summary.stuck) return;
  teardown(p);
  af_shard_free(p); /* the expansions back in the configs, the templates freed */
  for (int i = 0; i < p->n_inst; i++) {
    af_instance *in = &p->inst[i];
    if (in->desc) af_params_free(in->desc, in->config);
    free(in->config);
    free(in->name);
    free(in->in_shape);
    free(in->in_desc);
    free(in->out_shape);
  }
  free(p->inst);
  for (int i = 0; p->sets && i < p->opt.n_sets; i++) free(p->sets[i]);
  free(p->sets);
  free(p->path);
  free(p->dir);
  free(p->device);
  free(p->profile);
  free(p->model);
  free(p->llm_model);
  free(p->journal);
  free(p->shard_spec);
  for (int i = 0; i < p->n_abandoned; i++) free(p->abandoned[i]);
  free(p->abandoned);
  free(p->params_json);
  free(p->prov[0]);
  free(p->prov[1]);
  free(p->settings_json);
  free(p->settings_diff);
  free(p->stats);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->finished_cv);
  free(p);
}
