/* Host side of the K-quant kernels (see kquant.h): launch geometry as the CPU
 * GEMVs (AF_GEMV_RB rows per work-item, one item per group) and the fp16
 * scale table. */
#include "cl/kquant.h"

#include <stdio.h>

#include "formats/gguf.h"

int af_kq_type(int type) {
  return type == AF_GGML_Q4_K || type == AF_GGML_Q5_K || type == AF_GGML_Q6_K;
}

static const char *tname(int type) {
  return type == AF_GGML_Q4_K ? "q4_k" : type == AF_GGML_Q5_K ? "q5_k" : "q6_k";
}

static int set_arg(cl_kernel k, cl_uint i, size_t size, const void *v) {
  cl_int e = clSetKernelArg(k, i, size, v);
  return e == CL_SUCCESS ? 0 : af_err(e, "kquant: kernel argument %u: %s", i, af_strerror(e));
}

int af_op_gemv_kq(af_queue *q, cl_mem w, int type, size_t rows, size_t k, af_dbuf x, int nb, af_dbuf y,
                  cl_mem bias) {
  if (!af_kq_type(type)) return af_err(AF_ERR_UNSUPPORTED, "gemv_kq: type %d is not a K-quant", type);
  if (k % 256)
    return af_err(AF_ERR_INVALID, "gemv_kq: k = %zu is not a multiple of the 256-value super-block", k);
  if (nb < 1 || nb > 8) return af_err(AF_ERR_INVALID, "gemv_kq: %d vectors (1..8 supported)", nb);
  if (!rows) return 0;
  int nbk = nb == 1 ? 1 : nb == 2 ? 2 : nb <= 4 ? 4 : 8;
  char name[48], label[24];
  snprintf(name, sizeof name, "af_kq_gemv_%s_%d", tname(type), nbk);
  snprintf(label, sizeof label, "gemv_%s", tname(type));
  cl_kernel kk;
  cl_mem lut = NULL;
  int rc;
  if ((rc = af_queue_kernel(q, "kquant.cl", name, NULL, &kk)) || (rc = af_cl_half_lut(q->cl, &lut)))
    return rc;
  cl_int r = (cl_int)rows, kc = (cl_int)k, b = nb, hb = bias != NULL,
         rb = af_cl_tuning_int(q->cl, "AF_GEMV_RB", 16);
  cl_long xo = (cl_long)x.off, yo = (cl_long)y.off;
  cl_mem bm = bias ? bias : w;
  if ((rc = set_arg(kk, 0, sizeof w, &w)) || (rc = set_arg(kk, 1, sizeof r, &r)) ||
      (rc = set_arg(kk, 2, sizeof kc, &kc)) || (rc = set_arg(kk, 3, sizeof x.mem, &x.mem)) ||
      (rc = set_arg(kk, 4, sizeof xo, &xo)) || (rc = set_arg(kk, 5, sizeof b, &b)) ||
      (rc = set_arg(kk, 6, sizeof y.mem, &y.mem)) || (rc = set_arg(kk, 7, sizeof yo, &yo)) ||
      (rc = set_arg(kk, 8, sizeof bm, &bm)) || (rc = set_arg(kk, 9, sizeof hb, &hb)) ||
      (rc = set_arg(kk, 10, sizeof rb, &rb)) || (rc = set_arg(kk, 11, sizeof lut, &lut)))
    return rc;
  size_t g = (rows + (size_t)rb - 1) / (size_t)rb, l = 1;
  return af_queue_run(q, kk, 1, &g, &l, label);
}

int af_op_dequant_kq(af_queue *q, cl_mem src, int type, cl_mem dst, size_t n) {
  if (!af_kq_type(type)) return af_err(AF_ERR_UNSUPPORTED, "dequant_kq: type %d is not a K-quant", type);
  if (n % 256)
    return af_err(AF_ERR_INVALID, "dequant_kq: %zu values are not whole 256-value super-blocks", n);
  char name[40];
  snprintf(name, sizeof name, "af_kq_dequant_%s", tname(type));
  cl_kernel kk;
  cl_mem lut = NULL;
  int rc;
  if ((rc = af_queue_kernel(q, "kquant.cl", name, NULL, &kk)) || (rc = af_cl_half_lut(q->cl, &lut)))
    return rc;
  cl_long nsb = (cl_long)(n / 256);
  if ((rc = set_arg(kk, 0, sizeof src, &src)) || (rc = set_arg(kk, 1, sizeof dst, &dst)) ||
      (rc = set_arg(kk, 2, sizeof nsb, &nsb)) || (rc = set_arg(kk, 3, sizeof lut, &lut)))
    return rc;
  size_t g = n / 256;
  return af_queue_run(q, kk, 1, &g, NULL, name + 3);
}
