/* artflow: entry point and subcommand dispatch. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "cli/cli.h"

typedef struct {
  const char *name;
  int (*fn)(int, char **);
  const char *doc;
} af_cli_cmd;

#define AF_CLI_ROW(name, doc) {#name, af_cmd_##name, doc},
static const af_cli_cmd commands[] = {AF_CLI_COMMANDS(AF_CLI_ROW){NULL, NULL, NULL}};
#undef AF_CLI_ROW

static void usage(FILE *f) {
  fprintf(f,
          "usage: artflow COMMAND [options]\n"
          "\n"
          "artflow runs the ArtGPT-4 vision-language model as a YAML dataflow pipeline\n"
          "on any OpenCL device.\n"
          "\n"
          "commands:\n");
  for (const af_cli_cmd *c = commands; c->name; c++) fprintf(f, "  %-10s %s\n", c->name, c->doc);
  fprintf(f,
          "\n"
          "'artflow COMMAND --help' describes each command.\n"
          "Environment: ARTFLOW_DEVICE (device index or name substring), ARTFLOW_PROFILE=1\n"
          "(per-kernel times), AF_KERNEL_DIR (load .cl files from disk), XDG_CACHE_HOME.\n");
}

int af_cli_is_help(const char *arg) {
  return arg && (!strcmp(arg, "--help") || !strcmp(arg, "-h"));
}

int af_cli_usage_error(const char *cmd, const char *usage_text, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "artflow %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (usage_text) fputs(usage_text, stderr);
  return AF_EXIT_USAGE;
}

int af_cli_fail(int code, const char *what) {
  const char *msg = af_error_message();
  if (msg && *msg)
    fprintf(stderr, "artflow: %s%s%s\n", what ? what : "", what ? ": " : "", msg);
  else
    fprintf(stderr, "artflow: %s%s%s\n", what ? what : "", what ? ": " : "", af_strerror(code));
  af_error_clear();
  return AF_EXIT_FAIL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return AF_EXIT_USAGE;
  }
  const char *name = argv[1];
  if (af_cli_is_help(name) || !strcmp(name, "help")) {
    if (argc > 2 && strcmp(name, "help") == 0) {
      char help[] = "--help";
      char *sub[] = {argv[2], help, NULL};
      for (const af_cli_cmd *c = commands; c->name; c++)
        if (!strcmp(c->name, argv[2])) return c->fn(2, sub);
    }
    usage(stdout);
    return AF_EXIT_OK;
  }
  if (!strcmp(name, "--version")) name = "version";
  for (const af_cli_cmd *c = commands; c->name; c++)
    if (!strcmp(c->name, name)) return c->fn(argc - 1, argv + 1);
  fprintf(stderr, "artflow: unknown command '%s'\n", name);
  usage(stderr);
  return AF_EXIT_USAGE;
}
