/* The benchmarks behind `artflow bench`: the op benchmark (cli/bench_ops.c)
 * and the whole-model benchmark (cli/bench_model.c). */
#ifndef AF_CLI_BENCH_H
#define AF_CLI_BENCH_H

/* artflow bench --model M.gguf ...; argv[0] = "bench".  Returns an exit code. */
int af_bench_model(int argc, char **argv);
/* artflow bench ops [--json] [--repeat N]; argv[0] = "ops", device already
 * parsed (NULL = default).  Returns an exit code. */
int af_bench_ops(int argc, char **argv, const char *device);
/* artflow bench --model M.gguf --tag VOCAB... (cli/bench_tag.c): tagging the
 * vocabularies per image against one prompt prefill, one describe answer of
 * 300 tokens and re-prefilling per task and candidate.  An exit code. */
int af_bench_tag(const char *model, const char *device, const char *const *vocabs, int n, int repeat,
                 int json);

#endif
