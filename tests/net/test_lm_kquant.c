/* A base LLM with K-quant matrices (as llama.cpp's Q4_K_M files mix them:
 * Q4_K, Q5_K and Q6_K, token_embd and output included) runs through net/lm.c
 * with the matrices used in place, and gives the logits of the same model
 * stored as fp32 (the values formats/kquant.c dequantises the blocks to):
 * a 2-layer LLaMA (hidden 256, FFN 512, 2 heads of 128, vocabulary 300, both
 * files written here), prefill of 12 positions then 3 decode steps, KV cache
 * fp32 for both.  Tolerance: normalised error <= 1e-5 per logits vector
 * (prefill widens the blocks to the same fp32 values; the decode GEMVs sum in
 * another order than the fp32 ones), and the same greedy tokens. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "af_test.h"
#include "cl/devprofile.h"
#include "formats/gguf.h"
#include "formats/kquant.h"
#include "formats/quant.h"
#include "net/lm.h"

#define H 256
#define F 512
#define V 300
#define L 2

static af_rng R;

typedef struct {
  char name[48];
  int type;
  uint64_t ne0, ne1;
  void *blocks; /* the K-quant bytes (or fp32 gains) */
  float *vals;  /* their fp32 values */
} tens;

static void make(tens *t, const char *name, int type, uint64_t ne0, uint64_t ne1) {
  snprintf(t->name, sizeof t->name, "%s", name);
  t->type = type, t->ne0 = ne0, t->ne1 = ne1;
  size_t n = (size_t)(ne0 * ne1);
  t->vals = malloc(n * sizeof(float));
  if (type == AF_GGML_F32) { /* norm gains near 1 */
    for (size_t i = 0; i < n; i++) t->vals[i] = af_rng_uniform(&R, 0.8f, 1.2f);
    t->blocks = NULL;
    return;
  }
  size_t bsz = (size_t)af_kq_block_bytes(type), nsb = n / 256;
  uint8_t *b = malloc(nsb * bsz);
  for (size_t i = 0; i < nsb * bsz; i++) b[i] = (uint8_t)af_rng_u32(&R);
  for (size_t s = 0; s < nsb; s++) {
    uint8_t *p = b + s * bsz;
    uint16_t d = af_f32_to_f16(af_rng_uniform(&R, 2e-4f, 1e-3f)),
             m = af_f32_to_f16(af_rng_uniform(&R, 1e-4f, 5e-4f));
    int at = type == AF_GGML_Q6_K ? 208 : 0;
    p[at] = (uint8_t)d, p[at + 1] = (uint8_t)(d >> 8);
    if (type != AF_GGML_Q6_K) p[2] = (uint8_t)m, p[3] = (uint8_t)(m >> 8);
  }
  af_dequantize_kq(type, b, t->vals, n);
  t->blocks = b;
}

static void write_model(const char *path, const tens *ts, int nt, int as_f32) {
  af_gguf_writer *w = NULL;
  CHECK_OK(af_gguf_writer_new(&w));
  if (!w) return;
  CHECK_OK(af_gguf_writer_set_str(w, "general.architecture", "llama"));
  CHECK_OK(af_gguf_writer_set_u32(w, "general.alignment", 128));
  CHECK_OK(af_gguf_writer_set_u32(w, "llama.embedding_length", H));
  CHECK_OK(af_gguf_writer_set_u32(w, "llama.block_count", L));
  CHECK_OK(af_gguf_writer_set_u32(w, "llama.feed_forward_length", F));
  CHECK_OK(af_gguf_writer_set_u32(w, "llama.attention.head_count", 2));
  CHECK_OK(af_gguf_writer_set_u32(w, "llama.context_length", 64));
  for (int i = 0; i < nt; i++) {
    uint64_t ne[2] = {ts[i].ne0, ts[i].ne1};
    CHECK_OK(af_gguf_writer_add_tensor(w, ts[i].name, as_f32 ? AF_GGML_F32 : ts[i].type,
                                       ts[i].ne1 > 1 ? 2 : 1, ne));
  }
  CHECK_OK(af_gguf_writer_begin(w, path));
  for (int i = 0; i < nt; i++) {
    size_t n = (size_t)(ts[i].ne0 * ts[i].ne1);
    if (as_f32 || ts[i].type == AF_GGML_F32)
      CHECK_OK(af_gguf_writer_append_f32(w, ts[i].vals, n));
    else
      CHECK_OK(af_gguf_writer_append(w, ts[i].blocks, n / 256 * (size_t)af_kq_block_bytes(ts[i].type)));
  }
  CHECK_OK(af_gguf_writer_finish(w));
  af_gguf_writer_free(w);
}

/* logits (4 x V): the prefill's last position, then 3 greedy decode steps */
static void run(af_cl *cl, const char *path, float *out, int *ids) {
  af_weights *w = NULL;
  af_lm *lm = NULL;
  af_queue *q = NULL;
  CHECK_OK(af_weights_open(cl, path, &w));
  if (w) CHECK_OK(af_lm_new(cl, w, 32, &lm));
  CHECK_OK(af_queue_new(cl, &q));
  if (lm && q) {
    int32_t prompt[12];
    float x[12 * H];
    for (int i = 0; i < 12; i++) prompt[i] = (i * 37 + 5) % V;
    CHECK_OK(af_lm_embed(lm, prompt, 12, x));
    CHECK_OK(af_lm_prefill(lm, q, 0, x, 12, 0, out));
    for (int s = 0; s < 3; s++) {
      int best = 0;
      for (int v = 1; v < V; v++)
        if (out[s * V + v] > out[s * V + best]) best = v;
      ids[s] = best;
      CHECK_OK(af_lm_embed(lm, &best, 1, x));
      CHECK_OK(af_lm_prefill(lm, q, 0, x, 1, 12 + s, out + (s + 1) * V));
    }
  }
  af_queue_free(q);
  af_lm_free(lm);
  af_weights_free(w);
}

int main(void) {
  af_rng_seed(&R, 42);
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_lm_kquant");
  cl->profile->kv_cache = AF_KV_F32; /* both runs: only the weights differ */
  tens ts[3 + 9 * L];
  int nt = 0;
  make(&ts[nt++], "token_embd.weight", AF_GGML_Q4_K, H, V);
  make(&ts[nt++], "output_norm.weight", AF_GGML_F32, H, 1);
  make(&ts[nt++], "output.weight", AF_GGML_Q6_K, H, V);
  static const char *const mats[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"};
  static const int mt[] = {AF_GGML_Q4_K, AF_GGML_Q5_K, AF_GGML_Q6_K,
                           AF_GGML_Q4_K, AF_GGML_Q4_K, AF_GGML_Q5_K};
  for (int l = 0; l < L; l++) {
    char n[48];
    snprintf(n, sizeof n, "blk.%d.attn_norm.weight", l), make(&ts[nt++], n, AF_GGML_F32, H, 1);
    snprintf(n, sizeof n, "blk.%d.ffn_norm.weight", l), make(&ts[nt++], n, AF_GGML_F32, H, 1);
    for (int i = 0; i < 6; i++)
      snprintf(n, sizeof n, "blk.%d.%s.weight", l, mats[i]),
          make(&ts[nt++], n, mt[(i + l) % 6], H, i < 4 ? H : F);
    snprintf(n, sizeof n, "blk.%d.ffn_down.weight", l), make(&ts[nt++], n, AF_GGML_Q6_K, F, H);
  }
  char dir[] = "/tmp/aftest-kq-XXXXXX", pk[256], pf[256];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(pk, sizeof pk, "%s/kq.gguf", dir), snprintf(pf, sizeof pf, "%s/f32.gguf", dir);
  write_model(pk, ts, nt, 0);
  write_model(pf, ts, nt, 1);
  float *lk = calloc(4 * V, sizeof(float)), *lf = calloc(4 * V, sizeof(float));
  int ik[3] = {0}, iff[3] = {0};
  run(cl, pf, lf, iff);
  run(cl, pk, lk, ik);
  for (int s = 0; s < 4; s++) {
    double e = af_nerr(lk + s * V, lf + s * V, V);
    printf("%s: K-quant vs fp32 logits, normalised error %.3g (tolerance 1e-5)\n", s ? "decode" : "prefill",
           e);
    CHECK(e <= 1e-5);
  }
  CHECK(!memcmp(ik, iff, sizeof ik));
  remove(pk), remove(pf), rmdir(dir);
  for (int i = 0; i < nt; i++) free(ts[i].blocks), free(ts[i].vals);
  free(lk), free(lf);
  af_cl_close(cl);
  return af_test_done("test_lm_kquant");
}
