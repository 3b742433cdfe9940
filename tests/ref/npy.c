/* Test-only .npy and id-list readers (see npy.h). */
#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float *npy_read_f32(const char *path, int *ndim, int64_t shape[4], size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open\n", path);
    return NULL;
  }
  unsigned char pre[10];
  float *data = NULL;
  char hdr[1024];
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] != 1) goto bad;
  size_t hl = pre[8] | (pre[9] << 8);
  if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl) goto bad;
  hdr[hl] = 0;
  if (!strstr(hdr, "'descr': '<f4'") || strstr(hdr, "'fortran_order': True")) goto bad;
  char *s = strstr(hdr, "'shape': (");
  if (!s) goto bad;
  s += 10;
  *ndim = 0;
  *n = 1;
  while (*s && *s != ')' && *ndim < 4) {
    long v = strtol(s, &s, 10);
    shape[(*ndim)++] = v;
    *n *= (size_t)v;
    while (*s == ',' || *s == ' ') s++;
  }
  data = malloc(*n * sizeof(float) + 1);
  if (!data || fread(data, sizeof(float), *n, f) != *n) goto bad;
  fclose(f);
  return data;
bad:
  fprintf(stderr, "%s: not a float32 C-order .npy v1 file\n", path);
  free(data);
  fclose(f);
  return NULL;
}

int read_ids_line(const char *path, int line, int32_t *ids, int cap) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char buf[65536];
  int k = 0;
  for (int i = 0; i <= line; i++)
    if (!fgets(buf, sizeof buf, f)) {
      fclose(f);
      return i == line ? 0 : -1;
    }
  fclose(f);
  for (char *p = buf; k < cap;) {
    char *e;
    long v = strtol(p, &e, 10);
    if (e == p) break;
    ids[k++] = (int32_t)v;
    p = e;
  }
  return k;
}
