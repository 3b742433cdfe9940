/* artflow serve: the model kept loaded behind an OpenAI-compatible HTTP API
 * (docs/serve.md; the parts are listed in cli/serve.h).  This file: the
 * flags, the start (listen first, so a busy port fails at once; then the
 * pipeline loads the model and runs until stopped) and the stop.
 *
 * Stopping: the first SIGTERM or SIGINT refuses new requests (503), fails
 * those still queued, and gives the ones in the pipeline --grace seconds
 * (the engine's preemption, as `artflow run`); what is left is answered
 * 503.  The answers go out, the port closes, and the server exits 0.  A
 * second signal exits at once.  Signals are taken by one thread (sigwait):
 * every other thread, the engine's and libmicrohttpd's, has them blocked. */
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "cli/serve.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"

static const char head[] =
    "usage: artflow serve --model MODEL.gguf [options]\n"
    "\n"
    "Keeps the model loaded and answers HTTP on 127.0.0.1 (docs/serve.md):\n"
    "  POST /v1/chat/completions   OpenAI's chat completion: one user message with an image\n"
    "                              (a data: URL, or a path under --files) and a question;\n"
    "                              \"stream\": true answers with server-sent events\n"
    "  POST /v1/tag                {\"image\", \"vocabulary\" | \"labels\", \"mode\", ...} -> ranked labels\n"
    "  GET  /health, /v1/models\n"
    "Every request is an item of one pipeline (decode, preprocess, vit, qformer, llm):\n"
    "requests that arrive together share its batches.\n"
    "\n"
    "options:\n"
    "  --model FILE          model file (required)\n"
    "  --llm FILE            a GGUF with the base LLM (two-file model)\n"
    "  --host ADDR           address to listen on (default 127.0.0.1; 0.0.0.0 opens it to the network)\n"
    "  --port P              port (default 8080; 0: any free port, printed at start)\n"
    "  --files DIR           image paths in requests resolve under DIR (default: none, data: URLs only)\n"
    "  --queue N             requests taken at once, queued or in the pipeline (default 32);\n"
    "                        more are refused with 503 and Retry-After\n"
    "  --max-body SIZE       largest request body, e.g. 32M (default); more: 413\n"
    "  --max-pixels N        largest image in pixels (default 50000000); more: 413\n"
    "  --max-labels N        most labels in one tag request (default 1000)\n"
    "  --batch-wait MS       how long a stage holding a request waits for others to share its\n"
    "                        batch (default 10)\n"
    "  --grace SECONDS       on SIGTERM, time the requests in the pipeline get (default 20)\n"
    "  --set STAGE.PARAM=V   a key of the pipeline's stages (decode, preprocess, vit, qformer,\n"
    "                        llm), e.g. llm.batch=8 or decode.deadline=10\n"
    "  --device D            OpenCL device index or name substring\n"
    "\n"
    "Generation defaults for requests (a request's own values win), as the llm stage's keys:\n";
static const char tail[] =
    "\n"
    "exit status: 0 stopped by a signal after a clean stop, 1 the server failed, 2 usage or\n"
    "configuration error.\n";
static const char *const skip[] = {"details", "tasks", "interleave", "question", "language", NULL};

typedef struct serve_args {
  const char *model, *llm, *device, *host, *files;
  int port, queue, max_labels;
  int64_t max_body, max_pixels;
  double batch_wait_ms, grace;
  const char **sets;
  int n_sets;
} serve_args;

static char *make_usage(const af_cli_flags *f) {
  af_buf b = {0};
  af_buf_puts(&b, head);
  af_cli_flags_help(f, &b, NULL);
  af_buf_puts(&b, tail);
  af_buf_put(&b, "", 1);
  return b.oom ? (af_buf_free(&b), NULL) : b.p;
}

/* a number flag's value within [lo, hi]; -1 after a usage error */
static int number(const char *flag, const char *v, double lo, double hi, double *out, const char *usage) {
  char *end = NULL;
  double d = v ? strtod(v, &end) : 0;
  if (!v || end == v || *end || d < lo || d > hi)
    return af_cli_usage_error("serve", usage, "%s: expected a number from %g to %g, got '%s'", flag, lo, hi,
                              v ? v : ""),
           -1;
  *out = d;
  return 0;
}

/* 0 parsed, else the exit code */
static int parse(int argc, char **argv, af_cli_flags *f, serve_args *a, const char *usage) {
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    const char **str = !strcmp(s, "--model")    ? &a->model
                       : !strcmp(s, "--llm")    ? &a->llm
                       : !strcmp(s, "--device") ? &a->device
                       : !strcmp(s, "--host")   ? &a->host
                       : !strcmp(s, "--files")  ? &a->files
                                                : NULL;
    double d = 0;
    int k;
    if (af_cli_is_help(s)) {
      fputs(usage, stdout);
      return AF_EXIT_OK + 100; /* done, exit 0 */
    } else if (str) {
      if (!v) return af_cli_usage_error("serve", usage, "option '%s' needs a value", s);
      *str = v, i++;
    } else if (!strcmp(s, "--set")) {
      if (!v || !strchr(v, '=')) return af_cli_usage_error("serve", usage, "--set STAGE.PARAM=VALUE");
      a->sets[a->n_sets++] = v, i++;
    } else if (!strcmp(s, "--max-body")) {
      if (!v || af_parse_bytes(v, &a->max_body) || a->max_body < 1024)
        return af_cli_usage_error("serve", usage, "--max-body: a size of at least 1K, e.g. 32M");
      i++;
    } else if (!strcmp(s, "--port") || !strcmp(s, "--queue") || !strcmp(s, "--max-pixels") ||
               !strcmp(s, "--max-labels") || !strcmp(s, "--batch-wait") || !strcmp(s, "--grace")) {
      int port = !strcmp(s, "--port"), queue = !strcmp(s, "--queue"), px = !strcmp(s, "--max-pixels"),
          ml = !strcmp(s, "--max-labels"), bw = !strcmp(s, "--batch-wait");
      double hi = port ? 65535 : queue ? 100000 : px ? 1e12 : ml ? 100000 : bw ? 10000 : 86400;
      if (number(s, v, port || bw ? 0 : 1, hi, &d, usage)) return AF_EXIT_USAGE;
      if (port) a->port = (int)d;
      if (queue) a->queue = (int)d;
      if (px) a->max_pixels = (int64_t)d;
      if (ml) a->max_labels = (int)d;
      if (bw) a->batch_wait_ms = d;
      if (!strcmp(s, "--grace")) a->grace = d;
      i++;
    } else if ((k = af_cli_flags_parse(f, argc, argv, &i, "serve", usage)) < 0) {
      return -k;
    } else if (k == 0) {
      return af_cli_usage_error("serve", usage, "unknown option '%s'", s);
    }
  }
  if (!a->model) return af_cli_usage_error("serve", usage, "--model is required");
  return 0;
}

/* ---- signals ---- */

static void *signal_thread(void *arg) {
  sigset_t *set = arg;
  for (int n = 0;; n++) {
    int sig = 0;
    if (sigwait(set, &sig)) continue;
    if (n > 0) {
      fprintf(stderr, "artflow serve: second signal: exiting now\n");
      _exit(128 + sig);
    }
    fprintf(stderr, "artflow serve: %s: stopping (no new requests; those in the pipeline get the grace)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    srv_stop();
  }
  return NULL;
}

/* ---- the server ---- */

/* the model's name in responses: its file name without .gguf */
static void model_name(const char *path, char *out, size_t n) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  snprintf(out, n, "%s", basename(tmp));
  size_t l = strlen(out);
  if (l > 5 && !strcmp(out + l - 5, ".gguf")) out[l - 5] = 0;
}

static int serve(const serve_args *a, const af_cli_flags *f) {
  char name[256], vis[3][256], px[64];
  model_name(a->model, name, sizeof name);
  srv_opts o = {.model_name = name,
                .files = a->files,
                .capacity = a->queue,
                .max_body = (size_t)a->max_body,
                .max_labels = a->max_labels};
  const char **sets = calloc((size_t)(a->n_sets + f->n_sets + 8), sizeof *sets);
  int rc = !sets ? af_err(AF_ERR_NOMEM, "out of memory") : af_cli_vision_sets(a->model, vis);
  if (!rc) rc = srv_register_stages();
  if (rc) {
    free(sets);
    fprintf(stderr, "artflow serve: %s\n", af_error_message());
    return AF_EXIT_USAGE;
  }
  int n = 0;
  for (int i = 0; i < 3; i++) sets[n++] = vis[i];
  snprintf(px, sizeof px, "decode.max_pixels=%lld", (long long)a->max_pixels);
  sets[n++] = px;
  for (int i = 0; i < f->n_sets; i++) sets[n++] = f->sets[i];
  for (int i = 0; i < a->n_sets; i++) sets[n++] = a->sets[i];
  af_run_options opt = {.sets = sets,
                        .n_sets = n,
                        .quiet = 1,
                        .progress = AF_PROGRESS_NONE,
                        .device = a->device,
                        .model = a->model,
                        .llm_model = a->llm,
                        .no_journal = 1,
                        .grace = a->grace,
                        .batch_linger = a->batch_wait_ms > 0 ? a->batch_wait_ms / 1000 : 1e-6,
                        .stream = srv_on_stream,
                        .cancelled = srv_cancelled};
  af_pipeline *p = NULL;
  srv_http *h = NULL;
  int bound = 0, exitc = AF_EXIT_OK;
  if ((rc = af_pipeline_load_string(srv_pipeline_yaml(), "serve", &opt, &p)) || (rc = srv_init(&o))) {
    fprintf(stderr, "artflow serve: %s\n", af_error_message());
    af_pipeline_free(p);
    free(sets);
    return AF_EXIT_USAGE;
  }
  af_srv.p = p;
  /* every thread made from here on inherits the blocked signals: only the
   * signal thread takes them */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  pthread_t st;
  if ((rc = srv_http_start(a->host, a->port, &h, &bound))) {
    fprintf(stderr, "artflow serve: %s\n", af_error_message());
    exitc = AF_EXIT_USAGE;
  } else if (pthread_create(&st, NULL, signal_thread, &set) || pthread_detach(st)) {
    fprintf(stderr, "artflow serve: cannot start the signal thread\n");
    exitc = AF_EXIT_FAIL;
  } else {
    fprintf(stderr, "artflow serve: listening on http://%s%s%s:%d (model %s); loading the model\n",
            strchr(a->host, ':') ? "[" : "", a->host, strchr(a->host, ':') ? "]" : "", bound, name);
    rc = af_pipeline_run(p); /* until stopped */
    if (rc && rc != AF_ERR_INTERRUPTED) {
      fprintf(stderr, "artflow serve: %s\n", af_error_message());
      exitc = rc == AF_ERR_CONFIG && !af_pipeline_summary(p)->started ? AF_EXIT_USAGE : AF_EXIT_FAIL;
    }
    srv_stop(); /* when the pipeline ended on its own (a failed setup) */
    srv_finish();
    if (af_pipeline_summary(p)->stuck) { /* a stage still in a call: cannot be freed (see af_pipeline_run) */
      srv_http_stop(h, 1.0);
      fprintf(stderr, "artflow serve: a stage was still busy after the grace: exiting\n");
      _exit(AF_EXIT_FAIL);
    }
  }
  srv_http_stop(h, 2.0);
  if (h) /* it served (not: the port was busy) */
    fprintf(stderr,
            "artflow serve: stopped: %ld answered, %ld failed, %ld refused (queue full or stopping)\n",
            af_srv.answered, af_srv.failed, af_srv.refused);
  af_error_clear();
  af_pipeline_free(p);
  srv_free();
  free(sets);
  return exitc;
}

int af_cmd_serve(int argc, char **argv) {
  af_cli_flags f;
  int rc = af_cli_flags_init(&f, "llm", skip);
  char *usage = rc ? NULL : make_usage(&f);
  serve_args a = {.host = "127.0.0.1",
                  .port = 8080,
                  .queue = 32,
                  .max_labels = 1000,
                  .max_body = (int64_t)32 << 20,
                  .max_pixels = 50000000,
                  .batch_wait_ms = 10,
                  .grace = 20,
                  .sets = calloc((size_t)argc, sizeof(char *))};
  int exitc =
      !usage || !a.sets ? af_cli_fail(rc ? rc : AF_ERR_NOMEM, "serve") : parse(argc, argv, &f, &a, usage);
  if (exitc == 100)
    exitc = AF_EXIT_OK;
  else if (exitc == 0)
    exitc = serve(&a, &f);
  free(a.sets);
  free(usage);
  af_cli_flags_free(&f);
  return exitc;
}
