/* Append-only line files (records written whole or not at all), line
 * scanning, a byte buffer, the id set and id escaping, path helpers.
 * See iofile.h.
 *
 * Why one write(2) per batch on an O_APPEND fd: a process killed at any
 * instant leaves either nothing or the bytes of that write, and a torn tail
 * (only possible for huge writes or a full disk) is cut at the next open. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artflow/status.h"
#include "core/iofile.h"

/* ---------------------------------------------------------------- buffer */

void af_buf_put(af_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void af_buf_puts(af_buf *b, const char *s) {
  af_buf_put(b, s, strlen(s));
}

void af_buf_free(af_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------- append-only file */

/* Size of the file up to and including its last '\n' (0 when none). */
static int whole_lines_size(int fd, const char *path, int64_t *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) return af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
  int64_t end = st.st_size;
  char tail[4096];
  while (end > 0) {
    int64_t start = end > (int64_t)sizeof tail ? end - (int64_t)sizeof tail : 0;
    ssize_t got = pread(fd, tail, (size_t)(end - start), start);
    if (got != end - start) return af_err(AF_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    for (int64_t i = end - start - 1; i >= 0; i--)
      if (tail[i] == '\n') {
        *out = start + i + 1;
        return 0;
      }
    end = start;
  }
  *out = 0;
  return 0;
}

int af_appendfile_open(const char *path, int keep, af_fsync_mode fsync, af_appendfile **out) {
  *out = NULL;
  int rc = 0;
  af_appendfile *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    rc = af_err(AF_ERR_NOMEM, "%s: out of memory", path);
    goto fail;
  }
  f->fsync = fsync;
  if (!strcmp(path, "-")) { /* standard output: a stream, nothing to keep or cut */
    f->fd = STDOUT_FILENO;
    f->is_stdout = 1;
    f->fsync = AF_FSYNC_NONE;
    *out = f;
    return 0;
  }
  f->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (keep ? 0 : O_TRUNC), 0644);
  if (f->fd < 0) {
    rc = af_err(AF_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    goto fail;
  }
  if (keep) {
    /* pread needs a readable fd: reopen read-only to find the last line end */
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0) {
      rc = af_err(AF_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
      goto fail;
    }
    rc = whole_lines_size(rfd, path, &f->size);
    close(rfd);
    if (rc) goto fail;
    struct stat st;
    if (fstat(f->fd, &st) == 0 && st.st_size != f->size && ftruncate(f->fd, f->size) != 0) {
      rc = af_err(AF_ERR_IO, "%s: cannot cut the torn last line: %s", path, strerror(errno));
      goto fail;
    }
  }
  *out = f;
  return 0;
fail:
  if (f) {
    if (f->fd > 0) close(f->fd);
    free(f->path);
    free(f);
  }
  return rc;
}

int af_appendfile_write(af_appendfile *f, const char *buf, size_t n) {
  if (n == 0) return 0;
  if (f->is_stdout) { /* a pipe may take a batch in parts: write it all */
    size_t done = 0;
    while (done < n) {
      ssize_t w = write(f->fd, buf + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        return af_err(AF_ERR_IO, "standard output: write failed: %s", strerror(w < 0 ? errno : EIO));
      done += (size_t)w;
    }
    f->size += (int64_t)n;
    return 0;
  }
  ssize_t w;
  do w = write(f->fd, buf, n);
  while (w < 0 && errno == EINTR);
  if (w != (ssize_t)n) {
    int e = w < 0 ? errno : ENOSPC;
    /* undo the partial record so later lines never follow a torn one */
    if (w > 0 && ftruncate(f->fd, f->size) != 0) { /* nothing more to do */
    }
    return af_err(AF_ERR_IO, "%s: write failed: %s", f->path, strerror(e));
  }
  f->size += (int64_t)n;
  if (f->fsync == AF_FSYNC_BATCH && fdatasync(f->fd) != 0)
    return af_err(AF_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
  return 0;
}

int af_appendfile_truncate(af_appendfile *f, int64_t size) {
  if (f->is_stdout) return af_err(AF_ERR_IO, "standard output: cannot cut a record already written");
  if (ftruncate(f->fd, size) != 0)
    return af_err(AF_ERR_IO, "%s: cannot cut the torn last record: %s", f->path, strerror(errno));
  f->size = size;
  return 0;
}

int af_appendfile_close(af_appendfile *f) {
  if (!f) return 0;
  int rc = 0;
  if (f->is_stdout) { /* not ours to close */
    free(f->path);
    free(f);
    return 0;
  }
  if (f->fsync != AF_FSYNC_NONE && fsync(f->fd) != 0)
    rc = af_err(AF_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
  if (close(f->fd) != 0 && !rc) rc = af_err(AF_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
  free(f->path);
  free(f);
  return rc;
}

int af_lines_scan(const char *path, int (*fn)(const char *line, size_t len, void *user), void *user) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    if (errno == ENOENT) return 0;
    return af_err(AF_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int rc = 0;
  while (!rc && (len = getline(&line, &cap, fp)) > 0) {
    if (line[len - 1] != '\n') break; /* torn last line: not a record */
    line[len - 1] = 0;
    rc = fn(line, (size_t)len - 1, user);
  }
  if (!rc && ferror(fp)) rc = af_err(AF_ERR_IO, "%s: read failed", path);
  free(line);
  fclose(fp);
  return rc;
}

/* ---------------------------------------------------------------- id set */

struct af_idset {
  char **slot; /* open addressing, power-of-two capacity */
  size_t cap, n;
};

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

af_idset *af_idset_new(void) {
  af_idset *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->cap = 64;
  s->slot = calloc(s->cap, sizeof *s->slot);
  if (!s->slot) {
    free(s);
    return NULL;
  }
  return s;
}

void af_idset_free(af_idset *s) {
  if (!s) return;
  for (size_t i = 0; i < s->cap; i++) free(s->slot[i]);
  free(s->slot);
  free(s);
}

static size_t find_slot(char **slot, size_t cap, const char *id, size_t n) {
  size_t i = hash_bytes(id, n) & (cap - 1);
  while (slot[i] && !(strlen(slot[i]) == n && memcmp(slot[i], id, n) == 0)) i = (i + 1) & (cap - 1);
  return i;
}

int af_idset_add(af_idset *s, const char *id, size_t n) {
  if ((s->n + 1) * 2 > s->cap) {
    size_t cap = s->cap * 2;
    char **slot = calloc(cap, sizeof *slot);
    if (!slot) return af_err(AF_ERR_NOMEM, "id set: out of memory");
    for (size_t i = 0; i < s->cap; i++)
      if (s->slot[i]) slot[find_slot(slot, cap, s->slot[i], strlen(s->slot[i]))] = s->slot[i];
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
  }
  size_t i = find_slot(s->slot, s->cap, id, n);
  if (s->slot[i]) return 0;
  char *c = malloc(n + 1);
  if (!c) return af_err(AF_ERR_NOMEM, "id set: out of memory");
  memcpy(c, id, n);
  c[n] = 0;
  s->slot[i] = c;
  s->n++;
  return 0;
}

int af_idset_has(const af_idset *s, const char *id) {
  return s && s->slot[find_slot(s->slot, s->cap, id, strlen(id))] != NULL;
}

size_t af_idset_count(const af_idset *s) {
  return s ? s->n : 0;
}

/* ------------------------------------------------------------- escaping */

void af_id_escape(af_buf *b, const char *id) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
    if (*p < 0x20 || *p == '%' || *p == 0x7f) {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      af_buf_put(b, e, 3);
    } else {
      af_buf_put(b, (const char *)p, 1);
    }
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

size_t af_id_unescape(char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      s[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      s[o++] = s[i];
    }
  }
  if (o < n) s[o] = 0;
  return o;
}

/* ---------------------------------------------------------------- paths */

char *af_path_join(const char *dir, const char *rel) {
  if (!dir || !*dir || rel[0] == '/') return strdup(rel);
  size_t a = strlen(dir), b = strlen(rel);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t o = a;
  if (p[o - 1] != '/') p[o++] = '/';
  memcpy(p + o, rel, b + 1);
  return p;
}

char *af_path_dirname(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

int af_mkdirs(const char *path) {
  char *p = strdup(path);
  if (!p) return af_err(AF_ERR_NOMEM, "out of memory");
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s;
      *s = 0;
      if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        rc = af_err(AF_ERR_IO, "%s: cannot create folder: %s", p, strerror(errno));
        break;
      }
      *s = c;
      if (!c) break;
    }
  }
  free(p);
  return rc;
}
