/* SentencePiece tokenizer vs Debian's python3-sentencepiece: ids and decoded
 * text for 76 hostile strings (accents, combining marks, CJK, emoji, spaces,
 * tabs, newlines, digits, empty, prompt pieces, invalid UTF-8) on two models
 * (tests/data/tokenizer/make_fixtures.py).  Must match exactly.  Also
 * truncated/garbage model files give a one-line error.
 * af_spm_decode_hf against transformers 4.28's slow LlamaTokenizer.decode
 * (tests/data/tokenizer/make_hf_decode.py): special tokens written out with
 * its spacing rule, an added [PAD] standing alone; the tokenizer comes from
 * a GGUF written by the converter's vocabulary code, [PAD] padded in.
 * af_spm_encode_hf against the same tokenizer's encode
 * (tests/data/tokenizer/make_hf_encode.py): special-token text split out. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "convert/mkmodel.h"
#include "formats/gguf.h"
#include "formats/spm.h"

static size_t unhex(const char *h, char *out) {
  size_t n = strlen(h) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(h + 2 * i, "%2x", &v);
    out[i] = (char)v;
  }
  return n;
}

/* af_spm_encode_hf against transformers 4.28's slow LlamaTokenizer (loaded
 * with from_pretrained, as MiniGPT-4 does) on texts holding special-token
 * text, with and without BOS (tests/data/tokenizer/make_hf_encode.py) */
static void hf_encode(const af_spm *t) {
  char *js = af_test_slurp(af_test_data("tokenizer/hf_encode.json"), NULL);
  CHECK(js != NULL);
  cJSON *root = cJSON_Parse(js ? js : "{}"), *c;
  int n_cases = 0, n_ok = 0, n_special = 0;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
    const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
    cJSON *a = cJSON_GetObjectItem(c, "ids");
    int bos = cJSON_IsTrue(cJSON_GetObjectItem(c, "bos")), n = cJSON_GetArraySize(a), ok = 1, plain_same = 1;
    int32_t *ids = NULL, *plain = NULL;
    size_t got = 0, np = 0;
    CHECK_OK(af_spm_encode_hf(t, text, strlen(text), bos, &ids, &got));
    CHECK_OK(af_spm_encode(t, text, strlen(text), bos, -1, &plain, &np));
    ok = (int)got == n;
    for (int i = 0; i < n && ok; i++) ok = ids[i] == cJSON_GetArrayItem(a, i)->valueint;
    plain_same = np == got && (!np || !memcmp(plain, ids, np * sizeof *ids));
    n_special += !plain_same;
    n_cases++, n_ok += ok;
    CHECK_MSG(ok, "hf encode of '%s' (bos %d): %zu ids, want %d", text, bos, got, n);
    free(ids), free(plain);
  }
  printf(
      "encode as transformers' LlamaTokenizer: %d of %d cases equal (%d differ from plain sentencepiece)\n",
      n_ok, n_cases, n_special);
  CHECK(n_cases >= 50 && n_special >= 30);
  cJSON_Delete(root);
  free(js);
}

static void hf_decode(void) {
  char *js = af_test_slurp(af_test_data("tokenizer/hf_decode.json"), NULL);
  CHECK(js != NULL);
  cJSON *root = cJSON_Parse(js ? js : "{}");
  af_vocab v;
  memset(&v, 0, sizeof v);
  CHECK_OK(af_vocab_load_spm(af_test_data("artgpt4-tiny/vicuna/tokenizer.model"), &v));
  int pieces = cJSON_GetObjectItem(root, "pieces") ? cJSON_GetObjectItem(root, "pieces")->valueint : -1;
  CHECK((int)v.n == pieces);
  const char *names[1] = {"[PAD]"};
  CHECK_OK(af_vocab_pad(&v, v.n + 1, names, 1));
  char path[600];
  snprintf(path, sizeof path, "%s/hf_tok.gguf", af_test_tmpdir());
  af_gguf_writer *w = NULL;
  CHECK_OK(af_gguf_writer_new(&w));
  CHECK_OK(af_vocab_write(w, &v));
  CHECK_OK(af_gguf_writer_begin(w, path));
  CHECK_OK(af_gguf_writer_finish(w));
  af_gguf_writer_free(w);
  af_vocab_free(&v);
  af_gguf *g = NULL;
  af_spm *t = NULL;
  CHECK_OK(af_gguf_open(path, &g));
  if (g) CHECK_OK(af_spm_from_gguf(g, &t));
  int n_cases = 0, n_ok = 0;
  cJSON *c;
  cJSON *cases = t ? cJSON_GetObjectItem(root, "cases") : NULL;
  cJSON_ArrayForEach(c, cases) {
    cJSON *a = cJSON_GetObjectItem(c, "ids");
    int n = cJSON_GetArraySize(a);
    int32_t ids[64];
    for (int i = 0; i < n && i < 64; i++) ids[i] = cJSON_GetArrayItem(a, i)->valueint;
    char *text = NULL;
    CHECK_OK(af_spm_decode_hf(t, ids, (size_t)n, &text));
    const char *want = cJSON_GetObjectItem(c, "text")->valuestring;
    int ok = text && !strcmp(text, want);
    n_cases++, n_ok += ok;
    CHECK_MSG(ok, "hf decode of case %d: '%s', want '%s'", n_cases - 1, text ? text : "(null)", want);
    free(text);
  }
  printf("decode as transformers' LlamaTokenizer: %d of %d cases equal\n", n_ok, n_cases);
  CHECK(n_cases >= 30);
  if (t) hf_encode(t);
  af_spm_free(t);
  af_gguf_close(g);
  cJSON_Delete(root);
  free(js);
}

int main(void) {
  char *js = af_test_slurp(af_test_data("tokenizer/expected.json"), NULL);
  CHECK(js != NULL);
  cJSON *root = cJSON_Parse(js ? js : "{}"), *models = cJSON_GetObjectItem(root, "models"), *m;
  int total = 0, exact = 0;
  cJSON_ArrayForEach(m, models) {
    char path[512];
    snprintf(path, sizeof path, "tokenizer/%s", m->string);
    af_spm *t = NULL;
    CHECK_OK(af_spm_load(af_test_data(path), &t));
    if (!t) continue;
    CHECK(af_spm_n_vocab(t) == cJSON_GetObjectItem(m, "pieces")->valueint);
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(m, "cases")) {
      const char *hex = cJSON_GetObjectItem(c, "hex")->valuestring;
      char text[1024];
      size_t len = unhex(hex, text);
      int32_t *ids = NULL;
      size_t n = 0;
      CHECK_OK(af_spm_encode(t, text, len, 0, -1, &ids, &n));
      cJSON *want = cJSON_GetObjectItem(c, "ids");
      int ok = (int)n == cJSON_GetArraySize(want);
      for (int i = 0; ok && i < (int)n; i++) ok = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
      char *dec = NULL;
      CHECK_OK(af_spm_decode(t, ids, n, &dec));
      int dec_ok = dec && !strcmp(dec, cJSON_GetObjectItem(c, "decoded")->valuestring);
      total++;
      exact += ok && dec_ok;
      CHECK_MSG(ok, "%s: ids differ for hex %s (%zu ids, want %d)", m->string, hex, n,
                cJSON_GetArraySize(want));
      CHECK_MSG(dec_ok, "%s: decode differs for hex %s: '%s'", m->string, hex, dec ? dec : "(null)");
      free(dec);
      free(ids);
    }
    /* BOS and the continuation form of a stop string */
    int32_t *ids;
    size_t n;
    CHECK_OK(af_spm_encode(t, "###", 3, 1, 0, &ids, &n));
    CHECK(n >= 2 && ids[0] == af_spm_options(t)->bos_id);
    CHECK(af_spm_piece(t, ids[1])[0] == '#'); /* no dummy prefix */
    free(ids);
    af_spm_free(t);
  }
  printf("%d of %d strings: ids and decode equal to sentencepiece\n", exact, total);
  CHECK(total >= 150);
  cJSON_Delete(root);
  free(js);

  /* hostile model files */
  size_t n;
  char *good = af_test_slurp(af_test_data("tokenizer/llama-like.model"), &n);
  af_spm *t = NULL;
  CHECK(good != NULL);
  if (good) {
    CHECK(af_spm_load_buffer(good, n / 2, "half.model", &t) == AF_ERR_FORMAT);
    CHECK(strstr(af_error_message(), "half.model") != NULL);
    af_error_clear();
    CHECK(af_spm_load_buffer("\xff\xff\xff\xff", 4, "garbage.model", &t) == AF_ERR_FORMAT);
    af_error_clear();
    CHECK(af_spm_load_buffer("", 0, "empty.model", &t) == AF_ERR_FORMAT);
    af_error_clear();
    free(good);
  }
  CHECK(af_spm_load("/nonexistent/tokenizer.model", &t) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "/nonexistent/tokenizer.model") != NULL);
  af_error_clear();
  hf_decode();
  return af_test_done("test_tokenizer_spm");
}
