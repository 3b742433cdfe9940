/* af_generate_batch (net/generate.h) on the tiny ArtGPT-4 (f32 and q8_0),
 * through describe's output as it was shown before the pipeline engine (describe_show.c): four images
 * with different embeddings and different prompt lengths (image rows 8, 7,
 * 5, 8) described together give the same answers, ids, streamed text (plain
 * and JSON, greedy and seeded sampling) and dump files as four one-image
 * calls; items that fail (a prompt that cannot fit) fail alone.  The sink's
 * contract: the stream in item order, prefilled/done once per item, logits0
 * only when asked, a failing callback failing its item alone; a chat turn's
 * callbacks, and a failing one leaving the conversation as it was.  When the group's prefill fails (the
 * device's largest allocation lowered below what the group needs), each prompt is prefilled alone and the
 * output equals the unlimited run's. Context truncation as the original Chat.answer(max_length): when prompt
 * positions + max_new_tokens exceed max_length (at most the model's context,
 * 256 here), only the last max_length - max_new_tokens positions are kept,
 * with a warning on stderr; the ids must equal a greedy decode of exactly
 * those positions through net/lm.h, and prompt_positions in the JSON says
 * how many were kept.  max_new_tokens >= max_length is an error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "cl/weights.h"
#include "describe_show.h"
#include "formats/gguf.h"
#include "net/chat.h"
#include "net/lm.h"
#include "ref/npy.h"

#define DIR "artgpt4-tiny/"
#define NIMG 4

static char *slurp_file(FILE *f) {
  fflush(f);
  long n = ftell(f);
  char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
  rewind(f);
  size_t got = fread(s, 1, (size_t)(n > 0 ? n : 0), f);
  s[got] = 0;
  return s;
}

static int same_file(const char *a, const char *b) {
  size_t na = 0, nb = 0;
  char *x = af_test_slurp(a, &na), *y = af_test_slurp(b, &nb);
  int eq = x && y && na == nb && !memcmp(x, y, na);
  free(x), free(y);
  return eq;
}

static float *proj_img[NIMG];
static int nimg[NIMG];

/* one image as describe shows it (describe_show.c): answer, ids (malloc'd) */
static int describe_one(af_generator *g, const char *image, const float *proj, int n_img,
                        const char *dump_dir, int json, FILE *out, char **answer, int32_t **ids, int *n_ids) {
  af_gen_item it = {.image = image, .proj = proj, .n_img = n_img};
  const char *dirs[1] = {dump_dir};
  int rc = show_describe(g, &it, dirs, 1, json, out);
  if (answer) *answer = it.answer, it.answer = NULL;
  if (ids) *ids = it.ids, it.ids = NULL;
  if (n_ids) *n_ids = it.n_ids;
  af_gen_item_clear(&it);
  return rc;
}

static void batch_vs_single(af_cl *cl, const char *model, int json, int greedy, const char *label) {
  const char *tmp = af_test_tmpdir();
  af_gen_opts o;
  af_gen_opts_default(&o);
  o.max_new_tokens = 16;
  o.sampling.greedy = greedy;
  o.sampling.seed = 11;
  af_generator *d = NULL;
  CHECK_OK(af_generator_new(cl, model, &o, &d));
  if (!d) return;
  char names[NIMG][32], dsingle[NIMG][1200], dbatch[NIMG][1200];
  FILE *f1 = tmpfile(), *f2 = tmpfile();
  char *ans[NIMG];
  int32_t *ids[NIMG];
  int nid[NIMG];
  for (int i = 0; i < NIMG; i++) {
    snprintf(names[i], sizeof names[i], "img%d.png", i);
    snprintf(dsingle[i], sizeof dsingle[i], "%s/%s-s%d", tmp, label, i);
    snprintf(dbatch[i], sizeof dbatch[i], "%s/%s-b%d", tmp, label, i);
    CHECK(mkdir(dsingle[i], 0755) == 0 && mkdir(dbatch[i], 0755) == 0);
    CHECK_OK(
        describe_one(d, names[i], proj_img[i], nimg[i], dsingle[i], json, f1, &ans[i], &ids[i], &nid[i]));
  }
  af_gen_item it[NIMG];
  const char *dirs[NIMG];
  memset(it, 0, sizeof it);
  for (int i = 0; i < NIMG; i++) {
    it[i] = (af_gen_item){.image = names[i], .proj = proj_img[i], .n_img = nimg[i]};
    dirs[i] = dbatch[i];
  }
  CHECK_OK(show_describe(d, it, dirs, NIMG, json, f2));
  char *t1 = slurp_file(f1), *t2 = slurp_file(f2);
  CHECK_MSG(!strcmp(t1, t2), "%s: batch output differs:\n--- one by one\n%s--- batch\n%s", label, t1, t2);
  int same = 0, distinct = 0;
  for (int i = 0; i < NIMG; i++) {
    int eq = it[i].rc == 0 && ans[i] && it[i].answer && !strcmp(ans[i], it[i].answer) &&
             nid[i] == it[i].n_ids && !memcmp(ids[i], it[i].ids, sizeof(int32_t) * (size_t)nid[i]);
    same += eq;
    distinct += i && (nid[i] != nid[0] ||
                      memcmp(ids[i], ids[0], sizeof(int32_t) * (size_t)(nid[0] < nid[i] ? nid[0] : nid[i])));
    const char *files[] = {"logits0.npy", "prompt_ids.txt", "ids.txt"};
    for (int k = 0; k < 3; k++) {
      char a[1300], b[1300];
      snprintf(a, sizeof a, "%s/%s", dsingle[i], files[k]);
      snprintf(b, sizeof b, "%s/%s", dbatch[i], files[k]);
      CHECK_MSG(same_file(a, b), "%s: %s of image %d differs", label, files[k], i);
    }
  }
  for (int i = 0; i < NIMG; i++) free(ans[i]), free(ids[i]), af_gen_item_clear(&it[i]);
  printf(
      "%s: %d of %d answers equal one by one vs batched (%d differ from the first image's); output %zu "
      "bytes\n",
      label, same, NIMG, distinct, strlen(t1));
  CHECK(same == NIMG);
  CHECK(distinct > 0); /* the images really were different sequences */
  free(t1), free(t2);
  fclose(f1), fclose(f2);
  af_generator_free(d);
}

/* the model's weights, an LLM over them and a queue (NULLs where one failed) */
static void open_lm(af_cl *cl, const char *model, af_weights **w, af_lm **lm, af_queue **Q) {
  *w = NULL, *lm = NULL, *Q = NULL;
  CHECK_OK(af_weights_open(cl, model, w));
  if (*w) CHECK_OK(af_lm_new(cl, *w, 0, lm));
  CHECK_OK(af_queue_new(cl, Q));
}

/* af_lm_prefill_batch against one af_lm_prefill per prompt: the same
 * logits, bit for bit (the GEMMs compute rows independently; past
 * AF_TILED_PACK_M rows in all they run in chunks of rows), then one decode
 * step of all of them from the slots the batch filled */
static void prefill_batch_vs_single(af_cl *cl, const char *model, const int *lens, int B, const char *label) {
  af_weights *w;
  af_lm *lm;
  af_queue *Q;
  open_lm(cl, model, &w, &lm, &Q);
  if (!lm || !Q) goto out;
  size_t H = (size_t)af_lm_shape_of(lm)->hidden, V = (size_t)af_lm_shape_of(lm)->vocab, total = 0;
  for (int b = 0; b < B; b++) total += (size_t)lens[b];
  float *x = malloc(sizeof(float) * total * H), *one = malloc(sizeof(float) * (size_t)B * V),
        *all = malloc(sizeof(float) * (size_t)B * V), *xd = malloc(sizeof(float) * (size_t)B * H),
        *d1 = malloc(sizeof(float) * (size_t)B * V), *d2 = malloc(sizeof(float) * (size_t)B * V);
  int slots[16], pos[16];
  af_rng rng;
  af_rng_seed(&rng, 17);
  for (size_t i = 0; i < total * H; i++) x[i] = 0.5f * af_rng_normal(&rng);
  for (int b = 0; b < B; b++) slots[b] = B - 1 - b, pos[b] = lens[b]; /* slots in another order than rows */
  CHECK_OK(af_lm_reserve(lm, Q, B, 256));
  for (int b = 0, r = 0; b < B; r += lens[b++])
    CHECK_OK(af_lm_prefill(lm, Q, slots[b], x + (size_t)r * H, lens[b], 0, one + (size_t)b * V));
  for (int b = 0; b < B; b++) memcpy(xd + (size_t)b * H, x + (size_t)b * H, sizeof(float) * H);
  CHECK_OK(af_lm_decode_batch(lm, Q, B, slots, pos, xd, d1));
  CHECK_OK(af_lm_prefill_batch(lm, Q, B, slots, lens, x, all));
  CHECK_OK(af_lm_decode_batch(lm, Q, B, slots, pos, xd, d2));
  double dmax = 0;
  for (size_t i = 0; i < (size_t)B * V; i++) dmax = fmax(dmax, fabs((double)one[i] - all[i]));
  printf("%s: %d prompts, %zu positions: batched vs one at a time, max |diff| %.3g\n", label, B, total, dmax);
  CHECK_MSG(!memcmp(one, all, sizeof(float) * (size_t)B * V), "%s: batched prefill logits differ (max %.3g)",
            label, dmax);
  CHECK_MSG(!memcmp(d1, d2, sizeof(float) * (size_t)B * V), "%s: the decode step after it differs", label);
  /* bad calls, each with its one-line message: a slot twice, an empty
   * prompt, one past the context, no prompts, a slot out of range */
  int twice[2] = {0, 0}, l2[2] = {1, 1}, l0[1] = {0}, lbig[1] = {af_lm_shape_of(lm)->ctx + 1}, neg[1] = {-1};
  const struct {
    int B, rc;
    const int *slots, *lens;
    const char *msg;
  } bad[] = {{2, AF_ERR_INVALID, twice, l2, "KV-cache slot 0 given twice"},
             {1, AF_ERR_RANGE, twice, l0, "prompt of 0 positions"},
             {1, AF_ERR_RANGE, twice, lbig, "the context holds"},
             {0, AF_ERR_INVALID, twice, l2, "prefill of 0 sequences"},
             {1, AF_ERR_RANGE, neg, l2, "KV-cache slot -1"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    af_error_clear();
    CHECK(af_lm_prefill_batch(lm, Q, bad[i].B, bad[i].slots, bad[i].lens, x, all) == bad[i].rc);
    CHECK_MSG(strstr(af_error_message(), bad[i].msg) != NULL, "bad call %zu: message '%s'", i,
              af_error_message());
  }
  af_error_clear();
  free(x), free(one), free(all), free(xd), free(d1), free(d2);
out:
  af_queue_free(Q);
  af_lm_free(lm);
  af_weights_free(w);
}

/* runs with max_length / max_new_tokens; returns the JSON line, stderr text */
static int describe_json(af_cl *cl, const char *model, int max_length, int max_new, char **json, char **err,
                         int32_t **ids, int *nid) {
  af_gen_opts o;
  af_gen_opts_default(&o);
  o.max_new_tokens = max_new;
  o.max_length = max_length;
  o.sampling.greedy = 1;
  af_generator *d = NULL;
  CHECK_OK(af_generator_new(cl, model, &o, &d));
  if (!d) return -1;
  FILE *out = tmpfile(), *ef = tmpfile();
  fflush(stderr);
  int saved = dup(2);
  dup2(fileno(ef), 2);
  int rc = describe_one(d, "trunc.png", proj_img[0], nimg[0], NULL, 1, out, NULL, ids, nid);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  fseek(ef, 0, SEEK_END);
  *json = slurp_file(out);
  *err = slurp_file(ef);
  fclose(out), fclose(ef);
  af_generator_free(d);
  return rc;
}

/* a generator of `model` that decodes greedily, at most max_new tokens (NULL when it failed) */
static af_generator *greedy_generator(af_cl *cl, const char *model, int max_new) {
  af_gen_opts o;
  af_gen_opts_default(&o);
  o.max_new_tokens = max_new;
  o.sampling.greedy = 1;
  af_generator *d = NULL;
  CHECK_OK(af_generator_new(cl, model, &o, &d));
  return d;
}

/* greedy ids of the last `keep` positions of the full prompt, through lm.h */
static void greedy_ref(af_cl *cl, const char *model, int keep, int steps, int32_t *want) {
  int32_t pre[512], post[512];
  const char *tmp = af_test_tmpdir();
  char dd[1200], p[1300];
  snprintf(dd, sizeof dd, "%s/prompt-dump", tmp);
  mkdir(dd, 0755);
  { /* the prompt ids as the generator tokenises them (its dump) */
    af_generator *d = greedy_generator(cl, model, 1);
    if (d) CHECK_OK(describe_one(d, "x", proj_img[0], nimg[0], dd, 0, NULL, NULL, NULL, NULL));
    af_generator_free(d);
  }
  snprintf(p, sizeof p, "%s/prompt_ids.txt", dd);
  int npre = read_ids_line(p, 0, pre, 512), npost = read_ids_line(p, 1, post, 512);
  CHECK(npre > 0 && npost > 0);
  af_weights *w;
  af_lm *lm;
  af_queue *Q;
  open_lm(cl, model, &w, &lm, &Q);
  if (!lm || !Q || npre <= 0 || npost <= 0) return;
  int H = af_lm_shape_of(lm)->hidden, V = af_lm_shape_of(lm)->vocab, n = npre + nimg[0] + npost;
  float *seq = malloc(sizeof(float) * (size_t)(n + 1) * H), *lg = malloc(sizeof(float) * V);
  CHECK_OK(af_lm_embed(lm, pre, npre, seq));
  memcpy(seq + (size_t)npre * H, proj_img[0], sizeof(float) * (size_t)nimg[0] * H);
  CHECK_OK(af_lm_embed(lm, post, npost, seq + (size_t)(npre + nimg[0]) * H));
  CHECK(keep <= n);
  CHECK_OK(af_lm_forward(lm, Q, seq + (size_t)(n - keep) * H, keep, 0, lg));
  for (int s = 0; s < steps; s++) {
    int b = 0;
    for (int i = 1; i < V; i++)
      if (lg[i] > lg[b]) b = i;
    want[s] = b;
    CHECK_OK(af_lm_embed(lm, &b, 1, seq));
    CHECK_OK(af_lm_forward(lm, Q, seq, 1, keep + s, lg));
  }
  free(seq), free(lg);
  af_queue_free(Q);
  af_lm_free(lm);
  af_weights_free(w);
}

static int prompt_positions(const char *json) {
  const char *p = strstr(json, "\"prompt_positions\":");
  return p ? atoi(p + strlen("\"prompt_positions\":")) : -1;
}

/* The batched prefill's fallback (net/generate_batch.c): when a group of
 * prompts cannot be prefilled together, each is prefilled alone, so that a
 * failure stays with the item that causes it.  The cause here is real: the
 * device's largest allocation, lowered after the weights are loaded, holds
 * the KV cache and one prompt's work buffers but not the group's.  A direct
 * af_lm_prefill_batch under that limit must fail (so the generator really
 * took the fallback), one prompt alone must not, and the generator's batched
 * run must then give every item the JSON line of the unlimited run. */
static void prefill_fallback(af_cl *cl, const char *model) {
  af_gen_opts o;
  af_gen_opts_default(&o);
  o.max_new_tokens = 16;
  o.sampling.greedy = 1;
  af_gen_item it[NIMG];
  char names[NIMG][32], *ref = NULL, *got = NULL;
  int plen[NIMG], sum = 0, maxp = 0;
  for (int pass = 0; pass < 2; pass++) {
    af_generator *d = NULL;
    CHECK_OK(af_generator_new(cl, model, &o, &d));
    if (!d) return;
    memset(it, 0, sizeof it);
    for (int i = 0; i < NIMG; i++) {
      snprintf(names[i], sizeof names[i], "fb%d.png", i);
      it[i] = (af_gen_item){.image = names[i], .proj = proj_img[i], .n_img = nimg[i]};
    }
    size_t saved = cl->info.max_alloc;
    if (pass == 1) {
      /* the limit: between what one prompt needs (its ffn-wide work buffers;
       * the KV cache of all slots, one buffer per layer for K and for V) and
       * what the group needs */
      af_weights *w;
      af_lm *lm;
      af_queue *Q;
      open_lm(cl, model, &w, &lm, &Q);
      if (!lm || !Q) {
        af_queue_free(Q), af_lm_free(lm), af_weights_free(w), af_generator_free(d);
        return;
      }
      const af_lm_shape *sh = af_lm_shape_of(lm);
      size_t F = (size_t)sh->ffn, H = (size_t)sh->hidden;
      CHECK_OK(af_lm_reserve(lm, Q, NIMG, maxp + o.max_new_tokens));
      size_t one = sizeof(float) * F * (size_t)maxp, group = sizeof(float) * F * (size_t)sum,
             kv = (size_t)(af_lm_kv_bytes(lm) / (2 * (uint64_t)sh->layers)), lo = one > kv ? one : kv;
      size_t limit = lo + (group - lo) / 2;
      printf(
          "fallback: prompts %d..%d positions (%d together): one needs %zu bytes, the KV cache %zu per "
          "buffer, the group %zu; largest allocation set to %zu\n",
          plen[0], maxp, sum, one, kv, group, limit);
      CHECK_MSG(group > lo + lo / 4, "the group (%zu bytes) is too close to one prompt (%zu)", group, lo);
      float *x = calloc((size_t)sum * H, sizeof(float)),
            *lg = malloc(sizeof(float) * NIMG * (size_t)sh->vocab);
      int slots[NIMG] = {0, 1, 2, 3};
      cl->info.max_alloc = limit;
      af_error_clear();
      int rc = x && lg ? af_lm_prefill_batch(lm, Q, NIMG, slots, plen, x, lg) : AF_ERR_NOMEM;
      CHECK_MSG(rc == AF_ERR_DEVICE_MEM, "batched prefill under the limit: rc %d (%s)", rc,
                af_error_message());
      af_error_clear();
      if (x && lg) CHECK_OK(af_lm_prefill(lm, Q, 0, x, maxp, 0, lg));
      free(x), free(lg);
      af_queue_free(Q), af_lm_free(lm), af_weights_free(w);
    }
    FILE *f = tmpfile();
    CHECK_OK(show_describe(d, it, NULL, NIMG, 1, f));
    cl->info.max_alloc = saved;
    af_error_clear();
    for (int i = 0; i < NIMG; i++) {
      CHECK_MSG(it[i].rc == 0, "fallback pass %d: item %d failed: %s", pass, i,
                it[i].error ? it[i].error : "");
      af_gen_item_clear(&it[i]);
    }
    char *t = slurp_file(f);
    fclose(f);
    if (pass == 0) {
      ref = t;
      const char *p = t;
      for (int i = 0; i < NIMG && p; i++, p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        plen[i] = prompt_positions(p);
        sum += plen[i];
        maxp = plen[i] > maxp ? plen[i] : maxp;
      }
      CHECK(maxp > 0);
    } else
      got = t;
    af_generator_free(d);
  }
  CHECK_MSG(ref && got && !strcmp(ref, got), "fallback: output differs:\n--- together\n%s--- fallback\n%s",
            ref ? ref : "", got ? got : "");
  free(ref), free(got);
}

/* Generation's special ids as the original has them: the tiny model's
 * Vicuna folder says bos 0 / eos 1 (the v0 quirk), so generate() stops on
 * id 1 and not on </s> (2), its output starts with a dummy 0, and
 * Chat.answer then drops a first generated 1; the text writes special
 * tokens out ("</s>") as transformers' decode does.  A copy of the f32 model
 * is patched so that only ids 1 and 2 can win: the final norm keeps hidden
 * dimension 0 alone and lm_head rows 1 and 2 are +-1000 there, so the first
 * token is 1 in one sign and 2 in the other. */
/* path := buf[0..size) (a patched copy of a model) */
static void write_bytes(const char *path, const char *buf, size_t size) {
  FILE *f = fopen(path, "wb");
  CHECK(f && fwrite(buf, 1, size, f) == size);
  if (f) fclose(f);
}

/* artflow.generate.* ids that are there but unusable stop the generator with
 * an error naming the file and key (no silent fall-back to the tokenizer's):
 * the converted eos key's type patched to float32, then its value to one
 * past the vocabulary.  GGUF metadata: u64 key length, key, u32 type, value. */
static void generate_keys(af_cl *cl, const char *model) {
  static const char key[] = "artflow.generate.eos_token_id";
  size_t size = 0;
  char *buf = af_test_slurp(model, &size), path[1200];
  CHECK(buf != NULL);
  if (!buf) return;
  char *at = memmem(buf, size, key, sizeof key - 1);
  CHECK_MSG(at != NULL, "%s: no %s", model, key);
  uint32_t type = 0;
  if (at) memcpy(&type, at + sizeof key - 1, 4);
  CHECK_MSG(type == 5, "%s is of GGUF type %u, want int32 (5)", key, type);
  if (!at || type != 5) {
    free(buf);
    return;
  }
  snprintf(path, sizeof path, "%s/genkeys.gguf", af_test_tmpdir());
  for (int run = 0; run < 2; run++) {
    uint32_t t = run ? 5 : 6; /* float32, then int32 */
    int32_t v = run ? 1000000 : 0x3f800000;
    memcpy(at + sizeof key - 1, &t, 4);
    memcpy(at + sizeof key - 1 + 4, &v, 4);
    write_bytes(path, buf, size);
    af_gen_opts o;
    af_gen_opts_default(&o);
    af_generator *d = NULL;
    int rc = af_generator_new(cl, path, &o, &d);
    const char *msg = af_error_message();
    CHECK_MSG(rc == AF_ERR_FORMAT && !d, "run %d: rc %d", run, rc);
    CHECK_MSG(
        msg && strstr(msg, path) && strstr(msg, key) && strstr(msg, run ? "1000000" : "not a 32-bit integer"),
        "run %d: message '%s'", run, msg ? msg : "");
    af_error_clear();
    af_generator_free(d);
  }
  free(buf);
  remove(path);
}

/* a file claiming a context of 3,000,000 positions (the RoPE table and KV
 * cache are sized from it) is a format error naming the file */
static void huge_context(af_cl *cl, const char *model) {
  static const char key[] = "llama.context_length";
  size_t size = 0;
  char *buf = af_test_slurp(model, &size), path[1200];
  char *at = buf ? memmem(buf, size, key, sizeof key - 1) : NULL;
  uint32_t type = 0, v = 3000000;
  if (at) memcpy(&type, at + sizeof key - 1, 4);
  CHECK_MSG(at && type == 4, "%s: no u32 %s", model, key);
  if (at && type == 4) {
    memcpy(at + sizeof key - 1 + 4, &v, 4);
    snprintf(path, sizeof path, "%s/ctx.gguf", af_test_tmpdir());
    write_bytes(path, buf, size);
    af_gen_opts o;
    af_gen_opts_default(&o);
    af_generator *d = NULL;
    int rc = af_generator_new(cl, path, &o, &d);
    const char *msg = af_error_message();
    CHECK_MSG(rc == AF_ERR_FORMAT && !d && msg && strstr(msg, path) && strstr(msg, "context length 3000000"),
              "rc %d, message '%s'", rc, msg ? msg : "");
    af_error_clear();
    af_generator_free(d);
    remove(path);
  }
  free(buf);
}

static void special_ids(af_cl *cl, const char *model) {
  size_t size = 0;
  char *buf = af_test_slurp(model, &size), path[1200];
  CHECK(buf != NULL);
  if (!buf) return;
  snprintf(path, sizeof path, "%s/special.gguf", af_test_tmpdir());
  af_gguf *g = NULL;
  CHECK_OK(af_gguf_open_buffer(buf, size, "special", &g));
  const af_gguf_tensor *nt = g ? af_gguf_find_tensor(g, "output_norm.weight") : NULL,
                       *ot = g ? af_gguf_find_tensor(g, "output.weight") : NULL;
  CHECK(nt && ot && nt->type == AF_GGML_F32 && ot->type == AF_GGML_F32);
  if (!nt || !ot || nt->type != AF_GGML_F32 || ot->type != AF_GGML_F32) {
    af_gguf_close(g), free(buf);
    return;
  }
  size_t H = (size_t)nt->ne[0], V = (size_t)ot->ne[1];
  float *norm = (float *)(buf + ((const char *)nt->data - buf)),
        *out = (float *)(buf + ((const char *)ot->data - buf));
  int32_t *ids[2] = {NULL, NULL};
  int nid[2] = {0, 0}, first_one = -1;
  char *ans[2] = {NULL, NULL}, *printed[2] = {NULL, NULL};
  for (int run = 0; run < 2; run++) {
    float sgn = run ? -1.0f : 1.0f;
    for (size_t i = 0; i < H; i++) norm[i] = i == 0 ? 1.0f : 0.0f;
    memset(out, 0, sizeof(float) * H * V);
    out[1 * H] = 1000.0f * sgn, out[2 * H] = -1000.0f * sgn;
    write_bytes(path, buf, size);
    af_generator *d = greedy_generator(cl, path, 6);
    if (!d) break;
    FILE *tf = tmpfile();
    CHECK_OK(describe_one(d, "s.png", proj_img[0], nimg[0], NULL, 0, tf, &ans[run], &ids[run], &nid[run]));
    printed[run] = slurp_file(tf);
    fclose(tf);
    af_generator_free(d);
    printf("special ids, sign %+.0f: %d ids kept, answer '%s', printed '%s'\n", sgn, nid[run],
           ans[run] ? ans[run] : "", printed[run] ? printed[run] : "");
    if (nid[run] == 0) first_one = run;
  }
  CHECK_MSG(first_one >= 0, "neither sign made id 1 the first token and stopped at once");
  for (int run = 0; run < 2 && first_one >= 0; run++) {
    char want[256] = "", line[300];
    if (run == first_one) { /* [0 (dummy), 1 (eos)]: both dropped, no text */
      CHECK(nid[run] == 0 && ans[run] && !strcmp(ans[run], ""));
    } else { /* 2 first; only 1 (eos) stops it; every special written out */
      CHECK(nid[run] >= 1 && ids[run] && ids[run][0] == 2);
      for (int k = 0; k < nid[run] && ids[run]; k++) {
        CHECK(ids[run][k] == 2 || (ids[run][k] == 1 && k == nid[run] - 1));
        strcat(want, ids[run][k] == 2 ? "</s>" : "<s>");
      }
      CHECK(nid[run] == 6 || (ids[run] && ids[run][nid[run] - 1] == 1));
      CHECK_MSG(ans[run] && !strcmp(ans[run], want), "answer '%s', want '%s'", ans[run] ? ans[run] : "",
                want);
    }
    snprintf(line, sizeof line, "s.png: %s\n", want); /* the stream ends as the answer does */
    CHECK_MSG(printed[run] && !strcmp(printed[run], line), "printed '%s', want '%s'",
              printed[run] ? printed[run] : "", line);
  }
  for (int run = 0; run < 2; run++) free(ids[run]), free(ans[run]), free(printed[run]);
  af_gguf_close(g);
  free(buf);
  remove(path);
}

static void truncation(af_cl *cl, const char *model) {
  /* the full prompt length: no truncation with a small answer */
  char *js = NULL, *err = NULL;
  int32_t *ids = NULL;
  int nid = 0;
  CHECK_OK(describe_json(cl, model, 2000, 4, &js, &err, &ids, &nid));
  int n_full = prompt_positions(js);
  printf("full prompt: %d positions, stderr '%s'\n", n_full, err);
  CHECK(n_full > 20 && !strstr(err, "warning"));
  free(js), free(err), free(ids);
  /* max_length 40 with 6 new tokens: the last 34 positions; then the model's
   * context (256) bounds max_length 2000: 230 new tokens keep 26 */
  const int cases[2][2] = {{40, 6}, {2000, 230}};
  for (int c = 0; c < 2; c++) {
    int max_len = cases[c][0] < 256 ? cases[c][0] : 256, max_new = cases[c][1], keep = max_len - max_new;
    CHECK_OK(describe_json(cl, model, cases[c][0], max_new, &js, &err, &ids, &nid));
    int pp = prompt_positions(js);
    char want_msg[64];
    snprintf(want_msg, sizeof want_msg, "not see the first %d positions", n_full - keep);
    printf("max_length %d, max_new_tokens %d: prompt_positions %d (want %d), %d ids; stderr: %s", cases[c][0],
           max_new, pp, keep, nid, err);
    CHECK(pp == keep);
    CHECK(strstr(err, "warning") && strstr(err, "trunc.png") && strstr(err, want_msg));
    int32_t *want = malloc(sizeof(int32_t) * (size_t)max_new);
    greedy_ref(cl, model, keep, max_new, want);
    CHECK(nid >= 1 && nid <= max_new && ids && !memcmp(ids, want, sizeof(int32_t) * (size_t)nid));
    free(want), free(js), free(err), free(ids);
  }
  /* no room for the prompt at all */
  CHECK(describe_json(cl, model, 30, 30, &js, &err, &ids, &nid) == AF_ERR_RANGE);
  af_error_clear();
  free(js), free(err);
}

/* The sink's contract on the generator's own API (no CLI): the stream that
 * the callbacks tag comes out in item order, each item's bytes together;
 * prefilled and done are called once per item; logits0 is there where asked
 * only and equals a one-image run's; positions are the prompt's; a done
 * callback that fails fails its item alone, with its message, and the
 * stream goes on past it; without a sink (the llm stage) the results are
 * the same. */
typedef struct sink_log {
  char buf[1 << 16];
  size_t n;
  int last, out_of_order, prefilled[NIMG], done[NIMG], refuse;
  size_t npre, npost;
} sink_log;

static void log_write(void *arg, int i, const char *p, size_t len) {
  sink_log *l = arg;
  l->out_of_order |= i < l->last;
  l->last = i;
  if (l->n + len < sizeof l->buf) memcpy(l->buf + l->n, p, len), l->n += len;
}

static int log_prefilled(void *arg, af_gen_run *run, int i) {
  sink_log *l = arg;
  const int32_t *pre, *post;
  char tag[32];
  l->prefilled[i]++;
  af_gen_prompt_ids(run, &pre, &l->npre, &post, &l->npost);
  snprintf(tag, sizeof tag, "<<open %d>>", i);
  return af_gen_put(run, i, tag, strlen(tag));
}

static int log_done(void *arg, af_gen_run *run, int i) {
  sink_log *l = arg;
  char tag[32];
  l->done[i]++;
  if (i == l->refuse) return af_err(AF_ERR_IO, "test: item %d refused", i);
  snprintf(tag, sizeof tag, "<<close %d>>", i);
  return af_gen_put(run, i, tag, strlen(tag));
}

static void sink_contract(af_cl *cl, const char *model) {
  af_generator *g = greedy_generator(cl, model, 10);
  if (!g) return;
  char *ans0[NIMG] = {0};
  for (int pass = 0; pass < 3; pass++) { /* 0: all ok, 1: item 1's done fails, 2: no sink */
    sink_log *l = calloc(1, sizeof *l);
    af_gen_item it[NIMG];
    for (int i = 0; i < NIMG; i++)
      it[i] = (af_gen_item){
          .image = "sink.png", .proj = proj_img[i], .n_img = nimg[i], .want_logits0 = i % 2 == 0};
    l->refuse = pass == 1 ? 1 : -1;
    af_gen_sink sink = {
        .arg = l, .write = log_write, .stream_answers = 1, .prefilled = log_prefilled, .done = log_done};
    int rc = af_generate_batch(g, it, NIMG, pass == 2 ? NULL : &sink);
    CHECK_MSG(rc == (pass == 1 ? AF_ERR_IO : 0), "pass %d: rc %d", pass, rc);
    af_error_clear();
    CHECK(!l->out_of_order);
    const char *at = l->buf;
    for (int i = 0; i < NIMG; i++) {
      char open[32], close[32];
      snprintf(open, sizeof open, "<<open %d>>", i);
      snprintf(close, sizeof close, "<<close %d>>", i);
      const char *o = strstr(l->buf, open), *c = strstr(l->buf, close);
      if (pass < 2) {
        CHECK_MSG(l->prefilled[i] == 1 && l->done[i] == 1, "pass %d item %d: prefilled %d, done %d", pass, i,
                  l->prefilled[i], l->done[i]);
        CHECK_MSG(o == at || (i == 2 && pass == 1 && o > at),
                  "pass %d: item %d's bytes not where item %d's end", pass, i, i - 1);
        CHECK(i == l->refuse ? c == NULL : c > o);
        if (o) at = c ? c + strlen(close) : o + strlen(open);
      }
      CHECK(it[i].positions == (int)(l->npre + l->npost) + nimg[i] || pass == 2);
      CHECK((it[i].logits0 != NULL) == (i % 2 == 0) && it[i].n_logits0 == (i % 2 == 0 ? it[0].n_logits0 : 0));
      if (i == l->refuse) {
        CHECK(it[i].rc == AF_ERR_IO && it[i].error && strstr(it[i].error, "test: item 1 refused"));
        CHECK(!it[i].answer && !it[i].ids && !it[i].n_ids);
      } else {
        CHECK_MSG(it[i].rc == 0 && it[i].answer, "pass %d item %d: rc %d", pass, i, it[i].rc);
        if (!pass)
          ans0[i] = it[i].answer ? strdup(it[i].answer) : NULL;
        else
          CHECK(ans0[i] && it[i].answer && !strcmp(ans0[i], it[i].answer));
      }
    }
    if (pass == 0) { /* logits0 as one image alone has it */
      af_gen_item one = {.image = "one.png", .proj = proj_img[2], .n_img = nimg[2], .want_logits0 = 1};
      CHECK_OK(af_generate_batch(g, &one, 1, NULL));
      CHECK(one.logits0 && it[2].logits0 && one.n_logits0 == it[2].n_logits0 && one.n_logits0 > 0 &&
            !memcmp(one.logits0, it[2].logits0, sizeof(float) * (size_t)one.n_logits0));
      af_gen_item_clear(&one);
    }
    printf("sink pass %d: %zu streamed bytes in item order, prompt %zu + image + %zu ids\n", pass, l->n,
           l->npre, l->npost);
    for (int i = 0; i < NIMG; i++) af_gen_item_clear(&it[i]);
    free(l);
  }
  for (int i = 0; i < NIMG; i++) free(ans0[i]);
  af_generator_free(g);
}

/* interleave: each item's bytes come as they are made (the items' streams
 * mixed, as a server with one client per item wants) and are, item by item,
 * the bytes of the ordered stream; cancelled: an item the sink gives up on
 * ends with AF_ERR_INTERRUPTED at the next step and the others' answers do
 * not change. */
typedef struct il_log {
  char buf[NIMG][1 << 14];
  size_t n[NIMG];
  int last, mixed, writes[NIMG], cancel;
} il_log;

static void il_write(void *arg, int i, const char *p, size_t len) {
  il_log *l = arg;
  l->mixed |= i < l->last;
  l->last = i;
  l->writes[i]++;
  if (p && l->n[i] + len < sizeof l->buf[i]) memcpy(l->buf[i] + l->n[i], p, len), l->n[i] += len;
}

static int il_cancelled(void *arg, int i) {
  il_log *l = arg;
  return i == l->cancel && l->writes[i] >= 3;
}

static void sink_interleave(af_cl *cl, const char *model) {
  af_generator *g = greedy_generator(cl, model, 12);
  if (!g) return;
  il_log *l[3] = {calloc(1, sizeof(il_log)), calloc(1, sizeof(il_log)), calloc(1, sizeof(il_log))};
  af_gen_item it[3][NIMG];
  for (int pass = 0; pass < 3; pass++) { /* 0: in item order, 1: interleaved, 2: item 2 cancelled */
    for (int i = 0; i < NIMG; i++)
      it[pass][i] = (af_gen_item){.image = "il.png", .proj = proj_img[i], .n_img = nimg[i]};
    l[pass]->cancel = pass == 2 ? 2 : -1;
    af_gen_sink sink = {.arg = l[pass],
                        .write = il_write,
                        .stream_answers = 1,
                        .interleave = pass > 0,
                        .cancelled = pass == 2 ? il_cancelled : NULL};
    int rc = af_generate_batch(g, it[pass], NIMG, &sink);
    CHECK_MSG(rc == (pass == 2 ? AF_ERR_INTERRUPTED : 0), "pass %d: rc %d", pass, rc);
    af_error_clear();
  }
  CHECK(!l[0]->mixed);
  CHECK_MSG(l[1]->mixed, "interleaved: every item's bytes came in item order");
  for (int i = 0; i < NIMG; i++) {
    CHECK_MSG(l[1]->n[i] == l[0]->n[i] && !memcmp(l[1]->buf[i], l[0]->buf[i], l[0]->n[i]),
              "item %d: interleaved bytes differ", i);
    CHECK(it[1][i].rc == 0 && it[1][i].answer && !strcmp(it[1][i].answer, it[0][i].answer));
    if (i == 2) {
      CHECK(it[2][i].rc == AF_ERR_INTERRUPTED && it[2][i].error && strstr(it[2][i].error, "cancelled"));
      CHECK_MSG(l[2]->writes[i] == 3, "the cancelled item wrote %d times", l[2]->writes[i]);
    } else {
      CHECK(it[2][i].rc == 0 && it[2][i].answer && !strcmp(it[2][i].answer, it[0][i].answer));
    }
  }
  for (int pass = 0; pass < 3; pass++) {
    for (int i = 0; i < NIMG; i++) af_gen_item_clear(&it[pass][i]);
    free(l[pass]);
  }
  af_generator_free(g);
}

/* af_chat_turn's callbacks (net/chat.h): the prompt callback sees the
 * turn's segments and positions before generation, the text callback the
 * answer as it grows, the answered callback the answer; an answered
 * callback that fails fails the turn and leaves the history as it was, so
 * that asking again renders the same prompt and, greedy, the same answer. */
typedef struct chat_log {
  int prompts, refuse;
  size_t streamed;
  int32_t last_ids[1024]; /* the prompt's last segment: the history after the image */
  size_t n_last;
} chat_log;

static int chat_log_text(void *arg, const char *p, size_t len) {
  (void)p;
  ((chat_log *)arg)->streamed += len;
  return 0;
}

static int chat_log_prompt(void *arg, const af_chat_result *r) {
  chat_log *l = arg;
  l->prompts++;
  CHECK(r->n_seg == 2 && r->positions > 0 && r->begin == 0 && !r->answer);
  l->n_last = r->n_seg == 2 && r->seg_n[1] <= 1024 ? r->seg_n[1] : 0;
  if (l->n_last) memcpy(l->last_ids, r->seg_ids[1], sizeof(int32_t) * l->n_last);
  return 0;
}

static int chat_log_answered(void *arg, const af_chat_result *r) {
  chat_log *l = arg;
  CHECK(r->answer != NULL);
  return l->refuse ? af_err(AF_ERR_IO, "test: answer refused") : 0;
}

static void chat_callbacks(af_cl *cl, const char *model) {
  af_generator *g = greedy_generator(cl, model, 8);
  af_chat *c = NULL;
  const float *proj[1] = {proj_img[0]};
  if (g) CHECK_OK(af_chat_new(g, proj, 1, nimg[0], &c));
  if (!c) {
    af_generator_free(g);
    return;
  }
  chat_log l = {0};
  af_chat_io io = {&l, chat_log_text, chat_log_prompt, chat_log_answered};
  af_chat_result r[3];
  static int32_t last[1024];
  CHECK_OK(af_chat_turn(c, "What is this?", &io, &r[0]));
  l.refuse = 1;
  CHECK(af_chat_turn(c, "And the colours?", &io, &r[1]) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "test: answer refused") != NULL);
  af_error_clear();
  size_t n_failed = l.n_last;
  memcpy(last, l.last_ids, sizeof last);
  l.refuse = 0;
  CHECK_OK(af_chat_turn(c, "And the colours?", &io, &r[2]));
  CHECK(l.prompts == 3 && l.streamed > 0);
  CHECK(r[1].positions == r[2].positions && r[2].positions > r[0].positions);
  CHECK(n_failed > 0 && l.n_last == n_failed && !memcmp(last, l.last_ids, sizeof(int32_t) * n_failed));
  CHECK(r[1].answer && r[2].answer && !strcmp(r[1].answer, r[2].answer) && r[1].n_ids == r[2].n_ids);
  printf("chat callbacks: %d prompts, %zu streamed bytes, turn 2 (refused, then again) %d positions\n",
         l.prompts, l.streamed, r[2].positions);
  for (int i = 0; i < 3; i++) af_chat_result_free(&r[i]);
  af_chat_free(c);
  af_generator_free(g);
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  char m32[1024], mq8[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, m32, sizeof m32));
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_Q8_0, mq8, sizeof mq8));
  af_cl *cl = NULL;
  CHECK_OK(af_cl_open(&cl, NULL));
  int nd;
  int64_t shape[4];
  size_t np = 0;
  float *proj = npy_read_f32(af_test_data(DIR "golden/proj.npy"), &nd, shape, &np);
  CHECK(proj && nd == 2);
  if (!cl || !proj || nd != 2) return af_test_done("test_describe_batch");
  int Qn = (int)shape[0], H = (int)shape[1];
  const int rows[NIMG] = {Qn, Qn - 1, Qn - 3, Qn};
  af_rng rng;
  af_rng_seed(&rng, 3);
  for (int i = 0; i < NIMG; i++) { /* the golden image, then noisy variants with fewer rows */
    nimg[i] = rows[i];
    proj_img[i] = malloc(sizeof(float) * (size_t)Qn * H);
    for (int k = 0; k < Qn * H; k++)
      proj_img[i][k] = proj[k] * (1.0f + 0.5f * (float)i) + (i ? af_rng_normal(&rng) : 0.0f);
  }
  const int short_lens[4] = {37, 36, 34, 40}, long_lens[5] = {250, 249, 247, 255, 240},
            mid_lens[4] = {102, 101, 99, 102};
  prefill_batch_vs_single(cl, m32, short_lens, 4, "f32 prefill");
  prefill_batch_vs_single(cl, m32, mid_lens, 4, "f32 prefill, describe's lengths");
  prefill_batch_vs_single(cl, m32, long_lens, 5, "f32 prefill, chunked");
  prefill_batch_vs_single(cl, mq8, long_lens, 5, "q8_0 prefill, chunked");
  batch_vs_single(cl, m32, 0, 1, "f32-greedy-text");
  batch_vs_single(cl, m32, 1, 0, "f32-sampled-json");
  batch_vs_single(cl, mq8, 0, 0, "q8_0-sampled-text");
  /* a failing item fails alone; a prompt longer than the context (300 image
   * rows) is truncated, not failed */
  {
    af_gen_opts o;
    af_gen_opts_default(&o);
    o.max_new_tokens = 8;
    o.sampling.greedy = 1;
    af_generator *d = NULL;
    CHECK_OK(af_generator_new(cl, m32, &o, &d));
    float *big = calloc((size_t)300 * H, sizeof(float));
    af_gen_item it[3] = {{.image = "big", .proj = big, .n_img = 300},
                         {.image = "bad", .proj = NULL, .n_img = -1},
                         {.image = "ok", .proj = proj, .n_img = Qn}};
    if (d) CHECK(af_generate_batch(d, it, 3, NULL) == AF_ERR_INVALID);
    af_error_clear();
    CHECK(it[1].rc == AF_ERR_INVALID && it[1].error && strstr(it[1].error, "bad"));
    CHECK(it[0].rc == 0 && it[0].n_ids >= 1 && it[0].answer);
    CHECK(it[2].rc == 0 && it[2].n_ids >= 1 && it[2].answer);
    for (int i = 0; i < 3; i++) af_gen_item_clear(&it[i]);
    free(big);
    af_generator_free(d);
  }
  prefill_fallback(cl, m32);
  sink_contract(cl, m32);
  sink_interleave(cl, m32);
  chat_callbacks(cl, m32);
  special_ids(cl, m32);
  generate_keys(cl, m32);
  huge_context(cl, m32);
  truncation(cl, m32);
  for (int i = 0; i < NIMG; i++) free(proj_img[i]);
  free(proj);
  af_cl_close(cl);
  return af_test_done("test_describe_batch");
}
