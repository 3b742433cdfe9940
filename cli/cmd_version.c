/* artflow version: our version, the versions of the libraries in use, and
 * where this binary reads its data from (core/datadir.h). */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <vips/vips.h>
#include <yaml.h>
#include <zlib.h>

#include "artflow/stage.h"
#include "cli/cli.h"
#include "core/datadir.h"

static const char usage[] =
    "usage: artflow version\n"
    "\n"
    "Prints the artflow version, the versions of the libraries it uses, the\n"
    "executable's path and the data folders it reads (device profiles,\n"
    "architecture files, vocabularies) with how each was found: an environment\n"
    "variable, 'installed' (<exe dir>/../share/artflow), or 'source tree'.\n";

int af_cmd_version(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (af_cli_is_help(argv[i])) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    }
    return af_cli_usage_error("version", usage, "unexpected argument '%s'", argv[i]);
  }
  printf("artflow %s\n", AF_VERSION);
  printf("  libvips %d.%d.%d, libyaml %s, zlib %s, cJSON %s\n", VIPS_MAJOR_VERSION, VIPS_MINOR_VERSION,
         VIPS_MICRO_VERSION, yaml_get_version_string(), zlibVersion(), cJSON_Version());
  printf("  stage ABI %u\n", (unsigned)AF_STAGE_ABI_VERSION);
  const char *exe = af_exe_path();
  printf("  executable:   %s\n", exe[0] ? exe : "(unknown: /proc/self/exe unreadable)");
  for (int k = 0; k < AF_DATA_KINDS; k++) {
    af_data_where w;
    char label[32];
    snprintf(label, sizeof label, "%s:", af_data_kind_name((af_data_kind)k));
    if (af_data_locate((af_data_kind)k, &w) == 0)
      printf("  %-13s %s (%s)\n", label, w.dir, w.origin);
    else
      printf("  %-13s not found (tried %s)\n", label, w.tried[0] ? w.tried : "nothing");
  }
  return AF_EXIT_OK;
}
