/* artflow tune: sweeps GEMM implementations, the own kernels' defines and
 * CLBlast's Xgemm parameters on this device's real shapes and writes a
 * device profile (the sweep is cl/tune.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/devprofile.h"
#include "cl/runtime.h"
#include "cl/tune.h"
#include "cli/cli.h"

static const char usage[] =
    "usage: artflow tune [--model MODEL.gguf] [--stages vit,qformer,llm] [--budget 10m] -o PROFILE.yaml\n"
    "                    [--shapes MxNxK,...] [--knobs D1,D2] [--no-clblast] [--repeat R] [--seed S]\n"
    "                    [--device D]\n"
    "\n"
    "Measures candidate settings on this device and writes a device profile for it\n"
    "(docs/profiles.md): the GEMM implementation (own tiled kernel or CLBlast), the own\n"
    "kernels' defines (AF_TILED_*, AF_GEMV_*; one at a time, keeping the better value),\n"
    "and CLBlast's Xgemm parameters (random valid sets, applied with\n"
    "CLBlastOverrideParameters).  Every candidate's result is checked against\n"
    "double-precision dot products before its time counts; failures are recorded.\n"
    "The current profile of the device is the starting point and supplies what is\n"
    "not swept (batch sizes, weight policy).  The written file has the measured\n"
    "times as comments; use it with ARTFLOW_PROFILE_FILE=PROFILE.yaml, or copy it to\n"
    "config/profiles/<vendor>/ where it is chosen by its match rules.\n"
    "\n"
    "Resumable: finished candidates go to PROFILE.yaml.tune-state; running the same\n"
    "command again replays them and continues.  Progress lines go to stderr.\n"
    "\n"
    "  -o FILE          the profile to write (required)\n"
    "  --model FILE     take the shapes of this model's linear layers\n"
    "  --stages LIST    which stages' shapes: vit, qformer, llm (default: all the model has)\n"
    "  --shapes LIST    explicit shapes MxNxK (C = A·Bᵀ, A M x K, B N x K; M = 1 is a GEMV);\n"
    "                   without --model or --shapes: the full-size ViT-g layers\n"
    "  --prefill P      LLM prefill positions for the shapes (default 64)\n"
    "  --budget T       time budget: 90s, 10m, 1h (default 10m); no candidate starts after it\n"
    "  --knobs LIST     sweep only these defines (default: all of AF_TILED_*, AF_GEMV_*)\n"
    "  --no-clblast     neither time CLBlast nor sweep its Xgemm (its builds take 5-30 s each\n"
    "                   on PoCL); the GEMM implementation then stays the starting profile's\n"
    "  --repeat R       timed runs per shape, best kept (default 3)\n"
    "  --seed S         seed of the CLBlast random search (default 1)\n"
    "  --state FILE     state file (default PROFILE.yaml.tune-state)\n"
    "  --device D       OpenCL device index or name substring\n";

int af_cmd_tune(int argc, char **argv) {
  const char *out = NULL, *model = NULL, *stages = NULL, *shapes = NULL, *device = NULL, *state = NULL,
             *knobs = NULL;
  double budget = 600;
  int repeat = 3, clblast = 1, prefill = 64;
  unsigned seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (af_cli_is_help(a)) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    } else if (!strcmp(a, "--no-clblast")) {
      clblast = 0;
    } else if (i + 1 >= argc) {
      return af_cli_usage_error("tune", usage, "unknown option or missing value '%s'", a);
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      out = argv[++i];
    } else if (!strcmp(a, "--model")) {
      model = argv[++i];
    } else if (!strcmp(a, "--stages")) {
      stages = argv[++i];
    } else if (!strcmp(a, "--shapes")) {
      shapes = argv[++i];
    } else if (!strcmp(a, "--device")) {
      device = argv[++i];
    } else if (!strcmp(a, "--knobs")) {
      knobs = argv[++i];
    } else if (!strcmp(a, "--state")) {
      state = argv[++i];
    } else if (!strcmp(a, "--budget")) {
      if (af_tune_parse_budget(argv[++i], &budget))
        return af_cli_usage_error("tune", usage, "%s", af_error_message());
    } else if (!strcmp(a, "--repeat")) {
      repeat = atoi(argv[++i]);
      if (repeat < 1 || repeat > 100) return af_cli_usage_error("tune", usage, "--repeat must be 1..100");
    } else if (!strcmp(a, "--prefill")) {
      prefill = atoi(argv[++i]);
      if (prefill < 2 || prefill > 65536)
        return af_cli_usage_error("tune", usage, "--prefill must be 2..65536");
    } else if (!strcmp(a, "--seed")) {
      seed = (unsigned)strtoul(argv[++i], NULL, 10);
    } else {
      return af_cli_usage_error("tune", usage, "unknown option '%s'", a);
    }
  }
  if (!out) return af_cli_usage_error("tune", usage, "-o PROFILE.yaml is required");
  if (shapes && model) return af_cli_usage_error("tune", usage, "give --model or --shapes, not both");
  if (stages && !model) return af_cli_usage_error("tune", usage, "--stages needs --model");
  af_tune_shape *sh = NULL;
  int nsh = 0;
  if (shapes && af_tune_parse_shapes(shapes, &sh, &nsh))
    return af_cli_usage_error("tune", usage, "%s", af_error_message());
  af_cl *cl = NULL;
  int rc = af_cl_open(&cl, device);
  if (rc) {
    free(sh);
    return af_cli_fail(rc, NULL);
  }
  if (model) {
    rc = af_tune_model_shapes(model, stages, cl->profile->batch_vit, cl->profile->batch_qformer, prefill, &sh,
                              &nsh);
    if (rc) {
      rc = rc == AF_ERR_INVALID ? af_cli_usage_error("tune", usage, "%s", af_error_message())
                                : af_cli_fail(rc, model);
      af_cl_close(cl);
      return rc;
    }
  } else if (!sh) { /* full-size ViT-g (EVA ViT-g, 224 px: 257 tokens, width 1408, MLP 6144, 39 blocks) */
    size_t M = 257 * (size_t)(cl->profile->batch_vit > 0 ? cl->profile->batch_vit : 1);
    double per = 39.0 / (cl->profile->batch_vit > 0 ? cl->profile->batch_vit : 1);
    static const size_t NK[4][2] = {{4224, 1408}, {1408, 1408}, {6144, 1408}, {1408, 6144}};
    if (!(sh = calloc(4, sizeof *sh))) {
      af_cl_close(cl);
      return af_cli_fail(af_err(AF_ERR_NOMEM, "out of memory"), NULL);
    }
    for (int i = 0; i < 4; i++) sh[i] = (af_tune_shape){M, NK[i][0], NK[i][1], per, "vit"};
    nsh = 4;
  }
  char cmd[1024];
  size_t l = 0;
  cmd[0] = 0;
  for (int i = 0; i < argc && l < sizeof cmd; i++)
    l += (size_t)snprintf(cmd + l, sizeof cmd - l, "%s%s", i ? " " : "artflow ", argv[i]);
  fprintf(stderr, "tune: %s (%s), starting from profile %s; %d shapes, budget %.0f s\n", cl->info.name,
          cl->info.platform, cl->profile->name, nsh, budget);
  af_tune_opts o = {.shapes = sh,
                    .n_shapes = nsh,
                    .budget_s = budget,
                    .out_path = out,
                    .state_path = state,
                    .repeat = repeat,
                    .seed = seed,
                    .clblast = clblast,
                    .knobs = knobs,
                    .progress = stderr,
                    .command = cmd};
  af_tune_result res;
  rc = af_tune_run(cl, &o, &res);
  if (rc) {
    rc = rc == AF_ERR_INVALID && !res.measured ? af_cli_usage_error("tune", usage, "%s", af_error_message())
                                               : af_cli_fail(rc, out);
  } else {
    fprintf(stderr, "tune: %d candidates measured, %d replayed, %d failed\n", res.measured, res.reused,
            res.failed);
    printf("wrote %s: GEMM %s", out, res.gemm_impl == AF_GEMM_IMPL_TILED ? "own tiled kernel" : "CLBlast");
    if (res.base_s > 0 && res.best_s > 0 && res.best_s < 1e300 && res.base_s < 1e300)
      printf(", %.4g s vs %.4g s with the starting profile on these shapes (%.2fx)", res.best_s, res.base_s,
             res.base_s / res.best_s);
    printf("\n");
    rc = AF_EXIT_OK;
  }
  free(sh);
  af_cl_close(cl);
  return rc;
}
