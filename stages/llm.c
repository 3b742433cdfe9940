/* `llm` stage: tensor "proj" (f32 [Q, H], the projected image embeddings
 * from qformer) -> text "text" (the answer) and tensor "ids" (i32, the
 * generated token ids), through the LLM with ImageAdapters
 * (net/describer.c, net/lm.c).  The items of a batch are generated
 * together (one KV-cache slot each, one batched decode step per token for all
 * unfinished answers); the results equal describing them one by one.  The
 * batch is the stage's (YAML `batch:`, default 4); each item of it takes one
 * KV-cache slot of prompt + max_new_tokens positions.
 * With the answer go what reproduces it: text outputs "question" (as given,
 * else the model's default), "prompt" (the model's template with the question
 * in it; <ImageHere> marks the image embeddings) and "language" (the answer's
 * language tag, `language:`); the jsonl sink makes them top-level fields. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/gguf.h"
#include "net/net.h"

typedef struct llm_config {
  char *question;
  int64_t max_new_tokens, max_length, top_k, seed;
  double temperature, top_p, repetition_penalty;
  int greedy;
  char *language;
} llm_config;

/* the stage: the describer, and what its progress lines need */
typedef struct llm_stage {
  af_describer *d;
  const void *cfg;
  const af_stage_ctx *ctx; /* of the batch being processed */
  double t0, last;         /* when the batch began, when progress was last logged */
  char *question, *prompt; /* the question asked and the prompt it makes */
} llm_stage;

/* The question (given, else the model file's default) and the prompt text
 * the model's template makes of it. */
static int question_and_prompt(llm_stage *s, const af_stage_ctx *ctx, const char *given) {
  af_gguf *g = NULL;
  const char *def = NULL, *tmpl = NULL;
  int rc = ctx->model_path ? af_gguf_open(ctx->model_path, &g) : 0;
  if (rc) return rc;
  if (g && af_gguf_get_str(g, "artflow.prompt.default_question", &def)) def = NULL;
  if (g && af_gguf_get_str(g, "artflow.prompt.template", &tmpl)) tmpl = NULL;
  af_error_clear();
  const char *q = given ? given : def ? def : "";
  af_buf b = {0};
  const char *at = tmpl ? strstr(tmpl, "{question}") : NULL;
  if (at) {
    af_buf_put(&b, tmpl, (size_t)(at - tmpl));
    af_buf_puts(&b, q);
    af_buf_puts(&b, at + 10);
  } else if (tmpl) {
    af_buf_puts(&b, tmpl);
  }
  s->question = strdup(q);
  s->prompt = b.p ? b.p : strdup("");
  af_gguf_close(g);
  return s->question && s->prompt && !b.oom ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

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

static int llm_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const llm_config *c = config;
  llm_stage *s = calloc(1, sizeof *s);
  *self = s;
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  s->cfg = c;
  af_describe_opts o;
  af_describe_opts_default(&o);
  o.question = c->question && *c->question ? c->question : NULL;
  o.max_new_tokens = (int)c->max_new_tokens;
  o.max_length = (int)c->max_length;
  o.sampling.greedy = c->greedy;
  o.sampling.temperature = (float)c->temperature;
  o.sampling.top_k = (int)c->top_k;
  o.sampling.top_p = (float)c->top_p;
  o.sampling.repetition_penalty = (float)c->repetition_penalty;
  o.sampling.seed = (uint64_t)c->seed;
  o.llm_model = ctx->llm_model_path; /* two-file model: the base LLM file */
  o.weights = ctx->weights;          /* opened once by the engine for every model stage */
  o.progress = llm_progress;
  o.progress_arg = s;
  int rc = af_describer_new((af_cl *)ctx->cl, ctx->model_path, &o, &s->d);
  if (!rc) rc = question_and_prompt(s, ctx, o.question);
  if (rc) { /* a failed create is not destroyed */
    af_describer_free(s->d);
    free(s->question), free(s->prompt);
    free(s);
    *self = NULL;
  }
  return rc;
}

static af_flow llm_process_batch(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  llm_stage *s = self;
  af_describer *d = s->d;
  s->ctx = ctx;
  s->t0 = mono_s();
  af_describe_item *di = calloc((size_t)n, sizeof *di);
  af_item **who = calloc((size_t)n, sizeof *who);
  if (!di || !who) {
    free(di), free(who);
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
    di[m] =
        (af_describe_item){.image = it->path ? it->path : it->id, .proj = t->data, .n_img = (int)t->shape[0]};
    who[m++] = it;
  }
  af_error_clear();
  if (m) af_describer_run_batch(d, di, m, NULL);
  for (int k = 0; k < m; k++) {
    af_item *it = who[k];
    int rc = di[k].rc;
    if (rc) {
      af_item_fail(it, ctx->instance, "%s: %s", di[k].image, di[k].error ? di[k].error : af_strerror(rc));
    } else {
      af_error_clear();
      rc = af_item_set_text(it, "text", di[k].answer);
      if (!rc) rc = af_item_set_text(it, "question", s->question);
      if (!rc) rc = af_item_set_text(it, "prompt", s->prompt);
      if (!rc) rc = af_item_set_text(it, "language", ((const llm_config *)s->cfg)->language);
      int64_t shape[1] = {di[k].n_ids};
      if (!rc && di[k].n_ids > 0) {
        rc = af_item_put_tensor(it, "ids", AF_DTYPE_I32, 1, shape, di[k].ids);
        di[k].ids = NULL;
      }
      if (rc) af_item_fail(it, ctx->instance, "%s: %s", di[k].image, af_error_message());
    }
    free(di[k].answer), free(di[k].ids), free(di[k].error);
  }
  af_error_clear();
  free(di), free(who);
  return AF_FLOW_OK;
}

static int llm_negotiate(void *self, const af_stage_ctx *ctx, af_bindings *dims) {
  return af_bind(dims, "H", af_describer_hidden(((llm_stage *)self)->d));
}

static void llm_destroy(void *self) {
  llm_stage *s = self;
  if (!s) return;
  af_describer_free(s->d);
  free(s->question), free(s->prompt);
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
     "sampling temperature (the original's default 1.0)", 0},
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
};
static const af_port llm_inputs[] = {
    {"proj", "f32[*,H]", "image embeddings in the LLM's width H (from qformer)", 0},
};
static const af_port llm_outputs[] = {
    {"text", "text", "the answer, cut at the first '###' and stripped as the original does", 0},
    {"ids", "i32[*]", "generated token ids", 0},
    {"question", "text", "the question asked (given, else the model's default)", 0},
    {"prompt", "text", "the model's prompt template with the question in it", 0},
    {"language", "text", "the answer's language (BCP 47), from `language:`", 0},
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
    .process = llm_process_batch,
    .destroy = llm_destroy,
};
