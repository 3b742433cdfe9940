/* artflow serve's requests and its one pipeline (cli/serve.h).
 *
 * A request is admitted into a bounded queue (srv_admit; full: 503).  The
 * pipeline's source stage, serve_requests, blocks until a request is queued
 * and hands it on as an item: id "req-<seq>", the image file as its path,
 * and the llm stage's per_item mapping as metadata "chat" or "tag" (the
 * llm stage's tasks `text` and `labels` read them, stages/llm_tasks.h).
 * From there it is an item like any other: decode, preprocess, vit, qformer
 * and llm take it in whatever batch it shares with the requests around it.
 * The sink stage, serve_reply, completes the request with the item's
 * outputs or its error (mapped to an HTTP status) and wakes its connection.
 * While the llm stage generates, srv_on_stream collects the answer's bytes
 * for a streaming client, and srv_cancelled tells the engine which items a
 * client gave up on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artflow/status.h"
#include "cli/serve.h"
#include "pipeline/pipeline.h"

srv af_srv;

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int srv_init(const srv_opts *o) {
  memset(&af_srv, 0, sizeof af_srv);
  af_srv.o = *o;
  af_srv.next_seq = 1;
  pthread_mutex_init(&af_srv.mu, NULL);
  pthread_cond_init(&af_srv.cv, NULL);
  /* the images of data: URLs: a folder only this user can read, removed at the end */
  const char *t = getenv("TMPDIR");
  snprintf(af_srv.tmpdir, sizeof af_srv.tmpdir, "%s/artflow-serve-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(af_srv.tmpdir))
    return af_err(AF_ERR_IO, "%s: cannot make the folder for request images: %s", af_srv.tmpdir,
                  strerror(errno));
  return 0;
}

void srv_free(void) {
  if (af_srv.tmpdir[0]) rmdir(af_srv.tmpdir); /* each image went with its request */
  pthread_mutex_destroy(&af_srv.mu);
  pthread_cond_destroy(&af_srv.cv);
}

void srv_temp_path(uint64_t seq, char *out, size_t n) {
  snprintf(out, n, "%s/req-%llu.img", af_srv.tmpdir, (unsigned long long)seq);
}

/* ---- requests ---- */

srv_req *srv_req_new(srv_kind kind) {
  srv_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->kind = kind;
  r->refs = 1;
  pthread_mutex_lock(&af_srv.mu);
  r->seq = af_srv.next_seq++;
  pthread_mutex_unlock(&af_srv.mu);
  return r;
}

static void req_free(srv_req *r) {
  if (r->temp && r->image) unlink(r->image);
  free(r->image), free(r->shown), free(r->task), free(r->vocab), free(r->error), free(r->text),
      free(r->labels);
  af_buf_free(&r->streamed);
  free(r);
}

void srv_release(srv_req *r) {
  if (!r) return;
  pthread_mutex_lock(&af_srv.mu);
  int last = --r->refs == 0;
  pthread_mutex_unlock(&af_srv.mu);
  if (last) req_free(r);
}

int srv_admit(srv_req *r) {
  int status = 0;
  pthread_mutex_lock(&af_srv.mu);
  if (af_srv.stopping || af_srv.admitted >= af_srv.o.capacity) {
    status = 503;
    af_srv.refused++;
  } else {
    r->refs++;
    r->queued = 1;
    r->t0 = mono_s();
    r->next = NULL;
    if (af_srv.tail)
      af_srv.tail->next = r;
    else
      af_srv.head = r;
    af_srv.tail = r;
    af_srv.admitted++;
    pthread_cond_broadcast(&af_srv.cv);
  }
  pthread_mutex_unlock(&af_srv.mu);
  return status;
}

void srv_cancel(srv_req *r) {
  pthread_mutex_lock(&af_srv.mu);
  r->gone = 1;
  pthread_mutex_unlock(&af_srv.mu);
}

/* completes r (under mu): its results are final, its engine reference goes
 * (r is freed when its connection let go already) */
static void complete(srv_req *r, int status, const char *error) {
  r->done = 1;
  r->status = status;
  if (error && !r->error) r->error = strdup(error);
  if (status == 200)
    af_srv.answered++;
  else
    af_srv.failed++;
  if (status == 499) af_srv.cancelled++; /* its client went away first */
  af_srv.admitted--;
  if (r->begun == 1) af_srv.generating--; /* abandoned while it grew */
  r->begun = 2;
  pthread_cond_broadcast(&af_srv.cv);
  if (--r->refs == 0) req_free(r); /* the engine's reference; the connection's went already */
}

/* the request an item is, among those in flight (under mu) */
static srv_req *flying(const af_item *it, srv_req ***link) {
  unsigned long long seq = 0;
  if (!it->id || sscanf(it->id, "req-%llu", &seq) != 1) return NULL;
  for (srv_req **p = &af_srv.flying; *p; p = &(*p)->next)
    if ((*p)->seq == seq) {
      if (link) *link = p;
      return *p;
    }
  return NULL;
}

void srv_stop(void) {
  pthread_mutex_lock(&af_srv.mu);
  af_srv.stopping = 1;
  while (af_srv.head) { /* not started: nothing to finish */
    srv_req *r = af_srv.head;
    af_srv.head = r->next;
    complete(r, 503, "the server is stopping");
  }
  af_srv.tail = NULL;
  pthread_cond_broadcast(&af_srv.cv);
  pthread_mutex_unlock(&af_srv.mu);
  if (af_srv.p) af_pipeline_stop(af_srv.p);
}

void srv_finish(void) {
  pthread_mutex_lock(&af_srv.mu);
  af_srv.stopping = 1;
  /* items abandoned after the grace (or dropped before any stage took them) */
  while (af_srv.flying) {
    srv_req *r = af_srv.flying;
    af_srv.flying = r->next;
    complete(r, 503, "the server stopped before the answer was complete");
  }
  pthread_mutex_unlock(&af_srv.mu);
}

/* ---- the source: the request queue ---- */

static int src_create(const af_stage_ctx *ctx, const void *config, void **self) {
  *self = NULL;
  return 0;
}

static af_flow src_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  pthread_mutex_lock(&af_srv.mu);
  if (!af_srv.ready) { /* asked for a first item: the model is loaded, the stages are prepared */
    af_srv.ready = 1;
    fprintf(stderr, "artflow serve: model loaded, ready\n");
  }
  while (!af_srv.head && !af_srv.stopping) pthread_cond_wait(&af_srv.cv, &af_srv.mu);
  srv_req *r = af_srv.stopping ? NULL : af_srv.head;
  if (r) {
    if (!(af_srv.head = r->next)) af_srv.tail = NULL;
    r->queued = 0;
    r->next = af_srv.flying;
    af_srv.flying = r;
  }
  pthread_mutex_unlock(&af_srv.mu);
  if (!r) return AF_FLOW_EOS;
  char id[32];
  snprintf(id, sizeof id, "req-%llu", (unsigned long long)r->seq);
  af_item *it = af_item_new(id, r->image);
  if (!it || af_item_set_meta(it, r->kind == SRV_CHAT ? "chat" : "tag", r->task)) {
    af_item_free(it);
    it = af_item_new(id, NULL); /* goes on as an error record: the sink completes the request */
    if (!it) return af_err(AF_ERR_NOMEM, "out of memory"), AF_FLOW_ERROR;
    af_item_fail(it, ctx->instance, "out of memory");
  }
  *out = it;
  return AF_FLOW_OK;
}

static void src_destroy(void *self) {}

static const af_stage_desc serve_source = {.abi_version = AF_STAGE_ABI_VERSION,
                                           .name = "serve_requests",
                                           .doc = "artflow serve's requests, as they come",
                                           .kind = AF_STAGE_SOURCE,
                                           .batch_size = 1,
                                           .create = src_create,
                                           .next = src_next,
                                           .destroy = src_destroy};

/* ---- the sink: each item completes its request ---- */

/* an item's error as the client sees it: its status, and the message with
 * the image named as the client named it (not the server's file names) */
static int error_status(const af_item *it, char *msg, size_t n, const srv_req *r) {
  const char *e = it->error ? it->error : "failed", *stage = it->error_stage ? it->error_stage : "";
  af_buf b = {0};
  size_t li = r->image ? strlen(r->image) : 0;
  for (const char *s = e; *s;) {
    const char *at = li ? strstr(s, r->image) : NULL;
    if (!at) {
      af_buf_puts(&b, s);
      break;
    }
    af_buf_put(&b, s, (size_t)(at - s));
    af_buf_puts(&b, r->shown ? r->shown : "image");
    s = at + li;
  }
  af_buf_put(&b, "", 1);
  snprintf(msg, n, "%s", b.p && !b.oom ? b.p : e);
  af_buf_free(&b);
  if (strstr(e, "(max_pixels)")) return 413; /* the image is larger than the server takes */
  if (!strcmp(stage, "decode")) return 400;  /* not an image it can read */
  if (strstr(e, "cancelled")) return 499;    /* nobody is waiting for it */
  if (strstr(e, "task key") || strstr(e, "metadata '") || strstr(e, "max_new_tokens")) return 400;
  return 500;
}

static af_flow out_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  pthread_mutex_lock(&af_srv.mu);
  for (int i = 0; i < n; i++) {
    af_item *it = items[i];
    srv_req **link = NULL, *r = flying(it, &link);
    if (!r) continue;
    *link = r->next;
    const char *out = af_item_text(it, r->kind == SRV_CHAT ? "text" : "labels");
    char msg[1024];
    if (it->status != AF_ITEM_OK) {
      int status = error_status(it, msg, sizeof msg, r);
      complete(r, status, msg);
    } else if (!out || !(*(r->kind == SRV_CHAT ? &r->text : &r->labels) = strdup(out))) {
      complete(r, 500, out ? "out of memory" : "the pipeline gave no answer");
    } else {
      complete(r, 200, NULL);
    }
  }
  pthread_mutex_unlock(&af_srv.mu);
  return AF_FLOW_OK;
}

static int out_create(const af_stage_ctx *ctx, const void *config, void **self) {
  *self = NULL;
  return 0;
}

static void out_destroy(void *self) {}

static const af_stage_desc serve_sink = {.abi_version = AF_STAGE_ABI_VERSION,
                                         .name = "serve_reply",
                                         .doc = "completes artflow serve's requests",
                                         .kind = AF_STAGE_SINK,
                                         .batch_size = 1,
                                         .create = out_create,
                                         .process = out_process,
                                         .destroy = out_destroy};

/* ---- following answers as they grow ---- */

void srv_on_stream(void *arg, const af_item *item, const char *name, const char *bytes, size_t n) {
  if (strcmp(name, "text")) return;
  pthread_mutex_lock(&af_srv.mu);
  srv_req *r = flying(item, NULL);
  if (r && bytes && !n && !r->begun) { /* the answer begins */
    r->begun = 1;
    if (++af_srv.generating > af_srv.most_generating) af_srv.most_generating = af_srv.generating;
  } else if (r && !bytes && r->begun == 1) { /* complete (or failed) */
    r->begun = 2;
    af_srv.generating--;
  } else if (r && bytes && r->stream && !r->gone) {
    af_buf_put(&r->streamed, bytes, n);
  }
  pthread_cond_broadcast(&af_srv.cv);
  pthread_mutex_unlock(&af_srv.mu);
}

int srv_cancelled(void *arg, const af_item *item) {
  pthread_mutex_lock(&af_srv.mu);
  srv_req *r = flying(item, NULL);
  int gone = r && r->gone;
  pthread_mutex_unlock(&af_srv.mu);
  return gone;
}

/* ---- the pipeline ---- */

const char *srv_pipeline_yaml(void) {
  /* the llm stage's two tasks take their keys from each request (per_item):
   * a chat request's item holds "chat", a tag request's "tag" */
  return "source: {stage: serve_requests}\n"
         "stages:\n"
         "  - {stage: decode}\n"
         "  - {stage: preprocess}\n"
         "  - {stage: vit}\n"
         "  - {stage: qformer}\n"
         "  - stage: llm\n"
         "    interleave: true\n"
         "    tasks:\n"
         "      - {name: text, mode: describe, per_item: chat}\n"
         "      - {name: labels, per_item: tag}\n"
         "sinks: [{stage: serve_reply}]\n";
}

int srv_register_stages(void) {
  static int done, rc;
  if (!done) {
    rc = af_registry_add(&serve_source);
    if (!rc) rc = af_registry_add(&serve_sink);
    done = 1;
  }
  return rc;
}
