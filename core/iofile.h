/* Small I/O building blocks shared by the sources, sinks and the run journal:
 * an append-only line file whose records are written whole or not at all, a
 * string set (ids already completed), SHA-256 of a file and path helpers.
 * (The .npy writer and the CSV reader/writer are in formats/.)
 *
 * All functions return 0 or a negative af_status with the message recorded
 * through af_err() (naming the file), unless documented otherwise. */
#ifndef AF_CORE_IOFILE_H
#define AF_CORE_IOFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "artflow/stage.h"

/* ------------------------------------------------------- append-only file */

/* When the data reaches the disk (it reaches the kernel on every write, which
 * is what survives a SIGKILL; fsync is about power loss). */
typedef enum af_fsync_mode {
  AF_FSYNC_NONE = 0,  /* never (the kernel writes back when it likes) */
  AF_FSYNC_BATCH = 1, /* after every af_appendfile_write */
  AF_FSYNC_CLOSE = 2, /* once, in af_appendfile_close */
} af_fsync_mode;
#define AF_FSYNC_CHOICES "none|batch|close"

typedef struct af_appendfile {
  int fd;
  char *path;
  af_fsync_mode fsync;
  int64_t size;  /* bytes of whole lines in the file */
  int is_stdout; /* opened as "-": fd 1, never truncated, fsynced or closed */
} af_appendfile;

/* Opens `path` for appending lines.  keep = 0 truncates it; keep = 1 keeps
 * the content but cuts a torn last line (bytes after the last '\n', left by a
 * killed writer).  Caller frees *out with af_appendfile_close.
 * path "-" is standard output: keep and fsync are ignored, a batch is written
 * in as many write(2) calls as the pipe needs, and close leaves fd 1 open. */
int af_appendfile_open(const char *path, int keep, af_fsync_mode fsync, af_appendfile **out);
/* Appends buf[0..n) (whole lines) with one write(2) on an O_APPEND fd; a short
 * write is undone with ftruncate so the file never holds part of a record.
 * Returns 0 or AF_ERR_IO. */
int af_appendfile_write(af_appendfile *f, const char *buf, size_t n);
/* Cuts the file to `size` bytes (a torn record the caller found itself,
 * e.g. a CSV row whose quoted field holds line breaks).  0 or AF_ERR_IO. */
int af_appendfile_truncate(af_appendfile *f, int64_t size);
/* fsyncs when the mode asks for it at close, closes, frees.  NULL is fine.
 * Returns 0 or AF_ERR_IO (fsync/close failed). */
int af_appendfile_close(af_appendfile *f);

/* Calls fn(line, len, user) for every complete line of `path` (without the
 * '\n'; a torn last line is skipped).  A missing file is no error (0).
 * fn returns 0 to go on or a status to stop with it. */
int af_lines_scan(const char *path, int (*fn)(const char *line, size_t len, void *user), void *user);

/* ---------------------------------------------------------------- buffer */

/* A growing byte buffer; zero-initialise, free with af_buf_free. */
typedef struct af_buf {
  char *p;
  size_t n, cap;
  int oom; /* set when an append failed: check once at the end */
} af_buf;
void af_buf_put(af_buf *b, const char *s, size_t n);
void af_buf_puts(af_buf *b, const char *s);
void af_buf_free(af_buf *b);

/* ---------------------------------------------------------------- id set */

typedef struct af_idset af_idset;
/* Returns NULL when out of memory.  Free with af_idset_free (NULL is fine). */
af_idset *af_idset_new(void);
void af_idset_free(af_idset *s);
/* Adds a copy of id[0..n); 0, or AF_ERR_NOMEM. */
int af_idset_add(af_idset *s, const char *id, size_t n);
int af_idset_has(const af_idset *s, const char *id);
size_t af_idset_count(const af_idset *s);

/* ------------------------------------------------------------- escaping */

/* Escapes an id onto one line: bytes < 0x20, '%' and 0x7f become %XX. */
void af_id_escape(af_buf *b, const char *id);
/* Inverse, in place over s[0..n); returns the new length. */
size_t af_id_unescape(char *s, size_t n);

/* ----------------------------------------------------------------- utf-8 */

/* 1 when s is valid UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF), else 0. */
int af_utf8_valid(const char *s);
/* Copy of s with each byte that does not start a valid sequence replaced by
 * U+FFFD.  Caller frees; NULL when out of memory. */
char *af_utf8_lossy(const char *s);
/* Adds key: text to a cJSON object as a valid UTF-8 string whatever its bytes
 * (U+FFFD for each bad one); with bytes_key, a text that was not valid also
 * gets its exact bytes percent-encoded under bytes_key (the rule of
 * docs/pipeline-io.md, "Text that is not UTF-8"). */
struct cJSON;
void af_json_add_text(struct cJSON *o, const char *key, const char *text, const char *bytes_key);
/* Appends s with every byte outside printable ASCII (0x20-0x7E) and '%'
 * written as %XX (upper-case hex): the `path_bytes` rule of the JSON sinks. */
void af_bytes_pct(af_buf *b, const char *s);

/* --------------------------------------------------------------- sha256 */

/* Lower-case hex SHA-256 of the file's bytes into hex[65].  0 or AF_ERR_IO. */
int af_sha256_file(const char *path, char hex[65]);
/* SHA-256 of a memory block. */
void af_sha256_hex(const void *data, size_t n, char hex[65]);

/* ---------------------------------------------------------------- paths */

/* Joins dir and rel (rel returned as is when absolute or dir is NULL/"").
 * Caller frees.  NULL when out of memory. */
char *af_path_join(const char *dir, const char *rel);
/* Directory part of path ("." when none).  Caller frees. */
char *af_path_dirname(const char *path);
/* Creates a folder and its parents (like mkdir -p).  0 or AF_ERR_IO. */
int af_mkdirs(const char *path);

#endif
