/* The JSON of artflow serve's API (cli/serve.h, docs/serve.md).
 *
 * POST /v1/chat/completions takes OpenAI's chat completion request: one
 * user message whose content holds the image (an image_url part: a data:
 * URL, or a file path under the server's --files folder) and the question
 * (text parts; none: the model's default question), and the generation
 * options OpenAI names (max_tokens, temperature, top_p, seed; top_k and
 * repetition_penalty too).  They become the llm stage's per_item mapping
 * for the item, checked by the stage's own rows before the request is
 * queued (llm_task_check_item), so a bad value is a 400 naming it.  Only a
 * single user turn is taken: the engine's llm stage batches one question
 * per image, while a conversation re-embeds its history per turn
 * (net/chat.h, `artflow chat`), which runs one conversation at a time.
 *
 * POST /v1/tag takes {image, vocabulary | labels [, mode, question, top_k,
 * min_p]} and answers the ranked labels of `artflow tag --json`. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artflow/status.h"
#include "cli/serve.h"
#include "stages/llm_tasks.h"

/* ---- images ---- */

static int b64(int c) {
  return c >= 'A' && c <= 'Z'   ? c - 'A'
         : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52
         : c == '+' || c == '-' ? 62
         : c == '/' || c == '_' ? 63
                                : -1;
}

/* base64 (standard or URL alphabet, padding optional, whitespace skipped)
 * into out (at least 3/4 of n bytes); the decoded size, or -1 */
static long unbase64(const char *s, size_t n, unsigned char *out) {
  long len = 0;
  unsigned acc = 0;
  int bits = 0, pad = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i], v;
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      pad++;
      continue;
    }
    if (pad || (v = b64(c)) < 0) return -1; /* data after padding, or not base64 */
    acc = (acc << 6) | (unsigned)v, bits += 6;
    if (bits >= 8) bits -= 8, out[len++] = (unsigned char)(acc >> bits);
  }
  return bits >= 6 ? -1 : len; /* a lone sextet is no byte */
}

/* a data: URL's bytes into the request's private file */
static int image_from_data(srv_req *r, const char *url, char *why, size_t wn) {
  const char *comma = strchr(url, ',');
  if (!comma || !memmem(url, (size_t)(comma - url), ";base64", 7))
    return snprintf(why, wn, "image: a data: URL must be base64 (data:image/png;base64,...)"), 400;
  size_t n = strlen(comma + 1);
  unsigned char *bytes = malloc(n / 4 * 3 + 3);
  if (!bytes) return snprintf(why, wn, "out of memory"), 500;
  long len = unbase64(comma + 1, n, bytes);
  char path[600];
  srv_temp_path(r->seq, path, sizeof path);
  int fd = len > 0 ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
  int ok = fd >= 0 && write(fd, bytes, (size_t)len) == (ssize_t)len;
  if (fd >= 0 && close(fd)) ok = 0;
  free(bytes);
  if (fd >= 0) { /* ours from now on: removed with the request */
    r->image = strdup(path);
    r->temp = 1;
    if (!r->image) unlink(path);
  }
  if (len <= 0) return snprintf(why, wn, "image: the data: URL is not valid base64 (or empty)"), 400;
  if (!ok || !r->image) return snprintf(why, wn, "image: cannot keep the image: out of disk or memory"), 500;
  return 0;
}

/* a path under the --files folder (symbolic links resolved: none leads out) */
static int image_from_path(srv_req *r, const char *path, char *why, size_t wn) {
  if (!af_srv.o.files)
    return snprintf(why, wn,
                    "image: file paths are off (start the server with --files DIR); send a data: URL"),
           400;
  char root[PATH_MAX], real[PATH_MAX];
  if (!realpath(af_srv.o.files, root)) return snprintf(why, wn, "image: the --files folder is gone"), 500;
  char *joined = path[0] == '/' ? strdup(path) : af_path_join(root, path);
  int in = joined && realpath(joined, real) && !strncmp(real, root, strlen(root)) &&
           (real[strlen(root)] == '/' || !strcmp(root, "/"));
  free(joined);
  /* one answer for "missing" and "outside": nothing is told about files outside */
  if (!in) return snprintf(why, wn, "image: %s: no such file under the --files folder", path), 400;
  return (r->image = strdup(real)) && (r->shown = strdup(path)) ? 0
                                                                : (snprintf(why, wn, "out of memory"), 500);
}

static int image_of(srv_req *r, const char *url, char *why, size_t wn) {
  if (!strncmp(url, "data:", 5)) return image_from_data(r, url, why, wn);
  if (!strncmp(url, "file://", 7)) return image_from_path(r, url + 7, why, wn);
  if (strstr(url, "://"))
    return snprintf(why, wn, "image: give a data: URL or a file path (the server fetches nothing)"), 400;
  return image_from_path(r, url, why, wn);
}

/* ---- requests ---- */

/* copies the numbers and flags of `keys` from the request into the mapping */
static void copy_keys(const cJSON *from, cJSON *to, const char *const *keys) {
  for (int i = 0; keys[i]; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, keys[i]);
    if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(to, keys[i], cJSON_Duplicate(v, 1));
  }
}

/* the mapping as the llm stage will see it, checked by its rows */
static int finish_task(srv_req *r, cJSON *task, char *why, size_t wn) {
  char *json = cJSON_PrintUnformatted(task);
  if (!json) return snprintf(why, wn, "out of memory"), 500;
  if (llm_task_check_item(json, why, wn)) {
    free(json);
    return 400;
  }
  r->task = json;
  return 0;
}

/* the user message's text parts and its one image part */
static int read_content(const cJSON *content, af_buf *text, const char **url, char *why, size_t wn) {
  if (cJSON_IsString(content))
    return snprintf(why, wn,
                    "messages: the content holds no image: give parts [{\"type\": \"text\", ...}, "
                    "{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,...\"}}]"),
           400;
  const cJSON *part;
  int images = 0;
  cJSON_ArrayForEach(part, content) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (!strcmp(t, "text")) {
      const cJSON *s = cJSON_GetObjectItemCaseSensitive(part, "text");
      if (!cJSON_IsString(s)) return snprintf(why, wn, "messages: a text part without text"), 400;
      if (text->n) af_buf_puts(text, "\n");
      af_buf_puts(text, s->valuestring);
    } else if (!strcmp(t, "image_url")) {
      const cJSON *u = cJSON_GetObjectItemCaseSensitive(part, "image_url");
      if (cJSON_IsObject(u)) u = cJSON_GetObjectItemCaseSensitive(u, "url");
      if (!cJSON_IsString(u)) return snprintf(why, wn, "messages: an image_url part without a url"), 400;
      *url = u->valuestring;
      images++;
    } else {
      return snprintf(why, wn, "messages: content part type '%s' is not supported (text, image_url)", t), 400;
    }
  }
  if (images != 1)
    return snprintf(why, wn, "messages: give exactly one image (an image_url part), not %d", images), 400;
  return 0;
}

int srv_parse_chat(const char *body, size_t n, srv_req **out, char *why, size_t wn) {
  static const char *const same[] = {"top_p", "seed", "top_k", "repetition_penalty", NULL};
  *out = NULL;
  cJSON *j = cJSON_ParseWithLength(body, n), *task = cJSON_CreateObject();
  const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages"), *m = cJSON_GetArrayItem(msgs, 0);
  const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *v;
  const char *url = NULL;
  af_buf text = {0};
  int st = 0;
  if (!cJSON_IsObject(j))
    st = 400, snprintf(why, wn, "the body is not a JSON object");
  else if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) != 1 || !cJSON_IsString(role) ||
           strcmp(role->valuestring, "user"))
    st = 400,
    snprintf(why, wn,
             "messages: give one user message holding the image and the question (the server answers "
             "single turns; a conversation is 'artflow chat')");
  else
    st = read_content(cJSON_GetObjectItemCaseSensitive(m, "content"), &text, &url, why, wn);
  af_buf_put(&text, "", 1), text.n--; /* a C string */
  if (!st && (v = cJSON_GetObjectItemCaseSensitive(j, "n")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
    st = 400, snprintf(why, wn, "n: one answer per request");
  if (!st && (v = cJSON_GetObjectItemCaseSensitive(j, "stop")) && !cJSON_IsNull(v))
    st = 400, snprintf(why, wn, "stop: not supported (answers end at the model's own separator)");
  if (!st) {
    if (text.n) cJSON_AddStringToObject(task, "question", text.p);
    if (!(v = cJSON_GetObjectItemCaseSensitive(j, "max_tokens")))
      v = cJSON_GetObjectItemCaseSensitive(j, "max_completion_tokens");
    if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(task, "max_new_tokens", cJSON_Duplicate(v, 1));
    /* OpenAI's temperature 0 is the most likely token each step */
    v = cJSON_GetObjectItemCaseSensitive(j, "temperature");
    if (cJSON_IsNumber(v) && v->valuedouble == 0)
      cJSON_AddTrueToObject(task, "greedy");
    else if (v && !cJSON_IsNull(v))
      cJSON_AddItemToObject(task, "temperature", cJSON_Duplicate(v, 1));
    copy_keys(j, task, same);
  }
  srv_req *r = st ? NULL : srv_req_new(SRV_CHAT);
  if (!st && !r) st = 500, snprintf(why, wn, "out of memory");
  if (!st) st = finish_task(r, task, why, wn);
  if (!st) st = image_of(r, url, why, wn);
  if (!st) r->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stream"));
  af_buf_free(&text);
  cJSON_Delete(task);
  cJSON_Delete(j);
  if (st) srv_release(r);
  *out = st ? NULL : r;
  return st;
}

int srv_parse_tag(const char *body, size_t n, srv_req **out, char *why, size_t wn) {
  static const char *const keys[] = {"vocabulary", "labels", "mode", "question", "top_k", "min_p", NULL};
  *out = NULL;
  cJSON *j = cJSON_ParseWithLength(body, n), *task = cJSON_CreateObject();
  const cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image"),
              *voc = cJSON_GetObjectItemCaseSensitive(j, "vocabulary"),
              *labels = cJSON_GetObjectItemCaseSensitive(j, "labels"),
              *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
  int st = 0;
  if (!cJSON_IsObject(j))
    st = 400, snprintf(why, wn, "the body is not a JSON object");
  else if (!cJSON_IsString(img))
    st = 400, snprintf(why, wn, "image: give the image as a data: URL or a file path");
  else if (!voc == !labels)
    st = 400, snprintf(why, wn, "give a vocabulary (a shipped one's name) or labels (a list), one of them");
  else if (cJSON_IsArray(labels) && cJSON_GetArraySize(labels) > af_srv.o.max_labels)
    st = 400, snprintf(why, wn, "labels: at most %d", af_srv.o.max_labels);
  else if (cJSON_IsString(mode) && !strcmp(mode->valuestring, "describe"))
    st = 400, snprintf(why, wn, "mode: choose or yesno (an answer in words is /v1/chat/completions)");
  if (!st) copy_keys(j, task, keys);
  if (!st && !cJSON_IsString(mode) && !voc) cJSON_AddStringToObject(task, "mode", "choose");
  srv_req *r = st ? NULL : srv_req_new(SRV_TAG);
  if (!st && !r) st = 500, snprintf(why, wn, "out of memory");
  if (!st) st = finish_task(r, task, why, wn);
  if (!st && cJSON_IsString(voc) && !(r->vocab = strdup(voc->valuestring)))
    st = 500, snprintf(why, wn, "out of memory");
  if (!st) st = image_of(r, img->valuestring, why, wn);
  cJSON_Delete(task);
  cJSON_Delete(j);
  if (st) srv_release(r);
  *out = st ? NULL : r;
  return st;
}

/* ---- responses ---- */

/* text as a JSON string, U+FFFD for bytes that are not UTF-8 */
static void add_text(cJSON *o, const char *key, const char *text) {
  char *fixed = af_utf8_valid(text) ? NULL : af_utf8_lossy(text);
  cJSON_AddStringToObject(o, key, fixed ? fixed : text);
  free(fixed);
}

static char *print(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

char *srv_error_json(int status, const char *message) {
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  add_text(e, "message", message ? message : "error");
  cJSON_AddStringToObject(e, "type",
                          status == 503   ? "server_busy"
                          : status >= 500 ? "server_error"
                                          : "invalid_request_error");
  cJSON_AddNumberToObject(e, "code", status);
  return print(o);
}

/* id, object, created, model */
static cJSON *head(const srv_req *r, const char *object) {
  char id[48];
  snprintf(id, sizeof id, "%s-%llu", r->kind == SRV_CHAT ? "chatcmpl" : "tag", (unsigned long long)r->seq);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddNumberToObject(o, "created", (double)time(NULL));
  cJSON_AddStringToObject(o, "model", af_srv.o.model_name);
  return o;
}

char *srv_response(const srv_req *r) {
  if (r->status != 200) return srv_error_json(r->status, r->error);
  if (r->kind == SRV_TAG) {
    cJSON *o = head(r, "tag"), *l = cJSON_Parse(r->labels);
    if (r->vocab)
      cJSON_AddStringToObject(o, "vocabulary", r->vocab);
    else
      cJSON_AddNullToObject(o, "vocabulary");
    cJSON_AddItemToObject(o, "labels", l ? l : cJSON_CreateArray());
    return print(o);
  }
  cJSON *o = head(r, "chat.completion"), *c = cJSON_AddArrayToObject(o, "choices"),
        *ch = cJSON_CreateObject();
  cJSON_AddItemToArray(c, ch);
  cJSON_AddNumberToObject(ch, "index", 0);
  cJSON *m = cJSON_AddObjectToObject(ch, "message");
  cJSON_AddStringToObject(m, "role", "assistant");
  add_text(m, "content", r->text);
  cJSON_AddStringToObject(ch, "finish_reason", "stop");
  return print(o);
}

char *srv_health_json(void) {
  cJSON *o = cJSON_CreateObject(), *q;
  pthread_mutex_lock(&af_srv.mu);
  cJSON_AddStringToObject(o, "status", af_srv.stopping ? "stopping" : af_srv.ready ? "ok" : "loading");
  cJSON_AddStringToObject(o, "model", af_srv.o.model_name);
  q = cJSON_AddObjectToObject(o, "queue");
  cJSON_AddNumberToObject(q, "admitted", af_srv.admitted);
  cJSON_AddNumberToObject(q, "capacity", af_srv.o.capacity);
  cJSON_AddNumberToObject(o, "answered", (double)af_srv.answered);
  cJSON_AddNumberToObject(o, "failed", (double)af_srv.failed);
  cJSON_AddNumberToObject(o, "refused", (double)af_srv.refused);
  cJSON_AddNumberToObject(o, "cancelled", (double)af_srv.cancelled);
  /* answers growing now, and the most at once: > 1 when requests shared the llm's batches */
  cJSON_AddNumberToObject(o, "generating", af_srv.generating);
  cJSON_AddNumberToObject(o, "most_generating", af_srv.most_generating);
  pthread_mutex_unlock(&af_srv.mu);
  return print(o);
}

char *srv_models_json(void) {
  cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON_AddItemToArray(d, m);
  cJSON_AddStringToObject(m, "id", af_srv.o.model_name);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", 0);
  cJSON_AddStringToObject(m, "owned_by", "artflow");
  return print(o);
}

/* ---- server-sent events ---- */

static void event(cJSON *o, af_buf *out) {
  char *s = print(o);
  af_buf_puts(out, "data: ");
  af_buf_puts(out, s ? s : "{}");
  af_buf_puts(out, "\n\n");
  free(s);
}

/* a chunk whose delta holds `content` (NULL: none) and the role if asked */
static void chunk(const srv_req *r, const char *content, int role, const char *finish, af_buf *out) {
  cJSON *o = head(r, "chat.completion.chunk"), *c = cJSON_AddArrayToObject(o, "choices"),
        *ch = cJSON_CreateObject();
  cJSON_AddItemToArray(c, ch);
  cJSON_AddNumberToObject(ch, "index", 0);
  cJSON *d = cJSON_AddObjectToObject(ch, "delta");
  if (role) cJSON_AddStringToObject(d, "role", "assistant");
  if (content) add_text(d, "content", content);
  if (finish)
    cJSON_AddStringToObject(ch, "finish_reason", finish);
  else
    cJSON_AddNullToObject(ch, "finish_reason");
  event(o, out);
}

void srv_sse_open(const srv_req *r, af_buf *out) {
  chunk(r, "", 1, NULL, out);
}

void srv_sse_delta(const srv_req *r, size_t from, size_t *to, af_buf *out) {
  const unsigned char *p = (const unsigned char *)r->streamed.p;
  size_t end = *to;
  /* back to the start of the last character; keep it when it is whole */
  size_t lead = end;
  while (lead > from && end - lead < 4 && (p[lead - 1] & 0xc0) == 0x80) lead--;
  if (lead > from) {
    unsigned c = p[lead - 1];
    size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (end - (lead - 1) < need) end = lead - 1;
  }
  *to = end;
  if (end <= from) return;
  char *piece = strndup(r->streamed.p + from, end - from);
  if (piece) chunk(r, piece, 0, NULL, out);
  free(piece);
}

void srv_sse_close(const srv_req *r, af_buf *out) {
  if (r->status == 200) {
    chunk(r, NULL, 0, "stop", out);
  } else { /* failed after the stream began: an error event, as OpenAI sends */
    char *e = srv_error_json(r->status, r->error);
    af_buf_puts(out, "data: ");
    af_buf_puts(out, e ? e : "{}");
    af_buf_puts(out, "\n\n");
    free(e);
  }
  af_buf_puts(out, "data: [DONE]\n\n");
}
