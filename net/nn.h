/* Model building blocks shared by the vit, qformer and llm stages: thin,
 * named wrappers over the op library (cl/ops.h) and the attention kernel that
 * take device weights (cl/weights.h) so model code reads top to bottom. */
#ifndef AF_NET_NN_H
#define AF_NET_NN_H

#include <stddef.h>

#include "cl/attention.h"
#include "cl/ops.h"
#include "cl/runtime.h"
#include "cl/weights.h"

/* y[r, 0..out) = x[r, 0..in) . W^T (+ bias), for r < rows; W is a GGUF
 * weight with ne = {in, out} (f32, or f16 storage: read in place by the
 * profile's own GEMM, else widened per call), bias ne = {out} (f32) or NULL.
 * Row strides are ldx / ldy elements (0 = in / out). */
int nn_linear(af_queue *q, af_dbuf x, size_t ldx, size_t rows, const af_dtensor *w, const af_dtensor *bias,
              af_dbuf y, size_t ldy);

/* y = LayerNorm(x) * w + b over rows of n (y may equal x). */
int nn_layernorm(af_queue *q, af_dbuf x, size_t rows, size_t n, const af_dtensor *w, const af_dtensor *b,
                 float eps, af_dbuf y);

/* x = GELU(x) (exact erf form), n elements. */
int nn_gelu(af_queue *q, af_dbuf x, size_t n);

/* y += x, n elements. */
int nn_add(af_queue *q, af_dbuf y, af_dbuf x, size_t n);

/* Allocates a float buffer of n elements (>= 1). */
int nn_alloc(af_cl *cl, size_t n, af_dbuf *out);
void nn_free(af_dbuf *b);

/* The type to load weight matrix `name` as: -1 (as stored) when it is fp16
 * and the device profile keeps fp16 weights as fp16 (`weights:
 * fp16_storage`), else AF_GGML_F32 (an fp32 copy on the device). */
int nn_matrix_type(const af_cl *cl, af_weights *w, const char *name);

/* Weight lookup with a printf-style name; type: -1 as stored, AF_GGML_F32. */
int nn_weight(af_weights *w, int type, const af_dtensor **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
