/* Host side of the int8-activation GEMM over Q8_0 / Q4_0 weights (see
 * gemm_q8.h): x quantised into the queue's scratch, then one work-item per
 * 16 weight rows with those rows unpacked into local memory. */
#include "cl/gemm_q8.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "-DNAME=V" present in the tuning defines, with its value in *v */
static int define_val(const af_cl *cl, const char *name, long *v) {
  char key[64];
  snprintf(key, sizeof key, "-D%s=", name);
  for (const char *p = cl && cl->tuning_defines ? strstr(cl->tuning_defines, key) : NULL; p;
       p = strstr(p + 1, key)) {
    if (p != cl->tuning_defines && p[-1] != ' ') continue;
    char *end;
    *v = strtol(p + strlen(key), &end, 10);
    if (*end == 0 || *end == ' ') return 1;
  }
  return 0;
}

int af_qgemm_enabled(const af_cl *cl) {
  long v = 0;
  return define_val(cl, "AF_QGEMM", &v) && v == 1;
}

static int host_vnni(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
#else
  return 0;
#endif
}

int af_qgemm_vnni(const af_cl *cl) {
  long v = 1;
  define_val(cl, "AF_QGEMM_VNNI", &v);
  return v != 0 && cl && cl->info.is_cpu && host_vnni();
}

static int set_arg(cl_kernel k, cl_uint i, size_t size, const void *v) {
  cl_int e = clSetKernelArg(k, i, size, v);
  return e == CL_SUCCESS ? 0 : af_err(e, "gemm_q8: kernel argument %u: %s", i, af_strerror(e));
}

int af_qgemm(af_queue *q, int q4, size_t m, size_t n, size_t k, af_dbuf x, cl_mem w, cl_mem bias, af_dbuf y) {
  if (!m || !n) return 0;
  if (!k || k % 32 || m > INT_MAX / k || n > INT_MAX || m * k > (size_t)INT_MAX / 2)
    return af_err(AF_ERR_INVALID, "gemm_q8: bad shape m=%zu n=%zu k=%zu (k a non-zero multiple of 32)", m, n,
                  k);
  size_t nblk = k / 32, local = nblk * 576;
  if (q->cl->info.local_mem && local > q->cl->info.local_mem)
    return af_err(AF_ERR_UNSUPPORTED, "gemm_q8: k = %zu needs %zu bytes of local memory, the device has %llu",
                  k, local, (unsigned long long)q->cl->info.local_mem);
  const char *opts = af_qgemm_vnni(q->cl) ? "-DAF_QG_VNNI=1" : "-DAF_QG_VNNI=0";
  cl_mem qb = NULL;
  cl_kernel kq, kg;
  int rc;
  if ((rc = af_queue_scratch(q, AF_SCRATCH_QX, m * k + m * nblk * 8, &qb)) ||
      (rc = af_queue_kernel(q, "gemm_q8.cl", "af_qg_quant_x", opts, &kq)) ||
      (rc = af_queue_kernel(q, "gemm_q8.cl", "af_qg_gemm", opts, &kg)))
    return rc;
  cl_mem lut = NULL;
  if ((rc = af_cl_half_lut(q->cl, &lut))) return rc;
  cl_int M = (cl_int)m, N = (cl_int)n, K = (cl_int)k, Q4 = q4 != 0, ld = (cl_int)k, ldc = (cl_int)n,
         hb = bias != NULL;
  cl_long xo = (cl_long)x.off, yo = (cl_long)y.off;
  cl_mem bm = bias ? bias : w;
  if ((rc = set_arg(kq, 0, sizeof M, &M)) || (rc = set_arg(kq, 1, sizeof K, &K)) ||
      (rc = set_arg(kq, 2, sizeof x.mem, &x.mem)) || (rc = set_arg(kq, 3, sizeof xo, &xo)) ||
      (rc = set_arg(kq, 4, sizeof ld, &ld)) || (rc = set_arg(kq, 5, sizeof qb, &qb)))
    return rc;
  size_t gq[2] = {nblk, m};
  if ((rc = af_queue_run(q, kq, 2, gq, NULL, "qgemm_quant_x"))) return rc;
  if ((rc = set_arg(kg, 0, sizeof M, &M)) || (rc = set_arg(kg, 1, sizeof N, &N)) ||
      (rc = set_arg(kg, 2, sizeof K, &K)) || (rc = set_arg(kg, 3, sizeof Q4, &Q4)) ||
      (rc = set_arg(kg, 4, sizeof w, &w)) || (rc = set_arg(kg, 5, sizeof qb, &qb)) ||
      (rc = set_arg(kg, 6, sizeof lut, &lut)) || (rc = set_arg(kg, 7, sizeof y.mem, &y.mem)) ||
      (rc = set_arg(kg, 8, sizeof yo, &yo)) || (rc = set_arg(kg, 9, sizeof ldc, &ldc)) ||
      (rc = set_arg(kg, 10, sizeof bm, &bm)) || (rc = set_arg(kg, 11, sizeof hb, &hb)) ||
      (rc = set_arg(kg, 12, local, NULL)))
    return rc;
  size_t g = (n + 15) / 16, l = 1;
  return af_queue_run(q, kg, 1, &g, &l, q4 ? "qgemm_q4_0" : "qgemm_q8_0");
}
