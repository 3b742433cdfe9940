/* The artflow command line: one file per subcommand (cli/cmd_<name>.c), each
 * exporting af_cmd_<name>(argc, argv) with argv[0] = the subcommand name.
 * Exit codes: 0 success, 1 failure of the work itself, 2 usage/configuration
 * error or not implemented. */
#ifndef AF_CLI_H
#define AF_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "cl/runtime.h"
#include "cl/weights.h"
#include "net/vision.h"

#define AF_EXIT_OK 0
#define AF_EXIT_FAIL 1
#define AF_EXIT_USAGE 2
/* interrupted (a signal, preemption): what was done is kept, --resume goes on
 * (sysexits.h's EX_TEMPFAIL: "try again later") */
#define AF_EXIT_INTERRUPTED 75

#define AF_CLI_COMMANDS(X)                                                        \
  X(run, "run a pipeline described by a YAML file")                               \
  X(merge, "combine the outputs of a sharded run into one file")                  \
  X(describe, "describe images with the model (vision path and text generation)") \
  X(chat, "chat about images, turn after turn (interactive on a terminal)")       \
  X(convert, "convert the original checkpoints into one GGUF model file")         \
  X(inspect, "show a model file, the stage list or one stage's parameters")       \
  X(tokenize, "print the token ids of a text")                                    \
  X(devices, "list OpenCL platforms and devices and the profile each gets")       \
  X(tune, "tune kernels and CLBlast for this device and write a profile")         \
  X(bench, "benchmark the ops or the whole model on this device")                 \
  X(mkmodel, "write a random-weight model of any size")                           \
  X(version, "print the version and library versions")

#define AF_CLI_DECL(name, doc) int af_cmd_##name(int argc, char **argv);
AF_CLI_COMMANDS(AF_CLI_DECL)
#undef AF_CLI_DECL

/* The command line shared by describe and chat: IMAGE... --model M
 * [--question Q] [--dump DIR] [--json] [--device D] [--help] and the
 * text-generation flags (--llm, --greedy, --temperature, --top-k, --top-p,
 * --seed, --max-new-tokens >= min_new_tokens, --max-length), applied to *o.
 * Returns -1 when the command should run (images from argv[a->first_image]),
 * else the exit code to return: --help printed, or a one-line usage error
 * naming the flag. */
struct af_describe_opts;
typedef struct af_cli_image_args {
  const char *model, *question, *dump, *device; /* NULL when not given */
  int json, first_image;
} af_cli_image_args;
int af_cli_image_args_parse(int argc, char **argv, const char *cmd, const char *usage, int min_new_tokens,
                            struct af_describe_opts *o, af_cli_image_args *a);

/* The vision path of one image for describe and chat: decode, Pillow-exact
 * resize and normalisation, ViT + ln_vision, Q-Former + projection, batch 1.
 * After af_cli_embed, pix (3 x S x S), vt (T x W), qo (Q x D) and po (Q x L)
 * hold that image's tensors.  Close also after a failed open. */
typedef struct af_cli_embedder {
  af_weights *w;
  af_vit *vit;
  af_qformer *qf;
  af_queue *q;
  int S;
  size_t T, W, Q, D, L;
  float lut[3 * 256];
  float *pix, *vt, *qo, *po;
  uint8_t *small;
} af_cli_embedder;
int af_cli_embedder_open(af_cl *cl, const char *model, af_cli_embedder *e);
int af_cli_embed(af_cli_embedder *e, const char *path);
void af_cli_embedder_close(af_cli_embedder *e);

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
