/* Rebuilds the SentencePiece tokenizer from GGUF metadata (tokenizer.ggml.*,
 * llama.cpp's keys, plus artflow's optional flags). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/gguf.h"
#include "formats/spm.h"

static int32_t id_or(const af_gguf *g, const char *key, int32_t def) {
  uint32_t v;
  return af_gguf_get_u32(g, key, &v) == 0 ? (int32_t)v : def;
}

static int flag_or(const af_gguf *g, const char *key, int def) {
  bool b;
  return af_gguf_get_bool(g, key, &b) == 0 ? b : def;
}

int af_spm_from_gguf(const af_gguf *g, af_spm **out) {
  *out = NULL;
  const char *model = NULL;
  if (af_gguf_get_str(g, "tokenizer.ggml.model", &model) || strcmp(model, "llama"))
    return af_err(AF_ERR_UNSUPPORTED,
                  "%s: no SentencePiece (tokenizer.ggml.model = llama) tokenizer in the file",
                  af_gguf_path(g));
  const af_gguf_str *toks;
  uint64_t n = 0, ns = 0, nt = 0;
  int rc = af_gguf_get_arr_str(g, "tokenizer.ggml.tokens", &toks, &n);
  if (rc || n == 0 || n > (1u << 24))
    return af_err(AF_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or empty", af_gguf_path(g));
  const char **pieces = malloc(n * sizeof *pieces);
  size_t *lens = malloc(n * sizeof *lens);
  float *scores = calloc(n, sizeof *scores);
  int32_t *types = malloc(n * sizeof *types);
  if (!pieces || !lens || !scores || !types) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  for (uint64_t i = 0; i < n; i++)
    pieces[i] = toks[i].s, lens[i] = (size_t)toks[i].len, types[i] = AF_SPM_NORMAL;
  if (af_gguf_get_arr_f32(g, "tokenizer.ggml.scores", NULL, &ns) == 0 && ns == n)
    af_gguf_get_arr_f32(g, "tokenizer.ggml.scores", scores, &ns);
  if (af_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", NULL, &nt) == 0 && nt == n)
    af_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", types, &nt);
  int has_bytes = 0;
  for (uint64_t i = 0; i < n; i++) has_bytes |= types[i] == AF_SPM_BYTE;
  af_spm_opts o = {
      .add_dummy_prefix = flag_or(g, "tokenizer.ggml.add_space_prefix", 1),
      .remove_extra_whitespaces = flag_or(g, "tokenizer.ggml.remove_extra_whitespaces", 0),
      .escape_whitespaces = 1,
      .byte_fallback = flag_or(g, "artflow.tokenizer.byte_fallback", has_bytes),
      .treat_whitespace_as_suffix = 0,
      .unk_id = id_or(g, "tokenizer.ggml.unknown_token_id", 0),
      .bos_id = id_or(g, "tokenizer.ggml.bos_token_id", 1),
      .eos_id = id_or(g, "tokenizer.ggml.eos_token_id", 2),
      .pad_id = id_or(g, "tokenizer.ggml.padding_token_id", -1),
      .n_pieces = id_or(g, "artflow.tokenizer.pieces", 0),
  };
  rc = af_spm_new(pieces, lens, scores, types, (int)n, &o, out);
out:
  free(pieces), free(lens), free(scores), free(types);
  return rc;
}
