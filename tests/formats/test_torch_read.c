/* Reads every valid fixture in tests/data/torch (made by torch.save and by
 * make_fixtures.py per the formats' specs) through af_tsrc and compares each
 * tensor with torch's own description in expected.json: dtype, shape, sum and
 * the first values, through the f32, f16, raw and row-wise readers. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "artflow/status.h"
#include "formats/hfconfig.h"
#include "formats/tensorsrc.h"
#include "formats/torch.h"

static void check_tensor(const af_tsrc_tensor *t, const cJSON *exp) {
  const char *dt = cJSON_GetObjectItem(exp, "dtype")->valuestring;
  CHECK_MSG(!strcmp(af_tsrc_dtype_name(t->dtype), dt), "%s: dtype %s, torch says %s", t->name,
            af_tsrc_dtype_name(t->dtype), dt);
  const cJSON *shape = cJSON_GetObjectItem(exp, "shape");
  CHECK_MSG(t->ndim == cJSON_GetArraySize(shape), "%s: ndim %d", t->name, t->ndim);
  uint64_t numel = 1;
  for (int i = 0; i < t->ndim && i < cJSON_GetArraySize(shape); i++) {
    CHECK_MSG(t->shape[i] == (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble, "%s: dim %d", t->name, i);
    numel *= (uint64_t)t->shape[i];
  }
  CHECK(t->numel == numel);
  float *x = malloc((numel ? numel : 1) * sizeof *x);
  CHECK_OK(af_tsrc_read_f32(t, x));
  double sum = 0, asum = 0;
  for (uint64_t i = 0; i < numel; i++) sum += x[i], asum += fabs(x[i]);
  double es = cJSON_GetObjectItem(exp, "sum")->valuedouble;
  double ea = cJSON_GetObjectItem(exp, "abs_sum")->valuedouble;
  CHECK_MSG(fabs(sum - es) <= 1e-9 * fmax(1, ea) + 1e-6 * fabs(es), "%s: sum %.9g, torch %.9g", t->name, sum,
            es);
  CHECK_MSG(fabs(asum - ea) <= 1e-6 * fmax(1, ea), "%s: abs sum %.9g, torch %.9g", t->name, asum, ea);
  const cJSON *vals = cJSON_GetObjectItem(exp, "values");
  for (int i = 0; i < cJSON_GetArraySize(vals) && (uint64_t)i < numel; i++)
    CHECK_MSG(x[i] == (float)cJSON_GetArrayItem(vals, i)->valuedouble, "%s[%d]: %g vs torch %g", t->name, i,
              x[i], cJSON_GetArrayItem(vals, i)->valuedouble);
  /* rows read one at a time equal the whole read */
  if (t->ndim >= 1 && t->shape[0] > 0) {
    uint64_t per = numel / (uint64_t)t->shape[0];
    float *r = malloc((per ? per : 1) * sizeof *r);
    for (int64_t row = 0; row < t->shape[0]; row++) {
      CHECK_OK(af_tsrc_read_rows_f32(t, row, 1, r));
      CHECK_MSG(!memcmp(r, x + (uint64_t)row * per, per * sizeof *r), "%s: row %lld", t->name,
                (long long)row);
    }
    free(r);
  }
  /* f16 output: equals float->half of the f32 read */
  uint16_t *h = malloc((numel ? numel : 1) * 2);
  CHECK_OK(af_tsrc_read_f16(t, h));
  for (uint64_t i = 0; i < numel; i++) CHECK(h[i] == af_tsrc_float_to_half(x[i]));
  /* raw output in the source dtype converts back to the same values */
  size_t el = af_tsrc_dtype_size(t->dtype);
  uint8_t *raw = malloc((numel ? numel : 1) * el);
  CHECK_OK(af_tsrc_read_raw(t, raw));
  if (t->dtype == AF_TSRC_F16)
    for (uint64_t i = 0; i < numel; i++) {
      uint16_t v;
      memcpy(&v, raw + i * 2, 2);
      CHECK(af_tsrc_half_to_float(v) == x[i]);
    }
  if (t->contiguous && numel) CHECK(!memcmp(raw, af_tsrc_data(t), t->nbytes));
  free(raw);
  free(h);
  free(x);
}

static void check_file(const char *name, const cJSON *spec) {
  char path[1024];
  snprintf(path, sizeof path, "%s", af_test_data("torch/"));
  strncat(path, name, sizeof path - strlen(path) - 1);
  af_tsrc *src = NULL;
  CHECK_OK(af_tsrc_open(path, &src));
  if (!src) return;
  const cJSON *tensors = cJSON_GetObjectItem(spec, "tensors"), *it;
  CHECK_MSG(af_tsrc_count(src) == (size_t)cJSON_GetArraySize(tensors), "%s: %zu tensors, torch has %d", name,
            af_tsrc_count(src), cJSON_GetArraySize(tensors));
  cJSON_ArrayForEach(it, tensors) {
    const af_tsrc_tensor *t = af_tsrc_find(src, it->string);
    CHECK_MSG(t != NULL, "%s: tensor '%s' not found", name, it->string);
    if (t) check_tensor(t, it);
  }
  for (size_t i = 0; i < af_tsrc_count(src); i++)
    CHECK_MSG(cJSON_GetObjectItem(tensors, af_tsrc_get(src, i)->name) != NULL, "%s: extra tensor '%s'", name,
              af_tsrc_get(src, i)->name);
  af_tsrc_close(src);
  printf("  %-24s %d tensors ok\n", name, cJSON_GetArraySize(tensors));
}

/* The ArtGPT-4-like checkpoint: the automatic root is 'model'; the top level
 * (root "") also exposes the optimizer's tensors; other values are kept. */
static void check_training_ckpt(const cJSON *spec) {
  const char *path = af_test_data("torch/artgpt4_tiny_fp32.pth");
  af_tsrc *src = NULL;
  CHECK_OK(af_tsrc_open_root(path, "", &src));
  CHECK(af_tsrc_count(src) == (size_t)cJSON_GetObjectItem(spec, "all_tensors")->valuedouble);
  CHECK(af_tsrc_find(src, "model.llama_proj.weight") != NULL);
  CHECK(af_tsrc_find(src, "optimizer.state.0.exp_avg") != NULL);
  af_tsrc_close(src);
  CHECK(af_tsrc_open_root(path, "nope", &src) == AF_ERR_NOT_FOUND);
  af_error_clear();
  af_torch *ck = NULL;
  CHECK_OK(af_torch_open(path, &ck));
  const af_pk_value *root = af_torch_root(ck);
  CHECK(root && root->kind == AF_PK_DICT);
  const af_pk_value *ep = af_pk_dict_get(root, "epoch");
  CHECK(ep && ep->kind == AF_PK_INT && ep->u.i == 3);
  const af_pk_value *sc = af_pk_dict_get(af_pk_dict_get(root, "scaler"), "scale");
  CHECK(sc && sc->kind == AF_PK_FLOAT && sc->u.f == 65536.0);
  const af_pk_value *run = af_pk_dict_get(af_pk_dict_get(root, "config"), "run");
  const af_pk_value *betas = af_pk_dict_get(run, "betas");
  CHECK(betas && betas->kind == AF_PK_LIST && betas->u.seq.n == 2 && betas->u.seq.v[1]->u.f == 0.999);
  CHECK(af_pk_dict_get(run, "device") && af_pk_dict_get(run, "device")->kind == AF_PK_NONE);
  const af_pk_value *tmpl =
      af_pk_dict_get(af_pk_dict_get(af_pk_dict_get(root, "config"), "model"), "prompt_template");
  CHECK(tmpl && tmpl->kind == AF_PK_STR && !strcmp(tmpl->u.str.s, "###Human: {} ###Assistant: "));
  af_torch_close(ck);
  /* OrderedDict with _metadata: BUILD keeps it as attributes */
  CHECK_OK(af_torch_open(af_test_data("torch/ordered.pth"), &ck));
  root = af_torch_root(ck);
  CHECK(root && root->kind == AF_PK_DICT && root->u.dict.attrs && root->u.dict.attrs->kind == AF_PK_DICT);
  CHECK(af_pk_dict_get(root->u.dict.attrs, "_metadata") != NULL);
  af_torch_close(ck);
}

static void check_views(void) {
  af_tsrc *src = NULL;
  CHECK_OK(af_tsrc_open(af_test_data("torch/views.pth"), &src));
  const af_tsrc_tensor *t = af_tsrc_find(src, "transposed"), *e = af_tsrc_find(src, "expanded");
  CHECK(t && !t->contiguous && t->strides[0] == 1 && t->strides[1] == 4);
  CHECK(e && e->strides[0] == 0 && !e->contiguous);
  const af_tsrc_tensor *s = af_tsrc_find(src, "scalar");
  CHECK(s && s->ndim == 0 && s->numel == 1);
  af_tsrc_close(src);
}

static void check_config(const char *dir, const cJSON *cfg) {
  af_hfconfig c;
  CHECK_OK(af_hfconfig_load(af_test_data(dir), &c));
  CHECK(c.hidden_size == (int64_t)cJSON_GetObjectItem(cfg, "hidden_size")->valuedouble);
  CHECK(c.num_hidden_layers == 2 && c.num_attention_heads == 2 && c.intermediate_size == 12);
  CHECK(c.vocab_size == 11 && c.max_position_embeddings == 2048);
  CHECK(c.bos_token_id == 0 && c.eos_token_id == 1); /* the Vicuna v0 quirk, reported as written */
  CHECK(c.num_key_value_heads == -1 && c.rope_theta == 0);
  CHECK(fabs(c.rms_norm_eps - 1e-6) < 1e-12);
  CHECK(!strcmp(c.model_type, "llama") && !strcmp(c.architecture, "LlamaForCausalLM"));
  CHECK(!strcmp(c.torch_dtype, "float16") && c.tie_word_embeddings == 0);
  CHECK(af_hfconfig_parse("{\"hidden_size\": -3}", "x.json", &c) == AF_ERR_FORMAT);
  CHECK(strstr(af_error_message(), "x.json") && strstr(af_error_message(), "hidden_size"));
  af_error_clear();
  CHECK(af_hfconfig_parse("[1,2", "y.json", &c) == AF_ERR_FORMAT);
  af_error_clear();
}

int main(void) {
  char *text = af_test_slurp(af_test_data("torch/expected.json"), NULL);
  CHECK(text != NULL);
  cJSON *j = cJSON_Parse(text);
  CHECK(j != NULL);
  const cJSON *files = cJSON_GetObjectItem(j, "files"), *f;
  CHECK(cJSON_GetArraySize(files) >= 9);
  cJSON_ArrayForEach(f, files) check_file(f->string, f);
  check_training_ckpt(cJSON_GetObjectItem(files, "artgpt4_tiny_fp32.pth"));
  check_views();
  check_config("torch/hf_llama_bin",
               cJSON_GetObjectItem(cJSON_GetObjectItem(files, "hf_llama_bin"), "config"));
  cJSON_Delete(j);
  free(text);
  return af_test_done("test_torch_read");
}
