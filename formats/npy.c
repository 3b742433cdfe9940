/* NumPy .npy writer (format 1.0, little-endian, C order), written through a
 * temporary file and rename(2) so a killed run never leaves half a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/npy.h"

static size_t elem_size(af_dtype t) {
  return t == AF_DTYPE_U8 ? 1 : 4;
}

static const char *descr(af_dtype t) {
  switch (t) {
    case AF_DTYPE_F32:
      return "<f4";
    case AF_DTYPE_U8:
      return "|u1";
    case AF_DTYPE_I32:
      return "<i4";
  }
  return NULL;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w, n -= (size_t)w;
  }
  return 0;
}

int af_npy_write(const char *path, af_dtype dtype, int ndim, const int64_t *shape, const void *data,
                 int do_fsync) {
  const char *d = descr(dtype);
  if (!d || ndim < 0 || ndim > AF_MAX_DIMS)
    return af_err(AF_ERR_INVALID, "%s: cannot write dtype %d, %d dims as .npy", path, dtype, ndim);
  /* this writer only runs on little-endian hosts (x86, arm64): checked here */
  const uint16_t probe = 1;
  if (*(const unsigned char *)&probe != 1) return af_err(AF_ERR_UNSUPPORTED, "%s: big-endian host", path);
  char hdr[256], shp[160] = "";
  size_t count = 1, o = 0;
  for (int i = 0; i < ndim; i++) {
    o += (size_t)snprintf(shp + o, sizeof shp - o, "%lld,%s", (long long)shape[i],
                          (ndim > 1 && i < ndim - 1) ? " " : "");
    count *= (size_t)shape[i];
  }
  if (ndim > 1) shp[--o] = 0; /* (a, b) has no trailing comma; (a,) keeps it */
  int h =
      snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", d, shp);
  size_t total = 10 + (size_t)h + 1;
  size_t padded = (total + 63) / 64 * 64;
  memset(hdr + 10 + h, ' ', padded - total);
  hdr[padded - 1] = '\n';
  memcpy(hdr, "\x93NUMPY\x01\x00", 8);
  hdr[8] = (char)((padded - 10) & 0xff);
  hdr[9] = (char)((padded - 10) >> 8);

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
  int rc = 0, e = 0, fd = mkstemp(tmp);
  if (fd < 0) {
    e = errno;
    rc = af_err(AF_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    goto out;
  }
  (void)fchmod(fd, 0644); /* mkstemp makes 0600 files */
  if (write_all(fd, hdr, padded) || write_all(fd, data, count * elem_size(dtype)) ||
      (do_fsync && fsync(fd) != 0)) {
    e = errno;
    rc = af_err(AF_ERR_IO, "%s: write failed: %s", path, strerror(e));
    close(fd);
    unlink(tmp);
    goto out;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    e = errno;
    rc = af_err(AF_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    unlink(tmp);
  }
out:
  free(tmp);
  errno = e; /* for callers that tell a full disk from a bad name */
  return rc;
}
