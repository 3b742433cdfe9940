/* The artflow stage contract: items that flow through a pipeline, parameter
 * tables, port descriptions and the stage descriptor.  Built-in stages
 * (stages/<name>.c) and shared-library plugins implement exactly this.
 *
 * A pipeline is a chain:  source -> transform... -> sink...
 *  - The source produces items (one per input file / manifest row).
 *  - Each transform receives batches of items (its batch size) and adds named
 *    tensors or texts to them in place.  It sees only items whose status is
 *    ok: an item that failed earlier skips the remaining transforms.
 *  - Each sink receives every item, ok and error alike, in input order.
 * Each stage instance runs on its own thread; bounded queues connect them.
 *
 * Threads: create(), prepare() and destroy() run on the thread that builds
 * the pipeline; process(), next() and flush() run on the stage's own thread.
 * A stage instance is never called from two threads at once.
 *
 * Results: setup callbacks (create, prepare) return 0 or a negative af_status
 * (message through af_err()); such a failure stops the run before any item
 * flows.  Data-path callbacks (process, next, flush) return an af_flow value.
 * A bad item never stops the pipeline: mark it with af_item_fail() and go on.
 *
 * Plugins: a shared library exports one object named AF_PLUGIN_SYMBOL of type
 * af_plugin whose first field is AF_STAGE_ABI_VERSION; the af_item_* and
 * af_dtype_* functions below are resolved from the artflow executable. */
#ifndef ARTFLOW_STAGE_H
#define ARTFLOW_STAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever any struct or callback below changes layout or meaning. */
#define AF_STAGE_ABI_VERSION 1u
/* Name of the af_plugin object a plugin exports (see af_plugin below). */
#define AF_PLUGIN_SYMBOL "af_plugin_entry"

#define AF_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

struct af_cl; /* cl/runtime.h; opaque here so plugins need no OpenCL headers */

/* ------------------------------------------------------------------ items */

typedef enum af_dtype {
  AF_DTYPE_F32 = 1,
  AF_DTYPE_U8 = 2,
  AF_DTYPE_I32 = 3,
} af_dtype;

#define AF_MAX_DIMS 4

/* A named host tensor, C order.  `data` is owned by the item. */
typedef struct af_tensor {
  char *name;
  af_dtype dtype;
  int ndim;                   /* 0..AF_MAX_DIMS */
  int64_t shape[AF_MAX_DIMS]; /* unused dims are 1 */
  void *data;
  size_t bytes; /* product(shape) * af_dtype_size(dtype) */
} af_tensor;

typedef struct af_kv {
  char *key;
  char *value;
} af_kv;

typedef struct af_timing {
  char *stage;    /* stage instance name */
  double seconds; /* this item's share of the batch time */
} af_timing;

typedef enum af_item_status {
  AF_ITEM_OK = 0,
  AF_ITEM_ERROR = 1,
} af_item_status;

/* One record flowing through the pipeline.  Fields are readable by anyone;
 * change them only through the af_item_* functions (they keep ownership
 * straight).  Every string is owned by the item. */
typedef struct af_item {
  char *id;     /* stable id: manifest id, else relative path */
  char *path;   /* source file path (may be NULL) */
  uint64_t seq; /* position in the source order (set by the pipeline) */
  af_item_status status;
  char *error;       /* one-line reason when status == AF_ITEM_ERROR */
  char *error_stage; /* instance name of the stage that failed it */
  af_kv *meta;       /* source metadata, e.g. CSV extra columns */
  int n_meta;
  af_tensor *tensors;
  int n_tensors;
  af_kv *texts; /* named text outputs, e.g. "text" */
  int n_texts;
  af_timing *timings; /* per-stage time, in pipeline order */
  int n_timings;
  int cap_meta, cap_tensors, cap_texts, cap_timings; /* private */
} af_item;

/* New ok item with copies of id and path (path may be NULL).  Returns NULL
 * when out of memory.  Caller owns it; free with af_item_free. */
af_item *af_item_new(const char *id, const char *path);
/* Frees the item and everything it owns.  NULL is fine. */
void af_item_free(af_item *item);

/* Sets (or replaces) a metadata / text value; copies both strings.
 * Return 0 or AF_ERR_NOMEM. */
int af_item_set_meta(af_item *item, const char *key, const char *value);
int af_item_set_text(af_item *item, const char *name, const char *text);
/* Borrowed value, or NULL when absent. */
const char *af_item_meta(const af_item *item, const char *key);
const char *af_item_text(const af_item *item, const char *name);

/* Adds a tensor named `name` with freshly allocated, zeroed storage (replacing
 * one of the same name) and returns the storage in *data (owned by the item).
 * Returns 0, AF_ERR_INVALID (ndim/shape/dtype) or AF_ERR_NOMEM. */
int af_item_add_tensor(af_item *item, const char *name, af_dtype dtype, int ndim, const int64_t *shape,
                       void **data);
/* Same, but takes ownership of malloc'd `data` (freed with free(); also freed
 * on failure). */
int af_item_put_tensor(af_item *item, const char *name, af_dtype dtype, int ndim, const int64_t *shape,
                       void *data);
/* Borrowed tensor, or NULL when absent. */
const af_tensor *af_item_tensor(const af_item *item, const char *name);
/* Removes and frees the named tensor; 0, or AF_ERR_NOT_FOUND. */
int af_item_drop_tensor(af_item *item, const char *name);

/* Marks the item failed in `stage` with a one-line printf-style reason
 * (newlines are replaced by spaces).  The first failure is kept; later calls
 * do nothing.  Returns AF_FLOW_OK so a stage can `return af_item_fail(...)`
 * from a per-item helper. */
int af_item_fail(af_item *item, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends a timing entry (the pipeline does this for every stage). */
int af_item_add_timing(af_item *item, const char *stage, double seconds);

/* Bytes per element (0 for an invalid dtype) and name ("f32", "u8", "i32"). */
size_t af_dtype_size(af_dtype dtype);
const char *af_dtype_name(af_dtype dtype);

/* ------------------------------------------------------------- parameters */

/* Storage type of each parameter kind in the stage's config struct:
 *   INT     int64_t      FLOAT  double       BOOL  int (0/1)
 *   STRING  char *       (NULL when unset and no default; owned by the pipeline)
 *   ENUM    int          (index into the '|'-separated `choices`)
 *   STRLIST af_strlist   (a YAML sequence of scalars; a lone scalar = 1 item) */
typedef enum af_param_type {
  AF_PARAM_INT = 1,
  AF_PARAM_FLOAT,
  AF_PARAM_BOOL,
  AF_PARAM_STRING,
  AF_PARAM_ENUM,
  AF_PARAM_STRLIST,
} af_param_type;

typedef struct af_strlist {
  char **v; /* owned by the pipeline */
  int n;
} af_strlist;

#define AF_PARAM_REQUIRED 1u /* must be given in the YAML (def is ignored) */
#define AF_PARAM_PATH                                   \
  2u /* a file path: relative paths resolve against the \
        pipeline file's folder */
/* cannot change results (fsync, progress...): left out of the resume settings check */
#define AF_PARAM_RUNTIME 4u

/* One row of a stage's parameter table.  The loader fills the config struct
 * (config_size bytes, zeroed) from `def`, then from YAML, then from --set,
 * validating type and range the same way for every stage. */
typedef struct af_param {
  const char *name;
  af_param_type type;
  size_t offset;       /* offsetof(config struct, field) */
  const char *def;     /* default in YAML scalar syntax ("224", "0.5", "true",
                          "bicubic", "a,b" for lists); NULL = none */
  double min, max;     /* inclusive range for INT/FLOAT, checked when min < max */
  const char *choices; /* ENUM only: "nearest|bilinear|bicubic" */
  const char *doc;     /* one line */
  unsigned flags;      /* AF_PARAM_* */
} af_param;

/* ------------------------------------------------------------------ ports */

/* A port names a tensor (or text) in the item and describes it:
 *   "f32[3,S,S]"   dtype and shape; a dim is an integer, '*' (any size), or a
 *                  symbol.  A symbol that names an INT parameter of the same
 *                  stage takes that parameter's value (e.g.
 *                  "f32[3,image_size,image_size]"); other symbols must agree
 *                  across a link (H on both sides binds to one value).
 *   "u8[*,*,3]"    any height and width, three channels.
 *   "f32[...]"     any rank.       "any"  any tensor.       "text"  a text output.
 * Inputs are matched by name to the latest earlier stage that outputs it;
 * the graph check fails with both stages and both descriptions named. */
typedef struct af_port {
  const char *name;
  const char *desc;
  const char *doc;
  unsigned flags; /* AF_PORT_OPTIONAL: input need not be produced */
} af_port;

#define AF_PORT_OPTIONAL 1u

/* A port description resolved at link time (-1 = unknown size), given to
 * prepare() so stages can size their buffers for the worst case. */
typedef struct af_tensor_desc {
  af_dtype dtype; /* 0 for "any"/"text" */
  int ndim;       /* -1 for any rank */
  int64_t shape[AF_MAX_DIMS];
} af_tensor_desc;

/* ---------------------------------------------------------------- context */

typedef enum af_log_level {
  AF_LOG_ERROR = 0,
  AF_LOG_WARN = 1,
  AF_LOG_INFO = 2,
  AF_LOG_DEBUG = 3,
} af_log_level;

/* Given to every callback; lives as long as the pipeline.  Borrowed. */
typedef struct af_stage_ctx {
  const char *instance;        /* this instance's name ("name:" or the stage name) */
  struct af_cl *cl;            /* the OpenCL device, or NULL when no stage of the
                                  pipeline sets AF_STAGE_NEEDS_DEVICE */
  const char *model_path;      /* "model:" (resolved path), or NULL */
  const char *device;          /* device selector in effect, or NULL */
  const char *profile;         /* "profile:" or NULL */
  const char *pipeline_path;   /* the YAML file */
  const char *pipeline_sha256; /* hex digest of the YAML file's bytes */
  const char *params_json;     /* the resolved configuration of every stage, as
                                  a JSON object (for provenance records) */
  const char *journal_path;    /* run journal file (see pipeline/journal.h) */
  int resume;                  /* 1 under `artflow run --resume`: sinks append */
  int quiet;
  /* Logs one line prefixed with the instance name; thread-safe. */
  void (*log)(const struct af_stage_ctx *ctx, af_log_level level, const char *fmt, ...)
      __attribute__((format(printf, 3, 4)));
  void *pipeline;             /* private to the pipeline */
  const char *llm_model_path; /* model: {vision:, llm: B.gguf}: B (resolved), else NULL */
  void *reserved[5];
} af_stage_ctx;

/* ------------------------------------------------------------- descriptor */

typedef enum af_flow {
  AF_FLOW_OK = 0,     /* went on normally (individual items may be failed) */
  AF_FLOW_EOS = 1,    /* source only: no more items */
  AF_FLOW_ERROR = -1, /* the whole call failed: the pipeline fails every ok
                         item of the batch with af_error_message() and goes on */
} af_flow;

typedef enum af_stage_kind {
  AF_STAGE_SOURCE = 1,
  AF_STAGE_TRANSFORM = 2,
  AF_STAGE_SINK = 3,
} af_stage_kind;

#define AF_STAGE_NEEDS_DEVICE 1u /* opens the OpenCL device (ctx->cl != NULL) */
#define AF_STAGE_NEEDS_MODEL 2u  /* "model:" must be set */

typedef struct af_stage_desc {
  uint32_t abi_version; /* AF_STAGE_ABI_VERSION */
  const char *name;     /* [a-z0-9_]+, unique per kind */
  const char *doc;      /* one line */
  af_stage_kind kind;
  unsigned flags; /* AF_STAGE_* */
  const af_param *params;
  int n_params;
  size_t config_size;    /* size of the config struct the params fill */
  const af_port *inputs; /* transforms and sinks */
  int n_inputs;
  const af_port *outputs; /* transforms */
  int n_outputs;
  int batch_size; /* default batch; YAML "batch:" overrides */

  /* Makes an instance.  `config` is the filled config struct, valid until
   * destroy() (strings in it are borrowed).  Returns 0 or a negative status. */
  int (*create)(const af_stage_ctx *ctx, const void *config, void **self);
  /* Optional.  Called once after the graph check with the resolved inputs
   * (n_inputs entries, in port order); allocate buffers here.  0 / status. */
  int (*prepare)(void *self, const af_stage_ctx *ctx, const af_tensor_desc *inputs);
  /* Transforms and sinks: handles items[0..n).  Transforms see only ok items;
   * sinks see all.  Items stay owned by the pipeline. */
  af_flow (*process)(void *self, const af_stage_ctx *ctx, af_item **items, int n);
  /* Sources: sets *out to a new item (ownership passes to the pipeline) and
   * returns AF_FLOW_OK, or returns AF_FLOW_EOS.  AF_FLOW_ERROR ends the source
   * early (the run then reports failure).  A bad entry should instead be
   * returned as an item marked with af_item_fail(). */
  af_flow (*next)(void *self, const af_stage_ctx *ctx, af_item **out);
  /* Sources, optional: total number of items if cheaply known, else -1
   * (used for the progress ETA).  Called after create(). */
  int64_t (*count)(void *self, const af_stage_ctx *ctx);
  /* Optional.  Called once after the last item (also after an interrupt) on
   * the stage's thread: sinks make their output durable here. */
  af_flow (*flush)(void *self, const af_stage_ctx *ctx);
  /* Frees the instance.  NULL self is possible if create() failed. */
  void (*destroy)(void *self);

  void *reserved[4]; /* zero */
} af_stage_desc;

/* What a plugin exports under AF_PLUGIN_SYMBOL:
 *   const af_plugin af_plugin_entry = {AF_STAGE_ABI_VERSION, "palette",
 *                                      1, (const af_stage_desc *[]){&my_stage}};
 * abi_version is read before anything else; a mismatch refuses the plugin. */
typedef struct af_plugin {
  uint32_t abi_version;
  const char *name;
  int n_stages;
  const af_stage_desc *const *stages;
} af_plugin;

#ifdef __cplusplus
}
#endif
#endif
