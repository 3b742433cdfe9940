/* The artflow command line: one file per subcommand (cli/cmd_<name>.c), each
 * exporting af_cmd_<name>(argc, argv) with argv[0] = the subcommand name.
 * Exit codes: 0 success, 1 failure of the work itself, 2 usage/configuration
 * error or not implemented. */
#ifndef AF_CLI_H
#define AF_CLI_H

#include <stdio.h>

#define AF_EXIT_OK 0
#define AF_EXIT_FAIL 1
#define AF_EXIT_USAGE 2

#define AF_CLI_COMMANDS(X)                                                           \
  X(run, "run a pipeline described by a YAML file")                                 \
  X(describe, "describe images with the model (vision path and text generation)")   \
  X(chat, "chat about images, turn after turn (interactive on a terminal)")        \
  X(convert, "convert the original checkpoints into one GGUF model file")           \
  X(inspect, "show a model file, the stage list or one stage's parameters")        \
  X(tokenize, "print the token ids of a text")                                      \
  X(devices, "list OpenCL platforms and devices and the profile each gets")         \
  X(tune, "tune kernels and CLBlast for this device and write a profile")          \
  X(bench, "benchmark the ops or the whole model on this device")                   \
  X(mkmodel, "write a random-weight model of any size")                             \
  X(version, "print the version and library versions")

#define AF_CLI_DECL(name, doc) int af_cmd_##name(int argc, char **argv);
AF_CLI_COMMANDS(AF_CLI_DECL)
#undef AF_CLI_DECL

/* Prints "artflow CMD: <message>" and the usage text on stderr; returns 2.
 * `usage` is the command's full usage/help text. */
int af_cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints "artflow: <message>" for a failed library call (code + the thread's
 * recorded message) on stderr and returns 1. */
int af_cli_fail(int code, const char *what);

/* Shared handling of the common flags: returns 1 if argv[i] is --help/-h
 * (help printed to stdout), else 0. */
int af_cli_is_help(const char *arg);


#endif
