/* `llm` stage: tensor "proj" (f32 [Q, H], the projected image embeddings
 * from qformer) -> text "text" (the answer) and tensor "ids" (i32, the
 * generated token ids), through the LLM with ImageAdapters
 * (stages/describer.c, stages/lm.c).  Items are generated one after another;
 * batched decoding of several sequences is not in this version. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "stages/describer.h"

typedef struct llm_config {
  char *question;
  int64_t max_new_tokens, top_k, seed;
  double temperature, top_p, repetition_penalty;
  int greedy;
} llm_config;

static int llm_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const llm_config *c = config;
  af_describe_opts o;
  af_describe_opts_default(&o);
  o.question = c->question && *c->question ? c->question : NULL;
  o.max_new_tokens = (int)c->max_new_tokens;
  o.sampling.greedy = c->greedy;
  o.sampling.temperature = (float)c->temperature;
  o.sampling.top_k = (int)c->top_k;
  o.sampling.top_p = (float)c->top_p;
  o.sampling.repetition_penalty = (float)c->repetition_penalty;
  o.sampling.seed = (uint64_t)c->seed;
  af_describer *d = NULL;
  int rc = af_describer_new((af_cl *)ctx->cl, ctx->model_path, &o, &d);
  *self = d;
  return rc;
}

static af_flow llm_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  af_describer *d = self;
  for (int i = 0; i < n; i++) {
    af_item *it = items[i];
    const af_tensor *t = af_item_tensor(it, "proj");
    if (!t || t->dtype != AF_DTYPE_F32 || t->ndim != 2) {
      af_item_fail(it, ctx->instance, "%s: no f32[Q,H] 'proj' tensor (is qformer before llm?)", it->path ? it->path : it->id);
      continue;
    }
    char *answer = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;
    af_error_clear();
    int rc = af_describer_run(d, it->path ? it->path : it->id, t->data, (int)t->shape[0], NULL, NULL, &answer, &ids,
                              &n_ids);
    if (!rc) rc = af_item_set_text(it, "text", answer);
    int64_t shape[1] = {n_ids};
    if (!rc && n_ids > 0) {
      rc = af_item_put_tensor(it, "ids", AF_DTYPE_I32, 1, shape, ids);
      ids = NULL;
    }
    if (rc) af_item_fail(it, ctx->instance, "%s: %s", it->path ? it->path : it->id, af_error_message());
    af_error_clear();
    free(answer);
    free(ids);
  }
  return AF_FLOW_OK;
}

static void llm_destroy(void *self) { af_describer_free(self); }

static const af_param llm_params[] = {
    {"question", AF_PARAM_STRING, offsetof(llm_config, question), NULL, 0, 0, NULL,
     "question about each image (default: the model's, e.g. 'Describe this image in detail.')", 0},
    {"max_new_tokens", AF_PARAM_INT, offsetof(llm_config, max_new_tokens), "300", 1, 2048, NULL,
     "longest answer in tokens", 0},
    {"greedy", AF_PARAM_BOOL, offsetof(llm_config, greedy), "false", 0, 0, NULL,
     "pick the most likely token each step (deterministic) instead of sampling", 0},
    {"temperature", AF_PARAM_FLOAT, offsetof(llm_config, temperature), "1.0", 0.01, 100, NULL,
     "sampling temperature (the original's default 1.0)", 0},
    {"top_k", AF_PARAM_INT, offsetof(llm_config, top_k), "50", 0, 1000000, NULL, "keep the K most likely tokens (0 = off)", 0},
    {"top_p", AF_PARAM_FLOAT, offsetof(llm_config, top_p), "0.9", 0.001, 1, NULL, "nucleus sampling mass", 0},
    {"repetition_penalty", AF_PARAM_FLOAT, offsetof(llm_config, repetition_penalty), "1.0", 0.01, 100, NULL,
     "penalty on tokens already generated (1.0 = off)", 0},
    {"seed", AF_PARAM_INT, offsetof(llm_config, seed), "0", 0, 9007199254740991.0, NULL, "random seed for sampling", 0},
};
static const af_port llm_inputs[] = {
    {"proj", "f32[*,*]", "image embeddings in the LLM's width (from qformer)", 0},
};
static const af_port llm_outputs[] = {
    {"text", "text", "the answer, cut at the first '###' and stripped as the original does", 0},
    {"ids", "i32[*]", "generated token ids", 0},
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
    .batch_size = 1,
    .create = llm_create,
    .process = llm_process,
    .destroy = llm_destroy,
};
