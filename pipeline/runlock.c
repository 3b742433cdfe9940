/* One writer per output: `artflow run` holds an exclusive lock for the whole
 * run on "<journal>.lock", a small file next to the run journal that names
 * its holder ("pid <PID> host <HOST> started <UTC time>").  A second run on
 * the same outputs (fresh or --resume) finds the lock taken and stops before
 * it opens the journal or any sink, naming the other run's PID and host.
 *
 * Why flock(2) on a separate file: the lock belongs to the open file, so the
 * kernel drops it when the holder exits in any way (kill -9 included) and a
 * stale lock cannot outlive its run on a local file system; the journal itself
 * is truncated by a fresh run, which must not happen before the lock is held.
 * The lock file is left in place after the run (removing it would let a third
 * run lock a new file while a second still holds the old one).
 *
 * Shared folders (docs/pipeline-io.md, "One run per output"): on Linux NFS
 * clients (>= 2.6.12) flock() is carried out as a whole-file POSIX lock
 * through the NFS lock protocol (NLM for v3, the protocol itself for v4), so
 * runs on different hosts exclude each other when the server supports locks;
 * a folder mounted with `nolock` or `local_lock=flock|all` only locks within
 * one host, and a crashed client's lock lasts until the server's lease or
 * grace period ends (90 s by default for NFSv4).  SMB/CIFS and FUSE folders
 * lock as their client implements it; a file system that refuses locks
 * (ENOLCK, EOPNOTSUPP) makes the run fail with that cause rather than run
 * unprotected. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "pipeline/internal.h"

/* The holder's line, read back for the message ("" when unreadable). */
static void read_holder(int fd, char *buf, size_t n) {
  ssize_t got = pread(fd, buf, n - 1, 0);
  buf[got > 0 ? got : 0] = 0;
  buf[strcspn(buf, "\r\n")] = 0;
}

/* "pid 123 host h" -> pid and host for the message */
static void holder_fields(const char *line, char *who, size_t n) {
  long pid = 0;
  char host[256] = "";
  if (sscanf(line, "pid %ld host %255s", &pid, host) == 2)
    snprintf(who, n, "PID %ld on host %s", pid, host);
  else
    snprintf(who, n, "%s", *line ? line : "a process that has not written its name yet");
}

int af_runlock_acquire(const char *journal, int *fd_out) {
  *fd_out = -1;
  size_t n = strlen(journal) + 6;
  char *path = malloc(n);
  if (!path) return af_err(AF_ERR_NOMEM, "%s: out of memory", journal);
  snprintf(path, n, "%s.lock", journal);
  int rc = 0, fd = -1;
  /* the lock may be taken before any sink has created the output folder */
  char *dir = af_path_dirname(path);
  rc = dir ? af_mkdirs(dir) : af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  free(dir);
  if (rc) goto out;
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = af_err(AF_ERR_IO, "%s: cannot open the run lock: %s", path, strerror(errno));
    goto out;
  }
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e == EINTR) continue;
    if (e == EWOULDBLOCK) {
      char line[512], who[600];
      read_holder(fd, line, sizeof line);
      holder_fields(line, who, sizeof who);
      rc = af_err(AF_ERR_CONFIG,
                  "%s: another artflow run (%s) is writing these outputs; wait for it to end or "
                  "give this run other sink paths or another 'journal:'",
                  path, who);
    } else {
      rc = af_err(AF_ERR_IO, "%s: cannot lock (the file system refuses locks?): %s", path, strerror(e));
    }
    goto out;
  }
  char host[256] = "?", stamp[32] = "";
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "?");
  host[sizeof host - 1] = 0;
  for (char *h = host; *h; h++)
    if (*h == ' ' || *h == '\n') *h = '_';
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  char line[400];
  int len = snprintf(line, sizeof line, "pid %ld host %s started %s\n", (long)getpid(), host, stamp);
  /* the holder's name only serves the other run's message: a failure here
   * does not unprotect the run */
  if (ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)len, 0) != len) {
    /* nothing to do */
  }
  *fd_out = fd;
  fd = -1;
out:
  if (fd >= 0) close(fd);
  free(path);
  return rc;
}

void af_runlock_release(int fd) {
  if (fd < 0) return;
  (void)flock(fd, LOCK_UN);
  close(fd);
}
