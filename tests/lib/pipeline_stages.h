/* Test-only stages for the pipeline tests: a counting source, a transform
 * with random delays and injected failures, and a collecting sink that checks
 * order and counts live items (backpressure). */
#ifndef AF_TEST_PIPELINE_STAGES_H
#define AF_TEST_PIPELINE_STAGES_H
#include <stdatomic.h>
#include <stdint.h>

#include "artflow/stage.h"

typedef struct tp_state {
  atomic_llong produced, collected, max_live, flushed, out_of_order, saw_failed_in_transform;
  atomic_llong errors_seen;
  int64_t raise_after; /* the sink raises SIGINT after this many items (0 = never) */
  int sig_raised;
  int raise_twice; /* raise SIGINT twice: abort */
  char first_error[256];
  char first_error_stage[64];
} tp_state;

extern tp_state tp;
/* Registers tp_seq (source), tp_delay (transform), tp_collect (sink). */
void tp_register(void);
void tp_reset(void);
#endif
