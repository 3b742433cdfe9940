/* Hugging Face config.json reader (see hfconfig.h). */
#include "formats/hfconfig.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artflow/status.h"

#define MAX_CONFIG_BYTES (4u << 20)

static int get_int(const cJSON *o, const char *key, const char *label, int64_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  *out = -1;
  if (!v || cJSON_IsNull(v)) return 0;
  /* eos_token_id may be a list in newer configs: take the first */
  if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) v = cJSON_GetArrayItem(v, 0);
  /* special ids may be -1 ("none"); sizes must be positive */
  int is_id = strstr(key, "token_id") != NULL;
  if (!cJSON_IsNumber(v) || v->valuedouble < (is_id ? -1 : 1) || v->valuedouble > 1e15 ||
      v->valuedouble != (double)(int64_t)v->valuedouble)
    return af_err(AF_ERR_FORMAT, "%s: \"%s\" is not a %s integer", label, key,
                  is_id ? "token id (>= -1)" : "positive");
  *out = (int64_t)v->valuedouble;
  return 0;
}

static int get_float(const cJSON *o, const char *key, const char *label, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  *out = 0;
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0))
    return af_err(AF_ERR_FORMAT, "%s: \"%s\" is not a non-negative number", label, key);
  *out = v->valuedouble;
  return 0;
}

static void get_str(const cJSON *v, char *dst, size_t cap) {
  dst[0] = 0;
  if (cJSON_IsString(v)) snprintf(dst, cap, "%s", v->valuestring);
}

int af_hfconfig_parse(const char *json, const char *label, af_hfconfig *out) {
  if (!json || !out) return af_err(AF_ERR_INVALID, "af_hfconfig_parse: bad arguments");
  if (!label) label = "config.json";
  memset(out, 0, sizeof *out);
  cJSON *j = cJSON_Parse(json);
  int rc = 0;
  if (!cJSON_IsObject(j)) {
    rc = af_err(AF_ERR_FORMAT, "%s: not a JSON object", label);
    goto out;
  }
  get_str(cJSON_GetObjectItemCaseSensitive(j, "model_type"), out->model_type, sizeof out->model_type);
  get_str(cJSON_GetObjectItemCaseSensitive(j, "torch_dtype"), out->torch_dtype, sizeof out->torch_dtype);
  get_str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "architectures"), 0), out->architecture,
          sizeof out->architecture);
  struct {
    const char *k;
    int64_t *v;
  } ints[] = {
      {"hidden_size", &out->hidden_size},
      {"num_hidden_layers", &out->num_hidden_layers},
      {"num_attention_heads", &out->num_attention_heads},
      {"num_key_value_heads", &out->num_key_value_heads},
      {"intermediate_size", &out->intermediate_size},
      {"vocab_size", &out->vocab_size},
      {"max_position_embeddings", &out->max_position_embeddings},
      {"bos_token_id", &out->bos_token_id},
      {"eos_token_id", &out->eos_token_id},
      {"pad_token_id", &out->pad_token_id},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++)
    rc = get_int(j, ints[i].k, label, ints[i].v);
  if (!rc) rc = get_float(j, "rms_norm_eps", label, &out->rms_norm_eps);
  if (!rc) rc = get_float(j, "rope_theta", label, &out->rope_theta);
  const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
  out->tie_word_embeddings = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : -1;
out:
  cJSON_Delete(j);
  return rc;
}

int af_hfconfig_load(const char *path, af_hfconfig *out) {
  if (!path || !out) return af_err(AF_ERR_INVALID, "af_hfconfig_load: bad arguments");
  char buf[4096];
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    if ((size_t)snprintf(buf, sizeof buf, "%s/config.json", path) >= sizeof buf)
      return af_err(AF_ERR_INVALID, "%s: path too long", path);
    path = buf;
  }
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
  char *text = malloc(MAX_CONFIG_BYTES + 1);
  size_t n = text ? fread(text, 1, MAX_CONFIG_BYTES + 1, f) : 0;
  fclose(f);
  if (!text) return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  int rc;
  if (n > MAX_CONFIG_BYTES)
    rc = af_err(AF_ERR_FORMAT, "%s: larger than %u bytes", path, MAX_CONFIG_BYTES);
  else {
    text[n] = 0;
    rc = af_hfconfig_parse(text, path, out);
  }
  free(text);
  return rc;
}
