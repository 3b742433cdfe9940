/* Internal pieces of the OpenCL runtime shared between cl/runtime.c,
 * cl/program.c and cl/profile.c.  Not part of any public API. */
#ifndef AF_CL_RUNTIME_INTERNAL_H
#define AF_CL_RUNTIME_INTERNAL_H

#include <stdio.h>

#include "cl/runtime.h"

struct af_prof_entry {
  char label[64];
  double total_ms;
  long count;
};

/* Chooses the on-disk cache folder ($XDG_CACHE_HOME/artflow or ~/.cache/artflow;
 * ARTFLOW_NO_DISK_CACHE=1 disables it). */
void af_cl_cache_init(af_cl *cl);
/* Releases every cached program. */
void af_cl_programs_free(af_cl *cl);
/* Prints the per-kernel time table. */
void af_cl_profile_print(af_cl *cl, FILE *f);

#endif
