/* artflow version: our version and the versions of the libraries in use. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <vips/vips.h>
#include <yaml.h>
#include <zlib.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: artflow version\n"
    "\n"
    "Prints the artflow version and the versions of the libraries it uses.\n";

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
  return AF_EXIT_OK;
}
