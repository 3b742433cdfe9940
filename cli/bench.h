/* The benchmarks behind `artflow bench`: the op benchmark (cli/bench_ops.c)
 * and the whole-model benchmark (cli/bench_model.c). */
#ifndef AF_CLI_BENCH_H
#define AF_CLI_BENCH_H

/* artflow bench --model M.gguf ...; argv[0] = "bench".  Returns an exit code. */
int af_bench_model(int argc, char **argv);
/* artflow bench ops [--json] [--repeat N]; argv[0] = "ops", device already
 * parsed (NULL = default).  Returns an exit code. */
int af_bench_ops(int argc, char **argv, const char *device);

#endif
