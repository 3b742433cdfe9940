/* Human-readable summary of a GGUF model file (`artflow inspect MODEL.gguf`). */
#ifndef AF_CONVERT_INSPECT_H
#define AF_CONVERT_INSPECT_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens `path` (validating it like any load) and prints the header, every
 * metadata key (arrays summarised: type, length, first elements), the tensor
 * table (name, type, shape in ggml order, bytes), totals and "checks:", the
 * metadata keys that cannot be right (af_gguf_check_meaning), to `out`.
 * Returns 0, the open error (AF_ERR_IO / AF_ERR_FORMAT / ...), or
 * AF_ERR_FORMAT when a key was flagged. */
int af_model_inspect_print(const char *path, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
