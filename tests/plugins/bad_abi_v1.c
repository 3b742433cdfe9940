/* A plugin built against stage ABI 1 (before the stage contract v2: no
 * negotiate(), no batch/queue/weights in the context).  artflow must refuse
 * it with a one-line error naming the file and both versions
 * (tests/pipeline/test_plugin.c). */
#include "artflow/stage.h"

__attribute__((visibility("default"))) const af_plugin af_plugin_entry = {1u, "old", 0, 0};
