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
#include "model/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_dtensor {
  const char *name;    /* borrowed from the GGUF */
  int type;            /* af_ggml_type of the device copy */
  uint32_t n_dims;
  uint64_t ne[4];      /* ne[0] innermost (a PyTorch [rows, cols] weight has ne = {cols, rows}) */
  uint64_t n_elements;
  size_t nbytes;       /* bytes on the device */
  cl_mem mem;          /* owned by af_weights */
} af_dtensor;

typedef struct af_weights af_weights;

/* Opens `path` (GGUF) for device `cl`.  Caller frees with af_weights_free
 * (after every queue using the buffers is finished). */
int af_weights_open(af_cl *cl, const char *path, af_weights **out);
void af_weights_free(af_weights *w);

/* The underlying file (borrowed). */
const af_gguf *af_weights_gguf(const af_weights *w);

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

#ifdef __cplusplus
}
#endif
#endif
