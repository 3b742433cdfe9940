/* Test harness for the I/O stages: fills a stage's config struct from its
 * parameter table (defaults, then name=value strings) without the YAML
 * loader, and runs sources and sinks directly through their descriptors. */
#ifndef AF_TEST_IO_HARNESS_H
#define AF_TEST_IO_HARNESS_H
#include "artflow/stage.h"

/* New config struct with every default applied; then each "name=value" of
 * sets (NULL-terminated).  Aborts the test (returns NULL) on a bad name. */
void *io_config(const af_stage_desc *d, const char *const *sets);
void io_config_free(const af_stage_desc *d, void *cfg);
/* A context with the given pipeline path (may be NULL) and resume flag,
 * batch 64 and a stand-in provenance() ({"artflow":"harness"}). */
af_stage_ctx io_ctx(const char *instance, const char *pipeline_path, int resume);
/* A stage's setup as the engine runs it: create(), negotiate() into *dims
 * (may be NULL), prepare() with `inputs` (NULL: every size open).  *self is
 * set even when a step fails (destroy it).  0 or the failing step's status. */
int io_stage_setup(const af_stage_desc *d, af_stage_ctx *ctx, const void *cfg, const af_tensor_desc *inputs,
                   af_bindings *dims, void **self);
/* Runs a source to its end: returns the items (caller frees each and the
 * array), *n set, *flow the last flow value (EOS or ERROR); -1 if create failed. */
af_item **io_drain(const af_stage_desc *d, const char *const *sets, const char *pipeline_path, int *n,
                   int *create_rc);
void io_items_free(af_item **items, int n);
#endif
