/* artflow tokenize: the token ids (no BOS) of a text, per cli-contract.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"
#include "formats/gguf.h"
#include "formats/spm.h"

static const char usage[] =
    "usage: artflow tokenize --model MODEL TEXT\n"
    "\n"
    "Prints the token ids of TEXT (no BOS), space-separated, as the original\n"
    "tokenises prompt text (transformers 4.28's LlamaTokenizer: the text of the\n"
    "special tokens <s>, </s>, <unk> becomes their ids, the rest goes through\n"
    "the model's SentencePiece tokenizer).  MODEL is a .gguf model file or a\n"
    "tokenizer.model file.\n"
    "\n"
    "options:\n"
    "  --model FILE   model (.gguf) or SentencePiece tokenizer.model (required)\n"
    "  --bos          prepend the BOS id\n"
    "  --pieces       print id:piece pairs instead of ids\n"
    "  --decode       TEXT is a list of ids; print the decoded text (as the original's\n"
    "                 answer: special tokens written out)\n"
    "  --sentencepiece  plain SentencePiece instead: special-token text is ordinary\n"
    "                 text, and --decode leaves control tokens out\n";

static int is_gguf(const char *path) {
  FILE *f = fopen(path, "rb");
  char m[4] = {0};
  if (!f) return 0;
  size_t n = fread(m, 1, 4, f);
  fclose(f);
  return n == 4 && !memcmp(m, "GGUF", 4);
}

int af_cmd_tokenize(int argc, char **argv) {
  const char *model = NULL, *text = NULL;
  int bos = 0, pieces = 0, decode = 0, plain = 0;
  for (int i = 1; i < argc; i++) {
    if (af_cli_is_help(argv[i])) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    } else if (!strcmp(argv[i], "--model")) {
      if (++i >= argc) return af_cli_usage_error("tokenize", usage, "--model needs a file");
      model = argv[i];
    } else if (!strcmp(argv[i], "--bos"))
      bos = 1;
    else if (!strcmp(argv[i], "--pieces"))
      pieces = 1;
    else if (!strcmp(argv[i], "--decode"))
      decode = 1;
    else if (!strcmp(argv[i], "--sentencepiece"))
      plain = 1;
    else if (argv[i][0] == '-' && argv[i][1] == '-' && !text)
      return af_cli_usage_error("tokenize", usage, "unknown option '%s'", argv[i]);
    else if (text)
      return af_cli_usage_error("tokenize", usage, "give TEXT as one argument (quote it)");
    else
      text = argv[i];
  }
  if (!model) return af_cli_usage_error("tokenize", usage, "--model is required");
  if (!text) return af_cli_usage_error("tokenize", usage, "no TEXT given");
  af_spm *t = NULL;
  af_gguf *g = NULL;
  int rc;
  if (is_gguf(model)) {
    rc = af_gguf_open(model, &g);
    if (!rc) rc = af_spm_from_gguf(g, &t);
  } else {
    rc = af_spm_load(model, &t);
  }
  af_gguf_close(g);
  if (rc) return af_cli_fail(rc, NULL);
  if (decode) {
    size_t n = 0, cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    for (char *p = (char *)text, *e; ids; p = e) {
      long v = strtol(p, &e, 10);
      if (e == p) break;
      if (v < 0 || v >= af_spm_n_vocab(t)) {
        free(ids);
        af_spm_free(t);
        return af_cli_usage_error("tokenize", usage, "id %ld is outside the vocabulary (0..%d)", v,
                                  af_spm_n_vocab(t) - 1);
      }
      if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
      if (ids) ids[n++] = (int32_t)v;
    }
    char *out = NULL;
    rc = !ids    ? af_err(AF_ERR_NOMEM, "out of memory")
         : plain ? af_spm_decode(t, ids, n, &out)
                 : af_spm_decode_hf(t, ids, n, &out);
    if (!rc) printf("%s\n", out);
    free(out);
    free(ids);
  } else {
    int32_t *ids = NULL;
    size_t n = 0;
    rc = plain ? af_spm_encode(t, text, strlen(text), bos, -1, &ids, &n)
               : af_spm_encode_hf(t, text, strlen(text), bos, &ids, &n);
    for (size_t i = 0; !rc && i < n; i++) {
      if (pieces)
        printf("%s%d:%s", i ? " " : "", ids[i], af_spm_piece(t, ids[i]));
      else
        printf("%s%d", i ? " " : "", ids[i]);
    }
    if (!rc) putchar('\n');
    free(ids);
  }
  af_spm_free(t);
  return rc ? af_cli_fail(rc, NULL) : AF_EXIT_OK;
}
