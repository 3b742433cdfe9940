/* The prompt token ids artflow builds (template from the converted GGUF, split
 * at <ImageHere>, each segment tokenised separately, BOS on the first only)
 * equal the ids the original Chat.get_context_emb produced with transformers'
 * LlamaTokenizer (tests/data/artgpt4-tiny/golden/prompt_ids.txt). */
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "formats/spm.h"
#include "net/sampling.h"
#include "ref/npy.h"

#define DIR "artgpt4-tiny/"

int main(void) {
  const char *tmp = af_test_tmpdir();
  char out[1024];
  CHECK_OK(af_test_convert_tiny(tmp, AF_GGML_F32, out, sizeof out));
  af_gguf *g = NULL;
  af_spm *t = NULL;
  CHECK_OK(af_gguf_open(out, &g));
  if (g) CHECK_OK(af_spm_from_gguf(g, &t));
  const char *tmpl = NULL, *question = NULL;
  if (g) {
    CHECK_OK(af_gguf_get_str(g, "artflow.prompt.template", &tmpl));
    CHECK_OK(af_gguf_get_str(g, "artflow.prompt.default_question", &question));
  }
  if (!t || !tmpl || !question) return af_test_done("test_prompt_ids");
  CHECK(af_spm_options(t)->bos_id == 1 &&
        af_spm_options(t)->eos_id == 2); /* from tokenizer.model, not config.json */
  char *prompt = NULL, **segs = NULL;
  int nseg = 0;
  CHECK_OK(af_prompt_fill(tmpl, question, &prompt));
  CHECK_OK(af_prompt_split(prompt, &segs, &nseg));
  CHECK(nseg == 2);
  for (int s = 0; s < nseg && s < 2; s++) {
    int32_t want[512], *ids = NULL;
    size_t n = 0;
    int nw = read_ids_line(af_test_data(DIR "golden/prompt_ids.txt"), s, want, 512);
    CHECK_OK(af_spm_encode(t, segs[s], strlen(segs[s]), s == 0, -1, &ids, &n));
    CHECK_MSG((int)n == nw, "segment %d: %zu ids, original %d", s, n, nw);
    for (int i = 0; i < nw && i < (int)n; i++)
      CHECK_MSG(ids[i] == want[i], "segment %d id %d: %d vs %d", s, i, ids[i], want[i]);
    free(ids);
  }
  af_prompt_free_segments(segs, nseg);
  free(prompt);
  af_spm_free(t);
  af_gguf_close(g);
  return af_test_done("test_prompt_ids");
}
