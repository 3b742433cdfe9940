/* Data folder lookup (core/datadir.h): the order (the kind's variable, then
 * ARTFLOW_DATA_DIR, then <exe dir>/../share/artflow, then the source tree for
 * a build-tree binary), an explicit variable that names nothing (no
 * fallback), the candidates listed in `tried`, and the one-time warning.
 * The install layout itself is tested end to end by
 * tests/pipeline/test_sdk_install.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "core/datadir.h"

static void mkdirs(const char *base, const char *sub) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", base, sub);
  mkdir(p, 0755);
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  char root[1024], want[1200];
  snprintf(root, sizeof root, "%s", tmp);
  unsetenv("ARTFLOW_PROFILE_DIR");
  unsetenv("ARTFLOW_MODELS_DIR");
  unsetenv("ARTFLOW_VOCAB_DIR");
  unsetenv("ARTFLOW_DATA_DIR");

  /* the executable: this test program, inside the build tree */
  const char *exe = af_exe_path();
  CHECK_MSG(exe[0] == '/' && strstr(exe, "test_datadir"), "exe '%s'", exe);
  CHECK(af_exe_path() == exe); /* computed once */

  /* no variables: a test binary of the build tree reads the source tree,
   * after trying <exe dir>/../share/artflow */
  af_data_where w;
  CHECK_OK(af_data_locate(AF_DATA_PROFILES, &w));
  snprintf(want, sizeof want, "%s/config/profiles", AF_SOURCE_DIR);
  CHECK_MSG(!strcmp(w.dir, want) && !strcmp(w.origin, "source tree"), "%s (%s)", w.dir, w.origin);
  CHECK_MSG(strstr(w.tried, "/share/artflow/profiles; ") != NULL, "tried: %s", w.tried);
  CHECK_OK(af_data_locate(AF_DATA_MODELS, &w));
  CHECK(strstr(w.dir, "/config/models") != NULL);

  /* ARTFLOW_DATA_DIR: a folder laid out like share/artflow */
  mkdirs(root, "data");
  mkdirs(root, "data/profiles");
  setenv("ARTFLOW_DATA_DIR", strcat(strcpy(want, root), "/data"), 1);
  CHECK_OK(af_data_locate(AF_DATA_PROFILES, &w));
  CHECK_MSG(
      !strcmp(w.dir, strcat(strcpy(want, root), "/data/profiles")) && !strcmp(w.origin, "ARTFLOW_DATA_DIR"),
      "%s (%s)", w.dir, w.origin);
  /* a kind it lacks falls through to the next candidates */
  CHECK_OK(af_data_locate(AF_DATA_MODELS, &w));
  CHECK_MSG(!strcmp(w.origin, "source tree") && strstr(w.tried, "/data/models; "), "%s: %s", w.origin,
            w.tried);

  /* the kind's own variable wins over ARTFLOW_DATA_DIR */
  mkdirs(root, "mine");
  setenv("ARTFLOW_PROFILE_DIR", strcat(strcpy(want, root), "/mine"), 1);
  CHECK_OK(af_data_locate(AF_DATA_PROFILES, &w));
  CHECK_MSG(!strcmp(w.dir, want) && !strcmp(w.origin, "ARTFLOW_PROFILE_DIR"), "%s (%s)", w.dir, w.origin);

  /* ... and is explicit: a missing folder is not found, with no fallback */
  setenv("ARTFLOW_PROFILE_DIR", "/nonexistent/artflow-profiles", 1);
  CHECK(af_data_locate(AF_DATA_PROFILES, &w) == AF_ERR_NOT_FOUND);
  CHECK_MSG(
      w.dir[0] == 0 && !strcmp(w.origin, "not found") && !strcmp(w.tried, "/nonexistent/artflow-profiles"),
      "'%s' '%s' '%s'", w.dir, w.origin, w.tried);
  CHECK(af_error_message()[0] == 0); /* nothing recorded: the caller reports */
  /* the other kinds are unaffected */
  CHECK_OK(af_data_locate(AF_DATA_MODELS, &w));

  /* names and variables */
  CHECK(!strcmp(af_data_kind_name(AF_DATA_VOCABULARIES), "vocabularies"));
  CHECK(!strcmp(af_data_env(AF_DATA_PROFILES), "ARTFLOW_PROFILE_DIR"));
  CHECK(af_data_locate(AF_DATA_KINDS, &w) == AF_ERR_INVALID);

  /* the warning: once per kind, naming what was tried */
  char log[1200];
  snprintf(log, sizeof log, "%s/warn.txt", root);
  fflush(stderr);
  int saved = dup(2);
  CHECK(freopen(log, "w", stderr) != NULL);
  CHECK(af_data_locate(AF_DATA_PROFILES, &w) == AF_ERR_NOT_FOUND);
  af_data_warn_missing(AF_DATA_PROFILES, &w);
  af_data_warn_missing(AF_DATA_PROFILES, &w);
  af_data_warn_missing(AF_DATA_MODELS, &w);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  size_t n = 0;
  char *text = af_test_slurp(log, &n);
  CHECK(text != NULL);
  if (text) {
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    CHECK_MSG(lines == 2, "%d lines: %s", lines, text);
    CHECK_MSG(strstr(text,
                     "no device profiles found (tried /nonexistent/artflow-profiles); using built-in "
                     "defaults (or set ARTFLOW_PROFILE_DIR)") != NULL,
              "%s", text);
    CHECK(strstr(text, "no architecture files found") != NULL);
    free(text);
  }
  unsetenv("ARTFLOW_PROFILE_DIR");
  unsetenv("ARTFLOW_DATA_DIR");
  return af_test_done("test_datadir");
}
