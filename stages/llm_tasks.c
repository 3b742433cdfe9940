/* The llm stage's tasks (see llm_tasks.h): parsing the task list against
 * its key table, vocabularies and labels, and each item's own version of a
 * per_item task (its metadata's mapping over the task's keys, checked by the
 * same rows; what a server's request asks).  Running a batch is
 * llm_tasks_run.c. */

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "stages/llm_tasks_impl.h"

static const af_param task_params[] = {
    {"name", AF_PARAM_STRING, offsetof(task_cfg, name), NULL, 0, 0, NULL,
     "the text output the task writes (outputs.<name> in records)", AF_PARAM_REQUIRED},
    {"mode", AF_PARAM_ENUM, offsetof(task_cfg, mode), "auto", 0, 0, "auto|describe|choose|yesno",
     "describe: an answer; choose: rank the labels as answers to the question; yesno: ask about each label "
     "(auto: the vocabulary's mode, else describe)",
     0},
    {"question", AF_PARAM_STRING, offsetof(task_cfg, question), NULL, 0, 0, NULL,
     "the question; {meta.KEY} takes the item's metadata, {label} the label (yesno); default: the "
     "vocabulary's, for describe the model's",
     0},
    {"vocabulary", AF_PARAM_STRING, offsetof(task_cfg, vocabulary), NULL, 0, 0, NULL,
     "a shipped vocabulary's name (artemis-emotions, wikiart-styles, wikiart-genres) or a YAML file", 0},
    {"labels", AF_PARAM_STRLIST, offsetof(task_cfg, labels), NULL, 0, 0, NULL,
     "labels given in place of a vocabulary", 0},
    {"labels_file", AF_PARAM_STRING, offsetof(task_cfg, labels_file), NULL, 0, 0, NULL,
     "a file of labels, one per line, in place of a vocabulary", 0},
    {"top_k", AF_PARAM_INT, offsetof(task_cfg, top_k), "-1", -1, 1000000, NULL,
     "choose/yesno: keep the K best labels (-1: all); describe: the sampling top-k (-1: the stage's)", 0},
    {"min_p", AF_PARAM_FLOAT, offsetof(task_cfg, min_p), "0", 0, 1, NULL,
     "choose/yesno: leave out labels whose p is lower", 0},
    {"per_item", AF_PARAM_STRING, offsetof(task_cfg, per_item), NULL, 0, 0, NULL,
     "KEY: each item's metadata KEY holds a JSON mapping of this task's keys (mode, question, vocabulary "
     "by name, labels, top_k, min_p, generation keys) over the ones given here; items without KEY skip "
     "the task",
     0},
};

static int keys_create(const af_stage_ctx *ctx, const void *config, void **self) {
  return af_err(AF_ERR_INVALID, "the task keys are not a stage");
}
static af_flow keys_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  return AF_FLOW_ERROR;
}
static void keys_destroy(void *self) {}

const af_stage_desc af_llm_task_keys = {.abi_version = AF_STAGE_ABI_VERSION,
                                        .name = "llm_task",
                                        .doc = "one entry of the llm stage's tasks:",
                                        .kind = AF_STAGE_TRANSFORM,
                                        .params = task_params,
                                        .n_params = AF_ARRAY_LEN(task_params),
                                        .config_size = sizeof(task_cfg),
                                        .create = keys_create,
                                        .process = keys_process,
                                        .destroy = keys_destroy};

/* the llm stage's generation keys a describe task may set */
static const char *const gen_keys[] = {
    "max_new_tokens", "max_length", "greedy", "temperature", "top_p", "seed", "repetition_penalty"};

/* ---- parsing ---- */

/* one JSON value into row p of cfg, checked as the YAML loader checks it */
static int set_json(const af_param *p, void *cfg, const cJSON *v, char *why, size_t n) {
  char *f = (char *)cfg + p->offset;
  double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
  switch (p->type) {
    case AF_PARAM_INT:
    case AF_PARAM_FLOAT:
      if (!cJSON_IsNumber(v) || (p->type == AF_PARAM_INT && d != floor(d)))
        return snprintf(why, n, "expected %s", p->type == AF_PARAM_INT ? "an integer" : "a number"), -1;
      if (p->min < p->max && (d < p->min || d > p->max))
        return snprintf(why, n, "%g is outside %g..%g", d, p->min, p->max), -1;
      if (p->type == AF_PARAM_INT)
        *(int64_t *)f = (int64_t)d;
      else
        *(double *)f = d;
      return 0;
    case AF_PARAM_BOOL:
      if (!cJSON_IsBool(v)) return snprintf(why, n, "expected true or false"), -1;
      *(int *)f = cJSON_IsTrue(v);
      return 0;
    case AF_PARAM_ENUM: {
      int i = 0;
      const char *s = cJSON_IsString(v) ? v->valuestring : "";
      for (const char *c = p->choices; c && *c; i++) {
        size_t l = strcspn(c, "|");
        if (l == strlen(s) && !strncmp(c, s, l)) return *(int *)f = i, 0;
        c += l + (c[l] == '|');
      }
      return snprintf(why, n, "'%s' is not one of %s", s, p->choices), -1;
    }
    case AF_PARAM_STRING:
      if (!cJSON_IsString(v)) return snprintf(why, n, "expected a text"), -1;
      free(*(char **)f);
      return (*(char **)f = strdup(v->valuestring)) ? 0 : (snprintf(why, n, "out of memory"), -1);
    case AF_PARAM_STRLIST: {
      af_strlist *l = (af_strlist *)f;
      int m = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
      if (!(l->v = calloc((size_t)m, sizeof(char *)))) return snprintf(why, n, "out of memory"), -1;
      for (int k = 0; k < m; k++) {
        const cJSON *e = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, k) : v;
        if (!cJSON_IsString(e)) return snprintf(why, n, "expected a list of texts"), -1;
        if (!(l->v[l->n++] = strdup(e->valuestring))) return snprintf(why, n, "out of memory"), -1;
      }
      return 0;
    }
    default:
      return snprintf(why, n, "unsupported"), -1;
  }
}

void task_free(task *t) {
  free(t->c.name), free(t->c.question), free(t->c.vocabulary), free(t->c.labels_file), free(t->c.per_item);
  for (int i = 0; i < t->c.labels.n; i++) free(t->c.labels.v[i]);
  free(t->c.labels.v);
  for (int i = 0; i < t->n_forms; i++) free(t->ids[i]);
  free(t->ids), free(t->len), free(t->of), free(t->base);
  af_tagvocab_free(t->v);
  memset(t, 0, sizeof *t);
}

extern const af_stage_desc af_stage_llm; /* stages/llm.c: its generation rows check the keys */

typedef struct gen_val {
  int64_t i;
  double d;
  int b;
} gen_val;

/* generation keys of a describe task onto its options */
static int set_gen(task *t, const char *key, const cJSON *v, char *why, size_t n) {
  const af_param *p = NULL;
  for (int i = 0; i < af_stage_llm.n_params && !p; i++)
    if (!strcmp(af_stage_llm.params[i].name, key)) p = &af_stage_llm.params[i];
  gen_val val = {0};
  af_param row = *p;
  row.offset = p->type == AF_PARAM_INT     ? offsetof(gen_val, i)
               : p->type == AF_PARAM_FLOAT ? offsetof(gen_val, d)
                                           : offsetof(gen_val, b);
  if (set_json(&row, &val, v, why, n)) return -1;
  if (!strcmp(key, "max_new_tokens")) t->gen.max_new_tokens = (int)val.i;
  if (!strcmp(key, "max_length")) t->gen.max_length = (int)val.i;
  if (!strcmp(key, "seed")) t->gen.sampling.seed = (uint64_t)val.i;
  if (!strcmp(key, "greedy")) t->gen.sampling.greedy = val.b;
  if (!strcmp(key, "temperature")) t->gen.sampling.temperature = (float)val.d;
  if (!strcmp(key, "top_p")) t->gen.sampling.top_p = (float)val.d;
  if (!strcmp(key, "repetition_penalty")) t->gen.sampling.repetition_penalty = (float)val.d;
  return 0;
}

/* the folder of the pipeline file (relative vocabularies and label files) */
static char *base_dir(const af_stage_ctx *ctx) {
  if (!ctx || !ctx->pipeline_path || !strchr(ctx->pipeline_path, '/')) return NULL;
  return af_path_dirname(ctx->pipeline_path);
}

/* the task's labels: a vocabulary, a labels file or inline labels */
static int task_labels(task *t, const af_stage_ctx *ctx) {
  int given = !!t->c.vocabulary + !!t->c.labels_file + !!t->c.labels.n, rc = 0;
  if (given > 1) return af_err(AF_ERR_CONFIG, "give one of vocabulary, labels_file and labels");
  char *dir = base_dir(ctx);
  if (t->c.vocabulary) {
    rc = af_tagvocab_open(t->c.vocabulary, dir, &t->v);
  } else if (t->c.labels_file) {
    char *p =
        dir && t->c.labels_file[0] != '/' ? af_path_join(dir, t->c.labels_file) : strdup(t->c.labels_file);
    rc = p ? af_tagvocab_load_lines(p, &t->v) : af_err(AF_ERR_NOMEM, "out of memory");
    free(p);
  } else if (t->c.labels.n) {
    t->v = calloc(1, sizeof *t->v);
    if (t->v) t->v->labels = calloc((size_t)t->c.labels.n, sizeof *t->v->labels);
    if (!t->v || !t->v->labels || !(t->v->path = strdup("labels:")) || !(t->v->name = strdup(t->c.name)))
      rc = af_err(AF_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < t->c.labels.n; i++) {
      af_tag_label *l = &t->v->labels[t->v->n_labels++];
      for (int k = 0; k < i && !rc; k++)
        if (!strcmp(t->c.labels.v[k], t->c.labels.v[i]))
          rc = af_err(AF_ERR_CONFIG, "label '%s' is given twice", t->c.labels.v[i]);
      if (!rc && (!(l->label = strdup(t->c.labels.v[i])) || !(l->id = strdup(t->c.labels.v[i]))))
        rc = af_err(AF_ERR_NOMEM, "out of memory");
    }
  }
  free(dir);
  return rc;
}

/* choose: every label's texts as candidates */
static int task_forms(task *t, af_generator *g) {
  int n = 0, rc = 0;
  for (int i = 0; i < t->v->n_labels; i++) n += 1 + t->v->labels[i].n_aliases;
  t->ids = calloc((size_t)n, sizeof *t->ids), t->len = calloc((size_t)n, sizeof(int));
  t->of = calloc((size_t)n, sizeof(int));
  if (!t->ids || !t->len || !t->of) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0; i < t->v->n_labels && !rc; i++)
    for (int a = -1; a < t->v->labels[i].n_aliases && !rc; a++) {
      const char *text = a < 0 ? t->v->labels[i].label : t->v->labels[i].aliases[a];
      rc = af_score_encode(g, text, &t->ids[t->n_forms], &t->len[t->n_forms]);
      t->of[t->n_forms++] = i;
    }
  return rc;
}

/* a per_item task's own keys: checked, kept as JSON for each item's mapping
 * to go over; a describe task (given, or no labels yet) is reserved as one */
static int task_per_item(task *t, const cJSON *o) {
  if (!*t->c.per_item) return af_err(AF_ERR_CONFIG, "per_item: give the metadata key");
  cJSON *own = cJSON_Duplicate(o, 1);
  if (own) cJSON_DeleteItemFromObject(own, "per_item");
  t->base = own ? cJSON_PrintUnformatted(own) : NULL;
  cJSON_Delete(own);
  if (!t->base) return af_err(AF_ERR_NOMEM, "out of memory");
  int labelled = t->c.vocabulary || t->c.labels_file || t->c.labels.n;
  t->mode = t->c.mode == MODE_DESCRIBE || (t->c.mode == MODE_AUTO && !labelled) ? MODE_DESCRIBE : t->c.mode;
  t->question = t->c.question;
  if (t->mode == MODE_DESCRIBE && t->c.top_k >= 0) t->gen.sampling.top_k = (int)t->c.top_k;
  return 0;
}

/* T NULL: checked only, labels not tokenised */
static int task_parse(llm_tasks *T, task *t, const cJSON *o, const af_stage_ctx *ctx,
                      const af_gen_opts *gen) {
  char why[256];
  int rc = 0;
  t->gen = *gen;
  if (!cJSON_IsObject(o)) return af_err(AF_ERR_CONFIG, "a task is a mapping {name, mode, question, ...}");
  t->c.mode = MODE_AUTO, t->c.top_k = -1, t->c.min_p = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, o) {
    const af_param *p = NULL;
    for (int i = 0; i < AF_ARRAY_LEN(task_params) && !p; i++)
      if (!strcmp(task_params[i].name, e->string)) p = &task_params[i];
    int is_gen = 0;
    for (int i = 0; i < AF_ARRAY_LEN(gen_keys); i++) is_gen |= !strcmp(gen_keys[i], e->string);
    if (!p && !is_gen)
      return af_err(
          AF_ERR_CONFIG,
          "task key '%s' is unknown (valid: name, mode, question, vocabulary, labels, labels_file, "
          "top_k, min_p, per_item, and for describe max_new_tokens, max_length, greedy, temperature, "
          "top_p, seed, repetition_penalty)",
          e->string);
    if (p ? set_json(p, &t->c, e, why, sizeof why) : set_gen(t, e->string, e, why, sizeof why))
      return af_err(AF_ERR_CONFIG, "task key '%s': %s", e->string, why);
  }
  if (!t->c.name || !*t->c.name) return af_err(AF_ERR_CONFIG, "a task without a name");
  for (const char *s = t->c.name; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          strchr("_-.", *s)))
      return af_err(AF_ERR_CONFIG, "task name '%s': use letters, digits, '_', '-' and '.'", t->c.name);
  if (t->c.per_item) return task_per_item(t, o);
  if ((rc = task_labels(t, ctx))) return rc;
  t->mode = t->c.mode != MODE_AUTO       ? t->c.mode
            : !t->v                      ? MODE_DESCRIBE
            : t->v->mode == AF_TAG_YESNO ? MODE_YESNO
                                         : MODE_CHOOSE;
  t->question = t->c.question ? t->c.question : t->v ? t->v->question : NULL;
  if (t->mode == MODE_DESCRIBE) {
    if (t->v) return af_err(AF_ERR_CONFIG, "a describe task takes no labels (mode: choose or yesno?)");
    if (t->c.top_k >= 0) t->gen.sampling.top_k = (int)t->c.top_k;
    return 0;
  }
  if (!t->v)
    return af_err(AF_ERR_CONFIG, "a %s task needs a vocabulary, labels_file or labels",
                  t->mode == MODE_YESNO ? "yesno" : "choose");
  if (!t->question) return af_err(AF_ERR_CONFIG, "no question: the vocabulary has none, give question:");
  if (t->mode == MODE_YESNO && !strstr(t->question, "{label}"))
    return af_err(
        AF_ERR_CONFIG,
        "a yesno question must hold {label} (e.g. \"Does this artwork show {label}? Answer yes or no.\")");
  return t->mode == MODE_CHOOSE && T ? task_forms(t, T->g) : 0;
}

int llm_tasks_new(const char *json, const af_stage_ctx *ctx, af_generator *g, const af_gen_opts *gen,
                  int interleave, llm_tasks **out) {
  *out = NULL;
  cJSON *a = cJSON_Parse(json);
  llm_tasks *T = calloc(1, sizeof *T);
  int rc =
      !T ? af_err(AF_ERR_NOMEM, "out of memory")
      : !cJSON_IsArray(a) || !cJSON_GetArraySize(a)
          ? af_err(AF_ERR_CONFIG, "%s: tasks: expected a non-empty list of {name, mode, ...}", ctx->instance)
          : 0;
  if (!rc) {
    T->g = g, T->gen = *gen, T->interleave = interleave;
    T->t = calloc((size_t)cJSON_GetArraySize(a), sizeof *T->t);
    if (!T->t) rc = af_err(AF_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; !rc && i < cJSON_GetArraySize(a); i++) {
    task *t = &T->t[T->n++];
    if ((rc = task_parse(T, t, cJSON_GetArrayItem(a, i), ctx, gen))) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", af_error_message());
      af_error_clear();
      rc = af_err(rc == AF_ERR_NOMEM ? rc : AF_ERR_CONFIG, "task %d%s%s%s: %s", i + 1, t->c.name ? " '" : "",
                  t->c.name ? t->c.name : "", t->c.name ? "'" : "", msg);
    }
  }
  static const char *const yn[4] = {"Yes", "yes", "No", "no"};
  for (int k = 0; !rc && k < 4; k++) rc = af_score_encode(g, yn[k], &T->yn_ids[k], &T->yn_len[k]);
  cJSON_Delete(a);
  if (rc) {
    llm_tasks_free(T);
    return rc;
  }
  *out = T;
  return 0;
}

void llm_tasks_free(llm_tasks *T) {
  if (!T) return;
  for (int i = 0; i < T->n; i++) task_free(&T->t[i]);
  for (int k = 0; k < 4; k++) free(T->yn_ids[k]);
  free(T->t), free(T);
}

/* ---- an item's own task (per_item) ---- */

/* a vocabulary an item may name: a shipped one (no path: an item must not
 * make the stage read files) */
static int shipped_name(const char *v) {
  size_t n = strlen(v);
  return n && !strchr(v, '/') && !(n >= 5 && !strcmp(v + n - 5, ".yaml")) &&
         !(n >= 4 && !strcmp(v + n - 4, ".yml"));
}

/* the item's mapping over the task's own keys (base) into *merged; key:
 * the metadata's name, for messages (NULL: a mapping checked on its own) */
static int merge_item(const char *base, const char *item_json, const char *key, cJSON **merged) {
  cJSON *m = cJSON_Parse(base), *it = cJSON_Parse(item_json);
  char at[300] = "";
  if (key) snprintf(at, sizeof at, "metadata '%s': ", key);
  int rc = !m                    ? af_err(AF_ERR_NOMEM, "out of memory")
           : !cJSON_IsObject(it) ? af_err(AF_ERR_INVALID, "%sexpected a JSON mapping of task keys", at)
                                 : 0;
  const cJSON *e;
  if (!rc) cJSON_ArrayForEach(e, it) {
      if (!strcmp(e->string, "name") || !strcmp(e->string, "per_item"))
        rc = af_err(AF_ERR_INVALID, "%s'%s' is the task's own", at, e->string);
      else if (!strcmp(e->string, "labels_file"))
        rc = af_err(AF_ERR_INVALID, "%san item's task reads no files (give labels)", at);
      else if (!strcmp(e->string, "vocabulary") && !(cJSON_IsString(e) && shipped_name(e->valuestring)))
        rc = af_err(AF_ERR_INVALID, "%svocabulary: a shipped vocabulary's name (no path)", at);
      if (rc) break;
      cJSON_DeleteItemFromObject(m, e->string);
      cJSON_AddItemToObject(m, e->string, cJSON_Duplicate(e, 1));
    }
  cJSON_Delete(it);
  if (rc) cJSON_Delete(m);
  *merged = rc ? NULL : m;
  return rc;
}

int task_for_item(llm_tasks *T, const task *t, const af_stage_ctx *ctx, const af_item *it, task *out) {
  memset(out, 0, sizeof *out);
  const char *mine = af_item_meta(it, t->c.per_item);
  if (!mine) return 1;
  cJSON *m = NULL;
  int rc = merge_item(t->base, mine, t->c.per_item, &m);
  if (!rc) {
    cJSON *q = cJSON_Parse(mine);
    out->literal = cJSON_HasObjectItem(q, "question"); /* the item's own text: no {meta.KEY} */
    cJSON_Delete(q);
    rc = task_parse(T, out, m, ctx, &T->gen);
  }
  cJSON_Delete(m);
  if (rc) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", af_error_message());
    af_error_clear();
    task_free(out);
    rc = af_err(rc == AF_ERR_NOMEM ? rc : AF_ERR_INVALID, "task '%s': %s", t->c.name, msg);
  }
  return rc;
}

int llm_task_check_item(const char *json, char *why, size_t n) {
  cJSON *m = NULL;
  task t = {0};
  af_gen_opts gen;
  af_gen_opts_default(&gen);
  af_error_clear();
  int rc = merge_item("{\"name\": \"request\"}", json, NULL, &m);
  if (!rc) rc = task_parse(NULL, &t, m, NULL, &gen);
  snprintf(why, n, "%s", rc ? af_error_message() : "");
  af_error_clear();
  cJSON_Delete(m);
  task_free(&t);
  return rc;
}
