/* Models that parse but cannot be right are refused at load with the file
 * and the key named, and `artflow inspect` flags the same key (issue 21):
 * NaN and negative norm epsilons (LLM, ViT, Q-Former), zero LLM layers, a
 * block count of 2^31-1 (was a bare "out of memory"), zero heads (was a
 * division by zero), heads that do not divide the width, and fewer
 * embedding rows than the tokenizer has pieces.  Each case patches one value
 * of the converted tiny model in place. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "convert/inspect.h"
#include "formats/gguf.h"
#include "net/lm.h"
#include "net/vision.h"

static char *model;
static size_t model_n;
static char patched[1024];
static const char *tmp;

/* Offset of the value of metadata key `key` (after its u32 type), checking
 * the type; 0 when absent. */
static size_t value_at(const char *b, size_t n, const char *key, uint32_t type) {
  size_t kl = strlen(key);
  for (size_t i = 8; i + kl + 8 < n; i++) {
    uint64_t len;
    memcpy(&len, b + i - 8, 8);
    if (len != kl || memcmp(b + i, key, kl)) continue;
    uint32_t t;
    memcpy(&t, b + i + kl, 4);
    CHECK_MSG(t == type, "%s: type %u, expected %u", key, t, type);
    return i + kl + 4;
  }
  CHECK_MSG(0, "key %s not found", key);
  return 0;
}

/* Writes the model with `bytes` at the value of `key` (or, type 99, at the
 * second dimension of tensor `key`'s info) to `patched`. */
static void write_patched(const char *key, uint32_t type, const void *bytes, size_t nb) {
  char *b = malloc(model_n);
  memcpy(b, model, model_n);
  size_t at = type == 99 ? value_at(b, model_n, key, 2) + 8 : value_at(b, model_n, key, type);
  if (at) memcpy(b + at, bytes, nb); /* type 99: u32 n_dims (2) read as the "type", then ne[0], ne[1] */
  snprintf(patched, sizeof patched, "%s/patched.gguf", tmp);
  FILE *f = fopen(patched, "wb");
  CHECK(f && fwrite(b, 1, model_n, f) == model_n);
  if (f) fclose(f);
  free(b);
}

enum { LM, VIT, QF };

static void expect_refused(af_cl *cl, const char *what, int reader, const char *key, const char *why) {
  af_weights *w = NULL;
  af_error_clear();
  int rc = af_weights_open(cl, patched, &w);
  if (!rc) {
    if (reader == LM) {
      af_lm *lm = NULL;
      rc = af_lm_new(cl, w, 64, &lm);
      af_lm_free(lm);
    } else if (reader == VIT) {
      af_vit_shape s;
      rc = af_vit_probe(w, 0, &s);
    } else {
      af_qformer_shape s;
      rc = af_qformer_probe(w, 257, &s);
    }
  }
  const char *m = af_error_message();
  printf("  %-26s -> %s\n", what, m);
  CHECK_MSG(rc == AF_ERR_FORMAT, "%s: rc %d (%s)", what, rc, af_strerror(rc));
  char want[200];
  snprintf(want, sizeof want, "patched.gguf: key '%s': ", key);
  CHECK_MSG(strstr(m, want) && strstr(m, why), "%s: message '%s' lacks '%s' / '%s'", what, m, want, why);
  af_error_clear();
  af_weights_free(w);
  /* inspect flags the same key and fails */
  char out_path[1100];
  snprintf(out_path, sizeof out_path, "%s/inspect.txt", tmp);
  FILE *o = fopen(out_path, "w");
  CHECK(af_model_inspect_print(patched, o) == AF_ERR_FORMAT);
  af_error_clear();
  fclose(o);
  char *text = af_test_slurp(out_path, NULL);
  snprintf(want, sizeof want, "  FLAGGED %s: ", key);
  CHECK_MSG(text && strstr(text, want), "%s: inspect does not flag %s", what, key);
  free(text);
}

int main(void) {
  char path[1024];
  tmp = af_test_tmpdir();
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, path, sizeof path));
  model = af_test_slurp(path, &model_n);
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!model || !cl) return af_test_done("test_model_checks");

  /* the unpatched model passes: readers and inspect */
  FILE *o = fopen("/dev/null", "w");
  CHECK_OK(af_model_inspect_print(path, o));
  fclose(o);

  float nan_f = NAN, neg = -1e-6f;
  uint32_t zero = 0, big = 0x7fffffffu, seven = 7;
  uint64_t rows = 5;
  write_patched("llama.attention.layer_norm_rms_epsilon", AF_GGUF_FLOAT32, &nan_f, 4);
  expect_refused(cl, "LLM epsilon NaN", LM, "llama.attention.layer_norm_rms_epsilon", "nan: a norm epsilon");
  write_patched("vision.attention.layer_norm_epsilon", AF_GGUF_FLOAT32, &neg, 4);
  expect_refused(cl, "ViT epsilon negative", VIT, "vision.attention.layer_norm_epsilon",
                 "must be a positive");
  write_patched("qformer.attention.layer_norm_epsilon", AF_GGUF_FLOAT32, &nan_f, 4);
  expect_refused(cl, "Q-Former epsilon NaN", QF, "qformer.attention.layer_norm_epsilon", "nan");
  write_patched("llama.block_count", AF_GGUF_UINT32, &zero, 4);
  expect_refused(cl, "zero LLM layers", LM, "llama.block_count", "needs at least one layer");
  write_patched("llama.block_count", AF_GGUF_UINT32, &big, 4);
  expect_refused(cl, "2^31-1 LLM layers", LM, "llama.block_count",
                 "2147483647 layers, but the file holds only");
  write_patched("llama.attention.head_count", AF_GGUF_UINT32, &zero, 4);
  expect_refused(cl, "zero LLM heads", LM, "llama.attention.head_count", "must be at least 1");
  write_patched("vision.head_count", AF_GGUF_UINT32, &seven, 4);
  expect_refused(cl, "ViT heads not dividing", VIT, "vision.head_count", "7 heads do not divide");
  write_patched("token_embd.weight", 99, &rows, 8);
  expect_refused(cl, "vocab below the tokenizer", LM, "tokenizer.ggml.tokens",
                 "but token_embd.weight has only 5 rows");

  free(model);
  af_cl_close(cl);
  return af_test_done("test_model_checks");
}
