/* `artflow tune`: measures candidate device-profile settings on the present
 * device and writes a profile (config/profiles format, docs/profiles.md).
 *
 * What is swept (data-driven: af_tune_knobs() lists the kernel defines and
 * their candidate values, so a new define is one table row):
 *   - the GEMM implementation: AF_GEMM_IMPL = tiled (cl/gemm_tiled.h) or
 *     CLBlast;
 *   - the own GEMM's AF_TILED_* defines, greedily one define at a time;
 *   - the GEMV defines (decode, M = 1 shapes);
 *   - CLBlast's Xgemm parameters (CLBlastOverrideParameters), random valid
 *     combinations of CLBlast's own tuner space (GEMMK 0, src/tuning/kernels/
 *     xgemm.hpp constraints, local memory and work-group limits of the device).
 * Every candidate's result is checked against double-precision dot products
 * on sampled outputs (corners included; normalised error <= 1e-4) before its
 * time counts; a candidate that fails to build, run or check is recorded as
 * failed.  Timings are the best of `repeat` runs after a warm-up run.
 *
 * Resumable: each finished candidate is appended to a state file (default
 * OUT.tune-state); a rerun with the same shapes replays those results without
 * measuring (the search is deterministic for a seed) and continues.  Bounded
 * by the time budget: no candidate starts after it is spent (one running may
 * overrun it: a cold CLBlast Xgemm build takes 5-30 s on PoCL). */
#ifndef AF_CL_TUNE_H
#define AF_CL_TUNE_H

#include <stdio.h>

#include "cl/runtime.h"

typedef struct af_tune_shape {
  size_t m, n, k; /* m = 1: GEMV y = W x (W n x k); else C[m,n] = A[m,k] · B[n,k]ᵀ */
  double weight;  /* calls per unit of work (per image, per token), weights the total */
  char stage[16]; /* vit, qformer, llm, or "shape" for --shapes */
} af_tune_shape;

typedef struct af_tune_knob {
  const char *define; /* -D name in the profile's `kernels:` */
  const char *values; /* candidate values, blank-separated */
  const char *def;    /* the value in effect when the profile does not set it (not re-measured) */
  int gemv;           /* 0: timed on the GEMM shapes (own kernel), 1: on the GEMV shapes */
  const char *doc;
} af_tune_knob;

/* The table of swept defines (NULL-terminated). */
const af_tune_knob *af_tune_knobs(void);

typedef struct af_tune_opts {
  const af_tune_shape *shapes;
  int n_shapes;
  double budget_s;        /* wall-clock budget for measuring */
  const char *out_path;   /* profile to write */
  const char *state_path; /* NULL = out_path + ".tune-state" */
  int repeat;             /* timed runs per shape, best kept (0 = 3) */
  unsigned seed;          /* CLBlast random search */
  int clblast;            /* 1: sweep CLBlast's Xgemm parameters too */
  const char *knobs;      /* comma-separated defines to sweep (NULL = every af_tune_knobs() row) */
  FILE *progress;         /* progress lines (NULL = quiet) */
  const char *command;    /* recorded in the profile's header comment */
} af_tune_opts;

typedef struct af_tune_result {
  int measured, reused, failed; /* candidates measured now, replayed from the state file, failed */
  double base_s, best_s;        /* the device's current profile vs the written one (GEMM shapes, s) */
  int gemm_impl;                /* AF_GEMM_IMPL_* written */
} af_tune_result;

/* Runs the sweep on cl's device and writes o->out_path.  The profile in
 * effect on cl (cl->profile) is the starting point and supplies what is not
 * swept (batch sizes, weight policy, other defines).  Returns 0 or a status
 * (af_err message): AF_ERR_IO for the output or state file, AF_ERR_INVALID
 * for bad options. */
int af_tune_run(af_cl *cl, const af_tune_opts *o, af_tune_result *res);

/* "90s", "10m", "1h", "1h30m", "45" (seconds), "2.5m": seconds in *out.
 * Returns 0 or AF_ERR_INVALID. */
int af_tune_parse_budget(const char *s, double *out);

/* "MxNxK[,MxNxK...]": *out malloc'd (caller frees), weight 1 each. */
int af_tune_parse_shapes(const char *s, af_tune_shape **out, int *n);

/* The linear-layer shapes of a model file for the stages listed ("vit,
 * qformer,llm"; NULL = all the model has): ViT at batch vit_batch, Q-Former
 * at qformer_batch, LLM prefill of `prefill` positions and decode GEMVs.
 * Duplicates are merged (weights added).  *out malloc'd. */
int af_tune_model_shapes(const char *gguf_path, const char *stages, int vit_batch, int qformer_batch,
                         int prefill, af_tune_shape **out, int *n);

#endif
