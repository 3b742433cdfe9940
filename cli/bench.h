/* The benchmarks behind `artflow bench`: `bench ops` (cli/cmd_bench.c) and the
 * whole-model benchmark (cli/bench_model.c). */
#ifndef AF_CLI_BENCH_H
#define AF_CLI_BENCH_H

/* artflow bench --model M.gguf ...; argv[0] = "bench".  Returns an exit code. */
int af_bench_model(int argc, char **argv);

#endif
