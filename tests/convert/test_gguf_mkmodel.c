/* mkmodel on config/models/tiny-test.yaml: layout, storage types per kind,
 * metadata and tokenizer, weight statistics; inspect's output; arch YAML
 * errors (unknown key, missing key, bad value) name the file and line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "artflow/status.h"
#include "convert/arch.h"
#include "convert/inspect.h"
#include "convert/mkmodel.h"
#include "formats/gguf.h"
#include "formats/quant.h"

static char g_tiny[600];

static void write_yaml(const char *path, const char *find, const char *repl) {
  FILE *in = fopen(g_tiny, "rb"), *out = fopen(path, "wb");
  char line[1024];
  while (in && out && fgets(line, sizeof line, in)) {
    if (find && strstr(line, find))
      fputs(repl, out);
    else
      fputs(line, out);
  }
  if (in) fclose(in);
  if (out) fclose(out);
}

static void test_arch_errors(void) {
  char p[700];
  af_arch a;
  snprintf(p, sizeof p, "%s/bad.yaml", af_test_tmpdir());
  write_yaml(p, "mlp_width", "  mlp_widht: 128\n");
  CHECK(af_arch_load(p, &a) == AF_ERR_CONFIG);
  CHECK_MSG(strstr(af_error_message(), "bad.yaml:") && strstr(af_error_message(), "mlp_widht") &&
                strstr(af_error_message(), "unknown key"),
            "%s", af_error_message());
  af_error_clear();
  write_yaml(p, "queries:", "");
  CHECK(af_arch_load(p, &a) == AF_ERR_CONFIG);
  CHECK(strstr(af_error_message(), "qformer.queries") != NULL);
  af_error_clear();
  write_yaml(p, "heads: 4", "  heads: four\n");
  CHECK(af_arch_load(p, &a) == AF_ERR_CONFIG);
  CHECK(strstr(af_error_message(), "positive integer") != NULL);
  af_error_clear();
  write_yaml(p, "mean:", "  mean: [1, 2\n");
  CHECK(af_arch_load(p, &a) == AF_ERR_CONFIG);
  CHECK(strstr(af_error_message(), "YAML error") != NULL);
  af_error_clear();
  int v = 64;
  CHECK(af_arch_check("x.yaml", "llm.hidden", &v, 80, "config.json") == AF_ERR_MISMATCH);
  CHECK(strstr(af_error_message(), "llm.hidden is 64 but config.json has 80") != NULL);
  af_error_clear();
  /* every shipped architecture file loads */
  static const char *files[] = {"artgpt4-13b", "minigpt4-7b", "minigpt4-13b", "tiny-test", "demo"};
  for (int i = 0; i < 5; i++) {
    snprintf(p, sizeof p, "%s/config/models/%s.yaml", getenv("AF_SOURCE_DIR"), files[i]);
    CHECK_OK(af_arch_load(p, &a));
  }
  snprintf(p, sizeof p, "%s/config/models/artgpt4-13b.yaml", getenv("AF_SOURCE_DIR"));
  CHECK_OK(af_arch_load(p, &a));
  CHECK(a.vision.layers == 39 && a.vision.ln_vision_eps == 1e-5f && a.qformer.ln_eps == 1e-12f &&
        a.llm.adapter_width == 1280 && a.prompt.n_stop == 1 && strstr(a.prompt.template_, "<ImageHere>"));
  /* full-size layout: parameter counts from docs/model.md §11 */
  af_tspec *ts;
  size_t n;
  CHECK_OK(af_arch_require_llm(&a, p));
  CHECK_OK(af_model_layout(&a, &ts, &n));
  double vit = 0, adapters = 0, llm = 0, qf = 0;
  for (size_t i = 0; i < n; i++) {
    double e = (double)(ts[i].ne[0] * ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3]);
    if (strncmp(ts[i].name, "v.", 2) == 0 && strncmp(ts[i].name, "v.ln_vision", 11) != 0)
      vit += e;
    else if (strstr(ts[i].name, "adapter_"))
      adapters += e;
    else if (strncmp(ts[i].name, "q.", 2) == 0)
      qf += e;
    else if (strncmp(ts[i].name, "proj.", 5) != 0 && strncmp(ts[i].name, "v.", 2) != 0)
      llm += e;
  }
  CHECK_MSG(fabs(vit - 985.9e6) < 0.1e6, "vit params %.0f", vit);
  CHECK_MSG(adapters == 524544000.0, "adapter params %.0f", adapters);
  CHECK_MSG(fabs(llm - 13.016e9) < 0.001e9, "llm params %.0f", llm);
  CHECK_MSG(fabs(qf - 105.16e6) < 0.01e6, "qformer params %.0f", qf);
  free(ts);
}

/* Piece table of a tokenizer.model made by spm_train; expected values read
 * with Debian's python3-sentencepiece 0.1.97 (get_piece_size, id_to_piece,
 * get_score, is_byte / is_control, unk/bos/eos/pad ids). */
static void test_spm_pieces(void) {
  af_vocab v;
  CHECK_OK(af_vocab_load_spm(af_test_data("artgpt4-tiny/vicuna/tokenizer.model"), &v));
  CHECK(v.n == 420 && v.unk == 0 && v.bos == 1 && v.eos == 2 && v.pad == -1);
  if (v.n == 420) {
    CHECK(strcmp(v.pieces[0], "<unk>") == 0 && v.types[0] == 2);
    CHECK(strcmp(v.pieces[1], "<s>") == 0 && v.types[1] == 3);
    CHECK(strcmp(v.pieces[3], "<0x00>") == 0 && v.types[3] == 6);
    CHECK(strcmp(v.pieces[100], "<0x61>") == 0 && v.types[100] == 6);
    CHECK(strcmp(v.pieces[419], "x") == 0 && v.scores[419] == -160.0f && v.types[419] == 1);
  }
  CHECK(v.byte_fallback == 1 && v.add_dummy_prefix == 1);
  af_vocab_free(&v);
  CHECK(af_vocab_load_spm(af_test_data("gguf/sample_a32.gguf"), &v) == AF_ERR_FORMAT);
  af_error_clear();
}

int main(void) {
  test_spm_pieces();
  snprintf(g_tiny, sizeof g_tiny, "%s/config/models/tiny-test.yaml", getenv("AF_SOURCE_DIR"));
  test_arch_errors();
  af_arch a;
  CHECK_OK(af_arch_load(g_tiny, &a));
  char out[700], txt[700];
  snprintf(out, sizeof out, "%s/tiny.gguf", af_test_tmpdir());
  af_mkmodel_opts o = {.seed = 7, .type = AF_GGML_Q4_0};
  CHECK_OK(af_mkmodel(&a, g_tiny, &o, out));
  char note[128] = "";
  CHECK(af_model_demo_note(out, note, sizeof note) == 1 && strstr(note, "random weights")); /* warned about */
  af_gguf *g;
  CHECK_OK(af_gguf_open(out, &g));
  if (!g) return af_test_done("test_gguf_mkmodel");
  af_arch full = a;
  full.llm.vocab = 367;
  CHECK_OK(af_arch_require_llm(&full, g_tiny));
  af_tspec *ts;
  size_t n;
  CHECK_OK(af_model_layout(&full, &ts, &n));
  CHECK(af_gguf_n_tensors(g) == n);
  for (size_t i = 0; i < n; i++) {
    const af_gguf_tensor *t = af_gguf_find_tensor(g, ts[i].name);
    CHECK_MSG(t != NULL, "%s missing", ts[i].name);
    if (!t) continue;
    CHECK(t->ne[0] == ts[i].ne[0] && t->ne[1] == ts[i].ne[1]);
    /* quantised: LLM matrices only; the ViT stays f16, the Q-Former and
     * projection f32 (the precisions the original runs them at) */
    int vit = !strncmp(ts[i].name, "v.", 2);
    int qf = !strncmp(ts[i].name, "q.", 2) || !strcmp(ts[i].name, "proj.weight");
    int want = ts[i].kind != AF_TK_MATRIX || qf ? AF_GGML_F32
               : vit || ts[i].ne[0] % 32        ? AF_GGML_F16
                                                : AF_GGML_Q4_0;
    CHECK_MSG(t->type == want, "%s type %d", ts[i].name, t->type);
    float *x = malloc(t->n_elements * sizeof *x);
    CHECK_OK(af_convert_to_f32(t->type, t->data, x, t->n_elements));
    double s = 0, s2 = 0;
    for (uint64_t j = 0; j < t->n_elements; j++) s += x[j], s2 += (double)x[j] * x[j];
    double mean = s / (double)t->n_elements, sd = sqrt(s2 / (double)t->n_elements - mean * mean);
    if (ts[i].kind == AF_TK_GAIN) CHECK(mean == 1.0 && sd < 1e-6);
    if (ts[i].kind == AF_TK_BIAS) CHECK(s2 == 0.0);
    if (ts[i].kind == AF_TK_MATRIX && t->n_elements >= 4096)
      CHECK_MSG(sd > 0.016 && sd < 0.024 && fabs(mean) < 0.003, "%s sd %g mean %g", ts[i].name, sd, mean);
    free(x);
  }
  free(ts);
  const char *s;
  uint32_t u;
  CHECK_OK(af_gguf_get_str(g, "general.architecture", &s));
  CHECK(strcmp(s, "artgpt4") == 0);
  CHECK_OK(af_gguf_get_str(g, "artflow.rope_layout", &s));
  CHECK(strcmp(s, "neox") == 0);
  CHECK_OK(af_gguf_get_u32(g, "llama.vocab_size", &u));
  CHECK(u == 367);
  const af_gguf_str *tok;
  uint64_t nt;
  CHECK_OK(af_gguf_get_arr_str(g, "tokenizer.ggml.tokens", &tok, &nt));
  CHECK(nt == 367 && strcmp(tok[3].s, "<0x00>") == 0 && strcmp(tok[258].s, "<0xFF>") == 0);
  af_gguf_close(g);
  /* the same seed gives the same file */
  char out2[700];
  snprintf(out2, sizeof out2, "%s/tiny2.gguf", af_test_tmpdir());
  CHECK_OK(af_mkmodel(&a, g_tiny, &o, out2));
  FILE *f1 = fopen(out, "rb"), *f2 = fopen(out2, "rb");
  int same = f1 && f2, c1, c2;
  while (same && (c1 = fgetc(f1)) != EOF) same = (c2 = fgetc(f2)) == c1;
  CHECK(same);
  if (f1) fclose(f1);
  if (f2) fclose(f2);
  /* inspect */
  snprintf(txt, sizeof txt, "%s/inspect.txt", af_test_tmpdir());
  FILE *f = fopen(txt, "w");
  CHECK_OK(af_model_inspect_print(out, f));
  fclose(f);
  f = fopen(txt, "rb");
  char *buf = calloc(1, 1 << 20);
  if (f && buf) buf[fread(buf, 1, (1 << 20) - 1, f)] = 0;
  if (f) fclose(f);
  CHECK(buf && strstr(buf, "tokenizer.ggml.tokens") && strstr(buf, "[str x 367]"));
  CHECK(buf && strstr(buf, "blk.1.ffn_gate.weight") && strstr(buf, "q4_0"));
  CHECK(buf && strstr(buf, "totals:"));
  free(buf);
  CHECK(af_model_inspect_print("/nonexistent.gguf", stdout) == AF_ERR_IO);
  af_error_clear();
  return af_test_done("test_gguf_mkmodel");
}
