/* A test plugin with one transform, `slow`, that sleeps `ms` milliseconds per
 * item of its batch and changes nothing: it makes a real pipeline (the demo
 * model) slow enough for a signal to land in the middle of a batch, so the
 * preemption tests can check the grace, the abandoned items and the resume.
 * AF_TEST_SLOW_MS, when set, replaces `ms` (a resumed run may go fast
 * without changing the pipeline's settings). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "artflow/stage.h"

typedef struct slow_config {
  int64_t ms;
} slow_config;

static int slow_create(const af_stage_ctx *ctx, const void *config, void **self) {
  (void)ctx;
  *self = (void *)config;
  return 0;
}

static af_flow slow_process(void *self, const af_stage_ctx *ctx, af_item **items, int n) {
  (void)ctx;
  (void)items;
  const char *env = getenv("AF_TEST_SLOW_MS");
  int64_t ms = (env && *env ? atoll(env) : ((const slow_config *)self)->ms) * n;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
  return AF_FLOW_OK;
}

static void slow_destroy(void *self) {
  (void)self;
}

static const af_param slow_params[] = {
    {"ms", AF_PARAM_INT, offsetof(slow_config, ms), "100", 0, 600000, NULL, "milliseconds per item", 0},
};

static const af_stage_desc slow_stage = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "slow",
    .doc = "sleeps ms per item (tests)",
    .kind = AF_STAGE_TRANSFORM,
    .params = slow_params,
    .n_params = AF_ARRAY_LEN(slow_params),
    .config_size = sizeof(slow_config),
    .batch_size = 4,
    .create = slow_create,
    .process = slow_process,
    .destroy = slow_destroy,
};

static const af_stage_desc *const stages[] = {&slow_stage};
__attribute__((visibility("default")))
const af_plugin af_plugin_entry = {AF_STAGE_ABI_VERSION, "slow", 1, stages};
