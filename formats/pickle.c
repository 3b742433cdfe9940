/* Safe pickle-subset interpreter (see pickle.h): an opcode loop over a value
 * stack, mark stack and memo, all bounded; GLOBALs resolved against a fixed
 * allow-list and never executed; values allocated in one arena. */
#include "formats/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"

#define MAX_STACK (1u << 20)
#define MAX_MARKS 4096u
#define MAX_MEMO (1u << 20)
#define MAX_STR (256u << 20)
#define MAX_ARENA ((size_t)256 << 20) /* objects of one data.pkl (<= 64 MiB, torch.c) */

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  max_align_t data[];
} chunk;

struct af_pickle {
  chunk *chunks;
  size_t arena_total;
  const af_pk_value *root;
};

/* ---- allow-list ---- */
enum {
  G_ORDERED_DICT = 1,
  G_DICT_LIKE,
  G_REBUILD_TENSOR_V2,
  G_REBUILD_TENSOR,
  G_REBUILD_PARAM,
  G_REBUILD_PARAM_STATE,
  G_CODECS_ENCODE,
  G_SIZE,
  G_STORAGE,
  G_DTYPE,
  G_OPAQUE
};
typedef struct {
  const char *name;
  int id;
  af_tsrc_dtype dt;
} gdef;
static const gdef GLOBALS[] = {
    {"collections.OrderedDict", G_ORDERED_DICT, 0},
    {"collections.defaultdict", G_DICT_LIKE, 0},
    {"torch._utils._rebuild_tensor_v2", G_REBUILD_TENSOR_V2, 0},
    {"torch._utils._rebuild_tensor", G_REBUILD_TENSOR, 0},
    {"torch._utils._rebuild_parameter", G_REBUILD_PARAM, 0},
    {"torch._utils._rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, 0},
    {"_codecs.encode", G_CODECS_ENCODE, 0},
    {"torch.Size", G_SIZE, 0},
    {"torch.FloatStorage", G_STORAGE, AF_TSRC_F32},
    {"torch.HalfStorage", G_STORAGE, AF_TSRC_F16},
    {"torch.BFloat16Storage", G_STORAGE, AF_TSRC_BF16},
    {"torch.DoubleStorage", G_STORAGE, AF_TSRC_F64},
    {"torch.LongStorage", G_STORAGE, AF_TSRC_I64},
    {"torch.IntStorage", G_STORAGE, AF_TSRC_I32},
    {"torch.ShortStorage", G_STORAGE, AF_TSRC_I16},
    {"torch.CharStorage", G_STORAGE, AF_TSRC_I8},
    {"torch.ByteStorage", G_STORAGE, AF_TSRC_U8},
    {"torch.BoolStorage", G_STORAGE, AF_TSRC_BOOL},
    {"torch.UntypedStorage", G_STORAGE, AF_TSRC_U8},
    {"torch.float32", G_DTYPE, AF_TSRC_F32},
    {"torch.float16", G_DTYPE, AF_TSRC_F16},
    {"torch.bfloat16", G_DTYPE, AF_TSRC_BF16},
    {"torch.float64", G_DTYPE, AF_TSRC_F64},
    {"torch.int64", G_DTYPE, AF_TSRC_I64},
    {"torch.int32", G_DTYPE, AF_TSRC_I32},
    {"torch.int16", G_DTYPE, AF_TSRC_I16},
    {"torch.int8", G_DTYPE, AF_TSRC_I8},
    {"torch.uint8", G_DTYPE, AF_TSRC_U8},
    {"torch.bool", G_DTYPE, AF_TSRC_BOOL},
    /* harmless classes that appear in training checkpoints (args, numpy
     * scalars, devices): kept as opaque objects, never constructed */
    {"torch.device", G_OPAQUE, 0},
    {"torch.torch_version.TorchVersion", G_OPAQUE, 0},
    {"argparse.Namespace", G_OPAQUE, 0},
    {"numpy.core.multiarray.scalar", G_OPAQUE, 0},
    {"numpy.core.multiarray._reconstruct", G_OPAQUE, 0},
    {"numpy.ndarray", G_OPAQUE, 0},
    {"numpy.dtype", G_OPAQUE, 0},
    {"builtins.set", G_OPAQUE, 0},
    {"builtins.frozenset", G_OPAQUE, 0},
    {"builtins.slice", G_OPAQUE, 0},
    {"builtins.complex", G_OPAQUE, 0},
    {"builtins.object", G_OPAQUE, 0},
    {"copyreg._reconstructor", G_OPAQUE, 0},
};

/* ---- machine ---- */
typedef struct vm {
  af_pickle *pk;
  const char *label;
  const uint8_t *p, *end, *start;
  af_pk_value **stack;
  size_t sp, stack_cap;
  size_t *marks;
  size_t nmarks;
  af_pk_value **memo;
  size_t memo_cap, memo_len; /* memo_len: filled slots (MEMOIZE's index) */
  int op;
  size_t op_off;
} vm;

static int fail(vm *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(vm *m, int code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return af_err(code, "%s: pickle: %s (opcode 0x%02x at offset %zu)", m->label, msg, m->op, m->op_off);
}

static void *arena_alloc(af_pickle *pk, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n > MAX_ARENA || pk->arena_total > MAX_ARENA - n) return NULL;
  chunk *c = pk->chunks;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->next = pk->chunks;
    c->used = 0;
    c->cap = cap;
    pk->chunks = c;
  }
  void *r = (char *)c->data + c->used;
  c->used += n;
  pk->arena_total += n;
  memset(r, 0, n);
  return r;
}

static af_pk_value *new_val(vm *m, af_pk_kind k) {
  af_pk_value *v = arena_alloc(m->pk, sizeof *v);
  if (v) v->kind = k;
  return v;
}

/* Grows a pointer array inside the arena (old copy is abandoned; the arena
 * is bounded so this cannot run away). */
static int grow(vm *m, af_pk_value ***arr, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap : 4;
  while (nc < need) nc *= 2;
  af_pk_value **n = arena_alloc(m->pk, nc * sizeof *n);
  if (!n) return fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
  if (*cap) memcpy(n, *arr, *cap * sizeof *n);
  *arr = n;
  *cap = nc;
  return 0;
}

static int push(vm *m, af_pk_value *v) {
  if (!v) return fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
  if (m->sp == m->stack_cap) {
    if (m->stack_cap >= MAX_STACK) return fail(m, AF_ERR_FORMAT, "stack deeper than %u", MAX_STACK);
    size_t nc = m->stack_cap ? m->stack_cap * 2 : 64;
    af_pk_value **n = realloc(m->stack, nc * sizeof *n);
    if (!n) return fail(m, AF_ERR_NOMEM, "out of memory");
    m->stack = n;
    m->stack_cap = nc;
  }
  m->stack[m->sp++] = v;
  return 0;
}

static size_t base_sp(vm *m) {
  return m->nmarks ? m->marks[m->nmarks - 1] : 0;
}

static int pop(vm *m, af_pk_value **out) {
  if (m->sp <= base_sp(m)) return fail(m, AF_ERR_FORMAT, "stack underflow");
  *out = m->stack[--m->sp];
  return 0;
}

static int pop_mark(vm *m, size_t *from) {
  if (!m->nmarks) return fail(m, AF_ERR_FORMAT, "no MARK on the stack");
  *from = m->marks[--m->nmarks];
  return 0;
}

static int need(vm *m, size_t n, const uint8_t **q) {
  if ((size_t)(m->end - m->p) < n) return fail(m, AF_ERR_FORMAT, "truncated data");
  *q = m->p;
  m->p += n;
  return 0;
}

static uint64_t le(const uint8_t *q, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | q[i];
  return v;
}

static af_pk_value *new_int(vm *m, int64_t i) {
  af_pk_value *v = new_val(m, AF_PK_INT);
  if (v) v->u.i = i;
  return v;
}

static af_pk_value *new_str(vm *m, af_pk_kind k, const uint8_t *s, size_t n) {
  af_pk_value *v = new_val(m, k);
  char *c = v ? arena_alloc(m->pk, n + 1) : NULL;
  if (!c) return NULL;
  memcpy(c, s, n);
  c[n] = 0;
  v->u.str.s = c;
  v->u.str.len = n;
  return v;
}

static af_pk_value *new_seq(vm *m, af_pk_kind k, af_pk_value **items, size_t n) {
  af_pk_value *v = new_val(m, k);
  if (!v) return NULL;
  if (n) {
    v->u.seq.v = arena_alloc(m->pk, n * sizeof *items);
    if (!v->u.seq.v) return NULL;
    memcpy(v->u.seq.v, items, n * sizeof *items);
  }
  v->u.seq.n = v->u.seq.cap = n;
  return v;
}

static int read_string_op(vm *m, int lenbytes, af_pk_kind k) {
  const uint8_t *q = NULL;
  int rc = need(m, (size_t)lenbytes, &q);
  if (rc) return rc;
  uint64_t n = le(q, lenbytes);
  if (n > MAX_STR) return fail(m, AF_ERR_FORMAT, "string of %llu bytes is too long", (unsigned long long)n);
  if ((rc = need(m, (size_t)n, &q))) return rc;
  return push(m, new_str(m, k, q, (size_t)n));
}

static int global_lookup(vm *m, const char *mod, size_t mlen, const char *name, size_t nlen) {
  char full[256];
  if (mlen == 11 && !memcmp(mod, "__builtin__", 11)) mod = "builtins", mlen = 8;
  if (mlen == 8 && !memcmp(mod, "copy_reg", 8)) mod = "copyreg", mlen = 7;
  if (mlen + nlen + 2 > sizeof full) return fail(m, AF_ERR_FORMAT, "global name too long");
  memcpy(full, mod, mlen);
  full[mlen] = '.';
  memcpy(full + mlen + 1, name, nlen);
  full[mlen + 1 + nlen] = 0;
  for (size_t i = 0; i < sizeof GLOBALS / sizeof GLOBALS[0]; i++) {
    if (strcmp(GLOBALS[i].name, full)) continue;
    af_pk_value *v = new_val(m, GLOBALS[i].id == G_DTYPE ? AF_PK_DTYPE : AF_PK_GLOBAL);
    if (!v) return push(m, NULL);
    v->u.global.name = GLOBALS[i].name;
    v->u.global.id = GLOBALS[i].id;
    return push(m, v);
  }
  for (char *c = full; *c; c++)
    if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
  return af_err(AF_ERR_UNSUPPORTED, "%s: refusing to load global '%s' (not a tensor/state-dict type)",
                m->label, full);
}

static af_tsrc_dtype global_dtype(const af_pk_value *g) {
  for (size_t i = 0; i < sizeof GLOBALS / sizeof GLOBALS[0]; i++)
    if (GLOBALS[i].name == g->u.global.name) return GLOBALS[i].dt;
  return AF_TSRC_U8;
}

/* ---- allow-listed calls (REDUCE / NEWOBJ): values are built, nothing runs ---- */
static int as_int(const af_pk_value *v, int64_t *out) {
  if (!v || (v->kind != AF_PK_INT && v->kind != AF_PK_BOOL)) return 0;
  *out = v->kind == AF_PK_INT ? v->u.i : v->u.b;
  return 1;
}

static int int_tuple(vm *m, const af_pk_value *t, int64_t *out, int *n, const char *what) {
  if (!t || (t->kind != AF_PK_TUPLE && t->kind != AF_PK_LIST))
    return fail(m, AF_ERR_FORMAT, "tensor %s is not a tuple", what);
  if (t->u.seq.n > AF_TSRC_MAX_DIMS)
    return fail(m, AF_ERR_UNSUPPORTED, "tensor has %zu dimensions (max %d)", t->u.seq.n, AF_TSRC_MAX_DIMS);
  for (size_t i = 0; i < t->u.seq.n; i++)
    if (!as_int(t->u.seq.v[i], &out[i]) || out[i] < 0)
      return fail(m, AF_ERR_FORMAT, "tensor %s has a bad entry", what);
  *n = (int)t->u.seq.n;
  return 0;
}

static int make_tensor(vm *m, const af_pk_value *args, af_pk_value **out) {
  if (args->u.seq.n < 4) return fail(m, AF_ERR_FORMAT, "_rebuild_tensor needs 4 arguments");
  af_pk_value **a = args->u.seq.v;
  if (a[0]->kind != AF_PK_STORAGE)
    return fail(m, AF_ERR_FORMAT, "_rebuild_tensor: first argument is a %s, not a storage",
                af_pk_kind_name(a[0]->kind));
  af_pk_value *v = new_val(m, AF_PK_TENSOR);
  if (!v) return fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
  af_pk_tensor *t = &v->u.tensor;
  int64_t off;
  if (!as_int(a[1], &off) || off < 0) return fail(m, AF_ERR_FORMAT, "bad tensor storage offset");
  t->storage = a[0];
  t->offset = (uint64_t)off;
  int ns, nst, rc;
  if ((rc = int_tuple(m, a[2], t->shape, &ns, "size"))) return rc;
  if ((rc = int_tuple(m, a[3], t->strides, &nst, "stride"))) return rc;
  if (ns != nst) return fail(m, AF_ERR_FORMAT, "tensor size and stride differ in length");
  t->ndim = ns;
  *out = v;
  return 0;
}

/* _codecs.encode(str, 'latin1'): how protocol-2 pickles spell bytes. */
static int codecs_encode(vm *m, const af_pk_value *args, af_pk_value **out) {
  if (args->u.seq.n < 1 || args->u.seq.v[0]->kind != AF_PK_STR)
    return fail(m, AF_ERR_FORMAT, "_codecs.encode needs a string");
  const unsigned char *s = (const unsigned char *)args->u.seq.v[0]->u.str.s;
  size_t n = args->u.seq.v[0]->u.str.len, k = 0;
  uint8_t *b = arena_alloc(m->pk, n + 1);
  if (!b) return fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
  for (size_t i = 0; i < n; i++) {
    if (s[i] < 0x80)
      b[k++] = s[i];
    else if ((s[i] & 0xFE) == 0xC2 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
      b[k++] = (uint8_t)((s[i] & 1) << 6 | (s[i + 1] & 0x3F));
      i++;
    } else
      return fail(m, AF_ERR_FORMAT, "_codecs.encode: character outside latin-1");
  }
  *out = new_str(m, AF_PK_BYTES, b, k);
  return *out ? 0 : fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
}

static int call(vm *m, af_pk_value *fn, af_pk_value *args, af_pk_value **out) {
  if (fn->kind != AF_PK_GLOBAL) return fail(m, AF_ERR_FORMAT, "cannot call a %s", af_pk_kind_name(fn->kind));
  if (args->kind != AF_PK_TUPLE)
    return fail(m, AF_ERR_FORMAT, "arguments are a %s, not a tuple", af_pk_kind_name(args->kind));
  af_pk_value *v = NULL;
  switch (fn->u.global.id) {
    case G_ORDERED_DICT:
    case G_DICT_LIKE:
      v = new_val(m, AF_PK_DICT);
      break;
    case G_REBUILD_TENSOR_V2:
    case G_REBUILD_TENSOR:
      return make_tensor(m, args, out);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
      if (args->u.seq.n < 1 || args->u.seq.v[0]->kind != AF_PK_TENSOR)
        return fail(m, AF_ERR_FORMAT, "_rebuild_parameter needs a tensor");
      *out = args->u.seq.v[0];
      return 0;
    case G_CODECS_ENCODE:
      return codecs_encode(m, args, out);
    case G_SIZE:
      if (args->u.seq.n == 1 && args->u.seq.v[0]->kind == AF_PK_TUPLE) {
        *out = args->u.seq.v[0];
        return 0;
      }
      v = new_seq(m, AF_PK_TUPLE, NULL, 0);
      break;
    case G_OPAQUE:
      v = new_val(m, AF_PK_OBJECT);
      if (v) v->u.global = fn->u.global;
      break;
    default:
      return fail(m, AF_ERR_UNSUPPORTED, "calling '%s' is not supported", fn->u.global.name);
  }
  if (!v) return fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
  *out = v;
  return 0;
}

/* ('storage', StorageType, key, location, numel) -> storage value */
static int persistent_load(vm *m, af_pk_value *pid, af_pk_value **out) {
  if (pid->kind != AF_PK_TUPLE || pid->u.seq.n < 5)
    return fail(m, AF_ERR_FORMAT, "persistent id is not a 5-tuple");
  af_pk_value **a = pid->u.seq.v;
  if (a[0]->kind != AF_PK_STR || strcmp(a[0]->u.str.s, "storage"))
    return fail(m, AF_ERR_UNSUPPORTED, "persistent id is not a storage");
  af_pk_value *v = new_val(m, AF_PK_STORAGE);
  if (!v) return fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
  if ((a[1]->kind == AF_PK_GLOBAL && a[1]->u.global.id == G_STORAGE) || a[1]->kind == AF_PK_DTYPE)
    v->u.storage.dtype = global_dtype(a[1]);
  else
    return fail(m, AF_ERR_FORMAT, "persistent id names no storage type");
  if (a[2]->kind == AF_PK_STR)
    v->u.storage.key = a[2]->u.str.s;
  else if (a[2]->kind == AF_PK_INT) {
    char *k = arena_alloc(m->pk, 24);
    if (!k) return fail(m, AF_ERR_NOMEM, "out of memory (arena limit)");
    snprintf(k, 24, "%lld", (long long)a[2]->u.i);
    v->u.storage.key = k;
  } else
    return fail(m, AF_ERR_FORMAT, "storage key is a %s", af_pk_kind_name(a[2]->kind));
  v->u.storage.location = a[3]->kind == AF_PK_STR ? a[3]->u.str.s : "?";
  int64_t numel;
  if (!as_int(a[4], &numel) || numel < 0) return fail(m, AF_ERR_FORMAT, "bad storage size");
  v->u.storage.numel = (uint64_t)numel;
  *out = v;
  return 0;
}

static int dict_set(vm *m, af_pk_value *d, af_pk_value **kv, size_t n) {
  if (n % 2) return fail(m, AF_ERR_FORMAT, "SETITEMS with an odd number of items");
  if (d->kind == AF_PK_OBJECT) return 0; /* opaque: state is dropped */
  if (d->kind != AF_PK_DICT) return fail(m, AF_ERR_FORMAT, "SETITEM on a %s", af_pk_kind_name(d->kind));
  if (n == 0) return 0;
  int rc = grow(m, &d->u.dict.kv, &d->u.dict.cap, 2 * d->u.dict.n + n);
  if (rc) return rc;
  memcpy(d->u.dict.kv + 2 * d->u.dict.n, kv, n * sizeof *kv);
  d->u.dict.n += n / 2;
  return 0;
}

static int list_add(vm *m, af_pk_value *l, af_pk_value **items, size_t n) {
  if (l->kind == AF_PK_OBJECT) return 0;
  if (l->kind != AF_PK_LIST) return fail(m, AF_ERR_FORMAT, "APPEND to a %s", af_pk_kind_name(l->kind));
  if (n == 0) return 0;
  int rc = grow(m, &l->u.seq.v, &l->u.seq.cap, l->u.seq.n + n);
  if (rc) return rc;
  memcpy(l->u.seq.v + l->u.seq.n, items, n * sizeof *items);
  l->u.seq.n += n;
  return 0;
}

static int memo_put(vm *m, uint64_t idx) {
  if (m->sp == 0) return fail(m, AF_ERR_FORMAT, "memo store with an empty stack");
  if (idx >= MAX_MEMO) return fail(m, AF_ERR_FORMAT, "memo index %llu too large", (unsigned long long)idx);
  if (idx >= m->memo_cap) {
    size_t nc = m->memo_cap ? m->memo_cap : 64;
    while (nc <= idx) nc *= 2;
    af_pk_value **n = realloc(m->memo, nc * sizeof *n);
    if (!n) return fail(m, AF_ERR_NOMEM, "out of memory");
    memset(n + m->memo_cap, 0, (nc - m->memo_cap) * sizeof *n);
    m->memo = n;
    m->memo_cap = nc;
  }
  if (!m->memo[idx]) m->memo_len++;
  m->memo[idx] = m->stack[m->sp - 1];
  return 0;
}

static int memo_get(vm *m, uint64_t idx) {
  if (idx >= m->memo_cap || !m->memo[idx])
    return fail(m, AF_ERR_FORMAT, "memo index %llu was never stored", (unsigned long long)idx);
  return push(m, m->memo[idx]);
}

/* ---- the opcode loop ---- */
#define NOT_MINE 1 /* an op_* function does not handle this opcode */

/* LONG1 / LONG4: a little-endian two's complement integer of 1 or 4 length bytes */
static int read_long(vm *m) {
  const uint8_t *q = NULL;
  int rc;
  int lb = m->op == 0x8a ? 1 : 4;
  if ((rc = need(m, (size_t)lb, &q))) return rc;
  uint64_t n = le(q, lb);
  if (n > (size_t)(m->end - m->p)) return fail(m, AF_ERR_FORMAT, "truncated data");
  if ((rc = need(m, (size_t)n, &q))) return rc;
  uint64_t v = 0;
  int neg = n && (q[n - 1] & 0x80);
  for (uint64_t i = 0; i < n; i++) {
    uint8_t ext = neg ? 0xFF : 0x00;
    if (i >= 8) {
      if (q[i] != ext) return fail(m, AF_ERR_UNSUPPORTED, "integer wider than 64 bits");
      continue;
    }
    v |= (uint64_t)q[i] << (8 * i);
  }
  if (neg && n < 8) v |= ~(uint64_t)0 << (8 * n);
  if (n > 8 && (((v >> 63) & 1) != (uint64_t)neg))
    return fail(m, AF_ERR_UNSUPPORTED, "integer wider than 64 bits");
  return push(m, new_int(m, (int64_t)v));
}

/* PROTO, FRAME, STOP, MARK, POP, POP_MARK, DUP */
static int op_stack(vm *m, int *stop) {
  const uint8_t *q = NULL;
  af_pk_value *a = NULL;
  size_t from = 0;
  int rc = 0;
  switch (m->op) {
    case 0x80:
      return need(m, 1, &q); /* PROTO */
    case 0x95:
      return need(m, 8, &q); /* FRAME: only a read-ahead hint */
    case '.':                /* STOP */
      if ((rc = pop(m, &a))) return rc;
      m->pk->root = a;
      *stop = 1;
      return 0;
    case '(': /* MARK */
      if (m->nmarks >= MAX_MARKS) return fail(m, AF_ERR_FORMAT, "more than %u nested MARKs", MAX_MARKS);
      m->marks[m->nmarks++] = m->sp;
      return 0;
    case '0':
      return pop(m, &a); /* POP */
    case '1':            /* POP_MARK */
      if ((rc = pop_mark(m, &from))) return rc;
      m->sp = from;
      return 0;
    case '2': /* DUP */
      if (m->sp <= base_sp(m)) return fail(m, AF_ERR_FORMAT, "stack underflow");
      return push(m, m->stack[m->sp - 1]);
    default:
      return NOT_MINE;
  }
}

/* None, booleans, integers, floats, strings and bytes */
static int op_scalar(vm *m) {
  const uint8_t *q = NULL;
  af_pk_value *a = NULL;
  int rc = 0;
  switch (m->op) {
    case 'N':
      return push(m, new_val(m, AF_PK_NONE));
    case 0x88:
    case 0x89:
      if ((a = new_val(m, AF_PK_BOOL))) a->u.b = m->op == 0x88;
      return push(m, a);
    case 'J':
      if ((rc = need(m, 4, &q))) return rc;
      return push(m, new_int(m, (int32_t)(uint32_t)le(q, 4)));
    case 'K':
      if ((rc = need(m, 1, &q))) return rc;
      return push(m, new_int(m, q[0]));
    case 'M':
      if ((rc = need(m, 2, &q))) return rc;
      return push(m, new_int(m, (int64_t)le(q, 2)));
    case 0x8a: /* LONG1 */
    case 0x8b: /* LONG4 */
      return read_long(m);
    case 'G': { /* BINFLOAT, big-endian */
      if ((rc = need(m, 8, &q))) return rc;
      uint64_t bits = 0;
      for (int i = 0; i < 8; i++) bits = bits << 8 | q[i];
      if ((a = new_val(m, AF_PK_FLOAT))) memcpy(&a->u.f, &bits, 8);
      return push(m, a);
    }
    case 'X':
      return read_string_op(m, 4, AF_PK_STR);
    case 0x8c:
      return read_string_op(m, 1, AF_PK_STR);
    case 0x8d:
      return read_string_op(m, 8, AF_PK_STR);
    case 'T':
      return read_string_op(m, 4, AF_PK_STR); /* BINSTRING (py2 str) */
    case 'U':
      return read_string_op(m, 1, AF_PK_STR);
    case 'B':
      return read_string_op(m, 4, AF_PK_BYTES);
    case 'C':
      return read_string_op(m, 1, AF_PK_BYTES);
    case 0x8e:
      return read_string_op(m, 8, AF_PK_BYTES);
    case 0x96:
      return read_string_op(m, 8, AF_PK_BYTES); /* BYTEARRAY8 */
    default:
      return NOT_MINE;
  }
}

/* empty and marked tuples, lists, dicts; appends and set-items */
static int op_container(vm *m) {
  af_pk_value *a = NULL, *b = NULL;
  size_t from = 0;
  int rc = 0;
  switch (m->op) {
    case '}':
      return push(m, new_val(m, AF_PK_DICT));
    case ']':
      return push(m, new_val(m, AF_PK_LIST));
    case 0x8f:
      return push(m, new_val(m, AF_PK_LIST)); /* EMPTY_SET as a list */
    case ')':
      return push(m, new_seq(m, AF_PK_TUPLE, NULL, 0));
    case 0x85:
    case 0x86:
    case 0x87: {
      size_t n = (size_t)(m->op - 0x84);
      if (m->sp - base_sp(m) < n) return fail(m, AF_ERR_FORMAT, "stack underflow");
      m->sp -= n;
      return push(m, new_seq(m, AF_PK_TUPLE, m->stack + m->sp, n));
    }
    case 't':  /* TUPLE */
    case 'l':  /* LIST */
    case 0x91: /* FROZENSET */
      if ((rc = pop_mark(m, &from))) return rc;
      a = new_seq(m, m->op == 'l' ? AF_PK_LIST : AF_PK_TUPLE, m->stack + from, m->sp - from);
      m->sp = from;
      return push(m, a);
    case 'd': /* DICT */
      if ((rc = pop_mark(m, &from))) return rc;
      if (!(a = new_val(m, AF_PK_DICT))) return push(m, NULL);
      rc = dict_set(m, a, m->stack + from, m->sp - from);
      m->sp = from;
      return rc ? rc : push(m, a);
    case 'a': /* APPEND */
      if ((rc = pop(m, &b))) return rc;
      if (m->sp <= base_sp(m)) return fail(m, AF_ERR_FORMAT, "stack underflow");
      return list_add(m, m->stack[m->sp - 1], &b, 1);
    case 'e':  /* APPENDS */
    case 0x90: /* ADDITEMS */
      if ((rc = pop_mark(m, &from))) return rc;
      if (from <= base_sp(m)) return fail(m, AF_ERR_FORMAT, "stack underflow");
      rc = list_add(m, m->stack[from - 1], m->stack + from, m->sp - from);
      m->sp = from;
      return rc;
    case 's': /* SETITEM */
      if (m->sp - base_sp(m) < 3) return fail(m, AF_ERR_FORMAT, "stack underflow");
      m->sp -= 2;
      return dict_set(m, m->stack[m->sp - 1], m->stack + m->sp, 2);
    case 'u': /* SETITEMS */
      if ((rc = pop_mark(m, &from))) return rc;
      if (from <= base_sp(m)) return fail(m, AF_ERR_FORMAT, "stack underflow");
      rc = dict_set(m, m->stack[from - 1], m->stack + from, m->sp - from);
      m->sp = from;
      return rc;
    default:
      return NOT_MINE;
  }
}

/* the memo, globals, calls (REDUCE, NEWOBJ), BUILD, persistent ids */
static int op_object(vm *m) {
  const uint8_t *q = NULL;
  af_pk_value *a = NULL, *b = NULL, *c = NULL;
  int rc = 0;
  switch (m->op) {
    case 'q':
      if ((rc = need(m, 1, &q))) return rc;
      return memo_put(m, q[0]);
    case 'r':
      if ((rc = need(m, 4, &q))) return rc;
      return memo_put(m, le(q, 4));
    case 0x94:
      return memo_put(m, m->memo_len); /* MEMOIZE */
    case 'h':
      if ((rc = need(m, 1, &q))) return rc;
      return memo_get(m, q[0]);
    case 'j':
      if ((rc = need(m, 4, &q))) return rc;
      return memo_get(m, le(q, 4));
    case 'c': { /* GLOBAL "module\nname\n" */
      const uint8_t *mod = m->p, *nl1 = memchr(m->p, '\n', (size_t)(m->end - m->p));
      if (!nl1) return fail(m, AF_ERR_FORMAT, "truncated GLOBAL");
      const uint8_t *name = nl1 + 1, *nl2 = memchr(name, '\n', (size_t)(m->end - name));
      if (!nl2) return fail(m, AF_ERR_FORMAT, "truncated GLOBAL");
      m->p = nl2 + 1;
      return global_lookup(m, (const char *)mod, (size_t)(nl1 - mod), (const char *)name,
                           (size_t)(nl2 - name));
    }
    case 0x93: /* STACK_GLOBAL */
      if ((rc = pop(m, &b)) || (rc = pop(m, &a))) return rc;
      if (a->kind != AF_PK_STR || b->kind != AF_PK_STR)
        return fail(m, AF_ERR_FORMAT, "STACK_GLOBAL needs two strings");
      return global_lookup(m, a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len);
    case 'R':  /* REDUCE */
    case 0x81: /* NEWOBJ */
      if ((rc = pop(m, &b)) || (rc = pop(m, &a))) return rc;
      if ((rc = call(m, a, b, &c))) return rc;
      return push(m, c);
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs */
      if ((rc = pop(m, &c)) || (rc = pop(m, &b)) || (rc = pop(m, &a))) return rc;
      if ((rc = call(m, a, b, &c))) return rc;
      return push(m, c);
    case 'b': /* BUILD */
      if ((rc = pop(m, &b))) return rc;
      if (m->sp <= base_sp(m)) return fail(m, AF_ERR_FORMAT, "stack underflow");
      a = m->stack[m->sp - 1];
      if (a->kind == AF_PK_DICT)
        a->u.dict.attrs = b; /* OrderedDict._metadata */
      else if (a->kind != AF_PK_OBJECT && a->kind != AF_PK_TENSOR)
        return fail(m, AF_ERR_FORMAT, "BUILD on a %s", af_pk_kind_name(a->kind));
      return 0;
    case 'Q': /* BINPERSID */
      if ((rc = pop(m, &a)) || (rc = persistent_load(m, a, &b))) return rc;
      return push(m, b);
    default:
      return fail(m, AF_ERR_UNSUPPORTED, "unsupported opcode");
  }
}

/* One opcode: each op_* function handles its group and answers NOT_MINE
 * for the others. */
static int step(vm *m, int *stop) {
  m->op_off = (size_t)(m->p - m->start);
  m->op = *m->p++;
  int rc = op_stack(m, stop);
  if (rc == NOT_MINE) rc = op_scalar(m);
  if (rc == NOT_MINE) rc = op_container(m);
  if (rc == NOT_MINE) rc = op_object(m);
  return rc;
}

int af_pickle_load(const uint8_t *data, size_t size, const char *label, af_pickle **out) {
  if (!out || (!data && size)) return af_err(AF_ERR_INVALID, "af_pickle_load: bad arguments");
  *out = NULL;
  vm m;
  memset(&m, 0, sizeof m);
  m.label = label ? label : "<pickle>";
  m.start = m.p = data;
  m.end = data + size;
  m.pk = calloc(1, sizeof *m.pk);
  m.marks = malloc(MAX_MARKS * sizeof *m.marks);
  m.stack_cap = 64; /* never NULL: "stack + sp" with sp == 0 must be valid */
  m.stack = malloc(m.stack_cap * sizeof *m.stack);
  int rc = 0, stop = 0;
  if (!m.pk || !m.marks || !m.stack) {
    rc = af_err(AF_ERR_NOMEM, "%s: out of memory", m.label);
    goto out;
  }
  while (!stop) {
    if (m.p >= m.end) {
      m.op_off = size;
      m.op = 0;
      rc = fail(&m, AF_ERR_FORMAT, "data ends before STOP (truncated?)");
      break;
    }
    if ((rc = step(&m, &stop))) break;
  }
  if (!rc && m.nmarks) rc = fail(&m, AF_ERR_FORMAT, "unbalanced MARK at STOP");
out:
  free(m.stack);
  free(m.marks);
  free(m.memo);
  if (rc) {
    af_pickle_free(m.pk);
    return rc;
  }
  *out = m.pk;
  return 0;
}

void af_pickle_free(af_pickle *p) {
  if (!p) return;
  for (chunk *c = p->chunks, *n; c; c = n) {
    n = c->next;
    free(c);
  }
  free(p);
}

const af_pk_value *af_pickle_root(const af_pickle *p) {
  return p ? p->root : NULL;
}

const af_pk_value *af_pk_dict_get(const af_pk_value *d, const char *key) {
  if (!d || d->kind != AF_PK_DICT || !key) return NULL;
  for (size_t i = d->u.dict.n; i-- > 0;) { /* last assignment wins, as in Python */
    const af_pk_value *k = d->u.dict.kv[2 * i];
    if (k->kind == AF_PK_STR && !strcmp(k->u.str.s, key)) return d->u.dict.kv[2 * i + 1];
  }
  return NULL;
}

const char *af_pk_kind_name(af_pk_kind k) {
  static const char *names[] = {"None", "bool", "int",    "float",   "str",    "bytes",  "tuple",
                                "list", "dict", "global", "storage", "tensor", "object", "dtype"};
  return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}
