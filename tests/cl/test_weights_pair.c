/* Two-file models (af_weights_open_pair): lookups search the primary file
 * first, then the fallback (tensors, metadata, device uploads); pairs that
 * cannot work together are refused with one line naming both files: LLaMA
 * shape keys that differ, a projection width that is not the LLM's hidden
 * size, a tokenizer whose size is not the embedding rows, different
 * tokenizers, q and k rows in different RoPE layouts. */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/runtime.h"
#include "cl/weights.h"
#include "formats/gguf.h"

typedef struct {
  const char *name;
  uint64_t ne0, ne1; /* ne1 0 = 1-D */
  float value;
} spec_t;

/* Writes a small GGUF: optional tokenizer of n_tok pieces ("a", "b", ...; the
 * piece at `odd` (if >= 0) renamed), optional u32 keys, f32 tensors. */
static int write_file(const char *path, int n_tok, int odd, const char *const *keys, const uint32_t *vals,
                      int n_keys, const char *layout, const spec_t *t, int n_t) {
  af_gguf_writer *w = NULL;
  int rc = af_gguf_writer_new(&w);
  char names[64][8];
  const char *toks[64];
  for (int i = 0; i < n_tok && i < 64; i++) {
    snprintf(names[i], sizeof names[i], i == odd ? "z%d" : "t%d", i);
    toks[i] = names[i];
  }
  if (!rc && n_tok) rc = af_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
  if (!rc && n_tok) rc = af_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, (uint64_t)n_tok);
  for (int i = 0; !rc && i < n_keys; i++) rc = af_gguf_writer_set_u32(w, keys[i], vals[i]);
  if (!rc && layout) rc = af_gguf_writer_set_str(w, "artflow.rope_layout", layout);
  for (int i = 0; !rc && i < n_t; i++) {
    uint64_t ne[2] = {t[i].ne0, t[i].ne1};
    rc = af_gguf_writer_add_tensor(w, t[i].name, AF_GGML_F32, t[i].ne1 ? 2 : 1, ne);
  }
  if (!rc) rc = af_gguf_writer_begin(w, path);
  for (int i = 0; !rc && i < n_t; i++) {
    uint64_t n = t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1);
    float *v = malloc(n * sizeof *v);
    if (!v) return AF_ERR_NOMEM;
    for (uint64_t k = 0; k < n; k++) v[k] = t[i].value;
    rc = af_gguf_writer_append_f32(w, v, n);
    free(v);
  }
  if (!rc) rc = af_gguf_writer_finish(w);
  af_gguf_writer_free(w);
  return rc;
}

static char pa[4200], pb[4200];

/* expects af_weights_open_pair to fail with AF_ERR_MISMATCH and a message holding `what` */
static void refused(af_cl *cl, const char *what) {
  af_weights *w = NULL;
  af_error_clear();
  int rc = af_weights_open_pair(cl, pa, pb, &w);
  CHECK_MSG(rc == AF_ERR_MISMATCH, "%s: rc %d", what, rc);
  CHECK_MSG(strstr(af_error_message(), what) != NULL, "want '%s' in '%s'", what, af_error_message());
  CHECK_MSG(strstr(af_error_message(), "a.gguf") && !strchr(af_error_message(), '\n'),
            "one line naming a.gguf: %s", af_error_message());
  CHECK(w == NULL);
  af_weights_free(w);
  af_error_clear();
}

int main(void) {
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_weights_pair");
  const char *dir = af_test_tmpdir();
  snprintf(pa, sizeof pa, "%s/a.gguf", dir);
  snprintf(pb, sizeof pb, "%s/b.gguf", dir);
  const char *k[] = {"llama.embedding_length", "artflow.only_in_b"};
  uint32_t hv[] = {8, 7};

  /* a good pair: ours has the projection, a norm gain and the tokenizer; the
   * base file has the same norm (other value), embeddings and q/k */
  spec_t ta[] = {{"proj.weight", 4, 8, 1.0f}, {"blk.0.attn_norm.weight", 8, 0, 2.0f}};
  spec_t tb[] = {{"token_embd.weight", 8, 5, 0.5f},
                 {"blk.0.attn_norm.weight", 8, 0, 3.0f},
                 {"blk.0.attn_q.weight", 8, 8, 0.1f},
                 {"blk.0.attn_k.weight", 8, 8, 0.2f}};
  CHECK_OK(write_file(pa, 5, -1, k, hv, 1, "neox", ta, 2));
  CHECK_OK(write_file(pb, 5, -1, k, hv, 2, NULL, tb, 4));
  af_weights *w = NULL;
  CHECK_OK(af_weights_open_pair(cl, pa, pb, &w));
  if (w) {
    CHECK(af_weights_fallback(w) != NULL);
    CHECK(af_weights_meta(w, "llama.embedding_length") == af_weights_gguf(w)); /* in both: ours */
    CHECK(af_weights_meta(w, "artflow.only_in_b") == af_weights_fallback(w));  /* only in the base */
    CHECK(af_weights_meta(w, "nowhere") == af_weights_gguf(w));
    CHECK(af_weights_tensor_file(w, "blk.0.attn_q.weight") == af_weights_fallback(w));
    CHECK(af_weights_tensor_file(w, "nowhere") == NULL);
    const af_gguf_tensor *n = af_weights_find(w, "blk.0.attn_norm.weight");
    CHECK(n && ((const float *)n->data)[0] == 2.0f); /* ours overrides the base's */
    const af_dtensor *d = NULL;
    float back[8] = {0};
    uint64_t ne[2] = {8, 5};
    CHECK_OK(af_weights_expect(w, "token_embd.weight", AF_GGML_F32, 2, ne, &d));
    af_queue *q = NULL;
    CHECK_OK(af_queue_new(cl, &q));
    if (d && q) {
      CHECK_OK(af_queue_read(q, d->mem, 0, sizeof back, back));
      CHECK(back[0] == 0.5f && back[7] == 0.5f);
    }
    af_queue_free(q);
    af_error_clear();
    CHECK(af_weights_get(w, "nowhere", -1, &d) == AF_ERR_NOT_FOUND);
    CHECK(strstr(af_error_message(), "missing in both") != NULL);
    af_error_clear();
  }
  af_weights_free(w);

  /* a different hidden size */
  uint32_t hv2[] = {16};
  CHECK_OK(write_file(pb, 5, -1, k, hv2, 1, NULL, tb, 4));
  refused(cl, "llama.embedding_length is 8 but 16");
  /* the projection's width is not the LLM's hidden size */
  spec_t tb16[] = {{"token_embd.weight", 16, 5, 0.5f}};
  CHECK_OK(write_file(pb, 5, -1, NULL, NULL, 0, NULL, tb16, 1));
  refused(cl, "the projection gives width 8 but the LLM");
  /* 6 embedding rows for a 5-token tokenizer (Vicuna v0's 32001 vs 32000) */
  spec_t tb6[] = {{"token_embd.weight", 8, 6, 0.5f}};
  CHECK_OK(write_file(pb, 0, -1, NULL, NULL, 0, NULL, tb6, 1));
  refused(cl, "vocabulary of 5 tokens but token_embd.weight");
  /* tokenizers of different sizes, and of equal size but other pieces */
  CHECK_OK(write_file(pb, 6, -1, NULL, NULL, 0, NULL, tb6, 1));
  refused(cl, "vocabulary of 5 tokens but 6");
  CHECK_OK(write_file(pb, 5, 3, NULL, NULL, 0, NULL, tb, 1));
  refused(cl, "token 3 differs");
  /* q from ours (HF/neox rows), k from a llama.cpp file (interleaved rows) */
  spec_t taq[] = {{"proj.weight", 4, 8, 1.0f}, {"blk.0.attn_q.weight", 8, 8, 0.1f}};
  spec_t tbk[] = {{"token_embd.weight", 8, 5, 0.5f}, {"blk.0.attn_k.weight", 8, 8, 0.2f}};
  CHECK_OK(write_file(pa, 5, -1, NULL, NULL, 0, "neox", taq, 2));
  CHECK_OK(write_file(pb, 5, -1, NULL, NULL, 0, NULL, tbk, 2));
  refused(cl, "attn_q rows in neox layout");

  af_cl_close(cl);
  return af_test_done("test_weights_pair");
}
