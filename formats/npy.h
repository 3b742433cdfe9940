/* NumPy .npy files (format 1.0) written atomically, and file-name-safe item ids. */
#ifndef AF_FORMATS_NPY_H
#define AF_FORMATS_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "artflow/stage.h"

/* Writes a NumPy format 1.0 file (little-endian, C order) atomically: to a
 * temporary name in the same folder, then rename(2), so a reader never sees
 * part of a file.  0 or AF_ERR_IO (errno then tells why) / AF_ERR_INVALID. */
int af_npy_write(const char *path, af_dtype dtype, int ndim, const int64_t *shape, const void *data,
                 int do_fsync);

/* The file-name form of an item id used by the npy sink (stages/sink_npy.c):
 * [A-Za-z0-9._-] kept, other bytes '_', plus "-<8 hex of FNV-1a(id)>" when
 * anything changed; an id longer than n - 10 bytes becomes a prefix plus
 * "-<32 hex of SHA-256(id)>".  Writes at most n - 1 bytes and the NUL into
 * out[0..n), n >= 48. */
void af_npy_safe_name(const char *id, char *out, size_t n);

#endif
