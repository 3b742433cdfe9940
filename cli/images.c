/* The pipeline behind `artflow describe`, `chat` and `tag` (cli.h): the
 * images named on the command line go through the same engine and stages as
 * `artflow run` (decode -> preprocess -> vit -> qformer [-> llm]) into a sink
 * of this file's that shows what the command promises: the answer streamed
 * as it is generated, or one JSON object per image, the --dump files, the
 * images' embeddings for chat.  The two stages here are registered only for
 * these commands; their state is the one run in progress (a command runs one
 * pipeline at a time). */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "core/iofile.h"
#include "formats/gguf.h"
#include "formats/npy.h"
#include "pipeline/pipeline.h"

static af_cli_images *cur; /* the run in progress */

/* ---- source: the command line's images, in order ---- */

typedef struct {
  int next;
} src_state;

static int src_create(const af_stage_ctx *ctx, const void *config, void **self) {
  return (*self = calloc(1, sizeof(src_state))) ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

static af_flow src_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  src_state *s = self;
  if (s->next >= cur->n_images) return AF_FLOW_EOS;
  const char *p = cur->images[s->next++];
  return (*out = af_item_new(p, p)) ? AF_FLOW_OK : AF_FLOW_ERROR;
}

static int64_t src_count(void *self, const af_stage_ctx *ctx) {
  return cur->n_images;
}

static void src_destroy(void *self) {
  free(self);
}

static const af_stage_desc cli_source = {.abi_version = AF_STAGE_ABI_VERSION,
                                         .name = "cli_images",
                                         .doc = "the images named on the command line",
                                         .kind = AF_STAGE_SOURCE,
                                         .batch_size = 1,
                                         .create = src_create,
                                         .next = src_next,
                                         .count = src_count,
                                         .destroy = src_destroy};

/* ---- --dump: DIR/<image file stem>/, one folder per image ---- */

/* the image's dump folder, created: DIR/<stem>, or DIR/<stem>-2, -3, ... when
 * an earlier image of this run has that stem (never one image's files over
 * another's) */
static int dump_folder(af_cli_images *r, const char *image, char *out, size_t n) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", image);
  char *base = basename(tmp), *dot = strrchr(base, '.');
  if (dot && dot != base) *dot = 0;
  snprintf(out, n, "%s/%s", r->dump, base);
  for (int k = 2; af_idset_has(r->dumped, out); k++) snprintf(out, n, "%s/%s-%d", r->dump, base, k);
  int rc = af_idset_add(r->dumped, out, strlen(out));
  return rc ? rc : af_mkdirs(out);
}

static int dump_ids(const char *dir, const char *name, const af_tensor *const *t, int lines) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot write", p);
  for (int l = 0; l < lines; l++) {
    const int32_t *v = t[l] ? t[l]->data : NULL;
    for (int64_t i = 0; v && i < t[l]->shape[0]; i++) fprintf(f, "%s%d", i ? " " : "", v[i]);
    fputc('\n', f);
  }
  return fclose(f) ? af_err(AF_ERR_IO, "%s: write failed", p) : 0;
}

/* pixels, vit, qformer, proj (.npy); with the answer logits0.npy,
 * prompt_ids.txt (before / after the image) and ids.txt */
static int dump_item(af_cli_images *r, const af_item *it, char *dir, size_t n) {
  int rc = dump_folder(r, it->path, dir, n);
  static const char *const npy[] = {"pixels", "vit", "qformer", "proj", "logits0"};
  for (size_t i = 0; !rc && i < sizeof npy / sizeof *npy; i++) {
    const af_tensor *t = af_item_tensor(it, npy[i]);
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.npy", dir, npy[i]);
    if (t) rc = af_npy_write(p, t->dtype, t->ndim, t->shape, t->data, 0);
  }
  if (!rc && af_item_text(it, "text")) {
    const af_tensor *pre[2] = {af_item_tensor(it, "prompt_ids_pre"), af_item_tensor(it, "prompt_ids_post")},
                    *ids[1] = {af_item_tensor(it, "ids")};
    rc = dump_ids(dir, "prompt_ids.txt", pre, 2);
    if (!rc) rc = dump_ids(dir, "ids.txt", ids, 1);
  }
  return rc;
}

/* ---- sink: what the command shows ---- */

static void print_json(cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  if (s) printf("%s\n", s);
  free(s);
  cJSON_Delete(o);
}

/* describe --json: {"ids", "image", "status", "text", "prompt_positions"}
 * as before the pipeline; an image that failed: {"image", "status": "error",
 * "error"}.  A path or answer that is not UTF-8 follows the records' rule
 * (pipeline-io.md): U+FFFD in "image"/"text", the exact bytes in
 * "image_bytes"/"text_bytes". */
static void show_json(const af_item *it) {
  cJSON *o = cJSON_CreateObject();
  const char *text = af_item_text(it, "text");
  const af_tensor *ids = af_item_tensor(it, "ids"), *pos = af_item_tensor(it, "prompt_positions");
  if (it->status == AF_ITEM_OK && text) {
    cJSON *arr = cJSON_AddArrayToObject(o, "ids");
    for (int64_t k = 0; ids && k < ids->shape[0]; k++)
      cJSON_AddItemToArray(arr, cJSON_CreateNumber(((const int32_t *)ids->data)[k]));
  }
  af_json_add_text(o, "image", it->path, "image_bytes");
  cJSON_AddStringToObject(o, "status", it->status == AF_ITEM_OK ? "ok" : "error");
  if (it->status != AF_ITEM_OK) {
    af_json_add_text(o, "error", it->error ? it->error : "unknown error", NULL);
  } else if (text) {
    af_json_add_text(o, "text", text, "text_bytes");
    if (pos) cJSON_AddNumberToObject(o, "prompt_positions", *(const int32_t *)pos->data);
  } else {
    cJSON_AddNullToObject(o, "text");
  }
  print_json(o);
}

static int keep_embeddings(af_cli_images *r, const af_item *it) {
  const af_tensor *t = af_item_tensor(it, "proj");
  if (!t || t->ndim != 2) return af_err(AF_ERR_INVALID, "%s: no image embeddings", it->path);
  float *copy = malloc(t->bytes);
  if (!copy) return af_err(AF_ERR_NOMEM, "out of memory");
  memcpy(copy, t->data, t->bytes);
  r->proj[r->n_proj++] = copy;
  r->proj_rows = (int)t->shape[0];
  return 0;
}

/* tag: {"image", "status", "labels": [...]} with --json (the label output
 * as it is), else "IMAGE: label (p), label (p), ..." */
static void show_tag(const af_item *it, int json) {
  const char *v = it->status == AF_ITEM_OK ? af_item_text(it, "labels") : NULL;
  cJSON *labels = v ? cJSON_Parse(v) : NULL;
  if (json) {
    cJSON *o = cJSON_CreateObject();
    af_json_add_text(o, "image", it->path, "image_bytes");
    cJSON_AddStringToObject(o, "status", it->status == AF_ITEM_OK ? "ok" : "error");
    if (it->status != AF_ITEM_OK)
      af_json_add_text(o, "error", it->error ? it->error : "unknown error", NULL);
    else
      cJSON_AddItemToObject(o, "labels", labels ? labels : cJSON_CreateArray()), labels = NULL;
    print_json(o);
  } else if (it->status == AF_ITEM_OK) {
    printf("%s:", it->path);
    const cJSON *l;
    int k = 0;
    cJSON_ArrayForEach(l, labels) {
      const cJSON *p = cJSON_GetObjectItem(l, "p");
      printf("%s %s (%.3f)", k++ ? "," : "", cJSON_GetObjectItem(l, "label")->valuestring,
             cJSON_IsNumber(p) ? p->valuedouble : 0.0);
    }
    putchar('\n');
  }
  cJSON_Delete(labels);
}

static af_flow out_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  af_cli_images *r = cur;
  for (int i = 0; i < n; i++) {
    af_item *it = items[i];
    char dir[4200] = "";
    int rc = it->status == AF_ITEM_OK && r->dump ? dump_item(r, it, dir, sizeof dir) : 0;
    if (!rc && it->status == AF_ITEM_OK && r->proj) rc = keep_embeddings(r, it);
    if (rc) {
      af_item_fail(it, "dump", "%s", af_error_message());
      af_error_clear();
    }
    if (r->tag) {
      show_tag(it, r->json);
    } else if (r->json) {
      show_json(it);
    } else if (it->status == AF_ITEM_OK && !r->with_llm && !r->proj) {
      const af_tensor *t = af_item_tensor(it, "proj");
      printf("%s: vision path done (%lld image embeddings of width %lld)%s%s\n", it->path,
             (long long)(t ? t->shape[0] : 0), (long long)(t ? t->shape[1] : 0),
             dir[0] ? ", tensors in " : "", dir);
    }
    if (it->status != AF_ITEM_OK) {
      r->failures++;
      fprintf(stderr, "artflow %s: %s\n", r->cmd, it->error ? it->error : "unknown error");
    }
    fflush(stdout);
  }
  return AF_FLOW_OK;
}

static int out_create(const af_stage_ctx *ctx, const void *config, void **self) {
  *self = NULL;
  return 0;
}

static void out_destroy(void *self) {}

static const af_stage_desc cli_sink = {.abi_version = AF_STAGE_ABI_VERSION,
                                       .name = "cli_out",
                                       .doc = "what describe and chat show (text, JSON, --dump files)",
                                       .kind = AF_STAGE_SINK,
                                       .batch_size = 1,
                                       .create = out_create,
                                       .process = out_process,
                                       .destroy = out_destroy};

/* ---- the answer as it grows: "IMAGE: " when it begins, its bytes, "\n" ---- */

static void on_stream(void *arg, const af_item *it, const char *name, const char *bytes, size_t n) {
  if (strcmp(name, "text")) return;
  if (bytes && !n)
    printf("%s: ", it->path);
  else if (!bytes)
    putchar('\n');
  else
    fwrite(bytes, 1, n, stdout);
  fflush(stdout);
}

/* ---- the run ---- */

int af_cli_vision_sets(const char *model, char sets[3][256]) {
  af_gguf *g = NULL;
  uint32_t S = 0;
  float mean[3], std[3];
  uint64_t n3 = 3, m3 = 3;
  int rc = af_gguf_open(model, &g);
  if (!rc && (af_gguf_get_u32(g, "vision.image_size", &S) ||
              af_gguf_get_arr_f32(g, "vision.image_mean", mean, &n3) ||
              af_gguf_get_arr_f32(g, "vision.image_std", std, &m3) || n3 != 3 || m3 != 3 || !S))
    rc = af_err(AF_ERR_FORMAT,
                "%s: no vision.image_size / image_mean / image_std: not an artflow vision model", model);
  af_gguf_close(g);
  if (rc) return rc;
  snprintf(sets[0], 256, "preprocess.image_size=%u", S);
  snprintf(sets[1], 256, "preprocess.mean=%.9g,%.9g,%.9g", mean[0], mean[1], mean[2]);
  snprintf(sets[2], 256, "preprocess.std=%.9g,%.9g,%.9g", std[0], std[1], std[2]);
  return 0;
}

static int register_once(void) {
  static int done, rc;
  if (!done) {
    rc = af_registry_add(&cli_source);
    if (!rc) rc = af_registry_add(&cli_sink);
    done = 1;
  }
  return rc;
}

int af_cli_images_run(af_cli_images *r) {
  static const char with_llm[] =
      "source: {stage: cli_images}\n"
      "stages: [{stage: decode}, {stage: preprocess}, {stage: vit}, {stage: qformer}, {stage: llm}]\n"
      "sinks: [{stage: cli_out}]\n";
  static const char vision_only[] =
      "source: {stage: cli_images}\n"
      "stages: [{stage: decode}, {stage: preprocess}, {stage: vit}, {stage: qformer}]\n"
      "sinks: [{stage: cli_out}]\n";
  char vis[3][256];
  int n_sets = 0, rc = register_once();
  const char **sets = calloc((size_t)(r->n_sets + 8), sizeof *sets);
  char *tasks = NULL;
  r->dumped = af_idset_new();
  if (!rc && (!sets || !r->dumped)) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_cli_vision_sets(r->model, vis);
  if (rc) {
    free(sets);
    return af_cli_fail(rc, NULL);
  }
  for (int i = 0; i < 3; i++) sets[n_sets++] = vis[i];
  if (r->dump) sets[n_sets++] = "qformer.keep_vit=true";
  if (r->dump && r->with_llm) sets[n_sets++] = "llm.details=true";
  if (r->tag) { /* the task list, as a pipeline's tasks: */
    size_t n = strlen(r->tag) + 16;
    if ((tasks = malloc(n))) snprintf(tasks, n, "llm.tasks=%s", r->tag);
    sets[n_sets++] = tasks ? tasks : "llm.tasks=";
  } else if (r->with_llm && !r->json) { /* streamed text: one image at a time, as describe always went */
    sets[n_sets++] = "llm.batch=1";
  }
  if (r->json && r->with_llm && !r->tag) sets[n_sets++] = "llm.details=true"; /* prompt_positions */
  for (int i = 0; i < r->n_sets; i++) sets[n_sets++] = r->sets[i];
  af_run_options opt = {.sets = sets,
                        .n_sets = n_sets,
                        .quiet = 1,
                        .progress = AF_PROGRESS_NONE,
                        .device = r->device,
                        .model = r->model,
                        .llm_model = r->llm_model,
                        .no_journal = 1,
                        .stream = r->with_llm && !r->json && !r->tag ? on_stream : NULL};
  af_pipeline *p = NULL;
  cur = r;
  rc = af_pipeline_load_string(r->with_llm ? with_llm : vision_only, r->cmd, &opt, &p);
  int exitc = AF_EXIT_OK;
  if (rc) {
    fprintf(stderr, "artflow %s: %s\n", r->cmd, af_error_message());
    exitc = AF_EXIT_USAGE;
  } else if ((rc = af_pipeline_run(p))) {
    int cfg = rc == AF_ERR_CONFIG && !af_pipeline_summary(p)->started;
    fprintf(stderr, "artflow %s: %s\n", r->cmd, af_error_message());
    exitc = cfg ? AF_EXIT_USAGE : AF_EXIT_FAIL;
  } else if (r->failures) {
    exitc = AF_EXIT_FAIL;
  }
  af_error_clear();
  af_pipeline_free(p);
  cur = NULL;
  free(sets);
  free(tasks);
  af_idset_free(r->dumped);
  r->dumped = NULL;
  return exitc;
}
