/* Minimal reader for the float32 .npy files in tests/data (NumPy format 1.0,
 * little-endian, C order).  Test-only. */
#ifndef AF_TEST_NPY_H
#define AF_TEST_NPY_H
#include <stddef.h>
#include <stdint.h>

/* Reads path; returns a malloc'd float array (caller frees) and its shape
 * (up to 4 dims) or NULL with a message on stderr. */
float *npy_read_f32(const char *path, int *ndim, int64_t shape[4], size_t *n);
/* Reads whitespace-separated integers, one line (line 0, 1, ...) of a text file.
 * Returns the count (<= cap) or -1. */
int read_ids_line(const char *path, int line, int32_t *ids, int cap);
#endif
