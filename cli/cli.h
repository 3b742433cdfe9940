/* The artflow command line: one file per subcommand (cli/cmd_<name>.c), each
 * exporting af_cmd_<name>(argc, argv) with argv[0] = the subcommand name.
 * Exit codes: 0 success, 1 failure of the work itself, 2 usage/configuration
 * error or not implemented. */
#ifndef AF_CLI_H
#define AF_CLI_H

#include <stdint.h>
#include <stdio.h>

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
  X(tag, "tag images with labels from a vocabulary, scored by the model")         \
  X(chat, "chat about images, turn after turn (interactive on a terminal)")       \
  X(serve, "answer an OpenAI-compatible HTTP API with the model kept loaded")     \
  X(convert, "convert the original checkpoints into one GGUF model file")         \
  X(export, "write the LLM part of a model file as a GGUF that llama.cpp loads")  \
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

/* ---- flags made from a stage's parameter table (cli/flags.c) ---- */
struct af_buf;
struct af_stage_desc;
typedef struct af_cli_flags {
  const struct af_stage_desc *desc; /* the stage whose rows are offered (e.g. llm) */
  const char *const *skip;          /* rows not offered (NULL-terminated), or NULL */
  void *config;                     /* the rows' values so far (defaults, then flags) */
  char **sets;                      /* "stage.name=value" for each flag given */
  int n_sets;
} af_cli_flags;
/* 0, or a status when the stage is unknown / out of memory. */
int af_cli_flags_init(af_cli_flags *f, const char *stage, const char *const *skip);
/* The same for a parameter table that is not a registered stage (the llm
 * stage's task keys). */
int af_cli_flags_init_desc(af_cli_flags *f, const struct af_stage_desc *desc, const char *const *skip);
void af_cli_flags_free(af_cli_flags *f);
/* If argv[*i] is one of the rows' flags (--max-new-tokens N, --max-new-tokens=N,
 * --greedy for a BOOL row): checks the value with the row (type, range: the
 * same check as the YAML loader's), records it, advances *i past a separate
 * value and returns 1.  0: not one of them.  Negative: minus the exit code
 * after a one-line usage error naming the flag ("bad value '7' for --top-p: ..."). */
int af_cli_flags_parse(af_cli_flags *f, int argc, char **argv, int *i, const char *cmd, const char *usage);
/* The value of row `name` so far, in YAML scalar form, in buf; NULL when no such row. */
const char *af_cli_flags_value(const af_cli_flags *f, const char *name, char *buf, size_t n);
/* Appends one help line per offered row: "  --top-p X   doc (default 0.9)";
 * extra: NULL-terminated pairs {row name, text appended to its line}. */
void af_cli_flags_help(const af_cli_flags *f, struct af_buf *out, const char *const *extra);

/* A command's usage text: head, one line per offered row of f (extra as in
 * af_cli_flags_help), tail.  malloc'd; NULL when out of memory. */
char *af_cli_usage_text(const char *head, const af_cli_flags *f, const char *const *extra, const char *tail);

/* A command's own options: "--name VALUE" into *value, or "--name" setting *flag. */
typedef struct af_cli_opt {
  const char *name;
  const char **value;
  int *flag;
} af_cli_opt;
/* The command line of describe, chat and tag: --help (usage on stdout, exit
 * 0), the options of opts (NULL-name terminated), the rows of f, and the
 * rest as operands (argc of them at most).  Returns -1 when the command
 * should run, else the exit code after a one-line usage error. */
int af_cli_parse(int argc, char **argv, const char *cmd, const char *usage, const af_cli_opt *opts,
                 af_cli_flags *f, const char **operands, int *n_operands);

/* ---- images through the pipeline engine (cli/images.c) ---- */
struct af_idset;
typedef struct af_cli_images {
  const char *cmd; /* "describe", "chat": names messages */
  const char *model, *llm_model, *device;
  const char *const *images; /* the paths, in order */
  int n_images;
  int with_llm;            /* add the llm stage (describe); else the vision path only */
  const char *tag;         /* tag: the llm stage's tasks (JSON); the output "labels" is shown */
  int json;                /* one JSON object per image on stdout; else streamed text */
  const char *dump;        /* --dump DIR, or NULL */
  const char *const *sets; /* more "--set" values (e.g. the llm flags) */
  int n_sets;
  float **proj;            /* chat: n_images slots for each image's embeddings (malloc'd) */
  int n_proj, proj_rows;   /* filled, and the rows of each */
  int failures;            /* images that failed */
  struct af_idset *dumped; /* private */
} af_cli_images;
/* Runs the images through decode -> preprocess (the model's size, mean and
 * std) -> vit -> qformer [-> llm] on the engine of `artflow run`, showing
 * each as describe promises (cli-contract.md); a failed image is one line on
 * stderr and the others go on.  Returns the exit code: 0, 1 (an image
 * failed, or the run), 2 (configuration). */
int af_cli_images_run(af_cli_images *r);
/* preprocess as the model wants its input: "preprocess.image_size=S",
 * "preprocess.mean=...", "preprocess.std=..." from the model file.  0, or a
 * status with the message. */
int af_cli_vision_sets(const char *model, char sets[3][256]);

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
