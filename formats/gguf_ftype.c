/* general.file_type: llama.cpp's file-type enum (llama_ftype: 0 ALL_F32,
 * 1 MOSTLY_F16, 2 MOSTLY_Q4_0, 7 MOSTLY_Q8_0, 32 MOSTLY_BF16, ...), which is
 * what gguf-py and llama.cpp read there.  artflow files of format "1" stored
 * the ggml *tensor* type id instead (q8_0 = 8, which those tools read as
 * MOSTLY_Q5_0); format "2" files store the enum.  af_gguf_weight_type reads
 * either right, so files converted before keep their meaning. */
#include <string.h>

#include "formats/gguf.h"

/* llama_ftype values for the tensor types artflow writes */
static const struct {
  int ggml, ftype;
} map[] = {
    {AF_GGML_F32, 0},  {AF_GGML_F16, 1},  {AF_GGML_Q4_0, 2}, {AF_GGML_Q4_1, 3},
    {AF_GGML_Q8_0, 7}, {AF_GGML_Q5_0, 8}, {AF_GGML_Q5_1, 9}, {AF_GGML_BF16, 32},
};

int af_llama_ftype_from_ggml(int ggml_type) {
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (map[i].ggml == ggml_type) return map[i].ftype;
  return -1;
}

int af_ggml_from_llama_ftype(int ftype) {
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (map[i].ftype == ftype) return map[i].ggml;
  return -1;
}

const char *af_gguf_weight_type(const af_gguf *g) {
  uint32_t ft;
  const char *fmt = NULL;
  if (af_gguf_get_u32(g, "general.file_type", &ft)) return NULL;
  int old = !af_gguf_get_str(g, "artflow.format", &fmt) && fmt && !strcmp(fmt, "1");
  return af_ggml_type_name(old ? (int)ft : af_ggml_from_llama_ftype((int)ft));
}
