/* RFC 4180 CSV: a streaming reader and the field writer the csv sink uses. */
#ifndef AF_FORMATS_CSV_H
#define AF_FORMATS_CSV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/iofile.h"

/* Streaming RFC 4180 reader: fields separated by ',', optionally quoted with
 * '"' ("" inside quotes is one quote), quoted fields may hold commas and line
 * breaks, records end with LF or CRLF.  Free with af_csv_reader_free. */
typedef struct af_csv_reader af_csv_reader;
/* Takes a borrowed FILE (not closed); `name` is used in messages. */
af_csv_reader *af_csv_reader_new(FILE *fp, const char *name);
void af_csv_reader_free(af_csv_reader *r);
/* Reads the next record.  Returns 1 with *fields (borrowed, valid until the
 * next call) and *n set, 0 at end of file, or a negative status (unterminated
 * quote, stray quote: AF_ERR_FORMAT with file:line).  *line is the line the
 * record started on.  Blank lines are skipped. */
int af_csv_next(af_csv_reader *r, char ***fields, int *n, int64_t *line);

/* Appends one CSV field to b, quoting it when it holds ',', '"', CR or LF
 * (RFC 4180, quotes doubled inside; the same minimal quoting as Python's csv
 * module).  NULL writes an empty field. */
void af_csv_put_field(af_buf *b, const char *s);

#endif
