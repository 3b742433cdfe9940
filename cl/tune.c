/* The tuning sweep behind `artflow tune` (see tune.h): candidate profiles,
 * checked and timed GEMM / GEMV runs, the state file, the profile writer. */
#include "cl/tune.h"

#include <clblast_c.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cl/devprofile.h"
#include "cl/gemm_tiled.h"
#include "cl/ops.h"
#include "formats/gguf.h"
#include "formats/quant.h"

/* ------------------------------------------------------------- knobs */

/* The own kernels' defines and the values worth trying (cl/gemm_tiled.c and
 * cl/ops.c read them).  Add a row for a new define; gemv = 1 times it on the
 * decode (M = 1) shapes with af_op_gemv, else on the GEMM shapes with the own
 * GEMM (af_gemm_tiled). */
static const af_tune_knob KNOBS[] = {
    {"AF_TILED_MR", "2 3 4 6 8", "4", 0, "dot kernel: rows of C per work-item"},
    {"AF_TILED_NP", "2 4 8", "4", 0, "dot kernel: columns per work-item"},
    {"AF_TILED_VW", "8 16", "16", 0, "vector width along k"},
    {"AF_TILED_WG", "4 8 16", "8", 0, "row tiles per work-group"},
    {"AF_TILED_WN", "4 8 16", "8", 0, "column tiles per work-group"},
    {"AF_TILED_PMR", "4 6 8", "6", 0, "packed kernel: rows per work-item"},
    {"AF_TILED_PWN", "2 4 8", "4", 0, "packed kernel: column tiles per group"},
    {"AF_TILED_PACK_M", "256 1024 4096", "1024", 0, "rows from which x·Wᵀ packs W per call"},
    {"AF_TILED_KC", "0 512", "0", 0, "K block (0 = all of K)"},
    /* decode GEMV (cl/ops.c): portable kernel (ops.cl) or the CPU one (gemv_cpu.cl) */
    {"AF_GEMV_IMPL", "portable cpu", "portable", 1, "GEMV kernel: cpu = gemv_cpu.cl"},
    {"AF_GEMV_WG", "4 8 16 32", "8", 1, "portable GEMV: output rows per work-group"},
    {"AF_GEMV_RB", "4 8 16 32", "16", 1, "CPU GEMV: rows per work-item"},
    {"AF_GEMV_CPU_WG", "1 2 4", "1", 1, "CPU GEMV: work-items per group"},
    {"AF_GEMV_R1", "4 8 16", "8", 1, "CPU GEMV, one vector: rows walked at once"},
    {"AF_GEMV_LUT", "0 1", "1", 1,
     "CPU GEMV: Q8_0/Q4_0 scales through a 65536-entry table (0: from the bits)"},
    {"AF_GEMV_PF", "0 256 384 512 1024", "384", 1,
     "CPU GEMV: bytes prefetched ahead of each row stream (0: off)"},
    {"AF_GEMV_PF_NEXT", "0 1", "1", 1,
     "CPU GEMV: prefetch runs on into the stream's next row (0: into the row after)"},
    {"AF_GEMV_PERM", "0 1", "1", 1,
     "CPU GEMV: Q4_0 nibbles through the AVX-512 permute table (0: byte path)"},
    {"AF_GEMV_KC", "0 8 16 32", "16", 1,
     "CPU GEMV, several vectors: Q8_0/Q4_0 blocks per chunk of k (0: all)"},
    {NULL, NULL, NULL, 0, NULL},
};

const af_tune_knob *af_tune_knobs(void) {
  return KNOBS;
}

/* ------------------------------------------------------------- parsing */

int af_tune_parse_budget(const char *s, double *out) {
  double total = 0;
  const char *p = s;
  if (!s || !*s) return af_err(AF_ERR_INVALID, "budget: empty (say e.g. 90s, 10m, 1h)");
  while (*p) {
    char *e;
    errno = 0;
    double v = strtod(p, &e);
    if (e == p || errno || v < 0)
      return af_err(AF_ERR_INVALID, "budget '%s': expected a number like 90s, 10m, 1h", s);
    double unit = 1;
    if (*e == 's')
      e++;
    else if (*e == 'm')
      unit = 60, e++;
    else if (*e == 'h')
      unit = 3600, e++;
    else if (*e)
      return af_err(AF_ERR_INVALID, "budget '%s': unknown unit '%c' (s, m, h)", s, *e);
    total += v * unit;
    p = e;
  }
  if (!(total > 0)) return af_err(AF_ERR_INVALID, "budget '%s' must be more than 0 s", s);
  *out = total;
  return 0;
}

int af_tune_parse_shapes(const char *s, af_tune_shape **out, int *n) {
  *out = NULL, *n = 0;
  int cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  af_tune_shape *v = calloc((size_t)cap, sizeof *v);
  if (!v) return af_err(AF_ERR_NOMEM, "out of memory");
  const char *p = s;
  while (*p) {
    unsigned long long m, nn, k;
    int used = 0;
    if (sscanf(p, "%llux%llux%llu%n", &m, &nn, &k, &used) != 3 || !m || !nn || !k || m > 65536 ||
        nn > 65536 || k > 65536 || (p[used] && p[used] != ',')) {
      free(v);
      return af_err(AF_ERR_INVALID, "--shapes '%s': expected MxNxK[,MxNxK...] with sizes 1..65536", s);
    }
    v[*n] = (af_tune_shape){(size_t)m, (size_t)nn, (size_t)k, 1.0, "shape"};
    (*n)++;
    p += used;
    if (*p == ',') p++;
  }
  if (!*n) {
    free(v);
    return af_err(AF_ERR_INVALID, "--shapes: no shape given");
  }
  *out = v;
  return 0;
}

static int add_shape(af_tune_shape *v, int *n, int cap, const char *stage, size_t m, size_t nn, size_t k,
                     double w) {
  for (int i = 0; i < *n; i++)
    if (v[i].m == m && v[i].n == nn && v[i].k == k) {
      v[i].weight += w;
      return 0;
    }
  if (*n >= cap) return af_err(AF_ERR_INVALID, "tune: too many shapes");
  v[*n] = (af_tune_shape){m, nn, k, w, ""};
  snprintf(v[*n].stage, sizeof v[*n].stage, "%s", stage);
  (*n)++;
  return 0;
}

static int want(const char *stages, const char *name) {
  if (!stages) return 1;
  size_t l = strlen(name);
  for (const char *p = stages; (p = strstr(p, name)); p += l)
    if ((p == stages || p[-1] == ',') && (p[l] == 0 || p[l] == ',')) return 1;
  return 0;
}

static uint32_t meta(const af_gguf *g, const char *key, uint32_t def) {
  uint32_t v;
  return af_gguf_get_u32(g, key, &v) ? def : v;
}

int af_tune_model_shapes(const char *path, const char *stages, int vb, int qb, int prefill,
                         af_tune_shape **out, int *n) {
  *out = NULL, *n = 0;
  for (const char *p = stages; p && *p;) {
    size_t l = strcspn(p, ",");
    if (!((l == 3 && !strncmp(p, "vit", 3)) || (l == 7 && !strncmp(p, "qformer", 7)) ||
          (l == 3 && !strncmp(p, "llm", 3))))
      return af_err(AF_ERR_INVALID, "--stages '%s': expected a list of vit, qformer, llm", stages);
    p += l + (p[l] == ',');
  }
  af_gguf *g = NULL;
  int rc = af_gguf_open(path, &g);
  if (rc) return rc;
  enum { CAP = 64 };
  af_tune_shape *v = calloc(CAP, sizeof *v);
  if (!v) {
    af_gguf_close(g);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  if (vb < 1) vb = 1;
  if (qb < 1) qb = 1;
  size_t S = meta(g, "vision.image_size", 0), P = meta(g, "vision.patch_size", 0),
         W = meta(g, "vision.embedding_length", 0), F = meta(g, "vision.feed_forward_length", 0);
  double L = meta(g, "vision.block_count", 0);
  size_t T = S && P ? (S / P) * (S / P) + 1 : 0;
  if (want(stages, "vit") && T && W && F && L > 0) {
    size_t M = T * (size_t)vb;
    double per = L / vb; /* calls per image */
    if (!rc) rc = add_shape(v, n, CAP, "vit", M, 3 * W, W, per);
    if (!rc) rc = add_shape(v, n, CAP, "vit", M, W, W, per);
    if (!rc) rc = add_shape(v, n, CAP, "vit", M, F, W, per);
    if (!rc) rc = add_shape(v, n, CAP, "vit", M, W, F, per);
  }
  size_t D = meta(g, "qformer.embedding_length", 0), QF = meta(g, "qformer.feed_forward_length", 0),
         Q = meta(g, "qformer.query_count", 0), every = meta(g, "qformer.cross_attention_every", 2);
  double QL = meta(g, "qformer.block_count", 0);
  if (want(stages, "qformer") && D && QF && Q && QL > 0) {
    size_t M = Q * (size_t)qb;
    double per = QL / qb, cross = ceil(QL / (double)(every ? every : 1)) / qb;
    if (!rc) rc = add_shape(v, n, CAP, "qformer", M, D, D, 4 * per + 2 * cross);
    if (!rc) rc = add_shape(v, n, CAP, "qformer", M, QF, D, per);
    if (!rc) rc = add_shape(v, n, CAP, "qformer", M, D, QF, per);
    if (!rc && T && W) rc = add_shape(v, n, CAP, "qformer", T * (size_t)qb, D, W, 2 * cross);
  }
  size_t H = meta(g, "llama.embedding_length", 0), LF = meta(g, "llama.feed_forward_length", 0);
  double LL = meta(g, "llama.block_count", 0);
  if (want(stages, "llm") && H && LF && LL > 0) {
    size_t Pm = prefill > 1 ? (size_t)prefill : 64;
    if (!rc) rc = add_shape(v, n, CAP, "llm", Pm, H, H, 4 * LL);
    if (!rc) rc = add_shape(v, n, CAP, "llm", Pm, LF, H, 2 * LL);
    if (!rc) rc = add_shape(v, n, CAP, "llm", Pm, H, LF, LL);
    if (!rc) rc = add_shape(v, n, CAP, "llm", 1, H, H, 4 * LL);
    if (!rc) rc = add_shape(v, n, CAP, "llm", 1, LF, H, 2 * LL);
    if (!rc) rc = add_shape(v, n, CAP, "llm", 1, H, LF, LL);
  }
  af_gguf_close(g);
  if (!rc && !*n)
    rc = af_err(AF_ERR_INVALID, "%s: no linear-layer shapes for the stages '%s' in this model", path,
                stages ? stages : "vit,qformer,llm");
  if (rc) {
    free(v);
    *n = 0;
    return rc;
  }
  *out = v;
  return 0;
}

/* ------------------------------------------------------------- timing */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { N_SAMPLES = 96 };

/* one shape's buffers, host copies and sampled reference values */
typedef struct bench_shape {
  af_tune_shape s;
  cl_mem a, b, bh, c; /* A (or x), B / W fp32, W fp16 (GEMV with fp16 storage), C / y */
  float *ha, *hb;
  size_t si[N_SAMPLES], sj[N_SAMPLES];
  double ref[N_SAMPLES], mag[N_SAMPLES];
} bench_shape;

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  return *s = x;
}

static float rnd(uint64_t *s) {
  return (float)((rng_next(s) >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f;
}

static void shape_free(bench_shape *b) {
  if (b->a) clReleaseMemObject(b->a);
  if (b->b) clReleaseMemObject(b->b);
  if (b->bh) clReleaseMemObject(b->bh);
  if (b->c) clReleaseMemObject(b->c);
  free(b->ha), free(b->hb);
  memset(b, 0, sizeof *b);
}

static int shape_init(af_cl *cl, af_queue *q, const af_tune_shape *s, int half_w, uint64_t seed,
                      bench_shape *b) {
  memset(b, 0, sizeof *b);
  b->s = *s;
  size_t na = s->m * s->k, nb = s->n * s->k, nc = s->m * s->n;
  b->ha = malloc(na * sizeof(float)), b->hb = malloc(nb * sizeof(float));
  if (!b->ha || !b->hb) return af_err(AF_ERR_NOMEM, "out of memory");
  uint64_t st = seed * 2654435761u + 88172645463325252ull;
  for (size_t i = 0; i < na; i++) b->ha[i] = rnd(&st);
  for (size_t i = 0; i < nb; i++) b->hb[i] = rnd(&st);
  int gemv = s->m == 1;
  uint16_t *h16 = NULL;
  if (gemv && half_w) { /* the device reads fp16 weights: the reference uses the same rounded values */
    if (!(h16 = malloc(nb * sizeof *h16))) return af_err(AF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nb; i++) h16[i] = af_f32_to_f16(b->hb[i]), b->hb[i] = af_f16_to_f32(h16[i]);
  }
  int rc = af_cl_alloc(cl, CL_MEM_READ_ONLY, na * sizeof(float), NULL, &b->a);
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_ONLY, nb * sizeof(float), NULL, &b->b);
  if (!rc && h16) rc = af_cl_alloc(cl, CL_MEM_READ_ONLY, nb * sizeof *h16, NULL, &b->bh);
  if (!rc) rc = af_cl_alloc(cl, CL_MEM_READ_WRITE, nc * sizeof(float), NULL, &b->c);
  if (!rc) rc = af_queue_write(q, b->a, 0, na * sizeof(float), b->ha);
  if (!rc) rc = af_queue_write(q, b->b, 0, nb * sizeof(float), b->hb);
  if (!rc && h16) rc = af_queue_write(q, b->bh, 0, nb * sizeof *h16, h16);
  if (!rc) rc = af_queue_finish(q);
  free(h16);
  /* samples: the four corners (edge tiles are where tiling goes wrong), then random */
  for (int t = 0; t < N_SAMPLES; t++) {
    size_t i = t == 1 || t == 3 ? s->m - 1 : t < 4 ? 0 : (size_t)(rng_next(&st) % s->m);
    size_t j = t == 2 || t == 3 ? s->n - 1 : t < 4 ? 0 : (size_t)(rng_next(&st) % s->n);
    double acc = 0, mag = 0;
    for (size_t k = 0; k < s->k; k++) {
      double p = (double)b->ha[i * s->k + k] * (double)b->hb[j * s->k + k];
      acc += p, mag += fabs(p);
    }
    b->si[t] = i, b->sj[t] = j, b->ref[t] = acc, b->mag[t] = mag;
  }
  return rc;
}

/* max normalised error of the sampled outputs (|c - ref| / sum |a b|) */
static int shape_check(af_queue *q, const bench_shape *b, double *err) {
  float *c = malloc(b->s.m * b->s.n * sizeof(float));
  if (!c) return af_err(AF_ERR_NOMEM, "out of memory");
  int rc = af_queue_read(q, b->c, 0, b->s.m * b->s.n * sizeof(float), c);
  *err = 0;
  for (int t = 0; !rc && t < N_SAMPLES; t++) {
    double v = c[b->si[t] * b->s.n + b->sj[t]];
    double e = fabs(v - b->ref[t]) / (b->mag[t] + 1e-30);
    if (!(e <= *err)) *err = isnan(e) ? INFINITY : e > *err ? e : *err;
  }
  free(c);
  return rc;
}

enum fam { FAM_TILED, FAM_CLBLAST, FAM_GEMV };
static const char *const FAM_NAME[] = {"tiled", "clblast", "gemv"};

static int run_once(af_queue *q, enum fam f, const bench_shape *b, int half_w) {
  const af_tune_shape *s = &b->s;
  if (f == FAM_GEMV) {
    af_dbuf x = {b->a, 0}, y = {b->c, 0};
    return af_op_gemv(q, half_w ? b->bh : b->b, half_w, s->n, s->k, x, 1, y, NULL);
  }
  if (f == FAM_TILED)
    return af_gemm_tiled(q, 0, 1, s->m, s->n, s->k, 1.0f, b->a, 0, s->k, b->b, 0, s->k, 0.0f, b->c, 0, s->n);
  CLBlastStatusCode st =
      CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, s->m, s->n, s->k, 1.0f,
                   b->a, 0, s->k, b->b, 0, s->k, 0.0f, b->c, 0, s->n, &q->q, NULL);
  return st == CLBlastSuccess
             ? 0
             : af_err((int)st, "CLBlastSgemm %zux%zux%zu: %s", s->m, s->n, s->k, af_strerror((int)st));
}

#define TOL 1e-4

/* times one family over its shapes with the defines / overrides in effect:
 * *cost = sum of weight x best time; 0, or a status with *why set */
static int measure(af_cl *cl, enum fam f, bench_shape *sh, int nsh, int repeat, int half_w, double *cost,
                   char *why, size_t cap) {
  af_queue *q = NULL;
  int rc = af_queue_new(cl, &q); /* fresh: kernels built with the defines in effect */
  *cost = 0;
  for (int i = 0; !rc && i < nsh; i++) {
    if ((f == FAM_GEMV) != (sh[i].s.m == 1)) continue;
    cl_int e = clEnqueueFillBuffer(q->q, sh[i].c, &(float){NAN}, sizeof(float), 0,
                                   sh[i].s.m * sh[i].s.n * sizeof(float), 0, NULL, NULL);
    if (e != CL_SUCCESS) rc = af_err(e, "tune: fill: %s", af_strerror(e));
    if (!rc) rc = run_once(q, f, &sh[i], half_w); /* warm-up: builds */
    if (!rc) rc = af_queue_finish(q);
    double err = 0;
    if (!rc) rc = shape_check(q, &sh[i], &err);
    if (rc) {
      snprintf(why, cap, "%s", af_error_message());
      break;
    }
    if (!(err <= TOL)) {
      snprintf(why, cap, "wrong results on %zux%zux%zu (normalised error %.3g > %.0e)", sh[i].s.m, sh[i].s.n,
               sh[i].s.k, err, TOL);
      rc = AF_ERR_INVALID;
      break;
    }
    double best = INFINITY;
    for (int r = 0; !rc && r < repeat; r++) {
      double t0 = now();
      rc = run_once(q, f, &sh[i], half_w);
      if (!rc) rc = af_queue_finish(q);
      if (now() - t0 < best) best = now() - t0;
    }
    if (rc) snprintf(why, cap, "%s", af_error_message());
    *cost += sh[i].s.weight * best;
  }
  if (rc && !why[0]) snprintf(why, cap, "%s", af_error_message());
  af_queue_free(q);
  af_error_clear();
  return rc;
}

/* ------------------------------------------------------------- candidates */

static const char *const XGEMM_NAMES[16] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                                            "NDIMC", "NWG",  "SA",  "SB",  "STRM",  "STRN",  "VWM", "VWN"};

typedef struct xgemm {
  size_t v[16]; /* in XGEMM_NAMES order */
} xgemm;

static void xgemm_str(const xgemm *x, char *out, size_t cap) {
  size_t l = 0;
  out[0] = 0;
  for (int i = 0; i < 16 && l < cap; i++)
    l += (size_t)snprintf(out + l, cap - l, "%s%s=%zu", i ? " " : "", XGEMM_NAMES[i], x->v[i]);
}

static int xgemm_valid(const xgemm *x, const af_device_info *di) {
  size_t KREG = x->v[1], KWG = x->v[2], KWI = x->v[3], MDIMA = x->v[4], MDIMC = x->v[5], MWG = x->v[6],
         NDIMB = x->v[7], NDIMC = x->v[8], NWG = x->v[9], SA = x->v[10], SB = x->v[11], VWM = x->v[14],
         VWN = x->v[15];
  if (x->v[0] != 0 || KREG != 1 || !KWI || KWG % KWI) return 0;
  if (MWG % (MDIMC * VWM) || NWG % (NDIMC * VWN) || MWG % (MDIMA * VWM) || NWG % (NDIMB * VWN)) return 0;
  size_t kda = MDIMC * NDIMC / MDIMA, kdb = MDIMC * NDIMC / NDIMB;
  if (!kda || !kdb || KWG % kda || KWG % kdb) return 0;
  if (di->max_wg && MDIMC * NDIMC > di->max_wg) return 0;
  if (di->local_mem && 4 * (SA * KWG * MWG + SB * KWG * NWG) > di->local_mem) return 0;
  return 1;
}

/* a random valid point of CLBlast's own Xgemm tuner space (kernel 0, V = 2) */
static int xgemm_random(uint64_t *st, const af_device_info *di, xgemm *x) {
  static const size_t WG[] = {16, 32, 64, 128}, KW[] = {16, 32}, DIM[] = {8, 16, 32}, VW[] = {1, 2, 4, 8},
                      B01[] = {0, 1};
#define PICK(a) a[rng_next(st) % (sizeof a / sizeof a[0])]
  for (int tries = 0; tries < 100000; tries++) {
    x->v[0] = 0, x->v[1] = 1, x->v[2] = PICK(KW), x->v[3] = 2, x->v[4] = PICK(DIM), x->v[5] = PICK(DIM);
    x->v[6] = PICK(WG), x->v[7] = PICK(DIM), x->v[8] = PICK(DIM), x->v[9] = PICK(WG), x->v[10] = PICK(B01);
    x->v[11] = PICK(B01), x->v[12] = PICK(B01), x->v[13] = PICK(B01), x->v[14] = PICK(VW),
    x->v[15] = PICK(VW);
    if (xgemm_valid(x, di)) return 1;
  }
#undef PICK
  return 0;
}

static int xgemm_apply(af_cl *cl, const xgemm *x) {
  const char *names[16];
  for (int i = 0; i < 16; i++) names[i] = XGEMM_NAMES[i];
  CLBlastStatusCode st =
      CLBlastOverrideParameters(cl->device, "Xgemm", CLBlastPrecisionSingle, 16, names, x->v);
  return st == CLBlastSuccess
             ? 0
             : af_err((int)st, "CLBlast rejects the Xgemm override: %s", af_strerror((int)st));
}

static const af_clblast_override *find_xgemm(const af_devprofile *p) {
  for (int i = 0; i < p->n_overrides; i++)
    if (!strcmp(p->overrides[i].kernel, "Xgemm") && p->overrides[i].precision == 32) return &p->overrides[i];
  return NULL;
}

static int xgemm_from_override(const af_clblast_override *o, xgemm *x) {
  if (!o) return 0;
  for (int i = 0; i < 16; i++) {
    int found = 0;
    for (int j = 0; j < o->n; j++)
      if (!strcmp(o->names[j], XGEMM_NAMES[i])) x->v[i] = o->values[j], found = 1;
    if (!found) return 0;
  }
  return 1;
}

static void set_define(af_devprofile *p, const char *name, const char *value) {
  int i = 0;
  while (i < p->n_defines && strcmp(p->defines[i][0], name)) i++;
  if (i == AF_PROFILE_MAX_DEFINES) return;
  if (i == p->n_defines) p->n_defines++;
  snprintf(p->defines[i][0], sizeof p->defines[i][0], "%s", name);
  snprintf(p->defines[i][1], sizeof p->defines[i][1], "%s", value);
}

/* ------------------------------------------------------------- the sweep */

typedef struct record {
  char key[1200];
  int ok, from_state; /* from_state: replayed from the file, not yet counted */
  double cost;
  char why[200];
} record;

typedef struct tuner {
  af_cl *cl;
  const af_tune_opts *o;
  bench_shape *sh;
  int nsh, n_gemm, n_gemv, half_w, repeat;
  record *rec; /* the state file's and this run's results */
  int nrec, caprec;
  FILE *state;
  double t0, limit; /* limit: when the current phase stops (<= the budget) */
  int stopped, ran_out, count;
  af_tune_result *res;
} tuner;

static record *find_rec(tuner *t, const char *key) {
  for (int i = 0; i < t->nrec; i++)
    if (!strcmp(t->rec[i].key, key)) return &t->rec[i];
  return NULL;
}

static record *add_rec(tuner *t, const char *key) {
  if (t->nrec == t->caprec) {
    int cap = t->caprec ? 2 * t->caprec : 64;
    record *r = realloc(t->rec, (size_t)cap * sizeof *r);
    if (!r) return NULL;
    t->rec = r, t->caprec = cap;
  }
  record *r = &t->rec[t->nrec++];
  memset(r, 0, sizeof *r);
  snprintf(r->key, sizeof r->key, "%s", key);
  return r;
}

/* the shapes' signature, so a state file of other shapes is not replayed */
static void shapes_sig(const tuner *t, char *out, size_t cap) {
  size_t l = (size_t)snprintf(out, cap, "device=%s shapes=", t->cl->info.name);
  for (int i = 0; i < t->nsh && l < cap; i++)
    l += (size_t)snprintf(out + l, cap - l, "%s%zux%zux%zu", i ? "," : "", t->sh[i].s.m, t->sh[i].s.n,
                          t->sh[i].s.k);
  if (l < cap) snprintf(out + l, cap - l, " gemv_f16=%d repeat=%d", t->half_w, t->repeat);
}

/* "12.34 ms" or "1.234 s" */
static const char *fmt_s(double s, char *buf, size_t cap) {
  if (!isfinite(s))
    snprintf(buf, cap, "-");
  else if (s < 1)
    snprintf(buf, cap, "%.3f ms", s * 1e3);
  else
    snprintf(buf, cap, "%.3f s", s);
  return buf;
}

static void progress(tuner *t, const char *what, const char *label, const record *r, int reused,
                     double best) {
  FILE *f = t->o->progress;
  if (!f) return;
  char cost[48], b[48];
  fprintf(f, "tune [%5.1f/%.0f s] #%-3d %-7s %-30.30s %12s%s  best %s%s%.60s\n", now() - t->t0,
          t->o->budget_s, t->count, what, label, r->ok ? fmt_s(r->cost, cost, sizeof cost) : "failed",
          reused ? " (state)" : "", fmt_s(best, b, sizeof b), r->ok ? "" : ": ", r->ok ? "" : r->why);
  fflush(f);
}

/* evaluates a candidate: replayed from the state file, or measured now
 * (defines and the CLBlast override applied first).  NULL when the budget is
 * spent before it could run. */
static const record *evaluate_as(tuner *t, enum fam f, const char *label, const af_devprofile *cand,
                                 const xgemm *x, double best, int again) {
  char key[1200];
  if (f == FAM_CLBLAST) {
    char xs[400];
    if (x)
      xgemm_str(x, xs, sizeof xs);
    else
      snprintf(xs, sizeof xs, "CLBlast-database-default");
    snprintf(key, sizeof key, "%s%s %s", again ? "again " : "", FAM_NAME[f], xs);
  } else {
    snprintf(key, sizeof key, "%s%s %s", again ? "again " : "", FAM_NAME[f], af_devprofile_defines(cand));
  }
  record *r = find_rec(t, key);
  t->count++;
  if (r) {
    if (r->from_state) t->res->reused++, r->from_state = 0;
    progress(t, FAM_NAME[f], label, r, 1, r->ok && r->cost < best ? r->cost : best);
    return r;
  }
  if (t->stopped || now() - t->t0 >= t->limit) {
    t->stopped = 1;
    t->ran_out |= now() - t->t0 >= t->o->budget_s;
    t->count--;
    return NULL;
  }
  if (!(r = add_rec(t, key))) return NULL;
  int rc = af_cl_set_tuning(t->cl, af_devprofile_defines(cand));
  if (!rc && f == FAM_CLBLAST && x) rc = xgemm_apply(t->cl, x);
  if (rc)
    snprintf(r->why, sizeof r->why, "%s", af_error_message());
  else
    rc = measure(t->cl, f, t->sh, t->nsh, t->repeat, t->half_w, &r->cost, r->why, sizeof r->why);
  r->ok = rc == 0;
  if (!r->ok) r->cost = INFINITY, t->res->failed++;
  t->res->measured++;
  for (char *p = r->why; *p; p++)
    if (*p == '\n' || *p == '\t') *p = ' ';
  if (t->state) {
    fprintf(t->state, "%s\t%s\t%.6g\t%s\n", r->key, r->ok ? "ok" : "fail", r->ok ? r->cost : 0.0, r->why);
    fflush(t->state);
  }
  progress(t, FAM_NAME[f], label, r, 0, r->ok && r->cost < best ? r->cost : best);
  return r;
}

static const record *evaluate(tuner *t, enum fam f, const char *label, const af_devprofile *cand,
                              const xgemm *x, double best) {
  return evaluate_as(t, f, label, cand, x, best, 0);
}

/* A challenger that beat the incumbent once is confirmed: both are measured
 * a second time (right after each other, so a burst of load on a shared
 * machine hits both alike) and each keeps the better of its two times.
 * Returns 1 when the challenger still wins; the costs are updated.  The
 * second measurements are candidates of their own ("again ..." in the state
 * file), so a resumed run takes the same decisions. */
static int challenger_wins(tuner *t, enum fam f, const char *label, const af_devprofile *inc,
                           double *inc_cost, const af_devprofile *ch, double *ch_cost) {
  char l2[96];
  snprintf(l2, sizeof l2, "again: the best so far");
  const record *a = evaluate_as(t, f, l2, inc, NULL, *inc_cost, 1);
  if (a && a->ok && a->cost < *inc_cost) *inc_cost = a->cost;
  snprintf(l2, sizeof l2, "again: %s", label);
  const record *b = evaluate_as(t, f, l2, ch, NULL, *inc_cost, 1);
  if (b && b->ok && b->cost < *ch_cost) *ch_cost = b->cost;
  if (b && !b->ok) return 0; /* failed its second run (flaky): not chosen */
  return *ch_cost < *inc_cost;
}

/* Greedy sweep of the own kernels' defines of one family (gemv: the GEMV
 * knobs, else the tiled GEMM's), one define at a time from *best: a value
 * that beats *best_s (and wins its second measurement) becomes the new best.
 * knobs: a comma list restricting the defines, or NULL for all. */
static void sweep_knobs(tuner *t, enum fam f, int gemv, const char *knobs, af_devprofile *best,
                        double *best_s) {
  af_devprofile cand;
  for (const af_tune_knob *k = KNOBS; k->define && !t->stopped; k++) {
    if (k->gemv != gemv || (knobs && !want(knobs, k->define))) continue;
    char vals[128];
    snprintf(vals, sizeof vals, "%s", k->values);
    char *save = NULL;
    for (char *v = strtok_r(vals, " ", &save); v && !t->stopped; v = strtok_r(NULL, " ", &save)) {
      const char *have = af_devprofile_define(best, k->define);
      if (!strcmp(have ? have : k->def, v)) continue; /* what runs already */
      memcpy(&cand, best, sizeof cand);
      set_define(&cand, k->define, v);
      char label[80];
      snprintf(label, sizeof label, "%s=%s", k->define, v);
      const record *r;
      double c;
      if ((r = evaluate(t, f, label, &cand, NULL, *best_s)) && r->ok && (c = r->cost) < *best_s &&
          challenger_wins(t, f, label, best, best_s, &cand, &c))
        *best_s = c, memcpy(best, &cand, sizeof *best);
    }
  }
}

/* the better of a configuration's measurements (first and "again") */
static double best_time(tuner *t, enum fam f, const af_devprofile *cand) {
  char key[1200];
  double b = INFINITY;
  for (int again = 0; again < 2; again++) {
    snprintf(key, sizeof key, "%s%s %s", again ? "again " : "", FAM_NAME[f], af_devprofile_defines(cand));
    const record *r = find_rec(t, key);
    if (r && r->ok && r->cost < b) b = r->cost;
  }
  return b;
}

static int load_state(tuner *t, const char *path, const char *sig) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096];
  int rc = 0, n = 0;
  if (!fgets(line, sizeof line, f) || strncmp(line, "# artflow tune state 1 ", 23) ||
      strncmp(line + 23, sig, strlen(sig)) || line[23 + strlen(sig)] != '\n') {
    if (t->o->progress)
      fprintf(t->o->progress, "tune: %s is for other shapes or another device; starting afresh\n", path);
    fclose(f);
    return 0;
  }
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *k = line, *st = strchr(k, '\t');
    if (!st) continue;
    *st++ = 0;
    char *cost = strchr(st, '\t');
    if (!cost) continue;
    *cost++ = 0;
    char *why = strchr(cost, '\t');
    if (why) *why++ = 0;
    record *r = find_rec(t, k) ? find_rec(t, k) : add_rec(t, k);
    if (!r) {
      rc = af_err(AF_ERR_NOMEM, "out of memory");
      break;
    }
    r->ok = !strcmp(st, "ok");
    r->from_state = 1;
    r->cost = r->ok ? strtod(cost, NULL) : INFINITY;
    snprintf(r->why, sizeof r->why, "%s", why ? why : "");
    n++;
  }
  fclose(f);
  if (t->o->progress && n) fprintf(t->o->progress, "tune: resuming from %s (%d candidates done)\n", path, n);
  return rc;
}

/* ------------------------------------------------------------- output */

static void yaml_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    if ((unsigned char)*s >= 0x20) fputc(*s, f);
  }
  fputc('"', f);
}

static void gflops_note(FILE *f, const tuner *t, int gemv, double cost) {
  double flop = 0;
  for (int i = 0; i < t->nsh; i++)
    if ((t->sh[i].s.m == 1) == gemv)
      flop += 2.0 * t->sh[i].s.m * t->sh[i].s.n * t->sh[i].s.k * t->sh[i].s.weight;
  char b[48];
  if (cost > 0 && isfinite(cost))
    fprintf(f, "%s, %.1f GFLOPS", fmt_s(cost, b, sizeof b), flop / cost / 1e9);
  else
    fprintf(f, "not measured");
}

/* "AF_TILED_MR: 4  # 2: 0.0123 s, 4: 0.0101 s" from this run's records */
static void knob_trials(FILE *f, const tuner *t, const char *define) {
  char pat[64];
  snprintf(pat, sizeof pat, "-D%s=", define);
  const char *fam = "tiled ";
  for (const af_tune_knob *k = KNOBS; k->define; k++)
    if (!strcmp(k->define, define) && k->gemv) fam = "gemv ";
  /* only defines measured with more than one value */
  const char *v0 = NULL;
  int vl0 = 0, several = 0;
  for (int i = 0; i < t->nrec && !several; i++) {
    const char *p = strncmp(t->rec[i].key, fam, strlen(fam)) ? NULL : strstr(t->rec[i].key, pat);
    if (!p) continue;
    const char *v = p + strlen(pat);
    int vl = (int)strcspn(v, " ");
    if (!v0)
      v0 = v, vl0 = vl;
    else if (vl != vl0 || strncmp(v, v0, (size_t)vl))
      several = 1;
  }
  if (!several) return;
  int first = 1;
  for (int i = 0; i < t->nrec; i++) {
    const char *p = strncmp(t->rec[i].key, fam, strlen(fam)) ? NULL : strstr(t->rec[i].key, pat);
    if (!p) continue;
    /* only the candidates that differ from the tuned one in this define */
    const char *v = p + strlen(pat);
    int vl = (int)strcspn(v, " ");
    int dup = 0;
    for (int j = 0; j < i; j++) {
      const char *q = strncmp(t->rec[j].key, fam, strlen(fam)) ? NULL : strstr(t->rec[j].key, pat);
      if (q && !strncmp(q + strlen(pat), v, (size_t)vl) &&
          (q[strlen(pat) + (size_t)vl] == ' ' || !q[strlen(pat) + (size_t)vl]))
        dup = 1;
    }
    if (dup) continue;
    double best = INFINITY;
    for (int j = 0; j < t->nrec; j++) {
      const char *q = strncmp(t->rec[j].key, fam, strlen(fam)) ? NULL : strstr(t->rec[j].key, pat);
      if (q && t->rec[j].ok && !strncmp(q + strlen(pat), v, (size_t)vl) &&
          (q[strlen(pat) + (size_t)vl] == ' ' || !q[strlen(pat) + (size_t)vl]) && t->rec[j].cost < best)
        best = t->rec[j].cost;
    }
    fprintf(f, "%s%.*s: ", first ? "  # best seen with " : ", ", vl, v);
    char b[48];
    fprintf(f, "%s", isfinite(best) ? fmt_s(best, b, sizeof b) : "failed");
    first = 0;
  }
}

static int write_profile(tuner *t, const af_devprofile *best, int impl, double tiled_s, double clb_s,
                         const xgemm *bx, int have_bx, double gemv_s, double base_s) {
  const af_device_info *di = &t->cl->info;
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", t->o->out_path);
  FILE *f = fopen(tmp, "w");
  if (!f) return af_err(AF_ERR_IO, "%s: %s", tmp, strerror(errno));
  time_t now_t = time(NULL);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now_t));
  fprintf(f, "# Written by `artflow tune` on %s for this device:\n#   %s / %s (driver %s)\n", date,
          di->platform, di->name, di->driver);
  if (t->o->command) fprintf(f, "# command: %s\n", t->o->command);
  fprintf(f, "# Started from the profile '%s' (%s).\n", t->cl->profile->name, t->cl->profile->why);
  fprintf(f, "# Shapes (M x N x K, calls per unit of work):");
  for (int i = 0; i < t->nsh; i++)
    fprintf(f, "%s %zux%zux%zu %s x%.3g", i % 4 ? "," : "\n#  ", t->sh[i].s.m, t->sh[i].s.n, t->sh[i].s.k,
            t->sh[i].s.stage, t->sh[i].s.weight);
  fprintf(f, "\n# Candidates: %d measured now, %d from the state file, %d failed (build, run or check);\n",
          t->res->measured, t->res->reused, t->res->failed);
  fprintf(f, "# each result checked against double-precision dot products (normalised error <= %.0e),\n",
          TOL);
  fprintf(
      f,
      "# time = sum over shapes of calls x best of %d runs.  Machine noise applies: compare within a run.\n",
      t->repeat);
  if (t->n_gemm) {
    fprintf(f, "# GEMM shapes: own tiled kernel ");
    gflops_note(f, t, 0, tiled_s);
    fprintf(f, "; CLBlast ");
    gflops_note(f, t, 0, clb_s);
    fprintf(f, "\n# the starting profile (%s): ",
            af_devprofile_gemm_impl(t->cl->profile) == AF_GEMM_IMPL_TILED ? "tiled" : "CLBlast");
    gflops_note(f, t, 0, base_s);
    fputc('\n', f);
  }
  if (t->n_gemv && isfinite(gemv_s)) {
    fprintf(f, "# GEMV shapes (decode): ");
    gflops_note(f, t, 1, gemv_s);
    fputc('\n', f);
  }
  if (t->ran_out)
    fprintf(f, "# The budget (%.0f s) ran out: rerun the same command to continue.\n", t->o->budget_s);
  /* name: tuned-<device>, letters, digits and dashes */
  char name[64] = "tuned-";
  size_t l = strlen(name);
  for (const char *p = di->name; *p && l < sizeof name - 1; p++) {
    char c = *p;
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
      name[l++] = c;
    else if (l && name[l - 1] != '-')
      name[l++] = '-';
  }
  while (l && name[l - 1] == '-') l--;
  name[l] = 0;
  fprintf(f, "name: %s\nmatch:\n  platform: ", name);
  yaml_str(f, di->platform);
  fprintf(f, "\n  device: ");
  yaml_str(f, di->name);
  fprintf(f, "\n  type: %s\n", di->is_gpu ? "gpu" : di->is_cpu ? "cpu" : "accelerator");
  /* CLBlast: the swept Xgemm winner, and the starting profile's other entries */
  int n_ov = 0;
  for (int i = 0; i < best->n_overrides; i++)
    n_ov += !(have_bx && !strcmp(best->overrides[i].kernel, "Xgemm") && best->overrides[i].precision == 32);
  if (n_ov || have_bx) fprintf(f, "clblast:\n");
  if (have_bx) {
    fprintf(f, "  Xgemm: {precision: 32, params: {");
    for (int i = 0; i < 16; i++) fprintf(f, "%s%s: %zu", i ? ", " : "", XGEMM_NAMES[i], bx->v[i]);
    fprintf(f, "}}  # ");
    gflops_note(f, t, 0, clb_s);
    fputc('\n', f);
  }
  for (int i = 0; i < best->n_overrides; i++) {
    const af_clblast_override *o = &best->overrides[i];
    if (have_bx && !strcmp(o->kernel, "Xgemm") && o->precision == 32) continue;
    fprintf(f, "  %s: {precision: %d, params: {", o->kernel, o->precision);
    for (int k = 0; k < o->n; k++) fprintf(f, "%s%s: %zu", k ? ", " : "", o->names[k], o->values[k]);
    fprintf(f, "}}  # from the starting profile\n");
  }
  fprintf(f, "kernels:\n  AF_GEMM_IMPL: %s", impl == AF_GEMM_IMPL_TILED ? "tiled" : "clblast");
  fprintf(f, "  # tiled ");
  gflops_note(f, t, 0, tiled_s);
  fprintf(f, " vs CLBlast ");
  gflops_note(f, t, 0, clb_s);
  fputc('\n', f);
  for (int i = 0; i < best->n_defines; i++) {
    if (!strcmp(best->defines[i][0], "AF_GEMM_IMPL")) continue;
    fprintf(f, "  %s: %s", best->defines[i][0], best->defines[i][1]);
    knob_trials(f, t, best->defines[i][0]);
    fputc('\n', f);
  }
  const af_devprofile *cur = t->cl->profile;
  fprintf(f, "batch: {vit: %d, qformer: %d, llm: %d}  # from the starting profile\n", cur->batch_vit,
          cur->batch_qformer, cur->batch_llm);
  fprintf(f, "weights: %s\n", cur->fp16_storage ? "fp16_storage" : "fp32_copy");
  fprintf(f, "memory_budget_mb: %ld\n", cur->memory_budget_mb);
  int bad_write = ferror(f);
  if (fclose(f) || bad_write) {
    unlink(tmp);
    return af_err(AF_ERR_IO, "%s: write failed", tmp);
  }
  /* it must load (the same validation `artflow devices` does) */
  af_devprofile *chk = malloc(sizeof *chk);
  if (!chk) return af_err(AF_ERR_NOMEM, "out of memory");
  int rc = af_devprofile_select(di, tmp, chk);
  free(chk);
  if (rc)
    return af_err_replace(rc, "tune wrote a profile that does not load (a bug): %s", af_error_message());
  if (rename(tmp, t->o->out_path)) return af_err(AF_ERR_IO, "%s: %s", t->o->out_path, strerror(errno));
  return 0;
}

int af_tune_run(af_cl *cl, const af_tune_opts *o, af_tune_result *res) {
  memset(res, 0, sizeof *res);
  if (!o->out_path || !o->n_shapes)
    return af_err(AF_ERR_INVALID, "tune: an output file and shapes are needed");
  for (const char *p = o->knobs; p && *p;) { /* every listed define must be a knob */
    size_t l = strcspn(p, ",");
    int found = 0;
    for (const af_tune_knob *k = KNOBS; k->define; k++)
      found |= strlen(k->define) == l && !strncmp(k->define, p, l);
    if (!found) {
      char names[600];
      size_t n = 0;
      for (const af_tune_knob *k = KNOBS; k->define && n < sizeof names; k++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", k->define);
      return af_err(AF_ERR_INVALID, "--knobs: '%.*s' is not a swept define (%s)", (int)l, p, names);
    }
    p += l + (p[l] == ',');
  }
  tuner t = {.cl = cl, .o = o, .nsh = o->n_shapes, .repeat = o->repeat > 0 ? o->repeat : 3, .res = res};
  t.half_w = cl->profile && cl->profile->fp16_storage;
  int rc = 0;
  af_queue *q = NULL;
  char state_path[1100], sig[2048];
  snprintf(state_path, sizeof state_path, "%s", o->state_path ? o->state_path : "");
  if (!state_path[0]) snprintf(state_path, sizeof state_path, "%s.tune-state", o->out_path);
  af_devprofile base, cand, best;
  memcpy(&base, cl->profile, sizeof base);
  char *orig_tuning = cl->tuning_defines ? strdup(cl->tuning_defines) : NULL;
  if (!(t.sh = calloc((size_t)t.nsh, sizeof *t.sh))) return af_err(AF_ERR_NOMEM, "out of memory");
  if ((rc = af_queue_new(cl, &q))) goto out;
  for (int i = 0; i < t.nsh && !rc; i++) {
    rc = shape_init(cl, q, &o->shapes[i], t.half_w, (uint64_t)i + 1, &t.sh[i]);
    if (o->shapes[i].m == 1)
      t.n_gemv++;
    else
      t.n_gemm++;
  }
  if (rc) goto out;
  shapes_sig(&t, sig, sizeof sig);
  if ((rc = load_state(&t, state_path, sig))) goto out;
  int fresh = t.nrec == 0;
  if (!(t.state = fopen(state_path, fresh ? "w" : "a"))) {
    rc = af_err(AF_ERR_IO, "%s: %s", state_path, strerror(errno));
    goto out;
  }
  if (fresh) fprintf(t.state, "# artflow tune state 1 %s\n", sig), fflush(t.state);
  t.t0 = now();
  /* the greedy sweeps leave 40 % of the budget to CLBlast's when it will run */
  int indirect = 0;
  for (int i = 0; i < t.nsh; i++)
    indirect |= t.sh[i].s.m > 1 && (double)t.sh[i].s.m * t.sh[i].s.n * t.sh[i].s.k >= 896.0 * 896.0 * 896.0;
  /* shares of the budget: the own GEMM's sweep stops early enough to leave
   * 20 % to the GEMV sweep and 40 % to CLBlast's, when those will run */
  double share_clb = o->clblast && indirect ? 0.4 : 0, share_gemv = t.n_gemv && t.n_gemm ? 0.2 : 0;
  t.limit = o->budget_s; /* the starting points get the whole budget */
  int greedy_cut = 0, clb_base_done = 0;

  double tiled_s = INFINITY, clb_s = INFINITY, gemv_s = INFINITY, base_s = INFINITY, base_clb_s = INFINITY;
  xgemm bx;
  memset(&bx, 0, sizeof bx);
  int have_bx = 0;
  const record *r;
  memcpy(&best, &base, sizeof best);
  if (t.n_gemm) {
    /* 1. the own kernel with the profile's defines; CLBlast as the profile
     *    (or its database) has it, before any other Xgemm override, since an
     *    override cannot be taken back */
    memcpy(&cand, &base, sizeof cand);
    set_define(&cand, "AF_GEMM_IMPL", "tiled");
    if ((r = evaluate(&t, FAM_TILED, "profile's defines", &cand, NULL, INFINITY)) && r->ok) tiled_s = r->cost;
    memcpy(&best, &cand, sizeof best);
    if (o->clblast) {
      xgemm cur;
      int have_cur = xgemm_from_override(find_xgemm(&base), &cur);
      memcpy(&cand, &base, sizeof cand);
      set_define(&cand, "AF_GEMM_IMPL", "clblast");
      if ((r = evaluate(&t, FAM_CLBLAST, have_cur ? "profile's Xgemm" : "CLBlast's database", &cand,
                        have_cur ? &cur : NULL, INFINITY)))
        clb_base_done = 1;
      if (r && r->ok) {
        clb_s = base_clb_s = r->cost;
        if (have_cur) bx = cur, have_bx = 1;
      }
    }
    t.limit = (1 - share_clb - share_gemv) * o->budget_s;
    sweep_knobs(&t, FAM_TILED, 0, o->knobs, &best, &tiled_s);
  }
  greedy_cut |= t.stopped;
  t.limit = (1 - share_clb) * o->budget_s;
  t.stopped = t.ran_out;
  if (t.n_gemv) {
    memcpy(&cand, &best, sizeof cand);
    if ((r = evaluate(&t, FAM_GEMV, "profile's defines", &cand, NULL, INFINITY)) && r->ok) gemv_s = r->cost;
    sweep_knobs(&t, FAM_GEMV, 1, o->knobs, &best, &gemv_s);
  }
  /* 3. CLBlast's Xgemm: only shapes on its indirect path use Xgemm (CLBlast's
   *    XGEMM_MIN_INDIRECT_SIZE, 896^3 by default); random valid points */
  greedy_cut |= t.stopped;
  t.limit = o->budget_s;
  t.stopped = t.ran_out;
  if (o->clblast && t.n_gemm && !indirect && o->progress)
    fprintf(o->progress,
            "tune: no shape reaches CLBlast's indirect GEMM (m*n*k >= 896^3): Xgemm not swept\n");
  /* (a random set replaces the profile's only when the profile's was measured) */
  if (o->clblast && t.n_gemm && indirect && !clb_base_done && o->progress)
    fprintf(o->progress,
            "tune: CLBlast's starting point was not measured within the budget: Xgemm not swept\n");
  if (o->clblast && t.n_gemm && indirect && clb_base_done) {
    uint64_t st = 0x9E3779B97F4A7C15ull ^ (uint64_t)o->seed;
    memcpy(&cand, &best, sizeof cand);
    set_define(&cand, "AF_GEMM_IMPL", "clblast");
    for (int i = 0; i < 10000 && !t.stopped; i++) {
      xgemm x;
      if (!xgemm_random(&st, &cl->info, &x)) break;
      char label[80];
      snprintf(label, sizeof label, "Xgemm MWG%zu NWG%zu KWG%zu VW%zu/%zu", x.v[6], x.v[9], x.v[2], x.v[14],
               x.v[15]);
      if ((r = evaluate(&t, FAM_CLBLAST, label, &cand, &x, clb_s)) && r->ok && r->cost < clb_s)
        clb_s = r->cost, bx = x, have_bx = 1;
    }
  }
  if (t.n_gemm) { /* the starting profile's time: the better of its measurements */
    memcpy(&cand, &base, sizeof cand);
    set_define(&cand, "AF_GEMM_IMPL", "tiled");
    base_s =
        af_devprofile_gemm_impl(&base) == AF_GEMM_IMPL_TILED ? best_time(&t, FAM_TILED, &cand) : base_clb_s;
  }
  /* the implementation: the faster when both were measured, else the starting profile's */
  int impl = af_devprofile_gemm_impl(&base);
  if (isfinite(tiled_s) && isfinite(clb_s))
    impl = tiled_s <= clb_s ? AF_GEMM_IMPL_TILED : AF_GEMM_IMPL_CLBLAST;
  t.ran_out |= greedy_cut;
  res->gemm_impl = impl;
  res->base_s = base_s;
  res->best_s = impl == AF_GEMM_IMPL_TILED ? tiled_s : clb_s;
  if (t.state) fclose(t.state), t.state = NULL;
  rc = write_profile(&t, &best, impl, tiled_s, clb_s, &bx, have_bx, gemv_s, base_s);
out:
  if (t.state) fclose(t.state);
  /* leave the device as the profile had it */
  af_cl_set_tuning(cl, orig_tuning);
  free(orig_tuning);
  for (int i = 0; i < t.nsh; i++) shape_free(&t.sh[i]);
  free(t.sh);
  free(t.rec);
  af_queue_free(q);
  return rc;
}
