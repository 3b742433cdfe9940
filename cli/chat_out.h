/* What chat shows of the generator's work (net/chat.h): the answers streamed
 * as plain text and the --dump files of each turn (prompt_ids.txt, info.txt,
 * ids.txt, answer.txt), whose names and formats users rely on
 * (tests/cli/test_chat.sh checks them against the original's goldens). */
#ifndef AF_CLI_CHAT_OUT_H
#define AF_CLI_CHAT_OUT_H

#include <stdio.h>

#include "net/chat.h"

/* A chat turn's callbacks: the answer streamed on out (NULL: not), and with
 * dump_dir (made when needed) the turn's files.  The strings are borrowed. */
typedef struct af_cli_chat_out {
  FILE *out;
  const char *dump_dir;
} af_cli_chat_out;
void af_cli_chat_io(af_cli_chat_out *o, af_chat_io *io);

#endif
