/* Stage plugins: shared libraries exporting one af_plugin object named
 * AF_PLUGIN_SYMBOL (include/artflow/stage.h).  Loading checks the ABI
 * version before reading anything else and registers every stage.
 *
 * Libraries are never unloaded: the registry borrows their descriptors for
 * the life of the process. */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artflow/status.h"
#include "core/iofile.h"
#include "pipeline/pipeline.h"

/* A bare file name is looked up in ARTFLOW_PLUGIN_PATH (':'-separated), then
 * taken relative to the current folder; anything with a '/' is used as is.
 * Returns a malloc'd path, or NULL with *searched describing where it looked. */
static char *resolve(const char *name, char *searched, size_t n) {
  if (strchr(name, '/')) return strdup(name);
  const char *env = getenv("ARTFLOW_PLUGIN_PATH");
  snprintf(searched, n, "ARTFLOW_PLUGIN_PATH=%s", env ? env : "(unset)");
  if (env) {
    char *copy = strdup(env);
    if (!copy) return NULL;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
      char *p = af_path_join(dir, name);
      if (p && access(p, F_OK) == 0) {
        free(copy);
        return p;
      }
      free(p);
    }
    free(copy);
  }
  if (access(name, F_OK) == 0) return strdup(name);
  return NULL;
}

int af_plugin_load(const char *path) {
  if (!path || !*path) return af_err(AF_ERR_CONFIG, "plugin: empty path");
  char searched[512] = "";
  char *file = resolve(path, searched, sizeof searched);
  if (!file) return af_err(AF_ERR_IO, "plugin %s: not found (searched %s)", path, searched);
  int rc = 0;
  if (access(file, R_OK) != 0) {
    rc = af_err(AF_ERR_IO, "plugin %s: %s", file, strerror(errno));
    goto out;
  }
  /* RTLD_NOW: an unresolved af_* symbol fails here, not mid-run */
  void *lib = dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *why = dlerror();
    rc = af_err(AF_ERR_IO, "plugin %s: cannot load: %s", file, why ? why : "unknown error");
    goto out;
  }
  dlerror();
  const af_plugin *pl = dlsym(lib, AF_PLUGIN_SYMBOL);
  if (!pl) {
    rc = af_err(AF_ERR_CONFIG,
                "plugin %s: no symbol '%s' (not an artflow plugin, or built without "
                "AF_PLUGIN_SYMBOL)",
                file, AF_PLUGIN_SYMBOL);
    dlclose(lib);
    goto out;
  }
  if (pl->abi_version != AF_STAGE_ABI_VERSION) {
    rc = af_err(AF_ERR_CONFIG,
                "plugin %s: stage ABI version %u, this artflow needs %u (rebuild the plugin against this "
                "artflow's include/artflow/stage.h%s)",
                file, pl->abi_version, AF_STAGE_ABI_VERSION,
                pl->abi_version < AF_STAGE_ABI_VERSION ? "; docs/plugins.md lists what changed" : "");
    dlclose(lib);
    goto out;
  }
  if (pl->n_stages <= 0 || !pl->stages) {
    rc = af_err(AF_ERR_CONFIG, "plugin %s: declares no stages", file);
    dlclose(lib);
    goto out;
  }
  for (int i = 0; i < pl->n_stages; i++) {
    const af_stage_desc *d = pl->stages[i];
    if (!d) {
      rc = af_err(AF_ERR_CONFIG, "plugin %s: stage %d is NULL", file, i);
      break;
    }
    if (d->abi_version != AF_STAGE_ABI_VERSION) {
      rc = af_err(AF_ERR_CONFIG, "plugin %s: stage '%s' has ABI version %u, this artflow needs %u", file,
                  d->name ? d->name : "?", d->abi_version, AF_STAGE_ABI_VERSION);
      break;
    }
    /* the registry rejects malformed or duplicate stages; keep its reason
     * but say which file it came from */
    if ((rc = af_registry_add(d))) {
      char why[1024];
      snprintf(why, sizeof why, "%s", af_error_message());
      rc = af_err_replace(AF_ERR_CONFIG, "plugin %s: %s", file, why);
      break;
    }
  }
  /* on failure the stages registered before the bad one stay: the library
   * stays loaded so their descriptors remain valid */
out:
  free(file);
  return rc;
}
