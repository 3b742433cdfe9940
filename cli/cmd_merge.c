/* artflow merge: combines the JSONL outputs of a sharded run into one file.
 *
 * Nothing is written unless every input passes (pass 1 reads them all, pass 2
 * copies the records byte for byte, into a temporary file renamed over the
 * output): a record that is not JSON or has no id, an id seen twice, records
 * made with different settings (provenance.settings_sha256, else the settings
 * line of the journal next to the file), different shard counts, or a record
 * whose id does not hash to the shard it claims is refused, naming the files
 * and lines.  With --source the pipeline's source is listed and the ids it
 * has that no input holds are printed, one per line, with their shard: what a
 * collection team reruns.  Exit status: 0 merged (and complete, with
 * --source), 1 refused or items missing, 2 usage. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"

static const char usage[] =
    "usage: artflow merge SHARD.jsonl... -o ALL.jsonl [--source PIPELINE.yaml]\n"
    "\n"
    "Combines the jsonl outputs of the shards of a run (artflow run --shard) into\n"
    "one file, records copied unchanged in the order of the inputs.  Refuses (and\n"
    "writes nothing) when an id appears twice, when the inputs were made with\n"
    "different settings or shard counts, or when a line is not a record.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE         the merged file ('-': standard output)\n"
    "  --source PIPELINE.yaml    also list the source's items that no input holds\n"
    "                            (one id and its shard per line, on standard output;\n"
    "                            on standard error with -o -)\n"
    "  --set STAGE.PARAM=VALUE   applied to the --source pipeline (repeatable)\n"
    "\n"
    "exit status: 0 merged (every source item present, with --source), 1 refused\n"
    "or items missing (the merged file is still written), 2 usage error.\n";

#define MAX_REPORTS 10

typedef struct merge {
  const char **files;
  int n_files;
  af_idset *ids;
  int64_t records, ok, errors;
  /* settings and sharding of the first record that had them */
  char settings[65];
  char settings_at[512];
  int shard_count;
  char shard_at[512];
  int refused; /* problems reported */
  int unchecked_files;
} merge;

static void refuse(merge *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(merge *m, const char *fmt, ...) {
  if (m->refused++ >= MAX_REPORTS) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("artflow merge: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* The settings hash of the journal next to an output (its latest "P <hash>"
 * line, written by runs that record their settings), or "" when none. */
static void journal_settings(const char *file, char out[65]) {
  out[0] = 0;
  char path[4200];
  snprintf(path, sizeof path, "%s.journal", file);
  FILE *fp = fopen(path, "r");
  if (!fp) return;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, fp) > 0)
    if (line[0] == 'P' && line[1] == ' ' && strcspn(line + 2, " \n") == 64)
      snprintf(out, 65, "%.64s", line + 2);
  free(line);
  fclose(fp);
}

/* Where an id was first seen (error path only: rescans the inputs). */
static void first_seen(const merge *m, const char *id, int upto, long upto_line, char *where, size_t n) {
  snprintf(where, n, "earlier");
  for (int f = 0; f <= upto; f++) {
    FILE *fp = fopen(m->files[f], "r");
    if (!fp) continue;
    char *line = NULL;
    size_t cap = 0;
    long ln = 0;
    int found = 0;
    while (!found && getline(&line, &cap, fp) > 0 && !(f == upto && ln + 1 >= upto_line)) {
      ln++;
      cJSON *o = cJSON_Parse(line);
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
      if (cJSON_IsString(v) && !strcmp(v->valuestring, id)) {
        snprintf(where, n, "%s:%ld", m->files[f], ln);
        found = 1;
      }
      cJSON_Delete(o);
    }
    free(line);
    fclose(fp);
    if (found) return;
  }
}

/* One record: its id once, its settings and shard like every other's. */
static void check_record(merge *m, int f, long ln, const cJSON *o, const char *jset) {
  const char *file = m->files[f];
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
  if (!cJSON_IsString(id)) {
    refuse(m, "%s:%ld: a record without a string \"id\"", file, ln);
    return;
  }
  if (af_idset_has(m->ids, id->valuestring)) {
    char where[4200];
    if (m->refused < MAX_REPORTS) first_seen(m, id->valuestring, f, ln, where, sizeof where);
    refuse(m, "%s:%ld: id '%s' is already in %s: overlapping shards (or one output given twice)", file, ln,
           id->valuestring, where);
    return;
  }
  if (af_idset_add(m->ids, id->valuestring, strlen(id->valuestring))) {
    refuse(m, "out of memory");
    return;
  }
  m->records++;
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
  if (cJSON_IsString(st) && !strcmp(st->valuestring, "ok"))
    m->ok++;
  else
    m->errors++;
  const cJSON *prov = cJSON_GetObjectItemCaseSensitive(o, "provenance");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(prov, "settings_sha256");
  const char *set = cJSON_IsString(sh) && strlen(sh->valuestring) == 64 ? sh->valuestring : jset;
  if (set && *set) {
    if (!m->settings[0]) {
      snprintf(m->settings, sizeof m->settings, "%s", set);
      snprintf(m->settings_at, sizeof m->settings_at, "%s:%ld", file, ln);
    } else if (strcmp(m->settings, set)) {
      refuse(m,
             "%s:%ld: made with other settings (%.12s...) than %s (%.12s...): a changed parameter, stage or "
             "model; merge the outputs of one configuration",
             file, ln, set, m->settings_at, m->settings);
    }
  }
  const cJSON *shard = cJSON_GetObjectItemCaseSensitive(prov, "shard");
  const cJSON *si = cJSON_GetObjectItemCaseSensitive(shard, "index");
  const cJSON *sc = cJSON_GetObjectItemCaseSensitive(shard, "count");
  if (cJSON_IsNumber(si) && cJSON_IsNumber(sc) && sc->valueint >= 1) {
    if (!m->shard_count) {
      m->shard_count = sc->valueint;
      snprintf(m->shard_at, sizeof m->shard_at, "%s:%ld", file, ln);
    } else if (m->shard_count != sc->valueint) {
      refuse(m, "%s:%ld: a shard of %d, but %s is a shard of %d: outputs of different shardings", file, ln,
             sc->valueint, m->shard_at, m->shard_count);
    }
    int want = af_shard_of(id->valuestring, sc->valueint);
    if (want != si->valueint)
      refuse(m, "%s:%ld: id '%s' hashes to shard %d/%d, but the record says %d/%d", file, ln, id->valuestring,
             want, sc->valueint, si->valueint, sc->valueint);
  }
}

/* Pass 1 over one input. */
static int check_file(merge *m, int f) {
  const char *file = m->files[f];
  FILE *fp = fopen(file, "r");
  if (!fp) {
    refuse(m, "%s: cannot read: %s", file, strerror(errno));
    return 0;
  }
  char jset[65];
  journal_settings(file, jset);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  long ln = 0;
  int64_t before = m->records;
  int unset = 1;
  while ((len = getline(&line, &cap, fp)) > 0) {
    ln++;
    if (line[len - 1] != '\n') {
      fprintf(stderr,
              "artflow merge: warning: %s:%ld: a torn last line (the shard was stopped while writing): "
              "skipped; rerun that shard with --resume\n",
              file, ln);
      break;
    }
    cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
    if (!cJSON_IsObject(o)) {
      refuse(m, "%s:%ld: not a JSON record", file, ln);
    } else {
      const cJSON *prov = cJSON_GetObjectItemCaseSensitive(o, "provenance");
      if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(prov, "settings_sha256"))) unset = 0;
      check_record(m, f, ln, o, jset);
    }
    cJSON_Delete(o);
  }
  int err = ferror(fp);
  free(line);
  fclose(fp);
  if (err) refuse(m, "%s: read error", file);
  if (unset && !jset[0] && m->records > before) m->unchecked_files++;
  if (unset && !jset[0] && m->records > before)
    fprintf(
        stderr,
        "artflow merge: warning: %s records no settings (provenance off, no journal): not checked against "
        "the others\n",
        file);
  return 0;
}

/* Pass 2: the inputs' records, byte for byte. */
static int copy_all(const merge *m, FILE *out) {
  for (int f = 0; f < m->n_files; f++) {
    FILE *fp = fopen(m->files[f], "r");
    if (!fp) return af_err(AF_ERR_IO, "%s: cannot read: %s", m->files[f], strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) > 0 && line[len - 1] == '\n')
      if (fwrite(line, 1, (size_t)len, out) != (size_t)len) break;
    free(line);
    fclose(fp);
    if (ferror(out)) return af_err(AF_ERR_IO, "write failed");
  }
  return 0;
}

typedef struct missing_ctx {
  const merge *m;
  FILE *out;
  int count;
  int64_t total, missing;
} missing_ctx;

static int on_source_item(void *arg, const af_item *it) {
  missing_ctx *c = arg;
  c->total++;
  if (af_idset_has(c->m->ids, it->id)) return 0;
  c->missing++;
  if (c->count > 1)
    fprintf(c->out, "%s\tshard %d/%d\n", it->id, af_shard_of(it->id, c->count), c->count);
  else
    fprintf(c->out, "%s\n", it->id);
  return 0;
}

/* --source: the source's items that no input holds. */
static int list_missing(const merge *m, const char *yaml, const char **sets, int n_sets, FILE *out,
                        int64_t *missing) {
  af_run_options opt = {.sets = sets, .n_sets = n_sets, .shard = "0/1", .quiet = 1};
  af_pipeline *p = NULL;
  int rc = af_pipeline_load(yaml, &opt, &p);
  if (rc) return rc;
  missing_ctx c = {.m = m, .out = out, .count = m->shard_count};
  rc = af_pipeline_each_source_item(p, on_source_item, &c);
  af_pipeline_free(p);
  if (rc) return rc;
  *missing = c.missing;
  int64_t extra = m->records - (c.total - c.missing);
  fprintf(stderr, "artflow merge: source %s: %lld items, %lld missing", yaml, (long long)c.total,
          (long long)c.missing);
  if (extra > 0) fprintf(stderr, ", %lld records of ids the source no longer has", (long long)extra);
  fputc('\n', stderr);
  return 0;
}

int af_cmd_merge(int argc, char **argv) {
  const char *output = NULL, *source = NULL;
  merge m = {0};
  int exitc = AF_EXIT_OK, n_sets = 0;
  m.files = calloc((size_t)argc + 1, sizeof *m.files);
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!m.files || !sets || !(m.ids = af_idset_new())) {
    free(m.files);
    free(sets);
    return af_cli_fail(AF_ERR_NOMEM, "merge");
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = NULL;
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      goto out;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--source") || !strcmp(a, "--set")) {
      if (i + 1 >= argc) {
        exitc = af_cli_usage_error("merge", usage, "option '%s' needs a value", a);
        goto out;
      }
      v = argv[++i];
      if (!strcmp(a, "--source"))
        source = v;
      else if (!strcmp(a, "--set"))
        sets[n_sets++] = v;
      else
        output = v;
    } else if (a[0] == '-' && a[1]) {
      exitc = af_cli_usage_error("merge", usage, "unknown option '%s'", a);
      goto out;
    } else {
      m.files[m.n_files++] = a;
    }
  }
  if (!m.n_files || !output) {
    exitc = af_cli_usage_error("merge", usage, m.n_files ? "missing -o FILE" : "no shard outputs given");
    goto out;
  }
  for (int f = 0; f < m.n_files; f++)
    if (!strcmp(m.files[f], output) && strcmp(output, "-")) {
      exitc = af_cli_usage_error("merge", usage, "the output %s is also an input", output);
      goto out;
    }
  for (int f = 0; f < m.n_files; f++) check_file(&m, f);
  if (m.refused) {
    if (m.refused > MAX_REPORTS) fprintf(stderr, "artflow merge: ... %d problems in all\n", m.refused);
    fprintf(stderr, "artflow merge: refused; %s not written\n", output);
    exitc = AF_EXIT_FAIL;
    goto out;
  }
  int to_stdout = !strcmp(output, "-");
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.merge-%ld.tmp", output, (long)getpid());
  FILE *out = to_stdout ? stdout : fopen(tmp, "w");
  int rc = out ? copy_all(&m, out) : af_err(AF_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
  if (!to_stdout && out && (fflush(out) || fsync(fileno(out))))
    rc = af_err(AF_ERR_IO, "%s: write failed", tmp);
  if (!to_stdout && out && fclose(out) && !rc) rc = af_err(AF_ERR_IO, "%s: write failed", tmp);
  if (!rc && !to_stdout && rename(tmp, output)) rc = af_err(AF_ERR_IO, "%s: %s", output, strerror(errno));
  if (rc) {
    if (!to_stdout) unlink(tmp);
    exitc = af_cli_fail(rc, "merge");
    goto out;
  }
  fprintf(stderr, "artflow merge: %lld records (%lld ok, %lld errors) from %d files -> %s\n",
          (long long)m.records, (long long)m.ok, (long long)m.errors, m.n_files,
          to_stdout ? "stdout" : output);
  if (source) {
    int64_t missing = 0;
    rc = list_missing(&m, source, sets, n_sets, to_stdout ? stderr : stdout, &missing);
    if (rc) {
      fprintf(stderr, "artflow merge: --source: %s\n", af_error_message());
      af_error_clear();
      exitc = rc == AF_ERR_CONFIG ? AF_EXIT_USAGE : AF_EXIT_FAIL;
    } else if (missing > 0) {
      exitc = AF_EXIT_FAIL;
    }
  }
out:
  af_idset_free(m.ids);
  free(m.files);
  free(sets);
  return exitc;
}
