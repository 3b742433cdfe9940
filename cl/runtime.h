/* OpenCL runtime: device selection, context, queues, program cache, profiling.
 *
 * One af_cl per process and device (shared by all stages; thread-safe).  Each
 * thread that enqueues work owns an af_queue (an in-order command queue plus a
 * kernel cache, since cl_kernel objects must not be shared across threads while
 * their arguments are being set).
 *
 * Programs are built once per (source, build options, tuning defines) and kept
 * in memory; binaries are also kept on disk under $XDG_CACHE_HOME/artflow
 * (or ~/.cache/artflow), keyed by device name, driver version and options.  A
 * corrupt or mismatching cache file is rebuilt, never trusted. */
#ifndef AF_CL_RUNTIME_H
#define AF_CL_RUNTIME_H

#include <CL/cl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "artflow/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns from the calling function with the CL error code and a message
 * naming the expression, the CL error and file:line. */
#define AF_CL_CHECK(expr)                                                                         \
  do {                                                                                            \
    cl_int af_cl_e_ = (expr);                                                                     \
    if (af_cl_e_ != CL_SUCCESS)                                                                   \
      return af_err(af_cl_e_, "%s:%d: %s: %s", __FILE__, __LINE__, #expr, af_strerror(af_cl_e_)); \
  } while (0)

/* Same, but stores the code in `rc` and jumps to `label` (one exit path). */
#define AF_CL_TRY(rc, expr, label)                                                                \
  do {                                                                                            \
    cl_int af_cl_e_ = (expr);                                                                     \
    if (af_cl_e_ != CL_SUCCESS) {                                                                 \
      (rc) = af_err(af_cl_e_, "%s:%d: %s: %s", __FILE__, __LINE__, #expr, af_strerror(af_cl_e_)); \
      goto label;                                                                                 \
    }                                                                                             \
  } while (0)

/* Propagates a non-zero int status. */
#define AF_TRY(rc, expr, label) \
  do {                          \
    (rc) = (expr);              \
    if ((rc) != 0) goto label;  \
  } while (0)

typedef struct af_device_info {
  int index;          /* global index over all platforms' devices */
  char platform[256]; /* platform name */
  char platform_version[256];
  char name[256]; /* device name */
  char vendor[256];
  char driver[128];    /* driver version */
  char version[128];   /* device OpenCL version */
  char c_version[128]; /* OpenCL C version */
  cl_device_type type;
  cl_uint compute_units;
  cl_uint clock_mhz;
  cl_ulong global_mem;
  cl_ulong local_mem;
  cl_ulong max_alloc;
  size_t max_wg; /* max work-group size */
  int fp16;      /* cl_khr_fp16 present */
  int fp64;      /* cl_khr_fp64 present */
  int is_cpu, is_gpu;
} af_device_info;

typedef struct af_device_ref {
  cl_platform_id platform;
  cl_device_id device;
  af_device_info info;
} af_device_ref;

/* Enumerates every device of every platform.  *out is malloc'd (caller frees);
 * returns AF_ERR_NO_PLATFORM with an install hint when there is no ICD. */
int af_cl_enumerate(af_device_ref **out, int *count);

/* Selection string grammar: NULL/"" = default (ARTFLOW_DEVICE, else first GPU,
 * else first CPU, else first device); a decimal index; or a case-insensitive
 * substring of "platform name / device name / vendor". */
int af_cl_select(const char *selector, af_device_ref *out);

typedef struct af_prog_entry af_prog_entry;

typedef struct af_cl {
  cl_platform_id platform;
  cl_device_id device;
  cl_context ctx;
  af_device_info info;
  int profiling;        /* ARTFLOW_PROFILE=1: queues record kernel times */
  char *tuning_defines; /* "-DNAME=V ..." from the profile, added to every build */
  unsigned tuning_gen;  /* bumped by af_cl_set_tuning: queues drop kernels built before */
  char *cache_dir;      /* disk cache folder, NULL = disabled */
  pthread_mutex_t lock; /* guards progs and the profile table */
  af_prog_entry *progs;
  struct af_devprofile *profile; /* tuned parameters in effect (cl/devprofile.h) */
  struct af_prof_entry *prof;    /* per-kernel accumulated times */
  int nprof, capprof;
  cl_mem half_lut; /* 65536 floats: the value of every fp16 bit pattern (lazy, under lock) */
  /* model stages reading weights in place take turns (af_weights_turn_*):
   * a ticket lock, first come first served */
  pthread_mutex_t turn_lock;
  pthread_cond_t turn_cv;
  unsigned turn_next, turn_serving;
  _Atomic unsigned long long allocs; /* device buffers created so far (af_cl_allocations) */
} af_cl;

/* Opens the selected device (see af_cl_select), creates the context, and
 * selects and applies its device profile (cl/devprofile.h; a bad profile file
 * is an AF_ERR_CONFIG).  Caller frees with af_cl_close. */
int af_cl_open(af_cl **out, const char *selector);
/* Same with the profile file given by the caller (a pipeline's `profile:`);
 * NULL or "" = the usual choice (ARTFLOW_PROFILE_FILE, else by device). */
int af_cl_open_profile(af_cl **out, const char *selector, const char *profile_file);
/* Prints the profile table (when profiling) and releases everything. NULL ok. */
void af_cl_close(af_cl *cl);

/* Sets the tuning defines appended to every program build (e.g. from a device
 * profile).  Copies the string.  Programs already built are unaffected; a
 * queue's next af_queue_kernel returns kernels built with the new defines.
 * Not to be called while another thread runs kernels on cl. */
int af_cl_set_tuning(af_cl *cl, const char *defines);

/* Integer value of "-DNAME=V" in the tuning defines (a host-side tuning knob
 * such as a work-group size), or def when absent or not a positive integer. */
int af_cl_tuning_int(const af_cl *cl, const char *name, int def);
/* The same where 0 is a value (a switch such as AF_VIT_PACK=0): 0..4096. */
int af_cl_tuning_int0(const af_cl *cl, const char *name, int def);

/* Returns (building or loading if needed) the program for kernel source file
 * `file` (a name in cl/kernels/, e.g. "ops.cl") with extra `options`.  The
 * program is owned by af_cl (do not release).  On a compile failure returns
 * AF_ERR_BUILD with the build log in the error message. */
int af_cl_program(af_cl *cl, const char *file, const char *options, cl_program *out);

/* Source text of a kernel file: from $AF_KERNEL_DIR when set, else embedded.
 * *text is malloc'd (caller frees). */
int af_cl_source(const char *file, char **text, size_t *len);

/* Allocates a device buffer; a size over the device's max allocation or a
 * failed allocation returns AF_ERR_DEVICE_MEM with the sizes named. */
int af_cl_alloc(af_cl *cl, cl_mem_flags flags, size_t bytes, void *host, cl_mem *out);
/* Device buffers af_cl_alloc has created on cl so far (the tests check that a
 * stage's process() adds none).  Buffers CLBlast makes for itself are not
 * counted. */
unsigned long long af_cl_allocations(const af_cl *cl);

/* The device table of the fp32 value of each of the 65536 fp16 bit patterns
 * (the CPU GEMV kernels read Q8_0/Q4_0 block scales through it: one load,
 * folded into the FMA as a broadcast, instead of a conversion per block).
 * Made on first use, owned by cl. */
int af_cl_half_lut(af_cl *cl, cl_mem *out);

/* ---- per-thread queue with a kernel cache ---- */
typedef struct af_kernel_entry af_kernel_entry;

/* Scratch buffers a queue keeps between calls, one per purpose: ops that need
 * a temporary device buffer take it from here, so that steady-state work
 * allocates nothing (a buffer grows when a larger one is asked for). */
typedef enum af_scratch_slot {
  AF_SCRATCH_GEMM_PACK = 0, /* the own GEMM's packed B panels */
  AF_SCRATCH_WIDEN,         /* fp16 weights widened to fp32 for a GEMM */
  AF_SCRATCH_ATTN,          /* attention scores of the GEMM path */
  AF_SCRATCH_ZERO,          /* a small buffer for zero-K GEMMs */
  AF_SCRATCH_QX,            /* activations quantised to int8 (cl/gemm_q8.h) */
  AF_SCRATCH_COUNT
} af_scratch_slot;

typedef struct af_queue {
  af_cl *cl;
  cl_command_queue q;
  af_kernel_entry *kernels;
  cl_mem scratch[AF_SCRATCH_COUNT];
  size_t scratch_bytes[AF_SCRATCH_COUNT];
  int reserving; /* af_queue_reserve_begin: enqueue nothing, size everything */
} af_queue;

int af_queue_new(af_cl *cl, af_queue **out);
void af_queue_free(af_queue *q);

/* The queue's scratch buffer for `slot`, at least `bytes` long (grown, i.e.
 * reallocated, when smaller; the old one is released once the queue is done
 * with it).  Borrowed: valid until the next call for the same slot.  Work on
 * one in-order queue never overlaps, so every op may use its slot freely. */
int af_queue_scratch(af_queue *q, af_scratch_slot slot, size_t bytes, cl_mem *out);

/* Reserve mode, for a stage's prepare(): between begin and end, kernel
 * launches, copies and CLBlast calls on q do nothing (reads leave the host
 * buffer as it is) while every buffer a real call would need is allocated
 * and every kernel it would use is built.  Running a model's worst-case call
 * once in this mode sizes its buffers, so the real calls allocate nothing. */
void af_queue_reserve_begin(af_queue *q);
void af_queue_reserve_end(af_queue *q);

/* Kernel `name` from source file `file` built with `options` (NULL = none).
 * Cached in the queue; owned by it (do not release). */
int af_queue_kernel(af_queue *q, const char *file, const char *name, const char *options, cl_kernel *out);

/* Enqueues a kernel over `dims` dimensions.  `global` is rounded up to a
 * multiple of `local` (when local != NULL) because PoCL lacks non-uniform
 * work-groups; kernels must bounds-check.  `label` names the kernel in the
 * ARTFLOW_PROFILE table (NULL = the kernel's own name). */
int af_queue_run(af_queue *q, cl_kernel k, cl_uint dims, const size_t *global, const size_t *local,
                 const char *label);

/* Records the time of an event under `label` when profiling (used for CLBlast
 * calls); releases the event. */
void af_queue_profile_event(af_queue *q, cl_event ev, const char *label);

int af_queue_finish(af_queue *q);

/* Blocking host<->device copies. */
int af_queue_write(af_queue *q, cl_mem dst, size_t off, size_t bytes, const void *src);
int af_queue_read(af_queue *q, cl_mem src, size_t off, size_t bytes, void *dst);

/* Sets kernel arguments; returns the CL error with file:line. */
#define AF_ARG(rc, k, i, v, label) AF_CL_TRY(rc, clSetKernelArg((k), (i), sizeof(v), &(v)), label)

#ifdef __cplusplus
}
#endif
#endif
