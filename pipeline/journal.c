/* The run journal: an append-only text file next to the outputs that records
 * which items a run started and which it completed, so `artflow run --resume`
 * skips completed items and redoes the ones that were in flight, and with
 * which settings the records were made, so a resume with other settings does
 * not silently mix records.
 *
 * Format, one record per line (ids escaped with af_id_escape):
 *   # artflow journal 2          first line of a fresh journal
 *   P <sha256> <settings JSON>   the settings (settings.c) of the records that
 *                                follow; a resume compares with the latest
 *                                one (--allow-changed appends another)
 *   S <id>                       the item entered the pipeline
 *   D <id>                       every sink has written (and flushed) it
 * Format 1 (before the settings existed) is the same without P lines: it is
 * read as before, and a resume appends a P line so later resumes are checked.
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

#define JOURNAL_PREFIX "# artflow journal "
#define JOURNAL_FORMAT 2

struct af_journal {
  af_appendfile *file;
  af_idset *done; /* completed in earlier runs; read-only after open */
  /* used while opening only */
  const char *path; /* borrowed */
  int64_t lines;    /* lines read so far */
  char *settings;   /* latest "P" line read: "<hash> <json>" */
  int64_t p_line;   /* its line number */
  pthread_mutex_t lock;
  af_buf line;  /* scratch for "S" lines (source thread) */
  af_buf batch; /* scratch for "D" lines (commit thread) */
};

static int load_line(const char *line, size_t len, void *user) {
  af_journal *j = user;
  const size_t np = sizeof JOURNAL_PREFIX - 1;
  if (++j->lines == 1 && len > np && !memcmp(line, JOURNAL_PREFIX, np) && atoi(line + np) > JOURNAL_FORMAT)
    return af_err(AF_ERR_CONFIG,
                  "%s: journal format %d, this artflow reads formats 1 to %d (upgrade artflow)", j->path,
                  atoi(line + np), JOURNAL_FORMAT);
  if (len > 2 && line[0] == 'P' && line[1] == ' ') {
    free(j->settings);
    j->p_line = j->lines;
    return (j->settings = strndup(line + 2, len - 2)) ? 0 : af_err(AF_ERR_NOMEM, "journal: out of memory");
  }
  if (len < 2 || line[1] != ' ' || line[0] != 'D') return 0; /* S lines, comments */
  char *id = strndup(line + 2, len - 2);
  if (!id) return af_err(AF_ERR_NOMEM, "journal: out of memory");
  size_t n = af_id_unescape(id, len - 2);
  int rc = af_idset_add(j->done, id, n);
  free(id);
  return rc;
}

/* "P <hash> <json>\n" */
static void settings_line(af_buf *b, const af_journal_settings *s) {
  af_buf_puts(b, "P ");
  af_buf_puts(b, s->hash);
  af_buf_puts(b, " ");
  af_buf_puts(b, s->json);
  af_buf_puts(b, "\n");
}

/* Resume: compares the run's settings with the journal's latest ones.  Sets
 * *append when a settings line is to be appended; the journal file is not
 * touched here, so a refused resume leaves it as it was. */
static int check_settings(af_journal *j, af_journal_settings *s, int *append) {
  if (!j->settings) { /* format 1 (or a journal cut before its first P) */
    s->unchecked = *append = 1;
    return 0;
  }
  const char *sp = strchr(j->settings, ' ');
  size_t hl = sp ? (size_t)(sp - j->settings) : 0;
  if (sp && hl == strlen(s->hash) && !memcmp(j->settings, s->hash, hl)) return 0; /* the same */
  char *keys = NULL;
  int rc = af_settings_diff(sp ? sp + 1 : "", s->json, &s->diff, &keys, &s->changed);
  if (rc == AF_ERR_FORMAT) {
    af_error_clear();
    rc = s->allow_changed ? 0
                          : af_err(AF_ERR_CONFIG,
                                   "%s:%lld: the settings line is not \"P <sha256> <JSON object>\" "
                                   "(--allow-changed appends a new one)",
                                   j->path, (long long)j->p_line);
    *append = 1;
  } else if (!rc && s->changed) {
    *append = 1;
    if (!s->allow_changed)
      rc = af_err(AF_ERR_CONFIG, "%s: --resume with settings that differ from the journal's (%d changed: %s)",
                  j->path, s->changed, keys);
  }
  free(keys);
  return rc;
}

int af_journal_open(const char *path, int resume, af_journal_settings *settings, af_journal **out) {
  *out = NULL;
  int rc = 0, append = 0;
  af_journal *j = calloc(1, sizeof *j);
  if (!j) return af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  pthread_mutex_init(&j->lock, NULL);
  j->path = path;
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
  if (resume && j->lines > 0 && settings && settings->json && (rc = check_settings(j, settings, &append)))
    goto fail;
  /* the journal itself is never fsynced per batch: losing its tail only
   * makes a resume redo items, which the sinks de-duplicate */
  if ((rc = af_appendfile_open(path, resume, AF_FSYNC_CLOSE, &j->file))) goto fail;
  af_buf head = {0};
  if (j->file->size == 0) {
    char magic[64];
    snprintf(magic, sizeof magic, JOURNAL_PREFIX "%d\n", JOURNAL_FORMAT);
    af_buf_puts(&head, magic);
    append = 1;
  }
  if (append && settings && settings->json) settings_line(&head, settings);
  /* one write: a fresh journal never lacks its settings line */
  rc = head.oom ? af_err(AF_ERR_NOMEM, "%s: out of memory", path)
       : head.n ? af_appendfile_write(j->file, head.p, head.n)
                : 0;
  af_buf_free(&head);
  if (rc) goto fail;
  free(j->settings);
  j->settings = NULL;
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
  free(j->settings);
  af_buf_free(&j->line);
  af_buf_free(&j->batch);
  pthread_mutex_destroy(&j->lock);
  free(j);
}
