/* Scheduler: output order equals input order under random per-item delays,
 * queues stay within their bound (backpressure), failed items skip the
 * remaining transforms but reach the sinks, a whole-batch failure becomes
 * error records, queues hold at most their byte budget; stopping: an
 * unlimited grace drains everything, a grace abandons what is in flight when
 * it ends (and says which items), a stage stuck in a call past the grace is
 * left behind within the bound, and a second signal ends the process. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "af_test.h"
#include "pipeline/pipeline.h"
#include "pipeline_stages.h"

static af_pipeline *load_grace(const char *yaml, int queue, int signals, double grace) {
  af_run_options opt = {
      .progress = AF_PROGRESS_NONE, .queue_depth = queue, .handle_signals = signals, .grace = grace};
  af_pipeline *p = NULL;
  CHECK_OK(af_pipeline_load_string(yaml, "sched.yaml", &opt, &p));
  return p;
}

static af_pipeline *load(const char *yaml, int queue, int signals) {
  af_run_options opt = {.progress = AF_PROGRESS_NONE, .queue_depth = queue, .handle_signals = signals};
  af_pipeline *p = NULL;
  CHECK_OK(af_pipeline_load_string(yaml, "sched.yaml", &opt, &p));
  return p;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *stopper(void *arg) {
  struct timespec ts = {0, 500 * 1000 * 1000};
  nanosleep(&ts, NULL);
  af_pipeline_stop(arg);
  return NULL;
}

static void test_order(void) {
  tp_reset();
  af_pipeline *p = load(
      "source: {stage: tp_seq, count: 300}\n"
      "journal: ${AF_TEST_JOURNAL}\n"
      "stages:\n"
      "  - {stage: tp_delay, name: a, max_us: 300, batch: 7}\n"
      "  - {stage: tp_delay, name: b, max_us: 500, batch: 1}\n"
      "  - {stage: tp_delay, name: c, max_us: 200, batch: 16}\n"
      "sinks:\n  - {stage: tp_collect, batch: 5}\n",
      4, 0);
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  const af_run_summary *s = af_pipeline_summary(p);
  CHECK(s->total == 300 && s->ok == 300 && s->failed == 0);
  CHECK(atomic_load(&tp.collected) == 300);
  CHECK(atomic_load(&tp.out_of_order) == 0);
  CHECK(atomic_load(&tp.flushed) == 1);
  int n = 0;
  const af_stage_stats *st = af_pipeline_stats(p, &n);
  CHECK(n == 5);
  for (int i = 1; i < n; i++) CHECK_MSG(st[i].queue_max <= 4, "queue %d max %d", i, st[i].queue_max);
  CHECK(st[1].batches == (300 + 6) / 7);
  CHECK(st[2].batches == 300);
  CHECK(st[4].items == 300);
  af_pipeline_print_stats(p, stderr);
  af_pipeline_free(p);
}

/* A slow sink: the source may run ahead only by what the queues and batches
 * hold. */
static void test_backpressure(void) {
  tp_reset();
  af_pipeline *p = load(
      "source: {stage: tp_seq, count: 400}\n"
      "journal: ${AF_TEST_JOURNAL}\n"
      "stages:\n  - {stage: tp_delay, batch: 4}\n"
      "sinks:\n  - {stage: tp_collect, batch: 2, slow_us: 300}\n",
      3, 0);
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  /* in flight at most: 2 queues of 3, one batch of 4 in the transform, one of
   * 2 in the sink, 1 being produced */
  long long bound = 3 + 3 + 4 + 2 + 1;
  CHECK_MSG(atomic_load(&tp.max_live) <= bound, "max live %lld > %lld", atomic_load(&tp.max_live), bound);
  CHECK(atomic_load(&tp.max_live) >= 6); /* the bound was actually approached */
  CHECK(atomic_load(&tp.collected) == 400);
  af_pipeline_free(p);
}

static void test_errors(void) {
  tp_reset();
  af_pipeline *p = load(
      "source: {stage: tp_seq, count: 50}\n"
      "journal: ${AF_TEST_JOURNAL}\n"
      "stages:\n  - {stage: tp_delay, name: first, fail_every: 3}\n"
      "  - {stage: tp_delay, name: second}\n"
      "sinks:\n  - {stage: tp_collect}\n",
      8, 0);
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  const af_run_summary *s = af_pipeline_summary(p);
  /* ids 0,3,...,48 fail: 17 of 50 */
  CHECK_MSG(s->failed == 17 && s->ok == 33, "failed %lld ok %lld", (long long)s->failed, (long long)s->ok);
  CHECK(atomic_load(&tp.errors_seen) == 17);
  CHECK(atomic_load(&tp.saw_failed_in_transform) == 0);
  CHECK(atomic_load(&tp.out_of_order) == 0);
  CHECK(!strcmp(tp.first_error_stage, "first"));
  CHECK(strstr(tp.first_error, "item00000: injected failure") != NULL);
  int n = 0;
  const af_stage_stats *st = af_pipeline_stats(p, &n);
  CHECK(st[1].errors == 17 && st[1].items == 50);
  CHECK(st[2].items == 33 && st[2].errors == 0);
  af_pipeline_free(p);

  /* process() failing a whole batch: every item becomes an error record */
  tp_reset();
  p = load(
      "source: {stage: tp_seq, count: 10}\njournal: ${AF_TEST_JOURNAL}\n"
      "stages:\n  - {stage: tp_delay, mode: fail_batch}\n"
      "sinks:\n  - {stage: tp_collect}\n",
      8, 0);
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  CHECK(af_pipeline_summary(p)->failed == 10);
  CHECK(strstr(tp.first_error, "whole batch failed on purpose") != NULL);
  CHECK(!strcmp(tp.first_error_stage, "tp_delay"));
  af_pipeline_free(p);
}

/* grace < 0: no limit, everything in flight drains */
static void test_sigint(void) {
  tp_reset();
  tp.raise_after = 40;
  af_pipeline *p = load_grace(
      "source: {stage: tp_seq, count: 100000}\njournal: ${AF_TEST_JOURNAL}\n"
      "stages:\n  - {stage: tp_delay, max_us: 200}\n"
      "sinks:\n  - {stage: tp_collect}\n",
      8, 1, -1);
  if (!p) return;
  int rc = af_pipeline_run(p);
  CHECK_MSG(rc == AF_ERR_INTERRUPTED, "rc %d %s", rc, af_error_message());
  af_error_clear();
  const af_run_summary *s = af_pipeline_summary(p);
  CHECK(s->interrupted);
  CHECK(tp.sig_raised);
  /* drained: everything produced reached the sink, in order, then flush */
  CHECK_MSG(atomic_load(&tp.produced) == atomic_load(&tp.collected), "produced %lld collected %lld",
            atomic_load(&tp.produced), atomic_load(&tp.collected));
  CHECK(atomic_load(&tp.collected) >= 40 && atomic_load(&tp.collected) < 100000);
  CHECK(atomic_load(&tp.out_of_order) == 0);
  CHECK(atomic_load(&tp.flushed) == 1);
  CHECK(s->total == atomic_load(&tp.collected));
  af_pipeline_free(p);
  /* the handler is gone after the run */
  struct sigaction now;
  sigaction(SIGINT, NULL, &now);
  CHECK(now.sa_handler == SIG_DFL);
}

/* A second request aborts: items in flight are dropped, sinks still flush. */
static void test_abort(void) {
  tp_reset();
  tp.raise_after = 20;
  tp.stop_twice = 1;
  af_pipeline *p = load(
      "source: {stage: tp_seq, count: 100000}\njournal: ${AF_TEST_JOURNAL}\n"
      "stages:\n  - {stage: tp_delay, max_us: 300, batch: 1}\n"
      "sinks:\n  - {stage: tp_collect, batch: 2}\n",
      8, 0);
  if (!p) return;
  int rc = af_pipeline_run(p);
  CHECK(rc == AF_ERR_INTERRUPTED);
  af_error_clear();
  CHECK(atomic_load(&tp.flushed) == 1);
  CHECK_MSG(atomic_load(&tp.collected) < atomic_load(&tp.produced), "collected %lld produced %lld",
            atomic_load(&tp.collected), atomic_load(&tp.produced));
  CHECK(atomic_load(&tp.collected) < 100);
  CHECK(atomic_load(&tp.out_of_order) == 0);
  const af_run_summary *s = af_pipeline_summary(p);
  CHECK(s->abandoned == atomic_load(&tp.produced) - s->total);
  CHECK(s->stuck == 0 && s->signal == 0);
  af_pipeline_free(p);
}

/* The first SIGINT: intake stops, the items in flight get the grace (0.4 s)
 * and what has not finished then is abandoned and named, in source order. */
static void test_grace(void) {
  tp_reset();
  tp.raise_after = 6;
  af_pipeline *p = load_grace(
      "source: {stage: tp_seq, count: 100000}\njournal: ${AF_TEST_JOURNAL}\n"
      "stages:\n  - {stage: tp_delay, call_ms: 150, batch: 2}\n"
      "sinks:\n  - {stage: tp_collect, batch: 1}\n",
      8, 1, 0.4);
  if (!p) return;
  double t0 = now_s();
  int rc = af_pipeline_run(p);
  double dt = now_s() - t0;
  CHECK_MSG(rc == AF_ERR_INTERRUPTED, "rc %d %s", rc, af_error_message());
  af_error_clear();
  const af_run_summary *s = af_pipeline_summary(p);
  CHECK(s->interrupted && s->signal == SIGINT && s->stuck == 0);
  CHECK_MSG(s->stop_s < 0.4 + 0.5 + 0.2, "stopped %.2f s after the signal", s->stop_s);
  CHECK_MSG(dt < 3.0, "run took %.2f s", dt);
  /* 0.4 s at 2 items / 150 ms: a few more than the 6 before the signal */
  CHECK_MSG(s->total >= 6 && s->total <= 14, "%lld done", (long long)s->total);
  CHECK(s->total == atomic_load(&tp.collected));
  CHECK(s->abandoned == atomic_load(&tp.produced) - s->total);
  CHECK(s->abandoned > 0);
  int n = 0;
  const char *const *ids = af_pipeline_abandoned(p, &n);
  CHECK(n == (s->abandoned < 10 ? s->abandoned : 10));
  /* the first abandoned item is the one after the last done */
  char want[32];
  snprintf(want, sizeof want, "item%05lld", (long long)s->total);
  CHECK_MSG(n > 0 && !strcmp(ids[0], want), "first abandoned %s, want %s", n ? ids[0] : "-", want);
  for (int i = 1; i < n; i++) CHECK(strcmp(ids[i - 1], ids[i]) < 0);
  CHECK(atomic_load(&tp.flushed) == 1);
  af_pipeline_free(p);
}

/* A stage call far longer than the grace: the run returns without that
 * thread within grace + 1 s, reports it stuck, and af_pipeline_free leaves the
 * pipeline alone (the thread still uses it; a real caller ends the process).
 * Runs in a child that ends with _exit, as artflow does: the pipeline left to
 * the stuck thread is never freed, which LeakSanitizer would report at exit. */
static void stuck_child(void);
static void test_stuck(void) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    stuck_child();
    fflush(NULL);
    _exit(af_test_failures ? 1 : 0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "stuck child: status %d", st);
}

static void stuck_child(void) {
  tp_reset();
  af_pipeline *p = load_grace(
      "source: {stage: tp_seq, count: 1000}\njournal: ${AF_TEST_JOURNAL}.stuck\n"
      "stages:\n  - {stage: tp_delay, name: quick, batch: 1}\n"
      "  - {stage: tp_delay, name: hang, call_ms: 4000, batch: 4}\n"
      "sinks:\n  - {stage: tp_collect, batch: 1}\n",
      8, 0, 0.3);
  if (!p) return;
  /* nothing reaches the sink before the hung call ends: stop from here */
  double t0 = now_s();
  pthread_t th;
  pthread_create(&th, NULL, stopper, p);
  int rc = af_pipeline_run(p);
  double dt = now_s() - t0;
  pthread_join(th, NULL);
  CHECK(rc == AF_ERR_INTERRUPTED);
  af_error_clear();
  const af_run_summary *s = af_pipeline_summary(p);
  CHECK_MSG(s->stuck == 1, "stuck %d", s->stuck);
  CHECK_MSG(s->stop_s < 0.3 + 1.0, "stopped %.2f s after the request", s->stop_s);
  CHECK_MSG(dt < 0.5 + 0.3 + 1.0 + 0.5, "run took %.2f s", dt);
  CHECK(s->total == 0 && s->abandoned > 0);
  CHECK(atomic_load(&tp.flushed) == 1); /* the sink was not stuck: it flushed */
  af_pipeline_free(p);                  /* leaves it: must not crash the thread */
  sleep(4);                             /* the hung call ends and its thread with it */
}

/* A second signal ends the process by that signal, at once. */
static void test_second_signal(void) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    tp_reset();
    tp.raise_after = 5;
    tp.raise_twice = 1;
    af_pipeline *p = load_grace(
        "source: {stage: tp_seq, count: 1000}\njournal: ${AF_TEST_JOURNAL}.second\n"
        "stages:\n  - {stage: tp_delay, call_ms: 200, batch: 1}\n"
        "sinks:\n  - {stage: tp_collect, batch: 1}\n",
        8, 1, 30);
    if (p) af_pipeline_run(p);
    _exit(0); /* not reached when the second signal works */
  }
  int st = 0;
  double t0 = now_s();
  waitpid(pid, &st, 0);
  CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGINT, "status %d", st);
  CHECK_MSG(now_s() - t0 < 10, "took %.1f s", now_s() - t0);
}

/* Queues count bytes too: 1 MiB items behind a slow sink fill its queue up
 * to the budget (4 MiB: 4 items), not up to the 64 items the queue takes; an
 * item larger than the budget still passes, alone. */
static void test_queue_bytes(void) {
  static const struct {
    const char *budget;
    int64_t max_bytes;
    int max_items;
  } cases[] = {{"4M", 4 << 20, 4}, {"512K", 1 << 20, 1}};
  for (int c = 0; c < 2; c++) {
    tp_reset();
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "source: {stage: tp_seq, count: 30}\njournal: ${AF_TEST_JOURNAL}\nqueue_bytes: %s\n"
             "stages:\n  - {stage: tp_make, n: 262144, batch: 1}\n"
             "sinks:\n  - {stage: tp_collect, batch: 1, slow_us: 3000}\n",
             cases[c].budget);
    af_pipeline *p = load(yaml, 64, 0);
    if (!p) return;
    CHECK(af_pipeline_queue_bytes(p) == (c == 0 ? 4 << 20 : 512 << 10));
    CHECK_OK(af_pipeline_run(p));
    CHECK(atomic_load(&tp.collected) == 30);
    int n = 0;
    const af_stage_stats *st = af_pipeline_stats(p, &n);
    printf("  queue_bytes %s: sink queue max %d items, %lld bytes\n", cases[c].budget, st[2].queue_max,
           (long long)st[2].queue_max_bytes);
    CHECK_MSG(st[2].queue_max_bytes <= cases[c].max_bytes, "%lld bytes", (long long)st[2].queue_max_bytes);
    CHECK_MSG(st[2].queue_max <= cases[c].max_items && st[2].queue_max >= 1, "%d items", st[2].queue_max);
    af_pipeline_free(p);
  }
  /* the size syntax */
  int64_t b = 0;
  CHECK(af_parse_bytes("256M", &b) == 0 && b == 256 << 20);
  CHECK(af_parse_bytes("1GiB", &b) == 0 && b == (int64_t)1 << 30);
  CHECK(af_parse_bytes("65536", &b) == 0 && b == 65536);
  CHECK(af_parse_bytes("12Q", &b) == -1 && af_parse_bytes("", &b) == -1 && af_parse_bytes("-1M", &b) == -1);
}

/* batch_linger: a source that blocks for its items (a server's requests)
 * leaves no item waiting for a full batch, while items that are there
 * together still share one; without it a transform waits for its batch. */
static void test_linger(void) {
  static const char yaml[] =
      "source: {stage: tp_seq, count: 6, gap_ms: 150}\n"
      "stages: [{stage: tp_delay, name: a, max_us: 0, batch: 4}]\n"
      "sinks: [{stage: tp_collect}]\n";
  for (int linger = 0; linger < 2; linger++) {
    tp_reset();
    af_run_options opt = {.progress = AF_PROGRESS_NONE, .no_journal = 1, .batch_linger = linger ? 0.02 : 0};
    af_pipeline *p = NULL;
    CHECK_OK(af_pipeline_load_string(yaml, "linger.yaml", &opt, &p));
    if (!p) return;
    CHECK_OK(af_pipeline_run(p));
    int n = 0;
    const af_stage_stats *st = af_pipeline_stats(p, &n);
    CHECK(atomic_load(&tp.collected) == 6 && atomic_load(&tp.out_of_order) == 0);
    /* 150 ms apart: with a 20 ms linger each item runs alone; without, 4 + 2 */
    CHECK_MSG(st[1].batches == (linger ? 6 : 2), "linger %d: %lld batches", linger, (long long)st[1].batches);
    af_pipeline_free(p);
  }
  tp_reset();
  /* items that are queued together share a batch under a linger */
  af_run_options opt = {.progress = AF_PROGRESS_NONE, .no_journal = 1, .batch_linger = 0.05};
  af_pipeline *p = NULL;
  CHECK_OK(
      af_pipeline_load_string("source: {stage: tp_seq, count: 40}\n"
                              "stages: [{stage: tp_delay, name: a, max_us: 2000, batch: 8}]\n"
                              "sinks: [{stage: tp_collect}]\n",
                              "linger.yaml", &opt, &p));
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  int n = 0;
  const af_stage_stats *st = af_pipeline_stats(p, &n);
  CHECK(atomic_load(&tp.collected) == 40);
  CHECK_MSG(st[1].batches < 40, "%lld batches for 40 items queued together", (long long)st[1].batches);
  af_pipeline_free(p);
}

/* opt.cancelled: an item the listener gave up on is failed "cancelled"
 * before the next transform, and reaches the sinks as an error record. */
static int odd_cancelled(void *arg, const af_item *item) {
  (*(atomic_int *)arg)++;
  return (item->id[strlen(item->id) - 1] - '0') % 2;
}

static void test_cancelled(void) {
  tp_reset();
  atomic_int asked = 0;
  af_run_options opt = {
      .progress = AF_PROGRESS_NONE, .no_journal = 1, .cancelled = odd_cancelled, .stream_arg = &asked};
  af_pipeline *p = NULL;
  CHECK_OK(
      af_pipeline_load_string("source: {stage: tp_seq, count: 10}\n"
                              "stages: [{stage: tp_delay, name: a, max_us: 0}]\n"
                              "sinks: [{stage: tp_collect}]\n",
                              "cancel.yaml", &opt, &p));
  if (!p) return;
  CHECK_OK(af_pipeline_run(p));
  const af_run_summary *s = af_pipeline_summary(p);
  CHECK_MSG(s->ok == 5 && s->failed == 5, "%lld ok, %lld failed", (long long)s->ok, (long long)s->failed);
  CHECK(atomic_load(&tp.errors_seen) == 5 && !strcmp(tp.first_error, "cancelled") &&
        !strcmp(tp.first_error_stage, "a"));
  CHECK(atomic_load(&asked) == 10); /* once per ok item and transform, never for the sink */
  af_pipeline_free(p);
}

int main(void) {
  char j[512];
  snprintf(j, sizeof j, "%s/run.journal", af_test_tmpdir());
  setenv("AF_TEST_JOURNAL", j, 1);
  tp_register();
  test_order();
  test_backpressure();
  test_errors();
  test_sigint();
  test_abort();
  test_queue_bytes();
  test_linger();
  test_cancelled();
  test_grace();
  test_stuck();
  test_second_signal();
  return af_test_done("test_pipeline_sched");
}
