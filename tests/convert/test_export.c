/* artflow export --llm-only (convert/export.c) against the tiny Vicuna as
 * llama.cpp's converter writes it (tests/data/artgpt4-tiny/
 * vicuna-llamacpp-f16.gguf, make_llamacpp_gguf.py): the export of the tiny
 * ArtGPT-4 must be the same file where the two mean the same thing — the
 * tensors in the same order with the same names, types and shapes, the f16
 * matrices byte-equal (q/k rows included: llama.cpp's interleaved RoPE
 * order), the llama.* hyper-parameters and the tokenizer arrays equal — and
 * differ only where ArtGPT-4 differs: its re-trained norm gains (the model
 * file's values), no adapters.  Also: q8_0 rows permuted whole (bytes of the
 * model file's rows), the two-file case (a --no-llm-base file + the llama.cpp
 * file as base: matrices from the base untouched, gains ours), and the
 * refusals (no base LLM, -o naming an input, a file with no LLM, mismatched
 * files, an unwritable output), each leaving no output behind. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "af_test.h"
#include "artflow/status.h"
#include "convert/convert.h"
#include "convert/export.h"
#include "convert/mkmodel.h"
#include "formats/gguf.h"
#include "formats/quant.h"

static const char *g_dir;

static int export_(const char *model, const char *llm, const char *out) {
  af_export_opts o = {.model = model, .llm = llm, .out = out};
  af_error_clear();
  return af_export_llm(&o);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* norm gains ArtGPT-4 re-trained: ffn_norm of every layer, attn_norm of even ones */
static int retrained(const char *name) {
  int l;
  char rest[64];
  if (sscanf(name, "blk.%d.%63s", &l, rest) != 2) return 0;
  return !strcmp(rest, "ffn_norm.weight") || (!strcmp(rest, "attn_norm.weight") && l % 2 == 0);
}

static int same_bytes(const af_gguf_tensor *a, const af_gguf_tensor *b) {
  return a && b && a->nbytes == b->nbytes && !memcmp(a->data, b->data, (size_t)a->nbytes);
}

/* rows of a (the model file, HF order) permuted as llama.cpp's converter
 * does: row h*d + 2i + j of the export is row h*d + j*d/2 + i */
static int permuted_of(const af_gguf_tensor *e, const af_gguf_tensor *m, int heads) {
  uint64_t rows = m->ne[1], rb = m->nbytes / rows, d = rows / (uint64_t)heads;
  if (!e || e->nbytes != m->nbytes) return 0;
  for (uint64_t h = 0; h < (uint64_t)heads; h++)
    for (uint64_t r = 0; r < d; r++) {
      uint64_t src = h * d + (r % 2) * (d / 2) + r / 2;
      if (memcmp((const char *)e->data + (h * d + r) * rb, (const char *)m->data + src * rb, (size_t)rb))
        return 0;
    }
  return 1;
}

static void check_keys(const af_gguf *e, const af_gguf *ref, int ftype) {
  const char *s = NULL;
  uint32_t u;
  CHECK_OK(af_gguf_get_str(e, "general.architecture", &s));
  CHECK(s && !strcmp(s, "llama"));
  CHECK_OK(af_gguf_get_u32(e, "general.file_type", &u));
  CHECK_MSG(u == (uint32_t)ftype, "general.file_type %u, want %d", u, ftype);
  CHECK(af_gguf_get_str(e, "artflow.rope_layout", &s) == AF_ERR_NOT_FOUND); /* llama.cpp's rows */
  static const char *const u32s[] = {
      "llama.context_length",           "llama.embedding_length",      "llama.block_count",
      "llama.feed_forward_length",      "llama.rope.dimension_count",  "llama.attention.head_count",
      "llama.attention.head_count_kv",  "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
      "tokenizer.ggml.unknown_token_id"};
  for (size_t i = 0; i < sizeof u32s / sizeof *u32s; i++) {
    uint32_t a = 1, b = 2;
    CHECK_OK(af_gguf_get_u32(e, u32s[i], &a));
    CHECK_OK(af_gguf_get_u32(ref, u32s[i], &b));
    CHECK_MSG(a == b, "%s: %u vs the reference's %u", u32s[i], a, b);
  }
  float fa = 0, fb = 1;
  CHECK_OK(af_gguf_get_f32(e, "llama.attention.layer_norm_rms_epsilon", &fa));
  CHECK_OK(af_gguf_get_f32(ref, "llama.attention.layer_norm_rms_epsilon", &fb));
  CHECK(fa == fb);
  const char *ma = NULL, *mb = NULL;
  CHECK_OK(af_gguf_get_str(e, "tokenizer.ggml.model", &ma));
  CHECK_OK(af_gguf_get_str(ref, "tokenizer.ggml.model", &mb));
  CHECK(ma && mb && !strcmp(ma, mb));
  bool ba = false, bb = true;
  CHECK_OK(af_gguf_get_bool(e, "tokenizer.ggml.add_bos_token", &ba));
  CHECK_OK(af_gguf_get_bool(ref, "tokenizer.ggml.add_bos_token", &bb));
  CHECK(ba == bb);
  /* the padding row the tokenizer lacks is llama.cpp's "[PAD420]", UNUSED */
  CHECK(af_gguf_get_u32(e, "tokenizer.ggml.padding_token_id", &u) == AF_ERR_NOT_FOUND);
  static const char *const arrays[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                       "tokenizer.ggml.token_type"};
  for (size_t i = 0; i < 3; i++) {
    const af_gguf_value *a = af_gguf_find(e, arrays[i]), *b = af_gguf_find(ref, arrays[i]);
    CHECK_MSG(a && b && a->v.arr.type == b->v.arr.type && a->v.arr.n == b->v.arr.n, "%s", arrays[i]);
    if (!a || !b || a->v.arr.n != b->v.arr.n) continue;
    int eq = 1;
    for (uint64_t k = 0; k < a->v.arr.n && eq; k++)
      eq = a->v.arr.type == AF_GGUF_STRING
               ? a->v.arr.strs[k].len == b->v.arr.strs[k].len &&
                     !memcmp(a->v.arr.strs[k].s, b->v.arr.strs[k].s, (size_t)a->v.arr.strs[k].len)
               : af_gguf_arr_num(a, k) == af_gguf_arr_num(b, k);
    CHECK_MSG(eq, "%s differs from llama.cpp's", arrays[i]);
  }
  for (uint64_t i = 0; i < af_gguf_n_kv(e); i++) {
    const char *k = af_gguf_kv_at(e, i)->key;
    CHECK_MSG(strncmp(k, "vision.", 7) && strncmp(k, "clip.", 5) && strncmp(k, "qformer.", 8) &&
                  strncmp(k, "artflow.prompt", 14),
              "the export carries %s", k);
  }
}

/* the f16 export tensor by tensor against llama.cpp's file and the model */
static void check_f16(const char *model, const char *out, const af_gguf *ref) {
  af_gguf *e = NULL, *m = NULL;
  CHECK_OK(af_gguf_open(out, &e));
  CHECK_OK(af_gguf_open(model, &m));
  if (!e || !m) goto out;
  check_keys(e, ref, 1);
  CHECK(af_gguf_n_tensors(e) == af_gguf_n_tensors(ref));
  for (uint64_t i = 0; i < af_gguf_n_tensors(ref) && i < af_gguf_n_tensors(e); i++) {
    const af_gguf_tensor *r = af_gguf_tensor_at(ref, i), *t = af_gguf_tensor_at(e, i);
    CHECK_MSG(!strcmp(r->name, t->name), "tensor %llu: %s, llama.cpp writes %s", (unsigned long long)i,
              t->name, r->name);
    CHECK_MSG(r->type == t->type && r->n_dims == t->n_dims && r->ne[0] == t->ne[0] && r->ne[1] == t->ne[1],
              "%s: type/shape differ from llama.cpp's", t->name);
    if (t->n_dims == 2) {
      CHECK_MSG(same_bytes(t, r), "%s: bytes differ from llama.cpp's", t->name);
    } else if (retrained(t->name)) {
      CHECK_MSG(same_bytes(t, af_gguf_find_tensor(m, t->name)), "%s: not ArtGPT-4's gain", t->name);
      CHECK_MSG(!same_bytes(t, r), "%s: the fixture's re-trained gain equals Vicuna's", t->name);
    } else if (t->type == AF_GGML_F32 && r->type == AF_GGML_F32) {
      /* Vicuna's own gains, rounded to fp16 values as artflow stores the LLM's small tensors */
      int eq = 1;
      for (uint64_t k = 0; k < t->n_elements && eq; k++) {
        float rv = ((const float *)r->data)[k], h;
        uint16_t b;
        af_convert_from_f32(AF_GGML_F16, &rv, &b, 1);
        af_convert_to_f32(AF_GGML_F16, &b, &h, 1);
        eq = ((const float *)t->data)[k] == h;
      }
      CHECK_MSG(eq, "%s: not Vicuna's gain", t->name);
    }
  }
  CHECK(!af_gguf_find_tensor(e, "blk.0.adapter_down.weight") && !af_gguf_find_tensor(e, "proj.weight"));
out:
  af_gguf_close(e);
  af_gguf_close(m);
}

/* q8_0: the stored types and bytes kept, q/k rows permuted whole */
static void check_q8(const char *model, const char *out) {
  af_gguf *e = NULL, *m = NULL;
  CHECK_OK(af_gguf_open(out, &e));
  CHECK_OK(af_gguf_open(model, &m));
  if (!e || !m) goto out;
  uint32_t ft = 0, heads = 0, kv = 0;
  CHECK_OK(af_gguf_get_u32(e, "general.file_type", &ft));
  CHECK_MSG(ft == 7, "general.file_type %u: llama.cpp's MOSTLY_Q8_0 is 7", ft);
  CHECK_OK(af_gguf_get_u32(e, "llama.attention.head_count", &heads));
  CHECK_OK(af_gguf_get_u32(e, "llama.attention.head_count_kv", &kv));
  int q8 = 0;
  for (uint64_t i = 0; i < af_gguf_n_tensors(e); i++) {
    const af_gguf_tensor *t = af_gguf_tensor_at(e, i), *s = af_gguf_find_tensor(m, t->name);
    CHECK_MSG(s && s->type == t->type, "%s: stored type not kept", t->name);
    if (!s) continue;
    q8 += t->type == AF_GGML_Q8_0;
    if (strstr(t->name, "attn_q.weight") || strstr(t->name, "attn_k.weight"))
      CHECK_MSG(permuted_of(t, s, (int)(strstr(t->name, "attn_q") ? heads : kv)),
                "%s: rows not llama.cpp's order", t->name);
    else
      CHECK_MSG(same_bytes(t, s), "%s: bytes changed", t->name);
  }
  CHECK_MSG(q8 >= 8, "only %d q8_0 tensors", q8);
out:
  af_gguf_close(e);
  af_gguf_close(m);
}

/* --no-llm-base file + the llama.cpp base: its matrices as they are, our gains */
static void check_two_file(const char *ours, const char *out, const af_gguf *ref) {
  af_gguf *e = NULL, *m = NULL;
  CHECK_OK(af_gguf_open(out, &e));
  CHECK_OK(af_gguf_open(ours, &m));
  if (!e || !m) goto out;
  CHECK(af_gguf_n_tensors(e) == af_gguf_n_tensors(ref));
  for (uint64_t i = 0; i < af_gguf_n_tensors(e); i++) {
    const af_gguf_tensor *t = af_gguf_tensor_at(e, i), *mine = af_gguf_find_tensor(m, t->name);
    CHECK_MSG(same_bytes(t, mine ? mine : af_gguf_find_tensor(ref, t->name)), "%s: not from %s", t->name,
              mine ? "our file" : "the base");
    CHECK_MSG(!mine == !retrained(t->name), "%s: our file %s it", t->name, mine ? "has" : "lacks");
  }
out:
  af_gguf_close(e);
  af_gguf_close(m);
}

static void refusals(const char *f16, const char *ours, const char *ref) {
  char out[1200], other[1200];
  snprintf(out, sizeof out, "%s/refused.gguf", g_dir);
  CHECK(export_(ours, NULL, out) == AF_ERR_CONFIG);
  CHECK_MSG(strstr(af_error_message(), "holds no base LLM") && strstr(af_error_message(), "--llm"), "%s",
            af_error_message());
  CHECK(!exists(out));
  struct stat before, after;
  CHECK(stat(f16, &before) == 0);
  CHECK(export_(f16, NULL, f16) == AF_ERR_CONFIG); /* would truncate its own input */
  CHECK(strstr(af_error_message(), "is an input"));
  CHECK(stat(f16, &after) == 0 && after.st_size == before.st_size);
  CHECK(export_(ours, ref, ref) == AF_ERR_CONFIG);

  /* a GGUF without an LLM */
  snprintf(other, sizeof other, "%s/nollm.gguf", g_dir);
  af_gguf_writer *w = NULL;
  uint64_t ne[1] = {4};
  float x[4] = {0};
  CHECK_OK(af_gguf_writer_new(&w));
  CHECK_OK(af_gguf_writer_set_str(w, "general.architecture", "clip"));
  CHECK_OK(af_gguf_writer_add_tensor(w, "v.cls", AF_GGML_F32, 1, ne));
  CHECK_OK(af_gguf_writer_begin(w, other));
  CHECK_OK(af_gguf_writer_append_f32(w, x, 4));
  CHECK_OK(af_gguf_writer_finish(w));
  af_gguf_writer_free(w);
  CHECK(export_(other, NULL, out) == AF_ERR_FORMAT);
  CHECK_MSG(strstr(af_error_message(), "nollm.gguf: no llama.embedding_length"), "%s", af_error_message());
  CHECK(!exists(out));

  /* two files that are not one model: the tiny-test LLM is 128 wide in the FFN */
  CHECK(export_(ours, f16, out) == 0); /* the same LLM twice is fine */
  remove(out);
  snprintf(other, sizeof other, "%s/other.gguf", g_dir);
  char arch[1200];
  snprintf(arch, sizeof arch, "%s/config/models/tiny-test.yaml", AF_SOURCE_DIR);
  af_arch t;
  af_mkmodel_opts mo = {.seed = 1, .type = AF_GGML_F16};
  CHECK_OK(af_arch_load(arch, &t));
  CHECK_OK(af_mkmodel(&t, arch, &mo, other));
  CHECK(export_(ours, other, out) == AF_ERR_MISMATCH);
  CHECK_MSG(strstr(af_error_message(), "ours.gguf: llama.feed_forward_length is 172 but 128 in") &&
                strstr(af_error_message(), "other.gguf"),
            "%s", af_error_message());
  CHECK(!exists(out));
  /* unwritable output: nothing left, the error names the path */
  snprintf(out, sizeof out, "%s/no/such/dir/x.gguf", g_dir);
  CHECK(export_(f16, NULL, out) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "no/such/dir/x.gguf"));
  CHECK(!exists(out));
}

int main(void) {
  g_dir = af_test_tmpdir();
  char f16[1200], q8[1200], ours[1200], out[1200], ref_path[1200];
  snprintf(ref_path, sizeof ref_path, "%s", af_test_data("artgpt4-tiny/vicuna-llamacpp-f16.gguf"));
  af_gguf *ref = NULL;
  CHECK_OK(af_gguf_open(ref_path, &ref));
  CHECK_OK(af_test_convert_tiny(g_dir, AF_GGML_F16, f16, sizeof f16));
  CHECK_OK(af_test_convert_tiny(g_dir, AF_GGML_Q8_0, q8, sizeof q8));
  if (!ref || af_test_failures) return af_test_done("test_export");

  snprintf(out, sizeof out, "%s/export-f16.gguf", g_dir);
  CHECK_OK(export_(f16, NULL, out));
  check_f16(f16, out, ref);
  snprintf(out, sizeof out, "%s/export-q8_0.gguf", g_dir);
  CHECK_OK(export_(q8, NULL, out));
  check_q8(q8, out);

  /* two files: our --no-llm-base part over llama.cpp's Vicuna */
  char a[1024], v[1024], q[1024], l[1024], ad[1024];
  snprintf(a, sizeof a, "%s", af_test_data("artgpt4-tiny/arch.yaml"));
  snprintf(v, sizeof v, "%s", af_test_data("artgpt4-tiny/eva_vit_g.pth"));
  snprintf(q, sizeof q, "%s", af_test_data("artgpt4-tiny/blip2_pretrained_flant5xxl.pth"));
  snprintf(l, sizeof l, "%s", af_test_data("artgpt4-tiny/vicuna"));
  snprintf(ad, sizeof ad, "%s", af_test_data("artgpt4-tiny/ArtGPT-4.pth"));
  snprintf(ours, sizeof ours, "%s/ours.gguf", g_dir);
  af_convert_opts co = {.arch = a,
                        .vit = v,
                        .qformer = q,
                        .llm = l,
                        .adapter = ad,
                        .out = ours,
                        .type = AF_GGML_F16,
                        .no_llm_base = 1};
  CHECK_OK(af_convert(&co));
  snprintf(out, sizeof out, "%s/export-two.gguf", g_dir);
  CHECK_OK(export_(ours, ref_path, out));
  check_two_file(ours, out, ref);

  refusals(f16, ours, ref_path);
  af_gguf_close(ref);
  return af_test_done("test_export");
}
