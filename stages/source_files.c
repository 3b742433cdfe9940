/* File-system sources: `dir` (a folder, recursive, extension filter), `glob`
 * (glob(3) patterns) and `list` (a text file, one path per line).  Each item
 * carries only its id and path; image bytes are read by later stages.
 *
 * Order is deterministic: folder entries are sorted bytewise and walked depth
 * first; glob matches come sorted per pattern; a list keeps its order.  The
 * folder walk holds one folder's names per level, never the whole tree. */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "artflow/stage.h"
#include "artflow/status.h"
#include "core/iofile.h"

#define DEFAULT_EXTS "jpg,jpeg,png,webp,tif,tiff,gif,bmp,heic,heif,avif,jxl,jp2"

/* Folder of the pipeline file: relative patterns and paths resolve there. */
static char *pipeline_dir(const af_stage_ctx *ctx) {
  return ctx && ctx->pipeline_path ? af_path_dirname(ctx->pipeline_path) : strdup(".");
}

/* ------------------------------------------------------------------ dir */

typedef struct dir_config {
  char *path;
  af_strlist extensions;
  int recursive;
  int hidden;
} dir_config;

typedef struct frame {
  char *rel;    /* relative folder ("" for the root) */
  char **names; /* sorted entries */
  int n, i;
} frame;

typedef struct dir_source {
  const dir_config *cfg;
  frame *stack;
  int depth, cap;
} dir_source;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void frame_free(frame *f) {
  for (int i = 0; i < f->n; i++) free(f->names[i]);
  free(f->names);
  free(f->rel);
}

/* Reads and sorts one folder.  Returns 0, or a status with the message. */
static int push_dir(dir_source *s, const char *rel) {
  char *full = af_path_join(s->cfg->path, rel);
  if (!full) return af_err(AF_ERR_NOMEM, "out of memory");
  DIR *d = opendir(full);
  if (!d) {
    int rc = af_err(AF_ERR_IO, "%s: cannot read folder: %s", full, strerror(errno));
    free(full);
    return rc;
  }
  free(full);
  frame f = {0};
  int cap = 0, rc = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' && (!s->cfg->hidden || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")))
      continue;
    if (f.n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(f.names, (size_t)cap * sizeof *nn);
      if (!nn) goto oom;
      f.names = nn;
    }
    if (!(f.names[f.n] = strdup(e->d_name))) goto oom;
    f.n++;
  }
  closedir(d);
  d = NULL;
  if (f.names) qsort(f.names, (size_t)f.n, sizeof *f.names, cmp_str);
  if (!(f.rel = strdup(rel))) goto oom;
  if (s->depth == s->cap) {
    int c = s->cap ? s->cap * 2 : 8;
    frame *st = realloc(s->stack, (size_t)c * sizeof *st);
    if (!st) goto oom;
    s->stack = st;
    s->cap = c;
  }
  s->stack[s->depth++] = f;
  return 0;
oom:
  if (d) closedir(d);
  frame_free(&f);
  rc = af_err(AF_ERR_NOMEM, "out of memory");
  return rc;
}

static int ext_ok(const dir_config *c, const char *name) {
  if (c->extensions.n == 0) return 1;
  const char *dot = strrchr(name, '.');
  if (!dot) return 0;
  for (int i = 0; i < c->extensions.n; i++) {
    const char *e = c->extensions.v[i];
    if (*e == '.') e++;
    if (!strcasecmp(dot + 1, e)) return 1;
  }
  return 0;
}

static int dir_create(const af_stage_ctx *ctx, const void *config, void **self) {
  dir_source *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  s->cfg = config;
  *self = s;
  struct stat st;
  if (stat(s->cfg->path, &st) != 0)
    return af_err(AF_ERR_CONFIG, "%s: source folder: %s", s->cfg->path, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return af_err(AF_ERR_CONFIG, "%s: not a folder", s->cfg->path);
  return push_dir(s, "");
}

static af_flow dir_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  dir_source *s = self;
  while (s->depth > 0) {
    frame *f = &s->stack[s->depth - 1];
    if (f->i == f->n) {
      frame_free(f);
      s->depth--;
      continue;
    }
    const char *name = f->names[f->i++];
    char *rel = af_path_join(f->rel, name);
    char *full = rel ? af_path_join(s->cfg->path, rel) : NULL;
    if (!full) {
      free(rel);
      af_err(AF_ERR_NOMEM, "out of memory");
      return AF_FLOW_ERROR;
    }
    struct stat st;
    int isdir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
    af_flow flow = AF_FLOW_OK;
    *out = NULL;
    if (isdir && s->cfg->recursive) {
      if (s->depth >= 64) {
        /* symlink loops end here instead of exhausting memory */
      } else if (push_dir(s, rel) != 0) {
        /* an unreadable subfolder is an error record, not the end of the run */
        if ((*out = af_item_new(rel, full))) af_item_fail(*out, ctx->instance, "%s", af_error_message());
        af_error_clear();
      }
    } else if (!isdir && ext_ok(s->cfg, name)) {
      *out = af_item_new(rel, full);
      if (!*out) flow = AF_FLOW_ERROR;
    }
    free(rel);
    free(full);
    if (*out || flow != AF_FLOW_OK) return flow;
  }
  return AF_FLOW_EOS;
}

static void dir_destroy(void *self) {
  dir_source *s = self;
  if (!s) return;
  while (s->depth > 0) frame_free(&s->stack[--s->depth]);
  free(s->stack);
  free(s);
}

static const af_param dir_params[] = {
    {"path", AF_PARAM_STRING, offsetof(dir_config, path), NULL, 0, 0, NULL,
     "folder to read (relative to the pipeline file)", AF_PARAM_REQUIRED | AF_PARAM_PATH},
    {"extensions", AF_PARAM_STRLIST, offsetof(dir_config, extensions), DEFAULT_EXTS, 0, 0, NULL,
     "file extensions to take, case-insensitive (empty list = every file)", 0},
    {"recursive", AF_PARAM_BOOL, offsetof(dir_config, recursive), "true", 0, 0, NULL,
     "descend into subfolders", 0},
    {"hidden", AF_PARAM_BOOL, offsetof(dir_config, hidden), "false", 0, 0, NULL,
     "include names starting with '.'", 0},
};

const af_stage_desc af_stage_src_dir = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "dir",
    .doc = "every image file under a folder, sorted; id = path relative to the folder",
    .kind = AF_STAGE_SOURCE,
    .params = dir_params,
    .n_params = AF_ARRAY_LEN(dir_params),
    .config_size = sizeof(dir_config),
    .batch_size = 1,
    .create = dir_create,
    .next = dir_next,
    .destroy = dir_destroy,
};

/* ----------------------------------------------------------------- glob */

typedef struct glob_config {
  af_strlist patterns;
} glob_config;

typedef struct glob_source {
  char **paths; /* all matches (glob(3) returns them at once) */
  char **ids;
  int64_t n, i;
} glob_source;

static void glob_destroy(void *self) {
  glob_source *s = self;
  if (!s) return;
  for (int64_t i = s->i; i < s->n; i++) free(s->paths[i]), free(s->ids[i]);
  free(s->paths);
  free(s->ids);
  free(s);
}

static int glob_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const glob_config *c = config;
  glob_source *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  char *base = pipeline_dir(ctx);
  int rc = base ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
  for (int p = 0; !rc && p < c->patterns.n; p++) {
    char *pat = af_path_join(base, c->patterns.v[p]);
    if (!pat) {
      rc = af_err(AF_ERR_NOMEM, "out of memory");
      break;
    }
    /* ids: a relative pattern gives paths relative to the pipeline folder
     * (what the user wrote); an absolute one, paths below its last
     * wildcard-free folder */
    size_t wild = strcspn(pat, "*?["), root = 0;
    if (c->patterns.v[p][0] != '/') {
      root = strlen(base) + (base[strlen(base) - 1] != '/');
    } else {
      for (size_t k = 0; k < wild; k++)
        if (pat[k] == '/') root = k + 1;
    }
    glob_t g;
    int gr = glob(pat, GLOB_MARK, NULL, &g);
    if (gr == GLOB_NOMATCH) {
      free(pat);
      continue;
    }
    if (gr != 0) {
      rc = af_err(AF_ERR_CONFIG, "glob '%s': %s", pat, gr == GLOB_NOSPACE ? "out of memory" : "read error");
      free(pat);
      break;
    }
    char **np = realloc(s->paths, (size_t)(s->n + (int64_t)g.gl_pathc) * sizeof *np);
    if (np) s->paths = np;
    char **ni = np ? realloc(s->ids, (size_t)(s->n + (int64_t)g.gl_pathc) * sizeof *ni) : NULL;
    if (ni) s->ids = ni;
    for (size_t k = 0; ni && k < g.gl_pathc; k++) {
      const char *m = g.gl_pathv[k];
      size_t len = strlen(m);
      if (len && m[len - 1] == '/') continue; /* GLOB_MARK: a folder */
      s->paths[s->n] = strdup(m);
      s->ids[s->n] = strdup(strncmp(m, pat, root) == 0 ? m + root : m);
      if (!s->paths[s->n] || !s->ids[s->n]) {
        free(s->paths[s->n]);
        free(s->ids[s->n]);
        ni = NULL;
        break;
      }
      s->n++;
    }
    globfree(&g);
    free(pat);
    if (!ni) rc = af_err(AF_ERR_NOMEM, "out of memory");
  }
  free(base);
  return rc;
}

static af_flow glob_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  glob_source *s = self;
  if (s->i == s->n) return AF_FLOW_EOS;
  *out = af_item_new(s->ids[s->i], s->paths[s->i]);
  free(s->ids[s->i]);
  free(s->paths[s->i]);
  s->i++;
  if (!*out) {
    af_err(AF_ERR_NOMEM, "out of memory");
    return AF_FLOW_ERROR;
  }
  return AF_FLOW_OK;
}

static int64_t glob_count(void *self, const af_stage_ctx *ctx) {
  return ((glob_source *)self)->n;
}

static const af_param glob_params[] = {
    {"patterns", AF_PARAM_STRLIST, offsetof(glob_config, patterns), NULL, 0, 0, NULL,
     "glob(3) patterns; relative ones resolve against the pipeline folder and their ids are paths "
     "relative to it, absolute ones give ids below their last wildcard-free folder",
     AF_PARAM_REQUIRED},
};

const af_stage_desc af_stage_src_glob = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "glob",
    .doc = "files matching glob(3) patterns, sorted per pattern",
    .kind = AF_STAGE_SOURCE,
    .params = glob_params,
    .n_params = AF_ARRAY_LEN(glob_params),
    .config_size = sizeof(glob_config),
    .batch_size = 1,
    .create = glob_create,
    .next = glob_next,
    .count = glob_count,
    .destroy = glob_destroy,
};

/* ----------------------------------------------------------------- list */

typedef struct list_config {
  char *path;
} list_config;

typedef struct list_source {
  FILE *fp;
  const char *path; /* borrowed from the config */
  char *dir;
  char *line;
  size_t cap;
} list_source;

static int list_create(const af_stage_ctx *ctx, const void *config, void **self) {
  const list_config *c = config;
  list_source *s = calloc(1, sizeof *s);
  if (!s) return af_err(AF_ERR_NOMEM, "out of memory");
  *self = s;
  s->path = c->path;
  if (!(s->fp = fopen(c->path, "r")))
    return af_err(AF_ERR_CONFIG, "%s: list file: %s", c->path, strerror(errno));
  if (!(s->dir = af_path_dirname(c->path))) return af_err(AF_ERR_NOMEM, "out of memory");
  return 0;
}

static af_flow list_next(void *self, const af_stage_ctx *ctx, af_item **out) {
  list_source *s = self;
  ssize_t len;
  while ((len = getline(&s->line, &s->cap, s->fp)) >= 0) {
    while (len > 0 && (s->line[len - 1] == '\n' || s->line[len - 1] == '\r' || s->line[len - 1] == ' ' ||
                       s->line[len - 1] == '\t'))
      s->line[--len] = 0;
    if (len == 0 || s->line[0] == '#') continue;
    char *full = af_path_join(s->dir, s->line);
    *out = full ? af_item_new(s->line, full) : NULL;
    free(full);
    if (!*out) {
      af_err(AF_ERR_NOMEM, "out of memory");
      return AF_FLOW_ERROR;
    }
    return AF_FLOW_OK;
  }
  return AF_FLOW_EOS;
}

/* Entries in the list (one quick pass over the file), for the progress ETA. */
static int64_t list_count(void *self, const af_stage_ctx *ctx) {
  list_source *s = self;
  FILE *fp = fopen(s->path, "r"); /* its own offset: next() is unaffected */
  if (!fp) return -1;
  int64_t n = 0;
  int c, start = 1, skip = 0;
  /* a line counts when its first byte is neither a line end nor '#' (lines of
   * blanks only are rare enough to miscount) */
  while ((c = getc(fp)) != EOF) {
    if (start) skip = c == '\n' || c == '\r' || c == '#';
    if (start && !skip) n++;
    start = c == '\n';
  }
  fclose(fp);
  return n;
}

static void list_destroy(void *self) {
  list_source *s = self;
  if (!s) return;
  if (s->fp) fclose(s->fp);
  free(s->dir);
  free(s->line);
  free(s);
}

static const af_param list_params[] = {
    {"path", AF_PARAM_STRING, offsetof(list_config, path), NULL, 0, 0, NULL,
     "text file with one image path per line ('#' comments; paths relative to the file); id = the line",
     AF_PARAM_REQUIRED | AF_PARAM_PATH},
};

const af_stage_desc af_stage_src_list = {
    .abi_version = AF_STAGE_ABI_VERSION,
    .name = "list",
    .doc = "paths listed in a text file, in file order",
    .kind = AF_STAGE_SOURCE,
    .params = list_params,
    .n_params = AF_ARRAY_LEN(list_params),
    .config_size = sizeof(list_config),
    .batch_size = 1,
    .create = list_create,
    .next = list_next,
    .count = list_count,
    .destroy = list_destroy,
};
