/* Zero-copy weights (cl/weights.c): with AF_WEIGHTS_ZERO_COPY=1 on a device
 * that shares host memory, tensors of a 128-aligned GGUF are used in place
 * from the file mapping; tensors of a 32-aligned file whose data is not
 * 128-aligned, and tensors converted to f32, are copied.  Either way the
 * device sees the file's bytes, and a GEMV over an in-place Q8_0 tensor gives
 * the same result as over a copied one.  A copied tensor's file pages leave
 * the resident set after the upload (RssFile grows by less than a quarter of
 * an 8 MiB tensor), and its bytes still read back from the file.  Models
 * used in place take turns (af_weights_turn_begin/end, see taking_turns). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "af_test.h"
#include "cl/ops.h"
#include "cl/runtime.h"
#include "cl/weights.h"
#include "formats/gguf.h"
#include "formats/quant.h"

#define ROWS 5
#define K 64

/* tensors: "a" f32 3 x 7 (odd size, so "b" lands on a 32- but not 128-byte
 * boundary in a 32-aligned file), "b" f16 4 x 32, "q" Q8_0 ROWS x K */
static int write_file(const char *path, uint32_t alignment, const float *a, const uint16_t *b,
                      const void *q) {
  af_gguf_writer *w = NULL;
  int rc = af_gguf_writer_new(&w);
  uint64_t na[2] = {7, 3}, nb[2] = {32, 4}, nq[2] = {K, ROWS};
  if (!rc && alignment != 32) rc = af_gguf_writer_set_u32(w, "general.alignment", alignment);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "a", AF_GGML_F32, 2, na);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "b", AF_GGML_F16, 2, nb);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "q", AF_GGML_Q8_0, 2, nq);
  if (!rc) rc = af_gguf_writer_begin(w, path);
  if (!rc) rc = af_gguf_writer_append(w, a, 21 * 4);
  if (!rc) rc = af_gguf_writer_append(w, b, 128 * 2);
  if (!rc) rc = af_gguf_writer_append(w, q, ROWS * K / 32 * AF_Q8_0_BLOCK_BYTES);
  if (!rc) rc = af_gguf_writer_finish(w);
  af_gguf_writer_free(w);
  return rc;
}

/* the device copy of `name` equals the file's bytes */
static void same_bytes(af_queue *q, af_weights *w, const char *name, int want) {
  const af_dtensor *t = NULL;
  CHECK_OK(af_weights_get(w, name, want, &t));
  const af_gguf_tensor *gt = af_gguf_find_tensor(af_weights_gguf(w), name);
  if (!t || !gt) return;
  unsigned char *h = malloc(t->nbytes);
  CHECK_OK(af_queue_read(q, t->mem, 0, t->nbytes, h));
  if (want < 0)
    CHECK_MSG(memcmp(h, gt->data, t->nbytes) == 0, "tensor %s: device bytes differ from the file", name);
  free(h);
}

static void gemv(af_queue *q, af_weights *w, cl_mem x, cl_mem y, float *out) {
  const af_dtensor *t = NULL;
  CHECK_OK(af_weights_get(w, "q", -1, &t));
  if (!t) return;
  CHECK_OK(af_op_gemv_qn(q, t->mem, 0, ROWS, K, (af_dbuf){x, 0}, 1, (af_dbuf){y, 0}, NULL));
  CHECK_OK(af_queue_read(q, y, 0, ROWS * 4, out));
}

enum { N = 4 << 20 };

/* defs: the profile's defines `base` with its own AF_WEIGHTS_ZERO_COPY
 * replaced by -DAF_WEIGHTS_ZERO_COPY=zc (defs holds 2048 bytes) */
static void zero_copy_defs(char defs[2048], const char *base, int zc) {
  char *p;
  snprintf(defs, 2048 - 64, "%s", base ? base : "");
  while ((p = strstr(defs, "-DAF_WEIGHTS_ZERO_COPY=")) != NULL) memset(p, ' ', 24);
  snprintf(defs + strlen(defs), 32, " -DAF_WEIGHTS_ZERO_COPY=%d", zc);
}

/* big.gguf: one 8 MiB f16 tensor "big" */
static void write_big(const char *path) {
  uint16_t *h = malloc(sizeof(uint16_t) * N);
  for (size_t i = 0; i < N; i++) h[i] = af_f32_to_f16((float)(i % 4093) / 4093.0f - 0.5f);
  af_gguf_writer *gw = NULL;
  uint64_t ne[2] = {4096, N / 4096};
  CHECK_OK(af_gguf_writer_new(&gw));
  CHECK_OK(af_gguf_writer_set_u32(gw, "general.alignment", 128));
  CHECK_OK(af_gguf_writer_add_tensor(gw, "big", AF_GGML_F16, 2, ne));
  CHECK_OK(af_gguf_writer_begin(gw, path));
  CHECK_OK(af_gguf_writer_append(gw, h, sizeof(uint16_t) * N));
  CHECK_OK(af_gguf_writer_finish(gw));
  af_gguf_writer_free(gw);
  free(h);
}

/* an 8 MiB f16 tensor copied to the device (zero-copy off): its pages, read
 * by the upload, are released afterwards */
static void released_after_upload(af_cl *cl, af_queue *q, const char *defs) {
  char path[4200];
  snprintf(path, sizeof path, "%s/big.gguf", af_test_tmpdir());
  write_big(path);
  CHECK_OK(af_cl_set_tuning(cl, defs));
  af_weights *w = NULL;
  CHECK_OK(af_weights_open(cl, path, &w));
  if (w) {
    long before = af_test_rss_file_kib();
    const af_dtensor *t = NULL;
    CHECK_OK(af_weights_get(w, "big", -1, &t));
    long after = af_test_rss_file_kib();
    printf("upload of an 8 MiB tensor: RssFile %ld -> %ld KiB\n", before, after);
    if (before >= 0) CHECK_MSG(after - before < 2048, "RssFile grew %ld -> %ld KiB", before, after);
    CHECK(af_weights_in_place_bytes(w) == 0);
    same_bytes(q, w, "big", -1);
    af_weights_free(w);
  }
  remove(path);
}

typedef struct {
  af_weights *w;
  atomic_int got;
} turn_arg;

static void *second_stage(void *p) {
  turn_arg *a = p;
  int took = af_weights_turn_begin(a->w);
  atomic_store(&a->got, 1);
  af_weights_turn_end(a->w, took);
  return NULL;
}

/* af_weights_turn_begin/end with in-place weights: two models (two mappings
 * of one file, as two stages open it) take turns, the second waiting while
 * the first holds its turn, and the end of a turn drops the model's pages
 * from the resident set.  With AF_WEIGHTS_ALL_RESIDENT=1, or without
 * zero-copy, there are no turns. */
static void taking_turns(af_cl *cl, af_queue *q, const char *base, int unified) {
  char path[4200], defs[2048];
  snprintf(path, sizeof path, "%s/big.gguf", af_test_tmpdir());
  write_big(path);
  for (int mode = 0; mode < 3; mode++) { /* zero-copy; zero-copy + all resident; copies */
    zero_copy_defs(defs, base, mode != 2);
    if (mode == 1) strcat(defs, " -DAF_WEIGHTS_ALL_RESIDENT=1");
    CHECK_OK(af_cl_set_tuning(cl, defs));
    af_weights *w1 = NULL, *w2 = NULL;
    CHECK_OK(af_weights_open(cl, path, &w1));
    CHECK_OK(af_weights_open(cl, path, &w2));
    if (!w1 || !w2) {
      af_weights_free(w1), af_weights_free(w2);
      break;
    }
    int took = af_weights_turn_begin(w1), turns = mode == 0 && unified;
    CHECK_MSG(took == turns, "mode %d: turn_begin %d, want %d", mode, took, turns);
    long r0 = af_test_rss_file_kib();
    same_bytes(q, w1, "big", -1); /* the device reads the tensor: in place, its pages come in */
    long r1 = af_test_rss_file_kib();
    turn_arg a = {w2, 0};
    pthread_t th;
    int started = pthread_create(&th, NULL, second_stage, &a) == 0;
    CHECK(started);
    usleep(100 * 1000);
    if (turns) CHECK_MSG(atomic_load(&a.got) == 0, "the second model's turn began during the first's");
    af_weights_turn_end(w1, took);
    long r2 = af_test_rss_file_kib();
    if (started) pthread_join(th, NULL);
    CHECK(atomic_load(&a.got) == 1);
    printf("turns mode %d: RssFile %ld -> %ld (tensor read) -> %ld KiB (turn ended)\n", mode, r0, r1, r2);
    if (turns && r0 >= 0) {
      CHECK_MSG(r1 - r0 > 6 * 1024, "reading 8 MiB in place added %ld KiB", r1 - r0);
      CHECK_MSG(r1 - r2 > 6 * 1024, "the turn's end released %ld KiB", r1 - r2);
    }
    af_weights_free(w2);
    af_weights_free(w1);
  }
  remove(path);
}

int main(void) {
  af_cl *cl = NULL;
  af_rng R;
  af_rng_seed(&R, 128);
  CHECK_OK(af_cl_open(&cl, NULL));
  if (!cl) return af_test_done("test_weights_zero_copy");
  af_queue *q = NULL;
  CHECK_OK(af_queue_new(cl, &q));
  float a[21], wq[ROWS * K], x[K];
  uint16_t b[128];
  unsigned char qb[ROWS * K / 32 * AF_Q8_0_BLOCK_BYTES];
  af_rng_fill(&R, a, 21, -1, 1);
  af_rng_fill(&R, wq, ROWS * K, -1, 1);
  af_rng_fill(&R, x, K, -1, 1);
  for (int i = 0; i < 128; i++) b[i] = af_f32_to_f16(af_rng_uniform(&R, -1, 1));
  af_quantize_q8_0(wq, qb, ROWS * K);
  char p128[4200], p32[4200];
  snprintf(p128, sizeof p128, "%s/a128.gguf", af_test_tmpdir());
  snprintf(p32, sizeof p32, "%s/a32.gguf", af_test_tmpdir());
  CHECK_OK(write_file(p128, 128, a, b, qb));
  CHECK_OK(write_file(p32, 32, a, b, qb));

  cl_bool unified = CL_FALSE;
  clGetDeviceInfo(cl->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
  char *base = cl->tuning_defines ? strdup(cl->tuning_defines) : NULL;
  cl_mem dx = NULL, dy = NULL;
  CHECK_OK(af_cl_alloc(cl, CL_MEM_READ_WRITE, K * 4, NULL, &dx));
  CHECK_OK(af_cl_alloc(cl, CL_MEM_READ_WRITE, ROWS * 4, NULL, &dy));
  CHECK_OK(af_queue_write(q, dx, 0, K * 4, x));
  float y[2][ROWS];
  for (int zc = 0; zc < 2; zc++) {
    char defs[2048];
    zero_copy_defs(defs, base, zc);
    CHECK_OK(af_cl_set_tuning(cl, defs));
    af_weights *w128 = NULL, *w32 = NULL;
    CHECK_OK(af_weights_open(cl, p128, &w128));
    CHECK_OK(af_weights_open(cl, p32, &w32));
    if (!w128 || !w32) break;
    same_bytes(q, w128, "a", -1);
    same_bytes(q, w128, "b", -1);
    same_bytes(q, w128, "q", -1);
    same_bytes(q, w128, "b", AF_GGML_F32); /* converted: always a copy */
    uint64_t expect = zc && unified ? 21 * 4 + 128 * 2 + sizeof qb : 0;
    CHECK_MSG(af_weights_in_place_bytes(w128) == expect,
              "zero-copy %d, unified %d: %llu bytes in place, want %llu", zc, (int)unified,
              (unsigned long long)af_weights_in_place_bytes(w128), (unsigned long long)expect);
    CHECK(af_weights_device_bytes(w128) == 21 * 4 + 128 * 2 + sizeof qb + 128 * 4);
    /* 32-aligned file: "b" starts 96 bytes after "a", so at most one of them is
     * 128-aligned; only 128-aligned tensors are used in place */
    uint64_t want32 = 0;
    int misaligned = 0;
    static const char *const names[] = {"a", "b", "q"};
    for (int i = 0; i < 3; i++) {
      same_bytes(q, w32, names[i], -1);
      const af_gguf_tensor *gt = af_gguf_find_tensor(af_weights_gguf(w32), names[i]);
      if (!gt) continue;
      if ((uintptr_t)gt->data % 128)
        misaligned++;
      else if (zc && unified)
        want32 += gt->nbytes;
    }
    CHECK(misaligned >= 1);
    CHECK(af_weights_in_place_bytes(w32) == want32);
    gemv(q, w128, dx, dy, y[zc]);
    af_weights_free(w32);
    af_weights_free(w128);
  }
  CHECK_MSG(memcmp(y[0], y[1], sizeof y[0]) == 0, "GEMV over in-place weights differs from the copied ones");
  {
    char defs[2048];
    zero_copy_defs(defs, base, 0);
    released_after_upload(cl, q, defs);
  }
  taking_turns(cl, q, base, unified);
  CHECK_OK(af_cl_set_tuning(cl, base));
  free(base);
  clReleaseMemObject(dx), clReleaseMemObject(dy);
  af_queue_free(q);
  af_cl_close(cl);
  return af_test_done("test_weights_zero_copy");
}
