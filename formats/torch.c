/* PyTorch zip checkpoint reader (see torch.h): finds data.pkl under any
 * folder prefix, unpickles it safely and resolves tensor views against the
 * storage entries of the mmapped archive. */
#include "formats/torch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"

#define MAX_PKL_BYTES ((uint64_t)64 << 20) /* a 7B shard's data.pkl is ~30 KB */
#define MAX_DEPTH 32
#define MAX_VISITS 4000000

struct af_torch {
  char *path;
  af_zip *zip;
  af_pickle *pk;
  char *prefix;               /* "archive/" (with the slash) or "" */
  struct af_tsrc_blob *blobs; /* one per zip entry, lazily filled */
  char **names;               /* tensor names handed out */
  size_t nnames, names_cap;
};

static int verify_blob(struct af_tsrc_blob *b) {
  return af_zip_verify(b->ctx, b->ctx2);
}

/* First read of a deflated storage: inflate what its views reach (and check
 * the whole entry's size and CRC), after giving back the one inflated
 * before, so that a checkpoint of many deflated storages (a zip bomb, or a
 * re-zipped release) never holds more than one. */
static int inflate_blob(struct af_tsrc_blob *b) {
  af_torch *ck = (af_torch *)b->ctx;
  for (size_t i = 0; i < af_zip_count(ck->zip); i++) {
    struct af_tsrc_blob *o = &ck->blobs[i];
    if (o != b && o->lazy && o->owned) {
      free(o->owned);
      o->owned = NULL;
      o->state = 0;
    }
  }
  free(b->owned);
  b->owned = NULL;
  return af_zip_read_prefix(ck->zip, b->ctx2, b->need, &b->owned);
}

/* Legacy (pre-1.6) torch files start with a protocol-2 pickle of a magic
 * number; say so instead of "not a zip". */
static int looks_legacy(const uint8_t *p, uint64_t n) {
  return n >= 3 && p[0] == 0x80 && p[1] == 0x02 && p[2] == 0x8a;
}

static int open_common(af_torch *ck, int rc_zip, const uint8_t *head, uint64_t hn) {
  if (rc_zip) {
    if (looks_legacy(head, hn)) {
      af_error_clear();
      return af_err(AF_ERR_UNSUPPORTED,
                    "%s: legacy PyTorch (< 1.6) serialization is not supported; re-save it "
                    "with torch.save from a newer torch",
                    ck->path);
    }
    return rc_zip;
  }
  /* data.pkl under the shortest prefix: "<folder>/data.pkl" or "data.pkl" */
  const af_zip_entry *pkl = NULL;
  for (size_t i = 0; i < af_zip_count(ck->zip); i++) {
    const af_zip_entry *e = af_zip_at(ck->zip, i);
    size_t l = strlen(e->name);
    if (l < 8 || strcmp(e->name + l - 8, "data.pkl") || (l > 8 && e->name[l - 9] != '/')) continue;
    if (!pkl || l < strlen(pkl->name)) pkl = e;
  }
  if (!pkl)
    return af_err(AF_ERR_FORMAT, "%s: zip archive has no data.pkl: not a PyTorch checkpoint", ck->path);
  size_t plen = strlen(pkl->name) - 8;
  ck->prefix = strndup(pkl->name, plen);
  ck->blobs = calloc(af_zip_count(ck->zip), sizeof *ck->blobs);
  if (!ck->prefix || !ck->blobs) return af_err(AF_ERR_NOMEM, "%s: out of memory", ck->path);
  const uint8_t *data;
  uint8_t *owned = NULL;
  int rc = af_zip_read(ck->zip, pkl, MAX_PKL_BYTES, &data, &owned);
  if (!rc && !owned) rc = af_zip_verify(ck->zip, pkl);
  if (!rc) {
    size_t ll = strlen(ck->path) + strlen(pkl->name) + 2;
    char *label = malloc(ll);
    if (!label)
      rc = af_err(AF_ERR_NOMEM, "%s: out of memory", ck->path);
    else {
      snprintf(label, ll, "%s:%s", ck->path, pkl->name);
      rc = af_pickle_load(data, (size_t)pkl->usize, label, &ck->pk);
      free(label);
    }
  }
  free(owned);
  return rc;
}

static af_torch *new_ck(const char *path) {
  af_torch *ck = calloc(1, sizeof *ck);
  if (ck && !(ck->path = strdup(path))) {
    free(ck);
    ck = NULL;
  }
  if (!ck) af_err(AF_ERR_NOMEM, "%s: out of memory", path);
  return ck;
}

int af_torch_open(const char *path, af_torch **out) {
  if (!path || !out) return af_err(AF_ERR_INVALID, "af_torch_open: bad arguments");
  *out = NULL;
  af_torch *ck = new_ck(path);
  if (!ck) return AF_ERR_NOMEM;
  uint8_t head[3] = {0};
  size_t hn = 0;
  FILE *f = fopen(path, "rb");
  if (f) {
    hn = fread(head, 1, sizeof head, f);
    fclose(f);
  }
  int rc = open_common(ck, af_zip_open(path, &ck->zip), head, hn);
  if (rc) {
    af_torch_close(ck);
    return rc;
  }
  *out = ck;
  return 0;
}

int af_torch_open_mem(const void *data, size_t size, const char *label, af_torch **out) {
  if (!out || (!data && size)) return af_err(AF_ERR_INVALID, "af_torch_open_mem: bad arguments");
  *out = NULL;
  af_torch *ck = new_ck(label ? label : "<memory>");
  if (!ck) return AF_ERR_NOMEM;
  int rc = open_common(ck, af_zip_open_mem(data, size, ck->path, &ck->zip), data, size);
  if (rc) {
    af_torch_close(ck);
    return rc;
  }
  *out = ck;
  return 0;
}

void af_torch_close(af_torch *ck) {
  if (!ck) return;
  if (ck->blobs)
    for (size_t i = 0; i < af_zip_count(ck->zip); i++) free(ck->blobs[i].owned);
  for (size_t i = 0; i < ck->nnames; i++) free(ck->names[i]);
  free(ck->names);
  free(ck->blobs);
  af_pickle_free(ck->pk);
  af_zip_close(ck->zip);
  free(ck->prefix);
  free(ck->path);
  free(ck);
}

const af_pk_value *af_torch_root(const af_torch *ck) {
  return ck ? af_pickle_root(ck->pk) : NULL;
}
const char *af_torch_path(const af_torch *ck) {
  return ck ? ck->path : "";
}

const af_pk_value *af_torch_pick_root(const af_torch *ck, const char *root_key) {
  const af_pk_value *top = af_torch_root(ck);
  if (root_key) return *root_key ? af_pk_dict_get(top, root_key) : top;
  static const char *auto_keys[] = {"model", "state_dict"};
  for (size_t i = 0; i < 2; i++) {
    const af_pk_value *v = af_pk_dict_get(top, auto_keys[i]);
    if (v && v->kind == AF_PK_DICT) return v;
  }
  return top;
}

/* ---- tensor resolution ---- */
static int resolve(af_torch *ck, const char *name, const af_pk_tensor *pt, af_tsrc_tensor *t) {
  const af_pk_storage *s = &pt->storage->u.storage;
  size_t el = af_tsrc_dtype_size(s->dtype);
  char ename[512];
  if ((size_t)snprintf(ename, sizeof ename, "%sdata/%s", ck->prefix, s->key) >= sizeof ename)
    return af_err(AF_ERR_FORMAT, "%s: tensor '%s': storage key too long", ck->path, name);
  const af_zip_entry *e = af_zip_find(ck->zip, ename);
  if (!e)
    return af_err(AF_ERR_FORMAT, "%s: tensor '%s': storage '%s' is missing from the archive", ck->path, name,
                  s->key);
  uint64_t sbytes;
  if (__builtin_mul_overflow(s->numel, (uint64_t)el, &sbytes) || sbytes > e->usize)
    return af_err(AF_ERR_FORMAT, "%s: storage '%s' declares %llu elements of %zu bytes but holds %llu bytes",
                  ck->path, s->key, (unsigned long long)s->numel, el, (unsigned long long)e->usize);
  memset(t, 0, sizeof *t);
  t->name = name;
  t->file = ck->path;
  t->dtype = s->dtype;
  t->ndim = pt->ndim;
  uint64_t numel = 1, last = pt->offset;
  int overflow = 0;
  for (int i = 0; i < pt->ndim; i++) {
    t->shape[i] = pt->shape[i];
    t->strides[i] = pt->strides[i];
    overflow |= __builtin_mul_overflow(numel, (uint64_t)pt->shape[i], &numel);
  }
  if (numel > 0)
    for (int i = 0; i < pt->ndim; i++) {
      uint64_t span;
      overflow |= __builtin_mul_overflow((uint64_t)(pt->shape[i] - 1), (uint64_t)pt->strides[i], &span);
      overflow |= __builtin_add_overflow(last, span, &last);
    }
  uint64_t end_bytes = 0, nbytes;
  if (numel > 0) overflow |= __builtin_mul_overflow(last + 1, (uint64_t)el, &end_bytes);
  overflow |= __builtin_mul_overflow(numel, (uint64_t)el, &nbytes); /* stride-0 views */
  if (overflow || (numel > 0 && end_bytes > sbytes))
    return af_err(AF_ERR_FORMAT,
                  "%s: tensor '%s' reads past the end of storage '%s' (offset %llu, storage "
                  "%llu elements)",
                  ck->path, name, s->key, (unsigned long long)pt->offset, (unsigned long long)s->numel);
  t->numel = numel;
  t->nbytes = nbytes;
  int64_t expect = 1;
  t->contiguous = 1;
  for (int i = pt->ndim - 1; i >= 0; i--) {
    if (pt->shape[i] != 1 && pt->strides[i] != expect) t->contiguous = 0;
    expect *= pt->shape[i];
  }
  size_t ei = (size_t)(e - af_zip_at(ck->zip, 0));
  struct af_tsrc_blob *b = &ck->blobs[ei];
  const uint8_t *base;
  if (e->method == 0) {
    base = af_zip_base(ck->zip) + e->data_offset;
    b->verify = verify_blob;
    b->ctx = ck->zip;
    b->ctx2 = e;
  } else {
    /* deflated: inflated on the first read (inflate_blob), up to the last
     * byte any of its views reaches; PyTorch writes a storage's exact size */
    if (sbytes != e->usize)
      return af_err(AF_ERR_FORMAT, "%s: deflated storage '%s' holds %llu bytes but declares %llu", ck->path,
                    s->key, (unsigned long long)e->usize, (unsigned long long)sbytes);
    b->lazy = 1;
    b->verify = inflate_blob;
    b->ctx = ck;
    b->ctx2 = e;
    if (numel && end_bytes > b->need) b->need = end_bytes;
    base = NULL;
  }
  t->blob_ = b;
  t->offset_ = pt->offset * el;
  t->data = numel && base ? base + pt->offset * el : NULL;
  return 0;
}

typedef struct walk {
  af_torch *ck;
  af_tsrc_tensor **list;
  size_t *n, cap;
  uint64_t visits; /* bounds shared sub-trees: a DAG can blow up exponentially */
} walk;

static int add_tensor(walk *w, const char *name, const af_pk_tensor *pt) {
  af_torch *ck = w->ck;
  if (ck->nnames == ck->names_cap) {
    size_t nc = ck->names_cap ? ck->names_cap * 2 : 64;
    char **nn = realloc(ck->names, nc * sizeof *nn);
    if (!nn) return af_err(AF_ERR_NOMEM, "%s: out of memory", ck->path);
    ck->names = nn;
    ck->names_cap = nc;
  }
  if (*w->n == w->cap) {
    size_t nc = w->cap ? w->cap * 2 : 64;
    af_tsrc_tensor *nl = realloc(*w->list, nc * sizeof *nl);
    if (!nl) return af_err(AF_ERR_NOMEM, "%s: out of memory", ck->path);
    *w->list = nl;
    w->cap = nc;
  }
  char *nm = strdup(name);
  if (!nm) return af_err(AF_ERR_NOMEM, "%s: out of memory", ck->path);
  ck->names[ck->nnames++] = nm;
  int rc = resolve(ck, nm, pt, &(*w->list)[*w->n]);
  if (!rc) (*w->n)++;
  return rc;
}

static int walk_value(walk *w, const af_pk_value *v, char *name, size_t len, size_t cap, int depth) {
  if (depth > MAX_DEPTH)
    return af_err(AF_ERR_RANGE, "%s: objects nested deeper than %d (cyclic?) at '%s'", w->ck->path, MAX_DEPTH,
                  name);
  if (++w->visits > MAX_VISITS)
    return af_err(AF_ERR_RANGE, "%s: more than %d objects reachable from the root (hostile file?)",
                  w->ck->path, MAX_VISITS);
  if (v->kind == AF_PK_TENSOR) return add_tensor(w, name, &v->u.tensor);
  size_t n = v->kind == AF_PK_DICT                               ? v->u.dict.n
             : (v->kind == AF_PK_LIST || v->kind == AF_PK_TUPLE) ? v->u.seq.n
                                                                 : 0;
  for (size_t i = 0; i < n; i++) {
    const af_pk_value *child, *key = NULL;
    if (v->kind == AF_PK_DICT) {
      key = v->u.dict.kv[2 * i];
      child = v->u.dict.kv[2 * i + 1];
    } else
      child = v->u.seq.v[i];
    if (child->kind != AF_PK_TENSOR && child->kind != AF_PK_DICT && child->kind != AF_PK_LIST &&
        child->kind != AF_PK_TUPLE)
      continue;
    int k;
    const char *dot = len ? "." : "";
    if (!key)
      k = snprintf(name + len, cap - len, "%s%zu", dot, i);
    else if (key->kind == AF_PK_STR)
      k = snprintf(name + len, cap - len, "%s%s", dot, key->u.str.s);
    else if (key->kind == AF_PK_INT)
      k = snprintf(name + len, cap - len, "%s%lld", dot, (long long)key->u.i);
    else
      continue; /* keys of other kinds name nothing we can use */
    if (k < 0 || (size_t)k >= cap - len)
      return af_err(AF_ERR_FORMAT, "%s: tensor name too long under '%s'", w->ck->path, name);
    int rc = walk_value(w, child, name, len + (size_t)k, cap, depth + 1);
    name[len] = 0;
    if (rc) return rc;
  }
  return 0;
}

int af_torch_tensors(af_torch *ck, const af_pk_value *root, const char *prefix, af_tsrc_tensor **list,
                     size_t *n) {
  if (!ck || !list || !n) return af_err(AF_ERR_INVALID, "af_torch_tensors: bad arguments");
  if (!root) return 0;
  char name[1024];
  snprintf(name, sizeof name, "%s", prefix ? prefix : "");
  walk w = {ck, list, n, *n, 0};
  return walk_value(&w, root, name, strlen(name), sizeof name, 0);
}
