/* Prompt assembly against the original Conversation's strings, the sampler
 * (greedy, top-k/top-p/temperature semantics, repetition penalty, seeding),
 * stop sequences across token boundaries and answer post-processing. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "net/sampling.h"

static const char *TEMPLATE =
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it "
    "to you. Please answer my questions.###Human: <Img><ImageHere></Img> {question}###Assistant:";

static void test_prompt(void) {
  char *txt = af_test_slurp(af_test_data("prompt/chat_prompts.json"), NULL);
  CHECK(txt != NULL);
  cJSON *j = cJSON_Parse(txt ? txt : "{}");
  const char *t1 = cJSON_GetStringValue(cJSON_GetObjectItem(j, "turn1"));
  CHECK(t1 != NULL);
  char *p = NULL;
  CHECK_OK(af_prompt_fill(TEMPLATE, "What is this?", &p));
  CHECK(p && t1 && !strcmp(p, t1));
  char **segs;
  int n;
  CHECK_OK(af_prompt_split(p, &segs, &n));
  CHECK(n == 2);
  if (n == 2) {
    CHECK(strlen(segs[0]) > 0 && !strcmp(segs[0] + strlen(segs[0]) - 5, "<Img>"));
    CHECK(!strncmp(segs[1], "</Img> What is this?", 20));
  }
  af_prompt_free_segments(segs, n);
  free(p);
  /* two images: three segments, the middle one exact */
  CHECK_OK(af_prompt_split("a<ImageHere> and <ImageHere>b", &segs, &n));
  CHECK(n == 3 && !strcmp(segs[0], "a") && !strcmp(segs[1], " and ") && !strcmp(segs[2], "b"));
  af_prompt_free_segments(segs, n);
  CHECK(af_prompt_fill("no placeholder {question}", "q", &p) == AF_ERR_INVALID);
  af_error_clear();
  cJSON_Delete(j);
  free(txt);
}

static void test_sampler(void) {
  enum { V = 8 };
  af_sampling s;
  af_sampler sm;
  float base[V] = {1.0f, 3.0f, 3.0f, 2.0f, 0.5f, -1.0f, 2.5f, 0.0f}, l[V];
  af_sampling_default(&s);
  CHECK(s.top_k == 50 && fabsf(s.top_p - 0.9f) < 1e-7f && s.temperature == 1.0f && !s.greedy);
  s.greedy = 1;
  CHECK_OK(af_sampler_init(&sm, &s, V));
  memcpy(l, base, sizeof l);
  CHECK(af_sampler_next(&sm, l, NULL, 0) == 1); /* first maximum, like torch.argmax */
  af_sampler_free(&sm);

  /* top_k = 3: candidates 1, 2, 6 (scores 3, 3, 2.5); frequencies follow the softmax over them */
  s.greedy = 0;
  s.top_k = 3;
  s.top_p = 1.0f;
  s.seed = 7;
  CHECK_OK(af_sampler_init(&sm, &s, V));
  int count[V] = {0}, N = 30000;
  for (int i = 0; i < N; i++) {
    memcpy(l, base, sizeof l);
    count[af_sampler_next(&sm, l, NULL, 0)]++;
  }
  double z = 2 * exp(3.0) + exp(2.5);
  CHECK(count[0] + count[3] + count[4] + count[5] + count[7] == 0);
  CHECK_MSG(fabs(count[1] / (double)N - exp(3.0) / z) < 0.015, "p1 %f", count[1] / (double)N);
  CHECK_MSG(fabs(count[6] / (double)N - exp(2.5) / z) < 0.015, "p6 %f", count[6] / (double)N);
  af_sampler_free(&sm);

  /* top_k = 2 with a tie at the 2nd place keeps both tied tokens (transformers keeps >= kth) */
  s.top_k = 1;
  CHECK_OK(af_sampler_init(&sm, &s, V));
  int seen2 = 0;
  for (int i = 0; i < 200; i++) {
    memcpy(l, base, sizeof l);
    int t = af_sampler_next(&sm, l, NULL, 0);
    CHECK(t == 1 || t == 2);
    seen2 |= t == 2;
  }
  CHECK(seen2);
  af_sampler_free(&sm);

  /* top_p small: only the most likely survives (ties both above the cut stay) */
  s.top_k = 0;
  s.top_p = 0.05f;
  CHECK_OK(af_sampler_init(&sm, &s, V));
  for (int i = 0; i < 200; i++) {
    memcpy(l, base, sizeof l);
    int t = af_sampler_next(&sm, l, NULL, 0);
    CHECK(t == 1 || t == 2);
  }
  af_sampler_free(&sm);

  /* same seed, same sequence; low temperature concentrates on the maximum */
  s.top_p = 1.0f;
  s.temperature = 0.05f;
  float hot[V] = {0, 0, 0, 0, 0, 0, 0, 1.0f};
  CHECK_OK(af_sampler_init(&sm, &s, V));
  int at7 = 0;
  for (int i = 0; i < 500; i++) {
    memcpy(l, hot, sizeof l);
    at7 += af_sampler_next(&sm, l, NULL, 0) == 7;
  }
  CHECK(at7 > 495);
  af_sampler_free(&sm);

  /* repetition penalty divides positive and multiplies negative scores of seen ids */
  s.greedy = 1;
  s.repetition_penalty = 4.0f;
  s.temperature = 1.0f;
  CHECK_OK(af_sampler_init(&sm, &s, V));
  /* greedy search applies it too (transformers' greedy_search runs the logits
   * processors), and counts the lead id (the dummy BOS) like a generated one */
  int32_t h12[] = {1, 2};
  memcpy(l, base, sizeof l);
  CHECK(af_sampler_next(&sm, l, h12, 2) == 6);
  memcpy(l, base, sizeof l);
  sm.lead = 6;
  CHECK(af_sampler_next(&sm, l, h12, 2) == 3); /* 1, 2 and the lead 6 penalised */
  CHECK(fabsf(l[6] - 2.5f / 4) < 1e-6f && fabsf(l[1] - 0.75f) < 1e-6f);
  memcpy(l, base, sizeof l);
  int32_t h6[] = {6};
  CHECK(af_sampler_next(&sm, l, h6, 1) == 1); /* lead == a generated id: penalised once */
  CHECK(fabsf(l[6] - 2.5f / 4) < 1e-6f);
  memcpy(l, base, sizeof l);
  sm.lead = -1;
  CHECK(af_sampler_next(&sm, l, NULL, 0) == 1); /* nothing seen: plain argmax */
  af_sampler_free(&sm);
  s.greedy = 0;
  s.top_k = 1;
  CHECK_OK(af_sampler_init(&sm, &s, V));
  int32_t hist[] = {1, 2, 1};
  memcpy(l, base, sizeof l);
  CHECK(af_sampler_next(&sm, l, hist, 3) == 6); /* 3/4 < 2.5 */
  CHECK(fabsf(l[1] - 0.75f) < 1e-6f);           /* penalised once, not per occurrence */
  af_sampler_free(&sm);
}

static void test_stop_and_post(void) {
  int32_t a[] = {835}, b[] = {2277, 29937};
  const int32_t *stops[] = {a, b};
  int lens[] = {1, 2};
  int32_t ids1[] = {10, 20, 835}, ids2[] = {10, 2277, 29937}, ids3[] = {10, 2277}, ids4[] = {29937};
  CHECK(af_stop_match(ids1, 3, stops, lens, 2));
  CHECK(af_stop_match(ids2, 3, stops, lens, 2)); /* across a token boundary */
  CHECK(!af_stop_match(ids3, 2, stops, lens, 2));
  CHECK(!af_stop_match(ids4, 1, stops, lens, 2));
  char *t = af_answer_postprocess("  The painting shows a river. ###Human: more", "###");
  CHECK(t && !strcmp(t, "The painting shows a river."));
  free(t);
  t = af_answer_postprocess("Assistant: x Assistant:  final answer\n", "###");
  CHECK(t && !strcmp(t, "final answer"));
  free(t);
  t = af_answer_postprocess("", "###");
  CHECK(t && !strcmp(t, ""));
  free(t);
  /* strip() as Python's: every code point str.isspace() holds for (29 below
   * U+10000), at both ends; U+200B (zero width) and U+FFFD are kept */
  static const uint32_t ws[] = {0x9,    0xa,    0xb,    0xc,    0xd,    0x1c,   0x1d,   0x1e,
                                0x1f,   0x20,   0x85,   0xa0,   0x1680, 0x2000, 0x2001, 0x2002,
                                0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
                                0x2028, 0x2029, 0x202f, 0x205f, 0x3000};
  for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) {
    char in[64], u[4];
    uint32_t c = ws[i];
    int n = c < 0x80    ? (u[0] = (char)c, 1)
            : c < 0x800 ? (u[0] = (char)(0xc0 | c >> 6), u[1] = (char)(0x80 | (c & 0x3f)), 2)
                        : (u[0] = (char)(0xe0 | c >> 12), u[1] = (char)(0x80 | (c >> 6 & 0x3f)),
                           u[2] = (char)(0x80 | (c & 0x3f)), 3);
    snprintf(in, sizeof in, "%.*s%.*sa b%.*s%.*s", n, u, n, u, n, u, n, u);
    t = af_answer_postprocess(in, "###");
    CHECK_MSG(t && !strcmp(t, "a b"), "U+%04X around 'a b': '%s'", c, t ? t : "(null)");
    free(t);
  }
  t = af_answer_postprocess("\xe2\x80\x8b x\xe2\x80\x8b \xef\xbf\xbd\xc2\xa0", "###");
  CHECK(t && !strcmp(t, "\xe2\x80\x8b x\xe2\x80\x8b \xef\xbf\xbd"));
  free(t);
  t = af_answer_postprocess(" \xe3\x80\x80\x1f\n", "###");
  CHECK(t && !strcmp(t, ""));
  free(t);
}

int main(void) {
  test_prompt();
  test_sampler();
  test_stop_and_post();
  return af_test_done("test_generate");
}
