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
 * prefix per image (net/score.h).
 * A task with `per_item: KEY` takes its keys from each item: the item's
 * metadata KEY holds a JSON mapping (mode, question, vocabulary by name,
 * labels, top_k, min_p, generation keys) laid over the task's own keys; an
 * item without KEY skips the task.  `artflow serve` makes each request such
 * an item.  Describe tasks stream their answers to a listener (ctx->stream,
 * output = the task's name) and end an item a listener cancels. */
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
 * interleave: a listener gets the answers' bytes as they are made, items
 * interleaved, instead of one answer after another.  Errors name the task
 * and the key. */
int llm_tasks_new(const char *json, const af_stage_ctx *ctx, af_generator *g, const af_gen_opts *gen,
                  int interleave, llm_tasks **out);
/* prepare(): buffers for `batch` images of n_img rows (questions with
 * metadata reserved at 32 tokens per placeholder; longer ones grow them). */
int llm_tasks_reserve(llm_tasks *t, int batch, int n_img);
/* Runs every task on the items with a "proj" tensor; failures are items'. */
af_flow llm_tasks_process(llm_tasks *t, const af_stage_ctx *ctx, af_item **items, int n);
void llm_tasks_free(llm_tasks *t);

/* Checks a per_item mapping (JSON text) as an item's would be checked --
 * keys, types and ranges by the same rows, a vocabulary a shipped name that
 * exists, labels and mode that make a task -- without a model: a server
 * refuses a bad request before it queues it.  0, or a status with the
 * one-line reason in why. */
int llm_task_check_item(const char *json, char *why, size_t n);

#endif
