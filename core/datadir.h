/* Where artflow reads its data from: device profiles, architecture files and
 * tag vocabularies.  They live in config/<kind>/ of the source tree and in
 * <prefix>/share/artflow/<kind>/ once installed (`cmake --install`); kernels
 * are embedded in the binary and need no lookup.
 *
 * A folder is looked for in this order; the first that exists wins:
 *   1. the kind's own variable (ARTFLOW_PROFILE_DIR, ARTFLOW_MODELS_DIR,
 *      ARTFLOW_VOCAB_DIR): taken as given, no fallback when it is missing;
 *   2. $ARTFLOW_DATA_DIR/<kind>, a data folder laid out like share/artflow;
 *   3. <folder of the executable>/../share/artflow/<kind> (the executable is
 *      found through /proc/self/exe, so an installed tree can be moved);
 *   4. <source tree>/config/<kind>, only for an executable that lives inside
 *      the build tree it was compiled in (dev builds and tests), so that an
 *      installed binary never reads a stale checkout.
 * Nothing here records an error message: a missing folder is the caller's to
 * report (af_data_warn_missing) or to ignore. */
#ifndef AF_CORE_DATADIR_H
#define AF_CORE_DATADIR_H

#include <stddef.h>

typedef enum af_data_kind {
  AF_DATA_PROFILES = 0,     /* device profiles (cl/devprofile.h, docs/profiles.md) */
  AF_DATA_MODELS = 1,       /* architecture files (config/models/NAME.yaml) */
  AF_DATA_VOCABULARIES = 2, /* tag vocabularies (config/vocabularies/) */
  AF_DATA_KINDS = 3
} af_data_kind;

typedef struct af_data_where {
  char dir[1024];     /* the folder in effect; "" when none was found */
  const char *origin; /* how it was chosen: the variable's name, "installed",
                         "source tree", or "not found" (static storage) */
  char tried[2048];   /* every candidate looked at, in order, "; "-separated */
} af_data_where;

/* "profiles", "models", "vocabularies" (also the folder names). */
const char *af_data_kind_name(af_data_kind kind);
/* The kind's own environment variable, e.g. "ARTFLOW_PROFILE_DIR". */
const char *af_data_env(af_data_kind kind);

/* Fills *out (caller's storage) following the order above.  Reads the
 * environment on every call.  Returns 0 when a folder was found, else
 * AF_ERR_NOT_FOUND with out->dir = "" and out->tried naming the candidates. */
int af_data_locate(af_data_kind kind, af_data_where *out);

/* The running executable's absolute path (symbolic links resolved), or ""
 * when /proc/self/exe cannot be read.  Static storage. */
const char *af_exe_path(void);

/* Prints once per process and kind, on stderr:
 *   artflow: warning: no device profiles found (tried A; B); using built-in
 *   defaults (or set ARTFLOW_PROFILE_DIR)
 * Thread-safe; later calls for the same kind print nothing. */
void af_data_warn_missing(af_data_kind kind, const af_data_where *where);

#endif
