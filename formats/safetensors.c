/* safetensors reader and shard-index parser (see safetensors.h).  The JSON
 * header is parsed with cJSON; every tensor's byte range is checked against
 * the data area and against dtype x shape. */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artflow/status.h"

#define MAX_HEADER (16u << 20) /* a 7B shard's header is ~30 KB */

struct af_safetensors {
  char *path;
  const uint8_t *base;
  uint64_t size;
  int mapped;
  cJSON *json; /* owns the tensor names */
  af_tsrc_tensor *t;
  size_t n;
};

static int parse_tensor(af_safetensors *st, const cJSON *it, const uint8_t *data, uint64_t data_size,
                        af_tsrc_tensor *t) {
  const char *nm = it->string;
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
  if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
      cJSON_GetArraySize(of) != 2)
    return af_err(AF_ERR_FORMAT, "%s: tensor '%s': header entry needs dtype, shape, data_offsets", st->path,
                  nm);
  memset(t, 0, sizeof *t);
  t->name = nm;
  t->file = st->path;
  if (af_tsrc_dtype_parse(dt->valuestring, &t->dtype))
    return af_err(AF_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported dtype '%s'", st->path, nm,
                  dt->valuestring);
  int nd = cJSON_GetArraySize(sh);
  if (nd > AF_TSRC_MAX_DIMS)
    return af_err(AF_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions", st->path, nm, nd);
  t->ndim = nd;
  uint64_t numel = 1;
  int ovf = 0;
  for (int i = 0; i < nd; i++) {
    const cJSON *d = cJSON_GetArrayItem(sh, i);
    if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 ||
        d->valuedouble != (double)(int64_t)d->valuedouble)
      return af_err(AF_ERR_FORMAT, "%s: tensor '%s': bad shape", st->path, nm);
    t->shape[i] = (int64_t)d->valuedouble;
    ovf |= __builtin_mul_overflow(numel, (uint64_t)t->shape[i], &numel);
  }
  int64_t stride = 1;
  for (int i = nd - 1; i >= 0; i--) {
    t->strides[i] = stride;
    stride *= t->shape[i] ? t->shape[i] : 1;
  }
  double b0 = cJSON_GetArrayItem(of, 0)->valuedouble, b1 = cJSON_GetArrayItem(of, 1)->valuedouble;
  if (!cJSON_IsNumber(cJSON_GetArrayItem(of, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(of, 1)) || b0 < 0 ||
      b1 < b0 || b1 > (double)data_size)
    return af_err(AF_ERR_FORMAT, "%s: tensor '%s': data_offsets [%.0f, %.0f] outside the %llu-byte data area",
                  st->path, nm, b0, b1, (unsigned long long)data_size);
  uint64_t nbytes;
  ovf |= __builtin_mul_overflow(numel, (uint64_t)af_tsrc_dtype_size(t->dtype), &nbytes);
  if (ovf || nbytes != (uint64_t)b1 - (uint64_t)b0)
    return af_err(AF_ERR_FORMAT, "%s: tensor '%s': %llu bytes at data_offsets but %s x shape needs %llu",
                  st->path, nm, (unsigned long long)((uint64_t)b1 - (uint64_t)b0), dt->valuestring,
                  (unsigned long long)nbytes);
  t->numel = numel;
  t->nbytes = nbytes;
  t->contiguous = 1;
  t->data = numel ? data + (uint64_t)b0 : NULL;
  return 0;
}

static int parse(af_safetensors *st) {
  if (st->size < 8)
    return af_err(AF_ERR_FORMAT, "%s: not a PyTorch or safetensors file (too short)", st->path);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | st->base[i];
  if (hl > MAX_HEADER || hl > st->size - 8)
    return af_err(AF_ERR_FORMAT,
                  "%s: not a PyTorch or safetensors file, or truncated (safetensors header "
                  "length %llu, file %llu bytes)",
                  st->path, (unsigned long long)hl, (unsigned long long)st->size);
  st->json = cJSON_ParseWithLength((const char *)st->base + 8, (size_t)hl);
  if (!cJSON_IsObject(st->json))
    return af_err(AF_ERR_FORMAT, "%s: safetensors header is not a JSON object", st->path);
  int cnt = cJSON_GetArraySize(st->json);
  st->t = calloc(cnt ? (size_t)cnt : 1, sizeof *st->t);
  if (!st->t) return af_err(AF_ERR_NOMEM, "%s: out of memory", st->path);
  const uint8_t *data = st->base + 8 + hl;
  uint64_t data_size = st->size - 8 - hl;
  const cJSON *it;
  cJSON_ArrayForEach(it, st->json) {
    if (!it->string) return af_err(AF_ERR_FORMAT, "%s: header entry without a name", st->path);
    if (!strcmp(it->string, "__metadata__")) continue;
    int rc = parse_tensor(st, it, data, data_size, &st->t[st->n]);
    if (rc) return rc;
    st->n++;
  }
  return 0;
}

static int finish(af_safetensors *st, af_safetensors **out) {
  int rc = parse(st);
  if (rc) {
    af_safetensors_close(st);
    return rc;
  }
  *out = st;
  return 0;
}

int af_safetensors_open_mem(const void *data, size_t size, const char *label, af_safetensors **out) {
  if (!out || (!data && size)) return af_err(AF_ERR_INVALID, "af_safetensors_open_mem: bad arguments");
  *out = NULL;
  af_safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(label ? label : "<memory>"))) {
    free(st);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  st->base = data;
  st->size = size;
  return finish(st, out);
}

int af_safetensors_open(const char *path, af_safetensors **out) {
  if (!path || !out) return af_err(AF_ERR_INVALID, "af_safetensors_open: bad arguments");
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    close(fd);
    return af_err(AF_ERR_IO, "%s: not a regular file", path);
  }
  af_safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path))) {
    free(st);
    close(fd);
    return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  }
  st->size = (uint64_t)sb.st_size;
  if (st->size) {
    void *m = mmap(NULL, (size_t)st->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      af_safetensors_close(st);
      return af_err(AF_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    }
    st->base = m;
    st->mapped = 1;
  }
  close(fd);
  return finish(st, out);
}

void af_safetensors_close(af_safetensors *st) {
  if (!st) return;
  if (st->mapped) munmap((void *)st->base, (size_t)st->size);
  cJSON_Delete(st->json);
  free(st->t);
  free(st->path);
  free(st);
}

size_t af_safetensors_count(const af_safetensors *st) {
  return st ? st->n : 0;
}
const af_tsrc_tensor *af_safetensors_tensors(const af_safetensors *st) {
  return st ? st->t : NULL;
}

/* ---- shard index ---- */
static char *slurp(const char *path, size_t max, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = malloc(max + 1);
  size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
  fclose(f);
  if (!buf) {
    af_err(AF_ERR_NOMEM, "%s: out of memory", path);
    return NULL;
  }
  if (n > max) {
    free(buf);
    af_err(AF_ERR_FORMAT, "%s: file larger than %zu bytes", path, max);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

void af_shard_list_free(char **files, size_t n) {
  for (size_t i = 0; files && i < n; i++) free(files[i]);
  free(files);
}

int af_shard_index_load(const char *index_path, char ***files, size_t *n) {
  if (!index_path || !files || !n) return af_err(AF_ERR_INVALID, "af_shard_index_load: bad arguments");
  *files = NULL;
  *n = 0;
  size_t len;
  char *text = slurp(index_path, 64u << 20, &len);
  if (!text) return af_error_code() ? af_error_code() : AF_ERR_IO;
  cJSON *j = cJSON_ParseWithLength(text, len);
  free(text);
  int rc = 0;
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map"), *it;
  if (!cJSON_IsObject(wm)) {
    rc = af_err(AF_ERR_FORMAT, "%s: shard index has no \"weight_map\" object", index_path);
    goto out;
  }
  const char *slash = strrchr(index_path, '/');
  size_t dlen = slash ? (size_t)(slash - index_path + 1) : 0;
  cJSON_ArrayForEach(it, wm) {
    if (!cJSON_IsString(it) || !*it->valuestring || strchr(it->valuestring, '/') ||
        !strcmp(it->valuestring, "..")) {
      rc = af_err(AF_ERR_FORMAT, "%s: weight_map entry '%s' is not a plain file name", index_path,
                  it->string ? it->string : "?");
      goto out;
    }
    int seen = 0;
    for (size_t i = 0; i < *n && !seen; i++) seen = !strcmp((*files)[i] + dlen, it->valuestring);
    if (seen) continue;
    char **nf = realloc(*files, (*n + 1) * sizeof *nf);
    if (!nf) {
      rc = af_err(AF_ERR_NOMEM, "%s: out of memory", index_path);
      goto out;
    }
    *files = nf;
    size_t l = dlen + strlen(it->valuestring) + 1;
    if (!(nf[*n] = malloc(l))) {
      rc = af_err(AF_ERR_NOMEM, "%s: out of memory", index_path);
      goto out;
    }
    memcpy(nf[*n], index_path, dlen);
    strcpy(nf[*n] + dlen, it->valuestring);
    (*n)++;
  }
  if (*n == 0) rc = af_err(AF_ERR_FORMAT, "%s: shard index lists no files", index_path);
out:
  cJSON_Delete(j);
  if (rc) {
    af_shard_list_free(*files, *n);
    *files = NULL;
    *n = 0;
  }
  return rc;
}
