/* Human-readable summary of a GGUF model file (`artflow inspect MODEL.gguf`). */
#ifndef AF_CONVERT_INSPECT_H
#define AF_CONVERT_INSPECT_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens `path` (validating it like any load) and prints the header, every
 * metadata key (arrays summarised: type, length, first elements), the tensor
 * table (name, type, shape in ggml order, bytes) and totals to `out`.
 * Returns 0 or the open error (AF_ERR_IO / AF_ERR_FORMAT / ...). */
int af_model_inspect_print(const char *path, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
