/* Device profiles: tuned parameters per device, as data
 * (config/profiles/<vendor>/<device>.yaml, docs/profiles.md).
 *
 *   name: pocl-cpu
 *   match: {platform: "Portable Computing Language", vendor: ..., device: ..., type: cpu|gpu,
 *           min_compute_units: N, max_compute_units: N}
 *   clblast:                      # CLBlastOverrideParameters, every parameter of the kernel
 *     Xgemm: {precision: 32, MWG: 64, NWG: 128, ...}
 *   kernels: {AF_GEMV_WG: 8}      # -D defines for every artflow kernel build
 *   batch: {vit: 4, qformer: 8, llm: 8}
 *   weights: fp32_copy            # or fp16_storage
 *   memory_budget_mb: 0           # 0 = the device's own limits
 *
 * Selection: config/profiles/default.yaml is the base; among the other files
 * whose every `match` key fits the device, the one with the most match keys
 * wins (a vendor's default.yaml names only the vendor; a device file also its
 * name), and its keys override the base key by key.  The profile folder is
 * $ARTFLOW_PROFILE_DIR, else the source tree's config/profiles.
 * ARTFLOW_PROFILE_FILE (or a pipeline's `profile:`) forces one file. */
#ifndef AF_CL_DEVPROFILE_H
#define AF_CL_DEVPROFILE_H

#include <stdio.h>

#include "cl/runtime.h"

#define AF_PROFILE_MAX_OVERRIDES 8
#define AF_PROFILE_MAX_PARAMS 24
#define AF_PROFILE_MAX_DEFINES 32

typedef struct af_clblast_override {
  char kernel[32];
  int precision; /* 16, 32, 64, 3232, 6464 */
  int n;
  char names[AF_PROFILE_MAX_PARAMS][24];
  size_t values[AF_PROFILE_MAX_PARAMS];
} af_clblast_override;

typedef struct af_devprofile {
  char name[64];
  char file[512];    /* the device file chosen ("" = only the base) */
  char why[256];     /* why it matched, for `artflow devices` and provenance */
  int n_overrides;
  af_clblast_override overrides[AF_PROFILE_MAX_OVERRIDES];
  int n_defines;
  char defines[AF_PROFILE_MAX_DEFINES][2][48];
  int batch_vit, batch_qformer, batch_llm;
  int fp16_storage;  /* 1: keep fp16 weights as fp16 on the device */
  long memory_budget_mb;
} af_devprofile;

/* Chooses and merges the profile for `info` (explicit = a file to use instead
 * of matching, or NULL).  AF_ERR_CONFIG with file:line for a bad file. */
int af_devprofile_select(const af_device_info *info, const char *explicit_file, af_devprofile *out);

/* Applies it: tuning defines for every later kernel build and the CLBlast
 * overrides (before CLBlast's first use on this device). */
int af_devprofile_apply(af_cl *cl, const af_devprofile *p);

/* One paragraph: name, file, why, overrides and defines. */
void af_devprofile_describe(const af_devprofile *p, FILE *f);

/* The "-DNAME=V ..." string of the defines (static buffer). */
const char *af_devprofile_defines(const af_devprofile *p);

#endif
