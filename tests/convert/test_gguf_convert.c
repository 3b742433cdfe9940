/* artflow convert on the tiny ArtGPT-4 release set made by torch.save
 * (tests/data/artgpt4-tiny): coverage report, release quirks (dropped ViT
 * block, zero K bias, adapter norm overrides, llama_model.* tensors of the
 * adapter file over Vicuna's, special ids from
 * tokenizer.model, 421-row vocabulary), values equal to the sources, and the
 * errors for a missing tensor, a shape that disagrees with the YAML, an eps
 * that config.json contradicts and a broken generation_config.json. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "convert/convert.h"
#include "convert/mkmodel.h"
#include "formats/gguf.h"
#include "formats/quant.h"
#include "formats/tensorsrc.h"

static char g_dir[512], g_out[600], g_rep[600];
static const char *g_llm; /* another Vicuna folder for run(), or NULL */

/* copies a file; 1 when done */
static int copy_file(const char *src, const char *dst) {
  size_t n = 0;
  char *b = af_test_slurp(src, &n);
  FILE *f = b ? fopen(dst, "wb") : NULL;
  int ok = f && fwrite(b, 1, n, f) == n;
  if (f) ok &= fclose(f) == 0;
  free(b);
  return ok;
}

static int run(const char *arch, const char *adapter, int type, const char *out) {
  char a[600], v[600], q[600], l[600], ad[600];
  snprintf(a, sizeof a, "%s", af_test_data(arch));
  snprintf(v, sizeof v, "%s", af_test_data("artgpt4-tiny/eva_vit_g.pth"));
  snprintf(q, sizeof q, "%s", af_test_data("artgpt4-tiny/blip2_pretrained_flant5xxl.pth"));
  snprintf(l, sizeof l, "%s", g_llm ? g_llm : af_test_data("artgpt4-tiny/vicuna"));
  snprintf(ad, sizeof ad, "%s",
           af_test_data(adapter && strstr(adapter, ".pth") ? adapter : "artgpt4-tiny/ArtGPT-4.pth"));
  FILE *rep = fopen(g_rep, "w");
  af_convert_opts o = {.arch = a,
                       .vit = v,
                       .qformer = q,
                       .llm = l,
                       .adapter = adapter ? ad : NULL,
                       .out = out,
                       .type = type,
                       .report = rep};
  af_error_clear();
  int rc = af_convert(&o);
  if (rep) fclose(rep);
  return rc;
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *b = calloc(1, 1 << 20);
  if (b) b[fread(b, 1, (1 << 20) - 1, f)] = 0;
  fclose(f);
  return b;
}

/* GGUF tensor (any type) equals the source tensor within tol (normalised);
 * with half, the source's values rounded to fp16 (the LLM's small tensors
 * of non-f32 conversions: the original runs the LLM in fp16). */
static void same_h(const af_gguf *g, const char *name, const af_tsrc *s, const char *key, double tol,
                   int half) {
  const af_gguf_tensor *t = af_gguf_find_tensor(g, name);
  const af_tsrc_tensor *st = af_tsrc_find(s, key);
  CHECK_MSG(t && st, "%s / %s", name, key);
  if (!t || !st) return;
  CHECK(t->n_elements == st->numel);
  float *a = malloc(t->n_elements * sizeof *a), *b = malloc(st->numel * sizeof *b);
  CHECK_OK(af_convert_to_f32(t->type, t->data, a, t->n_elements));
  CHECK_OK(af_tsrc_read_f32(st, b));
  for (uint64_t i = 0; half && i < st->numel; i++) b[i] = af_f16_to_f32(af_f32_to_f16(b[i]));
  double e = af_nerr(a, b, t->n_elements);
  CHECK_MSG(e <= tol, "%s vs %s: nerr %g > %g", name, key, e, tol);
  free(a);
  free(b);
}

static void same(const af_gguf *g, const char *name, const af_tsrc *s, const char *key, double tol) {
  same_h(g, name, s, key, tol, 0);
}

static void check_model(const char *path, int type) {
  af_gguf *g;
  af_tsrc *vit, *ad, *llm, *qf;
  CHECK_OK(af_gguf_open(path, &g));
  if (!g) return;
  CHECK_OK(af_tsrc_open(af_test_data("artgpt4-tiny/eva_vit_g.pth"), &vit));
  CHECK_OK(af_tsrc_open(af_test_data("artgpt4-tiny/ArtGPT-4.pth"), &ad));
  CHECK_OK(af_tsrc_open(af_test_data("artgpt4-tiny/vicuna"), &llm));
  CHECK_OK(af_tsrc_open(af_test_data("artgpt4-tiny/blip2_pretrained_flant5xxl.pth"), &qf));
  const char *s;
  CHECK_OK(af_gguf_get_str(g, "general.architecture", &s));
  CHECK(strcmp(s, "artgpt4") == 0);
  uint32_t u;
  CHECK_OK(af_gguf_get_u32(g, "vision.block_count", &u));
  CHECK(u == 2);
  CHECK_OK(af_gguf_get_u32(g, "artflow.adapter.width", &u));
  CHECK(u == 16);
  CHECK_OK(af_gguf_get_u32(g, "llama.feed_forward_length", &u));
  CHECK(u == 172);
  /* dropped block: the file stores blocks 0..2, the model uses 0..1 */
  CHECK(af_gguf_find_tensor(g, "v.blk.1.ln1.weight") != NULL);
  CHECK(af_gguf_find_tensor(g, "v.blk.2.ln1.weight") == NULL);
  /* K bias zeros between q_bias and v_bias */
  const af_gguf_tensor *t = af_gguf_find_tensor(g, "v.blk.1.attn_qkv.bias");
  CHECK(t && t->type == AF_GGML_F32 && t->ne[0] == 192);
  if (t) {
    const float *b = t->data;
    float q[64], v[64];
    CHECK_OK(af_tsrc_read_f32(af_tsrc_find(vit, "blocks.1.attn.q_bias"), q));
    CHECK_OK(af_tsrc_read_f32(af_tsrc_find(vit, "blocks.1.attn.v_bias"), v));
    int zeros = 1, qok = 1, vok = 1;
    for (int i = 0; i < 64; i++) {
      zeros &= b[64 + i] == 0.0f;
      qok &= b[i] == q[i];
      vok &= b[128 + i] == v[i];
    }
    CHECK(zeros && qok && vok);
    CHECK(q[0] != 0.0f || q[1] != 0.0f); /* the fixture's biases are not trivially zero */
  }
  /* norm overrides: ArtGPT-4's gains for post-attention (all) and input (even layers) */
  same_h(g, "blk.0.ffn_norm.weight", ad, "llama_model.model.layers.0.post_attention_layernorm.weight", 0,
         type != AF_GGML_F32);
  same_h(g, "blk.1.ffn_norm.weight", ad, "llama_model.model.layers.1.post_attention_layernorm.weight", 0,
         type != AF_GGML_F32);
  same_h(g, "blk.0.attn_norm.weight", ad, "llama_model.model.layers.0.input_layernorm.weight", 0,
         type != AF_GGML_F32);
  same_h(g, "blk.1.attn_norm.weight", llm, "model.layers.1.input_layernorm.weight", 0, type != AF_GGML_F32);
  {
    /* and they differ from Vicuna's, or the test would prove nothing */
    float a[64], b[64];
    CHECK_OK(
        af_tsrc_read_f32(af_tsrc_find(ad, "llama_model.model.layers.0.post_attention_layernorm.weight"), a));
    CHECK_OK(af_tsrc_read_f32(af_tsrc_find(llm, "model.layers.0.post_attention_layernorm.weight"), b));
    CHECK(af_maxerr(a, b, 64) > 1e-3);
  }
  double mt = type == AF_GGML_F32 ? 0 : type == AF_GGML_F16 ? 1e-3 : type == AF_GGML_Q8_0 ? 1e-2 : 0.15;
  same(g, "blk.0.adapter_down.weight", ad, "llama_model.model.layers.0.self_attn.1.down.weight", mt);
  same_h(g, "blk.1.adapter_up.bias", ad, "llama_model.model.layers.1.self_attn.1.up.bias", 0,
         type != AF_GGML_F32);
  same(g, "proj.weight", ad, "llama_proj.weight", 0); /* Q-Former and projection: f32 for every --type */
  same(g, "blk.1.attn_q.weight", llm, "model.layers.1.self_attn.q_proj.weight", mt);
  same(g, "output.weight", llm, "lm_head.weight", mt);
  same(g, "v.pos_embd", vit, "pos_embed", 0);
  same(g, "v.patch_embd.weight", vit, "patch_embed.proj.weight", 0);
  same(g, "v.blk.0.ffn_down.weight", vit, "blocks.0.mlp.fc2.weight", mt > 1e-3 ? 1e-3 : mt); /* 279: f16 */
  same(g, "q.blk.2.ca_k.weight", qf, "Qformer.bert.encoder.layer.2.crossattention.self.key.weight", 0);
  t = af_gguf_find_tensor(g, "q.blk.2.ca_k.weight");
  CHECK(t && t->type == AF_GGML_F32);
  t = af_gguf_find_tensor(g, "proj.weight");
  CHECK(t && t->type == AF_GGML_F32);
  t = af_gguf_find_tensor(g, "v.blk.0.ffn_down.weight"); /* the ViT: f16 unless --type f32 */
  CHECK(t && t->type == (type == AF_GGML_F32 ? AF_GGML_F32 : AF_GGML_F16));
  same(g, "q.query_tokens", qf, "query_tokens", 0);
  same(g, "v.ln_vision.weight", qf, "ln_vision.weight", 0);
  CHECK(af_gguf_find_tensor(g, "q.blk.1.ca_q.weight") == NULL); /* odd layer: no cross-attention */
  t = af_gguf_find_tensor(g, "q.blk.2.ca_k.weight");
  CHECK(t && t->ne[0] == 64 && t->ne[1] == 32); /* torch [32, 64] */
  t = af_gguf_find_tensor(g, "blk.0.ffn_down.weight");
  CHECK(t && t->type == (type == AF_GGML_F32 ? AF_GGML_F32 : AF_GGML_F16)); /* 172 is not a block multiple */
  t = af_gguf_find_tensor(g, "blk.0.ffn_norm.weight");
  CHECK(t && t->type == AF_GGML_F32);
  /* tokenizer: 421 rows; ids from tokenizer.model (config.json says bos 0 / eos 1) */
  const af_gguf_str *tok;
  uint64_t n;
  CHECK_OK(af_gguf_get_arr_str(g, "tokenizer.ggml.tokens", &tok, &n));
  CHECK(n == 421);
  if (n == 421) CHECK(strcmp(tok[1].s, "<s>") == 0 && strcmp(tok[2].s, "</s>") == 0);
  CHECK_OK(af_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u));
  CHECK(u == 1);
  CHECK_OK(af_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u));
  CHECK(u == 2);
  /* generate()'s ids, as transformers loads them (generation_config.json: 0 / 1) */
  int32_t gi = -5;
  CHECK_OK(af_gguf_get_i32(g, "artflow.generate.bos_token_id", &gi));
  CHECK(gi == 0);
  CHECK_OK(af_gguf_get_i32(g, "artflow.generate.eos_token_id", &gi));
  CHECK(gi == 1);
  af_gguf_close(g);
  af_tsrc_close(vit);
  af_tsrc_close(ad);
  af_tsrc_close(llm);
  af_tsrc_close(qf);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "%s", af_test_tmpdir());
  snprintf(g_rep, sizeof g_rep, "%s/report.txt", g_dir);
  static const int types[] = {AF_GGML_F32, AF_GGML_F16, AF_GGML_Q8_0, AF_GGML_Q4_0};
  for (int i = 0; i < 4; i++) {
    snprintf(g_out, sizeof g_out, "%s/m%d.gguf", g_dir, i);
    CHECK_OK(run("convert/artgpt4-tiny.yaml", "adapter", types[i], g_out));
    check_model(g_out, types[i]);
  }
  char note[64];
  CHECK(af_model_demo_note(g_out, note, sizeof note) ==
        0); /* converted without --demo: real weights, no warning */
  char *rep = read_text(g_rep);
  CHECK(rep != NULL);
  if (rep) {
    CHECK(strstr(rep, "eva_vit_g.pth: 43 keys, 30 used, 13 ignored, 0 unknown") != NULL);
    CHECK(strstr(rep, "unused ViT block") && strstr(rep, "blocks.2."));
    CHECK(strstr(rep, "T5 projection") != NULL);
    CHECK(strstr(rep, "missing: 0 required tensors") != NULL);
    free(rep);
  }
  /* llama_model.* tensors in the adapter file win over Vicuna's (the original
   * loads ArtGPT-4.pth with strict=False), under the HF name or ArtGPT-4's
   * self_attn.0; the replaced Vicuna keys are reported with the reason */
  snprintf(g_out, sizeof g_out, "%s/override.gguf", g_dir);
  CHECK_OK(run("convert/artgpt4-tiny.yaml", "artgpt4-tiny/ArtGPT-4-override.pth", AF_GGML_F16, g_out));
  {
    af_gguf *g = NULL;
    af_tsrc *ov = NULL, *llm = NULL;
    CHECK_OK(af_gguf_open(g_out, &g));
    CHECK_OK(af_tsrc_open(af_test_data("artgpt4-tiny/ArtGPT-4-override.pth"), &ov));
    CHECK_OK(af_tsrc_open(af_test_data("artgpt4-tiny/vicuna"), &llm));
    if (g && ov && llm) {
      same_h(g, "output_norm.weight", ov, "llama_model.model.norm.weight", 0, 1);
      same(g, "blk.0.attn_q.weight", ov, "llama_model.model.layers.0.self_attn.0.q_proj.weight", 1e-3);
      same(g, "blk.1.attn_q.weight", llm, "model.layers.1.self_attn.q_proj.weight",
           1e-3); /* not overridden */
    }
    af_tsrc_close(ov), af_tsrc_close(llm);
    af_gguf_close(g);
    rep = read_text(g_rep);
    CHECK(rep && strstr(rep, "loaded over Vicuna's") != NULL);
    free(rep);
  }
  /* missing required tensors: MiniGPT-4 layout without the file holding llama_proj */
  snprintf(g_out, sizeof g_out, "%s/missing.gguf", g_dir);
  CHECK(run("convert/minigpt4-tiny.yaml", NULL, AF_GGML_F16, g_out) == AF_ERR_NOT_FOUND);
  CHECK(strstr(af_error_message(), "missing") != NULL);
  rep = read_text(g_rep);
  CHECK(rep && strstr(rep, "missing: proj.weight") != NULL);
  free(rep);
  FILE *f = fopen(g_out, "rb");
  CHECK(f == NULL); /* nothing written */
  if (f) fclose(f);
  /* the adapter-less layout converts when llama_proj is given */
  CHECK_OK(run("convert/minigpt4-tiny.yaml", "adapter", AF_GGML_F16, g_out));
  /* shape mismatch with the YAML: a wrong MLP width names the key and both values */
  CHECK(run("convert/bad-mlp.yaml", "adapter", AF_GGML_F16, g_out) == AF_ERR_MISMATCH);
  CHECK_MSG(strstr(af_error_message(), "vision.mlp_width") && strstr(af_error_message(), "279"), "%s",
            af_error_message());
  af_error_clear();
  /* an eps in the YAML that config.json contradicts (the original uses config.json's) */
  CHECK(run("convert/bad-eps.yaml", "adapter", AF_GGML_F16, g_out) == AF_ERR_MISMATCH);
  CHECK_MSG(strstr(af_error_message(), "rms_eps") && strstr(af_error_message(), "config.json"), "%s",
            af_error_message());
  af_error_clear();
  /* a broken generation_config.json (read for generate()'s ids): the error names it */
  {
    char dir[700], src[1400], dst[1400];
    snprintf(dir, sizeof dir, "%s/vicuna-badgen", g_dir);
    CHECK(mkdir(dir, 0755) == 0);
    static const char *const files[] = {"config.json", "tokenizer.model", "pytorch_model.bin.index.json"};
    for (int i = 0; i < 3; i++) {
      snprintf(src, sizeof src, "%s/%s", af_test_data("artgpt4-tiny/vicuna"), files[i]);
      snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
      CHECK(copy_file(src, dst));
    }
    for (int i = 1; i <= 8; i++) {
      snprintf(src, sizeof src, "%s/pytorch_model-%05d-of-00008.bin", af_test_data("artgpt4-tiny/vicuna"), i);
      snprintf(dst, sizeof dst, "%s/pytorch_model-%05d-of-00008.bin", dir, i);
      CHECK(copy_file(src, dst));
    }
    snprintf(dst, sizeof dst, "%s/generation_config.json", dir);
    FILE *gf = fopen(dst, "w");
    if (gf) fputs("{\"bos_token_id\": 0, \"eos_token_id\": ", gf), fclose(gf); /* cut short */
    g_llm = dir;
    CHECK(run("convert/artgpt4-tiny.yaml", "adapter", AF_GGML_F16, g_out) == AF_ERR_FORMAT);
    CHECK_MSG(strstr(af_error_message(), "generation_config.json") != NULL, "%s", af_error_message());
    g_llm = NULL;
    af_error_clear();
  }
  /* a damaged input checkpoint: the error names that file, nothing is written */
  {
    char a[600], v[600], q[600], l[600];
    snprintf(a, sizeof a, "%s", af_test_data("convert/artgpt4-tiny.yaml"));
    snprintf(v, sizeof v, "%s", af_test_data("torch/truncated.pth"));
    snprintf(q, sizeof q, "%s", af_test_data("artgpt4-tiny/blip2_pretrained_flant5xxl.pth"));
    snprintf(l, sizeof l, "%s", af_test_data("artgpt4-tiny/vicuna"));
    snprintf(g_out, sizeof g_out, "%s/damaged.gguf", g_dir);
    af_convert_opts o = {.arch = a, .vit = v, .qformer = q, .llm = l, .out = g_out, .type = AF_GGML_F16};
    CHECK(af_convert(&o) != 0);
    CHECK_MSG(strstr(af_error_message(), "truncated.pth") != NULL, "%s", af_error_message());
    af_error_clear();
    f = fopen(g_out, "rb");
    CHECK(f == NULL);
    if (f) fclose(f);
  }
  return af_test_done("test_gguf_convert");
}
