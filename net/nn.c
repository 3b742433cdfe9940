/* Model building blocks (see nn.h): checks of device weights' shapes on top
 * of the op library (cl/ops.h). */
#include "net/nn.h"

#include <stdarg.h>
#include <stdio.h>

#include "cl/devprofile.h"
#include "cl/gemm_tiled.h"
#include "formats/gguf.h"

int nn_alloc(af_cl *cl, size_t n, af_dbuf *out) {
  out->off = 0;
  return af_cl_alloc(cl, CL_MEM_READ_WRITE, (n ? n : 1) * sizeof(float), NULL, &out->mem);
}

void nn_free(af_dbuf *b) {
  if (b->mem) clReleaseMemObject(b->mem);
  b->mem = NULL;
}

int nn_weight(af_weights *w, int type, const af_dtensor **out, const char *fmt, ...) {
  char name[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  return af_weights_get(w, name, type, out);
}

int nn_linear(af_queue *q, af_dbuf x, size_t ldx, size_t rows, const af_dtensor *w, const af_dtensor *bias,
              af_dbuf y, size_t ldy) {
  size_t in = w->ne[0], out = w->n_elements / w->ne[0];
  if (w->n_dims == 4) { /* a convolution weight [out][c][kh][kw] used as [out, c*kh*kw] */
    out = w->ne[3];
    in = w->n_elements / out;
  }
  if (w->type != AF_GGML_F32 && w->type != AF_GGML_F16)
    return af_err(AF_ERR_UNSUPPORTED, "linear: weight '%s' must be f32 or f16 on this path (is %s)", w->name,
                  af_ggml_type_name(w->type));
  if (bias && bias->n_elements != out)
    return af_err(AF_ERR_MISMATCH, "linear: bias '%s' has %llu values, weight '%s' has %zu outputs",
                  bias->name, (unsigned long long)bias->n_elements, w->name, out);
  if (!ldx) ldx = in;
  if (!ldy) ldy = out;
  if (rows == 0) return 0;
  af_dbuf wb = {w->mem, 0};
  int rc;
  if (w->type == AF_GGML_F16 && af_gemm_tiled_enabled(q->cl)) {
    /* fp16 storage: the profile's own GEMM reads the halves in place */
    rc =
        af_gemm_tiled_f16b(q, rows, out, in, 1.0f, x.mem, x.off, ldx, w->mem, 0, in, 0.0f, y.mem, y.off, ldy);
  } else if (w->type == AF_GGML_F16) {
    /* fp16 storage elsewhere: widen into the queue's scratch fp32 matrix for
     * the GEMM (kept for the next layer's) */
    cl_mem tmp = NULL;
    rc = af_queue_scratch(q, AF_SCRATCH_WIDEN, in * out * sizeof(float), &tmp);
    if (!rc) rc = af_op_f16_to_f32(q, w->mem, tmp, in * out);
    if (!rc) rc = af_op_gemm(q, 0, 1, rows, out, in, 1.0f, x, ldx, (af_dbuf){tmp, 0}, in, 0.0f, y, ldy);
  } else {
    rc = af_op_gemm(q, 0, 1, rows, out, in, 1.0f, x, ldx, wb, in, 0.0f, y, ldy);
  }
  if (rc) return af_err_replace(rc, "linear '%s': %s", w->name, af_error_message());
  return bias ? af_op_add_bias(q, y, ldy, rows, out, bias->mem) : 0;
}

int nn_layernorm(af_queue *q, af_dbuf x, size_t rows, size_t n, const af_dtensor *w, const af_dtensor *b,
                 float eps, af_dbuf y) {
  if (w->n_elements != n || b->n_elements != n)
    return af_err(AF_ERR_MISMATCH, "layernorm '%s': %llu gains for rows of %zu", w->name,
                  (unsigned long long)w->n_elements, n);
  return af_op_layernorm(q, x, rows, n, w->mem, b->mem, eps, y);
}

int nn_gelu(af_queue *q, af_dbuf x, size_t n) {
  return af_op_gelu(q, x, n);
}

int nn_add(af_queue *q, af_dbuf y, af_dbuf x, size_t n) {
  return af_op_add(q, y, x, n);
}

int nn_matrix_type(const af_cl *cl, af_weights *w, const char *name) {
  const af_gguf_tensor *t = af_gguf_find_tensor(af_weights_gguf(w), name);
  return t && t->type == AF_GGML_F16 && cl->profile && cl->profile->fp16_storage ? -1 : AF_GGML_F32;
}
