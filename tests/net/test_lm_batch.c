/* Batched decode (af_lm_decode_batch) equals decoding each sequence alone, on
 * the tiny ArtGPT-4 converted to f32, f16 and q8_0: B = 1..5 sequences with
 * different prompts and prompt lengths, each prefilled into its own KV-cache
 * slot, then greedy decode steps for all unfinished sequences at once
 * (sequence i stops i steps early, so the batch shrinks).  Greedy ids must be
 * exactly equal; logits within normalised error 1e-5 (the GEMV kernels for
 * several vectors may sum in another order than the one-vector kernel).  The
 * cache starts empty and grows by itself (slots and positions), so regrowth
 * that keeps the cached values is exercised too.
 * Then fp16 vs fp32 KV-cache storage on the f16 model: logits of prefill and
 * decode steps within normalised error 2e-3 (fp16 keys/values carry ~3 decimal
 * digits), same greedy ids; and the cache bytes halve. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "cl/devprofile.h"
#include "formats/gguf.h"
#include "net/lm.h"
#include "ref/npy.h"

#define DIR "artgpt4-tiny/"
#define NSEQ 5
#define STEPS 10

static af_cl *cl;
static af_queue *Q;
static float *base_seq; /* the golden prompt: before ids + image + after ids */
static int base_n, H;

static int argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

/* sequence i: the golden prompt minus 2i positions of the image rows, with
 * its last text token replaced by token 100 + i (different content and length) */
static int make_prompt(af_lm *lm, int i, float *out) {
  int n = base_n - 2 * i, cut = 2 * i;
  int img_end = base_n - 8; /* the image rows end before the last text tokens */
  memcpy(out, base_seq, sizeof(float) * (size_t)(img_end - cut) * H);
  memcpy(out + (size_t)(img_end - cut) * H, base_seq + (size_t)img_end * H, sizeof(float) * 8 * (size_t)H);
  int32_t id = 100 + i;
  CHECK_OK(af_lm_embed(lm, &id, 1, out + (size_t)(n - 2) * H));
  return n;
}

/* returns the worst logits error of batched vs alone */
static double check_model(const char *path, const char *label) {
  af_weights *w = NULL;
  af_lm *lm = NULL;
  CHECK_OK(af_weights_open(cl, path, &w));
  if (w) CHECK_OK(af_lm_new(cl, w, 128, &lm));
  if (!lm) {
    af_weights_free(w);
    return 1;
  }
  int V = af_lm_shape_of(lm)->vocab;
  float *prompt[NSEQ], *ref_logits[NSEQ];
  int plen[NSEQ], ref_ids[NSEQ][STEPS + 1];
  float *x = malloc(sizeof(float) * (size_t)NSEQ * H), *lg = malloc(sizeof(float) * (size_t)NSEQ * V);
  /* one at a time, slot 0, af_lm_forward as describe used it */
  for (int i = 0; i < NSEQ; i++) {
    prompt[i] = malloc(sizeof(float) * (size_t)base_n * H);
    ref_logits[i] = malloc(sizeof(float) * (size_t)(STEPS + 1) * V);
    plen[i] = make_prompt(lm, i, prompt[i]);
    CHECK_OK(af_lm_forward(lm, Q, prompt[i], plen[i], 0, ref_logits[i]));
    for (int s = 0; s < STEPS - i; s++) {
      int id = ref_ids[i][s] = argmax(ref_logits[i] + (size_t)s * V, V);
      CHECK_OK(af_lm_embed(lm, &id, 1, x));
      CHECK_OK(af_lm_forward(lm, Q, x, 1, plen[i] + s, ref_logits[i] + (size_t)(s + 1) * V));
    }
  }
  af_lm_free(lm);
  lm = NULL;
  double worst = 0;
  for (int B = 1; B <= NSEQ; B++) {
    CHECK_OK(af_lm_new(cl, w, 128, &lm)); /* empty cache: grows as slots and positions come */
    if (!lm) break;
    int ids[NSEQ], mism = 0;
    for (int i = 0; i < B; i++) { /* prefill into slots in reverse order: slot = B-1-i */
      CHECK_OK(af_lm_prefill(lm, Q, B - 1 - i, prompt[i], plen[i], 0, lg));
      worst = fmax(worst, af_nerr(lg, ref_logits[i], (size_t)V));
      ids[i] = argmax(lg, V);
    }
    for (int s = 0;; s++) {
      int slots[NSEQ], pos[NSEQ], who[NSEQ], nb = 0;
      for (int i = 0; i < B; i++) {
        if (s >= STEPS - i) continue; /* sequence i finished */
        mism += ids[i] != ref_ids[i][s];
        CHECK_OK(af_lm_embed(lm, &ids[i], 1, x + (size_t)nb * H));
        slots[nb] = B - 1 - i, pos[nb] = plen[i] + s, who[nb++] = i;
      }
      if (!nb) break;
      CHECK_OK(af_lm_decode_batch(lm, Q, nb, slots, pos, x, lg));
      for (int r = 0; r < nb; r++) {
        int i = who[r];
        worst = fmax(worst, af_nerr(lg + (size_t)r * V, ref_logits[i] + (size_t)(s + 1) * V, (size_t)V));
        ids[i] = argmax(lg + (size_t)r * V, V);
      }
    }
    printf(
        "%s: batch of %d (kv %s, %llu cache bytes): greedy id mismatches %d, worst logits nerr so far %.2g\n",
        label, B, af_lm_kv_half(lm) ? "f16" : "f32", (unsigned long long)af_lm_kv_bytes(lm), mism, worst);
    CHECK(mism == 0);
    af_lm_free(lm);
    lm = NULL;
  }
  CHECK_MSG(worst < 1e-5, "%s: batched vs alone logits nerr %g", label, worst);
  for (int i = 0; i < NSEQ; i++) free(prompt[i]), free(ref_logits[i]);
  free(x), free(lg);
  af_weights_free(w);
  return worst;
}

/* prefill + STEPS greedy steps with the profile's kv_cache forced to `kv` */
static void run_kv(const char *path, int kv, float *logits, int *ids, uint64_t *bytes, int *half) {
  cl->profile->kv_cache = kv;
  af_weights *w = NULL;
  af_lm *lm = NULL;
  CHECK_OK(af_weights_open(cl, path, &w));
  if (w) CHECK_OK(af_lm_new(cl, w, 128, &lm));
  if (lm) {
    int V = af_lm_shape_of(lm)->vocab;
    CHECK_OK(af_lm_reserve(lm, Q, 1, base_n + STEPS));
    CHECK_OK(af_lm_forward(lm, Q, base_seq, base_n, 0, logits));
    float *x = malloc(sizeof(float) * (size_t)H);
    for (int s = 0; s < STEPS; s++) {
      int id = ids[s] = argmax(logits + (size_t)s * V, V);
      CHECK_OK(af_lm_embed(lm, &id, 1, x));
      CHECK_OK(af_lm_forward(lm, Q, x, 1, base_n + s, logits + (size_t)(s + 1) * V));
    }
    free(x);
    *bytes = af_lm_kv_bytes(lm);
    *half = af_lm_kv_half(lm);
  }
  af_lm_free(lm);
  af_weights_free(w);
  cl->profile->kv_cache = AF_KV_AUTO;
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  CHECK_OK(af_cl_open(&cl, NULL));
  if (cl) CHECK_OK(af_queue_new(cl, &Q));
  char m32[1024], m16[1024], mq8[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, m32, sizeof m32));
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F16, m16, sizeof m16));
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_Q8_0, mq8, sizeof mq8));
  if (!Q) return af_test_done("test_lm_batch");
  /* the golden prompt's embeddings, as test_lm builds them */
  af_weights *w = NULL;
  af_lm *lm = NULL;
  CHECK_OK(af_weights_open(cl, m32, &w));
  if (w) CHECK_OK(af_lm_new(cl, w, 128, &lm));
  int32_t before[512], after[512];
  int nb = read_ids_line(af_test_data(DIR "golden/prompt_ids.txt"), 0, before, 512);
  int na = read_ids_line(af_test_data(DIR "golden/prompt_ids.txt"), 1, after, 512);
  int nd;
  int64_t shape[4];
  size_t np = 0;
  float *proj = npy_read_f32(af_test_data(DIR "golden/proj.npy"), &nd, shape, &np);
  CHECK(lm && proj && nb > 0 && na >= 8);
  if (!lm || !proj || na < 8) return af_test_done("test_lm_batch");
  H = af_lm_shape_of(lm)->hidden;
  int nq = (int)(np / (size_t)H);
  base_n = nb + nq + na;
  base_seq = malloc(sizeof(float) * (size_t)base_n * H);
  CHECK_OK(af_lm_embed(lm, before, nb, base_seq));
  memcpy(base_seq + (size_t)nb * H, proj, np * sizeof(float));
  CHECK_OK(af_lm_embed(lm, after, na, base_seq + (size_t)(nb + nq) * H));
  /* errors: a position outside the context, a negative slot */
  int sl = 0, ps = 128;
  CHECK(af_lm_decode_batch(lm, Q, 1, &sl, &ps, base_seq, NULL) == AF_ERR_RANGE);
  sl = -1, ps = 0;
  CHECK(af_lm_decode_batch(lm, Q, 1, &sl, &ps, base_seq, NULL) == AF_ERR_RANGE);
  CHECK(af_lm_reserve(lm, Q, 1, 129) == AF_ERR_RANGE);
  af_error_clear();
  af_lm_free(lm);
  af_weights_free(w);

  check_model(m32, "f32");
  check_model(m16, "f16");
  check_model(mq8, "q8_0");

  /* fp16 vs fp32 KV cache on the f16 model */
  float *l16 = NULL, *l32 = NULL;
  int V = 0;
  {
    af_weights *w2 = NULL;
    af_lm *lm2 = NULL;
    CHECK_OK(af_weights_open(cl, m16, &w2));
    if (w2) CHECK_OK(af_lm_new(cl, w2, 128, &lm2));
    if (lm2) V = af_lm_shape_of(lm2)->vocab;
    CHECK(lm2 && af_lm_kv_half(lm2)); /* auto: fp16 for an f16 file */
    af_lm_free(lm2);
    af_weights_free(w2);
  }
  if (V) {
    l16 = malloc(sizeof(float) * (size_t)(STEPS + 1) * V),
    l32 = malloc(sizeof(float) * (size_t)(STEPS + 1) * V);
    int i16[STEPS], i32[STEPS], h16 = -1, h32 = -1;
    uint64_t b16 = 0, b32 = 0;
    run_kv(m16, AF_KV_F16, l16, i16, &b16, &h16);
    run_kv(m16, AF_KV_F32, l32, i32, &b32, &h32);
    CHECK(h16 == 1 && h32 == 0);
    double e = af_nerr(l16, l32, (size_t)(STEPS + 1) * V);
    printf(
        "fp16 vs fp32 KV cache: logits nerr %.2g over prefill + %d steps (tolerance 2e-3); cache bytes %llu "
        "vs "
        "%llu\n",
        e, STEPS, (unsigned long long)b16, (unsigned long long)b32);
    CHECK(e < 2e-3);
    CHECK(!memcmp(i16, i32, sizeof i16));
    CHECK(b16 * 2 == b32 && b16 > 0);
    /* an f32 file keeps an fp32 cache under auto (the golden tests' exactness) */
    int i32b[STEPS], hb = -1;
    uint64_t bb = 0;
    run_kv(m32, AF_KV_AUTO, l32, i32b, &bb, &hb);
    CHECK(hb == 0);
  }
  /* the profile key: f16 | f32 | auto, anything else is a configuration error */
  const char *vals[4] = {"f16", "f32", "auto", "f8"};
  const int want[4] = {AF_KV_F16, AF_KV_F32, AF_KV_AUTO, -1};
  for (int i = 0; i < 4; i++) {
    char path[1200];
    snprintf(path, sizeof path, "%s/kv-%s.yaml", tmp, vals[i]);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) continue;
    fprintf(f, "name: kv-test\nkv_cache: %s\n", vals[i]);
    fclose(f);
    af_devprofile p;
    int rc = af_devprofile_select(&cl->info, path, &p);
    if (want[i] < 0) {
      CHECK(rc == AF_ERR_CONFIG && strstr(af_error_message(), "kv_cache"));
      af_error_clear();
    } else {
      CHECK_OK(rc);
      CHECK(af_devprofile_kv_cache(&p) == want[i]);
    }
  }
  free(l16), free(l32), free(base_seq), free(proj);
  af_queue_free(Q);
  af_cl_close(cl);
  return af_test_done("test_lm_batch");
}
