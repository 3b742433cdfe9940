/* Test stages (see pipeline_stages.h). */
#include "pipeline_stages.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "af_test.h"
#include "artflow/status.h"
#include "pipeline/pipeline.h"

tp_state tp;

void tp_reset(void) {
  memset(&tp, 0, sizeof tp);
}

/* ---- source: count items "item00000".. ---- */
typedef struct {
  int64_t count, start, gap_ms;
} seq_cfg;
typedef struct {
  const seq_cfg *c;
  int64_t i;
} seq_st;

static int seq_create(const af_stage_ctx *ctx, const void *cfg, void **self) {
  seq_st *s = calloc(1, sizeof *s);
  if (!s) return AF_ERR_NOMEM;
  s->c = cfg;
  *self = s;
  return 0;
}
static af_flow seq_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  seq_st *s = self;
  if (s->i >= s->c->count) return AF_FLOW_EOS;
  if (s->c->gap_ms > 0 && s->i > 0) { /* a source that blocks for its items (a server's requests) */
    struct timespec ts = {s->c->gap_ms / 1000, (s->c->gap_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  char id[32];
  snprintf(id, sizeof id, "item%05lld", (long long)(s->c->start + s->i++));
  *out = af_item_new(id, NULL);
  if (!*out) return AF_FLOW_ERROR;
  long long live = atomic_fetch_add(&tp.produced, 1) + 1 - atomic_load(&tp.collected);
  long long m = atomic_load(&tp.max_live);
  while (live > m && !atomic_compare_exchange_weak(&tp.max_live, &m, live)) {
  }
  return AF_FLOW_OK;
}
static int64_t seq_count(void *self, const af_stage_ctx *ctx) {
  return ((seq_st *)self)->c->count;
}
static void seq_destroy(void *self) {
  free(self);
}
static const af_param seq_params[] = {
    {"count", AF_PARAM_INT, offsetof(seq_cfg, count), "10", 0, 1e9, NULL, "items", 0},
    {"start", AF_PARAM_INT, offsetof(seq_cfg, start), "0", 0, 0, NULL, "first number", 0},
    {"gap_ms", AF_PARAM_INT, offsetof(seq_cfg, gap_ms), "0", 0, 60000, NULL,
     "wait before each item after the first", 0},
};
static const af_stage_desc tp_seq = {.abi_version = AF_STAGE_ABI_VERSION,
                                     .name = "tp_seq",
                                     .doc = "test source",
                                     .kind = AF_STAGE_SOURCE,
                                     .params = seq_params,
                                     .n_params = AF_ARRAY_LEN(seq_params),
                                     .config_size = sizeof(seq_cfg),
                                     .batch_size = 1,
                                     .create = seq_create,
                                     .next = seq_next,
                                     .count = seq_count,
                                     .destroy = seq_destroy};

/* ---- transform: random delay, fail every Nth, output a tensor ---- */
typedef struct {
  int64_t max_us, fail_every, size, call_ms;
  double scale;
  int mode;
  char *label;
} delay_cfg;
typedef struct {
  const delay_cfg *c;
  af_rng rng;
  const char *name;
} delay_st;

static int delay_create(const af_stage_ctx *ctx, const void *cfg, void **self) {
  delay_st *s = calloc(1, sizeof *s);
  if (!s) return AF_ERR_NOMEM;
  s->c = cfg;
  s->name = ctx->instance;
  af_rng_seed(&s->rng, 1234);
  *self = s;
  return 0;
}
static af_flow delay_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  delay_st *s = self;
  if (s->c->mode == 1) return af_err(AF_ERR_IO, "whole batch failed on purpose"), AF_FLOW_ERROR;
  if (s->c->call_ms > 0) { /* one long call (a model's batch): preemption tests */
    struct timespec ts = {(time_t)(s->c->call_ms / 1000), (long)(s->c->call_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts)) {
    }
  }
  for (int i = 0; i < n; i++) {
    if (items[i]->status != AF_ITEM_OK) atomic_fetch_add(&tp.saw_failed_in_transform, 1);
    if (s->c->max_us > 0) {
      long us = (long)(af_rng_u32(&s->rng) % (uint32_t)s->c->max_us);
      struct timespec ts = {0, us * 1000};
      nanosleep(&ts, NULL);
    }
    int num = atoi(items[i]->id + 4);
    if (s->c->fail_every > 0 && num % s->c->fail_every == 0) {
      af_item_fail(items[i], ctx->instance, "%s: injected failure", items[i]->id);
      continue;
    }
    int64_t shape[1] = {s->c->size};
    float *d = NULL;
    if (af_item_add_tensor(items[i], "vec", AF_DTYPE_F32, 1, shape, (void **)&d)) return AF_FLOW_ERROR;
    for (int k = 0; k < s->c->size; k++) d[k] = (float)(num * s->c->scale);
  }
  return AF_FLOW_OK;
}
static void delay_destroy(void *self) {
  free(self);
}
static const af_param delay_params[] = {
    {"max_us", AF_PARAM_INT, offsetof(delay_cfg, max_us), "0", 0, 1000000, NULL, "max delay", 0},
    {"fail_every", AF_PARAM_INT, offsetof(delay_cfg, fail_every), "0", 0, 1000, NULL,
     "fail ids divisible by N", 0},
    {"size", AF_PARAM_INT, offsetof(delay_cfg, size), "4", 1, 4096, NULL, "vector size", 0},
    {"scale", AF_PARAM_FLOAT, offsetof(delay_cfg, scale), "1.0", -10, 10, NULL, "value scale", 0},
    {"mode", AF_PARAM_ENUM, offsetof(delay_cfg, mode), "normal", 0, 0, "normal|fail_batch", "behaviour", 0},
    {"label", AF_PARAM_STRING, offsetof(delay_cfg, label), NULL, 0, 0, NULL, "free text", 0},
    {"call_ms", AF_PARAM_INT, offsetof(delay_cfg, call_ms), "0", 0, 600000, NULL, "sleep per call", 0},
};
static const af_port delay_out[] = {{"vec", "f32[size]", "vector", 0}};
/* a chain of delays rewrites one vector: each reads what it replaces */
static const af_port delay_in[] = {{"vec", "any", "the vector it replaces", AF_PORT_OPTIONAL}};
static const af_stage_desc tp_delay = {.abi_version = AF_STAGE_ABI_VERSION,
                                       .name = "tp_delay",
                                       .doc = "test transform",
                                       .kind = AF_STAGE_TRANSFORM,
                                       .params = delay_params,
                                       .n_params = AF_ARRAY_LEN(delay_params),
                                       .config_size = sizeof(delay_cfg),
                                       .inputs = delay_in,
                                       .n_inputs = 1,
                                       .outputs = delay_out,
                                       .n_outputs = 1,
                                       .batch_size = 3,
                                       .create = delay_create,
                                       .process = delay_process,
                                       .destroy = delay_destroy};

/* ---- transform that needs f32[8] input (graph check) ---- */
static const af_port need8_in[] = {{"vec", "f32[8]", "vector of 8", 0}};
static const af_port needu8_in[] = {{"vec", "u8[*]", "bytes", 0}};
static const af_stage_desc tp_need8 = {.abi_version = AF_STAGE_ABI_VERSION,
                                       .name = "tp_need8",
                                       .doc = "needs f32[8]",
                                       .kind = AF_STAGE_TRANSFORM,
                                       .config_size = 1,
                                       .inputs = need8_in,
                                       .n_inputs = 1,
                                       .batch_size = 1,
                                       .create = delay_create,
                                       .process = delay_process,
                                       .destroy = delay_destroy};
static const af_stage_desc tp_needu8 = {.abi_version = AF_STAGE_ABI_VERSION,
                                        .name = "tp_needu8",
                                        .doc = "needs u8[*]",
                                        .kind = AF_STAGE_TRANSFORM,
                                        .config_size = 1,
                                        .inputs = needu8_in,
                                        .n_inputs = 1,
                                        .batch_size = 1,
                                        .create = delay_create,
                                        .process = delay_process,
                                        .destroy = delay_destroy};

/* ---- sink: checks order, counts ---- */
typedef struct {
  int64_t last;
  int64_t slow_us;
} collect_st;
typedef struct {
  int64_t slow_us;
} collect_cfg;
static int collect_create(const af_stage_ctx *ctx, const void *cfg, void **self) {
  collect_st *s = calloc(1, sizeof *s);
  if (!s) return AF_ERR_NOMEM;
  s->last = -1;
  s->slow_us = ((const collect_cfg *)cfg)->slow_us;
  *self = s;
  return 0;
}
static af_flow collect_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  collect_st *s = self;
  for (int i = 0; i < n; i++) {
    int64_t num = atoll(items[i]->id + 4);
    if (num != s->last + 1 && !(s->last == -1)) atomic_fetch_add(&tp.out_of_order, 1);
    s->last = num;
    if (items[i]->status != AF_ITEM_OK) {
      if (atomic_fetch_add(&tp.errors_seen, 1) == 0) {
        snprintf(tp.first_error, sizeof tp.first_error, "%s", items[i]->error ? items[i]->error : "");
        snprintf(tp.first_error_stage, sizeof tp.first_error_stage, "%s",
                 items[i]->error_stage ? items[i]->error_stage : "");
      }
    }
    long long c = atomic_fetch_add(&tp.collected, 1) + 1;
    if (tp.raise_after > 0 && c == tp.raise_after && !tp.sig_raised) {
      tp.sig_raised = 1;
      if (tp.stop_twice) { /* the API's second request: abort at once */
        af_pipeline_stop(ctx->pipeline);
        af_pipeline_stop(ctx->pipeline);
      } else {
        raise(SIGINT);
        if (tp.raise_twice) raise(SIGINT);
      }
    }
  }
  if (s->slow_us > 0) {
    struct timespec ts = {0, (long)s->slow_us * 1000};
    nanosleep(&ts, NULL);
  }
  return AF_FLOW_OK;
}
static af_flow collect_flush(void *self, const af_stage_ctx *ctx) {
  atomic_fetch_add(&tp.flushed, 1);
  return AF_FLOW_OK;
}
static const af_param collect_params[] = {
    {"slow_us", AF_PARAM_INT, offsetof(collect_cfg, slow_us), "0", 0, 999999, NULL, "delay per batch", 0},
};
static const af_port collect_in[] = {{"vec", "any", "anything", AF_PORT_OPTIONAL}};
static const af_stage_desc tp_collect = {.abi_version = AF_STAGE_ABI_VERSION,
                                         .name = "tp_collect",
                                         .doc = "test sink",
                                         .kind = AF_STAGE_SINK,
                                         .params = collect_params,
                                         .n_params = 1,
                                         .config_size = sizeof(collect_cfg),
                                         .inputs = collect_in,
                                         .n_inputs = 1,
                                         .batch_size = 4,
                                         .create = collect_create,
                                         .process = collect_process,
                                         .flush = collect_flush,
                                         .destroy = delay_destroy};

/* ---- transforms with negotiated sizes: tp_make outputs "emb" f32[N] (N =
 * its `n`, fixed in negotiate); tp_take needs "emb" f32[M] (M = its `m`) and
 * records what prepare() was told ---- */
typedef struct {
  int64_t n;
} size_cfg;
static int size_create(const af_stage_ctx *ctx, const void *cfg, void **self) {
  *self = (void *)cfg;
  return 0;
}
static int make_negotiate(void *self, const af_stage_ctx *ctx, af_bindings *dims) {
  atomic_fetch_add(&tp.negotiated, 1);
  return af_bind(dims, "N", ((const size_cfg *)self)->n);
}
static int take_negotiate(void *self, const af_stage_ctx *ctx, af_bindings *dims) {
  atomic_fetch_add(&tp.negotiated, 1);
  return af_bind(dims, "M", ((const size_cfg *)self)->n);
}
static int take_prepare(void *self, const af_stage_ctx *ctx, const af_tensor_desc *in) {
  tp.prepared_batch = ctx->batch;
  tp.prepared_dim = in[0].ndim == 1 ? in[0].shape[0] : -1;
  return 0;
}
static af_flow make_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  int64_t shape[1] = {((const size_cfg *)self)->n};
  for (int i = 0; i < n; i++) {
    void *d;
    if (af_item_add_tensor(items[i], "emb", AF_DTYPE_F32, 1, shape, &d)) return AF_FLOW_ERROR;
  }
  return AF_FLOW_OK;
}
static af_flow take_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  return AF_FLOW_OK;
}
static void size_destroy(void *self) {}
static const af_param make_params[] = {{"n", AF_PARAM_INT, 0, "8", 1, 1e6, NULL, "size", 0}};
static const af_port make_out[] = {{"emb", "f32[N]", "a vector", 0}};
static const af_port take_in[] = {{"emb", "f32[M]", "a vector", 0}};
static const af_stage_desc tp_make = {.abi_version = AF_STAGE_ABI_VERSION,
                                      .name = "tp_make",
                                      .doc = "test transform with a negotiated output size",
                                      .kind = AF_STAGE_TRANSFORM,
                                      .params = make_params,
                                      .n_params = 1,
                                      .config_size = sizeof(size_cfg),
                                      .outputs = make_out,
                                      .n_outputs = 1,
                                      .batch_size = 3,
                                      .create = size_create,
                                      .negotiate = make_negotiate,
                                      .process = make_process,
                                      .destroy = size_destroy};
static const af_stage_desc tp_take = {.abi_version = AF_STAGE_ABI_VERSION,
                                      .name = "tp_take",
                                      .doc = "test transform with a negotiated input size",
                                      .kind = AF_STAGE_TRANSFORM,
                                      .params = make_params,
                                      .n_params = 1,
                                      .config_size = sizeof(size_cfg),
                                      .inputs = take_in,
                                      .n_inputs = 1,
                                      .batch_size = 5,
                                      .create = size_create,
                                      .negotiate = take_negotiate,
                                      .prepare = take_prepare,
                                      .process = take_process,
                                      .destroy = size_destroy};

/* ---- tp_tasks: writes "text", or one text per entry of `tasks:` (a JSON
 * parameter naming outputs, as the llm stage's) ---- */
typedef struct {
  char *tasks;
} tasks_cfg;
static const af_param tasks_params[] = {
    {"tasks", AF_PARAM_JSON, 0, NULL, 0, 0, NULL, "[{name: N}, ...]", AF_PARAM_OUTPUTS}};
static const af_port tasks_out[] = {{"text", "text", "without tasks", AF_PORT_DEFAULT}};
static const af_stage_desc tp_tasks = {.abi_version = AF_STAGE_ABI_VERSION,
                                       .name = "tp_tasks",
                                       .doc = "test transform whose outputs a parameter names",
                                       .kind = AF_STAGE_TRANSFORM,
                                       .params = tasks_params,
                                       .n_params = 1,
                                       .config_size = sizeof(tasks_cfg),
                                       .outputs = tasks_out,
                                       .n_outputs = 1,
                                       .create = size_create,
                                       .process = take_process,
                                       .destroy = size_destroy};

void tp_register(void) {
  CHECK_OK(af_registry_add(&tp_tasks));
  CHECK_OK(af_registry_add(&tp_make));
  CHECK_OK(af_registry_add(&tp_take));
  CHECK_OK(af_registry_add(&tp_seq));
  CHECK_OK(af_registry_add(&tp_delay));
  CHECK_OK(af_registry_add(&tp_need8));
  CHECK_OK(af_registry_add(&tp_needu8));
  CHECK_OK(af_registry_add(&tp_collect));
}
