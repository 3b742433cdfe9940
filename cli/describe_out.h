/* What describe and chat show of the generator's work (net/generate.h,
 * net/chat.h): the answers streamed as plain text, describe's --json object,
 * and the --dump files (describe: logits0.npy, prompt_ids.txt, ids.txt in
 * each image's folder; chat: prompt_ids.txt, info.txt, ids.txt, answer.txt
 * in each turn's), whose names and formats users rely on (tests/cli/
 * test_describe.sh and test_chat.sh check them against the original's goldens). */
#ifndef AF_CLI_DESCRIBE_OUT_H
#define AF_CLI_DESCRIBE_OUT_H

#include <stdio.h>

#include "net/chat.h"
#include "net/generate.h"

/* Describes items[0..n) together (af_generate_batch) and shows them on out
 * (NULL: nowhere) in item order: "IMAGE: answer\n" streamed as the answer
 * grows, or with json one line {"ids","image","status","text",
 * "prompt_positions"} per image.  dump_dirs (NULL, or n folders each NULL or
 * existing) get each image's logits0.npy and prompt_ids.txt once its prompt
 * is prefilled and ids.txt once it is answered.  Sets the items'
 * want_logits0 where a dump needs them; returns af_generate_batch's status. */
int af_cli_describe(af_generator *g, af_gen_item *items, const char *const *dump_dirs, int n, int json,
                    FILE *out);

/* A chat turn's callbacks: the answer streamed on out (NULL: not), and with
 * dump_dir (made when needed) the turn's files.  The strings are borrowed. */
typedef struct af_cli_chat_out {
  FILE *out;
  const char *dump_dir;
} af_cli_chat_out;
void af_cli_chat_io(af_cli_chat_out *o, af_chat_io *io);

#endif
