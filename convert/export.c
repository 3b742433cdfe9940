/* The LLM part of an artflow model file as a llama.cpp LLaMA GGUF (see
 * export.h).  Everything is checked before the output is created: the
 * llama.* hyper-parameters (the two files of a two-file model must agree),
 * every tensor's shape against them, the tokenizer's length against the
 * embedding rows.  Then the tensors are copied in the order llama.cpp's
 * converter writes them, byte for byte from the mapping, except that q/k
 * rows of a file in Hugging Face order (artflow.rope_layout = "neox") are
 * permuted head by head into llama.cpp's interleaved order. */
#include "convert/export.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artflow/status.h"
#include "formats/gguf.h"

/* score and type llama.cpp's converter gives embedding rows that the
 * tokenizer does not have (FastChat's [PAD] row of Vicuna v0): "[PAD<id>]",
 * UNUSED; an artflow file names them "[PAD]" / "<extra_N>" (user-defined /
 * unused), which llama.cpp would match in text as a special token */
#define PAD_SCORE -1000.0f
#define TOKEN_UNUSED 5

typedef struct {
  char name[64];
  const af_gguf_tensor *t;
  const af_gguf *from; /* the file holding it */
  uint32_t heads;      /* q/k of a "neox" file: rows permuted per head of heads; else 0 */
} item;

typedef struct {
  const af_export_opts *o;
  af_gguf *g, *g2; /* the model; its base LLM file or NULL */
  uint32_t H, L, heads, kv_heads, ffn, ctx;
  uint64_t V;
  item *it;
  size_t n;
} ex;

static const char *name_of(const ex *e) {
  return e->o->llm ? "the model and its base LLM" : e->o->model;
}

static const af_gguf_tensor *find(const ex *e, const char *name, const af_gguf **from) {
  const af_gguf_tensor *t = af_gguf_find_tensor(e->g, name);
  *from = e->g;
  if (!t && e->g2) t = af_gguf_find_tensor(e->g2, name), *from = e->g2;
  return t;
}

enum { REQUIRED = 1, AGREE = 2 };

/* a hyper-parameter from our file, else the base LLM's (the lookup order of
 * a two-file model); AGREE: when both have it they must agree (the shape
 * keys the runtime checks); REQUIRED: absent everywhere is an error, else
 * dflt */
static int hp_u32(const ex *e, const char *key, int flags, uint32_t dflt, uint32_t *out) {
  uint32_t a = 0, b = 0;
  int ra = af_gguf_get_u32(e->g, key, &a);
  int rb = e->g2 ? af_gguf_get_u32(e->g2, key, &b) : AF_ERR_NOT_FOUND;
  if (ra && ra != AF_ERR_NOT_FOUND) return ra;
  if (rb && rb != AF_ERR_NOT_FOUND) return rb;
  if ((flags & AGREE) && !ra && !rb && a != b)
    return af_err(AF_ERR_MISMATCH, "%s: %s is %u but %u in %s", e->o->model, key, a, b, e->o->llm);
  if (ra && rb) {
    if (flags & REQUIRED)
      return af_err(AF_ERR_FORMAT, "%s: no %s: not a model with a LLaMA LLM", name_of(e), key);
    *out = dflt;
    return 0;
  }
  *out = ra ? b : a;
  return 0;
}

/* the file a key is read from: ours, else the base LLM's; NULL: neither */
static const af_gguf *hp_file(const ex *e, const char *key) {
  if (af_gguf_find(e->g, key)) return e->g;
  return e->g2 && af_gguf_find(e->g2, key) ? e->g2 : NULL;
}

/* q/k rows of this file are in Hugging Face order (no key: llama.cpp's) */
static int neox_rows(const af_gguf *f, int *neox) {
  const char *s = NULL;
  int rc = af_gguf_get_str(f, "artflow.rope_layout", &s);
  *neox = 0;
  if (rc == AF_ERR_NOT_FOUND) return 0;
  if (rc) return rc;
  if (strcmp(s, "neox"))
    return af_err(AF_ERR_FORMAT, "%s: artflow.rope_layout '%s' is not one artflow knows (neox)",
                  af_gguf_path(f), s);
  *neox = 1;
  return 0;
}

/* appends the tensor `name` with the shape the hyper-parameters give it */
static int need(ex *e, const char *name, uint32_t nd, uint64_t ne0, uint64_t ne1, uint32_t heads) {
  const af_gguf *from;
  const af_gguf_tensor *t = find(e, name, &from);
  if (!t) return af_err(AF_ERR_FORMAT, "%s: no tensor %s: not a model with a LLaMA LLM", name_of(e), name);
  uint64_t ne[2] = {ne0, ne1};
  int rc = af_gguf_expect_tensor(from, name, nd, ne, &t);
  if (rc) return rc;
  item *x = &e->it[e->n++];
  snprintf(x->name, sizeof x->name, "%s", name);
  x->t = t;
  x->from = from;
  x->heads = 0;
  int neox = 0;
  if (heads && (rc = neox_rows(from, &neox))) return rc;
  if (neox) x->heads = heads;
  return 0;
}

static int plan(ex *e) {
  uint32_t rot;
  int rc = 0;
  if ((rc = hp_u32(e, "llama.embedding_length", REQUIRED | AGREE, 0, &e->H)) ||
      (rc = hp_u32(e, "llama.block_count", REQUIRED | AGREE, 0, &e->L)) ||
      (rc = hp_u32(e, "llama.attention.head_count", REQUIRED | AGREE, 0, &e->heads)) ||
      (rc = hp_u32(e, "llama.feed_forward_length", REQUIRED | AGREE, 0, &e->ffn)) ||
      (rc = hp_u32(e, "llama.context_length", REQUIRED, 0, &e->ctx)) ||
      (rc = hp_u32(e, "llama.attention.head_count_kv", AGREE, e->heads, &e->kv_heads)))
    return rc;
  if (!e->H || !e->L || !e->heads || !e->kv_heads || e->H % e->heads || (e->H / e->heads) % 2 ||
      e->heads % e->kv_heads || e->L > 100000)
    return af_err(AF_ERR_FORMAT,
                  "%s: llama.embedding_length %u, block_count %u, head_count %u/%u do not make a LLaMA",
                  name_of(e), e->H, e->L, e->heads, e->kv_heads);
  if ((rc = hp_u32(e, "llama.rope.dimension_count", AGREE, e->H / e->heads, &rot))) return rc;
  if (rot != e->H / e->heads)
    return af_err(AF_ERR_FORMAT, "%s: llama.rope.dimension_count %u is not the head size %u (partial RoPE)",
                  name_of(e), rot, e->H / e->heads);
  if (!hp_file(e, "llama.attention.layer_norm_rms_epsilon"))
    return af_err(AF_ERR_FORMAT, "%s: no llama.attention.layer_norm_rms_epsilon", name_of(e));
  const af_gguf *from;
  const af_gguf_tensor *embd = find(e, "token_embd.weight", &from);
  if (!embd || embd->n_dims != 2)
    return af_err(AF_ERR_FORMAT, "%s: no 2-D tensor token_embd.weight: not a model with a LLaMA LLM",
                  name_of(e));
  e->V = embd->ne[1];
  if (!(e->it = calloc((size_t)e->L * 9 + 3, sizeof *e->it))) return af_err(AF_ERR_NOMEM, "out of memory");
  uint64_t H = e->H, F = e->ffn, KV = (uint64_t)e->H / e->heads * e->kv_heads;
  char b[64];
  rc = need(e, "token_embd.weight", 2, H, e->V, 0);
  for (uint32_t l = 0; l < e->L && !rc; l++) {
#define NEED(suffix, nd, a, c, h) \
  (snprintf(b, sizeof b, "blk.%u." suffix, l), rc = rc ? rc : need(e, b, nd, a, c, h))
    NEED("attn_norm.weight", 1, H, 1, 0);
    NEED("attn_q.weight", 2, H, H, e->heads);
    NEED("attn_k.weight", 2, H, KV, e->kv_heads);
    NEED("attn_v.weight", 2, H, KV, 0);
    NEED("attn_output.weight", 2, H, H, 0);
    NEED("ffn_norm.weight", 1, H, 1, 0);
    NEED("ffn_gate.weight", 2, H, F, 0);
    NEED("ffn_up.weight", 2, H, F, 0);
    NEED("ffn_down.weight", 2, F, H, 0);
#undef NEED
  }
  if (!rc) rc = need(e, "output_norm.weight", 1, H, 1, 0);
  /* no output.weight: llama.cpp ties it to token_embd, as the file's reader would */
  if (!rc && find(e, "output.weight", &from)) rc = need(e, "output.weight", 2, H, e->V, 0);
  return rc;
}

/* general.file_type: llama.cpp's enum of the type most matrix elements have */
static int file_type(const ex *e) {
  uint64_t count[64] = {0};
  int best = AF_GGML_F32;
  for (size_t i = 0; i < e->n; i++)
    if (e->it[i].t->n_dims == 2 && e->it[i].t->type >= 0 && e->it[i].t->type < 64)
      count[e->it[i].t->type] += e->it[i].t->n_elements;
  for (int t = 0; t < 64; t++)
    if (count[t] > count[best]) best = t;
  return af_llama_ftype_from_ggml(best);
}

/* tokenizer.*: the tokenizer artflow would use (ours, else the base file's),
 * rows beyond the tokenizer's own pieces spelled as llama.cpp's converter
 * spells them */
static int write_tokenizer(const ex *e, af_gguf_writer *w) {
  const af_gguf *tf = af_gguf_find(e->g, "tokenizer.ggml.tokens") || !e->g2 ? e->g : e->g2;
  const af_gguf_str *tok = NULL;
  uint64_t n = 0, ns, nt;
  int rc = af_gguf_get_arr_str(tf, "tokenizer.ggml.tokens", &tok, &n);
  if (rc == AF_ERR_NOT_FOUND)
    return af_err(AF_ERR_FORMAT, "%s: no tokenizer (tokenizer.ggml.tokens)", name_of(e));
  if (rc) return rc;
  if (n != e->V)
    return af_err(AF_ERR_MISMATCH, "%s: vocabulary of %llu tokens but token_embd.weight has %llu rows",
                  af_gguf_path(tf), (unsigned long long)n, (unsigned long long)e->V);
  uint32_t pieces = (uint32_t)n;
  if (af_gguf_get_u32(tf, "artflow.tokenizer.pieces", &pieces) == AF_ERR_FORMAT) return AF_ERR_FORMAT;
  const char **s = calloc(n, sizeof *s);
  uint64_t *len = calloc(n, sizeof *len);
  char *pads = calloc(n > pieces ? n - pieces : 1, 32);
  float *score = malloc(n * sizeof *score);
  int32_t *type = malloc(n * sizeof *type);
  ns = nt = n;
  if (!s || !len || !pads || !score || !type) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_gguf_get_arr_f32(tf, "tokenizer.ggml.scores", score, &ns);
  if (!rc) rc = af_gguf_get_arr_i32(tf, "tokenizer.ggml.token_type", type, &nt);
  if (rc == AF_ERR_NOT_FOUND || (!rc && (ns != n || nt != n)))
    rc = af_err(AF_ERR_FORMAT, "%s: tokenizer.ggml.scores / token_type do not have %llu entries",
                af_gguf_path(tf), (unsigned long long)n);
  for (uint64_t i = 0; !rc && i < n; i++) {
    s[i] = tok[i].s, len[i] = tok[i].len;
    if (i >= pieces && (type[i] == 4 || type[i] == TOKEN_UNUSED)) {
      char *p = pads + (i - pieces) * 32;
      len[i] = (uint64_t)snprintf(p, 32, "[PAD%llu]", (unsigned long long)i);
      s[i] = p, type[i] = TOKEN_UNUSED, score[i] = PAD_SCORE;
    }
  }
  if (!rc) rc = af_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, len, n);
  if (!rc) rc = af_gguf_writer_set_arr(w, "tokenizer.ggml.scores", AF_GGUF_FLOAT32, score, n);
  if (!rc) rc = af_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", AF_GGUF_INT32, type, n);
  free(s), free(len), free(pads), free(score), free(type);
  const char *model = NULL;
  if (!rc && af_gguf_get_str(tf, "tokenizer.ggml.model", &model))
    rc = af_err(AF_ERR_FORMAT, "%s: no tokenizer.ggml.model", af_gguf_path(tf));
  for (uint64_t i = 0; !rc && i < af_gguf_n_kv(tf); i++) {
    const af_gguf_kv *kv = af_gguf_kv_at(tf, i);
    if (strncmp(kv->key, "tokenizer.", 10) || !strcmp(kv->key, "tokenizer.ggml.tokens") ||
        !strcmp(kv->key, "tokenizer.ggml.scores") || !strcmp(kv->key, "tokenizer.ggml.token_type"))
      continue;
    uint32_t pad;
    if (!strcmp(kv->key, "tokenizer.ggml.padding_token_id") && !af_gguf_get_u32(tf, kv->key, &pad) &&
        pad >= pieces)
      continue; /* a row the tokenizer itself lacks, now UNUSED */
    rc = af_gguf_writer_set_value(w, kv->key, &kv->value);
  }
  /* what llama.cpp's converter writes for a SentencePiece model */
  if (!rc && !strcmp(model, "llama") && !af_gguf_find(tf, "tokenizer.ggml.pre"))
    rc = af_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
  return rc;
}

static int write_meta(const ex *e, af_gguf_writer *w, int ftype) {
  const char *name = NULL, *demo = NULL;
  if (af_gguf_get_str(e->g, "general.name", &name) &&
      (!e->g2 || af_gguf_get_str(e->g2, "general.name", &name)))
    name = "artflow model";
  af_error_clear();
  size_t adapters = 0;
  for (uint64_t i = 0; i < af_gguf_n_tensors(e->g); i++)
    adapters += strstr(af_gguf_tensor_at(e->g, i)->name, ".adapter_") != NULL;
  char desc[512];
  snprintf(desc, sizeof desc, "the LLM of %s, written by artflow export --llm-only%s", name,
           adapters ? ": LLaMA with ArtGPT-4's re-trained RMSNorm gains, without its ImageAdapters "
                      "(they cannot be folded into LLaMA's matrices), so not ArtGPT-4's LLM itself"
                    : "");
  int rc = af_gguf_writer_set_str(w, "general.architecture", "llama");
  if (!rc) rc = af_gguf_writer_set_str(w, "general.name", name);
  if (!rc) rc = af_gguf_writer_set_str(w, "general.description", desc);
  if (!rc) rc = af_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype);
  /* as artflow's own files: CPU OpenCL devices can use the tensors in place
   * when artflow runs the export as the base of a two-file model */
  if (!rc) rc = af_gguf_writer_set_u32(w, "general.alignment", AF_GGUF_MODEL_ALIGNMENT);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.context_length", e->ctx);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.embedding_length", e->H);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.block_count", e->L);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.feed_forward_length", e->ffn);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.rope.dimension_count", e->H / e->heads);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.attention.head_count", e->heads);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.attention.head_count_kv", e->kv_heads);
  if (!rc) rc = af_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)e->V);
  static const char *const floats[] = {"llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base"};
  for (size_t i = 0; i < 2 && !rc; i++) {
    float f;
    const af_gguf *from = hp_file(e, floats[i]);
    if (from && !(rc = af_gguf_get_f32(from, floats[i], &f))) rc = af_gguf_writer_set_f32(w, floats[i], f);
  }
  /* a file whose weights mean nothing says so wherever it goes */
  if (!rc && !af_gguf_get_str(e->g, "artflow.demo", &demo))
    rc = af_gguf_writer_set_str(w, "artflow.demo", demo);
  return rc ? rc : write_tokenizer(e, w);
}

/* the rows of one head in llama.cpp's order: row 2i+j <- row j*d/2 + i */
static int write_permuted(af_gguf_writer *w, const item *x, unsigned char *buf) {
  uint64_t rows = x->t->ne[1], rb = x->t->nbytes / rows, d = rows / x->heads, half = d / 2;
  const unsigned char *src = x->t->data;
  int rc = 0;
  for (uint64_t h = 0; h < x->heads && !rc; h++) {
    for (uint64_t i = 0; i < half; i++)
      for (uint64_t j = 0; j < 2; j++)
        memcpy(buf + (2 * i + j) * rb, src + (h * d + j * half + i) * rb, (size_t)rb);
    rc = af_gguf_writer_append(w, buf, (size_t)(d * rb));
  }
  return rc;
}

static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int af_export_llm(const af_export_opts *o) {
  ex e = {.o = o};
  af_gguf_writer *w = NULL;
  unsigned char *buf = NULL;
  size_t buf_len = 0;
  const char *base = NULL;
  int rc = 0;
  if (same_file(o->out, o->model) || same_file(o->out, o->llm))
    return af_err(AF_ERR_CONFIG, "%s: is an input of the export; write it elsewhere", o->out);
  if ((rc = af_gguf_open(o->model, &e.g))) goto out;
  if (o->llm && (rc = af_gguf_open(o->llm, &e.g2))) goto out;
  if (!o->llm && !af_gguf_get_str(e.g, "artflow.llm_base", &base) && !strcmp(base, "separate")) {
    rc = af_err(AF_ERR_CONFIG, "%s: holds no base LLM (converted with --no-llm-base); give --llm VICUNA.gguf",
                o->model);
    goto out;
  }
  af_error_clear();
  if ((rc = plan(&e)) || (rc = af_gguf_writer_new(&w))) goto out;
  int ftype = file_type(&e);
  if ((rc = write_meta(&e, w, ftype))) goto out;
  uint64_t bytes = 0;
  size_t permuted = 0;
  for (size_t i = 0; i < e.n && !rc; i++) {
    rc = af_gguf_writer_add_tensor(w, e.it[i].name, e.it[i].t->type, e.it[i].t->n_dims, e.it[i].t->ne);
    bytes += e.it[i].t->nbytes;
    if (e.it[i].heads) {
      permuted++;
      size_t head = (size_t)(e.it[i].t->nbytes / e.it[i].heads);
      if (head > buf_len) {
        free(buf);
        if (!(buf = malloc(buf_len = head))) rc = af_err(AF_ERR_NOMEM, "out of memory");
      }
    }
  }
  if (rc || (rc = af_gguf_writer_begin(w, o->out))) goto out;
  for (size_t i = 0; i < e.n && !rc; i++) {
    const item *x = &e.it[i];
    rc = x->heads ? write_permuted(w, x, buf) : af_gguf_writer_append(w, x->t->data, (size_t)x->t->nbytes);
    af_gguf_release(x->from, x->t->data, (size_t)x->t->nbytes); /* copied: the pages may go */
  }
  if (!rc) rc = af_gguf_writer_finish(w);
  if (!rc && o->report) {
    size_t left = (size_t)af_gguf_n_tensors(e.g), adapters = 0;
    for (size_t i = 0; i < e.n; i++) left -= e.it[i].from == e.g;
    for (uint64_t i = 0; i < af_gguf_n_tensors(e.g); i++)
      adapters += strstr(af_gguf_tensor_at(e.g, i)->name, ".adapter_") != NULL;
    fprintf(o->report,
            "export: %s: %zu tensors (%.1f MiB), general.architecture llama, general.file_type %d (%s)\n",
            o->out, e.n, bytes / 1048576.0, ftype, af_ggml_type_name(af_ggml_from_llama_ftype(ftype)));
    fprintf(o->report, "export: q/k rows of %zu tensors reordered for llama.cpp's interleaved RoPE%s\n",
            permuted, permuted ? "" : " (none: already in that order)");
    fprintf(
        o->report,
        "export: left out %zu tensors of %s: %zu ImageAdapter tensors (not foldable into LLaMA), %zu of the "
        "vision encoder, Q-Former and projection\n",
        left, o->model, adapters, left - adapters);
  }
out:
  af_gguf_writer_free(w); /* removes a partial output */
  af_gguf_close(e.g);
  af_gguf_close(e.g2);
  free(e.it);
  free(buf);
  return rc;
}
