/* The llm stage's tasks (see llm_tasks.h): parsing the task list against
 * its key table, question templates over item metadata, scoring tasks
 * through net/score.h (one shared prefix per image for all of them), describe
 * tasks through the generator (as `artflow describe`), and the ranked label
 * outputs. */
#include "stages/llm_tasks.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/tagvocab.h"

enum { MODE_AUTO, MODE_DESCRIBE, MODE_CHOOSE, MODE_YESNO };

typedef struct task_cfg {
  char *name;
  int mode;
  char *question, *vocabulary, *labels_file;
  af_strlist labels;
  int64_t top_k;
  double min_p;
} task_cfg;

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

typedef struct task {
  task_cfg c;
  int mode;
  const char *question; /* template: c.question or the vocabulary's (NULL: the model's, describe) */
  af_tagvocab *v;
  int n_forms; /* choose: every label's texts (label, aliases), tokenised */
  int32_t **ids;
  int *len, *of; /* tokens, and the label each form is of */
  af_gen_opts gen;
} task;

struct llm_tasks {
  af_generator *g;
  task *t;
  int n;
  int32_t *yn_ids[4];
  int yn_len[4];
};

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

static void task_free(task *t) {
  free(t->c.name), free(t->c.question), free(t->c.vocabulary), free(t->c.labels_file);
  for (int i = 0; i < t->c.labels.n; i++) free(t->c.labels.v[i]);
  free(t->c.labels.v);
  for (int i = 0; i < t->n_forms; i++) free(t->ids[i]);
  free(t->ids), free(t->len), free(t->of);
  af_tagvocab_free(t->v);
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
  if (!ctx->pipeline_path || !strchr(ctx->pipeline_path, '/')) return NULL;
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
      return af_err(AF_ERR_CONFIG,
                    "task key '%s' is unknown (valid: name, mode, question, vocabulary, labels, labels_file, "
                    "top_k, min_p, and for describe max_new_tokens, max_length, greedy, temperature, top_p, "
                    "seed, repetition_penalty)",
                    e->string);
    if (p ? set_json(p, &t->c, e, why, sizeof why) : set_gen(t, e->string, e, why, sizeof why))
      return af_err(AF_ERR_CONFIG, "task key '%s': %s", e->string, why);
  }
  if (!t->c.name || !*t->c.name) return af_err(AF_ERR_CONFIG, "a task without a name");
  for (const char *s = t->c.name; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          strchr("_-.", *s)))
      return af_err(AF_ERR_CONFIG, "task name '%s': use letters, digits, '_', '-' and '.'", t->c.name);
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
  return t->mode == MODE_CHOOSE ? task_forms(t, T->g) : 0;
}

int llm_tasks_new(const char *json, const af_stage_ctx *ctx, af_generator *g, const af_gen_opts *gen,
                  llm_tasks **out) {
  *out = NULL;
  cJSON *a = cJSON_Parse(json);
  llm_tasks *T = calloc(1, sizeof *T);
  int rc =
      !T ? af_err(AF_ERR_NOMEM, "out of memory")
      : !cJSON_IsArray(a) || !cJSON_GetArraySize(a)
          ? af_err(AF_ERR_CONFIG, "%s: tasks: expected a non-empty list of {name, mode, ...}", ctx->instance)
          : 0;
  if (!rc) {
    T->g = g;
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

/* ---- questions ---- */

/* tmpl with {meta.KEY} from the item's metadata (it NULL: 32 words, the
 * reserve's stand-in) and {label}; a missing key is AF_ERR_NOT_FOUND */
static int render(const char *tmpl, const af_item *it, const char *label, const char *task, char **out) {
  af_buf b = {0};
  int rc = 0;
  for (const char *s = tmpl; *s && !rc;) {
    const char *m = strstr(s, "{meta."), *l = label ? strstr(s, "{label}") : NULL;
    const char *at = m && (!l || m < l) ? m : l;
    if (!at) {
      af_buf_puts(&b, s);
      break;
    }
    af_buf_put(&b, s, (size_t)(at - s));
    if (at == l) {
      af_buf_puts(&b, label);
      s = at + 7;
      continue;
    }
    const char *end = strchr(at, '}');
    if (!end) {
      af_buf_puts(&b, at);
      break;
    }
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(end - at - 6), at + 6);
    const char *v = it ? af_item_meta(it, key) : NULL;
    if (it && !v)
      rc = af_err(AF_ERR_NOT_FOUND, "task '%s': the item has no metadata '%s' for {meta.%s} in its question",
                  task, key, key);
    for (int k = 0; !it && k < 32; k++) af_buf_puts(&b, " a");
    if (v) af_buf_puts(&b, v);
    s = end + 1;
  }
  af_buf_put(&b, "", 1);
  if (!rc && b.oom) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (rc) af_buf_free(&b);
  *out = rc ? NULL : b.p;
  return rc;
}

/* ---- one batch ---- */

/* the queries of one image: per choose task one, per yesno task one per label */
typedef struct iq {
  af_score_item si;
  af_score_query *q;
  char **text; /* rendered questions */
  double **lp; /* each query's logprobs */
  int nq;
} iq;

static int n_queries(const llm_tasks *T) {
  int n = 0;
  for (int k = 0; k < T->n; k++)
    n += T->t[k].mode == MODE_CHOOSE ? 1 : T->t[k].mode == MODE_YESNO ? T->t[k].v->n_labels : 0;
  return n;
}

/* item it's queries (it NULL: the reserve's stand-ins) */
static int build_queries(llm_tasks *T, const af_item *it, iq *x) {
  int n = n_queries(T), rc = 0;
  x->q = calloc((size_t)n + 1, sizeof *x->q), x->text = calloc((size_t)n + 1, sizeof(char *));
  x->lp = calloc((size_t)n + 1, sizeof(double *));
  if (!x->q || !x->text || !x->lp) return af_err(AF_ERR_NOMEM, "out of memory");
  for (int k = 0; k < T->n && !rc; k++) {
    task *t = &T->t[k];
    if (t->mode == MODE_DESCRIBE) continue;
    int per = t->mode == MODE_CHOOSE ? 1 : t->v->n_labels;
    for (int j = 0; j < per && !rc; j++) {
      int q = x->nq++;
      const char *label = t->mode == MODE_YESNO ? t->v->labels[j].label : NULL;
      if (!it && label) /* the longest label stands in */
        for (int i = 0; i < t->v->n_labels; i++)
          if (strlen(t->v->labels[i].label) > strlen(label)) label = t->v->labels[i].label;
      if ((rc = render(t->question, it, label, t->c.name, &x->text[q]))) break;
      int nc = t->mode == MODE_CHOOSE ? t->n_forms : 4;
      if (!(x->lp[q] = calloc((size_t)nc, sizeof(double)))) rc = af_err(AF_ERR_NOMEM, "out of memory");
      x->q[q] = (af_score_query){
          .question = x->text[q],
          .n_cand = nc,
          .logprob = x->lp[q],
          .cand = t->mode == MODE_CHOOSE ? (const int32_t *const *)t->ids : (const int32_t *const *)T->yn_ids,
          .cand_len = t->mode == MODE_CHOOSE ? t->len : T->yn_len};
    }
  }
  x->si.q = x->q, x->si.n_q = x->nq;
  return rc;
}

/* yes/no candidates: the first token of each form only */
static void yesno_first_tokens(llm_tasks *T) {
  for (int k = 0; k < 4; k++) T->yn_len[k] = 1;
}

static void iq_free(iq *x) {
  for (int q = 0; q < x->nq; q++) free(x->text[q]), free(x->lp[q]);
  free(x->q), free(x->text), free(x->lp), free(x->si.error);
}

typedef struct ranked {
  int label;
  double lp, lpt, p;
} ranked;

static int by_p(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  return x->p > y->p ? -1 : x->p < y->p ? 1 : x->label - y->label;
}

/* task t's labels for one image, ranked, as the JSON output (stages/outputs.h) */
static char *labels_json(llm_tasks *T, task *t, const iq *x, int q0) {
  int n = t->v->n_labels;
  ranked *r = calloc((size_t)n, sizeof *r);
  if (!r) return NULL;
  if (t->mode == MODE_CHOOSE) {
    const double *lp = x->lp[q0];
    for (int i = 0; i < n; i++) r[i] = (ranked){i, -INFINITY, 0, 0};
    for (int f = 0; f < t->n_forms; f++)
      if (lp[f] > r[t->of[f]].lp) r[t->of[f]].lp = lp[f], r[t->of[f]].lpt = lp[f] / t->len[f];
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = r[i].lp > mx ? r[i].lp : mx;
    for (int i = 0; i < n; i++) s += exp(r[i].lp - mx);
    for (int i = 0; i < n; i++) r[i].p = exp(r[i].lp - mx) / s;
  } else {
    for (int i = 0; i < n; i++) { /* candidates: the first tokens of Yes, yes, No, no */
      const double *lp = x->lp[q0 + i];
      double py = exp(lp[0]) + (T->yn_ids[1][0] != T->yn_ids[0][0] ? exp(lp[1]) : 0);
      double pn = exp(lp[2]) + (T->yn_ids[3][0] != T->yn_ids[2][0] ? exp(lp[3]) : 0);
      r[i] = (ranked){i, log(py), log(py), py + pn > 0 ? py / (py + pn) : 0};
    }
  }
  qsort(r, (size_t)n, sizeof *r, by_p);
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) {
    if ((t->c.top_k >= 0 && i >= t->c.top_k) || r[i].p < t->c.min_p) break;
    const af_tag_label *l = &t->v->labels[r[i].label];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "label", l->label);
    if (l->id)
      cJSON_AddStringToObject(o, "id", l->id);
    else
      cJSON_AddNullToObject(o, "id");
    if (l->uri)
      cJSON_AddStringToObject(o, "uri", l->uri);
    else
      cJSON_AddNullToObject(o, "uri");
    cJSON_AddNumberToObject(o, "logprob", r[i].lp);
    cJSON_AddNumberToObject(o, "logprob_per_token", r[i].lpt);
    cJSON_AddNumberToObject(o, "p", r[i].p);
    cJSON_AddItemToArray(a, o);
  }
  char *s = a ? cJSON_PrintUnformatted(a) : NULL;
  cJSON_Delete(a);
  free(r);
  return s;
}

static const char *name_of(const af_item *it) {
  return it->path ? it->path : it->id;
}

/* the scoring tasks of the batch, all on one shared prefix per image */
static void run_scoring(llm_tasks *T, const af_stage_ctx *ctx, af_item **who, int m) {
  if (!n_queries(T)) return;
  iq *x = calloc((size_t)m, sizeof *x);
  af_score_item *si = calloc((size_t)m, sizeof *si);
  int *map = calloc((size_t)m, sizeof(int)), k = 0;
  for (int i = 0; x && si && map && i < m; i++) {
    const af_tensor *t = af_item_tensor(who[i], "proj");
    af_error_clear();
    int rc = build_queries(T, who[i], &x[i]);
    if (rc) {
      af_item_fail(who[i], ctx->instance, "%s: %s", name_of(who[i]), af_error_message());
      continue;
    }
    x[i].si.image = name_of(who[i]), x[i].si.proj = t->data, x[i].si.n_img = (int)t->shape[0];
    si[k] = x[i].si, map[k++] = i;
  }
  if (!x || !si || !map) {
    for (int i = 0; i < m; i++) af_item_fail(who[i], ctx->instance, "out of memory");
  } else {
    yesno_first_tokens(T);
    if (k) af_score_batch(T->g, si, k, 1);
    for (int j = 0; j < k; j++) {
      af_item *it = who[map[j]];
      if (si[j].rc) {
        af_item_fail(it, ctx->instance, "%s: %s", name_of(it),
                     si[j].error ? si[j].error : af_strerror(si[j].rc));
        free(si[j].error);
        continue;
      }
      for (int t = 0, q0 = 0; t < T->n; t++) {
        task *tk = &T->t[t];
        if (tk->mode == MODE_DESCRIBE) continue;
        char *js = labels_json(T, tk, &x[map[j]], q0);
        if (!js || af_item_set_text(it, tk->c.name, js)) af_item_fail(it, ctx->instance, "out of memory");
        free(js);
        q0 += tk->mode == MODE_CHOOSE ? 1 : tk->v->n_labels;
      }
    }
  }
  for (int i = 0; x && i < m; i++) iq_free(&x[i]);
  free(x), free(si), free(map);
}

/* describe task t: items with the same question generate together */
static void run_describe(llm_tasks *T, task *t, const af_stage_ctx *ctx, af_item **who, int m) {
  char **qs = calloc((size_t)m, sizeof(char *));
  af_gen_item *gi = calloc((size_t)m, sizeof *gi);
  int *idx = calloc((size_t)m, sizeof(int)), *done = calloc((size_t)m, sizeof(int));
  for (int i = 0; qs && gi && idx && done && i < m; i++) {
    if (who[i]->status != AF_ITEM_OK) {
      done[i] = 1;
      continue;
    }
    af_error_clear();
    if (t->question && render(t->question, who[i], NULL, t->c.name, &qs[i])) {
      af_item_fail(who[i], ctx->instance, "%s: %s", name_of(who[i]), af_error_message());
      done[i] = 1;
    }
  }
  for (int i = 0; qs && gi && idx && done && i < m; i++) {
    if (done[i]) continue;
    int n = 0;
    for (int j = i; j < m; j++)
      if (!done[j] && ((!qs[i] && !qs[j]) || (qs[i] && qs[j] && !strcmp(qs[i], qs[j])))) {
        const af_tensor *p = af_item_tensor(who[j], "proj");
        gi[n] = (af_gen_item){.image = name_of(who[j]), .proj = p->data, .n_img = (int)p->shape[0]};
        idx[n++] = j, done[j] = 1;
      }
    af_gen_opts o = t->gen;
    o.question = qs[i];
    af_error_clear();
    int rc = af_generator_configure(T->g, &o);
    if (!rc) af_generate_batch(T->g, gi, n, NULL);
    for (int k = 0; k < n; k++) {
      af_item *it = who[idx[k]];
      int e = rc ? rc : gi[k].rc;
      if (!e && af_item_set_text(it, t->c.name, gi[k].answer)) e = AF_ERR_NOMEM;
      if (e)
        af_item_fail(it, ctx->instance, "%s: task '%s': %s", name_of(it), t->c.name,
                     gi[k].error ? gi[k].error
                     : rc        ? af_error_message()
                                 : af_strerror(e));
      af_gen_item_clear(&gi[k]);
    }
  }
  if (!qs || !gi || !idx || !done)
    for (int i = 0; i < m; i++) af_item_fail(who[i], ctx->instance, "out of memory");
  for (int i = 0; qs && i < m; i++) free(qs[i]);
  free(qs), free(gi), free(idx), free(done);
}

af_flow llm_tasks_process(llm_tasks *T, const af_stage_ctx *ctx, af_item **items, int n) {
  af_item **who = calloc((size_t)(n ? n : 1), sizeof *who);
  if (!who) return af_err(AF_ERR_NOMEM, "out of memory"), AF_FLOW_ERROR;
  int m = 0;
  for (int i = 0; i < n; i++) {
    const af_tensor *t = af_item_tensor(items[i], "proj");
    if (!t || t->dtype != AF_DTYPE_F32 || t->ndim != 2)
      af_item_fail(items[i], ctx->instance, "%s: no f32[Q,H] 'proj' tensor (is qformer before llm?)",
                   name_of(items[i]));
    else
      who[m++] = items[i];
  }
  run_scoring(T, ctx, who, m);
  for (int k = 0; k < T->n; k++)
    if (T->t[k].mode == MODE_DESCRIBE) run_describe(T, &T->t[k], ctx, who, m);
  af_error_clear();
  free(who);
  return AF_FLOW_OK;
}

int llm_tasks_reserve(llm_tasks *T, int batch, int n_img) {
  int rc = 0;
  for (int k = 0; k < T->n && !rc; k++) {
    task *t = &T->t[k];
    if (t->mode != MODE_DESCRIBE) continue;
    char *q = NULL;
    af_gen_opts o = t->gen;
    if (t->question && (rc = render(t->question, NULL, NULL, t->c.name, &q))) break;
    o.question = q;
    if (!(rc = af_generator_configure(T->g, &o))) rc = af_generator_reserve(T->g, batch, n_img);
    free(q);
  }
  if (rc || !n_queries(T)) return rc;
  iq x = {0};
  yesno_first_tokens(T);
  rc = build_queries(T, NULL, &x);
  x.si.n_img = n_img;
  if (!rc) rc = af_score_reserve(T->g, batch, &x.si);
  iq_free(&x);
  return rc;
}
