/* GGUF writer/reader round trip (every metadata type, every writable tensor
 * type, custom alignment) and hostile files: bad magic, every truncation,
 * lying tensor sizes/offsets, misaligned and overlapping tensors.
 * af_gguf_release: a mapped file's tensor leaves the resident set (RssFile
 * drops) and reads back the same bytes; on a file opened from a buffer, and
 * for a range outside the file, it does nothing (the buffer's bytes stay:
 * MADV_DONTNEED on anonymous memory would zero them). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "artflow/status.h"
#include "formats/gguf.h"
#include "formats/quant.h"

static char g_path[512];

static int write_sample(const char *path, uint32_t alignment) {
  af_gguf_writer *w;
  int rc = af_gguf_writer_new(&w);
  if (rc) return rc;
  static const int32_t i32s[] = {-5, 0, 7, 2147483647};
  static const float f32s[] = {1.5f, -2.25f};
  static const uint8_t bools[] = {1, 0, 1};
  static const double f64s[] = {3.141592653589793};
  static const char *strs[] = {"alpha", "", "\xe2\x96\x81the", "a\"b"};
  uint64_t ne_m[2] = {64, 3}, ne_v[1] = {5}, ne_4[4] = {32, 2, 1, 2};
  if (alignment != 32) rc = af_gguf_writer_set_u32(w, "general.alignment", alignment);
  if (!rc) rc = af_gguf_writer_set_u8(w, "t.u8", 200);
  if (!rc) rc = af_gguf_writer_set_i8(w, "t.i8", -100);
  if (!rc) rc = af_gguf_writer_set_u16(w, "t.u16", 60000);
  if (!rc) rc = af_gguf_writer_set_i16(w, "t.i16", -30000);
  if (!rc) rc = af_gguf_writer_set_u32(w, "t.u32", 4000000000u);
  if (!rc) rc = af_gguf_writer_set_i32(w, "t.i32", -2000000000);
  if (!rc) rc = af_gguf_writer_set_u64(w, "t.u64", 0xfedcba9876543210ull);
  if (!rc) rc = af_gguf_writer_set_i64(w, "t.i64", -1234567890123ll);
  if (!rc) rc = af_gguf_writer_set_f32(w, "t.f32", 0.1f);
  if (!rc) rc = af_gguf_writer_set_f64(w, "t.f64", 0.1);
  if (!rc) rc = af_gguf_writer_set_bool(w, "t.bool", true);
  if (!rc) rc = af_gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo");
  if (!rc) rc = af_gguf_writer_set_arr(w, "t.arr_i32", AF_GGUF_INT32, i32s, 4);
  if (!rc) rc = af_gguf_writer_set_arr(w, "t.arr_f32", AF_GGUF_FLOAT32, f32s, 2);
  if (!rc) rc = af_gguf_writer_set_arr(w, "t.arr_bool", AF_GGUF_BOOL, bools, 3);
  if (!rc) rc = af_gguf_writer_set_arr(w, "t.arr_f64", AF_GGUF_FLOAT64, f64s, 1);
  if (!rc) rc = af_gguf_writer_set_arr(w, "t.arr_empty", AF_GGUF_UINT8, NULL, 0);
  if (!rc) rc = af_gguf_writer_set_arr_str(w, "t.arr_str", strs, NULL, 4);
  CHECK(af_gguf_writer_set_u8(w, "t.u8", 1) == AF_ERR_INVALID); /* duplicate key */
  af_error_clear();
  if (!rc) rc = af_gguf_writer_add_tensor(w, "m.f32", AF_GGML_F32, 2, ne_m);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "m.f16", AF_GGML_F16, 2, ne_m);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "m.bf16", AF_GGML_BF16, 2, ne_m);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "m.q8_0", AF_GGML_Q8_0, 2, ne_m);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "m.q4_0", AF_GGML_Q4_0, 2, ne_m);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "v.odd", AF_GGML_F32, 1, ne_v);
  if (!rc) rc = af_gguf_writer_add_tensor(w, "x.4d", AF_GGML_F16, 4, ne_4);
  CHECK(af_gguf_writer_add_tensor(w, "bad.q8", AF_GGML_Q8_0, 1, ne_v) == AF_ERR_INVALID); /* 5 % 32 */
  af_error_clear();
  if (!rc) rc = af_gguf_writer_begin(w, path);
  float data[192];
  for (int i = 0; i < 192; i++) data[i] = sinf((float)i * 0.37f) * 3.0f;
  for (int t = 0; t < 5 && !rc; t++) {
    rc = af_gguf_writer_append_f32(w, data, 64); /* row by row */
    if (!rc) rc = af_gguf_writer_append_f32(w, data + 64, 128);
  }
  if (!rc) rc = af_gguf_writer_append_f32(w, data, 5);
  if (!rc) CHECK(af_gguf_writer_finish(w) == AF_ERR_INVALID); /* x.4d not written yet */
  af_error_clear();
  if (!rc) rc = af_gguf_writer_append_f32(w, data, 128);
  if (!rc) rc = af_gguf_writer_finish(w);
  af_gguf_writer_free(w);
  return rc;
}

static void check_sample(const char *path, uint32_t alignment) {
  af_gguf *g;
  CHECK_OK(af_gguf_open(path, &g));
  if (!g) return;
  CHECK(af_gguf_version(g) == 3);
  CHECK(af_gguf_alignment(g) == alignment);
  CHECK(af_gguf_data_offset(g) % alignment == 0);
  const af_gguf_value *v;
  CHECK((v = af_gguf_find(g, "t.u8")) && v->type == AF_GGUF_UINT8 && v->v.u == 200);
  CHECK((v = af_gguf_find(g, "t.i8")) && v->type == AF_GGUF_INT8 && v->v.i == -100);
  CHECK((v = af_gguf_find(g, "t.u16")) && v->type == AF_GGUF_UINT16 && v->v.u == 60000);
  CHECK((v = af_gguf_find(g, "t.i16")) && v->type == AF_GGUF_INT16 && v->v.i == -30000);
  CHECK((v = af_gguf_find(g, "t.u64")) && v->v.u == 0xfedcba9876543210ull);
  CHECK((v = af_gguf_find(g, "t.i64")) && v->v.i == -1234567890123ll);
  CHECK((v = af_gguf_find(g, "t.f64")) && v->type == AF_GGUF_FLOAT64 && v->v.f == 0.1);
  uint32_t u32;
  int32_t i32;
  float f;
  bool b;
  const char *s;
  CHECK_OK(af_gguf_get_u32(g, "t.u32", &u32));
  CHECK(u32 == 4000000000u);
  CHECK_OK(af_gguf_get_i32(g, "t.i32", &i32));
  CHECK(i32 == -2000000000);
  CHECK(af_gguf_get_i32(g, "t.u32", &i32) == AF_ERR_FORMAT); /* does not fit */
  CHECK(af_gguf_get_u32(g, "t.i8", &u32) == AF_ERR_FORMAT);  /* negative */
  CHECK(af_gguf_get_u32(g, "nope", &u32) == AF_ERR_NOT_FOUND);
  af_error_clear();
  CHECK_OK(af_gguf_get_f32(g, "t.f32", &f));
  CHECK(f == 0.1f);
  CHECK_OK(af_gguf_get_bool(g, "t.bool", &b));
  CHECK(b);
  CHECK_OK(af_gguf_get_str(g, "t.str", &s));
  CHECK(strcmp(s, "h\xc3\xa9llo") == 0);
  int32_t ia[4] = {0};
  uint64_t n = 4;
  CHECK_OK(af_gguf_get_arr_i32(g, "t.arr_i32", ia, &n));
  CHECK(n == 4 && ia[0] == -5 && ia[1] == 0 && ia[2] == 7 && ia[3] == 2147483647);
  float fa[2] = {0};
  n = 2;
  CHECK_OK(af_gguf_get_arr_f32(g, "t.arr_f32", fa, &n));
  CHECK(n == 2 && fa[0] == 1.5f && fa[1] == -2.25f);
  CHECK((v = af_gguf_find(g, "t.arr_bool")) && v->v.arr.type == AF_GGUF_BOOL && v->v.arr.n == 3 &&
        af_gguf_arr_num(v, 0) == 1.0 && af_gguf_arr_num(v, 1) == 0.0);
  CHECK((v = af_gguf_find(g, "t.arr_f64")) && af_gguf_arr_num(v, 0) == 3.141592653589793);
  CHECK((v = af_gguf_find(g, "t.arr_empty")) && v->v.arr.n == 0);
  const af_gguf_str *strs;
  CHECK_OK(af_gguf_get_arr_str(g, "t.arr_str", &strs, &n));
  CHECK(n == 4 && strcmp(strs[0].s, "alpha") == 0 && strs[1].len == 0 && strcmp(strs[3].s, "a\"b") == 0);

  float data[192], back[192];
  for (int i = 0; i < 192; i++) data[i] = sinf((float)i * 0.37f) * 3.0f;
  static const struct {
    const char *name;
    int type;
    double tol;
  } tt[] = {{"m.f32", AF_GGML_F32, 0},
            {"m.f16", AF_GGML_F16, 1e-3},
            {"m.bf16", AF_GGML_BF16, 8e-3},
            {"m.q8_0", AF_GGML_Q8_0, 1e-2},
            {"m.q4_0", AF_GGML_Q4_0, 0.12}};
  for (int i = 0; i < 5; i++) {
    const af_gguf_tensor *t = af_gguf_find_tensor(g, tt[i].name);
    CHECK(t && t->type == tt[i].type && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 3);
    if (!t) continue;
    CHECK(t->offset % alignment == 0);
    CHECK(((const uint8_t *)t->data - (const uint8_t *)af_gguf_tensor_at(g, 0)->data) % alignment == 0);
    CHECK_OK(af_convert_to_f32(t->type, t->data, back, 192));
    double e = af_nerr(back, data, 192);
    CHECK_MSG(e <= tt[i].tol, "%s nerr %g > %g", tt[i].name, e, tt[i].tol);
  }
  const af_gguf_tensor *t = af_gguf_find_tensor(g, "x.4d");
  CHECK(t && t->n_dims == 4 && t->n_elements == 128 && t->nbytes == 256);
  uint64_t want[2] = {64, 3}, wrong[2] = {3, 64};
  CHECK_OK(af_gguf_expect_tensor(g, "m.f32", 2, want, NULL));
  CHECK(af_gguf_expect_tensor(g, "m.f32", 2, wrong, NULL) == AF_ERR_MISMATCH);
  CHECK(strstr(af_error_message(), "m.f32") != NULL);
  af_error_clear();
  af_gguf_close(g);
}

static uint8_t *slurp(const char *path, size_t *n);

/* af_gguf_writer_set_value: every key of the sample copied, with its tensors,
 * gives the same file byte for byte (alignment key included) */
static void copy_file(const char *path) {
  char out[600];
  snprintf(out, sizeof out, "%s.copy", path);
  af_gguf *g = NULL;
  af_gguf_writer *w = NULL;
  CHECK_OK(af_gguf_open(path, &g));
  CHECK_OK(af_gguf_writer_new(&w));
  if (!g || !w) goto out;
  for (uint64_t i = 0; i < af_gguf_n_kv(g); i++)
    CHECK_OK(af_gguf_writer_set_value(w, af_gguf_kv_at(g, i)->key, &af_gguf_kv_at(g, i)->value));
  for (uint64_t i = 0; i < af_gguf_n_tensors(g); i++) {
    const af_gguf_tensor *t = af_gguf_tensor_at(g, i);
    CHECK_OK(af_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne));
  }
  CHECK_OK(af_gguf_writer_begin(w, out));
  for (uint64_t i = 0; i < af_gguf_n_tensors(g); i++)
    CHECK_OK(
        af_gguf_writer_append(w, af_gguf_tensor_at(g, i)->data, (size_t)af_gguf_tensor_at(g, i)->nbytes));
  CHECK_OK(af_gguf_writer_finish(w));
  size_t na = 0, nb = 0;
  uint8_t *a = slurp(path, &na), *b = slurp(out, &nb);
  CHECK_MSG(a && b && na == nb && !memcmp(a, b, na), "%s: the copy differs", out);
  free(a), free(b);
  /* a nested array cannot be copied */
  af_gguf_value nested = {.type = AF_GGUF_ARRAY};
  nested.v.arr.type = AF_GGUF_ARRAY;
  af_gguf_writer_free(w);
  w = NULL;
  CHECK_OK(af_gguf_writer_new(&w));
  CHECK(af_gguf_writer_set_value(w, "n", &nested) == AF_ERR_UNSUPPORTED);
  af_error_clear();
out:
  af_gguf_writer_free(w);
  af_gguf_close(g);
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(*n);
  if (b && fread(b, 1, *n, f) != *n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

/* Offset of the u64 "offset" field of the tensor info of `name`. */
static size_t info_field(const uint8_t *b, size_t n, const char *name) {
  size_t len = strlen(name);
  for (size_t i = 8; i + len < n; i++)
    if ((uint64_t)b[i - 8] == len && memcmp(b + i, name, len) == 0) {
      uint32_t nd = b[i + len];
      return i + len + 4 + 8 * nd + 4; /* name, n_dims, ne[], type -> offset */
    }
  return 0;
}

static int open_mem(uint8_t *b, size_t n, const char *expect) {
  af_gguf *g;
  af_error_clear();
  int rc = af_gguf_open_buffer(b, n, "hostile.gguf", &g);
  if (rc == 0) {
    af_gguf_close(g);
    return 0;
  }
  CHECK_MSG(strstr(af_error_message(), "hostile.gguf") != NULL, "message lacks the file: %s",
            af_error_message());
  if (expect)
    CHECK_MSG(strstr(af_error_message(), expect) != NULL, "'%s' lacks '%s'", af_error_message(), expect);
  af_error_clear();
  return rc;
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void hostile(const char *path) {
  size_t n;
  uint8_t *b = slurp(path, &n), *c = malloc(n);
  CHECK(b && c);
  if (!b || !c) return;
  /* every truncation fails cleanly (the data section ends exactly at n) */
  for (size_t k = 0; k < n; k += (k < 2048 ? 1 : 7)) {
    memcpy(c, b, k);
    CHECK_MSG(open_mem(c, k, NULL) != 0, "truncated at %zu accepted", k);
  }
  memcpy(c, b, n);
  c[0] = 'X';
  CHECK(open_mem(c, n, "bad magic") == AF_ERR_FORMAT);
  memcpy(c, b, n);
  c[4] = 9;
  CHECK(open_mem(c, n, "version") == AF_ERR_UNSUPPORTED);
  /* lying tensor size: claim more rows than the data holds */
  memcpy(c, b, n);
  size_t off = info_field(c, n, "x.4d");
  CHECK(off > 0);
  put64(c + off - 4 - 8, 1000); /* ne[3] of x.4d */
  CHECK(open_mem(c, n, "x.4d") == AF_ERR_FORMAT);
  /* offset past the end */
  memcpy(c, b, n);
  put64(c + off, (uint64_t)n * 4);
  CHECK(open_mem(c, n, "past the end") == AF_ERR_FORMAT);
  /* huge offset (overflow bait) */
  put64(c + off, UINT64_MAX - 31);
  CHECK(open_mem(c, n, "x.4d") == AF_ERR_FORMAT);
  /* misaligned offset */
  memcpy(c, b, n);
  size_t off2 = info_field(c, n, "m.f16");
  put64(c + off2, 3);
  CHECK(open_mem(c, n, "not aligned") == AF_ERR_FORMAT);
  /* overlapping tensors: m.f16 placed onto m.f32 */
  put64(c + off2, 0);
  CHECK(open_mem(c, n, "overlaps") == AF_ERR_FORMAT);
  /* absurd counts */
  memcpy(c, b, n);
  put64(c + 8, UINT64_MAX);
  CHECK(open_mem(c, n, "more than the file") == AF_ERR_FORMAT);
  /* a string length beyond the file */
  memcpy(c, b, n);
  put64(c + 24, (uint64_t)1 << 40);
  CHECK(open_mem(c, n, "truncated") == AF_ERR_FORMAT);
  /* missing file */
  af_gguf *g;
  CHECK(af_gguf_open("/nonexistent/x.gguf", &g) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "/nonexistent/x.gguf") != NULL);
  af_error_clear();
  free(b);
  free(c);
}

static double sum_floats(const float *p, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)p[i] * (double)((i % 7) + 1);
  return s;
}

static void release_pages(void) {
  enum { N = 4 << 20 }; /* 16 MiB of f32 */
  char path[600];
  snprintf(path, sizeof path, "%s/release.gguf", af_test_tmpdir());
  float *buf = malloc(sizeof(float) * N);
  for (size_t i = 0; i < N; i++) buf[i] = (float)(i % 1000) * 0.5f - 17.0f;
  double want = sum_floats(buf, N);
  af_gguf_writer *w;
  uint64_t ne[1] = {N};
  CHECK_OK(af_gguf_writer_new(&w));
  CHECK_OK(af_gguf_writer_add_tensor(w, "big", AF_GGML_F32, 1, ne));
  CHECK_OK(af_gguf_writer_begin(w, path));
  CHECK_OK(af_gguf_writer_append_f32(w, buf, N));
  CHECK_OK(af_gguf_writer_finish(w));
  af_gguf_writer_free(w);
  af_gguf *g = NULL;
  CHECK_OK(af_gguf_open(path, &g));
  const af_gguf_tensor *t = g ? af_gguf_find_tensor(g, "big") : NULL;
  CHECK(t != NULL);
  if (t) {
    CHECK(sum_floats(t->data, N) == want); /* every page touched */
    long before = af_test_rss_file_kib();
    af_gguf_release(g, t->data, t->nbytes);
    long after = af_test_rss_file_kib();
    printf("release: RssFile %ld -> %ld KiB for a 16 MiB tensor\n", before, after);
    if (before >= 0) CHECK_MSG(before - after >= 12 * 1024, "RssFile %ld -> %ld KiB", before, after);
    CHECK(sum_floats(t->data, N) == want); /* faulted back, same bytes */
    float outside[2048];
    for (int i = 0; i < 2048; i++) outside[i] = (float)i;
    af_gguf_release(g, outside, sizeof outside); /* not in the file: nothing happens */
    CHECK(outside[2047] == 2047.0f);
    af_gguf_release_all(g);
    CHECK(sum_floats(t->data, N) == want);
  }
  af_gguf_close(g);
  /* the same file in memory: release must leave the buffer alone */
  size_t size = 0;
  char *mem = af_test_slurp(path, &size);
  CHECK(mem != NULL);
  if (mem) {
    CHECK_OK(af_gguf_open_buffer(mem, size, "release-buffer", &g));
    t = g ? af_gguf_find_tensor(g, "big") : NULL;
    CHECK(t != NULL);
    if (t) {
      af_gguf_release(g, t->data, t->nbytes);
      af_gguf_release_all(g);
      CHECK(sum_floats(t->data, N) == want);
    }
    af_gguf_close(g);
    free(mem);
  }
  af_gguf_release(NULL, buf, 16); /* NULL-safe */
  remove(path);
  free(buf);
}

int main(void) {
  snprintf(g_path, sizeof g_path, "%s/a32.gguf", af_test_tmpdir());
  CHECK_OK(write_sample(g_path, 32));
  check_sample(g_path, 32);
  hostile(g_path);
  release_pages();
  snprintf(g_path, sizeof g_path, "%s/a256.gguf", af_test_tmpdir());
  CHECK_OK(write_sample(g_path, 256));
  check_sample(g_path, 256);
  copy_file(g_path);
  /* writer refuses a non-power-of-two alignment; an unfinished writer leaves no file */
  af_gguf_writer *w;
  CHECK_OK(af_gguf_writer_new(&w));
  CHECK(af_gguf_writer_set_u32(w, "general.alignment", 48) == AF_ERR_INVALID);
  af_error_clear();
  uint64_t ne[1] = {4};
  CHECK_OK(af_gguf_writer_add_tensor(w, "a", AF_GGML_F32, 1, ne));
  snprintf(g_path, sizeof g_path, "%s/partial.gguf", af_test_tmpdir());
  CHECK_OK(af_gguf_writer_begin(w, g_path));
  af_gguf_writer_free(w);
  FILE *f = fopen(g_path, "rb");
  CHECK(f == NULL);
  if (f) fclose(f);
  return af_test_done("test_gguf_rw");
}
