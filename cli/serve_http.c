/* artflow serve's HTTP side (cli/serve.h), on GNU libmicrohttpd: one thread
 * per connection, so that a connection may simply wait for its request's
 * result (or, streaming, for its answer's next bytes) on af_srv.cv.
 *
 *   GET  /health                 200 {"status": "ok", ...} once the model is
 *                                loaded; 503 while loading or stopping
 *   GET  /v1/models              the one model (OpenAI's list)
 *   POST /v1/chat/completions    OpenAI's chat completion (serve_api.c)
 *   POST /v1/tag                 ranked labels
 *
 * A body longer than --max-body is refused with 413 (before it is read when
 * Content-Length says so).  A connection whose client closes its side while
 * it waits cancels its request: the pipeline drops it, an answer in
 * progress ends at its next token. */
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "artflow/status.h"
#include "cli/serve.h"

#define KEEPALIVE_S 10.0 /* an SSE comment line when nothing else was sent for this long */

struct srv_http {
  struct MHD_Daemon *d;
  pthread_mutex_t mu;
  int active; /* requests being handled */
};

/* one HTTP request on its connection */
typedef struct conn {
  srv_http *h;
  struct MHD_Connection *c;
  char method[8], path[64];
  af_buf body;
  int too_big, status;
  double t0;
  srv_req *r;
  /* streaming */
  af_buf out;
  size_t out_at, sent;
  int opened, closed;
  double last_out;
} conn;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the client closed its side of the connection */
static int client_gone(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  struct pollfd p = {.fd = ci ? ci->connect_fd : -1, .events = POLLRDHUP};
  return ci && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* waits on af_srv.cv (mu held) a quarter of a second at most */
static void nap(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 250 * 1000 * 1000;
  if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  pthread_cond_timedwait(&af_srv.cv, &af_srv.mu, &ts);
}

static enum MHD_Result send_text(conn *k, int status, char *text, const char *type) {
  if (!text) text = strdup("{\"error\": {\"message\": \"out of memory\", \"code\": 500}}"), status = 500;
  struct MHD_Response *res = MHD_create_response_from_buffer(text ? strlen(text) : 0,
                                                             text ? text : (char *)"", MHD_RESPMEM_MUST_FREE);
  if (!res) return free(text), MHD_NO;
  MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (status == 503) MHD_add_response_header(res, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  if (status == 405)
    MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW, !strcmp(k->path, "/health") ? "GET" : "POST");
  k->status = status;
  enum MHD_Result ok = MHD_queue_response(k->c, (unsigned)status, res);
  MHD_destroy_response(res);
  return ok;
}

static enum MHD_Result send_json(conn *k, int status, char *json) {
  return send_text(k, status, json, "application/json");
}

static enum MHD_Result send_error(conn *k, int status, const char *msg) {
  return send_json(k, status, srv_error_json(status, msg));
}

/* ---- streaming: server-sent events as the answer grows ---- */

/* MHD asks for the next bytes of the stream: what is ready, else wait */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
  conn *k = cls;
  for (;;) {
    if (k->out_at < k->out.n) {
      size_t n = k->out.n - k->out_at < max ? k->out.n - k->out_at : max;
      memcpy(buf, k->out.p + k->out_at, n);
      k->out_at += n;
      k->last_out = now_s();
      return (ssize_t)n;
    }
    if (k->closed) return MHD_CONTENT_READER_END_OF_STREAM;
    k->out.n = k->out_at = 0;
    srv_req *r = k->r;
    pthread_mutex_lock(&af_srv.mu);
    size_t to = r->streamed.n;
    if (!k->opened) {
      srv_sse_open(r, &k->out), k->opened = 1;
    } else if (to > k->sent) {
      srv_sse_delta(r, k->sent, &to, &k->out);
      k->sent = to;
    }
    if (!k->out.n && r->done) {
      srv_sse_close(r, &k->out), k->closed = 1;
    } else if (!k->out.n) {
      nap();
      if (client_gone(k->c)) r->gone = 1;
      if (!r->gone && now_s() - k->last_out >= KEEPALIVE_S) af_buf_puts(&k->out, ": keep-alive\n\n");
    }
    int gone = r->gone;
    pthread_mutex_unlock(&af_srv.mu);
    if (gone) return MHD_CONTENT_READER_END_WITH_ERROR;
  }
}

static enum MHD_Result send_stream(conn *k) {
  struct MHD_Response *res =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, k, NULL);
  if (!res) return MHD_NO;
  MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
  MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  k->status = 200;
  k->last_out = now_s();
  enum MHD_Result ok = MHD_queue_response(k->c, MHD_HTTP_OK, res);
  MHD_destroy_response(res);
  return ok;
}

/* ---- the API ---- */

/* admits the parsed request and waits for its result (streaming: for its
 * answer to begin, so that a bad image is still an error status) */
static enum MHD_Result run_request(conn *k, int st, srv_req *r, const char *why) {
  if (st) return send_error(k, st, why);
  k->r = r;
  if ((st = srv_admit(r))) return send_error(k, st, "the queue is full: try again (Retry-After)");
  pthread_mutex_lock(&af_srv.mu);
  while (!r->done && !(r->stream && r->begun) && !r->gone) {
    nap();
    if (client_gone(k->c)) r->gone = 1;
  }
  int gone = r->gone && !r->done, stream = r->stream && !r->done;
  pthread_mutex_unlock(&af_srv.mu);
  if (gone) return k->status = 499, MHD_NO; /* nobody to answer: close */
  if (stream) return send_stream(k);
  if (r->status == 200 && r->stream) return send_stream(k); /* done before we looked: stream it all */
  return send_json(k, r->status, srv_response(r));
}

static enum MHD_Result route(conn *k) {
  char why[1024] = "";
  srv_req *r = NULL;
  int get = !strcmp(k->method, "GET"), post = !strcmp(k->method, "POST");
  if (!strcmp(k->path, "/health")) {
    if (!get) return send_error(k, 405, "GET /health");
    char *h = srv_health_json();
    return send_json(k, h && strstr(h, "\"status\":\"ok\"") ? 200 : 503, h);
  }
  if (!strcmp(k->path, "/v1/models"))
    return get ? send_json(k, 200, srv_models_json()) : send_error(k, 405, "GET");
  int chat = !strcmp(k->path, "/v1/chat/completions"), tag = !strcmp(k->path, "/v1/tag");
  if (!chat && !tag) return send_error(k, 404, "no such endpoint (/v1/chat/completions, /v1/tag, /health)");
  if (!post) return send_error(k, 405, "use POST");
  if (k->too_big) {
    snprintf(why, sizeof why, "the request body is over the limit of %zu bytes (--max-body)",
             af_srv.o.max_body);
    return send_error(k, 413, why);
  }
  int st = chat ? srv_parse_chat(k->body.p ? k->body.p : "", k->body.n, &r, why, sizeof why)
                : srv_parse_tag(k->body.p ? k->body.p : "", k->body.n, &r, why, sizeof why);
  return run_request(k, st, r, why);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *data, size_t *size, void **req_cls) {
  srv_http *h = cls;
  conn *k = *req_cls;
  if (!k) { /* the headers: a new request */
    if (!(k = calloc(1, sizeof *k))) return MHD_NO;
    k->h = h, k->c = c, k->t0 = now_s();
    snprintf(k->method, sizeof k->method, "%s", method);
    snprintf(k->path, sizeof k->path, "%s", url);
    pthread_mutex_lock(&h->mu);
    h->active++;
    pthread_mutex_unlock(&h->mu);
    *req_cls = k;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > af_srv.o.max_body) { /* refused before its body is read */
      char why[200];
      snprintf(why, sizeof why, "the request body (%s bytes) is over the limit of %zu bytes (--max-body)", cl,
               af_srv.o.max_body);
      return send_error(k, 413, why);
    }
    return MHD_YES;
  }
  if (*size) { /* a piece of the body */
    if (!k->too_big && k->body.n + *size > af_srv.o.max_body) {
      k->too_big = 1;
      af_buf_free(&k->body);
    }
    if (!k->too_big) af_buf_put(&k->body, data, *size);
    *size = 0;
    return MHD_YES;
  }
  if (k->status) return MHD_YES; /* answered already (413 from the headers) */
  if (k->body.oom) return send_error(k, 500, "out of memory");
  return route(k);
}

/* the request is over (answered, or its connection broke) */
static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  srv_http *h = cls;
  conn *k = *req_cls;
  if (!k) return;
  int cut = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
  if (k->r && cut) srv_cancel(k->r); /* nobody reads the rest */
  if (strcmp(k->path, "/health"))    /* probes would drown the rest */
    fprintf(stderr, "artflow serve: %s %s %d%s %.3f s\n", k->method, k->path, k->status,
            cut ? " (client gone)" : "", now_s() - k->t0);
  srv_release(k->r);
  af_buf_free(&k->body), af_buf_free(&k->out);
  free(k);
  *req_cls = NULL;
  pthread_mutex_lock(&h->mu);
  h->active--;
  pthread_mutex_unlock(&h->mu);
}

static void http_log(void *cls, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && msg[n - 1] == '\n') msg[--n] = 0;
  fprintf(stderr, "artflow serve: http: %s\n", msg);
}

int srv_http_start(const char *host, int port, srv_http **out, int *bound) {
  *out = NULL;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  int g = getaddrinfo(host, ps, &hints, &ai);
  if (g) return af_err(AF_ERR_CONFIG, "--host %s: %s", host, gai_strerror(g));
  srv_http *h = calloc(1, sizeof *h);
  if (!h) return freeaddrinfo(ai), af_err(AF_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&h->mu, NULL);
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                   (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  /* connections: the admitted requests, as many again waiting to be refused, and health checks */
  unsigned limit = (unsigned)af_srv.o.capacity * 2 + 16;
  h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER,
                          http_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
                          on_completed, h, MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT,
                          120u, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->d) {
    pthread_mutex_destroy(&h->mu);
    free(h);
    return af_err(AF_ERR_IO, "cannot listen on %s:%d (is the port in use?)", host, port);
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  *bound = di ? di->port : port;
  *out = h;
  return 0;
}

void srv_http_stop(srv_http *h, double wait_s) {
  if (!h) return;
  double until = now_s() + wait_s;
  for (;;) { /* every request is completed by now: let the answers go out */
    pthread_mutex_lock(&h->mu);
    int active = h->active;
    pthread_mutex_unlock(&h->mu);
    if (!active || now_s() >= until) break;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  MHD_stop_daemon(h->d);
  pthread_mutex_destroy(&h->mu);
  free(h);
}
