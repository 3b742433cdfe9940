/* Host side of the attention kernel (see attention.h). */
#include "cl/attention.h"

#ifndef AF_ATT_WG
#define AF_ATT_WG 8 /* work-items per group along the query rows */
#endif

int af_attention(af_queue *q, af_attn_view qv, af_attn_view kk, af_attn_view vv, af_attn_view out, int n_q,
                 int n_kv, int heads, int d, int n_batch, float scale, int causal, int causal_offset) {
  if (d <= 0 || d > 128 || n_q < 0 || n_kv < 0 || heads <= 0 || n_batch <= 0 || kk.row != vv.row ||
      kk.batch != vv.batch)
    return af_err(AF_ERR_INVALID, "attention: unsupported shape (d=%d, heads=%d, rows %d/%d)", d, heads,
                  kk.row, vv.row);
  if (n_q == 0) return 0;
  cl_kernel k;
  int rc = af_queue_kernel(q, "attention.cl", "af_attention", NULL, &k);
  if (rc) return rc;
  cl_long qo = (cl_long)qv.off, ko = (cl_long)kk.off, vo = (cl_long)vv.off, oo = (cl_long)out.off;
  cl_long qb = qv.batch, kb = kk.batch, ob = out.batch;
  cl_int a = 0;
  a |= clSetKernelArg(k, 0, sizeof(cl_mem), &qv.mem);
  a |= clSetKernelArg(k, 1, sizeof qo, &qo);
  a |= clSetKernelArg(k, 2, sizeof(cl_mem), &kk.mem);
  a |= clSetKernelArg(k, 3, sizeof ko, &ko);
  a |= clSetKernelArg(k, 4, sizeof(cl_mem), &vv.mem);
  a |= clSetKernelArg(k, 5, sizeof vo, &vo);
  a |= clSetKernelArg(k, 6, sizeof(cl_mem), &out.mem);
  a |= clSetKernelArg(k, 7, sizeof oo, &oo);
  a |= clSetKernelArg(k, 8, sizeof n_q, &n_q);
  a |= clSetKernelArg(k, 9, sizeof n_kv, &n_kv);
  a |= clSetKernelArg(k, 10, sizeof d, &d);
  a |= clSetKernelArg(k, 11, sizeof qv.row, &qv.row);
  a |= clSetKernelArg(k, 12, sizeof kk.row, &kk.row);
  a |= clSetKernelArg(k, 13, sizeof out.row, &out.row);
  a |= clSetKernelArg(k, 14, sizeof qb, &qb);
  a |= clSetKernelArg(k, 15, sizeof kb, &kb);
  a |= clSetKernelArg(k, 16, sizeof ob, &ob);
  a |= clSetKernelArg(k, 17, sizeof scale, &scale);
  a |= clSetKernelArg(k, 18, sizeof causal, &causal);
  a |= clSetKernelArg(k, 19, sizeof causal_offset, &causal_offset);
  if (a) return af_err(AF_ERR_INVALID, "attention: cannot set kernel arguments");
  size_t g[3] = {(size_t)n_q, (size_t)heads, (size_t)n_batch}, l[3] = {AF_ATT_WG, 1, 1};
  return af_queue_run(q, k, 3, g, l, "attention");
}
