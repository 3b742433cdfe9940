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
/* artflow bench --model Q --reference R --text FILE (cli/bench_quality.c):
 * NMSE, KL divergence and top-1 agreement of Q's logits against R's over the
 * first `positions` tokens of the text.  Returns 0 or an af_status. */
int af_bench_quality(const char *model, const char *reference, const char *text_path, int positions,
                     const char *device, int json);
/* the process's peak resident set in bytes (VmHWM), 0 when unknown */
unsigned long long af_bench_peak_rss(void);

#endif
