/* Host side of the attention kernel (see attention.h). */
#include "cl/attention.h"

#include <clblast_c.h>

#include "cl/gemm_tiled.h"
#include "cl/ops.h"

#ifndef AF_ATT_GEMM_MIN
#define AF_ATT_GEMM_MIN 128 /* queries and keys from which the GEMM path is used */
#endif
#ifndef AF_ATT_WG
#define AF_ATT_WG 8 /* work-items per group along the query rows */
#endif
/* cached attention: work-items per group along the heads (0: runtime's choice) */
#define AF_ATT_CACHED_WG af_cl_tuning_int(q->cl, "AF_ATT_CACHED_WG", 0)

/* Long non-causal attention (the ViT's 257 x 257) as GEMMs per image (scores
 * = scale * Q Kᵀ for all heads, then P V) with a row softmax in between: GEMM
 * kernels use the device far better than one work-item per query row.  With
 * the profile's own GEMM (AF_GEMM_IMPL: tiled) two per head; else CLBlast's
 * strided-batched GEMMs, whose default parameters ran at ~1 GFLOPS on PoCL
 * (half of a ViT-g image's time on the 2-core machine, docs/performance.md). */
static int attention_gemm(af_queue *q, af_attn_view qv, af_attn_view kk, af_attn_view vv, af_attn_view out,
                          int n_q, int n_kv, int heads, int d, int n_batch, float scale) {
  size_t per = (size_t)heads * n_q * n_kv;
  cl_mem sc = NULL; /* the queue's scratch: reused by the next call */
  int rc = af_queue_scratch(q, AF_SCRATCH_ATTN, per * sizeof(float), &sc);
  if (rc) return rc;
  if (af_gemm_tiled_enabled(q->cl)) { /* the profile's own GEMM, one head at a time */
    for (int b = 0; b < n_batch && !rc; b++) {
      for (int h = 0; h < heads && !rc; h++)
        rc = af_gemm_tiled(q, 0, 1, (size_t)n_q, (size_t)n_kv, (size_t)d, scale, qv.mem,
                           qv.off + (size_t)b * qv.batch + (size_t)h * d, (size_t)qv.row, kk.mem,
                           kk.off + (size_t)b * kk.batch + (size_t)h * d, (size_t)kk.row, 0.0f, sc,
                           (size_t)h * n_q * n_kv, (size_t)n_kv);
      af_dbuf scores = {sc, 0};
      if (!rc) rc = af_op_softmax(q, scores, (size_t)heads * n_q, (size_t)n_kv, 1.0f, 0, 0, 0);
      for (int h = 0; h < heads && !rc; h++)
        rc =
            af_gemm_tiled(q, 0, 0, (size_t)n_q, (size_t)d, (size_t)n_kv, 1.0f, sc, (size_t)h * n_q * n_kv,
                          (size_t)n_kv, vv.mem, vv.off + (size_t)b * vv.batch + (size_t)h * d, (size_t)vv.row,
                          0.0f, out.mem, out.off + (size_t)b * out.batch + (size_t)h * d, (size_t)out.row);
    }
    return rc;
  }
  if (q->reserving) return 0;
  for (int b = 0; b < n_batch && !rc; b++) {
    cl_event ev = NULL;
    CLBlastStatusCode st = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, (size_t)n_q, (size_t)n_kv, (size_t)d,
        scale, qv.mem, qv.off + (size_t)b * qv.batch, (size_t)qv.row, (size_t)d, kk.mem,
        kk.off + (size_t)b * kk.batch, (size_t)kk.row, (size_t)d, 0.0f, sc, 0, (size_t)n_kv,
        (size_t)n_q * n_kv, (size_t)heads, &q->q, q->cl->profiling ? &ev : NULL);
    if (st != CLBlastSuccess) {
      rc = af_err((int)st, "attention scores: CLBlast: %s", af_strerror(st));
      break;
    }
    if (ev) af_queue_profile_event(q, ev, "attention_qk");
    af_dbuf scores = {sc, 0};
    if ((rc = af_op_softmax(q, scores, (size_t)heads * n_q, (size_t)n_kv, 1.0f, 0, 0, 0))) break;
    st = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, (size_t)n_q, (size_t)d, (size_t)n_kv,
        1.0f, sc, 0, (size_t)n_kv, (size_t)n_q * n_kv, vv.mem, vv.off + (size_t)b * vv.batch, (size_t)vv.row,
        (size_t)d, 0.0f, out.mem, out.off + (size_t)b * out.batch, (size_t)out.row, (size_t)d, (size_t)heads,
        &q->q, q->cl->profiling ? &ev : NULL);
    if (st != CLBlastSuccess)
      rc = af_err((int)st, "attention context: CLBlast: %s", af_strerror(st));
    else if (ev)
      af_queue_profile_event(q, ev, "attention_pv");
  }
  return rc;
}

int af_attention(af_queue *q, af_attn_view qv, af_attn_view kk, af_attn_view vv, af_attn_view out, int n_q,
                 int n_kv, int heads, int d, int n_batch, float scale, int causal, int causal_offset) {
  if (d <= 0 || d > 128 || n_q < 0 || n_kv < 0 || heads <= 0 || n_batch <= 0 || kk.row != vv.row ||
      kk.batch != vv.batch)
    return af_err(AF_ERR_INVALID, "attention: unsupported shape (d=%d, heads=%d, rows %d/%d)", d, heads,
                  kk.row, vv.row);
  if (n_q == 0) return 0;
  if (!causal && n_q >= AF_ATT_GEMM_MIN && n_kv >= AF_ATT_GEMM_MIN)
    return attention_gemm(q, qv, kk, vv, out, n_q, n_kv, heads, d, n_batch, scale);
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

int af_kv_store(af_queue *q, af_dbuf src, int rows, int n, cl_mem cache, int half, size_t slot_stride,
                cl_mem slot, cl_mem pos) {
  if (rows <= 0 || n <= 0) return 0;
  cl_kernel k;
  int rc = af_queue_kernel(q, "attention.cl", half ? "af_kv_store_f16" : "af_kv_store_f32", NULL, &k);
  if (rc) return rc;
  cl_long so = (cl_long)src.off, ss = (cl_long)slot_stride;
  cl_int a = 0;
  a |= clSetKernelArg(k, 0, sizeof(cl_mem), &src.mem);
  a |= clSetKernelArg(k, 1, sizeof so, &so);
  a |= clSetKernelArg(k, 2, sizeof n, &n);
  a |= clSetKernelArg(k, 3, sizeof rows, &rows);
  a |= clSetKernelArg(k, 4, sizeof(cl_mem), &cache);
  a |= clSetKernelArg(k, 5, sizeof ss, &ss);
  a |= clSetKernelArg(k, 6, sizeof(cl_mem), &slot);
  a |= clSetKernelArg(k, 7, sizeof(cl_mem), &pos);
  if (a) return af_err(AF_ERR_INVALID, "kv_store: cannot set kernel arguments");
  size_t g[2] = {(size_t)n, (size_t)rows}, l[2] = {64, 1};
  return af_queue_run(q, k, 2, g, l, "kv_store");
}

int af_attention_cached(af_queue *q, af_dbuf qv, int rows, int heads, int d, cl_mem k_cache, cl_mem v_cache,
                        int half, size_t slot_stride, cl_mem slot, cl_mem pos, float scale, af_dbuf out) {
  return af_attention_cached_hole(q, qv, rows, heads, d, k_cache, v_cache, half, slot_stride, slot, pos, NULL,
                                  scale, out);
}

int af_attention_cached_hole(af_queue *q, af_dbuf qv, int rows, int heads, int d, cl_mem k_cache,
                             cl_mem v_cache, int half, size_t slot_stride, cl_mem slot, cl_mem pos,
                             cl_mem hole, float scale, af_dbuf out) {
  if (d <= 0 || d > 128 || heads <= 0 || rows < 0)
    return af_err(AF_ERR_INVALID, "attention: unsupported shape (d=%d, heads=%d)", d, heads);
  if (!rows) return 0;
  cl_kernel k;
  int vec = d % 16 == 0; /* float16 kernels for head sizes of 16, 32, ... 128 */
  const char *name = vec ? (half ? "af_attention_cached16_f16" : "af_attention_cached16_f32")
                         : (half ? "af_attention_cached_f16" : "af_attention_cached_f32");
  int rc = af_queue_kernel(q, "attention.cl", name, NULL, &k);
  if (rc) return rc;
  cl_long qo = (cl_long)qv.off, oo = (cl_long)out.off, ss = (cl_long)slot_stride;
  cl_int row = heads * d;
  cl_int a = 0;
  a |= clSetKernelArg(k, 0, sizeof(cl_mem), &qv.mem);
  a |= clSetKernelArg(k, 1, sizeof qo, &qo);
  a |= clSetKernelArg(k, 2, sizeof row, &row);
  a |= clSetKernelArg(k, 3, sizeof(cl_mem), &k_cache);
  a |= clSetKernelArg(k, 4, sizeof(cl_mem), &v_cache);
  a |= clSetKernelArg(k, 5, sizeof ss, &ss);
  a |= clSetKernelArg(k, 6, sizeof row, &row);
  a |= clSetKernelArg(k, 7, sizeof(cl_mem), &slot);
  a |= clSetKernelArg(k, 8, sizeof(cl_mem), &pos);
  a |= clSetKernelArg(k, 9, sizeof(cl_mem), hole ? &hole : NULL); /* NULL: the kernel sees no hole */
  a |= clSetKernelArg(k, 10, sizeof rows, &rows);
  a |= clSetKernelArg(k, 11, sizeof(cl_mem), &out.mem);
  a |= clSetKernelArg(k, 12, sizeof oo, &oo);
  a |= clSetKernelArg(k, 13, sizeof row, &row);
  a |= clSetKernelArg(k, 14, sizeof d, &d);
  a |= clSetKernelArg(k, 15, sizeof scale, &scale);
  if (a) return af_err(AF_ERR_INVALID, "attention: cannot set kernel arguments");
  /* AF_ATT_CACHED_WG: work-items per group along the heads; 0 lets the
   * runtime choose (PoCL's choice of one group for all heads ran decode
   * attention on one of the two cores: profile value 1) */
  size_t g[2] = {(size_t)rows, (size_t)heads}, l[2] = {1, (size_t)AF_ATT_CACHED_WG};
  if (l[1] && heads % (int)l[1]) l[1] = 1;
  return af_queue_run(q, k, 2, g, l[1] ? l : NULL, "attention_cached");
}
