/* chat's output (see chat_out.h): the answer streamed on stdout and the
 * --dump files of each turn.  A dump file that cannot be written fails its
 * turn, as a failed generation step would.  (describe shows its images from
 * the pipeline's items: cli/images.c.) */
#include <stdlib.h>
#include <string.h>

#include "cli/chat_out.h"
#include "core/iofile.h"

/* path := one line per array of ids, ids separated by single spaces */
static int write_id_lines(const char *path, const int32_t *const *ids, const size_t *n, int lines) {
  FILE *f = fopen(path, "w");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot write", path);
  for (int l = 0; l < lines; l++) {
    for (size_t i = 0; i < n[l]; i++) fprintf(f, "%s%d", i ? " " : "", ids[l][i]);
    fputc('\n', f);
  }
  return fclose(f) ? af_err(AF_ERR_IO, "%s: write failed", path) : 0;
}

/* dir/name := text */
static int write_text(const char *dir, const char *name, const char *text) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot write", p);
  fputs(text, f);
  return fclose(f) ? af_err(AF_ERR_IO, "%s: write failed", p) : 0;
}

/* ---- chat ---- */

static int chat_text(void *arg, const char *p, size_t len) {
  af_cli_chat_out *o = arg;
  fwrite(p, 1, len, o->out);
  fflush(o->out);
  return 0;
}

/* the turn's prompt: prompt_ids.txt (one line per segment) and info.txt
 * ("positions P begin B": prompt positions and the truncation start) */
static int chat_prompt(void *arg, const af_chat_result *r) {
  af_cli_chat_out *o = arg;
  char info[96], p[4200];
  int rc = af_mkdirs(o->dump_dir);
  snprintf(p, sizeof p, "%s/prompt_ids.txt", o->dump_dir);
  if (!rc) rc = write_id_lines(p, (const int32_t *const *)r->seg_ids, r->seg_n, r->n_seg);
  snprintf(info, sizeof info, "positions %d begin %d\n", r->positions, r->begin);
  return rc ? rc : write_text(o->dump_dir, "info.txt", info);
}

/* the turn's answer: ids.txt and answer.txt (the answer and a newline) */
static int chat_answered(void *arg, const af_chat_result *r) {
  af_cli_chat_out *o = arg;
  char p[4200], *line = malloc(strlen(r->answer) + 2);
  if (!line) return af_err(AF_ERR_NOMEM, "out of memory");
  const int32_t *ids[1] = {r->ids};
  size_t n[1] = {(size_t)r->n_ids};
  snprintf(p, sizeof p, "%s/ids.txt", o->dump_dir);
  sprintf(line, "%s\n", r->answer);
  int rc = write_id_lines(p, ids, n, 1);
  if (!rc) rc = write_text(o->dump_dir, "answer.txt", line);
  free(line);
  return rc;
}

void af_cli_chat_io(af_cli_chat_out *o, af_chat_io *io) {
  *io = (af_chat_io){.arg = o,
                     .text = o->out ? chat_text : NULL,
                     .prompt = o->dump_dir ? chat_prompt : NULL,
                     .answered = o->dump_dir ? chat_answered : NULL};
}
