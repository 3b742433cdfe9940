/* describe's stream / JSON / --dump output of a batch, from the generator's
 * callbacks (see describe_show.c). */
#ifndef AF_TEST_DESCRIBE_SHOW_H
#define AF_TEST_DESCRIBE_SHOW_H

#include <stdio.h>

#include "net/generate.h"

/* Describes items[0..n) together and shows them on out (NULL: nowhere) in
 * item order: "IMAGE: answer\n" streamed, or with json one line per image;
 * dump_dirs (NULL, or n folders each NULL or existing) get logits0.npy,
 * prompt_ids.txt and ids.txt.  Returns af_generate_batch's status. */
int show_describe(af_generator *g, af_gen_item *items, const char *const *dump_dirs, int n, int json,
                  FILE *out);

#endif
