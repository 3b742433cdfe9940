/* Architecture files (config/models/NAME.yaml): the hyper-parameters of the
 * vision encoder, Q-Former, LLM and the prompt, as promised in cli-contract.md:
 *
 *   name: artgpt4-13b            # optional; default = file stem
 *   architecture: artgpt4        # optional: artgpt4 (adapters) | minigpt4
 *   vision:  {image_size, patch_size, width, heads, mlp_width, layers, ln_eps,
 *             ln_vision_eps, mean: [r,g,b], std: [r,g,b]}
 *   qformer: {width, layers, heads, ffn_width, queries, cross_attention_every, ln_eps}
 *   llm:     {hidden, layers, heads, kv_heads, ffn, vocab, context_length,
 *             rms_eps, rope_base, adapter_width}   # all optional
 *   prompt:  {template, default_question, stop: [..]}
 *
 * `vision.layers` is the number of blocks used (the release file stores one
 * more).  LLM values left out are taken from the HF config.json by the
 * converter (and are required by mkmodel); values given are checked against
 * config.json and the tensors.  Unknown keys are errors (file:line named). */
#ifndef AF_CONVERT_ARCH_H
#define AF_CONVERT_ARCH_H

#ifdef __cplusplus
extern "C" {
#endif

#define AF_ARCH_STR 1024
#define AF_ARCH_MAX_STOP 8

typedef struct af_arch {
  char name[64];
  char architecture[16]; /* "artgpt4", "minigpt4" or "" (decided by adapters) */
  struct {
    int image_size, patch_size, width, heads, mlp_width, layers;
    float ln_eps, ln_vision_eps;
    float mean[3], std[3];
  } vision;
  struct {
    int width, layers, heads, ffn_width, queries, cross_attention_every;
    float ln_eps;
  } qformer;
  /* -1 (ints) / 0 (floats) = not given */
  struct {
    int hidden, layers, heads, kv_heads, ffn, vocab, context_length, adapter_width;
    float rms_eps, rope_base;
    /* generate()'s special ids as the original loads them (generation_config.json,
     * else config.json; -1 = none): written as artflow.generate.* when gen_set */
    int gen_set, gen_bos, gen_eos;
  } llm;
  struct {
    char template_[AF_ARCH_STR]; /* must contain <ImageHere> and {question} or be empty */
    char default_question[AF_ARCH_STR];
    char stop[AF_ARCH_MAX_STOP][64];
    int n_stop;
  } prompt;
} af_arch;

/* Loads and validates an architecture YAML into *out.  Returns 0,
 * AF_ERR_IO (unreadable), AF_ERR_CONFIG (syntax error, unknown key, missing
 * required key, wrong type, out-of-range value; message names file:line and key). */
int af_arch_load(const char *path, af_arch *out);

/* Checks that the LLM section is complete (mkmodel needs every value);
 * fills defaults for kv_heads (= heads), context_length (2048), rms_eps (1e-6),
 * rope_base (10000).  AF_ERR_CONFIG naming the missing key. */
int af_arch_require_llm(af_arch *a, const char *path);

/* Compares one hyper-parameter the tensors reveal with the YAML value.
 * Returns 0 when equal or when the YAML value is unset (< 0; then *yaml_val
 * is set to `found`), else AF_ERR_MISMATCH with a message naming the arch
 * file, the key, both values and where `found` came from. */
int af_arch_check(const char *arch_path, const char *key, int *yaml_val, long long found, const char *source);

#ifdef __cplusplus
}
#endif
#endif
