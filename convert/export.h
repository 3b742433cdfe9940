/* `artflow export --llm-only`: the LLM part of an artflow model file as a
 * GGUF file that llama.cpp (and any GGUF tool that knows LLaMA) loads as a
 * plain LLaMA: general.architecture "llama", llama.* hyper-parameters,
 * tensors under llama.cpp's names with q/k rows in llama.cpp's interleaved
 * RoPE order, general.file_type as llama.cpp's enum and the tokenizer as
 * tokenizer.ggml.* (docs/model-format.md, "Exporting the LLM").
 *
 * Left out: the vision encoder, Q-Former, projection and ArtGPT-4's
 * ImageAdapters.  An adapter adds up(GELU(down(h))) to the residual stream
 * after each attention block; the GELU between its two matrices is not
 * linear, so no change to LLaMA's own matrices reproduces it, and llama.cpp's
 * LLaMA graph has no place for an extra block.  ArtGPT-4's re-trained RMSNorm
 * gains replace Vicuna's in the model file and are kept.  Tensors keep their
 * stored type and bytes (nothing is re-quantised); q/k rows are reordered
 * whole, so the permutation is exact for every type. */
#ifndef AF_CONVERT_EXPORT_H
#define AF_CONVERT_EXPORT_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_export_opts {
  const char *model; /* an artflow model file (convert, mkmodel) */
  const char *llm;   /* the base LLM GGUF of a two-file model (MODEL converted with
                        --no-llm-base), or NULL; MODEL's tensors and keys win */
  const char *out;   /* the GGUF to write (never one of the inputs) */
  FILE *report;      /* a summary of what was written and left out, or NULL */
} af_export_opts;

/* Writes the LLM part of o->model to o->out.  Returns 0, or AF_ERR_IO,
 * AF_ERR_FORMAT (an input without the LLM's keys or tensors, a tensor of
 * the wrong shape: the message names the file and the tensor or key),
 * AF_ERR_MISMATCH (the two files disagree), AF_ERR_CONFIG (a --no-llm-base
 * file without its base LLM, -o naming an input), AF_ERR_UNSUPPORTED (a
 * tensor type the writer cannot write).  On failure no output is left. */
int af_export_llm(const af_export_opts *o);

#ifdef __cplusplus
}
#endif
#endif
