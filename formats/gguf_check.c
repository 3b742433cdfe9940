/* Model files that parse but cannot be right (gguf.h, af_gguf_check_*): a
 * GGUF whose metadata says NaN or negative norm epsilons, zero layers, more
 * layers than the file has tensors, heads that do not divide the width, or
 * fewer embedding rows than the tokenizer has pieces would load and then
 * compute garbage, divide by zero or ask for terabytes ("out of memory" for
 * block_count = 2^31-1).  The model readers (net/vit.c, net/qformer.c,
 * net/lm.c) refuse such a file at load, naming the file and the key, and
 * `artflow inspect` lists every such key.  Keys absent from a file are not
 * checked here (a two-file model splits them); the readers say when a key
 * they need is missing. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/gguf.h"

typedef struct checker {
  const af_gguf *g;
  void (*fn)(void *user, const char *key, const char *why);
  void *user;
  int n;
} checker;

static void flag(checker *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void flag(checker *c, const char *key, const char *fmt, ...) {
  char why[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  c->n++;
  if (c->fn) c->fn(c->user, key, why);
}

/* The number behind `key` when it is an integer; 0 when absent. */
static int get_int(const af_gguf *g, const char *key, int64_t *v) {
  const af_gguf_value *x = af_gguf_find(g, key);
  if (!x) return 0;
  switch (x->type) {
    case AF_GGUF_UINT8:
    case AF_GGUF_UINT16:
    case AF_GGUF_UINT32:
    case AF_GGUF_UINT64:
      *v = x->v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)x->v.u;
      return 1;
    case AF_GGUF_INT8:
    case AF_GGUF_INT16:
    case AF_GGUF_INT32:
    case AF_GGUF_INT64:
      *v = x->v.i;
      return 1;
    default:
      return 0;
  }
}

static void check_eps(checker *c, const char *key) {
  const af_gguf_value *x = af_gguf_find(c->g, key);
  if (!x || (x->type != AF_GGUF_FLOAT32 && x->type != AF_GGUF_FLOAT64)) return;
  double e = x->v.f;
  if (!isfinite(e) || e <= 0 || e >= 1)
    flag(c, key, "%g: a norm epsilon must be a positive finite number below 1", e);
}

static void check_positive(checker *c, const char *key, int64_t max) {
  int64_t v;
  if (get_int(c->g, key, &v) && (v < 1 || v > max))
    flag(c, key, "%lld: must be 1..%lld", (long long)v, (long long)max);
}

/* block_count: at least one layer, and no more layers than the file holds
 * tensors for (each layer is several tensors) -- unless the layers live in
 * another file (a two-file model's base LLM). */
static void check_layers(checker *c, const char *key, const char *first_tensor) {
  int64_t v;
  if (!get_int(c->g, key, &v)) return;
  if (v < 1) {
    flag(c, key, "%lld: a model needs at least one layer", (long long)v);
    return;
  }
  if (first_tensor && !af_gguf_find_tensor(c->g, first_tensor)) return;
  uint64_t nt = af_gguf_n_tensors(c->g);
  if ((uint64_t)v > nt)
    flag(c, key, "%lld layers, but the file holds only %llu tensors", (long long)v, (unsigned long long)nt);
}

static void check_heads(checker *c, const char *heads_key, const char *width_key) {
  int64_t h, w;
  if (!get_int(c->g, heads_key, &h)) return;
  if (h < 1) {
    flag(c, heads_key, "%lld: must be at least 1", (long long)h);
    return;
  }
  if (get_int(c->g, width_key, &w) && w > 0 && w % h)
    flag(c, heads_key, "%lld heads do not divide %s = %lld", (long long)h, width_key, (long long)w);
}

static void check_vocab(checker *c) {
  const af_gguf_value *t = af_gguf_find(c->g, "tokenizer.ggml.tokens");
  const af_gguf_tensor *e = af_gguf_find_tensor(c->g, "token_embd.weight");
  if (!t || t->type != AF_GGUF_ARRAY || !e || e->n_dims != 2) return;
  if (e->ne[1] < t->v.arr.n)
    flag(c, "tokenizer.ggml.tokens",
         "%llu pieces, but token_embd.weight has only %llu rows: tokens past the embeddings cannot be "
         "looked up",
         (unsigned long long)t->v.arr.n, (unsigned long long)e->ne[1]);
}

int af_gguf_check_meaning(const af_gguf *g, void (*fn)(void *user, const char *key, const char *why),
                          void *user) {
  checker c = {g, fn, user, 0};
  static const char *const eps[] = {"vision.attention.layer_norm_epsilon", "vision.ln_vision_epsilon",
                                    "qformer.attention.layer_norm_epsilon",
                                    "llama.attention.layer_norm_rms_epsilon"};
  for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) check_eps(&c, eps[i]);
  check_layers(&c, "vision.block_count", NULL);
  check_layers(&c, "qformer.block_count", NULL);
  check_layers(&c, "llama.block_count", "blk.0.attn_q.weight");
  static const char *const sizes[] = {
      "vision.image_size",          "vision.patch_size",        "vision.embedding_length",
      "vision.feed_forward_length", "qformer.embedding_length", "qformer.feed_forward_length",
      "qformer.query_count",        "llama.embedding_length",   "llama.feed_forward_length"};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_positive(&c, sizes[i], 1 << 20);
  check_heads(&c, "vision.head_count", "vision.embedding_length");
  check_heads(&c, "qformer.head_count", "qformer.embedding_length");
  check_heads(&c, "llama.attention.head_count", "llama.embedding_length");
  const af_gguf_value *fb = af_gguf_find(g, "llama.rope.freq_base");
  if (fb && (fb->type == AF_GGUF_FLOAT32 || fb->type == AF_GGUF_FLOAT64) &&
      !(isfinite(fb->v.f) && fb->v.f > 0))
    flag(&c, "llama.rope.freq_base", "%g: must be a positive finite number", fb->v.f);
  check_vocab(&c);
  return c.n;
}

typedef struct first {
  char key[96], why[300];
} first;

static void keep_first(void *user, const char *key, const char *why) {
  first *f = user;
  if (f->key[0]) return;
  snprintf(f->key, sizeof f->key, "%s", key);
  snprintf(f->why, sizeof f->why, "%s", why);
}

int af_gguf_check_model(const af_gguf *g) {
  first f = {{0}, {0}};
  if (!g || af_gguf_check_meaning(g, keep_first, &f) == 0) return 0;
  return af_err(AF_ERR_FORMAT, "%s: key '%s': %s", af_gguf_path(g), f.key, f.why);
}
