/* OpenCL runtime: device enumeration and selection, context, buffers, queues
 * with kernel caches, and event profiling.  Program building and the on-disk
 * program cache live in cl/program.c. */
#include "cl/runtime.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl/devprofile.h"
#include "cl/runtime_internal.h"
#include "formats/quant.h"

/* PoCL fails silently (CL_DEVICE_NOT_FOUND) when it cannot create its kernel
 * cache folder.  When neither POCL_CACHE_DIR nor a usable XDG/HOME cache exists,
 * point it at a private folder under TMPDIR before the ICD loader starts. */
static void pocl_cache_fallback(void) {
  if (getenv("POCL_CACHE_DIR")) return;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char path[4096];
  if (xdg && *xdg)
    snprintf(path, sizeof path, "%s", xdg);
  else if (home && *home)
    snprintf(path, sizeof path, "%s/.cache", home);
  else
    path[0] = 0;
  if (path[0]) {
    mkdir(path, 0755); /* may exist already */
    if (access(path, W_OK | X_OK) == 0) return;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/artflow-pocl-%ld", tmp && *tmp ? tmp : "/tmp", (long)getuid());
  mkdir(path, 0700);
  setenv("POCL_CACHE_DIR", path, 0);
}

static void str_info(cl_device_id d, cl_device_info what, char *buf, size_t n) {
  buf[0] = 0;
  if (clGetDeviceInfo(d, what, n, buf, NULL) != CL_SUCCESS) buf[0] = 0;
  buf[n - 1] = 0;
  /* trim trailing spaces some drivers leave */
  for (size_t l = strlen(buf); l > 0 && isspace((unsigned char)buf[l - 1]); l--) buf[l - 1] = 0;
}

static void fill_info(cl_platform_id p, cl_device_id d, int index, af_device_info *i) {
  memset(i, 0, sizeof *i);
  i->index = index;
  clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof i->platform, i->platform, NULL);
  clGetPlatformInfo(p, CL_PLATFORM_VERSION, sizeof i->platform_version, i->platform_version, NULL);
  i->platform[sizeof i->platform - 1] = 0;
  i->platform_version[sizeof i->platform_version - 1] = 0;
  str_info(d, CL_DEVICE_NAME, i->name, sizeof i->name);
  str_info(d, CL_DEVICE_VENDOR, i->vendor, sizeof i->vendor);
  str_info(d, CL_DRIVER_VERSION, i->driver, sizeof i->driver);
  str_info(d, CL_DEVICE_VERSION, i->version, sizeof i->version);
  str_info(d, CL_DEVICE_OPENCL_C_VERSION, i->c_version, sizeof i->c_version);
  clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof i->type, &i->type, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof i->compute_units, &i->compute_units, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof i->clock_mhz, &i->clock_mhz, NULL);
  clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof i->global_mem, &i->global_mem, NULL);
  clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof i->local_mem, &i->local_mem, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof i->max_alloc, &i->max_alloc, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof i->max_wg, &i->max_wg, NULL);
  size_t n = 0;
  if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &n) == CL_SUCCESS && n > 0) {
    char *ext = malloc(n + 1);
    if (ext && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, n, ext, NULL) == CL_SUCCESS) {
      ext[n] = 0;
      i->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
      i->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    }
    free(ext);
  }
  i->is_cpu = (i->type & CL_DEVICE_TYPE_CPU) != 0;
  i->is_gpu = (i->type & CL_DEVICE_TYPE_GPU) != 0;
}

int af_cl_enumerate(af_device_ref **out, int *count) {
  *out = NULL;
  *count = 0;
  pocl_cache_fallback();
  cl_uint np = 0;
  cl_int e = clGetPlatformIDs(0, NULL, &np);
  if (e == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (e == CL_SUCCESS && np == 0))
    return af_err(AF_ERR_NO_PLATFORM,
                  "no OpenCL platform found: install an OpenCL driver (for the CPU: "
                  "'apt-get install pocl-opencl-icd'; for a GPU: the vendor's ICD in "
                  "/etc/OpenCL/vendors/)");
  AF_CL_CHECK(e);
  cl_platform_id *ps = calloc(np, sizeof *ps);
  af_device_ref *refs = NULL;
  int n = 0, cap = 0, rc = 0;
  if (!ps) return af_err(AF_ERR_NOMEM, "out of memory listing OpenCL platforms");
  AF_CL_TRY(rc, clGetPlatformIDs(np, ps, NULL), out);
  for (cl_uint p = 0; p < np; p++) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
    cl_device_id *ds = calloc(nd, sizeof *ds);
    if (!ds) {
      rc = af_err(AF_ERR_NOMEM, "out of memory listing OpenCL devices");
      goto out;
    }
    if (clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, nd, ds, NULL) == CL_SUCCESS) {
      for (cl_uint d = 0; d < nd; d++) {
        if (n == cap) {
          cap = cap ? cap * 2 : 8;
          af_device_ref *r = realloc(refs, cap * sizeof *r);
          if (!r) {
            free(ds);
            rc = af_err(AF_ERR_NOMEM, "out of memory listing OpenCL devices");
            goto out;
          }
          refs = r;
        }
        refs[n].platform = ps[p];
        refs[n].device = ds[d];
        fill_info(ps[p], ds[d], n, &refs[n].info);
        n++;
      }
    }
    free(ds);
  }
  if (n == 0) {
    rc = af_err(AF_ERR_NO_DEVICE,
                "OpenCL platforms exist but report no device (PoCL reports none when it cannot "
                "write its kernel cache: set POCL_CACHE_DIR to a writable folder)");
    goto out;
  }
out:
  free(ps);
  if (rc) {
    free(refs);
    return rc;
  }
  *out = refs;
  *count = n;
  return 0;
}

static int icontains(const char *hay, const char *needle) {
  size_t nl = strlen(needle);
  for (const char *h = hay; *h; h++)
    if (strncasecmp(h, needle, nl) == 0) return 1;
  return nl == 0;
}

int af_cl_select(const char *selector, af_device_ref *out) {
  af_device_ref *refs;
  int n, rc = af_cl_enumerate(&refs, &n);
  if (rc) return rc;
  if (!selector || !*selector) selector = getenv("ARTFLOW_DEVICE");
  int pick = -1;
  if (selector && *selector) {
    char *end;
    long v = strtol(selector, &end, 10);
    if (*end == 0) {
      if (v < 0 || v >= n) {
        rc = af_err(AF_ERR_NO_DEVICE, "device index %ld out of range: %d device(s) (see 'artflow devices')",
                    v, n);
        goto out;
      }
      pick = (int)v;
    } else {
      for (int i = 0; i < n && pick < 0; i++) {
        char full[800];
        snprintf(full, sizeof full, "%s / %s / %s", refs[i].info.platform, refs[i].info.name,
                 refs[i].info.vendor);
        if (icontains(full, selector)) pick = i;
      }
      if (pick < 0) {
        rc = af_err(AF_ERR_NO_DEVICE, "no OpenCL device matches '%s' (see 'artflow devices')", selector);
        goto out;
      }
    }
  } else {
    for (int i = 0; i < n && pick < 0; i++)
      if (refs[i].info.is_gpu) pick = i;
    for (int i = 0; i < n && pick < 0; i++)
      if (refs[i].info.is_cpu) pick = i;
    if (pick < 0) pick = 0;
  }
  *out = refs[pick];
out:
  free(refs);
  return rc;
}

int af_cl_open(af_cl **out, const char *selector) {
  return af_cl_open_profile(out, selector, NULL);
}

int af_cl_open_profile(af_cl **out, const char *selector, const char *profile_file) {
  *out = NULL;
  af_device_ref ref;
  int rc = af_cl_select(selector, &ref);
  if (rc) return rc;
  af_cl *cl = calloc(1, sizeof *cl);
  if (!cl) return af_err(AF_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&cl->lock, NULL);
  pthread_mutex_init(&cl->turn_lock, NULL);
  pthread_cond_init(&cl->turn_cv, NULL);
  cl->platform = ref.platform;
  cl->device = ref.device;
  cl->info = ref.info;
  const char *prof = getenv("ARTFLOW_PROFILE");
  cl->profiling = prof && *prof && strcmp(prof, "0") != 0;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ref.platform, 0};
  cl_int e;
  cl->ctx = clCreateContext(props, 1, &ref.device, NULL, NULL, &e);
  if (e != CL_SUCCESS) {
    rc = af_err(e, "cannot create an OpenCL context on '%s': %s", ref.info.name, af_strerror(e));
    af_cl_close(cl);
    return rc;
  }
  af_cl_cache_init(cl);
  cl->profile = calloc(1, sizeof *cl->profile);
  if (!cl->profile) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (!rc) rc = af_devprofile_select(&cl->info, profile_file, cl->profile);
  if (!rc) rc = af_devprofile_apply(cl, cl->profile);
  if (rc) {
    af_cl_close(cl);
    return rc;
  }
  *out = cl;
  return 0;
}

void af_cl_close(af_cl *cl) {
  if (!cl) return;
  if (cl->profiling && cl->nprof) af_cl_profile_print(cl, stderr);
  af_cl_programs_free(cl);
  if (cl->half_lut) clReleaseMemObject(cl->half_lut);
  free(cl->prof);
  free(cl->profile);
  free(cl->tuning_defines);
  free(cl->cache_dir);
  if (cl->ctx) clReleaseContext(cl->ctx);
  pthread_mutex_destroy(&cl->lock);
  pthread_mutex_destroy(&cl->turn_lock);
  pthread_cond_destroy(&cl->turn_cv);
  free(cl);
}

int af_cl_half_lut(af_cl *cl, cl_mem *out) {
  int rc = 0;
  pthread_mutex_lock(&cl->lock);
  if (!cl->half_lut) {
    float *t = malloc(65536 * sizeof *t);
    if (!t) rc = af_err(AF_ERR_NOMEM, "out of memory");
    for (uint32_t h = 0; t && h < 65536; h++) t[h] = af_f16_to_f32((uint16_t)h);
    if (!rc)
      rc = af_cl_alloc(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, 65536 * sizeof *t, t, &cl->half_lut);
    free(t);
  }
  *out = cl->half_lut;
  pthread_mutex_unlock(&cl->lock);
  return rc;
}

int af_cl_set_tuning(af_cl *cl, const char *defines) {
  char *d = defines ? strdup(defines) : NULL;
  if (defines && !d) return af_err(AF_ERR_NOMEM, "out of memory");
  pthread_mutex_lock(&cl->lock);
  free(cl->tuning_defines);
  cl->tuning_defines = d;
  cl->tuning_gen++;
  pthread_mutex_unlock(&cl->lock);
  return 0;
}

int af_cl_tuning_int(const af_cl *cl, const char *name, int def) {
  if (!cl->tuning_defines) return def;
  char key[80];
  snprintf(key, sizeof key, "-D%s=", name);
  const char *p = strstr(cl->tuning_defines, key);
  if (!p) return def;
  long v = strtol(p + strlen(key), NULL, 10);
  return v > 0 && v <= 4096 ? (int)v : def;
}

int af_cl_tuning_int0(const af_cl *cl, const char *name, int def) {
  char key[80];
  snprintf(key, sizeof key, "-D%s=", name);
  for (const char *p = cl && cl->tuning_defines ? strstr(cl->tuning_defines, key) : NULL; p;
       p = strstr(p + 1, key)) {
    if (p != cl->tuning_defines && p[-1] != ' ') continue;
    char *end;
    long v = strtol(p + strlen(key), &end, 10);
    if ((*end == 0 || *end == ' ') && v >= 0 && v <= 4096) return (int)v;
  }
  return def;
}

int af_cl_alloc(af_cl *cl, cl_mem_flags flags, size_t bytes, void *host, cl_mem *out) {
  *out = NULL;
  if (bytes == 0) bytes = 16; /* zero-size buffers are invalid in OpenCL */
  if (bytes > cl->info.max_alloc)
    return af_err(AF_ERR_DEVICE_MEM,
                  "a buffer of %.1f MiB exceeds the largest allocation '%s' allows (%.1f MiB): "
                  "use a smaller batch or fp16/quantised weights",
                  bytes / 1048576.0, cl->info.name, cl->info.max_alloc / 1048576.0);
  cl_int e;
  cl_mem m = clCreateBuffer(cl->ctx, flags, bytes, host, &e);
  if (e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES || e == CL_OUT_OF_HOST_MEMORY ||
      e == CL_INVALID_BUFFER_SIZE)
    return af_err(AF_ERR_DEVICE_MEM, "out of device memory allocating %.1f MiB on '%s' (%s)",
                  bytes / 1048576.0, cl->info.name, af_strerror(e));
  AF_CL_CHECK(e);
  cl->allocs++;
  *out = m;
  return 0;
}

unsigned long long af_cl_allocations(const af_cl *cl) {
  return cl ? cl->allocs : 0;
}

/* ---------------- queues ---------------- */

struct af_kernel_entry {
  af_kernel_entry *next;
  char *file, *name, *options;
  cl_kernel k;
  unsigned tuning_gen; /* cl->tuning_gen the kernel was built under */
};

int af_queue_new(af_cl *cl, af_queue **out) {
  *out = NULL;
  af_queue *q = calloc(1, sizeof *q);
  if (!q) return af_err(AF_ERR_NOMEM, "out of memory");
  q->cl = cl;
  cl_int e;
  q->q = clCreateCommandQueue(cl->ctx, cl->device, cl->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &e);
  if (e != CL_SUCCESS) {
    free(q);
    return af_err(e, "cannot create a command queue on '%s': %s", cl->info.name, af_strerror(e));
  }
  *out = q;
  return 0;
}

void af_queue_free(af_queue *q) {
  if (!q) return;
  if (q->q) clFinish(q->q);
  for (int i = 0; i < AF_SCRATCH_COUNT; i++)
    if (q->scratch[i]) clReleaseMemObject(q->scratch[i]);
  for (af_kernel_entry *k = q->kernels, *nx; k; k = nx) {
    nx = k->next;
    clReleaseKernel(k->k);
    free(k->file);
    free(k->name);
    free(k->options);
    free(k);
  }
  if (q->q) clReleaseCommandQueue(q->q);
  free(q);
}

static int streq0(const char *a, const char *b) {
  return strcmp(a ? a : "", b ? b : "") == 0;
}

int af_queue_kernel(af_queue *q, const char *file, const char *name, const char *options, cl_kernel *out) {
  af_kernel_entry *stale = NULL;
  for (af_kernel_entry *k = q->kernels; k; k = k->next)
    if (!strcmp(k->name, name) && !strcmp(k->file, file) && streq0(k->options, options)) {
      if (k->tuning_gen != q->cl->tuning_gen) { /* built under other tuning defines */
        stale = k;
        break;
      }
      *out = k->k;
      return 0;
    }
  cl_program prog;
  int rc = af_cl_program(q->cl, file, options, &prog);
  if (rc) return rc;
  cl_int e;
  cl_kernel k = clCreateKernel(prog, name, &e);
  if (e != CL_SUCCESS) return af_err(e, "kernel '%s' not found in %s: %s", name, file, af_strerror(e));
  if (stale) {
    clReleaseKernel(stale->k);
    stale->k = k;
    stale->tuning_gen = q->cl->tuning_gen;
    *out = k;
    return 0;
  }
  af_kernel_entry *ent = calloc(1, sizeof *ent);
  if (!ent || !(ent->file = strdup(file)) || !(ent->name = strdup(name)) ||
      (options && !(ent->options = strdup(options)))) {
    clReleaseKernel(k);
    if (ent) {
      free(ent->file);
      free(ent->name);
      free(ent);
    }
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  ent->k = k;
  ent->tuning_gen = q->cl->tuning_gen;
  ent->next = q->kernels;
  q->kernels = ent;
  *out = k;
  return 0;
}

int af_queue_scratch(af_queue *q, af_scratch_slot slot, size_t bytes, cl_mem *out) {
  *out = NULL;
  if ((unsigned)slot >= AF_SCRATCH_COUNT) return af_err(AF_ERR_INVALID, "scratch slot %d", (int)slot);
  if (bytes == 0) bytes = 16;
  if (!q->scratch[slot] || q->scratch_bytes[slot] < bytes) {
    cl_mem m = NULL;
    int rc = af_cl_alloc(q->cl, CL_MEM_READ_WRITE, bytes, NULL, &m);
    if (rc) return rc;
    /* kernels still queued keep the old buffer alive until they are done */
    if (q->scratch[slot]) clReleaseMemObject(q->scratch[slot]);
    q->scratch[slot] = m;
    q->scratch_bytes[slot] = bytes;
  }
  *out = q->scratch[slot];
  return 0;
}

void af_queue_reserve_begin(af_queue *q) {
  if (q) q->reserving = 1;
}

void af_queue_reserve_end(af_queue *q) {
  if (q) q->reserving = 0;
}

int af_queue_run(af_queue *q, cl_kernel k, cl_uint dims, const size_t *global, const size_t *local,
                 const char *label) {
  if (q->reserving) return 0;
  size_t g[3];
  for (cl_uint i = 0; i < dims; i++) {
    g[i] = global[i];
    if (local && local[i] > 0) g[i] = (g[i] + local[i] - 1) / local[i] * local[i];
    if (g[i] == 0) return 0; /* empty launch: nothing to do */
  }
  cl_event ev = NULL;
  cl_int e = clEnqueueNDRangeKernel(q->q, k, dims, NULL, g, local, 0, NULL, q->cl->profiling ? &ev : NULL);
  if (e != CL_SUCCESS) {
    char kname[128] = "?";
    clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof kname, kname, NULL);
    kname[sizeof kname - 1] = 0;
    if (e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES)
      return af_err(AF_ERR_DEVICE_MEM, "out of device resources running kernel '%s' (%s)", kname,
                    af_strerror(e));
    return af_err(e, "cannot enqueue kernel '%s': %s", kname, af_strerror(e));
  }
  if (ev) {
    char kname[128];
    if (!label) {
      clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof kname, kname, NULL);
      kname[sizeof kname - 1] = 0;
      label = kname;
    }
    af_queue_profile_event(q, ev, label);
  }
  return 0;
}

int af_queue_finish(af_queue *q) {
  AF_CL_CHECK(clFinish(q->q));
  return 0;
}

int af_queue_write(af_queue *q, cl_mem dst, size_t off, size_t bytes, const void *src) {
  if (bytes == 0 || q->reserving) return 0;
  AF_CL_CHECK(clEnqueueWriteBuffer(q->q, dst, CL_TRUE, off, bytes, src, 0, NULL, NULL));
  return 0;
}

int af_queue_read(af_queue *q, cl_mem src, size_t off, size_t bytes, void *dst) {
  if (bytes == 0 || q->reserving) return 0;
  AF_CL_CHECK(clEnqueueReadBuffer(q->q, src, CL_TRUE, off, bytes, dst, 0, NULL, NULL));
  return 0;
}
