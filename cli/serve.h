/* artflow serve (docs/serve.md): the model kept loaded behind an HTTP API,
 * every request an item of ONE long-lived pipeline -- the engine of
 * `artflow run`, decode -> preprocess -> vit -> qformer -> llm -- so that
 * requests that arrive together share its batches.
 *
 *   cli/cmd_serve.c     flags, startup, signals, the clean stop
 *   cli/serve_engine.c  requests and the pipeline: admission (a bounded
 *                       queue: 503 when full), the source stage (the queue),
 *                       the sink stage (completes requests), the listener
 *                       that follows answers as they grow, cancellation
 *   cli/serve_api.c     the JSON of the API: an OpenAI chat completion or a
 *                       tag request -> a request; results -> responses and
 *                       server-sent event chunks; images from data: URLs
 *   cli/serve_http.c    libmicrohttpd: routes, body limits (413), waiting
 *                       for results, streaming, disconnects
 *
 * Threads: libmicrohttpd runs one thread per connection; the pipeline runs
 * its stage threads; everything they share is in srv under srv.mu, and
 * srv.cv is broadcast on every change a waiter may want (a request done, a
 * streamed byte, a stop). */
#ifndef AF_CLI_SERVE_H
#define AF_CLI_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/iofile.h"

struct af_pipeline;
struct cJSON;

typedef enum srv_kind { SRV_CHAT, SRV_TAG } srv_kind;

/* One request, from the connection that made it to the sink that completes
 * it.  Owned jointly by its connection and the engine (refs); the last to
 * let go frees it (and removes its temporary image). */
typedef struct srv_req {
  uint64_t seq; /* its item's id is "req-<seq>" */
  srv_kind kind;
  int stream;  /* chat: stream: true (server-sent events) */
  char *image; /* the file the decode stage reads */
  int temp;    /* image is the server's temporary copy of a data: URL */
  char *shown; /* how messages name the image: as the client gave it (NULL: "image", a data: URL) */
  char *task;  /* the llm stage's per_item mapping (JSON): the question, options, labels */
  char *vocab; /* tag: the vocabulary's name as asked, or NULL */
  double t0;   /* when it was admitted (af_now-like seconds) */
  /* ---- under srv.mu ---- */
  int refs;
  int queued;           /* waiting for the source (not yet an item) */
  int done;             /* completed: the results below are final */
  int status;           /* HTTP status: 200, or the error's */
  char *error;          /* the reason when status != 200 */
  char *text;           /* chat: the answer */
  char *labels;         /* tag: the ranked labels (a JSON array) */
  af_buf streamed;      /* stream: the answer's bytes as they came */
  int begun;            /* the answer began (the llm stage prefilled its prompt) */
  int gone;             /* the client went away: the pipeline may drop it */
  struct srv_req *next; /* in srv's queue, then in its list of items in flight */
} srv_req;

typedef struct srv_opts {
  const char *model_name; /* the "model" of responses (the file's name without .gguf) */
  const char *files;      /* image paths in requests resolve under this folder (NULL: refused) */
  int capacity;           /* requests admitted at once (queued or in the pipeline); more: 503 */
  size_t max_body;        /* bytes of a request body; more: 413 */
  int max_labels;         /* labels of one tag request */
} srv_opts;

typedef struct srv {
  srv_opts o;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  srv_req *head, *tail; /* admitted, waiting for the source */
  srv_req *flying;      /* taken by the source, not yet completed */
  int admitted;         /* queued + flying */
  uint64_t next_seq;
  int ready;    /* the pipeline is set up (the source was first asked for an item) */
  int stopping; /* no new requests; the source ends */
  struct af_pipeline *p;
  char tmpdir[512]; /* private folder of the data: URLs' images */
  /* counters, for /health and the closing line */
  long answered, failed, refused, cancelled;
  int generating, most_generating; /* answers growing now, and the most at once */
} srv;

/* the one server of the process (the stages reach it through this) */
extern srv af_srv;

/* ---- serve_engine.c ---- */
/* Sets up af_srv (and its private temporary folder); 0 or a status. */
int srv_init(const srv_opts *o);
void srv_free(void);
/* The pipeline's YAML text and the stages it names (serve_requests,
 * serve_reply), registered once. */
const char *srv_pipeline_yaml(void);
int srv_register_stages(void);
/* For af_run_options: the listener of answers as they grow, and of
 * cancelled items (arg: unused). */
void srv_on_stream(void *arg, const struct af_item *item, const char *name, const char *bytes, size_t n);
int srv_cancelled(void *arg, const struct af_item *item);
/* A new request (refs 1: the caller's), or NULL when out of memory. */
srv_req *srv_req_new(srv_kind kind);
/* Queues r for the pipeline (the engine takes a reference).  0, or the
 * HTTP status that refuses it: 503 when the queue is full or the server
 * stops (af_srv.refused counts them). */
int srv_admit(srv_req *r);
/* The client went away: an answer in progress ends at its next token. */
void srv_cancel(srv_req *r);
/* Drops one reference (frees r with the last). */
void srv_release(srv_req *r);
/* The first stop: no new requests, those not yet in the pipeline fail with
 * 503, the source ends and the pipeline's grace begins. */
void srv_stop(void);
/* After the pipeline returned: every request still open fails with 503. */
void srv_finish(void);
/* The file name of request seq's temporary image (in af_srv.tmpdir). */
void srv_temp_path(uint64_t seq, char *out, size_t n);

/* ---- serve_api.c ---- */
/* A chat completion's or a tag request's JSON -> *out (a new request, not
 * admitted).  0, or an HTTP status (400, 413) with the reason in why. */
int srv_parse_chat(const char *body, size_t n, srv_req **out, char *why, size_t wn);
int srv_parse_tag(const char *body, size_t n, srv_req **out, char *why, size_t wn);
/* Responses (malloc'd JSON text): a completed request's body (200 or an
 * error), an error's body, the health and models documents. */
char *srv_response(const srv_req *r);
char *srv_error_json(int status, const char *message);
char *srv_health_json(void);
char *srv_models_json(void);
/* Streaming: the server-sent events for bytes [from, to) of r's answer
 * (to is moved back to the end of a whole UTF-8 character), the first
 * chunk (role) and the last ones (finish_reason or an error, then
 * "data: [DONE]"); each appends to out. */
void srv_sse_delta(const srv_req *r, size_t from, size_t *to, af_buf *out);
void srv_sse_open(const srv_req *r, af_buf *out);
void srv_sse_close(const srv_req *r, af_buf *out);

/* ---- serve_http.c ---- */
typedef struct srv_http srv_http;
/* Listens on host:port (port 0: any free one, *bound gets it).  0, or a
 * status with the message. */
int srv_http_start(const char *host, int port, srv_http **out, int *bound);
/* Waits (at most `wait_s`) for the connections to deliver their answers,
 * then closes every connection and stops listening. */
void srv_http_stop(srv_http *h, double wait_s);

#endif
