/* `artflow inspect MODEL.gguf`: metadata, tensor table and totals (inspect.h). */
#include "convert/inspect.h"

#include <inttypes.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/gguf.h"

static const char *vtype_name(af_gguf_vtype t) {
  static const char *n[] = {"u8",   "i8",  "u16", "i16", "u32", "i32", "f32",
                            "bool", "str", "arr", "u64", "i64", "f64"};
  return (unsigned)t < sizeof n / sizeof n[0] ? n[t] : "?";
}

/* Prints a string with control bytes escaped, cut at `max` bytes. */
static void put_str(FILE *out, const af_gguf_str *s, size_t max) {
  fputc('"', out);
  for (uint64_t i = 0; i < s->len && i < max; i++) {
    unsigned char c = (unsigned char)s->s[i];
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      fprintf(out, "\\x%02x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
  if (s->len > max) fprintf(out, "...(%" PRIu64 " bytes)", s->len);
}

static void put_scalar(FILE *out, const af_gguf_value *v) {
  switch (v->type) {
    case AF_GGUF_UINT8:
    case AF_GGUF_UINT16:
    case AF_GGUF_UINT32:
    case AF_GGUF_UINT64:
      fprintf(out, "%" PRIu64, v->v.u);
      break;
    case AF_GGUF_INT8:
    case AF_GGUF_INT16:
    case AF_GGUF_INT32:
    case AF_GGUF_INT64:
      fprintf(out, "%" PRId64, v->v.i);
      break;
    case AF_GGUF_FLOAT32:
      fprintf(out, "%.7g", v->v.f);
      break;
    case AF_GGUF_FLOAT64:
      fprintf(out, "%.15g", v->v.f);
      break;
    case AF_GGUF_BOOL:
      fputs(v->v.b ? "true" : "false", out);
      break;
    case AF_GGUF_STRING:
      put_str(out, &v->v.str, 160);
      break;
    default:
      break;
  }
}

static void put_value(FILE *out, const af_gguf_value *v) {
  if (v->type != AF_GGUF_ARRAY) {
    put_scalar(out, v);
    return;
  }
  uint64_t n = v->v.arr.n, show = n < 8 ? n : 8;
  fprintf(out, "[%s x %" PRIu64 "]", vtype_name(v->v.arr.type), n);
  if (n) fputs(" ", out);
  for (uint64_t i = 0; i < show; i++) {
    if (i) fputs(", ", out);
    if (v->v.arr.type == AF_GGUF_STRING)
      put_str(out, &v->v.arr.strs[i], 40);
    else if (v->v.arr.type == AF_GGUF_ARRAY)
      fprintf(out, "[%" PRIu64 " items]", v->v.arr.items[i].v.arr.n);
    else
      fprintf(out, "%.7g", af_gguf_arr_num(v, i));
  }
  if (show < n) fputs(", ...", out);
}

static void flag_key(void *user, const char *key, const char *why) {
  fprintf((FILE *)user, "  FLAGGED %s: %s\n", key, why);
}

int af_model_inspect_print(const char *path, FILE *out) {
  af_gguf *g;
  int rc = af_gguf_open(path, &g);
  if (rc) return rc;
  fprintf(out, "file: %s\n", path);
  fprintf(out, "format: GGUF v%u, alignment %" PRIu64 ", %" PRIu64 " bytes, data at %" PRIu64 "\n",
          af_gguf_version(g), af_gguf_alignment(g), af_gguf_file_size(g), af_gguf_data_offset(g));
  fprintf(out, "\nmetadata (%" PRIu64 " keys):\n", af_gguf_n_kv(g));
  for (uint64_t i = 0; i < af_gguf_n_kv(g); i++) {
    const af_gguf_kv *kv = af_gguf_kv_at(g, i);
    fprintf(out, "  %-44s %-4s ", kv->key, vtype_name(kv->value.type));
    put_value(out, &kv->value);
    fputc('\n', out);
  }
  uint64_t total = 0, elems = 0, by_type_bytes[32] = {0}, by_type_n[32] = {0};
  fprintf(out, "\ntensors (%" PRIu64 "):\n  %-40s %-6s %-26s %14s\n", af_gguf_n_tensors(g), "name", "type",
          "shape (ggml order)", "bytes");
  for (uint64_t i = 0; i < af_gguf_n_tensors(g); i++) {
    const af_gguf_tensor *t = af_gguf_tensor_at(g, i);
    char shape[96] = "";
    for (uint32_t d = 0; d < t->n_dims; d++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%" PRIu64, d ? " x " : "", t->ne[d]);
    fprintf(out, "  %-40s %-6s %-26s %14" PRIu64 "\n", t->name, af_ggml_type_name(t->type), shape, t->nbytes);
    total += t->nbytes;
    elems += t->n_elements;
    if (t->type >= 0 && t->type < 32) by_type_bytes[t->type] += t->nbytes, by_type_n[t->type]++;
  }
  fprintf(out,
          "\ntotals: %" PRIu64 " tensors, %" PRIu64 " parameters (%.3f G), %" PRIu64 " bytes (%.3f GiB)\n",
          af_gguf_n_tensors(g), elems, (double)elems / 1e9, total, (double)total / (1024.0 * 1024 * 1024));
  for (int ty = 0; ty < 32; ty++)
    if (by_type_n[ty])
      fprintf(out, "  %-5s %6" PRIu64 " tensors %16" PRIu64 " bytes\n", af_ggml_type_name(ty), by_type_n[ty],
              by_type_bytes[ty]);
  /* metadata that parses but cannot be right: what the model readers refuse */
  fprintf(out, "\nchecks:\n");
  int bad = af_gguf_check_meaning(g, flag_key, out);
  if (!bad) fprintf(out, "  ok: no metadata key contradicts the model's shape\n");
  rc = bad ? af_err(AF_ERR_FORMAT, "%s: %d metadata key%s cannot be right (flagged above); loading it fails",
                    path, bad, bad == 1 ? "" : "s")
           : 0;
  af_gguf_close(g);
  return rc;
}
