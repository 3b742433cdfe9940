/* What the collection sinks (annotations, xmp) share: reading ranked label
 * outputs, choosing an item's target, and the software agent that made the
 * outputs.
 *
 * Labels: a tagging or classifying stage (the llm stage's choose/yesno
 * tasks, stages/llm_tasks.h) leaves a text output named after its task
 * holding a JSON array, best first:
 *   [{"label": "still life", "id": "300015638", "uri": "http://vocab.getty.edu/aat/300015638",
 *     "logprob": -0.7, "logprob_per_token": -0.35, "p": 0.5}, ...]
 * Only "label" is required; id and uri may be absent or null. */
#ifndef AF_STAGES_OUTPUTS_H
#define AF_STAGES_OUTPUTS_H

#include "artflow/stage.h"

typedef struct af_label {
  char *label, *id, *uri;               /* id and uri NULL when absent */
  double logprob, logprob_per_token, p; /* NAN when absent */
} af_label;

/* Parses a label output.  Returns the number of labels (>= 0) with *out a
 * malloc'd array (free with af_labels_free), or -1 when the text is not a
 * JSON array of objects with a "label" string (*why says which). */
int af_labels_parse(const char *text, af_label **out, const char **why);
void af_labels_free(af_label *l, int n);

/* The resource an item's outputs are about, malloc'd:
 *   meta "iiif_canvas" (the IIIF source sets it), else base + id when base is
 *   given, else the file URI of the item's path (percent-encoded), else the id. */
char *af_item_target(const af_item *it, const char *base);

/* The agent fields the provenance block names: artflow version, model file
 * name, its general.name, weight type and SHA-256 (NULL when unknown). */
typedef struct af_agent {
  char *artflow, *model, *model_name, *weight_type, *model_sha256;
} af_agent;
/* Fills *a from ctx->provenance(); 0 or a status. */
int af_agent_from_ctx(const af_stage_ctx *ctx, int digest, af_agent *a);
void af_agent_free(af_agent *a);

/* A file name for an id or canvas: [A-Za-z0-9._-] kept, other bytes '_',
 * with '-' and 8 hex digits of the id's hash appended when anything changed
 * (so "a/b" and "a_b" never share a file). */
void af_safe_name(const char *id, char *out, size_t n);

#endif
