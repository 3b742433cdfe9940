/* artflow tag: images -> ranked labels from a vocabulary, without a pipeline
 * file.  The images go through the engine and stages of `artflow run`
 * (cli/images.c: decode, preprocess, vit, qformer, llm) with one llm task
 * named "labels" (stages/llm_tasks.h); its flags --question, --mode,
 * --top-k and --min-p are that task's key rows (help, defaults and ranges
 * from the table), --vocab and --labels-file its vocabulary. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"
#include "stages/llm_tasks.h"

static const char head[] =
    "usage: artflow tag IMAGE... --model MODEL.gguf (--vocab VOCAB.yaml | --labels-file FILE) [options]\n"
    "\n"
    "Tags each image with the labels of a vocabulary: every label is scored as the model's\n"
    "answer to the question (its log-likelihood right after the prompt, the label encoded as\n"
    "its own segment) and the labels are ranked by p, the softmax of the scores over the\n"
    "labels.  In yesno mode each label is asked about on its own and p = P(yes)/(P(yes)+P(no)).\n"
    "The prompt before the question (system text + image) is computed once per image.\n"
    "\n"
    "options:\n"
    "  --model FILE          model file made by 'artflow convert' or 'artflow mkmodel' (required)\n"
    "  --llm FILE            a GGUF with the base LLM (two-file model)\n"
    "  --vocab FILE|NAME     a vocabulary (name, question, mode, labels; see 'artflow inspect vocab');\n"
    "                        a bare NAME is a shipped one: artemis-emotions, wikiart-styles,\n"
    "                        wikiart-genres\n"
    "  --labels-file FILE    labels one per line instead of a vocabulary (needs --question)\n";
static const char tail[] =
    "  --json                one JSON object per image and line: {\"image\", \"status\", \"labels\":\n"
    "                        [{label, id, uri, logprob, logprob_per_token, p}, ...]} ranked by p\n"
    "  --device D            OpenCL device index or name substring\n"
    "\n"
    "exit status: 0 every image tagged, 1 an image or the run failed, 2 usage error.\n";
static const char *const skip[] = {"name", "vocabulary", "labels", "labels_file", "per_item", NULL};
static const char *const extra[] = {"mode", "; tag takes choose or yesno", NULL};

/* the one task, as JSON: the rows given as flags with their types */
static char *task_json(const af_cli_flags *f, const char *vocab, const char *labels_file) {
  cJSON *a = cJSON_CreateArray(), *o = cJSON_CreateObject();
  cJSON_AddItemToArray(a, o);
  cJSON_AddStringToObject(o, "name", "labels");
  if (vocab) cJSON_AddStringToObject(o, "vocabulary", vocab);
  if (labels_file) cJSON_AddStringToObject(o, "labels_file", labels_file);
  for (int i = 0; i < f->n_sets; i++) {
    const char *dot = strchr(f->sets[i], '.'), *eq = strchr(f->sets[i], '=');
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    const af_param *p = af_param_find(f->desc, key);
    cJSON_DeleteItemFromObject(o, key); /* the last of a repeated flag */
    if (p && (p->type == AF_PARAM_INT || p->type == AF_PARAM_FLOAT))
      cJSON_AddNumberToObject(o, key, strtod(eq + 1, NULL));
    else
      cJSON_AddStringToObject(o, key, eq + 1);
  }
  char *s = cJSON_PrintUnformatted(a);
  cJSON_Delete(a);
  return s;
}

int af_cmd_tag(int argc, char **argv) {
  af_cli_flags f;
  int rc = af_cli_flags_init_desc(&f, &af_llm_task_keys, skip);
  char *usage = rc ? NULL : af_cli_usage_text(head, &f, extra, tail);
  af_cli_images r = {.cmd = "tag", .with_llm = 1};
  const char **images = calloc((size_t)argc, sizeof *images), *vocab = NULL, *labels = NULL;
  int exitc = usage && images ? -1 : af_cli_fail(rc ? rc : AF_ERR_NOMEM, "tag");
  const af_cli_opt opts[] = {
      {"--model", &r.model, NULL}, {"--llm", &r.llm_model, NULL},    {"--device", &r.device, NULL},
      {"--vocab", &vocab, NULL},   {"--labels-file", &labels, NULL}, {"--json", NULL, &r.json},
      {NULL, NULL, NULL}};
  if (exitc < 0) exitc = af_cli_parse(argc, argv, "tag", usage, opts, &f, images, &r.n_images);
  char buf[64];
  const char *mode = af_cli_flags_value(&f, "mode", buf, sizeof buf);
  if (exitc < 0 && !r.model) exitc = af_cli_usage_error("tag", usage, "--model is required");
  if (exitc < 0 && !vocab == !labels)
    exitc = af_cli_usage_error("tag", usage, "give --vocab or --labels-file");
  if (exitc < 0 && mode && !strcmp(mode, "describe"))
    exitc = af_cli_usage_error("tag", usage, "--mode is choose or yesno (describe is 'artflow describe')");
  if (exitc < 0 && !r.n_images) exitc = af_cli_usage_error("tag", usage, "no image given");
  char *json = exitc < 0 ? task_json(&f, vocab, labels) : NULL;
  if (exitc < 0 && !json) exitc = af_cli_fail(AF_ERR_NOMEM, "tag");
  if (exitc < 0) {
    r.images = images;
    r.tag = json;
    exitc = af_cli_images_run(&r);
  }
  free(json);
  free(images);
  free(usage);
  af_cli_flags_free(&f);
  return exitc;
}
