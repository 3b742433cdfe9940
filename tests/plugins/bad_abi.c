/* A plugin built against a future stage ABI: artflow must refuse it with a
 * one-line error naming the file and both versions (tests/pipeline/test_plugin.c). */
#include "artflow/stage.h"

__attribute__((visibility("default"))) const af_plugin af_plugin_entry = {999u, "future", 0, 0};
