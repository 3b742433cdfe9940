/* The tensor layout of an artflow model file and random-weight models.
 *
 * af_model_layout lists every tensor of a model (GGUF name, ggml-order shape,
 * kind) for an architecture; the converter and mkmodel both walk this list, so
 * they always agree on names and shapes (docs/model-format.md).
 * af_model_write_meta sets every hyper-parameter key.  af_mkmodel writes a
 * complete random model streaming one row block at a time. */
#ifndef AF_CONVERT_MKMODEL_H
#define AF_CONVERT_MKMODEL_H

#include <stdint.h>
#include <stdio.h>

#include "convert/arch.h"
#include "formats/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum af_tkind {
  AF_TK_MATRIX, /* 2-D weight: takes the requested --type (f16 when rows don't fit the block) */
  AF_TK_GAIN,   /* norm gain (random init 1): always f32 */
  AF_TK_BIAS,   /* bias / norm shift (random init 0): always f32 */
  AF_TK_OTHER,  /* embeddings-like small tensors (cls, pos, queries, conv): f32 */
} af_tkind;

typedef struct af_tspec {
  char name[64];
  uint32_t n_dims;
  uint64_t ne[4]; /* ggml order: ne[0] innermost = PyTorch's last dim */
  af_tkind kind;
  int layer; /* block index for per-layer tensors, -1 otherwise */
} af_tspec;

/* Lists the tensors of `a` (LLM section must be complete; adapters included
 * when a->llm.adapter_width > 0).  *out is malloc'ed (caller frees).
 * Returns 0 or AF_ERR_NOMEM. */
int af_model_layout(const af_arch *a, af_tspec **out, size_t *n);

/* GGUF type to store a tensor of this kind/shape under --type `type`: every
 * component at the precision the original runs it.  f32: everything fp32.
 * Otherwise the vision encoder's matrices are f16 (the original's
 * vit_precision), the Q-Former's and the projection's fp32, and `type`
 * (f16, q8_0, q4_0) applies to the LLM's matrices only (rows that do not
 * fill a quant block: f16).  Norms, biases and other small tensors: fp32. */
int af_model_store_type(const af_tspec *t, int type);

/* Sets general.*, llama.*, vision.*, qformer.*, artflow.* keys from `a`
 * (architecture "artgpt4" when a->llm.adapter_width > 0, else "minigpt4"). */
int af_model_write_meta(af_gguf_writer *w, const af_arch *a, int type);

/* A tokenizer vocabulary as stored in GGUF metadata (llama.cpp keys). */
typedef struct af_vocab {
  size_t n;
  char **pieces; /* UTF-8, SentencePiece spelling ("\xe2\x96\x81" for space) */
  float *scores;
  int32_t *types;         /* 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte */
  int bos, eos, unk, pad; /* -1 when none */
  int add_dummy_prefix, remove_extra_whitespaces, byte_fallback;
  size_t n_model; /* entries the tokenizer itself has, when af_vocab_pad added more (else 0) */
} af_vocab;

/* Reads the pieces of a SentencePiece tokenizer.model (protobuf fields
 * pieces = 1 {piece 1, score 2, type 3}, trainer_spec = 2 {unk/bos/eos/pad ids
 * 40..43, byte_fallback 35}, normalizer_spec = 3 {add_dummy_prefix 3,
 * remove_extra_whitespaces 4}).  Returns 0, AF_ERR_IO, AF_ERR_FORMAT. */
int af_vocab_load_spm(const char *path, af_vocab *out);
/* Built-in byte-level vocabulary: <unk> <s> </s>, <0x00>..<0xFF>, printable
 * ASCII and a few merges; ids 0/1/2 = unk/bos/eos. */
int af_vocab_builtin(af_vocab *out);
/* Appends entries up to n total (names from `names` when given, else
 * "<extra_i>"; type user-defined for named ones, unused otherwise); the
 * count before them goes to n_model (artflow.tokenizer.pieces). */
int af_vocab_pad(af_vocab *v, size_t n, const char *const *names, size_t n_names);
void af_vocab_free(af_vocab *v);
/* Writes tokenizer.ggml.* keys. */
int af_vocab_write(af_gguf_writer *w, const af_vocab *v);

typedef struct af_mkmodel_opts {
  uint64_t seed;
  int type;              /* af_ggml_type for matrices */
  const char *tokenizer; /* tokenizer.model path or NULL for the built-in vocab */
  FILE *log;             /* progress lines, or NULL */
} af_mkmodel_opts;

/* Writes a random-weight model for `a` to `path`: matrices N(0, 0.02) (kept
 * scaled so activations stay sane; Irwin-Hall approximation of the normal),
 * gains 1, biases 0, queries/cls/pos
 * N(0, 0.02).  Memory stays O(one row block).  llm.vocab absent: taken from
 * the tokenizer.  Returns 0 or the first error (AF_ERR_CONFIG, AF_ERR_IO...). */
int af_mkmodel(const af_arch *a, const char *arch_path, const af_mkmodel_opts *o, const char *path);

#ifdef __cplusplus
}
#endif
#endif
