/* artflow bench: placeholder until its issue lands (says so, exits 2). */
#include "cli/cli.h"

static const char usage[] =
    "usage: artflow bench [options]\n"
    "\n"
    "Not implemented yet in this build.\n";

int af_cmd_bench(int argc, char **argv) { return af_cli_not_implemented("bench", usage, argc, argv); }
