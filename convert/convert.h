/* `artflow convert`: the release checkpoints (eva_vit_g.pth, the BLIP-2
 * checkpoint, a Vicuna HF folder, ArtGPT-4.pth or a MiniGPT-4 checkpoint) into
 * one GGUF file with the layout of mkmodel.h (docs/model-format.md).
 *
 * Release quirks applied: only the first vision.layers ViT blocks are used (the
 * file stores one more); the ViT qkv bias is concat(q_bias, zeros, v_bias);
 * the adapter file's post_attention_layernorm (all layers) and input_layernorm
 * (even layers) gains replace Vicuna's; embeddings/lm_head keep their row count
 * (32001) with the extra rows named after the tokenizer's pieces ("[PAD]");
 * special ids come from tokenizer.model, not config.json.  Every input key is
 * reported as used, ignored (with the reason) or missing; a missing required
 * tensor or a shape that disagrees with the architecture file is an error
 * before anything is written.  Memory: the inputs are mmapped; at most one
 * chunk of rows (<= 64 MiB) of converted data is held at a time. */
#ifndef AF_CONVERT_CONVERT_H
#define AF_CONVERT_CONVERT_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_convert_opts {
  const char *arch;    /* architecture YAML */
  const char *vit;     /* eva_vit_g.pth */
  const char *qformer; /* blip2_pretrained_flant5xxl.pth */
  const char *llm;     /* Vicuna HF folder (config.json, tokenizer.model, weights) */
  const char *adapter; /* ArtGPT-4.pth / MiniGPT-4 checkpoint (llama_proj...); may be NULL */
  const char *out;     /* output GGUF */
  int type;            /* af_ggml_type for large matrices: F32, F16, Q8_0, Q4_0 */
  FILE *report;        /* coverage report and progress, or NULL */
  int no_llm_base;     /* 1: leave out the tensors taken from the Vicuna folder (the base LLM's
                          matrices and the norms ArtGPT-4 did not re-train); the file is then
                          used with a base LLM GGUF (--llm B.gguf / model: {vision:, llm:}) */
  const char *demo;    /* non-NULL: the weights are not meaningful (e.g. random test
                          checkpoints); stored as artflow.demo, which describe, chat and
                          run show as a warning and in the records.  NULL = real weights */
} af_convert_opts;

/* Converts; returns 0 or the first error (AF_ERR_IO, AF_ERR_FORMAT,
 * AF_ERR_NOT_FOUND for missing tensors, AF_ERR_MISMATCH for shapes that
 * disagree with the YAML or config.json, AF_ERR_CONFIG).  On failure no
 * output file is left behind. */
int af_convert(const af_convert_opts *o);

#ifdef __cplusplus
}
#endif
#endif
