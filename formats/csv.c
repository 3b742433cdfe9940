/* Streaming RFC 4180 CSV reader and field writer (see iofile.h).  The reader
 * keeps one record in memory at a time, so a manifest of any length streams. */
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "formats/csv.h"

struct af_csv_reader {
  FILE *fp;
  char *name;
  int64_t line;  /* current physical line (1-based) */
  af_buf rec;    /* field bytes, each NUL-terminated */
  size_t *offs;  /* field start offsets into rec */
  char **fields; /* pointers handed to the caller */
  int cap;
};

af_csv_reader *af_csv_reader_new(FILE *fp, const char *name) {
  af_csv_reader *r = calloc(1, sizeof *r);
  if (!r || !(r->name = strdup(name ? name : "csv"))) {
    free(r);
    return NULL;
  }
  r->fp = fp;
  r->line = 1;
  return r;
}

void af_csv_reader_free(af_csv_reader *r) {
  if (!r) return;
  af_buf_free(&r->rec);
  free(r->offs);
  free(r->fields);
  free(r->name);
  free(r);
}

static int push_field(af_csv_reader *r, int *n) {
  if (*n == r->cap) {
    int cap = r->cap ? r->cap * 2 : 16;
    size_t *o = realloc(r->offs, (size_t)cap * sizeof *o);
    if (!o) return AF_ERR_NOMEM;
    r->offs = o;
    char **f = realloc(r->fields, (size_t)cap * sizeof *f);
    if (!f) return AF_ERR_NOMEM;
    r->fields = f;
    r->cap = cap;
  }
  r->offs[(*n)++] = r->rec.n;
  return 0;
}

int af_csv_next(af_csv_reader *r, char ***fields, int *n, int64_t *line) {
  int c;
  /* skip blank lines between records */
  while ((c = fgetc(r->fp)) == '\n' || c == '\r')
    if (c == '\n') r->line++;
  if (c == EOF) return 0;
  ungetc(c, r->fp);
  *line = r->line;
  r->rec.n = 0;
  int nf = 0;
  if (push_field(r, &nf)) goto oom;
  int quoted = 0, was_quoted = 0;
  for (;;) {
    c = fgetc(r->fp);
    if (quoted) {
      if (c == EOF)
        return af_err(AF_ERR_FORMAT, "%s:%lld: unterminated quoted field", r->name, (long long)*line);
      if (c == '"') {
        int d = fgetc(r->fp);
        if (d == '"') {
          af_buf_put(&r->rec, "\"", 1);
        } else {
          quoted = 0;
          if (d != EOF) ungetc(d, r->fp);
        }
        continue;
      }
      if (c == '\n') r->line++;
      char ch = (char)c;
      af_buf_put(&r->rec, &ch, 1);
      continue;
    }
    if (c == ',' || c == '\n' || c == '\r' || c == EOF) {
      af_buf_put(&r->rec, "", 1); /* NUL ends the field */
      was_quoted = 0;
      if (c == ',') {
        if (push_field(r, &nf)) goto oom;
        continue;
      }
      if (c == '\r') {
        int d = fgetc(r->fp);
        if (d != '\n' && d != EOF) ungetc(d, r->fp);
      }
      r->line++;
      break;
    }
    if (c == '"') {
      /* a quote opens a field only at its start; anywhere else it is stray */
      size_t start = r->offs[nf - 1];
      if (r->rec.n != start || was_quoted)
        return af_err(AF_ERR_FORMAT, "%s:%lld: stray '\"' inside field %d (quote the whole field)", r->name,
                      (long long)r->line, nf);
      quoted = was_quoted = 1;
      continue;
    }
    if (was_quoted)
      return af_err(AF_ERR_FORMAT, "%s:%lld: text after the closing quote of field %d", r->name,
                    (long long)r->line, nf);
    char ch = (char)c;
    af_buf_put(&r->rec, &ch, 1);
  }
  if (r->rec.oom) goto oom;
  for (int i = 0; i < nf; i++) r->fields[i] = r->rec.p + r->offs[i];
  *fields = r->fields;
  *n = nf;
  return 1;
oom:
  return af_err(AF_ERR_NOMEM, "%s: out of memory", r->name);
}

void af_csv_put_field(af_buf *b, const char *s) {
  if (!s) return;
  size_t n = strlen(s);
  int quote = 0;
  for (size_t i = 0; i < n && !quote; i++)
    if (s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r') quote = 1;
  if (!quote) {
    af_buf_put(b, s, n);
    return;
  }
  af_buf_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"') af_buf_put(b, "\"", 1);
    af_buf_put(b, s + i, 1);
  }
  af_buf_put(b, "\"", 1);
}
