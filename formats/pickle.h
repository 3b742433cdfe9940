/* A safe subset of the Python pickle machine, enough for what torch.save
 * writes (protocols 2-5).  Nothing is ever executed: GLOBAL names are looked
 * up in a fixed allow-list (collections.OrderedDict, torch._utils rebuild
 * functions, torch.*Storage classes, torch dtypes, and a few harmless classes
 * kept as opaque objects); any other name is refused with
 * "refusing to load global 'os.system'".  REDUCE/NEWOBJ/BUILD only act on
 * allow-listed callables.  Stack depth, mark depth, memo size, string sizes
 * and total memory are bounded.
 *
 * The result is a small value tree allocated in an arena owned by the
 * af_pickle; values may be shared (memo) or even cyclic, so walkers must
 * bound their depth. */
#ifndef AF_FORMATS_PICKLE_H
#define AF_FORMATS_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/tensorsrc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum af_pk_kind {
  AF_PK_NONE = 0,
  AF_PK_BOOL,
  AF_PK_INT,
  AF_PK_FLOAT,
  AF_PK_STR, /* UTF-8 as stored */
  AF_PK_BYTES,
  AF_PK_TUPLE,
  AF_PK_LIST,
  AF_PK_DICT,    /* dict and collections.OrderedDict */
  AF_PK_GLOBAL,  /* an allow-listed name, not yet called */
  AF_PK_STORAGE, /* persistent id ('storage', type, key, location, numel) */
  AF_PK_TENSOR,  /* torch._utils._rebuild_tensor_v2 / _rebuild_parameter */
  AF_PK_OBJECT,  /* instance of an allow-listed opaque class (never built) */
  AF_PK_DTYPE,   /* torch.float16 and friends */
} af_pk_kind;

typedef struct af_pk_value af_pk_value;

typedef struct af_pk_storage {
  af_tsrc_dtype dtype;
  const char *key;      /* archive entry is "<prefix>/data/<key>" */
  const char *location; /* "cpu", "cuda:0", ... */
  uint64_t numel;       /* elements of dtype, as declared in the pickle */
} af_pk_storage;

typedef struct af_pk_tensor {
  const af_pk_value *storage; /* kind AF_PK_STORAGE */
  uint64_t offset;            /* storage offset in elements */
  int ndim;
  int64_t shape[AF_TSRC_MAX_DIMS];
  int64_t strides[AF_TSRC_MAX_DIMS];
} af_pk_tensor;

struct af_pk_value {
  af_pk_kind kind;
  union {
    int b;
    int64_t i;
    double f;
    struct {
      const char *s;
      size_t len;
    } str; /* STR, BYTES (NUL added) */
    struct {
      af_pk_value **v;
      size_t n, cap;
    } seq; /* TUPLE, LIST */
    struct {
      af_pk_value **kv;   /* keys at even, values at odd indices */
      size_t n, cap;      /* n = number of pairs */
      af_pk_value *attrs; /* BUILD state (e.g. {'_metadata': ...}) or NULL */
    } dict;
    struct {
      const char *name;
      int id;
    } global; /* GLOBAL, OBJECT, DTYPE */
    af_pk_storage storage;
    af_pk_tensor tensor;
  } u;
};

typedef struct af_pickle af_pickle;

/* Runs the pickle program in data[0..size).  label names the data in error
 * messages (e.g. "model.pth:archive/data.pkl").  On success *out holds the
 * arena; af_pickle_root gives the unpickled object.  Returns 0,
 * AF_ERR_FORMAT (malformed, truncated, limits), AF_ERR_UNSUPPORTED (global
 * outside the allow-list, unknown opcode), AF_ERR_NOMEM. */
int af_pickle_load(const uint8_t *data, size_t size, const char *label, af_pickle **out);
void af_pickle_free(af_pickle *p); /* NULL is fine */
const af_pk_value *af_pickle_root(const af_pickle *p);

/* Value of key (a string key) in a DICT, NULL when absent or not a dict. */
const af_pk_value *af_pk_dict_get(const af_pk_value *dict, const char *key);
/* "dict", "tensor", ... for messages. */
const char *af_pk_kind_name(af_pk_kind k);

#ifdef __cplusplus
}
#endif
#endif
