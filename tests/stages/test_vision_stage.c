/* Stage harness for `vit`, `qformer` and `llm`: items carrying the golden pixels go
 * through the stages' own descriptors (create / negotiate / prepare / process
 * / destroy, as the engine runs them) with the converted tiny model; their
 * output tensors must match the ORIGINAL code's goldens, a wrong-sized input
 * must become an error record for that item only, the negotiated sizes must
 * be the model's, and process() must create no device buffer (the
 * allocation counter of the device stays where prepare() left it). */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "artflow/stage.h"
#include "cl/runtime.h"
#include "cl/weights.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "io_harness.h"
#include "ref/npy.h"

extern const af_stage_desc af_stage_vit, af_stage_qformer, af_stage_llm;

#define DIR "artgpt4-tiny/"

static float *golden(const char *name, size_t *n) {
  int nd;
  int64_t shape[4];
  char p[256];
  snprintf(p, sizeof p, DIR "golden/%s", name);
  return npy_read_f32(af_test_data(p), &nd, shape, n);
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  char model[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, model, sizeof model));
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_vision_stage");
  af_weights *w = NULL;
  af_queue *vq = NULL, *qq = NULL, *lq = NULL;
  CHECK_OK(af_weights_open_pair(cl, model, NULL, &w));
  CHECK_OK(af_queue_new(cl, &vq));
  CHECK_OK(af_queue_new(cl, &qq));
  CHECK_OK(af_queue_new(cl, &lq));
  af_stage_ctx vctx = io_ctx("vit", NULL, 0), qctx = io_ctx("qformer", NULL, 0),
               lctx = io_ctx("llm", NULL, 0);
  vctx.cl = qctx.cl = lctx.cl = (struct af_cl *)cl;
  vctx.model_path = qctx.model_path = lctx.model_path = model;
  vctx.weights = qctx.weights = lctx.weights = w;
  vctx.queue = vq, qctx.queue = qq, lctx.queue = lq;
  vctx.batch = 3, qctx.batch = 2, lctx.batch = 2;

  size_t np, nv, nq, npj;
  float *pix = golden("pixels.npy", &np), *gv = golden("vit.npy", &nv), *gq = golden("qformer.npy", &nq),
        *gp = golden("proj.npy", &npj);
  CHECK(pix && gv && gq && gp);
  af_item *items[3];
  int64_t shape[3] = {3, 56, 56}, bad_shape[3] = {3, 8, 8};
  for (int i = 0; i < 3; i++) {
    char id[16];
    snprintf(id, sizeof id, "img%d", i);
    items[i] = af_item_new(id, NULL);
    float *d = malloc(np * sizeof(float));
    memcpy(d, pix, np * sizeof(float));
    CHECK_OK(af_item_put_tensor(items[i], "pixels", AF_DTYPE_F32, 3, i == 1 ? bad_shape : shape, d));
  }
  void *vcfg = io_config(&af_stage_vit, NULL), *qcfg = io_config(&af_stage_qformer, NULL), *vs = NULL,
       *qs = NULL;
  af_bindings vd, qd;
  CHECK_OK(io_stage_setup(&af_stage_vit, &vctx, vcfg, NULL, &vd, &vs));
  CHECK_OK(io_stage_setup(&af_stage_qformer, &qctx, qcfg, NULL, &qd, &qs));
  const char *lsets[] = {"max_new_tokens=6", "greedy=true", NULL};
  void *lcfg = io_config(&af_stage_llm, lsets), *ls = NULL;
  af_tensor_desc proj_in = {AF_DTYPE_F32, 2, {8, 64, 1, 1}}; /* what qformer negotiated */
  af_bindings ld;
  CHECK_OK(io_stage_setup(&af_stage_llm, &lctx, lcfg, &proj_in, &ld, &ls));
  CHECK(ld.n == 1 && !strcmp(ld.v[0].symbol, "H") && ld.v[0].value == 64);
  /* the tiny model: 56 px images, 17 tokens of width 64; 8 queries of 32, LLM width 64 */
  CHECK(vd.n == 3 && vd.v[0].value == 56 && vd.v[1].value == 17 && vd.v[2].value == 64);
  CHECK(qd.n == 4 && !strcmp(qd.v[0].symbol, "V") && qd.v[0].value == 64 && qd.v[1].value == 8 &&
        qd.v[2].value == 32 && qd.v[3].value == 64);
  unsigned long long allocs = af_cl_allocations(cl);
  for (int round = 0; round < 2 && vs && qs; round++) {
    CHECK(af_stage_vit.process(vs, &vctx, items, 3) == AF_FLOW_OK);
    CHECK(items[1]->status == AF_ITEM_ERROR && strstr(items[1]->error, "'pixels' must be f32[3,56,56]"));
    af_item *ok[2] = {items[0], items[2]};
    if (round == 0) {
      CHECK(af_stage_qformer.process(qs, &qctx, ok, 2) == AF_FLOW_OK);
    } else { /* partial batches */
      CHECK(af_stage_qformer.process(qs, &qctx, ok, 1) == AF_FLOW_OK);
      CHECK(af_stage_qformer.process(qs, &qctx, ok + 1, 1) == AF_FLOW_OK);
    }
    CHECK(af_stage_llm.process(ls, &lctx, ok, round ? 1 : 2) ==
          AF_FLOW_OK); /* a full, then a partial batch */
    CHECK(ok[0]->status == AF_ITEM_OK && af_item_text(ok[0], "text") && af_item_tensor(ok[0], "ids"));
    for (int k = 0; k < 2; k++) {
      const af_tensor *tq = af_item_tensor(ok[k], "qformer"), *tp = af_item_tensor(ok[k], "proj");
      CHECK(ok[k]->status == AF_ITEM_OK && tq && tp && !af_item_tensor(ok[k], "vit")); /* vit dropped */
      if (tq && tp && gq && gp) {
        CHECK(tq->bytes == nq * 4 && af_nerr(tq->data, gq, nq) < 1e-5);
        CHECK(tp->bytes == npj * 4 && af_nerr(tp->data, gp, npj) < 1e-5);
      }
    }
  }
  CHECK_MSG(af_cl_allocations(cl) == allocs, "process() created %llu device buffers",
            af_cl_allocations(cl) - allocs);

  /* tasks: a choose, a yesno and a describe task; after prepare() their
   * process() creates no device buffer either (full and partial batches) */
  const char *tsets[] = {
      "tasks=[{\"name\":\"emotion\",\"vocabulary\":\"artemis-emotions\",\"top_k\":2},"
      "{\"name\":\"seen\",\"mode\":\"yesno\",\"labels\":[\"a river\",\"fear\"],"
      "\"question\":\"Does it show {label}? Answer yes or no.\"},"
      "{\"name\":\"said\",\"mode\":\"describe\",\"max_new_tokens\":4,\"greedy\":true}]",
      NULL};
  void *tcfg = io_config(&af_stage_llm, tsets), *ts = NULL;
  af_bindings td;
  CHECK_OK(io_stage_setup(&af_stage_llm, &lctx, tcfg, &proj_in, &td, &ts));
  allocs = af_cl_allocations(cl);
  af_item *ok2[2] = {items[0], items[2]};
  for (int round = 0; round < 2 && ts; round++) {
    CHECK(af_stage_llm.process(ts, &lctx, ok2, round ? 1 : 2) == AF_FLOW_OK);
    const char *e = af_item_text(ok2[0], "emotion"), *y = af_item_text(ok2[0], "seen");
    CHECK(ok2[0]->status == AF_ITEM_OK && e && y && af_item_text(ok2[0], "said"));
    CHECK(e && e[0] == '[' && strstr(e, "\"p\":") && y && strstr(y, "a river"));
  }
  CHECK_MSG(af_cl_allocations(cl) == allocs, "tasks: process() created %llu device buffers",
            af_cl_allocations(cl) - allocs);
  af_stage_llm.destroy(ts);
  io_config_free(&af_stage_llm, tcfg);
  af_stage_vit.destroy(vs);
  af_stage_qformer.destroy(qs);
  af_stage_llm.destroy(ls);
  io_config_free(&af_stage_llm, lcfg);
  io_config_free(&af_stage_vit, vcfg);
  io_config_free(&af_stage_qformer, qcfg);
  for (int i = 0; i < 3; i++) af_item_free(items[i]);
  free(pix), free(gv), free(gq), free(gp);
  af_queue_free(vq);
  af_queue_free(qq);
  af_queue_free(lq);
  af_weights_free(w);
  af_cl_close(cl);
  return af_test_done("test_vision_stage");
}
