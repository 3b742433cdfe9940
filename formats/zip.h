/* ZIP container reader for PyTorch checkpoints (and any zip), over an mmap.
 *
 * Handles the end-of-central-directory search, zip64 (EOCD64 locator and
 * record, zip64 extra fields), stored and deflated entries.  Every offset and
 * size read from the file is bounds-checked, so hostile archives give an
 * AF_ERR_FORMAT naming the file instead of a crash.  Stored entries are
 * returned as pointers into the map (zero copy: PyTorch stores tensor data
 * uncompressed and 64-byte aligned); deflated entries are inflated into a
 * malloc'd buffer whose size is the declared uncompressed size, which is a
 * hard limit (zip bombs fail, they never allocate more than declared, and a
 * declared size beyond deflate's maximum ratio is refused up front). */
#ifndef AF_FORMATS_ZIP_H
#define AF_FORMATS_ZIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_zip_entry {
  const char *name;     /* NUL-terminated copy of the entry name */
  uint64_t data_offset; /* offset of the entry bytes in the file */
  uint64_t csize;       /* compressed size */
  uint64_t usize;       /* uncompressed size */
  uint32_t crc32;
  uint16_t method; /* 0 stored, 8 deflated */
} af_zip_entry;

typedef struct af_zip af_zip;

/* mmaps path read-only and reads the central directory.  Returns 0,
 * AF_ERR_IO, AF_ERR_FORMAT, AF_ERR_NOMEM.  *out freed with af_zip_close. */
int af_zip_open(const char *path, af_zip **out);
/* Same over caller memory (borrowed; must outlive the zip).  label names the
 * data in error messages.  Used by tests and fuzzers. */
int af_zip_open_mem(const void *data, size_t size, const char *label, af_zip **out);
void af_zip_close(af_zip *z); /* NULL is fine */

size_t af_zip_count(const af_zip *z);
const af_zip_entry *af_zip_at(const af_zip *z, size_t i); /* NULL if out of range */
/* Entry with exactly this name, NULL when absent. */
const af_zip_entry *af_zip_find(const af_zip *z, const char *name);
/* Path or label given at open (borrowed). */
const char *af_zip_path(const af_zip *z);
/* Start of the mapped file and its size (borrowed). */
const uint8_t *af_zip_base(const af_zip *z);
uint64_t af_zip_size(const af_zip *z);

/* Bytes of an entry.  Stored: *data points into the map, *owned = NULL, no
 * CRC check (call af_zip_verify).  Deflated: inflated into a new buffer,
 * CRC checked, *data == *owned, caller frees *owned.  max_size refuses
 * entries whose uncompressed size is larger (0 = no limit beyond the zip-bomb
 * rules).  Returns 0, AF_ERR_FORMAT, AF_ERR_RANGE, AF_ERR_NOMEM,
 * AF_ERR_UNSUPPORTED (method other than 0/8, encrypted). */
int af_zip_read(const af_zip *z, const af_zip_entry *e, uint64_t max_size, const uint8_t **data,
                uint8_t **owned);
/* A deflated entry's first `keep` bytes (at most its size) in a new buffer
 * (*owned, caller frees), the rest inflated through a small scratch buffer
 * for the size and CRC checks: the memory taken is `keep`, whatever the
 * entry declares.  Returns 0, AF_ERR_FORMAT (bomb, corrupt, bad CRC),
 * AF_ERR_NOMEM, AF_ERR_UNSUPPORTED (not deflated). */
int af_zip_read_prefix(const af_zip *z, const af_zip_entry *e, uint64_t keep, uint8_t **owned);
/* Checks the CRC-32 of a stored entry's bytes (deflated entries are checked
 * by af_zip_read).  Returns 0 or AF_ERR_FORMAT ("bad CRC"). */
int af_zip_verify(const af_zip *z, const af_zip_entry *e);

#ifdef __cplusplus
}
#endif
#endif
