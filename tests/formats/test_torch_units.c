/* Unit checks of the model-file readers on hand-written inputs: half/bf16
 * conversions (exhaustive), pickle opcodes and limits, zip edge cases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "artflow/status.h"
#include "formats/pickle.h"
#include "formats/safetensors.h"
#include "formats/tensorsrc.h"
#include "formats/torch.h"
#include "formats/zip.h"

static void test_half(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) { /* every half survives half->float->half */
    float f = af_tsrc_half_to_float((uint16_t)h);
    uint16_t back = af_tsrc_float_to_half(f);
    if (isnan(f) ? (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h) bad++;
  }
  CHECK_MSG(bad == 0, "%d halves do not round-trip", bad);
  CHECK(af_tsrc_half_to_float(0x3c00) == 1.0f && af_tsrc_half_to_float(0xc000) == -2.0f);
  CHECK(af_tsrc_half_to_float(0x0001) == ldexpf(1, -24) && af_tsrc_half_to_float(0x7bff) == 65504.0f);
  /* rounding: nearest, ties to even, overflow to inf; checked against the neighbours */
  af_rng r;
  af_rng_seed(&r, 7);
  bad = 0;
  for (int i = 0; i < 200000; i++) {
    uint32_t bits = af_rng_u32(&r) & 0x47ffffffu; /* |x| < 2^16 or so, both signs */
    bits |= af_rng_u32(&r) & 0x80000000u;
    float f;
    memcpy(&f, &bits, 4);
    uint16_t h = af_tsrc_float_to_half(f);
    if ((h & 0x7c00) == 0x7c00) {
      if (fabsf(f) < 65520.0f) bad++;
      continue;
    }
    double d = fabs((double)af_tsrc_half_to_float(h) - f);
    double up = fabs((double)af_tsrc_half_to_float((uint16_t)(h + 1)) - f);
    double dn = (h & 0x7fff) ? fabs((double)af_tsrc_half_to_float((uint16_t)(h - 1)) - f) : INFINITY;
    if (d > up || d > dn || ((d == up || d == dn) && (h & 1))) bad++;
  }
  CHECK_MSG(bad == 0, "%d floats rounded wrongly", bad);
  CHECK(af_tsrc_float_to_half(65520.0f) == 0x7c00 && af_tsrc_float_to_half(65519.0f) == 0x7bff);
  CHECK(af_tsrc_bf16_to_float(0x3f80) == 1.0f);
}

static int load(const char *bytes, size_t n, af_pickle **pk) {
  af_error_clear();
  return af_pickle_load((const uint8_t *)bytes, n, "t.pkl", pk);
}
#define PK(s) load(s, sizeof(s) - 1, &pk)

static void test_pickle(void) {
  af_pickle *pk = NULL;
  /* {'a': [1, -2, 300, 70000, 2**40, -(2**40), 1.5, True, None, 'x', b'yz'], 'b': <memo of a>} */
  CHECK_OK(
      PK("\x80\x02}q\x00(X\x01\x00\x00\x00"
         "a]q\x01(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00"
         "\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\xff"
         "G\x3f\xf8\x00\x00\x00\x00\x00\x00\x88N\x8c\x01xC\x02yze\x8c\x01"
         "bh\x01u."));
  const af_pk_value *root = af_pickle_root(pk), *a = af_pk_dict_get(root, "a");
  CHECK(a && a->kind == AF_PK_LIST && a->u.seq.n == 11);
  if (a && a->u.seq.n == 11) {
    CHECK(a->u.seq.v[0]->u.i == 1 && a->u.seq.v[1]->u.i == -2 && a->u.seq.v[2]->u.i == 300);
    CHECK(a->u.seq.v[3]->u.i == 70000 && a->u.seq.v[4]->u.i == (int64_t)1 << 40);
    CHECK(a->u.seq.v[5]->u.i == -((int64_t)1 << 40) && a->u.seq.v[6]->u.f == 1.5);
    CHECK(a->u.seq.v[7]->kind == AF_PK_BOOL && a->u.seq.v[8]->kind == AF_PK_NONE);
    CHECK(!strcmp(a->u.seq.v[9]->u.str.s, "x") && a->u.seq.v[10]->kind == AF_PK_BYTES);
  }
  CHECK(af_pk_dict_get(root, "b") == a);
  af_pickle_free(pk);
  /* refused globals, by name, even when never called */
  CHECK(PK("\x80\x02\x63posix\nsystem\n.") == AF_ERR_UNSUPPORTED);
  CHECK(strstr(af_error_message(), "refusing to load global 'posix.system'"));
  CHECK(PK("\x80\x02\x63__builtin__\neval\n.") == AF_ERR_UNSUPPORTED);
  CHECK(strstr(af_error_message(), "'builtins.eval'"));
  CHECK(PK("\x80\x02\x63torch\nload\n.") == AF_ERR_UNSUPPORTED);
  /* malformed programs */
  CHECK(PK("\x80\x02}") == AF_ERR_FORMAT); /* no STOP */
  CHECK(strstr(af_error_message(), "t.pkl"));
  CHECK(PK("\x80\x02.") == AF_ERR_FORMAT);        /* STOP on empty stack */
  CHECK(PK("\x80\x02(K\x01u.") == AF_ERR_FORMAT); /* SETITEMS without a dict */
  CHECK(PK("\x80\x02h\x05.") == AF_ERR_FORMAT);   /* memo never stored */
  CHECK(PK("\x80\x02X\xff\xff\xff\x7f"
           "abc.") == AF_ERR_FORMAT);                       /* string past the end */
  CHECK(PK("\x80\x02K\x01K\x02R.") == AF_ERR_FORMAT);       /* calling an int */
  CHECK(PK("\x80\x02\xff.") == AF_ERR_UNSUPPORTED);         /* unknown opcode */
  CHECK(PK("\x80\x02(K\x01.") == AF_ERR_FORMAT);            /* STOP inside MARK: underflow */
  CHECK(PK("\x80\x02r\xff\xff\xff\xff.") == AF_ERR_FORMAT); /* memo index too large */
  CHECK(PK("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.") == AF_ERR_UNSUPPORTED);
  /* a list containing itself: loads; flattening must stop (depth bound) */
  CHECK_OK(
      PK("\x80\x02]q\x00h\x00"
         "a."));
  af_pickle_free(pk);
  /* deep MARK nesting is bounded */
  size_t n = 10000;
  char *deep = malloc(n + 3);
  memcpy(deep, "\x80\x02", 2);
  memset(deep + 2, '(', n - 2);
  deep[n] = '.';
  CHECK(load(deep, n + 1, &pk) == AF_ERR_FORMAT);
  free(deep);
  af_error_clear();
}

static void test_zip(void) {
  af_zip *z = NULL;
  CHECK(af_zip_open_mem("PK", 2, "tiny.zip", &z) == AF_ERR_FORMAT);
  CHECK(strstr(af_error_message(), "tiny.zip"));
  af_error_clear();
  /* an empty archive: just an EOCD */
  static const uint8_t empty[22] = {0x50, 0x4b, 0x05, 0x06};
  CHECK_OK(af_zip_open_mem(empty, sizeof empty, "empty.zip", &z));
  CHECK(af_zip_count(z) == 0 && af_zip_find(z, "x") == NULL);
  af_zip_close(z);
  af_torch *ck = NULL;
  CHECK(af_torch_open_mem(empty, sizeof empty, "empty.pth", &ck) == AF_ERR_FORMAT);
  CHECK(strstr(af_error_message(), "no data.pkl"));
  af_error_clear();
  /* EOCD claiming a directory past the end */
  uint8_t lie[22] = {0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0, 46, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  CHECK(af_zip_open_mem(lie, sizeof lie, "lie.zip", &z) == AF_ERR_FORMAT);
  af_error_clear();
  /* safetensors: header length beyond the file */
  uint8_t st[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
  af_safetensors *s = NULL;
  CHECK(af_safetensors_open_mem(st, sizeof st, "x.safetensors", &s) == AF_ERR_FORMAT);
  af_error_clear();
  static const char ok[] =
      "\x10\0\0\0\0\0\0\0{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  (void)ok;
}

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  CHECK(f != NULL);
  if (f) {
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
  }
}

static void copy_file(const char *from, const char *dir, const char *name) {
  FILE *f = fopen(from, "rb");
  CHECK(f != NULL);
  if (!f) return;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  write_file(dir, name, buf, n);
}

/* shard indexes: a missing shard, a path escaping the folder, one tensor in
 * two shards */
static void test_index(void) {
  const char *dir = af_test_tmpdir();
  CHECK(dir != NULL);
  if (!dir) return;
  char d[2048], p[4096];
  snprintf(d, sizeof d, "%s", dir);
  static const char missing[] = "{\"weight_map\": {\"a\": \"gone.safetensors\"}}";
  write_file(d, "model.safetensors.index.json", missing, sizeof missing - 1);
  af_tsrc *src = NULL;
  af_error_clear();
  CHECK(af_tsrc_open(d, &src) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "gone.safetensors"));
  static const char escape[] = "{\"weight_map\": {\"a\": \"../x.bin\"}}";
  write_file(d, "model.safetensors.index.json", escape, sizeof escape - 1);
  af_error_clear();
  CHECK(af_tsrc_open(d, &src) == AF_ERR_FORMAT);
  CHECK(strstr(af_error_message(), "not a plain file name"));
  copy_file(af_test_data("torch/single.safetensors"), d, "s1.safetensors");
  copy_file(af_test_data("torch/single.safetensors"), d, "s2.safetensors");
  static const char dup[] = "{\"weight_map\": {\"w16\": \"s1.safetensors\", \"w32\": \"s2.safetensors\"}}";
  write_file(d, "model.safetensors.index.json", dup, sizeof dup - 1);
  af_error_clear();
  CHECK(af_tsrc_open(d, &src) == AF_ERR_MISMATCH);
  CHECK(strstr(af_error_message(), "appears twice"));
  af_error_clear();
  /* the single file opens by itself, with unaligned data handled */
  snprintf(p, sizeof p, "%s/s1.safetensors", d);
  CHECK_OK(af_tsrc_open(p, &src));
  CHECK(af_tsrc_count(src) == 6 && af_tsrc_find(src, "odd") && !af_tsrc_find(src, "__metadata__"));
  af_tsrc_close(src);
  const char *names[] = {"model.safetensors.index.json", "s1.safetensors", "s2.safetensors"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/%s", d, names[i]);
    remove(p);
  }
  remove(d);
}

int main(void) {
  test_half();
  test_index();
  test_pickle();
  test_zip();
  return af_test_done("test_torch_units");
}
