/* describe's output as it was before describe ran on the pipeline engine:
 * the generator's stream, JSON line and dump files made from its callbacks
 * (net/generate.h).  test_describe_batch uses it to check that a batch gives
 * every image exactly the bytes it gets alone. */
#include "describe_show.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/npy.h"

/* path := one line per array of ids, ids separated by single spaces */
static int write_id_lines(const char *path, const int32_t *const *ids, const size_t *n, int lines) {
  FILE *f = fopen(path, "w");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot write", path);
  for (int l = 0; l < lines; l++) {
    for (size_t i = 0; i < n[l]; i++) fprintf(f, "%s%d", i ? " " : "", ids[l][i]);
    fputc('\n', f);
  }
  return fclose(f) ? af_err(AF_ERR_IO, "%s: write failed", path) : 0;
}

/* ---- describe ---- */

typedef struct describe_out {
  FILE *out;
  int json;
  const af_gen_item *items;
  const char *const *dump_dirs;
} describe_out;

static void describe_write(void *arg, int i, const char *p, size_t len) {
  (void)i;
  describe_out *d = arg;
  fwrite(p, 1, len, d->out);
  fflush(d->out);
}

/* the image's prompt is prefilled: its first dumps and the "IMAGE: " heading */
static int describe_prefilled(void *arg, af_gen_run *run, int i) {
  describe_out *d = arg;
  const af_gen_item *it = &d->items[i];
  const char *dir = d->dump_dirs ? d->dump_dirs[i] : NULL;
  int rc;
  if (dir) {
    char p[4200];
    int64_t shape[1] = {it->n_logits0};
    snprintf(p, sizeof p, "%s/logits0.npy", dir);
    if ((rc = af_npy_write(p, AF_DTYPE_F32, 1, shape, it->logits0, 0))) return rc;
    const int32_t *ids[2];
    size_t n[2];
    af_gen_prompt_ids(run, &ids[0], &n[0], &ids[1], &n[1]);
    snprintf(p, sizeof p, "%s/prompt_ids.txt", dir);
    if ((rc = write_id_lines(p, ids, n, 2))) return rc;
  }
  if (d->out && !d->json) {
    char head[4200];
    snprintf(head, sizeof head, "%s: ", it->image);
    return af_gen_put(run, i, head, strlen(head));
  }
  return 0;
}

/* the image is answered: its JSON line or the newline after the streamed text, ids.txt */
static int describe_done(void *arg, af_gen_run *run, int i) {
  describe_out *d = arg;
  const af_gen_item *it = &d->items[i];
  const char *dir = d->dump_dirs ? d->dump_dirs[i] : NULL;
  int rc = 0;
  if (d->out && d->json) {
    cJSON *js = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(js, "ids");
    cJSON_AddStringToObject(js, "image", it->image);
    cJSON_AddStringToObject(js, "status", "ok");
    cJSON_AddStringToObject(js, "text", it->answer);
    for (int k = 0; k < it->n_ids; k++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(it->ids[k]));
    cJSON_AddNumberToObject(js, "prompt_positions", it->positions);
    char *s = cJSON_PrintUnformatted(js);
    if (s) {
      rc = af_gen_put(run, i, s, strlen(s));
      if (!rc) rc = af_gen_put(run, i, "\n", 1);
    }
    free(s);
    cJSON_Delete(js);
  } else if (d->out) {
    rc = af_gen_put(run, i, "\n", 1);
  }
  if (!rc && dir) {
    char p[4200];
    const int32_t *ids[1] = {it->ids};
    size_t n[1] = {(size_t)it->n_ids};
    snprintf(p, sizeof p, "%s/ids.txt", dir);
    rc = write_id_lines(p, ids, n, 1);
  }
  return rc;
}

int show_describe(af_generator *g, af_gen_item *items, const char *const *dump_dirs, int n, int json,
                  FILE *out) {
  describe_out d = {out, json, items, dump_dirs};
  for (int i = 0; i < n; i++) items[i].want_logits0 = dump_dirs && dump_dirs[i];
  af_gen_sink sink = {.arg = &d,
                      .write = out ? describe_write : NULL,
                      .stream_answers = !json,
                      .prefilled = describe_prefilled,
                      .done = describe_done};
  return af_generate_batch(g, items, n, &sink);
}
