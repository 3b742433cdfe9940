/* Model building blocks (see nn.h): linear layers through CLBlast, row and
 * element-wise kernels from cl/kernels/nn.cl. */
#include "stages/nn.h"

#include <clblast_c.h>
#include <stdarg.h>
#include <stdio.h>

#include "model/gguf.h"

#define ROW_WG 8   /* rows per work-group for row kernels */
#define ELEM_WG 64 /* elements per work-group for element-wise kernels */

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
  if (w->type != AF_GGML_F32)
    return af_err(AF_ERR_UNSUPPORTED, "linear: weight '%s' must be f32 on this path (is %s)", w->name,
                  af_ggml_type_name(w->type));
  if (bias && bias->n_elements != out)
    return af_err(AF_ERR_MISMATCH, "linear: bias '%s' has %llu values, weight '%s' has %zu outputs", bias->name,
                  (unsigned long long)bias->n_elements, w->name, out);
  if (!ldx) ldx = in;
  if (!ldy) ldy = out;
  if (rows == 0) return 0;
  cl_event ev = NULL;
  CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, rows, out,
                                      in, 1.0f, x.mem, x.off, ldx, w->mem, 0, in, 0.0f, y.mem, y.off, ldy, &q->q,
                                      q->cl->profiling ? &ev : NULL);
  if (st != CLBlastSuccess)
    return af_err((int)st, "linear '%s' (%zux%zu by %zu): CLBlast: %s", w->name, rows, in, out, af_strerror(st));
  if (ev) af_queue_profile_event(q, ev, "gemm");
  if (!bias) return 0;
  cl_kernel k;
  int rc = af_queue_kernel(q, "nn.cl", "af_nn_add_bias", NULL, &k);
  if (rc) return rc;
  cl_long off = (cl_long)y.off;
  cl_int ld = (cl_int)ldy, r = (cl_int)rows, n = (cl_int)out;
  AF_ARG(rc, k, 0, y.mem, fail);
  AF_ARG(rc, k, 1, off, fail);
  AF_ARG(rc, k, 2, ld, fail);
  AF_ARG(rc, k, 3, bias->mem, fail);
  AF_ARG(rc, k, 4, r, fail);
  AF_ARG(rc, k, 5, n, fail);
  size_t g = rows, l = ROW_WG;
  return af_queue_run(q, k, 1, &g, &l, "add_bias");
fail:
  return rc;
}

int nn_layernorm(af_queue *q, af_dbuf x, size_t rows, size_t n, const af_dtensor *w, const af_dtensor *b, float eps,
                 af_dbuf y) {
  if (w->n_elements != n || b->n_elements != n)
    return af_err(AF_ERR_MISMATCH, "layernorm '%s': %llu gains for rows of %zu", w->name,
                  (unsigned long long)w->n_elements, n);
  cl_kernel k;
  int rc = af_queue_kernel(q, "nn.cl", "af_nn_layernorm", NULL, &k);
  if (rc) return rc;
  cl_long xo = (cl_long)x.off, yo = (cl_long)y.off;
  cl_int r = (cl_int)rows, nn = (cl_int)n;
  AF_ARG(rc, k, 0, x.mem, fail);
  AF_ARG(rc, k, 1, xo, fail);
  AF_ARG(rc, k, 2, y.mem, fail);
  AF_ARG(rc, k, 3, yo, fail);
  AF_ARG(rc, k, 4, w->mem, fail);
  AF_ARG(rc, k, 5, b->mem, fail);
  AF_ARG(rc, k, 6, r, fail);
  AF_ARG(rc, k, 7, nn, fail);
  AF_ARG(rc, k, 8, eps, fail);
  size_t g = rows, l = ROW_WG;
  return af_queue_run(q, k, 1, &g, &l, "layernorm");
fail:
  return rc;
}

static int elementwise(af_queue *q, const char *name, af_dbuf y, const af_dbuf *x, size_t n) {
  cl_kernel k;
  int rc = af_queue_kernel(q, "nn.cl", name, NULL, &k);
  if (rc) return rc;
  cl_long yo = (cl_long)y.off, nl = (cl_long)n;
  int i = 0;
  AF_ARG(rc, k, i++, y.mem, fail);
  AF_ARG(rc, k, i++, yo, fail);
  if (x) {
    cl_long xo = (cl_long)x->off;
    AF_ARG(rc, k, i++, x->mem, fail);
    AF_ARG(rc, k, i++, xo, fail);
  }
  AF_ARG(rc, k, i++, nl, fail);
  size_t g = n, l = ELEM_WG;
  return af_queue_run(q, k, 1, &g, &l, name + 6);
fail:
  return rc;
}

int nn_gelu(af_queue *q, af_dbuf x, size_t n) { return elementwise(q, "af_nn_gelu", x, NULL, n); }

int nn_add(af_queue *q, af_dbuf y, af_dbuf x, size_t n) { return elementwise(q, "af_nn_add", y, &x, n); }
