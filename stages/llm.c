/* `llm` stage: tensor "proj" (f32 [Q, H], the projected image embeddings
 * from qformer) -> text "text" (the answer) and tensor "ids" (i32, the
 * generated token ids), through the LLM with ImageAdapters
 * (net/generate.h, net/lm.c).  The items of a batch are generated
 * together (one KV-cache slot each, one batched decode step per token for all
 * unfinished answers); the results equal describing them one by one.  The
 * batch is the stage's (YAML `batch:`, default 4); each item of it takes one
 * KV-cache slot of prompt + max_new_tokens positions.
 * With the answer go what reproduces it: text outputs "question" (as given,
 * else the model's default), "prompt" (the model's template with the question
 * in it; <ImageHere> marks the image embeddings) and "language" (the answer's
 * language tag, `language:`); the jsonl sink makes them top-level fields.
 * With `tasks:` (stages/llm_tasks.h) the stage runs several tasks per image
 * instead, each writing the text output named after it (an answer, or ranked
 * labels scored on one shared prefix per image), and "language"; a task
 * may take its keys from each item (per_item:, what `artflow serve` asks).
 * A listener (ctx->stream) follows the answers as they grow, and may cancel
 * an item (ctx->cancelled): it ends at the next token. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "net/net.h"
#include "stages/llm_tasks.h"
#include "stages/stages.h"

typedef struct llm_config {
  char *question;
  int64_t max_new_tokens, max_length, top_k, seed;
  double temperature, top_p, repetition_penalty;
  int greedy;
  int details; /* also output logits0, prompt_ids, prompt_positions */
  char *language;
  char *tasks;    /* JSON list of tasks (llm_tasks.h), or NULL: one question */
  int interleave; /* a listener gets the batch's answers interleaved (a server) */
} llm_config;

/* the stage: the generator, and what its progress lines need */
typedef struct llm_stage {
  af_generator *d;
  int details, interleave;
  const char *language;
  char *prompt;            /* the model's template with the question in it */
  llm_tasks *tasks;        /* tasks: given, else NULL */
  const af_stage_ctx *ctx; /* of the batch being processed */
  double t0, last;         /* when the batch began, when progress was last logged */
} llm_stage;

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* a batch takes minutes with a 7B model: an info line once its prompts are
 * prefilled and then every 30 s of decoding */
static void llm_progress(void *arg, int step, int active, int done, int n) {
  llm_stage *s = arg;
  double now = mono_s();
  if (!s->ctx || !s->ctx->log) return;
  if (step == 0) {
    s->ctx->log(s->ctx, AF_LOG_INFO, "%d image%s: prompts prefilled in %.1f s, generating", n,
                n == 1 ? "" : "s", now - s->t0);
    s->last = now;
  } else if (now - s->last >= 30.0 && active > 0) {
    s->ctx->log(s->ctx, AF_LOG_INFO,
                "%d image%s: %d tokens each so far, %d answer%s done, %.0f s into the batch", n,
                n == 1 ? "" : "s", step, done, done == 1 ? "" : "s", now - s->t0);
    s->last = now;
  }
}

void af_llm_gen_opts(const void *config, af_gen_opts *o) {
  const llm_config *c = config;
  af_gen_opts_default(o);
  o->question = c->question && *c->question ? c->question : NULL;
  o->max_new_tokens = (int)c->max_new_tokens;
  o->max_length = (int)c->max_length;
  o->sampling.greedy = c->greedy;
  o->sampling.temperature = (float)c->temperature;
  o->sampling.top_k = (int)c->top_k;
  o->sampling.top_p = (float)c->top_p;
  o->sampling.repetition_penalty = (float)c->repetition_penalty;
  o->sampling.seed = (uint64_t)c->seed;
}

static int llm_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const llm_config *c = config;
  llm_stage *s = calloc(1, sizeof *s);
  *self = s;
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  af_gen_opts o;
  af_llm_gen_opts(c, &o);
  o.llm_model = ctx->llm_model_path; /* two-file model: the base LLM file */
  o.weights = ctx->weights;          /* opened once by the engine for every model stage */
  o.queue = ctx->queue;              /* the stage's own queue */
  s->details = c->details;
  s->interleave = c->interleave;
  s->language = c->language;
  o.progress = llm_progress;
  o.progress_arg = s;
  int rc = c->tasks && c->question ? af_err(AF_ERR_CONFIG,
                                            "%s: give each task its question (question: is "
                                            "for the stage without tasks)",
                                            ctx->instance)
                                   : 0;
  if (!rc) rc = af_generator_new((af_cl *)ctx->cl, ctx->model_path, &o, &s->d);
  if (!rc) rc = af_generator_prompt_text(s->d, &s->prompt);
  if (!rc && c->tasks) rc = llm_tasks_new(c->tasks, ctx, s->d, &o, c->interleave, &s->tasks);
  if (rc) { /* a failed create is not destroyed */
    llm_tasks_free(s->tasks);
    af_generator_free(s->d);
    free(s->prompt);
    free(s);
    *self = NULL;
  }
  return rc;
}

/* what a batch's generation reports back, item by item: a listener's stream
 * (ctx->stream: the answer's bytes in item order, an empty call when an
 * answer begins, a NULL one when it is complete) and the details' prompt ids */
typedef struct llm_batch {
  const af_stage_ctx *ctx;
  af_item **who;
  int32_t **pre, **post; /* details: each item's prompt ids around the image */
  size_t *npre, *npost;
  char *begun; /* the listener was told the answer begins */
} llm_batch;

/* marks: 0 the answer begins, 1 it is complete (ctx->stream: "", 0 / NULL, 0) */
static void batch_write(void *arg, int i, const char *p, size_t len) {
  llm_batch *b = arg;
  if (p)
    b->ctx->stream(b->ctx, b->who[i], "text", p, len);
  else
    b->ctx->stream(b->ctx, b->who[i], "text", len == 0 ? "" : NULL, 0);
}

static int batch_prefilled(void *arg, af_gen_run *run, int i) {
  llm_batch *b = arg;
  if (b->pre) {
    const int32_t *pre, *post;
    af_gen_prompt_ids(run, &pre, &b->npre[i], &post, &b->npost[i]);
    b->pre[i] = malloc(sizeof(int32_t) * (b->npre[i] + 1));
    b->post[i] = malloc(sizeof(int32_t) * (b->npost[i] + 1));
    if (!b->pre[i] || !b->post[i]) return af_err(AF_ERR_NOMEM, "out of memory");
    memcpy(b->pre[i], pre, sizeof(int32_t) * b->npre[i]);
    memcpy(b->post[i], post, sizeof(int32_t) * b->npost[i]);
  }
  b->begun[i] = 1;
  return b->ctx->stream ? af_gen_put(run, i, NULL, 0) : 0;
}

static int batch_done(void *arg, af_gen_run *run, int i) {
  llm_batch *b = arg;
  b->begun[i] = 0;
  return b->ctx->stream ? af_gen_put(run, i, NULL, 1) : 0;
}

static int batch_cancelled(void *arg, int i) {
  llm_batch *b = arg;
  return b->ctx->cancelled(b->ctx, b->who[i]);
}

/* an i32 tensor of n ids (copied) */
static int put_ids(af_item *it, const char *name, const int32_t *ids, size_t n) {
  void *d;
  int64_t shape[1] = {(int64_t)n};
  int rc = af_item_add_tensor(it, name, AF_DTYPE_I32, 1, shape, &d);
  if (!rc && n) memcpy(d, ids, sizeof(int32_t) * n);
  return rc;
}

/* item k's results onto its record: the answer, its ids, and the details */
static int put_results(llm_stage *s, llm_batch *b, int k, af_gen_item *g) {
  af_item *it = b->who[k];
  int64_t one[1] = {1}, vshape[1] = {g->n_logits0};
  int rc = af_item_set_text(it, "text", g->answer);
  if (!rc) rc = af_item_set_text(it, "question", af_generator_question(s->d));
  if (!rc) rc = af_item_set_text(it, "prompt", s->prompt);
  if (!rc) rc = af_item_set_text(it, "language", s->language);
  if (!rc && g->n_ids > 0) rc = put_ids(it, "ids", g->ids, (size_t)g->n_ids);
  if (!rc && s->details) {
    void *d;
    if (g->logits0 && !(rc = af_item_add_tensor(it, "logits0", AF_DTYPE_F32, 1, vshape, &d)))
      memcpy(d, g->logits0, sizeof(float) * (size_t)g->n_logits0);
    if (!rc && b->pre[k]) rc = put_ids(it, "prompt_ids_pre", b->pre[k], b->npre[k]);
    if (!rc && b->post[k]) rc = put_ids(it, "prompt_ids_post", b->post[k], b->npost[k]);
    if (!rc && !(rc = af_item_add_tensor(it, "prompt_positions", AF_DTYPE_I32, 1, one, &d)))
      *(int32_t *)d = g->positions;
  }
  return rc;
}

static void batch_free(llm_batch *b, int n) {
  for (int i = 0; b->pre && i < n; i++) free(b->pre[i]), free(b->post[i]);
  free(b->pre), free(b->post), free(b->npre), free(b->npost), free(b->begun), free(b->who);
}

static af_flow llm_process_batch(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  llm_stage *s = self;
  s->ctx = ctx;
  s->t0 = mono_s();
  if (s->tasks) {
    af_flow f = llm_tasks_process(s->tasks, ctx, items, n);
    for (int i = 0; i < n; i++)
      if (items[i]->status == AF_ITEM_OK && af_item_set_text(items[i], "language", s->language))
        af_item_fail(items[i], ctx->instance, "out of memory");
    return f;
  }
  af_gen_item *di = calloc((size_t)n, sizeof *di);
  llm_batch b = {.ctx = ctx, .who = calloc((size_t)n, sizeof(af_item *)), .begun = calloc((size_t)n, 1)};
  if (s->details) {
    b.pre = calloc((size_t)n, sizeof *b.pre), b.post = calloc((size_t)n, sizeof *b.post);
    b.npre = calloc((size_t)n, sizeof *b.npre), b.npost = calloc((size_t)n, sizeof *b.npost);
  }
  if (!di || !b.who || !b.begun || (s->details && (!b.pre || !b.post || !b.npre || !b.npost))) {
    free(di), batch_free(&b, 0);
    af_err(AF_ERR_NOMEM, "out of memory");
    return AF_FLOW_ERROR;
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    af_item *it = items[i];
    const af_tensor *t = af_item_tensor(it, "proj");
    if (!t || t->dtype != AF_DTYPE_F32 || t->ndim != 2) {
      af_item_fail(it, ctx->instance, "%s: no f32[Q,H] 'proj' tensor (is qformer before llm?)",
                   it->path ? it->path : it->id);
      continue;
    }
    di[m] = (af_gen_item){.image = it->path ? it->path : it->id,
                          .proj = t->data,
                          .n_img = (int)t->shape[0],
                          .want_logits0 = s->details};
    b.who[m++] = it;
  }
  af_gen_sink sink = {.arg = &b,
                      .write = ctx->stream ? batch_write : NULL,
                      .stream_answers = ctx->stream != NULL,
                      .prefilled = batch_prefilled,
                      .done = batch_done,
                      .interleave = s->interleave,
                      .cancelled = ctx->cancelled ? batch_cancelled : NULL};
  af_error_clear();
  if (m) af_generate_batch(s->d, di, m, &sink);
  for (int k = 0; k < m; k++) {
    af_item *it = b.who[k];
    int rc = di[k].rc;
    if (!rc) {
      af_error_clear();
      rc = put_results(s, &b, k, &di[k]);
      if (rc) di[k].error = strdup(af_error_message());
    }
    if (rc) { /* the generator's messages name the image already */
      const char *e = di[k].error ? di[k].error : af_strerror(rc);
      size_t li = strlen(di[k].image);
      af_item_fail(it, ctx->instance, "%s%s%s", strncmp(e, di[k].image, li) ? di[k].image : "",
                   strncmp(e, di[k].image, li) ? ": " : "", e);
      if (b.begun[k] && ctx->stream) ctx->stream(ctx, it, "text", NULL, 0); /* what began is over */
    }
    af_gen_item_clear(&di[k]);
  }
  af_error_clear();
  free(di);
  batch_free(&b, m);
  return AF_FLOW_OK;
}

/* buffers for a batch of images with the image rows qformer negotiated */
static int llm_prepare(void *self, const af_stage_ctx *ctx, const af_tensor_desc *inputs) {
  int n_img = inputs[0].ndim == 2 && inputs[0].shape[0] > 0 ? (int)inputs[0].shape[0] : 0;
  if (!n_img) return 0; /* unknown until the items come: sized by the first batch */
  llm_stage *s = self;
  return s->tasks ? llm_tasks_reserve(s->tasks, ctx->batch, n_img)
                  : af_generator_reserve(s->d, ctx->batch, n_img);
}

static int llm_negotiate(void *self, const af_stage_ctx *ctx, af_bindings *dims) {
  return af_bind(dims, "H", af_generator_hidden(((llm_stage *)self)->d));
}

static void llm_destroy(void *self) {
  llm_stage *s = self;
  if (!s) return;
  llm_tasks_free(s->tasks);
  af_generator_free(s->d);
  free(s->prompt);
  free(s);
}

static const af_param llm_params[] = {
    {"question", AF_PARAM_STRING, offsetof(llm_config, question), NULL, 0, 0, NULL,
     "question about each image (default: the model's, e.g. 'Describe this image in detail.')", 0},
    {"max_new_tokens", AF_PARAM_INT, offsetof(llm_config, max_new_tokens), "300", 1, 2048, NULL,
     "longest answer in tokens", 0},
    {"max_length", AF_PARAM_INT, offsetof(llm_config, max_length), "2000", 2, 1000000, NULL,
     "prompt + answer positions as the original's Chat.answer: a longer prompt keeps its last "
     "max_length - max_new_tokens positions (a warning; at most the model's context)",
     0},
    {"greedy", AF_PARAM_BOOL, offsetof(llm_config, greedy), "false", 0, 0, NULL,
     "pick the most likely token each step (deterministic) instead of sampling", 0},
    {"temperature", AF_PARAM_FLOAT, offsetof(llm_config, temperature), "1.0", 0.01, 100, NULL,
     "sampling temperature (as the original's generate())", 0},
    {"top_k", AF_PARAM_INT, offsetof(llm_config, top_k), "50", 0, 1000000, NULL,
     "keep the K most likely tokens (0 = off)", 0},
    {"top_p", AF_PARAM_FLOAT, offsetof(llm_config, top_p), "0.9", 0.001, 1, NULL, "nucleus sampling mass", 0},
    {"repetition_penalty", AF_PARAM_FLOAT, offsetof(llm_config, repetition_penalty), "1.0", 0.01, 100, NULL,
     "penalty on tokens already generated, as transformers applies it (also when greedy; 1.0 = off)", 0},
    {"seed", AF_PARAM_INT, offsetof(llm_config, seed), "0", 0, 9007199254740991.0, NULL,
     "random seed for sampling", 0},
    {"language", AF_PARAM_STRING, offsetof(llm_config, language), "en", 0, 0, NULL,
     "BCP 47 tag of the answers' language, recorded with them (Vicuna answers in the question's language)",
     0},
    {"details", AF_PARAM_BOOL, offsetof(llm_config, details), "false", 0, 0, NULL,
     "also output logits0 (the first generated position's logits), prompt_ids_pre/_post, prompt_positions",
     0},
    {"interleave", AF_PARAM_BOOL, offsetof(llm_config, interleave), "false", 0, 0, NULL,
     "a listener following the answers (artflow serve) gets each one's text as it is generated, the batch's "
     "answers interleaved, instead of one answer after another",
     AF_PARAM_RUNTIME},
    {"tasks", AF_PARAM_JSON, offsetof(llm_config, tasks), NULL, 0, 0, NULL,
     "several tasks per image, each writing the output named after it: a list of {name, mode: "
     "describe|choose|yesno, question, vocabulary | labels | labels_file, top_k, min_p, generation keys}; "
     "scoring tasks share one prefix per image (docs/pipeline-format.md)",
     AF_PARAM_OUTPUTS},
};
static const af_port llm_inputs[] = {
    {"proj", "f32[*,H]", "image embeddings in the LLM's width H (from qformer)", 0},
};
static const af_port llm_outputs[] = {
    {"text", "text", "the answer, cut at the first '###' and stripped as the original does (without tasks)",
     AF_PORT_DEFAULT},
    {"ids", "i32[*]", "generated token ids (without tasks)", AF_PORT_DEFAULT},
    {"question", "text", "the question asked (given, else the model's default; without tasks)",
     AF_PORT_DEFAULT},
    {"prompt", "text", "the model's prompt template with the question in it (without tasks)",
     AF_PORT_DEFAULT},
    {"language", "text", "the answer's language (BCP 47), from `language:`", 0},
    {"logits0", "f32[*]", "with details: logits of the first generated position",
     AF_PORT_OPTIONAL | AF_PORT_DEFAULT},
    {"prompt_ids_pre", "i32[*]", "with details: the prompt's token ids before the image",
     AF_PORT_OPTIONAL | AF_PORT_DEFAULT},
    {"prompt_ids_post", "i32[*]", "with details: the prompt's token ids after the image",
     AF_PORT_OPTIONAL | AF_PORT_DEFAULT},
    {"prompt_positions", "i32[1]", "with details: positions the prompt took (after max_length)",
     AF_PORT_OPTIONAL | AF_PORT_DEFAULT},
};

const af_stage_desc af_stage_llm = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "llm",
    .doc = "Vicuna LLM with ArtGPT-4's ImageAdapters: prompt + image embeddings -> answer text",
    .kind = AF_STAGE_TRANSFORM,
    .flags = AF_STAGE_NEEDS_DEVICE | AF_STAGE_NEEDS_MODEL,
    .params = llm_params,
    .n_params = AF_ARRAY_LEN(llm_params),
    .config_size = sizeof(llm_config),
    .inputs = llm_inputs,
    .n_inputs = AF_ARRAY_LEN(llm_inputs),
    .outputs = llm_outputs,
    .n_outputs = AF_ARRAY_LEN(llm_outputs),
    .batch_size = 4,
    .create = llm_create,
    .negotiate = llm_negotiate,
    .prepare = llm_prepare,
    .process = llm_process_batch,
    .destroy = llm_destroy,
};
