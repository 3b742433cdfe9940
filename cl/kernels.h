/* Table of OpenCL kernel sources embedded at build time (cmake/embed_kernels.cmake). */
#ifndef AF_CL_KERNELS_H
#define AF_CL_KERNELS_H
#include <stddef.h>

typedef struct af_kernel_source {
  const char *name; /* file name, e.g. "ops.cl" */
  const char *text; /* NUL-terminated source */
  size_t len;       /* bytes, without the NUL */
} af_kernel_source;

/* Terminated by an entry with name == NULL. */
extern const af_kernel_source af_kernel_sources[];

#endif
