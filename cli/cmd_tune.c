/* artflow tune: placeholder until its issue lands (says so, exits 2). */
#include "cli/cli.h"

static const char usage[] =
    "usage: artflow tune [options]\n"
    "\n"
    "Not implemented yet in this build.\n";

int af_cmd_tune(int argc, char **argv) { return af_cli_not_implemented("tune", usage, argc, argv); }
