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
 * Life of a stage instance (the engine calls these in this order):
 *   create()     read the configuration, open what the stage needs (the model
 *                through ctx->weights, files); allocate nothing large yet.
 *   negotiate()  optional: fix the model-dependent sizes of the ports
 *                (af_bind(dims, "S", 224)) so that the graph check sees real
 *                shapes.  After every stage has negotiated, each link is
 *                checked again; a mismatch is a configuration error (exit 2)
 *                naming both stages, both shapes and the model, before any
 *                item is read.
 *   prepare()    allocate every buffer for the worst case: ctx->batch items
 *                per call and the fully resolved input shapes.
 *   process()    per batch of at most ctx->batch items; allocates nothing on
 *                the device path (host memory for the items' new tensors is
 *                fine).  Sources call next() instead.
 *   flush()      once after the last item (also after an interrupt).
 *   destroy()
 *
 * Threads: create(), negotiate(), prepare() and destroy() run on the thread
 * that builds the pipeline; process(), next() and flush() run on the stage's
 * own thread.  A stage instance is never called from two threads at once.
 *
 * The engine owns what every model stage needs: one OpenCL device and a
 * command queue per stage (ctx->queue), the model's weights opened once and
 * shared by all stages (ctx->weights), taking turns with the host's memory
 * around process() (stages flagged AF_STAGE_NEEDS_MODEL), the device profile
 * and the provenance block (ctx->provenance()).
 *
 * Results: setup callbacks (create, negotiate, prepare) return 0 or a
 * negative af_status (message through af_err()); such a failure stops the
 * run before any item flows.  Data-path callbacks (process, next, flush)
 * return an af_flow value.  A bad item never stops the pipeline: mark it with
 * af_item_fail() and go on.
 *
 * Plugins: a shared library exports one object named AF_PLUGIN_SYMBOL of type
 * af_plugin whose first field is AF_STAGE_ABI_VERSION; the af_item_* and
 * af_dtype_* functions below are resolved from the artflow executable. */
#ifndef ARTFLOW_STAGE_H
#define ARTFLOW_STAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever any struct or callback below changes layout or meaning.
 * 2: af_stage_ctx carries batch, queue, weights, provenance() and stream();
 *    af_stage_desc gains negotiate(); AF_STAGE_USES_DEVICE. */
#define AF_STAGE_ABI_VERSION 2u
/* Name of the af_plugin object a plugin exports (see af_plugin below). */
#define AF_PLUGIN_SYMBOL "af_plugin_entry"

#define AF_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Engine objects handed to stages; opaque here so plugins need no OpenCL
 * headers (built-in stages pass them on to net/ and image/). */
struct af_cl;      /* the OpenCL device (cl/runtime.h) */
struct af_queue;   /* a command queue of that device (cl/runtime.h) */
struct af_weights; /* a model file's tensors on that device (cl/weights.h) */

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
 *   STRLIST af_strlist   (a YAML sequence of scalars; a lone scalar = 1 item)
 *   JSON    char *       (any YAML value -- a mapping, a list of mappings, a
 *                        scalar -- as its JSON text; NULL when unset; --set
 *                        takes JSON text) */
typedef enum af_param_type {
  AF_PARAM_INT = 1,
  AF_PARAM_FLOAT,
  AF_PARAM_BOOL,
  AF_PARAM_STRING,
  AF_PARAM_ENUM,
  AF_PARAM_STRLIST,
  AF_PARAM_JSON, /* added in ABI 2 without a bump: no existing layout or meaning changed */
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
/* the names this parameter lists are text outputs of the stage (a STRLIST's
 * entries; a JSON list's strings and the "name" of its mappings), checked by
 * the graph like declared outputs; when it names any, the ports flagged
 * AF_PORT_DEFAULT are not written (e.g. the llm stage's `tasks:`) */
#define AF_PARAM_OUTPUTS 8u

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
 * Inputs are matched by name to the earlier stage that outputs it; the graph
 * check fails with both stages and both descriptions named.  Two stages
 * writing the same output name is a configuration error. */
typedef struct af_port {
  const char *name;
  const char *desc;
  const char *doc;
  unsigned flags; /* AF_PORT_OPTIONAL: input need not be produced */
} af_port;

#define AF_PORT_OPTIONAL 1u
/* output written only when the stage's AF_PARAM_OUTPUTS parameter names none */
#define AF_PORT_DEFAULT 2u

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

/* What af_stage_ctx.provenance() should include. */
#define AF_PROVENANCE_MODEL_DIGEST 1u /* the SHA-256 of the model file(s) (reads them once per run) */

/* Given to every callback; lives as long as the pipeline.  Borrowed. */
typedef struct af_stage_ctx {
  const char *instance;        /* this instance's name ("name:" or the stage name) */
  struct af_cl *cl;            /* the OpenCL device, or NULL when no stage of the pipeline
                                  sets AF_STAGE_NEEDS_DEVICE */
  struct af_queue *queue;      /* this stage's own command queue on cl (stages flagged
                                  NEEDS_DEVICE or USES_DEVICE, when cl is open), else NULL */
  struct af_weights *weights;  /* the model's tensors, opened once per run and shared by
                                every stage (NEEDS_MODEL stages), else NULL */
  int batch;                   /* the most items one process() call gets */
  const char *model_path;      /* "model:" (resolved path), or NULL */
  const char *llm_model_path;  /* model: {vision:, llm: B.gguf}: B (resolved), else NULL */
  const char *device;          /* the device in use (its name), else the selector, or NULL */
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
  /* The run's provenance as a JSON object text (artflow version, model and
   * pipeline files and digests, device, profile, parameters), built once per
   * run and shared; `what` is a set of AF_PROVENANCE_* flags.  Borrowed, valid
   * until the run ends; NULL (message recorded) when it cannot be built. */
  const char *(*provenance)(const struct af_stage_ctx *ctx, unsigned what);
  /* Hands part of a text output to whoever follows the run as it happens
   * (e.g. `artflow describe` printing an answer as it is generated): the
   * bytes extend text output `name` of `item`.  NULL when nobody listens. */
  void (*stream)(const struct af_stage_ctx *ctx, const af_item *item, const char *name, const char *bytes,
                 size_t n);
  void *pipeline; /* private to the pipeline */
  /* 1 when whoever follows the run no longer wants `item` (a server's
   * client went away): a stage in a long call may stop working on it and
   * fail it.  NULL when nobody can cancel.  (Added in ABI 2 without a bump,
   * in the place of reserved[0]: no layout changed.) */
  int (*cancelled)(const struct af_stage_ctx *ctx, const af_item *item);
  void *reserved[5];
} af_stage_ctx;

/* --------------------------------------------------------- negotiation */

/* Sizes a stage fixes for the symbols of its port descriptions in
 * negotiate(): "f32[3,S,S]" with S bound to 224 is checked as f32[3,224,224]. */
#define AF_MAX_BINDINGS 16
typedef struct af_binding {
  char symbol[32];
  int64_t value;
} af_binding;
typedef struct af_bindings {
  int n;
  af_binding v[AF_MAX_BINDINGS];
} af_bindings;

/* Binds (or rebinds) `symbol` to `value`.  Returns 0, or -1 when the table is
 * full or the symbol too long (the engine reports it). */
static inline int af_bind(af_bindings *b, const char *symbol, int64_t value) {
  int i = 0;
  while (i < b->n && strcmp(b->v[i].symbol, symbol)) i++;
  if (i == AF_MAX_BINDINGS || strlen(symbol) >= sizeof b->v[0].symbol) return -1;
  if (i == b->n) b->n++;
  memcpy(b->v[i].symbol, symbol, strlen(symbol) + 1);
  b->v[i].value = value;
  return 0;
}

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

#define AF_STAGE_NEEDS_DEVICE 1u /* the pipeline opens the OpenCL device (ctx->cl, ctx->queue) */
#define AF_STAGE_NEEDS_MODEL                                       \
  2u /* "model:" must be set; ctx->weights holds it, and process() \
        runs in the device's weight turn (see cl/weights.h) */
#define AF_STAGE_USES_DEVICE                                        \
  4u /* uses the device when the pipeline opens one (gets a queue), \
        works without it */

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
  /* Optional.  Binds the symbols of this stage's port descriptions to the
   * sizes the opened model (or the configuration) fixes.  0 / status. */
  int (*negotiate)(void *self, const af_stage_ctx *ctx, af_bindings *dims);
  /* Optional.  Called once after the negotiated graph check with the resolved
   * inputs (n_inputs entries, in port order; -1 where a size is still open);
   * allocate every buffer for ctx->batch items here.  0 / status. */
  int (*prepare)(void *self, const af_stage_ctx *ctx, const af_tensor_desc *inputs);
  /* Transforms and sinks: handles items[0..n).  Transforms see only ok items;
   * sinks see all.  Items stay owned by the pipeline.  A sink that cannot
   * write one item because of that item (a name the file system refuses,
   * data it cannot store) fails that item with af_item_fail() and returns
   * AF_FLOW_OK: the sinks after it write an error record for it and it
   * counts as done.  AF_FLOW_ERROR from a sink means the output itself
   * failed (full disk, I/O error): the run stops and the batch is redone
   * by --resume. */
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
