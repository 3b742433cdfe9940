/* A plugin with the right ABI but a malformed stage (no name, no callbacks):
 * the registry must refuse it and the error must name the file. */
#include "artflow/stage.h"

static const af_stage_desc broken = {.abi_version = AF_STAGE_ABI_VERSION, .kind = AF_STAGE_TRANSFORM};
static const af_stage_desc *const stages[] = {&broken};
__attribute__((visibility("default")))
const af_plugin af_plugin_entry = {AF_STAGE_ABI_VERSION, "broken", 1, stages};
