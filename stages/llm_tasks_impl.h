/* Inside the llm stage's tasks (llm_tasks.h), shared by its two files:
 * llm_tasks.c parses the task list and each item's own task (per_item:),
 * llm_tasks_run.c runs a batch (scoring on a shared prefix, describe tasks
 * through the generator, streaming, the ranked label outputs). */
#ifndef AF_STAGES_LLM_TASKS_IMPL_H
#define AF_STAGES_LLM_TASKS_IMPL_H

#include "formats/tagvocab.h"
#include "stages/llm_tasks.h"

enum { MODE_AUTO, MODE_DESCRIBE, MODE_CHOOSE, MODE_YESNO };

/* one task's keys, as the key table (af_llm_task_keys) fills them */
typedef struct task_cfg {
  char *name;
  int mode;
  char *question, *vocabulary, *labels_file;
  af_strlist labels;
  int64_t top_k;
  double min_p;
  char *per_item;
} task_cfg;

typedef struct task {
  task_cfg c;
  int mode;
  const char *question; /* template: c.question or the vocabulary's (NULL: the model's, describe) */
  int literal;          /* the question came from the item (per_item): no {meta.KEY} in it */
  af_tagvocab *v;
  int n_forms; /* choose: every label's texts (label, aliases), tokenised */
  int32_t **ids;
  int *len, *of; /* tokens, and the label each form is of */
  af_gen_opts gen;
  char *base; /* per_item: the task's own keys as JSON, what each item's mapping overrides */
} task;

struct llm_tasks {
  af_generator *g;
  af_gen_opts gen; /* the stage's generation options: every describe task's defaults */
  task *t;
  int n;
  int interleave; /* describe tasks stream each item's bytes as they come */
  int32_t *yn_ids[4];
  int yn_len[4];
};

/* Item `it`'s version of per_item task `t` (t->c.per_item set): the
 * task's keys with the mapping in the item's metadata over them, parsed and
 * checked as a task of the list is, into *out (zeroed first; task_free it).
 * Returns 1 when the item has no such metadata (the task skips it), 0 when
 * *out is ready, or a status with the message (the item's error). */
int task_for_item(llm_tasks *T, const task *t, const af_stage_ctx *ctx, const af_item *it, task *out);
void task_free(task *t);

/* tmpl with {label} and, unless literal, {meta.KEY} from the item's
 * metadata (it NULL: 32 words, the reserve's stand-in); a missing key is
 * AF_ERR_NOT_FOUND.  *out malloc'd. */
int task_render(const char *tmpl, const af_item *it, int literal, const char *label, const char *task,
                char **out);

#endif
