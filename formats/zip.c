/* ZIP container reader over an mmap (see zip.h): central directory with
 * zip64, bounds checks on every field, zero-copy stored entries and
 * size-limited inflate for deflated ones. */
#include "formats/zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "artflow/status.h"

#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define SIG_CDH 0x02014b50u
#define SIG_LFH 0x04034b50u
/* Deflate cannot expand better than about 1032:1; anything claiming more is
 * lying (or a bomb), so it is refused before allocating. */
#define DEFLATE_MAX_RATIO 1032u

struct af_zip {
  char *path;
  const uint8_t *base;
  uint64_t size;
  int mapped; /* 1 when base must be munmap'ed */
  af_zip_entry *entries;
  size_t n;
  size_t *sorted; /* entry indices sorted by name */
  char *names;    /* all names, NUL-separated */
};

static uint16_t rd16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) {
  return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* 1 when [off, off+len) lies inside the file. */
static int in_file(const af_zip *z, uint64_t off, uint64_t len) {
  return off <= z->size && len <= z->size - off;
}

static const af_zip *g_sort_zip; /* qsort has no context argument in C11 */
static int cmp_idx(const void *a, const void *b) {
  const af_zip_entry *e = g_sort_zip->entries;
  return strcmp(e[*(const size_t *)a].name, e[*(const size_t *)b].name);
}

/* Finds the end-of-central-directory record: the last signature whose
 * comment length fits the file. */
static int find_eocd(const af_zip *z, uint64_t *pos) {
  if (z->size < 22)
    return af_err(AF_ERR_FORMAT, "%s: not a zip archive (too short, %llu bytes)", z->path,
                  (unsigned long long)z->size);
  uint64_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0;
  for (uint64_t p = z->size - 22 + 1; p-- > lo;) {
    if (rd32(z->base + p) == SIG_EOCD && p + 22 + rd16(z->base + p + 20) <= z->size) {
      *pos = p;
      return 0;
    }
  }
  return af_err(AF_ERR_FORMAT, "%s: not a zip archive or truncated (no end-of-central-directory record)",
                z->path);
}

/* Applies a zip64 extended-information extra field to the fields that were
 * saturated at 0xFFFFFFFF. */
static int apply_zip64_extra(const af_zip *z, const uint8_t *ex, size_t exlen, uint64_t *usize,
                             uint64_t *csize, uint64_t *off) {
  size_t p = 0;
  while (p + 4 <= exlen) {
    uint16_t id = rd16(ex + p), len = rd16(ex + p + 2);
    if (p + 4 + (size_t)len > exlen) break;
    if (id == 0x0001) {
      const uint8_t *d = ex + p + 4;
      size_t q = 0;
      uint64_t *f[3] = {usize, csize, off};
      for (int k = 0; k < 3; k++) {
        if (*f[k] != 0xFFFFFFFFu) continue;
        if (q + 8 > len) return af_err(AF_ERR_FORMAT, "%s: zip64 extra field too short", z->path);
        *f[k] = rd64(d + q);
        q += 8;
      }
      return 0;
    }
    p += 4 + (size_t)len;
  }
  if (*usize == 0xFFFFFFFFu || *csize == 0xFFFFFFFFu || *off == 0xFFFFFFFFu)
    return af_err(AF_ERR_FORMAT, "%s: entry needs a zip64 extra field but has none", z->path);
  return 0;
}

static int read_directory(af_zip *z) {
  uint64_t eocd = 0;
  int rc = find_eocd(z, &eocd);
  if (rc) return rc;
  const uint8_t *e = z->base + eocd;
  uint64_t count = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
  if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
    return af_err(AF_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", z->path);
  /* zip64: a locator sits right before the EOCD */
  if (eocd >= 20 && rd32(z->base + eocd - 20) == SIG_LOC64) {
    uint64_t r = rd64(z->base + eocd - 20 + 8);
    if (!in_file(z, r, 56) || rd32(z->base + r) != SIG_EOCD64)
      return af_err(AF_ERR_FORMAT, "%s: bad zip64 end-of-central-directory record", z->path);
    count = rd64(z->base + r + 32);
    cd_size = rd64(z->base + r + 40);
    cd_off = rd64(z->base + r + 48);
  }
  if (!in_file(z, cd_off, cd_size))
    return af_err(AF_ERR_FORMAT,
                  "%s: central directory (offset %llu, %llu bytes) lies past the end "
                  "of the file (%llu bytes): truncated?",
                  z->path, (unsigned long long)cd_off, (unsigned long long)cd_size,
                  (unsigned long long)z->size);
  if (count > cd_size / 46)
    return af_err(AF_ERR_FORMAT, "%s: %llu entries cannot fit a %llu-byte central directory", z->path,
                  (unsigned long long)count, (unsigned long long)cd_size);
  z->entries = calloc(count ? count : 1, sizeof *z->entries);
  z->sorted = calloc(count ? count : 1, sizeof *z->sorted);
  z->names = malloc(cd_size + 1);
  if (!z->entries || !z->sorted || !z->names)
    return af_err(AF_ERR_NOMEM, "%s: out of memory reading the zip directory", z->path);
  size_t name_pos = 0;
  uint64_t p = cd_off, end = cd_off + cd_size;
  for (uint64_t i = 0; i < count; i++) {
    if (p + 46 > end || rd32(z->base + p) != SIG_CDH)
      return af_err(AF_ERR_FORMAT, "%s: corrupt central directory at entry %llu", z->path,
                    (unsigned long long)i);
    const uint8_t *h = z->base + p;
    uint16_t flags = rd16(h + 8), nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
    if (p + 46 + nlen + xlen + clen > end)
      return af_err(AF_ERR_FORMAT, "%s: central directory entry %llu overruns the directory", z->path,
                    (unsigned long long)i);
    af_zip_entry *en = &z->entries[i];
    en->method = rd16(h + 10);
    en->crc32 = rd32(h + 16);
    en->csize = rd32(h + 20);
    en->usize = rd32(h + 24);
    uint64_t loc = rd32(h + 42);
    memcpy(z->names + name_pos, h + 46, nlen);
    z->names[name_pos + nlen] = 0;
    en->name = z->names + name_pos;
    if (memchr(en->name, 0, nlen))
      return af_err(AF_ERR_FORMAT, "%s: entry %llu has a NUL byte in its name", z->path,
                    (unsigned long long)i);
    name_pos += (size_t)nlen + 1;
    rc = apply_zip64_extra(z, h + 46 + nlen, xlen, &en->usize, &en->csize, &loc);
    if (rc) return rc;
    if (flags & 1) return af_err(AF_ERR_UNSUPPORTED, "%s: entry '%s' is encrypted", z->path, en->name);
    if (!in_file(z, loc, 30) || rd32(z->base + loc) != SIG_LFH)
      return af_err(AF_ERR_FORMAT, "%s: entry '%s': bad local header offset %llu (truncated?)", z->path,
                    en->name, (unsigned long long)loc);
    en->data_offset = loc + 30 + rd16(z->base + loc + 26) + rd16(z->base + loc + 28);
    if (!in_file(z, en->data_offset, en->csize))
      return af_err(AF_ERR_FORMAT,
                    "%s: entry '%s' (%llu bytes at offset %llu) reaches past the end of "
                    "the file (%llu bytes): truncated?",
                    z->path, en->name, (unsigned long long)en->csize, (unsigned long long)en->data_offset,
                    (unsigned long long)z->size);
    if (en->method == 0 && en->csize != en->usize)
      return af_err(AF_ERR_FORMAT, "%s: stored entry '%s' has different sizes (%llu, %llu)", z->path,
                    en->name, (unsigned long long)en->csize, (unsigned long long)en->usize);
    z->sorted[i] = i;
    p += 46 + (uint64_t)nlen + xlen + clen;
  }
  z->n = count;
  g_sort_zip = z;
  qsort(z->sorted, z->n, sizeof *z->sorted, cmp_idx);
  for (size_t i = 1; i < z->n; i++)
    if (!strcmp(z->entries[z->sorted[i]].name, z->entries[z->sorted[i - 1]].name))
      return af_err(AF_ERR_FORMAT, "%s: duplicate entry '%s'", z->path, z->entries[z->sorted[i]].name);
  return 0;
}

static int open_common(af_zip *z, af_zip **out) {
  int rc = read_directory(z);
  if (rc) {
    af_zip_close(z);
    return rc;
  }
  *out = z;
  return 0;
}

int af_zip_open_mem(const void *data, size_t size, const char *label, af_zip **out) {
  if (!out || (!data && size)) return af_err(AF_ERR_INVALID, "af_zip_open_mem: bad arguments");
  *out = NULL;
  af_zip *z = calloc(1, sizeof *z);
  if (!z || !(z->path = strdup(label ? label : "<memory>"))) {
    free(z);
    return af_err(AF_ERR_NOMEM, "out of memory opening a zip");
  }
  z->base = data;
  z->size = size;
  return open_common(z, out);
}

int af_zip_open(const char *path, af_zip **out) {
  if (!path || !out) return af_err(AF_ERR_INVALID, "af_zip_open: bad arguments");
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return af_err(AF_ERR_IO, "%s: not a regular file", path);
  }
  af_zip *z = calloc(1, sizeof *z);
  if (!z || !(z->path = strdup(path))) {
    free(z);
    close(fd);
    return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  }
  z->size = (uint64_t)st.st_size;
  if (z->size > 0) {
    void *m = mmap(NULL, (size_t)z->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      af_zip_close(z);
      return af_err(AF_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    }
    z->base = m;
    z->mapped = 1;
  }
  close(fd);
  return open_common(z, out);
}

void af_zip_close(af_zip *z) {
  if (!z) return;
  if (z->mapped) munmap((void *)z->base, (size_t)z->size);
  free(z->entries);
  free(z->sorted);
  free(z->names);
  free(z->path);
  free(z);
}

size_t af_zip_count(const af_zip *z) {
  return z ? z->n : 0;
}
const af_zip_entry *af_zip_at(const af_zip *z, size_t i) {
  return z && i < z->n ? &z->entries[i] : NULL;
}
const char *af_zip_path(const af_zip *z) {
  return z ? z->path : "";
}
const uint8_t *af_zip_base(const af_zip *z) {
  return z ? z->base : NULL;
}
uint64_t af_zip_size(const af_zip *z) {
  return z ? z->size : 0;
}

const af_zip_entry *af_zip_find(const af_zip *z, const char *name) {
  if (!z || !name) return NULL;
  size_t lo = 0, hi = z->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const af_zip_entry *e = &z->entries[z->sorted[mid]];
    int c = strcmp(e->name, name);
    if (c == 0) return e;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static uint32_t crc_of(const uint8_t *p, uint64_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return (uint32_t)c;
}

int af_zip_verify(const af_zip *z, const af_zip_entry *e) {
  if (!z || !e) return af_err(AF_ERR_INVALID, "af_zip_verify: bad arguments");
  if (e->method != 0) return 0; /* checked while inflating */
  uint32_t c = crc_of(z->base + e->data_offset, e->csize);
  if (c != e->crc32)
    return af_err(AF_ERR_FORMAT, "%s: bad CRC in entry '%s' (stored %08x, computed %08x)", z->path, e->name,
                  e->crc32, c);
  return 0;
}

/* Inflates the whole entry, keeping its first `keep` bytes in dst (which
 * has room for them) and passing the rest through a small scratch buffer, so
 * the memory it takes is `keep` whatever the entry declares.  Checks that
 * the data inflates to exactly the declared size (a bomb that goes past it
 * stops there) and the CRC over all of it. */
static int inflate_entry(const af_zip *z, const af_zip_entry *e, uint8_t *dst, uint64_t keep) {
  z_stream s;
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, -MAX_WBITS) != Z_OK) return af_err(AF_ERR_NOMEM, "%s: inflateInit failed", z->path);
  static _Thread_local uint8_t scratch[1 << 16];
  const uint8_t *in = z->base + e->data_offset;
  uint64_t in_left = e->csize, produced = 0;
  uLong crc = crc32(0L, Z_NULL, 0);
  int rc = 0;
  for (;;) {
    if (s.avail_in == 0 && in_left > 0) {
      s.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
      s.next_in = (Bytef *)in;
      in += s.avail_in;
      in_left -= s.avail_in;
    }
    uint8_t *out = produced < keep ? dst + produced : scratch;
    uInt room = produced < keep ? (keep - produced > (1u << 30) ? (1u << 30) : (uInt)(keep - produced))
                                : (uInt)sizeof scratch;
    s.next_out = out;
    s.avail_out = room;
    int zr = inflate(&s, Z_NO_FLUSH);
    uInt got = room - s.avail_out;
    crc = crc32(crc, out, got);
    produced += got;
    if (produced > e->usize) {
      rc = af_err(AF_ERR_FORMAT, "%s: entry '%s' inflates past its declared size of %llu bytes (zip bomb?)",
                  z->path, e->name, (unsigned long long)e->usize);
      goto out;
    }
    if (zr == Z_STREAM_END) break;
    if (zr == Z_BUF_ERROR && s.avail_in == 0 && in_left == 0) {
      rc = af_err(AF_ERR_FORMAT, "%s: entry '%s': deflate data ends early (truncated?)", z->path, e->name);
      goto out;
    }
    if (zr != Z_OK && zr != Z_BUF_ERROR) {
      rc = af_err(AF_ERR_FORMAT, "%s: entry '%s': corrupt deflate data (%s)", z->path, e->name,
                  s.msg ? s.msg : "inflate error");
      goto out;
    }
  }
  if (produced != e->usize)
    rc = af_err(AF_ERR_FORMAT, "%s: entry '%s' inflates to %llu bytes, declared %llu", z->path, e->name,
                (unsigned long long)produced, (unsigned long long)e->usize);
  else if ((uint32_t)crc != e->crc32)
    rc = af_err(AF_ERR_FORMAT, "%s: bad CRC in entry '%s' (stored %08x, computed %08x)", z->path, e->name,
                e->crc32, (uint32_t)crc);
out:
  inflateEnd(&s);
  return rc;
}

/* The checks every deflated entry passes before anything is allocated. */
static int check_deflated(const af_zip *z, const af_zip_entry *e) {
  if (e->method != 8)
    return af_err(AF_ERR_UNSUPPORTED, "%s: entry '%s' uses compression method %u", z->path, e->name,
                  e->method);
  if (e->usize / DEFLATE_MAX_RATIO > e->csize + 1)
    return af_err(AF_ERR_FORMAT,
                  "%s: entry '%s' claims %llu bytes from %llu compressed, more than "
                  "deflate can produce (zip bomb?)",
                  z->path, e->name, (unsigned long long)e->usize, (unsigned long long)e->csize);
  return 0;
}

int af_zip_read_prefix(const af_zip *z, const af_zip_entry *e, uint64_t keep, uint8_t **owned) {
  if (!z || !e || !owned) return af_err(AF_ERR_INVALID, "af_zip_read_prefix: bad arguments");
  *owned = NULL;
  int rc = check_deflated(z, e);
  if (rc) return rc;
  if (keep > e->usize) keep = e->usize;
  if (keep > SIZE_MAX - 1) return af_err(AF_ERR_RANGE, "%s: entry '%s' too large", z->path, e->name);
  uint8_t *buf = malloc((size_t)keep + 1);
  if (!buf)
    return af_err(AF_ERR_NOMEM, "%s: out of memory inflating '%s' (%llu bytes)", z->path, e->name,
                  (unsigned long long)keep);
  if ((rc = inflate_entry(z, e, buf, keep))) {
    free(buf);
    return rc;
  }
  *owned = buf;
  return 0;
}

int af_zip_read(const af_zip *z, const af_zip_entry *e, uint64_t max_size, const uint8_t **data,
                uint8_t **owned) {
  if (!z || !e || !data || !owned) return af_err(AF_ERR_INVALID, "af_zip_read: bad arguments");
  *data = NULL;
  *owned = NULL;
  if (e->method == 0) {
    if (max_size && e->usize > max_size)
      return af_err(AF_ERR_RANGE, "%s: entry '%s' is %llu bytes, more than the %llu allowed", z->path,
                    e->name, (unsigned long long)e->usize, (unsigned long long)max_size);
    *data = z->base + e->data_offset;
    return 0;
  }
  int rc = check_deflated(z, e);
  if (rc) return rc;
  if (max_size && e->usize > max_size)
    return af_err(AF_ERR_RANGE, "%s: entry '%s' is %llu bytes, more than the %llu allowed", z->path, e->name,
                  (unsigned long long)e->usize, (unsigned long long)max_size);
  uint8_t *buf = NULL;
  if ((rc = af_zip_read_prefix(z, e, e->usize, &buf))) return rc;
  *data = buf;
  *owned = buf;
  return 0;
}
