/* SentencePiece BPE tokenizer as LLaMA uses it (tokenizer.model), in C:
 * our own protobuf reader for ModelProto, encoding by score-ordered merges of
 * adjacent symbols (highest score first, leftmost on ties), user-defined
 * symbols matched whole, byte fallback (<0xXX> pieces) for anything else, and
 * decoding back to text.  Identity normalisation only (LLaMA's); other
 * normalisers are refused by name. */
#ifndef AF_FORMATS_SPM_H
#define AF_FORMATS_SPM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SentencePiece piece types (sentencepiece_model.proto). */
enum {
  AF_SPM_NORMAL = 1,
  AF_SPM_UNKNOWN = 2,
  AF_SPM_CONTROL = 3,
  AF_SPM_USER = 4,
  AF_SPM_UNUSED = 5,
  AF_SPM_BYTE = 6
};

typedef struct af_spm_opts {
  int add_dummy_prefix;         /* prepend U+2581 to non-empty input (default 1) */
  int remove_extra_whitespaces; /* collapse runs of spaces, trim (LLaMA: 0) */
  int escape_whitespaces;       /* ' ' -> U+2581 (default 1) */
  int byte_fallback;            /* unknown characters -> <0xXX> pieces (LLaMA: 1) */
  int treat_whitespace_as_suffix;
  int32_t unk_id, bos_id, eos_id, pad_id; /* -1 = none */
  /* ids from n_pieces on are rows the model has beyond its tokenizer (Vicuna
   * v0's [PAD]): decoded by id, never matched or produced by encoding, as the
   * original's tokenizer does not know them.  0 = every id is the tokenizer's. */
  int32_t n_pieces;
} af_spm_opts;

typedef struct af_spm af_spm;

/* Parses a tokenizer.model file.  AF_ERR_IO / AF_ERR_FORMAT (truncated or
 * malformed protobuf; message names the file) / AF_ERR_UNSUPPORTED (not BPE,
 * or a normaliser other than identity).  Caller frees with af_spm_free. */
int af_spm_load(const char *path, af_spm **out);
/* Same from memory; `name` is used in messages. */
int af_spm_load_buffer(const void *buf, size_t n, const char *name, af_spm **out);
/* Builds a tokenizer from arrays (e.g. GGUF metadata); everything is copied. */
int af_spm_new(const char *const *pieces, const size_t *lens, const float *scores, const int32_t *types,
               int n, const af_spm_opts *opts, af_spm **out);
void af_spm_free(af_spm *t);

int af_spm_n_vocab(const af_spm *t);
/* Piece text (borrowed, NUL-terminated) or NULL when id is out of range. */
const char *af_spm_piece(const af_spm *t, int32_t id);
float af_spm_score(const af_spm *t, int32_t id);
int af_spm_type(const af_spm *t, int32_t id);
const af_spm_opts *af_spm_options(const af_spm *t);
/* Id of an exact piece, or -1. */
int32_t af_spm_find(const af_spm *t, const char *piece);

/* Encodes text[0..len) (any bytes; invalid UTF-8 bytes become byte pieces or
 * unk).  add_bos prepends bos_id.  dummy_prefix: -1 = the model's setting,
 * 0/1 override (a stop string tokenised as a continuation uses 0).
 * *ids is malloc'd (caller frees); *n its length. */
int af_spm_encode(const af_spm *t, const char *text, size_t len, int add_bos, int dummy_prefix, int32_t **ids,
                  size_t *n);

/* Encodes text as Hugging Face's slow LlamaTokenizer (transformers 4.28)
 * does, which is how the original tokenises its prompt segments: the text is
 * split at the special tokens' texts (the pieces of the unk, bos and eos ids:
 * "<unk>", "<s>", "</s>"; leftmost first, no whitespace stripped around them,
 * as their AddedTokens have lstrip = rstrip = False), each special becomes its
 * id and each run between them is encoded by af_spm_encode with its own
 * dummy prefix (empty runs skipped).  Without special-token text it equals
 * af_spm_encode(..., -1, ...). */
int af_spm_encode_hf(const af_spm *t, const char *text, size_t len, int add_bos, int32_t **ids, size_t *n);

/* Decodes ids to text (malloc'd): byte pieces assembled, U+2581 -> ' ', the
 * dummy-prefix space of the first piece dropped, control pieces skipped. */
int af_spm_decode(const af_spm *t, const int32_t *ids, size_t n, char **text);
/* The text Hugging Face's slow LlamaTokenizer (transformers 4.28) gives for
 * ids with decode(ids) as MiniGPT-4's Chat.answer calls it: special tokens
 * (the pieces of the unk, bos and eos ids) are written as their piece text
 * ("<s>", "</s>", "<unk>") with a space before one that follows ordinary
 * text, the runs between them decoded as sentencepiece does (each run's
 * dummy-prefix space dropped); added tokens (type USER, e.g. [PAD]) stand
 * alone, joined to their neighbours with a space.  Without such tokens it
 * equals af_spm_decode.  *text: malloc'd. */
int af_spm_decode_hf(const af_spm *t, const int32_t *ids, size_t n, char **text);

struct af_gguf;
/* The tokenizer stored in a GGUF file's tokenizer.ggml.* metadata (ours or
 * llama.cpp's).  AF_ERR_UNSUPPORTED when the file has none. */
int af_spm_from_gguf(const struct af_gguf *g, af_spm **out);

#ifdef __cplusplus
}
#endif
#endif
