/* Model tensor layout, hyper-parameter metadata, and random-weight models
 * (see mkmodel.h and docs/model-format.md). */
#include "convert/mkmodel.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"

typedef struct {
  af_tspec *v;
  size_t n, cap;
  int err;
} list;

static void add(list *l, af_tkind kind, int layer, uint32_t nd, uint64_t ne0, uint64_t ne1, uint64_t ne2,
                uint64_t ne3, const char *fmt, ...) __attribute__((format(printf, 9, 10)));

static void add(list *l, af_tkind kind, int layer, uint32_t nd, uint64_t ne0, uint64_t ne1, uint64_t ne2,
                uint64_t ne3, const char *fmt, ...) {
  if (l->err) return;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    af_tspec *p = realloc(l->v, cap * sizeof *p);
    if (!p) {
      l->err = af_err(AF_ERR_NOMEM, "out of memory");
      return;
    }
    l->v = p;
    l->cap = cap;
  }
  af_tspec *t = &l->v[l->n++];
  memset(t, 0, sizeof *t);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->name, sizeof t->name, fmt, ap);
  va_end(ap);
  t->kind = kind;
  t->layer = layer;
  t->n_dims = nd;
  t->ne[0] = ne0, t->ne[1] = ne1, t->ne[2] = ne2, t->ne[3] = ne3;
}

/* Linear layer: PyTorch weight [out, in] is ggml ne {in, out}. */
static void linear(list *l, int layer, uint64_t in, uint64_t out, int bias, const char *base) {
  add(l, AF_TK_MATRIX, layer, 2, in, out, 1, 1, "%s.weight", base);
  if (bias) add(l, AF_TK_BIAS, layer, 1, out, 1, 1, 1, "%s.bias", base);
}

static void norm(list *l, int layer, uint64_t w, int bias, const char *base) {
  add(l, AF_TK_GAIN, layer, 1, w, 1, 1, 1, "%s.weight", base);
  if (bias) add(l, AF_TK_BIAS, layer, 1, w, 1, 1, 1, "%s.bias", base);
}

int af_model_layout(const af_arch *a, af_tspec **out, size_t *n) {
  list l = {0};
  char b[64];
  uint64_t W = (uint64_t)a->vision.width, P = (uint64_t)a->vision.patch_size;
  uint64_t grid = (uint64_t)(a->vision.image_size / a->vision.patch_size);
  add(&l, AF_TK_OTHER, -1, 4, P, P, 3, W, "v.patch_embd.weight");
  add(&l, AF_TK_BIAS, -1, 1, W, 1, 1, 1, "v.patch_embd.bias");
  add(&l, AF_TK_OTHER, -1, 1, W, 1, 1, 1, "v.cls");
  add(&l, AF_TK_OTHER, -1, 2, W, grid * grid + 1, 1, 1, "v.pos_embd");
  for (int i = 0; i < a->vision.layers; i++) {
    snprintf(b, sizeof b, "v.blk.%d.ln1", i), norm(&l, i, W, 1, b);
    snprintf(b, sizeof b, "v.blk.%d.attn_qkv", i), linear(&l, i, W, 3 * W, 1, b);
    snprintf(b, sizeof b, "v.blk.%d.attn_out", i), linear(&l, i, W, W, 1, b);
    snprintf(b, sizeof b, "v.blk.%d.ln2", i), norm(&l, i, W, 1, b);
    snprintf(b, sizeof b, "v.blk.%d.ffn_up", i), linear(&l, i, W, (uint64_t)a->vision.mlp_width, 1, b);
    snprintf(b, sizeof b, "v.blk.%d.ffn_down", i), linear(&l, i, (uint64_t)a->vision.mlp_width, W, 1, b);
  }
  norm(&l, -1, W, 1, "v.ln_vision");

  uint64_t Q = (uint64_t)a->qformer.width, F = (uint64_t)a->qformer.ffn_width;
  add(&l, AF_TK_OTHER, -1, 2, Q, (uint64_t)a->qformer.queries, 1, 1, "q.query_tokens");
  norm(&l, -1, Q, 1, "q.ln_emb");
  for (int i = 0; i < a->qformer.layers; i++) {
    snprintf(b, sizeof b, "q.blk.%d.sa_q", i), linear(&l, i, Q, Q, 1, b);
    snprintf(b, sizeof b, "q.blk.%d.sa_k", i), linear(&l, i, Q, Q, 1, b);
    snprintf(b, sizeof b, "q.blk.%d.sa_v", i), linear(&l, i, Q, Q, 1, b);
    snprintf(b, sizeof b, "q.blk.%d.sa_out", i), linear(&l, i, Q, Q, 1, b);
    snprintf(b, sizeof b, "q.blk.%d.sa_ln", i), norm(&l, i, Q, 1, b);
    if (i % a->qformer.cross_attention_every == 0) {
      snprintf(b, sizeof b, "q.blk.%d.ca_q", i), linear(&l, i, Q, Q, 1, b);
      snprintf(b, sizeof b, "q.blk.%d.ca_k", i), linear(&l, i, W, Q, 1, b);
      snprintf(b, sizeof b, "q.blk.%d.ca_v", i), linear(&l, i, W, Q, 1, b);
      snprintf(b, sizeof b, "q.blk.%d.ca_out", i), linear(&l, i, Q, Q, 1, b);
      snprintf(b, sizeof b, "q.blk.%d.ca_ln", i), norm(&l, i, Q, 1, b);
    }
    snprintf(b, sizeof b, "q.blk.%d.ffn_up", i), linear(&l, i, Q, F, 1, b);
    snprintf(b, sizeof b, "q.blk.%d.ffn_down", i), linear(&l, i, F, Q, 1, b);
    snprintf(b, sizeof b, "q.blk.%d.ffn_ln", i), norm(&l, i, Q, 1, b);
  }
  uint64_t H = (uint64_t)a->llm.hidden, V = (uint64_t)a->llm.vocab, FF = (uint64_t)a->llm.ffn;
  uint64_t KV = H / (uint64_t)a->llm.heads * (uint64_t)a->llm.kv_heads;
  linear(&l, -1, Q, H, 1, "proj");
  add(&l, AF_TK_MATRIX, -1, 2, H, V, 1, 1, "token_embd.weight");
  for (int i = 0; i < a->llm.layers; i++) {
    snprintf(b, sizeof b, "blk.%d.attn_norm", i), norm(&l, i, H, 0, b);
    snprintf(b, sizeof b, "blk.%d.attn_q", i), linear(&l, i, H, H, 0, b);
    snprintf(b, sizeof b, "blk.%d.attn_k", i), linear(&l, i, H, KV, 0, b);
    snprintf(b, sizeof b, "blk.%d.attn_v", i), linear(&l, i, H, KV, 0, b);
    snprintf(b, sizeof b, "blk.%d.attn_output", i), linear(&l, i, H, H, 0, b);
    if (a->llm.adapter_width > 0) {
      snprintf(b, sizeof b, "blk.%d.adapter_down", i), linear(&l, i, H, (uint64_t)a->llm.adapter_width, 1, b);
      snprintf(b, sizeof b, "blk.%d.adapter_up", i), linear(&l, i, (uint64_t)a->llm.adapter_width, H, 1, b);
    }
    snprintf(b, sizeof b, "blk.%d.ffn_norm", i), norm(&l, i, H, 0, b);
    snprintf(b, sizeof b, "blk.%d.ffn_gate", i), linear(&l, i, H, FF, 0, b);
    snprintf(b, sizeof b, "blk.%d.ffn_up", i), linear(&l, i, H, FF, 0, b);
    snprintf(b, sizeof b, "blk.%d.ffn_down", i), linear(&l, i, FF, H, 0, b);
  }
  norm(&l, -1, H, 0, "output_norm");
  add(&l, AF_TK_MATRIX, -1, 2, H, V, 1, 1, "output.weight");
  if (l.err) {
    free(l.v);
    return l.err;
  }
  *out = l.v;
  *n = l.n;
  return 0;
}

int af_model_store_type(const af_tspec *t, int type) {
  if (t->kind != AF_TK_MATRIX || type == AF_GGML_F32) return AF_GGML_F32;
  /* each component at the precision the original runs it (issue 20): the
   * ViT in fp16 (its vit_precision), the Q-Former and projection in fp32
   * (rounding them to fp16 moved the projected embeddings by ~5e-4 relative);
   * --type is the LLM's */
  if (!strncmp(t->name, "v.", 2)) return AF_GGML_F16;
  if (!strncmp(t->name, "q.", 2) || !strcmp(t->name, "proj.weight")) return AF_GGML_F32;
  if (t->ne[0] % af_ggml_blck_size(type)) return AF_GGML_F16; /* rows don't fit the quant block */
  return type;
}

int af_model_write_meta(af_gguf_writer *w, const af_arch *a, int type) {
  int rc = 0;
#define S(k, v) (rc = rc ? rc : af_gguf_writer_set_str(w, k, v))
#define U(k, v) (rc = rc ? rc : af_gguf_writer_set_u32(w, k, (uint32_t)(v)))
#define FL(k, v) (rc = rc ? rc : af_gguf_writer_set_f32(w, k, v))
  S("general.architecture", a->llm.adapter_width > 0 ? "artgpt4" : "minigpt4");
  S("general.name", a->name);
  /* llama.cpp's file-type enum (llama_ftype), as gguf-py and llama.cpp read
   * it; format "1" files held the ggml type id here (formats/gguf_ftype.c) */
  U("general.file_type", (uint32_t)af_llama_ftype_from_ggml(type));
  /* 128-byte aligned tensor data: CPU OpenCL devices (PoCL:
   * CL_DEVICE_MEM_BASE_ADDR_ALIGN = 1024 bits) can then use the mmap'd
   * tensors in place as weight buffers (cl/weights.c), instead of a copy */
  U("general.alignment", AF_GGUF_MODEL_ALIGNMENT);
  S("artflow.format", "2");
  /* our LLM q/k rows are in Hugging Face order: RoPE pairs dims (i, i + d/2) */
  S("artflow.rope_layout", "neox");
  U("llama.context_length", a->llm.context_length);
  U("llama.embedding_length", a->llm.hidden);
  U("llama.block_count", a->llm.layers);
  U("llama.feed_forward_length", a->llm.ffn);
  U("llama.attention.head_count", a->llm.heads);
  U("llama.attention.head_count_kv", a->llm.kv_heads);
  U("llama.rope.dimension_count", a->llm.hidden / a->llm.heads);
  U("llama.vocab_size", a->llm.vocab);
  FL("llama.attention.layer_norm_rms_epsilon", a->llm.rms_eps);
  FL("llama.rope.freq_base", a->llm.rope_base);
  U("artflow.adapter.width", a->llm.adapter_width > 0 ? a->llm.adapter_width : 0);
  if (a->llm.gen_set && !rc) rc = af_gguf_writer_set_i32(w, "artflow.generate.bos_token_id", a->llm.gen_bos);
  if (a->llm.gen_set && !rc) rc = af_gguf_writer_set_i32(w, "artflow.generate.eos_token_id", a->llm.gen_eos);
  U("vision.image_size", a->vision.image_size);
  U("vision.patch_size", a->vision.patch_size);
  U("vision.embedding_length", a->vision.width);
  U("vision.head_count", a->vision.heads);
  U("vision.feed_forward_length", a->vision.mlp_width);
  U("vision.block_count", a->vision.layers);
  FL("vision.attention.layer_norm_epsilon", a->vision.ln_eps);
  FL("vision.ln_vision_epsilon", a->vision.ln_vision_eps);
  if (!rc) rc = af_gguf_writer_set_arr(w, "vision.image_mean", AF_GGUF_FLOAT32, a->vision.mean, 3);
  if (!rc) rc = af_gguf_writer_set_arr(w, "vision.image_std", AF_GGUF_FLOAT32, a->vision.std, 3);
  /* the same facts under llama.cpp's CLIP (mmproj) key names, for tools that
   * know those; artflow reads vision.* (files made before have only those) */
  U("clip.vision.image_size", a->vision.image_size);
  U("clip.vision.patch_size", a->vision.patch_size);
  U("clip.vision.embedding_length", a->vision.width);
  U("clip.vision.feed_forward_length", a->vision.mlp_width);
  U("clip.vision.block_count", a->vision.layers);
  U("clip.vision.attention.head_count", a->vision.heads);
  FL("clip.vision.attention.layer_norm_epsilon", a->vision.ln_eps);
  if (!rc) rc = af_gguf_writer_set_arr(w, "clip.vision.image_mean", AF_GGUF_FLOAT32, a->vision.mean, 3);
  if (!rc) rc = af_gguf_writer_set_arr(w, "clip.vision.image_std", AF_GGUF_FLOAT32, a->vision.std, 3);
  U("qformer.embedding_length", a->qformer.width);
  U("qformer.block_count", a->qformer.layers);
  U("qformer.head_count", a->qformer.heads);
  U("qformer.feed_forward_length", a->qformer.ffn_width);
  U("qformer.query_count", a->qformer.queries);
  U("qformer.cross_attention_every", a->qformer.cross_attention_every);
  FL("qformer.attention.layer_norm_epsilon", a->qformer.ln_eps);
  S("artflow.prompt.template", a->prompt.template_);
  S("artflow.prompt.default_question", a->prompt.default_question);
  if (!rc) {
    const char *stops[AF_ARCH_MAX_STOP];
    for (int i = 0; i < a->prompt.n_stop; i++) stops[i] = a->prompt.stop[i];
    rc = af_gguf_writer_set_arr_str(w, "artflow.prompt.stop", stops, NULL, (uint64_t)a->prompt.n_stop);
  }
#undef S
#undef U
#undef FL
  return rc;
}

/* splitmix64 -> Box-Muller: deterministic per seed, independent of libc */
static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Approximately normal numbers, cheaply: the sum of four 16-bit uniforms from
 * one 64-bit draw (Irwin-Hall, n = 4) rescaled to unit variance.  Bounded at
 * +-3.46 sigma, which random test weights do not mind; no libm call keeps a
 * full-size 13B model at a few minutes. */
typedef struct {
  uint64_t s;
} nrng;

static float normal(nrng *r) {
  uint64_t x = next_u64(&r->s);
  uint32_t sum = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) + (uint32_t)((x >> 32) & 0xffff) +
                 (uint32_t)(x >> 48);
  /* sum/65536 has mean 2 and variance 4/12 */
  return ((float)sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

int af_mkmodel(const af_arch *arch, const char *arch_path, const af_mkmodel_opts *o, const char *path) {
  af_arch a = *arch;
  af_vocab voc = {0};
  af_tspec *ts = NULL;
  size_t nt = 0;
  af_gguf_writer *w = NULL;
  float *buf = NULL;
  int rc = o->tokenizer ? af_vocab_load_spm(o->tokenizer, &voc) : af_vocab_builtin(&voc);
  if (rc) goto out;
  if (a.llm.vocab <= 0) a.llm.vocab = (int)voc.n;
  if ((rc = af_arch_require_llm(&a, arch_path))) goto out;
  if ((size_t)a.llm.vocab < voc.n) {
    rc = af_err(AF_ERR_CONFIG, "%s: llm.vocab %d is smaller than the tokenizer (%zu pieces)", arch_path,
                a.llm.vocab, voc.n);
    goto out;
  }
  if ((rc = af_vocab_pad(&voc, (size_t)a.llm.vocab, NULL, 0))) goto out;
  if ((rc = af_gguf_writer_new(&w)) || (rc = af_model_write_meta(w, &a, o->type)) ||
      (rc = af_gguf_writer_set_str(w, "artflow.demo", "random weights from artflow mkmodel")) ||
      (rc = af_vocab_write(w, &voc)) || (rc = af_model_layout(&a, &ts, &nt)))
    goto out;
  for (size_t i = 0; i < nt; i++)
    if ((rc = af_gguf_writer_add_tensor(w, ts[i].name, af_model_store_type(&ts[i], o->type), ts[i].n_dims,
                                        ts[i].ne)))
      goto out;
  if ((rc = af_gguf_writer_begin(w, path))) goto out;
  uint64_t buf_cap = 0;
  nrng seed = {o->seed};
  for (size_t i = 0; i < nt; i++) {
    const af_tspec *t = &ts[i];
    uint64_t row = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    uint64_t per = row >= (1u << 18) ? 1 : (1u << 18) / row; /* ~1 MiB of floats per chunk */
    if (per * row > buf_cap) {
      float *nb = realloc(buf, sizeof(float) * (size_t)(per * row));
      if (!nb) {
        rc = af_err(AF_ERR_NOMEM, "out of memory");
        goto out;
      }
      buf = nb;
      buf_cap = per * row;
    }
    for (uint64_t r = 0; r < rows; r += per) {
      uint64_t k = rows - r < per ? rows - r : per;
      for (uint64_t j = 0; j < k * row; j++)
        buf[j] = t->kind == AF_TK_GAIN ? 1.0f : t->kind == AF_TK_BIAS ? 0.0f : 0.02f * normal(&seed);
      if ((rc = af_gguf_writer_append_f32(w, buf, k * row))) goto out;
    }
    if (o->log && (i + 1) % 64 == 0) fprintf(o->log, "mkmodel: %zu/%zu tensors\n", i + 1, nt);
  }
  rc = af_gguf_writer_finish(w);
out:
  free(buf);
  free(ts);
  af_gguf_writer_free(w);
  af_vocab_free(&voc);
  return rc;
}
