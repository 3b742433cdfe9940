/* `iiif` source: the canvases of a IIIF Presentation 3 (or 2.1) manifest, or
 * of every manifest of a collection, as items -- a local file or an http(s)
 * URL.  Each item: id = the canvas id, path = the image fetched for it, meta
 * = iiif_canvas, iiif_manifest, label (the canvas label) and the manifest's
 * metadata pairs (label -> value, first language).
 * Images: through the IIIF Image API at the size the model needs
 * ({service}/full/!S,S/0/default.jpg with S = `size`), never the master; a
 * canvas without an image service falls back to the body's own URL.  With
 * `map_prefix` / `map_dir`, an image whose service (or body) id starts with
 * the prefix is read from map_dir/<rest> on disk instead.  Fetched images are
 * kept in `cache` (named by canvas), so a resumed run fetches nothing twice.
 * HTTP (libcurl): a connect and a total timeout, `retries` retries with
 * exponential backoff on 429, 5xx, timeouts and truncated bodies (a 429/503's
 * Retry-After is honoured up to 60 s), a User-Agent, and at least `delay_ms`
 * between two requests to one host.  Requests are made one at a time (the
 * concurrency limit is 1: a museum's image server is a shared resource).
 * A canvas whose image cannot be had becomes an error record naming the URL
 * and the cause; a manifest that cannot be read is a setup error, a child
 * manifest of a collection an error record. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "stages/outputs.h"

typedef struct iiif_config {
  char *manifest, *cache, *map_prefix, *map_dir, *user_agent;
  int64_t size, retries, delay_ms, max_manifests;
  double timeout_s, connect_timeout_s;
} iiif_config;

typedef struct canvas {
  char *id, *label, *image, *manifest; /* image: IIIF Image API URL or a local path */
  int local;
  af_kv *meta;
  int n_meta;
} canvas;

typedef struct iiif_source {
  const iiif_config *cfg;
  CURL *curl;
  canvas *cv;
  int n, cap, next;
  char **pending; /* manifests of a collection still to read */
  int n_pending, read_manifests;
  char host[256];
  double last_request;
  char *manifest; /* resolved against the pipeline's folder unless a URL */
} iiif_source;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_url(const char *s) {
  return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

/* ------------------------------------------------------------------ HTTP */

typedef struct sink_ctx {
  af_buf *buf;
  FILE *fp;
} sink_ctx;

static size_t on_data(char *p, size_t size, size_t n, void *user) {
  sink_ctx *s = user;
  if (s->fp) return fwrite(p, size, n, s->fp);
  af_buf_put(s->buf, p, size * n);
  return s->buf->oom ? 0 : size * n;
}

/* waits out the politeness delay for url's host */
static void polite(iiif_source *s, const char *url) {
  const char *h = strstr(url, "://");
  h = h ? h + 3 : url;
  size_t n = strcspn(h, "/");
  if (n >= sizeof s->host) n = sizeof s->host - 1;
  if (!strncmp(s->host, h, n) && s->host[n] == 0) {
    double wait = s->last_request + (double)s->cfg->delay_ms / 1000.0 - now_s();
    if (wait > 0) usleep((useconds_t)(wait * 1e6));
  }
  memcpy(s->host, h, n);
  s->host[n] = 0;
}

/* GET url into buf (fp NULL) or into the file fp.  0, or -1 with why[] set.
 * Retries 429, 5xx, timeouts and short bodies with backoff. */
static int http_get(iiif_source *s, const char *url, af_buf *buf, FILE *fp, char *why, size_t nwhy) {
  const iiif_config *c = s->cfg;
  double backoff = 0.5;
  for (int attempt = 0;; attempt++) {
    polite(s, url);
    if (buf) buf->n = 0;
    if (fp) {
      rewind(fp);
      if (ftruncate(fileno(fp), 0)) { /* a fresh file below anyway */
      }
    }
    sink_ctx sc = {buf, fp};
    curl_easy_reset(s->curl);
    curl_easy_setopt(s->curl, CURLOPT_URL, url);
    curl_easy_setopt(s->curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(s->curl, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(s->curl, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->connect_timeout_s * 1000));
    curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, (long)(c->timeout_s * 1000));
    curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, &sc);
    curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(s->curl);
    s->last_request = now_s();
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(s->curl, CURLINFO_RETRY_AFTER, &retry_after);
    if (rc == CURLE_OK && status >= 200 && status < 300) return 0;
    int retry = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR ||
                rc == CURLE_GOT_NOTHING || rc == CURLE_COULDNT_CONNECT || status == 429 || status >= 500;
    if (rc != CURLE_OK)
      snprintf(why, nwhy, "%s: %s", url, curl_easy_strerror(rc));
    else
      snprintf(why, nwhy, "%s: HTTP %ld", url, status);
    if (!retry || attempt >= c->retries) {
      if (attempt > 0) snprintf(why + strlen(why), nwhy - strlen(why), " (after %d retries)", attempt);
      return -1;
    }
    double wait = retry_after > 0 ? (double)(retry_after > 60 ? 60 : retry_after) : backoff;
    usleep((useconds_t)(wait * 1e6));
    backoff *= 2;
  }
}

/* ------------------------------------------------------------- manifests */

/* The text of a label: a string, an array of strings, a IIIF 3 language map
 * ({"en": ["..."]}: "en", else "none", else the first), or a 2.1
 * {"@value": ...}; malloc'd, NULL when absent. */
static char *label_text(const cJSON *v) {
  if (cJSON_IsString(v)) return strdup(v->valuestring);
  if (cJSON_IsArray(v)) return v->child ? label_text(v->child) : NULL;
  if (!cJSON_IsObject(v)) return NULL;
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(v, "@value");
  if (x) return label_text(x);
  if ((x = cJSON_GetObjectItemCaseSensitive(v, "en")) || (x = cJSON_GetObjectItemCaseSensitive(v, "none")))
    return label_text(x);
  return v->child ? label_text(v->child) : NULL;
}

static const char *id_of(const cJSON *o) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
  if (!cJSON_IsString(v)) v = cJSON_GetObjectItemCaseSensitive(o, "@id");
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *type_of(const cJSON *o) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "type");
  if (!cJSON_IsString(v)) v = cJSON_GetObjectItemCaseSensitive(o, "@type");
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* the image service of a body/resource: its id (3: "service" array, 2.1: an
 * object or array with "@id") */
static const char *service_of(const cJSON *body) {
  const cJSON *sv = cJSON_GetObjectItemCaseSensitive(body, "service");
  if (cJSON_IsArray(sv)) sv = sv->child;
  return sv ? id_of(sv) : NULL;
}

/* The URL (or mapped local path) of a canvas image at the model's size. */
static char *image_ref(const iiif_source *s, const char *service, const char *body, int *local) {
  const iiif_config *c = s->cfg;
  const char *src = service ? service : body;
  *local = 0;
  if (!src) return NULL;
  size_t np = c->map_prefix ? strlen(c->map_prefix) : 0;
  if (np && !strncmp(src, c->map_prefix, np) && c->map_dir) {
    *local = 1;
    return af_path_join(c->map_dir, src + np);
  }
  if (!service) return strdup(body);
  char *u = malloc(strlen(service) + 64);
  if (u) {
    size_t n = strlen(service);
    while (n && service[n - 1] == '/') n--;
    sprintf(u, "%.*s/full/!%lld,%lld/0/default.jpg", (int)n, service, (long long)c->size, (long long)c->size);
  }
  return u;
}

static int add_canvas(iiif_source *s, const cJSON *cv, const char *manifest, const af_kv *meta, int n_meta,
                      const cJSON *body) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    canvas *p = realloc(s->cv, (size_t)cap * sizeof *p);
    if (!p) return af_err(AF_ERR_NOMEM, "out of memory");
    s->cv = p, s->cap = cap;
  }
  canvas *c = &s->cv[s->n];
  memset(c, 0, sizeof *c);
  const char *id = id_of(cv);
  c->id = strdup(id ? id : "");
  c->label = label_text(cJSON_GetObjectItemCaseSensitive(cv, "label"));
  c->manifest = strdup(manifest);
  c->image = body ? image_ref(s, service_of(body), id_of(body), &c->local) : NULL;
  if (!c->id || !c->manifest) return af_err(AF_ERR_NOMEM, "out of memory");
  if (n_meta && !(c->meta = calloc((size_t)n_meta, sizeof *c->meta)))
    return af_err(AF_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n_meta; i++) {
    c->meta[i].key = strdup(meta[i].key);
    c->meta[i].value = strdup(meta[i].value);
  }
  c->n_meta = n_meta;
  s->n++;
  return 0;
}

/* the first painting annotation's body (3) or image resource (2.1) */
static const cJSON *canvas_body(const cJSON *cv) {
  const cJSON *pages = cJSON_GetObjectItemCaseSensitive(cv, "items");
  if (cJSON_IsArray(pages) && pages->child) {
    const cJSON *annos = cJSON_GetObjectItemCaseSensitive(pages->child, "items");
    const cJSON *a = cJSON_IsArray(annos) ? annos->child : NULL;
    const cJSON *b = a ? cJSON_GetObjectItemCaseSensitive(a, "body") : NULL;
    return cJSON_IsArray(b) ? b->child : b;
  }
  const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(cv, "images");
  const cJSON *a = cJSON_IsArray(imgs) ? imgs->child : NULL;
  return a ? cJSON_GetObjectItemCaseSensitive(a, "resource") : NULL;
}

static int push_pending(iiif_source *s, const char *ref) {
  char **p = realloc(s->pending, (size_t)(s->n_pending + 1) * sizeof *p);
  if (!p) return af_err(AF_ERR_NOMEM, "out of memory");
  s->pending = p;
  return (s->pending[s->n_pending++] = strdup(ref)) ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

/* Adds the canvases of a manifest (or queues a collection's manifests). */
static int read_document(iiif_source *s, const char *where, const char *text, size_t len) {
  cJSON *doc = cJSON_ParseWithLength(text, len);
  if (!cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    return af_err(AF_ERR_FORMAT, "%s: not a IIIF manifest (not a JSON object)", where);
  }
  const char *type = type_of(doc);
  int rc = 0;
  if (!strcmp(type, "Collection") || !strcmp(type, "sc:Collection")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "items");
    if (!cJSON_IsArray(list)) list = cJSON_GetObjectItemCaseSensitive(doc, "manifests");
    for (const cJSON *m = list ? list->child : NULL; m && !rc; m = m->next)
      if (id_of(m)) rc = push_pending(s, id_of(m));
    cJSON_Delete(doc);
    return rc;
  }
  if (strcmp(type, "Manifest") && strcmp(type, "sc:Manifest")) {
    cJSON_Delete(doc);
    return af_err(AF_ERR_FORMAT, "%s: type '%s' is neither a IIIF Manifest nor a Collection", where, type);
  }
  const char *mid = id_of(doc) ? id_of(doc) : where;
  /* the manifest's metadata pairs ride along on every canvas */
  af_kv meta[64];
  int nm = 0;
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
  for (const cJSON *p = cJSON_IsArray(md) ? md->child : NULL; p && nm < 64; p = p->next) {
    char *k = label_text(cJSON_GetObjectItemCaseSensitive(p, "label"));
    char *v = label_text(cJSON_GetObjectItemCaseSensitive(p, "value"));
    if (k && v) {
      meta[nm].key = k, meta[nm].value = v, nm++;
    } else {
      free(k), free(v);
    }
  }
  const cJSON *canvases = cJSON_GetObjectItemCaseSensitive(doc, "items"); /* 3 */
  if (!cJSON_IsArray(canvases)) {                                         /* 2.1 */
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "sequences");
    canvases =
        cJSON_IsArray(seq) && seq->child ? cJSON_GetObjectItemCaseSensitive(seq->child, "canvases") : NULL;
  }
  if (!cJSON_IsArray(canvases))
    rc = af_err(AF_ERR_FORMAT, "%s: manifest has no canvases (no \"items\" or \"sequences\")", where);
  for (const cJSON *cv = canvases ? canvases->child : NULL; cv && !rc; cv = cv->next)
    rc = add_canvas(s, cv, mid, meta, nm, canvas_body(cv));
  for (int i = 0; i < nm; i++) free(meta[i].key), free(meta[i].value);
  cJSON_Delete(doc);
  return rc;
}

/* Reads a manifest or collection from a file or URL.  0, or a status. */
static int load(iiif_source *s, const char *ref) {
  af_buf b = {0};
  int rc = 0;
  s->read_manifests++;
  if (is_url(ref)) {
    char why[1024];
    if (http_get(s, ref, &b, NULL, why, sizeof why)) rc = af_err(AF_ERR_IO, "manifest %s", why);
  } else {
    size_t n = 0;
    FILE *fp = fopen(ref, "rb");
    if (!fp) rc = af_err(AF_ERR_IO, "%s: IIIF manifest: %s", ref, strerror(errno));
    char chunk[8192];
    while (fp && (n = fread(chunk, 1, sizeof chunk, fp)) > 0) af_buf_put(&b, chunk, n);
    if (fp) fclose(fp);
  }
  if (!rc && b.oom) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = read_document(s, ref, b.p ? b.p : "", b.n);
  af_buf_free(&b);
  return rc;
}

/* ---------------------------------------------------------------- stage */

static int iiif_create(const af_stage_ctx *ctx, const void *config, void **self) {
  iiif_source *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->cfg = config;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(s->curl = curl_easy_init()))
    return af_err(AF_ERR_IO, "%s: libcurl did not start", ctx->instance);
  const char *m = s->cfg->manifest;
  char *base = !is_url(m) && m[0] != '/' && ctx->pipeline_path ? af_path_dirname(ctx->pipeline_path) : NULL;
  s->manifest = base ? af_path_join(base, m) : strdup(m);
  free(base);
  if (!s->manifest) return af_err(AF_ERR_NOMEM, "out of memory");
  int rc = af_mkdirs(s->cfg->cache);
  if (!rc) rc = load(s, s->manifest);
  if (rc == AF_ERR_FORMAT || rc == AF_ERR_IO) { /* the run cannot start: a setup error (exit 2) */
    char msg[1200];
    snprintf(msg, sizeof msg, "%s", af_error_message());
    rc = af_err_replace(AF_ERR_CONFIG, "%s", msg);
  }
  return rc;
}

static int64_t iiif_count(void *self, const af_stage_ctx *ctx) {
  iiif_source *s = self;
  return s->n_pending ? -1 : s->n;
}

/* Fetches (or finds in the cache) one canvas's image; 0 or -1 with why. */
static int fetch(iiif_source *s, canvas *c, char **path, char *why, size_t nwhy) {
  if (c->local) {
    *path = strdup(c->image);
    return 0;
  }
  char name[300];
  af_safe_name(c->id, name, sizeof name);
  size_t n = strlen(s->cfg->cache) + strlen(name) + 16;
  char *file = malloc(n), *tmp = malloc(n + 8);
  if (!file || !tmp) {
    free(file), free(tmp);
    snprintf(why, nwhy, "out of memory");
    return -1;
  }
  snprintf(file, n, "%s/%s.jpg", s->cfg->cache, name);
  snprintf(tmp, n + 8, "%s.part", file);
  struct stat st;
  if (stat(file, &st) == 0 && st.st_size > 0) { /* fetched by an earlier run */
    free(tmp);
    *path = file;
    return 0;
  }
  FILE *fp = fopen(tmp, "wb");
  int rc = fp ? http_get(s, c->image, NULL, fp, why, nwhy)
              : (snprintf(why, nwhy, "%s: %s", tmp, strerror(errno)), -1);
  if (fp && fclose(fp) && !rc) rc = (snprintf(why, nwhy, "%s: write failed", tmp), -1);
  if (!rc && rename(tmp, file)) rc = (snprintf(why, nwhy, "%s: %s", file, strerror(errno)), -1);
  if (rc) unlink(tmp);
  free(tmp);
  if (rc) {
    free(file);
    return -1;
  }
  *path = file;
  return 0;
}

static af_flow iiif_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  iiif_source *s = self;
  while (s->next == s->n && s->n_pending) { /* a collection: the next manifest */
    char *ref = s->pending[0];
    memmove(s->pending, s->pending + 1, (size_t)--s->n_pending * sizeof *s->pending);
    int rc = s->read_manifests >= s->cfg->max_manifests
                 ? af_err(AF_ERR_IO, "%s: more than max_manifests (%lld) manifests", ref,
                          (long long)s->cfg->max_manifests)
                 : load(s, ref);
    if (rc == AF_ERR_NOMEM) {
      free(ref);
      return AF_FLOW_ERROR;
    }
    if (rc) { /* that manifest is one error record; the collection goes on */
      af_item *it = af_item_new(ref, NULL);
      free(ref);
      if (!it) return AF_FLOW_ERROR;
      af_item_fail(it, ctx->instance, "%s", af_error_message());
      af_error_clear();
      *out = it;
      return AF_FLOW_OK;
    }
    free(ref);
  }
  if (s->next == s->n) return AF_FLOW_EOS;
  canvas *c = &s->cv[s->next++];
  char *path = NULL, why[1200] = "";
  int bad = !c->image ? (snprintf(why, sizeof why, "%s: canvas has no image", c->id), 1)
                      : fetch(s, c, &path, why, sizeof why) != 0;
  af_item *it = af_item_new(c->id, path);
  free(path);
  if (!it) return AF_FLOW_ERROR;
  int oom = af_item_set_meta(it, "iiif_canvas", c->id) ||
            af_item_set_meta(it, "iiif_manifest", c->manifest) ||
            (c->label && af_item_set_meta(it, "label", c->label));
  for (int i = 0; i < c->n_meta && !oom; i++) oom = af_item_set_meta(it, c->meta[i].key, c->meta[i].value);
  if (oom) {
    af_item_free(it);
    af_err(AF_ERR_NOMEM, "out of memory");
    return AF_FLOW_ERROR;
  }
  if (bad) af_item_fail(it, ctx->instance, "%s", why);
  *out = it;
  return AF_FLOW_OK;
}

static void iiif_destroy(void *self) {
  iiif_source *s = self;
  if (!s) return;
  for (int i = 0; i < s->n; i++) {
    canvas *c = &s->cv[i];
    free(c->id), free(c->label), free(c->image), free(c->manifest);
    for (int k = 0; k < c->n_meta; k++) free(c->meta[k].key), free(c->meta[k].value);
    free(c->meta);
  }
  free(s->cv);
  for (int i = 0; i < s->n_pending; i++) free(s->pending[i]);
  free(s->pending);
  if (s->curl) curl_easy_cleanup(s->curl);
  free(s->manifest);
  free(s);
}

static const af_param iiif_params[] = {
    {"manifest", AF_PARAM_STRING, offsetof(iiif_config, manifest), NULL, 0, 0, NULL,
     "IIIF Presentation 3 / 2.1 manifest or collection: a file (relative to the pipeline file) or an "
     "http(s) URL",
     AF_PARAM_REQUIRED},
    {"size", AF_PARAM_INT, offsetof(iiif_config, size), "448", 16, 10000, NULL,
     "images are asked for at most size x size ({service}/full/!size,size/0/default.jpg)", 0},
    {"cache", AF_PARAM_STRING, offsetof(iiif_config, cache), "iiif-cache", 0, 0, NULL,
     "folder for the fetched images (kept: a resumed run fetches nothing twice)", AF_PARAM_PATH},
    {"map_prefix", AF_PARAM_STRING, offsetof(iiif_config, map_prefix), NULL, 0, 0, NULL,
     "an image service (or image) id starting with this is read from map_dir instead of fetched", 0},
    {"map_dir", AF_PARAM_STRING, offsetof(iiif_config, map_dir), NULL, 0, 0, NULL,
     "local folder for map_prefix: the rest of the id is the file's path in it", AF_PARAM_PATH},
    {"user_agent", AF_PARAM_STRING, offsetof(iiif_config, user_agent), "artflow/" AF_VERSION " (IIIF source)",
     0, 0, NULL, "User-Agent of every request", 0},
    {"timeout_s", AF_PARAM_FLOAT, offsetof(iiif_config, timeout_s), "60", 0.1, 3600, NULL,
     "longest one request may take", 0},
    {"connect_timeout_s", AF_PARAM_FLOAT, offsetof(iiif_config, connect_timeout_s), "10", 0.1, 600, NULL,
     "longest a connection may take to open", 0},
    {"retries", AF_PARAM_INT, offsetof(iiif_config, retries), "3", 0, 20, NULL,
     "retries on 429, 5xx, timeouts and truncated bodies, waiting 0.5 s, 1 s, 2 s... (or Retry-After)", 0},
    {"delay_ms", AF_PARAM_INT, offsetof(iiif_config, delay_ms), "250", 0, 600000, NULL,
     "politeness: at least this long between two requests to one host", 0},
    {"max_manifests", AF_PARAM_INT, offsetof(iiif_config, max_manifests), "10000", 1, 1e9, NULL,
     "a collection reads at most this many manifests", 0},
};

const af_stage_desc af_stage_src_iiif = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "iiif",
    .doc = "canvases of a IIIF manifest or collection (file or URL), images through the IIIF Image API",
    .kind = AF_STAGE_SOURCE,
    .params = iiif_params,
    .n_params = AF_ARRAY_LEN(iiif_params),
    .config_size = sizeof(iiif_config),
    .batch_size = 1,
    .create = iiif_create,
    .next = iiif_next,
    .count = iiif_count,
    .destroy = iiif_destroy,
};
