/* What other GGUF tools read in artflow's files, on every run: the files
 * tests/data/gguf/gguf_py_view.py read with PyPI's `gguf` reader (gguf-py,
 * the reader llama.cpp ships) are written again here (convert of the tiny
 * release set at f16 and q8_0, mkmodel of tiny-test at q4_0, export
 * --llm-only of both conversions), and artflow's reader must see what
 * gguf-py saw then (tests/data/gguf/gguf-py-view.json): every key with its
 * value type and value (arrays: element type, length, SHA-256 of the
 * serialised elements), every tensor's name, shape and size in order, the
 * type of every LLM tensor, and for the exports every tensor's bytes.  The
 * invariants the script asserted are checked again on the fresh files:
 * general.file_type is llama.cpp's enum of the --type, clip.vision.* equal
 * vision.*, an export is general.architecture "llama" without artflow's
 * RoPE layout key.  (The vision/Q-Former storage types are conversion
 * policy, pinned by test_gguf_convert; what other tools need is the LLM.) */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "af_test.h"
#include "artflow/status.h"
#include "convert/arch.h"
#include "convert/export.h"
#include "convert/mkmodel.h"
#include "core/iofile.h"
#include "formats/gguf.h"

static const char *const k_vtype[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                      "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};

static size_t elem_size(af_gguf_vtype t) {
  static const size_t s[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  return (unsigned)t < sizeof s / sizeof *s ? s[t] : 0;
}

/* SHA-256 of an array's elements as the file serialises them (strings:
 * u64 length + bytes), as the script hashes them */
static void arr_sha(const af_gguf_value *v, char hex[65]) {
  af_buf b = {0};
  for (uint64_t i = 0; i < v->v.arr.n; i++) {
    if (v->v.arr.type == AF_GGUF_STRING) {
      uint64_t n = v->v.arr.strs[i].len;
      unsigned char le[8];
      for (int k = 0; k < 8; k++) le[k] = (unsigned char)(n >> (8 * k));
      af_buf_put(&b, (const char *)le, 8);
      af_buf_put(&b, v->v.arr.strs[i].s, (size_t)n);
    }
  }
  if (v->v.arr.type == AF_GGUF_STRING)
    af_sha256_hex(b.p ? b.p : "", b.n, hex);
  else
    af_sha256_hex(v->v.arr.raw, (size_t)(v->v.arr.n * elem_size(v->v.arr.type)), hex);
  af_buf_free(&b);
}

static void check_scalar(const char *file, const char *key, const af_gguf_value *v, const cJSON *want) {
  switch (v->type) {
    case AF_GGUF_STRING:
      CHECK_MSG(cJSON_IsString(want) && strlen(want->valuestring) == v->v.str.len &&
                    !memcmp(want->valuestring, v->v.str.s, (size_t)v->v.str.len),
                "%s: %s = '%s'", file, key, v->v.str.s);
      break;
    case AF_GGUF_BOOL:
      CHECK_MSG(cJSON_IsBool(want) && cJSON_IsTrue(want) == v->v.b, "%s: %s", file, key);
      break;
    case AF_GGUF_FLOAT32:
    case AF_GGUF_FLOAT64:
      CHECK_MSG(cJSON_IsNumber(want) && want->valuedouble == v->v.f, "%s: %s = %.9g", file, key, v->v.f);
      break;
    case AF_GGUF_INT8:
    case AF_GGUF_INT16:
    case AF_GGUF_INT32:
    case AF_GGUF_INT64:
      CHECK_MSG(cJSON_IsNumber(want) && want->valuedouble == (double)v->v.i, "%s: %s = %lld", file, key,
                (long long)v->v.i);
      break;
    default:
      CHECK_MSG(cJSON_IsNumber(want) && want->valuedouble == (double)v->v.u, "%s: %s = %llu", file, key,
                (unsigned long long)v->v.u);
  }
}

static void check_kv(const af_gguf *g, const char *file, const cJSON *kv) {
  CHECK_MSG((uint64_t)cJSON_GetArraySize(kv) == af_gguf_n_kv(g), "%s: %d keys seen by gguf-py, %llu now",
            file, cJSON_GetArraySize(kv), (unsigned long long)af_gguf_n_kv(g));
  for (uint64_t i = 0; i < af_gguf_n_kv(g); i++) {
    const af_gguf_kv *k = af_gguf_kv_at(g, i);
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(kv, k->key);
    CHECK_MSG(want, "%s: key %s was not there when gguf-py read the file", file, k->key);
    if (!want) continue;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(want, "type"));
    CHECK_MSG(type && !strcmp(type, k_vtype[k->value.type]), "%s: %s is %s, gguf-py read %s", file, k->key,
              k_vtype[k->value.type], type ? type : "?");
    if (k->value.type != AF_GGUF_ARRAY) {
      check_scalar(file, k->key, &k->value, cJSON_GetObjectItemCaseSensitive(want, "value"));
      continue;
    }
    const char *elem = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(want, "elem"));
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(want, "n");
    CHECK_MSG(elem && !strcmp(elem, k_vtype[k->value.v.arr.type]), "%s: %s elements", file, k->key);
    CHECK_MSG(cJSON_IsNumber(n) && n->valuedouble == (double)k->value.v.arr.n, "%s: %s length", file, k->key);
    char hex[65];
    arr_sha(&k->value, hex);
    const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(want, "sha256"));
    CHECK_MSG(sha && !strcmp(sha, hex), "%s: %s elements differ from what gguf-py read", file, k->key);
  }
}

static int is_llm(const char *name) {
  return !strncmp(name, "token_embd.", 11) || !strncmp(name, "blk.", 4) || !strncmp(name, "output", 6);
}

static void check_tensors(const af_gguf *g, const char *file, const cJSON *ts, int bytes) {
  CHECK_MSG((uint64_t)cJSON_GetArraySize(ts) == af_gguf_n_tensors(g), "%s: tensor count", file);
  for (uint64_t i = 0; i < af_gguf_n_tensors(g) && (int)i < cJSON_GetArraySize(ts); i++) {
    const af_gguf_tensor *t = af_gguf_tensor_at(g, i);
    const cJSON *w = cJSON_GetArrayItem(ts, (int)i);
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "name"));
    CHECK_MSG(name && !strcmp(name, t->name), "%s: tensor %llu is %s, gguf-py read %s", file,
              (unsigned long long)i, t->name, name ? name : "?");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(w, "shape");
    int same = cJSON_GetArraySize(shape) == (int)t->n_dims;
    for (uint32_t d = 0; same && d < t->n_dims; d++)
      same = cJSON_GetArrayItem(shape, (int)d)->valuedouble == t->ne[d];
    CHECK_MSG(same, "%s: %s shape", file, t->name);
    CHECK_MSG(cJSON_GetObjectItemCaseSensitive(w, "n_bytes")->valuedouble == (double)t->nbytes,
              "%s: %s bytes", file, t->name);
    if (bytes || is_llm(t->name))
      CHECK_MSG(cJSON_GetObjectItemCaseSensitive(w, "type_id")->valuedouble == t->type,
                "%s: %s is %s, gguf-py read %s", file, t->name, af_ggml_type_name(t->type),
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "type")));
    const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "sha256"));
    if (bytes) {
      char hex[65];
      af_sha256_hex(t->data, (size_t)t->nbytes, hex);
      CHECK_MSG(sha && !strcmp(sha, hex), "%s: %s bytes differ from the file gguf-py read", file, t->name);
    }
  }
}

/* the facts the script asserted with gguf-py, on the fresh file */
static void invariants(const af_gguf *g, const char *file, int type, int exported) {
  uint32_t ft = 99;
  const char *arch = NULL;
  CHECK_OK(af_gguf_get_u32(g, "general.file_type", &ft));
  CHECK_MSG(af_ggml_from_llama_ftype((int)ft) == type, "%s: general.file_type %u", file, ft);
  CHECK_OK(af_gguf_get_str(g, "general.architecture", &arch));
  const char *s;
  if (exported) {
    CHECK(arch && !strcmp(arch, "llama"));
    CHECK(af_gguf_get_str(g, "artflow.rope_layout", &s) == AF_ERR_NOT_FOUND);
    CHECK(!af_gguf_find(g, "vision.image_size") && !af_gguf_find_tensor(g, "blk.0.adapter_up.weight"));
    return;
  }
  CHECK(arch && (!strcmp(arch, "artgpt4") || !strcmp(arch, "minigpt4")));
  static const char *const pairs[][2] = {
      {"clip.vision.image_size", "vision.image_size"},
      {"clip.vision.patch_size", "vision.patch_size"},
      {"clip.vision.embedding_length", "vision.embedding_length"},
      {"clip.vision.feed_forward_length", "vision.feed_forward_length"},
      {"clip.vision.block_count", "vision.block_count"},
      {"clip.vision.attention.head_count", "vision.head_count"},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
    uint32_t a = 0, b = 1;
    CHECK_OK(af_gguf_get_u32(g, pairs[i][0], &a));
    CHECK_OK(af_gguf_get_u32(g, pairs[i][1], &b));
    CHECK_MSG(a == b, "%s: %s", file, pairs[i][0]);
  }
  float e1 = 0, e2 = 1;
  CHECK_OK(af_gguf_get_f32(g, "clip.vision.attention.layer_norm_epsilon", &e1));
  CHECK_OK(af_gguf_get_f32(g, "vision.attention.layer_norm_epsilon", &e2));
  CHECK(e1 == e2);
}

static void compare(const cJSON *files, const char *dir, const char *name, int type, int exported) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(files, name);
  CHECK_MSG(f, "gguf-py-view.json has no %s", name);
  af_gguf *g = NULL;
  CHECK_OK(af_gguf_open(path, &g));
  if (!f || !g) return;
  check_kv(g, name, cJSON_GetObjectItemCaseSensitive(f, "kv"));
  check_tensors(g, name, cJSON_GetObjectItemCaseSensitive(f, "tensors"), exported);
  invariants(g, name, type, exported);
  af_gguf_close(g);
}

static int export_to(const char *dir, const char *model, const char *out) {
  char m[1200], o[1200];
  snprintf(m, sizeof m, "%s/%s", dir, model);
  snprintf(o, sizeof o, "%s/%s", dir, out);
  af_export_opts e = {.model = m, .out = o};
  return af_export_llm(&e);
}

int main(void) {
  const char *dir = af_test_tmpdir();
  char *text = af_test_slurp(af_test_data("gguf/gguf-py-view.json"), NULL);
  cJSON *view = text ? cJSON_Parse(text) : NULL;
  CHECK(view != NULL);
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(view, "files");
  char p[1200], q[1200], arch_path[1200];
  /* the files the script made, made again with the same settings */
  CHECK_OK(af_test_convert_tiny(dir, AF_GGML_F16, p, sizeof p));
  snprintf(q, sizeof q, "%s/artgpt4-tiny-f16.gguf", dir);
  CHECK(rename(p, q) == 0);
  CHECK_OK(af_test_convert_tiny(dir, AF_GGML_Q8_0, p, sizeof p));
  snprintf(q, sizeof q, "%s/artgpt4-tiny-q8_0.gguf", dir);
  CHECK(rename(p, q) == 0);
  snprintf(arch_path, sizeof arch_path, "%s/config/models/tiny-test.yaml", AF_SOURCE_DIR);
  af_arch a;
  CHECK_OK(af_arch_load(arch_path, &a));
  af_mkmodel_opts mo = {.seed = 7, .type = AF_GGML_Q4_0};
  snprintf(q, sizeof q, "%s/tiny-test-q4_0.gguf", dir);
  CHECK_OK(af_mkmodel(&a, arch_path, &mo, q));
  CHECK_OK(export_to(dir, "artgpt4-tiny-f16.gguf", "export-f16.gguf"));
  CHECK_OK(export_to(dir, "artgpt4-tiny-q8_0.gguf", "export-q8_0.gguf"));

  compare(files, dir, "artgpt4-tiny-f16.gguf", AF_GGML_F16, 0);
  compare(files, dir, "artgpt4-tiny-q8_0.gguf", AF_GGML_Q8_0, 0);
  compare(files, dir, "tiny-test-q4_0.gguf", AF_GGML_Q4_0, 0);
  compare(files, dir, "export-f16.gguf", AF_GGML_F16, 1);
  compare(files, dir, "export-q8_0.gguf", AF_GGML_Q8_0, 1);
  cJSON_Delete(view);
  free(text);
  return af_test_done("test_gguf_py_view");
}
