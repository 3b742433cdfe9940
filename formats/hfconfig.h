/* Hugging Face config.json (LLaMA family) parsed with cJSON.
 *
 * Only the hyper-parameters artflow needs are kept; integer fields that are
 * absent or null read as -1 and float fields as 0, so callers can tell
 * "not given" apart.  Special ids are reported as written: Vicuna v0 files
 * carry wrong ones (bos 0 / eos 1), so the converter takes ids from
 * tokenizer.model instead (docs/model.md §6.2). */
#ifndef AF_FORMATS_HFCONFIG_H
#define AF_FORMATS_HFCONFIG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_hfconfig {
  char model_type[32];   /* "llama"; "" when absent */
  char architecture[64]; /* architectures[0], e.g. "LlamaForCausalLM" */
  char torch_dtype[16];  /* "float16"; "" when absent */
  int64_t hidden_size;
  int64_t num_hidden_layers;
  int64_t num_attention_heads;
  int64_t num_key_value_heads; /* -1 when absent (= num_attention_heads) */
  int64_t intermediate_size;
  int64_t vocab_size;
  int64_t max_position_embeddings;
  int64_t bos_token_id, eos_token_id, pad_token_id; /* -1 when absent/null */
  double rms_norm_eps;                              /* 0 when absent */
  double rope_theta;                                /* 0 when absent (LLaMA default 10000) */
  int tie_word_embeddings;                          /* -1 absent, 0/1 */
} af_hfconfig;

/* path: a config.json file or a folder holding one.  Fills *out.  Returns 0,
 * AF_ERR_IO, AF_ERR_FORMAT (not JSON / not an object / a field of the wrong
 * type or out of range; message names file and key). */
int af_hfconfig_load(const char *path, af_hfconfig *out);
/* Same from a NUL-terminated JSON text; label names it in messages. */
int af_hfconfig_parse(const char *json, const char *label, af_hfconfig *out);

#ifdef __cplusplus
}
#endif
#endif
