/* Device profiles: tuned parameters per device, as data
 * (config/profiles/<vendor>/<device>.yaml; format in docs/profiles.md).
 *
 *   name: pocl-cpu
 *   match: {platform: ..., vendor: ..., device: ..., device_regex: "^gfx9(0a|4[0-9])",
 *           type: cpu|gpu, driver_min: "525", driver_max: "999.9",
 *           min_compute_units: N, max_compute_units: N}
 *   clblast:                      # CLBlastOverrideParameters, every parameter of the kernel
 *     Xgemm: {precision: 32, params: {GEMMK: 0, KREG: 1, ...}}    # (params: may be left out)
 *   kernels: {AF_GEMM_IMPL: tiled, AF_GEMV_WG: 8}   # -D defines for every artflow kernel build
 *   batch: {vit: 4, qformer: 8, llm: 8}
 *   weights: fp32_copy            # or fp16_storage
 *   kv_cache: auto                # f16 | f32 | auto (f16 unless the LLM file is fp32)
 *   memory_budget_mb: 0           # 0 = the device's own limits
 *
 * Selection, three levels, each overriding the previous key by key:
 *   1. <dir>/default.yaml, the global base;
 *   2. the vendor default: a <dir>/<vendor>/default.yaml whose every `match`
 *      rule fits the device (the one with most rules if several do);
 *   3. the device file: any other <dir>/<vendor>/<name>.yaml whose every rule
 *      fits, the one with most rules (ties: first by path).
 * <dir> is found by core/datadir.h: $ARTFLOW_PROFILE_DIR, else
 * $ARTFLOW_DATA_DIR/profiles, else <exe dir>/../share/artflow/profiles, else
 * (for a binary in its build tree) the source tree's config/profiles; with
 * none, a one-time warning on stderr and built-in defaults.  An
 * explicit file (argument, ARTFLOW_PROFILE_FILE, or a pipeline's `profile:`)
 * replaces levels 2 and 3.  Files are validated as they are read: unknown
 * keys, bad values and incomplete CLBlast parameter sets are AF_ERR_CONFIG
 * errors naming file:line:column. */
#ifndef AF_CL_DEVPROFILE_H
#define AF_CL_DEVPROFILE_H

#include <stdio.h>

#include "cl/runtime.h"

#define AF_PROFILE_MAX_OVERRIDES 12
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
  char file[512]; /* the most specific file applied ("" = only the base) */
  char why[768];  /* which files applied and which rules matched, for
                   * `artflow devices` and provenance */
  int n_overrides;
  af_clblast_override overrides[AF_PROFILE_MAX_OVERRIDES];
  int n_defines;
  char defines[AF_PROFILE_MAX_DEFINES][2][48];
  int batch_vit, batch_qformer, batch_llm;
  int fp16_storage; /* 1: keep fp16 weights as fp16 on the device */
  int kv_cache;     /* LLM KV-cache storage: AF_KV_AUTO, AF_KV_F16 or AF_KV_F32 */
  long memory_budget_mb;
} af_devprofile;

/* Chooses and merges the profile for `info` into *out (caller-owned
 * storage; explicit = a file to use instead of levels 2-3, or NULL).
 * Returns 0, or AF_ERR_CONFIG (file:line:column and the cause) for a bad
 * file, AF_ERR_IO for an explicit file that cannot be read. */
int af_devprofile_select(const af_device_info *info, const char *explicit_file, af_devprofile *out);

/* Applies it to an opened device: the tuning defines for every later kernel
 * build (af_cl_set_tuning) and the CLBlast overrides (must run before
 * CLBlast's first use on this device; af_cl_open does both).  Returns 0 or
 * the CLBlast / artflow status with the profile and kernel named. */
int af_devprofile_apply(af_cl *cl, const af_devprofile *p);

/* A few indented lines: name, files and why, GEMM implementation, CLBlast
 * overrides, kernel defines, batch sizes, weight policy, memory budget. */
void af_devprofile_describe(const af_devprofile *p, FILE *f);

/* The "-DNAME=V ..." string of the defines (thread-local static buffer). */
const char *af_devprofile_defines(const af_devprofile *p);

/* Getters.  batch: the stage's batch size ("vit", "qformer", "llm"; 0 for
 * another name).  define: the value of a `kernels:` define, or NULL. */
int af_devprofile_batch(const af_devprofile *p, const char *stage);
int af_devprofile_fp16_storage(const af_devprofile *p);
enum { AF_KV_AUTO = 0, AF_KV_F16 = 1, AF_KV_F32 = 2 };
int af_devprofile_kv_cache(const af_devprofile *p);
long af_devprofile_memory_budget_mb(const af_devprofile *p);
const char *af_devprofile_define(const af_devprofile *p, const char *name);

/* Which GEMM implementation the profile asks for (AF_GEMM_IMPL define:
 * "tiled" = the own kernel in cl/gemm_tiled.h, anything else or absent =
 * CLBlast). */
enum { AF_GEMM_IMPL_CLBLAST = 0, AF_GEMM_IMPL_TILED = 1 };
int af_devprofile_gemm_impl(const af_devprofile *p);

/* The profile folder in effect (see above; thread-local storage, valid until
 * the next call on the thread), or NULL when none was found. */
const char *af_devprofile_dir(void);

#endif
