/* Shards: one run takes a deterministic 1/N of its source's items, so N runs
 * (a Slurm job array, a Kubernetes Indexed Job, N local processes) cover a
 * collection together, each item exactly once.
 *
 * An item belongs to shard  int(first 16 hex digits of SHA-256(id)) mod N.
 * The rule depends only on the id, never on the source kind or the order the
 * source lists items in, so it is the same for dir, glob, list, csv, jsonl and
 * any source a plugin adds: the engine applies it in the source thread, after
 * next() and before the journal (pipeline/scheduler.c).  SHA-256 rather than a
 * cheaper hash because anyone can recompute it (sha256sum, Python's hashlib)
 * and it will never change with a compiler, a platform or a release.
 *
 * Which shard a run is: `--shard I/N` (or `shard: I/N` in the YAML), or
 * `--shard auto` from the scheduler's environment (SLURM_ARRAY_TASK_ID and
 * the array's count / min / max / step, or JOB_COMPLETION_INDEX with the count
 * from --shards N, `shards:` or ARTFLOW_SHARDS).  `{shard}` in a sink's path
 * (and in `journal:`) becomes the shard's index, zero-padded to the width of
 * N-1, so every shard writes its own files and `shard-*.jsonl` sorts in order.
 * The configuration JSON (records' params, the resume settings) is built with
 * the templates put back (af_shard_templates), so it is identical in every
 * shard of a run. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/iofile.h"
#include "pipeline/internal.h"

#define MAX_SHARDS 1000000

int af_shard_of(const char *id, int count) {
  if (count <= 1 || !id) return 0;
  char hex[65];
  af_sha256_hex(id, strlen(id), hex);
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = hex[i];
    v = v << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return (int)(v % (uint64_t)count);
}

/* A decimal integer 0..max, the whole string. */
static int parse_int(const char *s, long max, long *out) {
  char *end;
  if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (*end || errno || v < 0 || v > max) return -1;
  *out = v;
  return 0;
}

int af_shard_parse(const char *text, af_shard *out, char *why, size_t n) {
  const char *slash = text ? strchr(text, '/') : NULL;
  long i, c;
  char a[32];
  if (!slash || (size_t)(slash - text) >= sizeof a) {
    snprintf(why, n, "'%s': expected I/N (e.g. 0/4: the first of 4 shards) or auto", text ? text : "");
    return AF_ERR_CONFIG;
  }
  memcpy(a, text, (size_t)(slash - text));
  a[slash - text] = 0;
  if (parse_int(slash + 1, MAX_SHARDS, &c) || c < 1) {
    snprintf(why, n, "'%s': the shard count N must be an integer 1..%d", text, MAX_SHARDS);
    return AF_ERR_CONFIG;
  }
  if (parse_int(a, LONG_MAX, &i) || i >= c) {
    snprintf(why, n, "'%s': the index I must be an integer 0..%ld (shards count from 0)", text, c - 1);
    return AF_ERR_CONFIG;
  }
  out->index = (int)i;
  out->count = (int)c;
  return 0;
}

/* An integer environment variable; 1 when set (value in *v), 0 when unset or
 * empty, -1 when set to something else. */
static int env_int(const char *name, long *v) {
  const char *s = getenv(name);
  if (!s || !*s) return 0;
  return parse_int(s, INT_MAX, v) ? -1 : 1;
}

static int env_bad(const char *name, char *why, size_t n) {
  snprintf(why, n, "%s='%s' is not a non-negative integer", name, getenv(name));
  return AF_ERR_CONFIG;
}

/* Slurm job array: the task's place in the array's range MIN..MAX:STEP. */
static int from_slurm(long id, int hint, af_shard *out, char *why, size_t n, char *origin, size_t on) {
  long min = 0, max = -1, step = 1, count = -1;
  int r;
  if ((r = env_int("SLURM_ARRAY_TASK_MIN", &min)) < 0) return env_bad("SLURM_ARRAY_TASK_MIN", why, n);
  if ((r = env_int("SLURM_ARRAY_TASK_MAX", &max)) < 0) return env_bad("SLURM_ARRAY_TASK_MAX", why, n);
  if ((r = env_int("SLURM_ARRAY_TASK_STEP", &step)) < 0 || step < 1)
    return env_bad("SLURM_ARRAY_TASK_STEP", why, n);
  if ((r = env_int("SLURM_ARRAY_TASK_COUNT", &count)) < 0) return env_bad("SLURM_ARRAY_TASK_COUNT", why, n);
  long span = max >= min ? (max - min) / step + 1 : -1; /* tasks in MIN..MAX:STEP */
  if (count < 0) count = span;
  if (count < 1) {
    snprintf(why, n,
             "SLURM_ARRAY_TASK_ID=%ld but neither SLURM_ARRAY_TASK_COUNT nor "
             "SLURM_ARRAY_TASK_MAX is set",
             id);
    return AF_ERR_CONFIG;
  }
  if ((span >= 0 && span != count) || (id - min) % step) {
    snprintf(why, n,
             "the Slurm array is not one range (task %ld, min %ld, max %ld, step %ld, "
             "%ld tasks): submit it as --array=0-%ld",
             id, min, max, step, count, count - 1);
    return AF_ERR_CONFIG;
  }
  if (id < min || (id - min) / step >= count) {
    snprintf(why, n, "SLURM_ARRAY_TASK_ID=%ld is outside the array %ld-%ld", id, min,
             min + (count - 1) * step);
    return AF_ERR_CONFIG;
  }
  if (hint > 0 && hint != count) {
    snprintf(why, n, "--shards %d, but the Slurm array has %ld tasks", hint, count);
    return AF_ERR_CONFIG;
  }
  out->index = (int)((id - min) / step);
  out->count = (int)count;
  snprintf(origin, on, "SLURM_ARRAY_TASK_ID=%ld of %ld-%ld", id, min, min + (count - 1) * step);
  return 0;
}

int af_shard_auto(int hint, af_shard *out, char *why, size_t n, char *origin, size_t on) {
  long id, v;
  int r = env_int("SLURM_ARRAY_TASK_ID", &id);
  if (r < 0) return env_bad("SLURM_ARRAY_TASK_ID", why, n);
  if (r > 0) return from_slurm(id, hint, out, why, n, origin, on);
  if ((r = env_int("JOB_COMPLETION_INDEX", &id)) < 0) return env_bad("JOB_COMPLETION_INDEX", why, n);
  if (r == 0) {
    snprintf(why, n,
             "neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a "
             "Kubernetes Indexed Job) is set; give --shard I/N");
    return AF_ERR_CONFIG;
  }
  if (hint <= 0) {
    if ((r = env_int("ARTFLOW_SHARDS", &v)) < 0) return env_bad("ARTFLOW_SHARDS", why, n);
    hint = r > 0 ? (int)v : 0;
  }
  if (hint < 1 || hint > MAX_SHARDS) {
    snprintf(why, n,
             "JOB_COMPLETION_INDEX=%ld, but the number of shards is not known: give "
             "--shards N, 'shards: N' or ARTFLOW_SHARDS=N (the Job's completions)",
             id);
    return AF_ERR_CONFIG;
  }
  if (id >= hint) {
    snprintf(why, n, "JOB_COMPLETION_INDEX=%ld is not below the %d shards", id, hint);
    return AF_ERR_CONFIG;
  }
  out->index = (int)id;
  out->count = hint;
  snprintf(origin, on, "JOB_COMPLETION_INDEX=%ld of %d", id, hint);
  return 0;
}

int af_shard_expand(const char *tmpl, af_shard s, char **out) {
  static const char key[] = "{shard}";
  char num[16];
  int width = 1;
  for (int c = s.count - 1; c >= 10; c /= 10) width++;
  snprintf(num, sizeof num, "%0*d", width, s.index);
  af_buf b = {0};
  for (const char *t = tmpl; *t;) {
    const char *k = strstr(t, key);
    size_t lit = k ? (size_t)(k - t) : strlen(t);
    af_buf_put(&b, t, lit);
    t += lit;
    if (k) {
      af_buf_puts(&b, num);
      t += sizeof key - 1;
    }
  }
  af_buf_put(&b, "", 1);
  if (b.oom) {
    af_buf_free(&b);
    *out = NULL;
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  *out = b.p;
  return 0;
}

/* A sink path that held {shard}: the config field, and the string that is
 * not in it right now (the template while the expansion is in place). */
struct af_shard_path {
  char **field;
  char *other;
};

/* Replaces a config string by its expansion, keeping the template. */
static int expand_param(af_pipeline *p, char **field) {
  char *e = NULL;
  int rc = af_shard_expand(*field, p->shard, &e);
  if (rc) return rc;
  if (!strcmp(e, *field)) { /* no {shard} in it */
    free(e);
    return 0;
  }
  struct af_shard_path *np = realloc(p->shard_paths, (size_t)(p->n_shard_paths + 1) * sizeof *np);
  if (!np) {
    free(e);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  p->shard_paths = np;
  np[p->n_shard_paths++] = (struct af_shard_path){field, *field};
  *field = e;
  return 0;
}

void af_shard_templates(af_pipeline *p, int on) {
  if (p->shard_on == on) return;
  for (int i = 0; i < p->n_shard_paths; i++) {
    char *t = *p->shard_paths[i].field;
    *p->shard_paths[i].field = p->shard_paths[i].other;
    p->shard_paths[i].other = t;
  }
  p->shard_on = on;
}

void af_shard_free(af_pipeline *p) {
  af_shard_templates(p, 0);
  for (int i = 0; i < p->n_shard_paths; i++) free(p->shard_paths[i].other);
  free(p->shard_paths);
  p->shard_paths = NULL;
  p->n_shard_paths = 0;
}

/* Which shard this run is, from the options and the YAML's `shard:` and
 * `shards:`; then `{shard}` in sink paths and the journal.  With N > 1 every
 * output must be the shard's own: a sink path without `{shard}` is refused,
 * since N runs appending to (or truncating) one file would lose records. */
int af_pipeline_shard_setup(af_pipeline *p) {
  const char *spec = p->opt.shard ? p->opt.shard : p->shard_spec;
  int hint = p->opt.shards > 0 ? p->opt.shards : p->shards;
  char why[512];
  int rc = 0;
  p->shard = (af_shard){0, 1};
  int cli = p->opt.shard != NULL;
  p->opt.shard = NULL; /* borrowed from the caller: not kept past the load */
  if (spec) {
    const char *what = cli ? "--shard" : "shard:";
    int auto_ = !strcmp(spec, "auto");
    if (auto_) {
      rc = af_shard_auto(hint, &p->shard, why, sizeof why, p->shard_origin, sizeof p->shard_origin);
      if (!rc && !p->opt.no_resume) p->opt.resume = 1; /* a requeued task goes on where it stopped */
    } else {
      rc = af_shard_parse(spec, &p->shard, why, sizeof why);
      if (!rc) snprintf(p->shard_origin, sizeof p->shard_origin, "%s %s", what, spec);
    }
    if (rc && cli) return af_err(AF_ERR_CONFIG, "--shard %s%s", auto_ ? "auto: " : "", why);
    if (rc) return af_err(AF_ERR_CONFIG, "%s: shard: %s%s", p->path, auto_ ? "auto: " : "", why);
    p->sharded = 1;
  }
  for (int i = 1 + p->n_transforms; i < p->n_inst; i++) {
    af_instance *in = &p->inst[i];
    for (int j = 0; j < in->desc->n_params; j++) {
      const af_param *pr = &in->desc->params[j];
      if (pr->type != AF_PARAM_STRING || !(pr->flags & AF_PARAM_PATH)) continue;
      char **f = (char **)((char *)in->config + pr->offset);
      if (!*f || !strcmp(*f, "-")) continue;
      if (p->shard.count > 1 && !strstr(*f, "{shard}"))
        return af_err(AF_ERR_CONFIG,
                      "%s:%d:%d: stage '%s': key '%s': shard %d/%d writes to %s like every other shard; put "
                      "{shard} in the path (e.g. out/shard-{shard}.jsonl)",
                      p->path, in->line, in->col, in->name, pr->name, p->shard.index, p->shard.count, *f);
      if ((rc = expand_param(p, f))) return rc;
    }
  }
  if (p->journal) {
    if (p->shard.count > 1 && !strstr(p->journal, "{shard}"))
      return af_err(AF_ERR_CONFIG,
                    "%s: journal: shard %d/%d would share %s with the other shards; put {shard} in it",
                    p->path, p->shard.index, p->shard.count, p->journal);
    char *e = NULL;
    if (!(rc = af_shard_expand(p->journal, p->shard, &e))) {
      free(p->journal);
      p->journal = e;
    }
  }
  return rc;
}

const af_shard *af_pipeline_shard(const af_pipeline *p) {
  return p->sharded ? &p->shard : NULL;
}

const char *af_pipeline_shard_origin(const af_pipeline *p) {
  return p->shard_origin;
}

int af_pipeline_resumes(const af_pipeline *p) {
  return p->opt.resume != 0;
}

/* --------------------------------------------------- the source, alone */

int af_pipeline_each_source_item(af_pipeline *p, int (*fn)(void *arg, const af_item *item), void *arg) {
  af_instance *in = &p->inst[0];
  af_stage_ctx ctx = {.instance = in->name,
                      .batch = 1,
                      .pipeline_path = p->path,
                      .pipeline_sha256 = p->sha256,
                      .params_json = p->params_json,
                      .journal_path = p->journal,
                      .quiet = 1,
                      .log = af_stage_log_cb,
                      .pipeline = p};
  void *self = NULL;
  int rc = in->desc->create(&ctx, in->config, &self);
  while (!rc) {
    af_item *it = NULL;
    af_flow r = in->desc->next(self, &ctx, &it);
    if (r == AF_FLOW_EOS) break;
    if (r != AF_FLOW_OK || !it) {
      af_item_free(it);
      rc = af_error_code() ? af_error_code() : af_err(AF_ERR_IO, "source '%s': next() failed", in->name);
      break;
    }
    if (af_shard_of(it->id, p->shard.count) == p->shard.index) rc = fn(arg, it);
    af_item_free(it);
  }
  in->desc->destroy(self);
  return rc;
}
