/* The llm stage's `tasks:` (docs/pipeline-format.md): several tasks per
 * image in one stage, each writing the text output named after it.
 *   describe  an answer generated as `artflow describe` does (the text);
 *   choose    the labels of a vocabulary scored as answers to one question,
 *             ranked: a JSON array of {label, id, uri, logprob,
 *             logprob_per_token, p} (stages/outputs.h);
 *   yesno     one question per label ("{label}" in it), p = P(yes) / (P(yes)
 *             + P(no)) from the answer's first token, ranked likewise.
 * Questions are templates over the item's metadata ({meta.title}); a
 * missing key is that item's error.  All scoring tasks of a batch share one
 * prefix per image (net/score.h). */
#ifndef AF_STAGES_LLM_TASKS_H
#define AF_STAGES_LLM_TASKS_H

#include "artflow/stage.h"
#include "net/net.h"

typedef struct llm_tasks llm_tasks;

/* The keys of one task, as a parameter table (name, mode, question,
 * vocabulary, labels, labels_file, top_k, min_p; a describe task also takes
 * the llm stage's generation keys): for `artflow tag`'s flags and help. */
extern const af_stage_desc af_llm_task_keys;

/* Parses `json` (a JSON list of task mappings), loads vocabularies (names,
 * or paths relative to the pipeline file's folder) and tokenises labels.
 * gen: the stage's own generation options (a describe task's defaults).
 * Errors name the task and the key. */
int llm_tasks_new(const char *json, const af_stage_ctx *ctx, af_generator *g, const af_gen_opts *gen,
                  llm_tasks **out);
/* prepare(): buffers for `batch` images of n_img rows (questions with
 * metadata reserved at 32 tokens per placeholder; longer ones grow them). */
int llm_tasks_reserve(llm_tasks *t, int batch, int n_img);
/* Runs every task on the items with a "proj" tensor; failures are items'. */
af_flow llm_tasks_process(llm_tasks *t, const af_stage_ctx *ctx, af_item **items, int n);
void llm_tasks_free(llm_tasks *t);

#endif
