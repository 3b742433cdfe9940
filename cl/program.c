/* Program building with an in-memory and an on-disk cache.
 *
 * Key = device name, driver version, platform version, full build options
 * (caller options + tuning defines) and the source text itself.  Disk entries
 * live in <cache_dir>/<16 hex digits of the key hash>.clbin:
 *   "AFCLBIN1" | u32 key length | key bytes | u64 binary size | u32 crc32 | binary
 * Any mismatch (magic, key, size, CRC) or a load/build failure of the binary
 * makes us rebuild from source and rewrite the entry: a cache file is never
 * trusted beyond what it proves. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cl/kernels.h"
#include "cl/runtime_internal.h"

struct af_prog_entry {
  af_prog_entry *next;
  char *file;
  char *options; /* full options as built */
  cl_program prog;
};

static const char MAGIC[8] = {'A', 'F', 'C', 'L', 'B', 'I', 'N', '1'};

int af_cl_source(const char *file, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  if (strchr(file, '/') || strstr(file, ".."))
    return af_err(AF_ERR_INVALID, "kernel file name '%s' must be a plain name", file);
  const char *dir = getenv("AF_KERNEL_DIR");
  if (dir && *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    if (!f) return af_err(AF_ERR_IO, "%s: %s (AF_KERNEL_DIR is set)", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      fclose(f);
      return af_err(AF_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    buf[n] = 0;
    *text = buf;
    *len = (size_t)n;
    return 0;
  }
  for (const af_kernel_source *s = af_kernel_sources; s->name; s++)
    if (!strcmp(s->name, file)) {
      char *buf = malloc(s->len + 1);
      if (!buf) return af_err(AF_ERR_NOMEM, "out of memory");
      memcpy(buf, s->text, s->len + 1);
      *text = buf;
      *len = s->len;
      return 0;
    }
  return af_err(AF_ERR_NOT_FOUND, "kernel source '%s' is not built into this binary", file);
}

void af_cl_cache_init(af_cl *cl) {
  const char *off = getenv("ARTFLOW_NO_DISK_CACHE");
  if (off && *off && strcmp(off, "0")) return;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char path[4096];
  if (xdg && *xdg)
    snprintf(path, sizeof path, "%s/artflow", xdg);
  else if (home && *home)
    snprintf(path, sizeof path, "%s/.cache/artflow", home);
  else
    return;
  /* create parents one level deep (~/.cache may not exist yet) */
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", path);
  char *slash = strrchr(parent, '/');
  if (slash) {
    *slash = 0;
    mkdir(parent, 0755);
  }
  if (mkdir(path, 0755) != 0 && errno != EEXIST) return;
  if (access(path, W_OK) != 0) return;
  cl->cache_dir = strdup(path);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* key string: everything that must match for a binary to be reusable */
static char *make_key(af_cl *cl, const char *file, const char *opts, const char *src, size_t srclen) {
  uint64_t h = fnv1a(0xcbf29ce484222325ull, src, srclen);
  size_t n = strlen(cl->info.name) + strlen(cl->info.driver) + strlen(cl->info.platform_version) +
             strlen(file) + strlen(opts) + 96;
  char *key = malloc(n);
  if (key)
    snprintf(key, n, "%s|%s|%s|%s|%s|%016llx", cl->info.name, cl->info.driver, cl->info.platform_version,
             file, opts, (unsigned long long)h);
  return key;
}

static unsigned char *read_cached(const char *path, const char *key, size_t *binlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *bin = NULL;
  char magic[8];
  uint32_t klen = 0, crc = 0;
  uint64_t blen = 0;
  size_t keylen = strlen(key);
  char *k = NULL;
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8) || fread(&klen, 4, 1, f) != 1 || klen != keylen)
    goto bad;
  k = malloc(klen);
  if (!k || fread(k, 1, klen, f) != klen || memcmp(k, key, klen)) goto bad;
  if (fread(&blen, 8, 1, f) != 1 || fread(&crc, 4, 1, f) != 1 || blen == 0 || blen > (1ull << 31)) goto bad;
  bin = malloc(blen);
  if (!bin || fread(bin, 1, blen, f) != blen) goto bad;
  if ((uint32_t)crc32(0L, bin, (uInt)blen) != crc) goto bad;
  if (fgetc(f) != EOF) goto bad; /* trailing garbage: not a file we wrote */
  free(k);
  fclose(f);
  *binlen = blen;
  return bin;
bad:
  free(k);
  free(bin);
  fclose(f);
  return NULL;
}

static void write_cached(const char *path, const char *key, const unsigned char *bin, size_t blen) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  uint32_t klen = (uint32_t)strlen(key), crc = (uint32_t)crc32(0L, bin, (uInt)blen);
  uint64_t b64 = blen;
  int ok = fwrite(MAGIC, 1, 8, f) == 8 && fwrite(&klen, 4, 1, f) == 1 && fwrite(key, 1, klen, f) == klen &&
           fwrite(&b64, 8, 1, f) == 1 && fwrite(&crc, 4, 1, f) == 1 && fwrite(bin, 1, blen, f) == blen;
  if (fclose(f) != 0) ok = 0;
  if (ok)
    rename(tmp, path); /* atomic: readers see the old or the new file */
  else
    unlink(tmp);
}

static int build_log_error(af_cl *cl, cl_program p, const char *file, const char *opts) {
  size_t n = 0;
  clGetProgramBuildInfo(p, cl->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
  char *log = malloc(n + 1);
  if (log && clGetProgramBuildInfo(p, cl->device, CL_PROGRAM_BUILD_LOG, n, log, NULL) == CL_SUCCESS)
    log[n] = 0;
  else if (log)
    log[0] = 0;
  int rc = af_err(AF_ERR_BUILD, "cannot compile kernel file %s for '%s' (options: %s):\n%s", file,
                  cl->info.name, opts[0] ? opts : "none", log ? log : "(no build log)");
  free(log);
  return rc;
}

static int build(af_cl *cl, const char *file, const char *opts, cl_program *out) {
  char *src = NULL, *key = NULL;
  size_t srclen = 0;
  unsigned char *bin = NULL;
  cl_program p = NULL;
  char path[4200] = "";
  int rc = af_cl_source(file, &src, &srclen);
  if (rc) return rc;
  key = make_key(cl, file, opts, src, srclen);
  if (!key) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (cl->cache_dir) {
    snprintf(path, sizeof path, "%s/%016llx.clbin", cl->cache_dir,
             (unsigned long long)fnv1a(0xcbf29ce484222325ull, key, strlen(key)));
    size_t blen = 0;
    bin = read_cached(path, key, &blen);
    if (bin) {
      cl_int e, st;
      const unsigned char *bp = bin;
      p = clCreateProgramWithBinary(cl->ctx, 1, &cl->device, &blen, &bp, &st, &e);
      if (e == CL_SUCCESS && st == CL_SUCCESS &&
          clBuildProgram(p, 1, &cl->device, opts, NULL, NULL) == CL_SUCCESS)
        goto done;
      if (p) clReleaseProgram(p); /* stale or corrupt binary: rebuild from source */
      p = NULL;
    }
  }
  cl_int e;
  const char *sp = src;
  p = clCreateProgramWithSource(cl->ctx, 1, &sp, &srclen, &e);
  AF_CL_TRY(rc, e, out);
  e = clBuildProgram(p, 1, &cl->device, opts, NULL, NULL);
  if (e == CL_BUILD_PROGRAM_FAILURE || e == CL_INVALID_BUILD_OPTIONS) {
    rc = build_log_error(cl, p, file, opts);
    goto out;
  }
  AF_CL_TRY(rc, e, out);
  if (path[0]) {
    size_t blen = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof blen, &blen, NULL) == CL_SUCCESS && blen > 0) {
      unsigned char *b = malloc(blen);
      if (b && clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof b, &b, NULL) == CL_SUCCESS)
        write_cached(path, key, b, blen);
      free(b);
    }
  }
done:
  *out = p;
  p = NULL;
out:
  if (p) clReleaseProgram(p);
  free(bin);
  free(key);
  free(src);
  return rc;
}

int af_cl_program(af_cl *cl, const char *file, const char *options, cl_program *out) {
  *out = NULL;
  pthread_mutex_lock(&cl->lock);
  size_t n = strlen(options ? options : "") + strlen(cl->tuning_defines ? cl->tuning_defines : "") + 64;
  char *opts = malloc(n);
  int rc = 0;
  if (!opts) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  snprintf(opts, n, "-cl-std=CL1.2 %s %s", options ? options : "",
           cl->tuning_defines ? cl->tuning_defines : "");
  for (af_prog_entry *e = cl->progs; e; e = e->next)
    if (!strcmp(e->file, file) && !strcmp(e->options, opts)) {
      *out = e->prog;
      goto out;
    }
  cl_program p;
  rc = build(cl, file, opts, &p);
  if (rc) goto out;
  af_prog_entry *ent = calloc(1, sizeof *ent);
  if (!ent || !(ent->file = strdup(file))) {
    free(ent);
    clReleaseProgram(p);
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  ent->options = opts;
  opts = NULL;
  ent->prog = p;
  ent->next = cl->progs;
  cl->progs = ent;
  *out = p;
out:
  free(opts);
  pthread_mutex_unlock(&cl->lock);
  return rc;
}

void af_cl_programs_free(af_cl *cl) {
  for (af_prog_entry *e = cl->progs, *nx; e; e = nx) {
    nx = e->next;
    clReleaseProgram(e->prog);
    free(e->file);
    free(e->options);
    free(e);
  }
  cl->progs = NULL;
}
