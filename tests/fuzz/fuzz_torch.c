/* libFuzzer target: the input is a data.pkl; the harness wraps it in a valid
 * in-memory zip next to four small storages ("0".."3", 64 bytes each, correct
 * CRCs), so mutated pickles reach tensor resolution (offsets, strides, sizes)
 * and the strided readers rather than stopping at the zip CRC. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "artflow/status.h"
#include "formats/torch.h"

#define NSTOR 4
#define SBYTES 64

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
  put16(p, v & 0xffff);
  put16(p + 2, v >> 16);
}

/* Appends a stored entry; returns the new length.  cd gets its directory record. */
static size_t add_entry(uint8_t *out, size_t len, uint8_t *cd, size_t *cdlen, const char *name,
                        const uint8_t *data, size_t n) {
  size_t nl = strlen(name);
  uint32_t crc = (uint32_t)crc32(0, data, (uInt)n);
  uint8_t *h = out + len;
  memset(h, 0, 30);
  put32(h, 0x04034b50);
  put16(h + 4, 20);
  put32(h + 14, crc);
  put32(h + 18, (uint32_t)n);
  put32(h + 22, (uint32_t)n);
  put16(h + 26, (unsigned)nl);
  memcpy(h + 30, name, nl);
  memcpy(h + 30 + nl, data, n);
  uint8_t *c = cd + *cdlen;
  memset(c, 0, 46);
  put32(c, 0x02014b50);
  put16(c + 4, 20);
  put16(c + 6, 20);
  put32(c + 16, crc);
  put32(c + 20, (uint32_t)n);
  put32(c + 24, (uint32_t)n);
  put16(c + 28, (unsigned)nl);
  put32(c + 42, (uint32_t)len);
  memcpy(c + 46, name, nl);
  *cdlen += 46 + nl;
  return len + 30 + nl + n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20)) return 0;
  size_t cap = size + NSTOR * (SBYTES + 128) + 512;
  uint8_t *zip = malloc(cap), *cd = malloc(1024);
  if (!zip || !cd) goto out;
  size_t len = 0, cdlen = 0;
  uint8_t stor[SBYTES];
  for (int i = 0; i < SBYTES; i++) stor[i] = (uint8_t)(i * 37 + 11);
  len = add_entry(zip, len, cd, &cdlen, "archive/data.pkl", data, size);
  for (int s = 0; s < NSTOR; s++) {
    char name[32] = "archive/data/0";
    name[13] = (char)('0' + s);
    len = add_entry(zip, len, cd, &cdlen, name, stor, sizeof stor);
  }
  size_t cdoff = len;
  memcpy(zip + len, cd, cdlen);
  len += cdlen;
  uint8_t *e = zip + len;
  memset(e, 0, 22);
  put32(e, 0x06054b50);
  put16(e + 8, 1 + NSTOR);
  put16(e + 10, 1 + NSTOR);
  put32(e + 12, (uint32_t)cdlen);
  put32(e + 16, (uint32_t)cdoff);
  len += 22;
  af_torch *ck = NULL;
  if (af_torch_open_mem(zip, len, "fuzz.pth", &ck) == 0) {
    af_tsrc_tensor *list = NULL;
    size_t n = 0;
    af_torch_tensors(ck, af_torch_pick_root(ck, NULL), "", &list, &n);
    for (size_t i = 0; i < n; i++) {
      if (list[i].numel > (1u << 22)) continue;
      float *x = malloc((list[i].numel ? list[i].numel : 1) * sizeof *x);
      uint16_t *h = malloc((list[i].numel ? list[i].numel : 1) * 8);
      if (x) af_tsrc_read_f32(&list[i], x);
      if (h) af_tsrc_read_f16(&list[i], h);
      if (h) af_tsrc_read_raw(&list[i], h);
      if (x && list[i].ndim && list[i].shape[0] > 1) af_tsrc_read_rows_f32(&list[i], 1, 1, x);
      free(x);
      free(h);
    }
    free(list);
  }
  af_torch_close(ck);
out:
  free(zip);
  free(cd);
  af_error_clear();
  return 0;
}
