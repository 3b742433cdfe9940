/* Device copies of a GGUF model's tensors.
 *
 * af_weights maps a GGUF file once and uploads tensors to the device on first
 * use (each tensor once per af_weights, shared by all stages that hold it).
 * A tensor keeps its stored type (F32, F16, Q8_0, Q4_0) unless the caller asks
 * for F32, in which case it is dequantised on the host while uploading; fp16
 * is storage only on devices without cl_khr_fp16 (kernels read it with
 * vload_half).  Thread-safe. */
#ifndef AF_CL_WEIGHTS_H
#define AF_CL_WEIGHTS_H

#include <stdint.h>

#include "cl/runtime.h"
#include "formats/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_dtensor {
  const char *name; /* borrowed from the GGUF */
  int type;         /* af_ggml_type of the device copy */
  uint32_t n_dims;
  uint64_t ne[4]; /* ne[0] innermost (a PyTorch [rows, cols] weight has ne = {cols, rows}) */
  uint64_t n_elements;
  size_t nbytes; /* bytes on the device */
  cl_mem mem;    /* owned by af_weights */
} af_dtensor;

typedef struct af_weights af_weights;

/* Opens `path` (GGUF) for device `cl`.  Caller frees with af_weights_free
 * (after every queue using the buffers is finished). */
int af_weights_open(af_cl *cl, const char *path, af_weights **out);
void af_weights_free(af_weights *w);

/* Two-file models: tensors and metadata are looked up in `primary` (our
 * vision/adapter file) first, then in `fallback` (e.g. a llama.cpp Vicuna
 * GGUF), so that ArtGPT-4's re-trained RMSNorm gains and adapters override the
 * base model's.  fallback NULL = af_weights_open(primary).  The pair is
 * checked first (LLaMA shape keys present in both agree, the projection's
 * output width equals the LLM's hidden size, the tokenizer's token count equals
 * the embedding rows, both tokenizers hold the same pieces, q and k come from
 * files with the same RoPE layout); a disagreement is AF_ERR_MISMATCH with one
 * line naming both files. */
int af_weights_open_pair(af_cl *cl, const char *primary, const char *fallback, af_weights **out);

/* The underlying file (borrowed); the primary one of a pair. */
const af_gguf *af_weights_gguf(const af_weights *w);
/* The second file of a pair, or NULL. */
const af_gguf *af_weights_fallback(const af_weights *w);
/* The file whose metadata holds `key` (primary first); the primary file when
 * neither does, so that a getter's NOT_FOUND names it.  Borrowed. */
const af_gguf *af_weights_meta(const af_weights *w, const char *key);
/* Host view of tensor `name` from the first file that has it, or NULL. */
const af_gguf_tensor *af_weights_find(const af_weights *w, const char *name);
/* The file that provides tensor `name` (primary first), or NULL. */
const af_gguf *af_weights_tensor_file(const af_weights *w, const char *name);

/* Returns the device copy of tensor `name`, uploading it on first use.
 * want_type: -1 keeps the stored type, AF_GGML_F32 converts to fp32.
 * AF_ERR_NOT_FOUND names the tensor and the file; AF_ERR_DEVICE_MEM when the
 * tensor does not fit one allocation.  *out is borrowed from w. */
int af_weights_get(af_weights *w, const char *name, int want_type, const af_dtensor **out);

/* Same, with a check of the dims (ne order; 0 = any) before uploading. */
int af_weights_expect(af_weights *w, const char *name, int want_type, uint32_t n_dims, const uint64_t *ne,
                      const af_dtensor **out);

/* Bytes uploaded so far. */
uint64_t af_weights_device_bytes(const af_weights *w);
/* Of those, the bytes used in place from the mapped file (zero-copy: profile
 * define AF_WEIGHTS_ZERO_COPY=1 on a device sharing host memory, tensor data
 * aligned to the device's base-address alignment; see weights.c). */
uint64_t af_weights_in_place_bytes(const af_weights *w);
/* Drops the model files' pages from this process's resident set (see
 * af_gguf_release): for weights that will not be used for a while, e.g. the
 * vision model's while describe runs the LLM.  Tensors used in place fault
 * their pages back when next read.  Tensors copied to the device release
 * their pages on their own after the upload.  NULL-safe. */
void af_weights_release_host(af_weights *w);

/* Taking turns with the host's memory.  On a device that reads weights in
 * place from the mapped file (zero-copy, above), every model in use stays in
 * the process's resident set: a pipeline's vit + qformer + llm stages of a
 * 7B q4_0 model hold about 6 GB.  Unless the profile sets
 * AF_WEIGHTS_ALL_RESIDENT=1, a stage brackets its work on a batch with
 * af_weights_turn_begin/end: the stages of one device then run
 * one at a time, first come first served, and each drops its model's pages
 * when its turn ends, so the largest model bounds the resident set instead of
 * the sum (the pages stay in the page cache and fault back next turn).  Both
 * are no-ops (begin returns 0) for weights that are copied to the device.
 * end must get begin's return value. */
int af_weights_turn_begin(af_weights *w);
void af_weights_turn_end(af_weights *w, int took);

#ifdef __cplusplus
}
#endif
#endif
