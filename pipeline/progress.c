/* What a run tells its user: a progress bar (count, rate, ETA) on a TTY or a
 * periodic one-line log otherwise, stage log lines, and the per-stage
 * statistics table with the summary line at the end.  All on stderr so
 * stdout stays free for data (JSON Lines sinks may write there). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/internal.h"

struct af_progress {
  af_pipeline *p;
  af_progress_mode mode;
  double t0, last;
  int drawn; /* a bar is on screen (needs clearing before other output) */
};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static af_progress *active_bar; /* the bar to clear before a log line */

af_progress *af_progress_new(af_pipeline *p) {
  af_progress *pr = calloc(1, sizeof *pr);
  if (!pr) return NULL; /* a run without progress output is still a run */
  pr->p = p;
  pr->mode = p->opt.progress;
  if (p->opt.quiet) pr->mode = AF_PROGRESS_NONE;
  if (pr->mode == AF_PROGRESS_AUTO) pr->mode = isatty(STDERR_FILENO) ? AF_PROGRESS_BAR : AF_PROGRESS_LOG;
  pr->t0 = pr->last = af_now();
  if (pr->mode == AF_PROGRESS_BAR) {
    pthread_mutex_lock(&out_lock);
    active_bar = pr;
    pthread_mutex_unlock(&out_lock);
  }
  return pr;
}

static void fmt_dur(double s, char *buf, size_t n) {
  if (s < 0 || s > 1e7)
    snprintf(buf, n, "?");
  else if (s < 60)
    snprintf(buf, n, "%.0fs", s);
  else if (s < 3600)
    snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else
    snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

void af_progress_tick(af_progress *pr, int final) {
  if (!pr || pr->mode == AF_PROGRESS_NONE) return;
  af_pipeline *p = pr->p;
  double now = af_now(), el = now - pr->t0;
  double every = pr->mode == AF_PROGRESS_BAR ? 0.2 : p->opt.log_interval > 0 ? p->opt.log_interval : 10.0;
  if (!final && now - pr->last < every) return;
  pr->last = now;
  long long done = atomic_load(&p->done), failed = atomic_load(&p->failed);
  long long skipped = atomic_load(&p->skipped);
  long long total = p->expected >= 0 ? p->expected - skipped : -1;
  double rate = el > 0 ? (double)done / el : 0;
  char eta[32] = "?";
  if (total > 0 && rate > 0) fmt_dur((double)(total - done) / rate, eta, sizeof eta);
  pthread_mutex_lock(&out_lock);
  if (pr->mode == AF_PROGRESS_BAR) {
    char bar[31];
    int fill = total > 0 ? (int)(30.0 * (double)done / (double)total) : 0;
    if (fill > 30) fill = 30;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : total > 0 ? '.' : ' ';
    bar[30] = 0;
    if (total > 0)
      fprintf(stderr, "\r\033[K[%s] %lld/%lld  %.1f/s  ETA %s  errors %lld", bar, done, total, rate, eta,
              failed);
    else
      fprintf(stderr, "\r\033[K%lld items  %.1f/s  errors %lld", done, rate, failed);
    pr->drawn = 1;
    if (final) {
      fputc('\n', stderr);
      pr->drawn = 0;
      active_bar = NULL;
    }
  } else if (!final) {
    if (total > 0)
      fprintf(stderr, "artflow: %lld/%lld items (%.1f%%), %.1f items/s, ETA %s, %lld errors\n", done, total,
              100.0 * (double)done / (double)total, rate, eta, failed);
    else
      fprintf(stderr, "artflow: %lld items, %.1f items/s, %lld errors\n", done, rate, failed);
  }
  fflush(stderr);
  pthread_mutex_unlock(&out_lock);
}

void af_progress_free(af_progress *pr) {
  if (!pr) return;
  pthread_mutex_lock(&out_lock);
  if (active_bar == pr) active_bar = NULL;
  pthread_mutex_unlock(&out_lock);
  free(pr);
}

void af_stage_log_cb(const af_stage_ctx *ctx, af_log_level level, const char *fmt, ...) {
  const af_pipeline *p = ctx ? ctx->pipeline : NULL;
  if (level >= AF_LOG_INFO && p && p->opt.quiet) return;
  if (level >= AF_LOG_DEBUG && !getenv("ARTFLOW_DEBUG")) return;
  static const char *names[] = {"error", "warning", "info", "debug"};
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&out_lock);
  if (active_bar && active_bar->drawn) {
    fputs("\r\033[K", stderr);
    active_bar->drawn = 0;
  }
  fprintf(stderr, "artflow: %s: %s: %s\n", ctx && ctx->instance ? ctx->instance : "pipeline",
          names[(unsigned)level & 3], msg);
  fflush(stderr);
  pthread_mutex_unlock(&out_lock);
}

void af_pipeline_print_stats(const af_pipeline *p, FILE *out) {
  fprintf(out, "%-16s %-10s %-9s %9s %7s %8s %9s %10s %6s\n", "stage", "type", "kind", "items", "errors",
          "batches", "busy s", "items/s", "queue");
  for (int i = 0; i < p->n_inst; i++) {
    const af_stage_stats *s = &p->inst[i].stats;
    char rate[32] = "-", q[16] = "-";
    if (s->busy_s > 0 && s->items > 0) snprintf(rate, sizeof rate, "%.1f", (double)s->items / s->busy_s);
    if (i > 0) snprintf(q, sizeof q, "%d", s->queue_max);
    fprintf(out, "%-16s %-10s %-9s %9lld %7lld %8lld %9.3f %10s %6s\n", p->inst[i].name,
            p->inst[i].desc->name, af_stage_kind_name(p->inst[i].desc->kind), (long long)s->items,
            (long long)s->errors, (long long)s->batches, s->busy_s, rate, q);
  }
  const af_run_summary *r = &p->summary;
  fprintf(out, "%lld items: %lld ok, %lld errors", (long long)r->total, (long long)r->ok,
          (long long)r->failed);
  if (r->skipped) fprintf(out, ", %lld skipped (done earlier)", (long long)r->skipped);
  fprintf(out, " in %.2f s (%.1f items/s)%s\n", r->wall_s, r->wall_s > 0 ? (double)r->total / r->wall_s : 0.0,
          r->interrupted ? ", interrupted" : "");
}
