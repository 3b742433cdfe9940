/* The run journal: an append-only text file next to the outputs that records
 * which items a run started and which it completed, so `artflow run --resume`
 * skips completed items and redoes the ones that were in flight.
 *
 * Format, one record per line (ids escaped with af_id_escape):
 *   # artflow journal 1          first line of a fresh journal
 *   S <id>                       the item entered the pipeline
 *   D <id>                       every sink has written (and flushed) it
 * Why this is enough after a SIGKILL at any instant: a "D" line is appended
 * only after the sinks' own writes returned, so "D" implies the records
 * exist; a record without its "D" is redone, and the sinks drop items whose
 * id their output already holds, so nothing is written twice.  A torn last
 * line (the only possible damage) is cut when the journal is reopened. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"

#define JOURNAL_MAGIC "# artflow journal 1"

struct af_journal {
  af_appendfile *file;
  af_idset *done; /* completed in earlier runs; read-only after open */
  pthread_mutex_t lock;
  af_buf line;  /* scratch for "S" lines (source thread) */
  af_buf batch; /* scratch for "D" lines (commit thread) */
};

static int load_line(const char *line, size_t len, void *user) {
  af_journal *j = user;
  if (len < 2 || line[1] != ' ' || line[0] != 'D') return 0; /* S lines, comments */
  char *id = strndup(line + 2, len - 2);
  if (!id) return af_err(AF_ERR_NOMEM, "journal: out of memory");
  size_t n = af_id_unescape(id, len - 2);
  int rc = af_idset_add(j->done, id, n);
  free(id);
  return rc;
}

int af_journal_open(const char *path, int resume, af_journal **out) {
  *out = NULL;
  int rc = 0;
  af_journal *j = calloc(1, sizeof *j);
  if (!j) return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  pthread_mutex_init(&j->lock, NULL);
  if (!(j->done = af_idset_new())) {
    rc = af_err(AF_ERR_NOMEM, "%s: out of memory", path);
    goto fail;
  }
  /* the journal may be opened before any sink has created the output folder */
  char *dir = af_path_dirname(path);
  rc = dir ? af_mkdirs(dir) : af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  free(dir);
  if (rc) goto fail;
  if (resume && (rc = af_lines_scan(path, load_line, j))) goto fail;
  /* the journal itself is never fsynced per batch: losing its tail only
   * makes a resume redo items, which the sinks de-duplicate */
  if ((rc = af_appendfile_open(path, resume, AF_FSYNC_CLOSE, &j->file))) goto fail;
  if (j->file->size == 0) {
    static const char head[] = JOURNAL_MAGIC "\n";
    if ((rc = af_appendfile_write(j->file, head, sizeof head - 1))) goto fail;
  }
  *out = j;
  return 0;
fail:
  af_journal_close(j);
  return rc;
}

int af_journal_is_done(af_journal *j, const char *id) {
  if (!j || !id) return 0;
  if (af_idset_has(j->done, id)) return 1;
  pthread_mutex_lock(&j->lock);
  j->line.n = 0;
  af_buf_put(&j->line, "S ", 2);
  af_id_escape(&j->line, id);
  af_buf_put(&j->line, "\n", 1);
  /* a failed "started" line only loses information, never work */
  if (!j->line.oom) (void)af_appendfile_write(j->file, j->line.p, j->line.n);
  pthread_mutex_unlock(&j->lock);
  return 0;
}

int af_journal_commit(af_journal *j, af_item *const *items, int n) {
  if (!j || n <= 0) return 0;
  pthread_mutex_lock(&j->lock);
  j->batch.n = 0;
  for (int i = 0; i < n; i++) {
    if (!items[i] || !items[i]->id) continue;
    af_buf_put(&j->batch, "D ", 2);
    af_id_escape(&j->batch, items[i]->id);
    af_buf_put(&j->batch, "\n", 1);
  }
  int rc = j->batch.oom ? af_err(AF_ERR_NOMEM, "%s: out of memory", j->file->path)
                        : af_appendfile_write(j->file, j->batch.p, j->batch.n);
  pthread_mutex_unlock(&j->lock);
  return rc;
}

void af_journal_close(af_journal *j) {
  if (!j) return;
  (void)af_appendfile_close(j->file);
  af_idset_free(j->done);
  af_buf_free(&j->line);
  af_buf_free(&j->batch);
  pthread_mutex_destroy(&j->lock);
  free(j);
}
