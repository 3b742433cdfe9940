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
  atomic_llong negotiated; /* negotiate() calls of tp_make / tp_take */
  int prepared_batch;      /* ctx->batch tp_take's prepare() saw */
  int64_t prepared_dim;    /* the size of its input prepare() saw */
  int64_t raise_after;     /* the sink raises SIGINT after this many items (0 = never) */
  int sig_raised;
  int raise_twice; /* raise SIGINT twice: the process ends */
  int stop_twice;  /* instead of a signal, af_pipeline_stop twice: abort */
  char first_error[256];
  char first_error_stage[64];
} tp_state;

extern tp_state tp;
/* Registers tp_seq (source), tp_delay, tp_need8, tp_needu8, tp_make and
 * tp_take (transforms), tp_collect (sink). */
void tp_register(void);
void tp_reset(void);
#endif
