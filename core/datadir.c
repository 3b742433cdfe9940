/* Data folders relative to the executable (see datadir.h): an installed
 * artflow finds <prefix>/share/artflow/ from /proc/self/exe, wherever the
 * prefix was moved to; a build-tree artflow reads the source tree. */
#include "core/datadir.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artflow/status.h"

static const struct {
  const char *name, *env, *what, *instead;
} KINDS[AF_DATA_KINDS] = {
    {"profiles", "ARTFLOW_PROFILE_DIR", "device profiles", "using built-in defaults"},
    {"models", "ARTFLOW_MODELS_DIR", "architecture files", "give --arch a path"},
    {"vocabularies", "ARTFLOW_VOCAB_DIR", "vocabularies", "give --vocab a path"},
};

const char *af_data_kind_name(af_data_kind kind) {
  return (unsigned)kind < AF_DATA_KINDS ? KINDS[kind].name : "?";
}

const char *af_data_env(af_data_kind kind) {
  return (unsigned)kind < AF_DATA_KINDS ? KINDS[kind].env : "?";
}

/* Computed once: the executable, its share/artflow, and whether it sits in
 * the build tree (which never changes while the process runs). */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char exe[PATH_MAX];
static char share[PATH_MAX];
static int in_build_tree;

/* cuts the last path component: "/a/b/c" -> "/a/b", "/a" -> "" */
static void cut_last(char *p) {
  char *s = strrchr(p, '/');
  if (s) *s = 0;
}

static void find_exe(void) {
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0 || (size_t)n >= sizeof exe - 1) {
    exe[0] = 0;
    return;
  }
  exe[n] = 0;
  /* <prefix>/bin/artflow -> <prefix>/share/artflow */
  char prefix[PATH_MAX];
  snprintf(prefix, sizeof prefix, "%s", exe);
  cut_last(prefix);
  cut_last(prefix);
  snprintf(share, sizeof share, "%s/share/artflow", prefix);
#ifdef AF_BUILD_DIR
  char build[PATH_MAX];
  if (realpath(AF_BUILD_DIR, build)) {
    size_t l = strlen(build);
    in_build_tree = !strncmp(exe, build, l) && exe[l] == '/';
  }
#endif
}

const char *af_exe_path(void) {
  pthread_once(&once, find_exe);
  return exe;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* appends "; candidate" to out->tried; 1 when the candidate is a folder
 * (then it becomes out->dir with `origin`) */
static int try_dir(af_data_where *out, const char *dir, const char *origin) {
  size_t l = strlen(out->tried);
  if (l < sizeof out->tried) snprintf(out->tried + l, sizeof out->tried - l, "%s%s", l ? "; " : "", dir);
  if (!is_dir(dir)) return 0;
  snprintf(out->dir, sizeof out->dir, "%s", dir);
  out->origin = origin;
  return 1;
}

int af_data_locate(af_data_kind kind, af_data_where *out) {
  memset(out, 0, sizeof *out);
  out->origin = "not found";
  if ((unsigned)kind >= AF_DATA_KINDS) return AF_ERR_INVALID;
  pthread_once(&once, find_exe);
  const char *name = KINDS[kind].name;
  char p[PATH_MAX + 64];
  /* 1. the kind's own variable: explicit, so no fallback when it is wrong */
  const char *env = getenv(KINDS[kind].env);
  if (env && *env) return try_dir(out, env, KINDS[kind].env) ? 0 : AF_ERR_NOT_FOUND;
  /* 2. a whole data folder */
  const char *root = getenv("ARTFLOW_DATA_DIR");
  if (root && *root) {
    snprintf(p, sizeof p, "%s/%s", root, name);
    if (try_dir(out, p, "ARTFLOW_DATA_DIR")) return 0;
  }
  /* 3. installed next to the executable */
  if (share[0]) {
    snprintf(p, sizeof p, "%s/%s", share, name);
    if (try_dir(out, p, "installed")) return 0;
  }
  /* 4. the source tree, for a binary of its own build tree */
#ifdef AF_SOURCE_DIR
  if (in_build_tree) {
    snprintf(p, sizeof p, "%s/config/%s", AF_SOURCE_DIR, name);
    if (try_dir(out, p, "source tree")) return 0;
  }
#endif
  return AF_ERR_NOT_FOUND;
}

void af_data_warn_missing(af_data_kind kind, const af_data_where *where) {
  static atomic_int warned[AF_DATA_KINDS];
  if ((unsigned)kind >= AF_DATA_KINDS || atomic_exchange(&warned[kind], 1)) return;
  fprintf(stderr, "artflow: warning: no %s found (tried %s); %s (or set %s)\n", KINDS[kind].what,
          where && where->tried[0] ? where->tried : "nothing: /proc/self/exe unreadable", KINDS[kind].instead,
          KINDS[kind].env);
}
