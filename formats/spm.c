/* SentencePiece BPE tokenizer (see spm.h).  The encoder follows
 * sentencepiece's BPE model: the normalised text is split into characters
 * (by UTF-8 lead byte; user-defined symbols whole and frozen), then adjacent
 * symbols are merged while their concatenation is a vocabulary piece, always
 * taking the pair with the highest piece score and the leftmost on ties.
 * Unknown results fall back to <0xXX> byte pieces. */
#include "formats/spm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"

#define SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's whitespace mark */

typedef struct {
  char *s;
  size_t len;
  float score;
  int type;
} piece;

struct af_spm {
  piece *p;
  int n;
  int32_t *slots; /* open-addressing hash: piece -> id (normal/user/unused only) */
  size_t nslots;
  int32_t byte_id[256];
  int32_t *user; /* ids of user-defined symbols */
  int n_user;
  af_spm_opts o;
};

static uint64_t hash(const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return h;
}

static int32_t lookup(const af_spm *t, const char *s, size_t n) {
  for (size_t i = hash(s, n) & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
    int32_t id = t->slots[i];
    if (id < 0) return -1;
    if (t->p[id].len == n && !memcmp(t->p[id].s, s, n)) return id;
  }
}

int32_t af_spm_find(const af_spm *t, const char *s) {
  size_t n = strlen(s);
  int32_t id = lookup(t, s, n);
  if (id >= 0) return id;
  for (int i = 0; i < t->n; i++) /* control / byte / unknown pieces */
    if (t->p[i].len == n && !memcmp(t->p[i].s, s, n)) return i;
  return -1;
}

static int finish(af_spm *t, const char *name) {
  t->nslots = 16;
  while (t->nslots < (size_t)t->n * 2 + 16) t->nslots *= 2;
  t->slots = malloc(t->nslots * sizeof *t->slots);
  t->user = malloc(sizeof(int32_t) * (size_t)(t->n ? t->n : 1));
  if (!t->slots || !t->user) return af_err(AF_ERR_NOMEM, "out of memory");
  memset(t->slots, 0xff, t->nslots * sizeof *t->slots);
  for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
  for (int id = 0; id < t->n; id++) {
    piece *p = &t->p[id];
    if (t->o.n_pieces > 0 && id >= t->o.n_pieces) continue; /* not the tokenizer's: decode only */
    if (p->type == AF_SPM_BYTE) {
      unsigned v;
      if (p->len == 6 && sscanf(p->s, "<0x%2X>", &v) == 1 && v < 256) t->byte_id[v] = id;
      continue;
    }
    if (p->type == AF_SPM_USER && p->len) t->user[t->n_user++] = id;
    if (p->type != AF_SPM_NORMAL && p->type != AF_SPM_USER && p->type != AF_SPM_UNUSED) continue;
    if (lookup(t, p->s, p->len) >= 0) continue; /* duplicate: first wins */
    size_t i = hash(p->s, p->len) & (t->nslots - 1);
    while (t->slots[i] >= 0) i = (i + 1) & (t->nslots - 1);
    t->slots[i] = id;
  }
  if (t->o.unk_id >= t->n || t->o.bos_id >= t->n || t->o.eos_id >= t->n)
    return af_err(AF_ERR_FORMAT, "%s: special token id beyond the %d pieces", name, t->n);
  return 0;
}

void af_spm_free(af_spm *t) {
  if (!t) return;
  for (int i = 0; i < t->n; i++) free(t->p[i].s);
  free(t->p);
  free(t->slots);
  free(t->user);
  free(t);
}

static void default_opts(af_spm_opts *o) {
  o->add_dummy_prefix = 1;
  o->remove_extra_whitespaces = 1; /* protobuf defaults */
  o->escape_whitespaces = 1;
  o->byte_fallback = 0;
  o->treat_whitespace_as_suffix = 0;
  o->unk_id = 0;
  o->bos_id = 1;
  o->eos_id = 2;
  o->pad_id = -1;
}

int af_spm_new(const char *const *pieces, const size_t *lens, const float *scores, const int32_t *types,
               int n, const af_spm_opts *opts, af_spm **out) {
  *out = NULL;
  af_spm *t = calloc(1, sizeof *t);
  if (!t || !(t->p = calloc((size_t)(n > 0 ? n : 1), sizeof *t->p))) {
    free(t);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  t->o = *opts;
  for (int i = 0; i < n; i++, t->n++) {
    size_t l = lens ? lens[i] : strlen(pieces[i]);
    if (!(t->p[i].s = malloc(l + 1))) {
      af_spm_free(t);
      return af_err(AF_ERR_NOMEM, "out of memory");
    }
    memcpy(t->p[i].s, pieces[i], l);
    t->p[i].s[l] = 0;
    t->p[i].len = l;
    t->p[i].score = scores ? scores[i] : 0.0f;
    t->p[i].type = types ? types[i] : AF_SPM_NORMAL;
  }
  int rc = finish(t, "tokenizer");
  if (rc) {
    af_spm_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

/* ------------------------------------------------------------- protobuf */

typedef struct {
  const uint8_t *p, *end;
  int bad;
} pb;

static uint64_t varint(pb *r) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) break;
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  r->bad = 1;
  return 0;
}

/* Reads one field: returns 0 at the end, 1 with (field, wire, value / bytes). */
static int field(pb *r, uint32_t *fno, int *wire, uint64_t *val, const uint8_t **bytes, size_t *blen) {
  if (r->p >= r->end || r->bad) return 0;
  uint64_t key = varint(r);
  *fno = (uint32_t)(key >> 3);
  *wire = (int)(key & 7);
  switch (*wire) {
    case 0:
      *val = varint(r);
      break;
    case 1:
      if (r->end - r->p < 8) return r->bad = 1, 0;
      memcpy(val, r->p, 8), r->p += 8;
      break;
    case 5: {
      uint32_t v;
      if (r->end - r->p < 4) return r->bad = 1, 0;
      memcpy(&v, r->p, 4), r->p += 4, *val = v;
      break;
    }
    case 2: {
      uint64_t l = varint(r);
      if (r->bad || l > (uint64_t)(r->end - r->p)) return r->bad = 1, 0;
      *bytes = r->p, *blen = (size_t)l, r->p += l;
      break;
    }
    default:
      return r->bad = 1, 0;
  }
  return !r->bad;
}

static int parse_piece(af_spm *t, const uint8_t *b, size_t n) {
  pb r = {b, b + n, 0};
  uint32_t f;
  int w;
  uint64_t v = 0;
  const uint8_t *s = NULL;
  size_t sl = 0;
  piece p = {NULL, 0, 0.0f, AF_SPM_NORMAL};
  while (field(&r, &f, &w, &v, &s, &sl)) {
    if (f == 1 && w == 2) {
      free(p.s);
      if (!(p.s = malloc(sl + 1))) return AF_ERR_NOMEM;
      memcpy(p.s, s, sl), p.s[sl] = 0, p.len = sl;
    } else if (f == 2 && w == 5) {
      uint32_t u = (uint32_t)v;
      memcpy(&p.score, &u, 4);
    } else if (f == 3 && w == 0) {
      p.type = (int)v;
    }
  }
  if (r.bad || !p.s) {
    free(p.s);
    return AF_ERR_FORMAT;
  }
  t->p[t->n++] = p;
  return 0;
}

int af_spm_load_buffer(const void *buf, size_t n, const char *name, af_spm **out) {
  *out = NULL;
  af_spm *t = calloc(1, sizeof *t);
  if (!t) return af_err(AF_ERR_NOMEM, "out of memory");
  default_opts(&t->o);
  int cap = 0, rc = 0, model_type = 1;
  pb r = {buf, (const uint8_t *)buf + n, 0};
  uint32_t f;
  int w;
  uint64_t v = 0;
  const uint8_t *s = NULL;
  size_t sl = 0;
  char norm_name[64] = "";
  while (field(&r, &f, &w, &v, &s, &sl)) {
    if (f == 1 && w == 2) {
      if (t->n == cap) {
        cap = cap ? cap * 2 : 1024;
        piece *np = realloc(t->p, sizeof *np * (size_t)cap);
        if (!np) {
          rc = af_err(AF_ERR_NOMEM, "out of memory");
          goto out;
        }
        t->p = np;
      }
      if ((rc = parse_piece(t, s, sl))) {
        rc = af_err(rc, "%s: malformed piece %d", name, t->n);
        goto out;
      }
    } else if ((f == 2 || f == 3) && w == 2) { /* trainer_spec / normalizer_spec */
      pb sub = {s, s + sl, 0};
      uint32_t g;
      int ww;
      uint64_t x = 0;
      const uint8_t *ss = NULL;
      size_t ssl = 0;
      while (field(&sub, &g, &ww, &x, &ss, &ssl)) {
        if (f == 2 && ww == 0) {
          if (g == 3)
            model_type = (int)x;
          else if (g == 35)
            t->o.byte_fallback = x != 0;
          else if (g == 24)
            t->o.treat_whitespace_as_suffix = x != 0;
          else if (g == 40)
            t->o.unk_id = (int32_t)x;
          else if (g == 41)
            t->o.bos_id = (int32_t)x;
          else if (g == 42)
            t->o.eos_id = (int32_t)x;
          else if (g == 43)
            t->o.pad_id = (int32_t)x;
        } else if (f == 3) {
          if (g == 1 && ww == 2)
            snprintf(norm_name, sizeof norm_name, "%.*s", (int)ssl, (const char *)ss);
          else if (g == 3 && ww == 0)
            t->o.add_dummy_prefix = x != 0;
          else if (g == 4 && ww == 0)
            t->o.remove_extra_whitespaces = x != 0;
          else if (g == 5 && ww == 0)
            t->o.escape_whitespaces = x != 0;
        }
      }
      if (sub.bad) {
        rc = af_err(AF_ERR_FORMAT, "%s: malformed %s", name, f == 2 ? "trainer_spec" : "normalizer_spec");
        goto out;
      }
    }
  }
  if (r.bad || t->n == 0) {
    rc = af_err(AF_ERR_FORMAT, "%s: not a SentencePiece model (truncated or malformed protobuf)", name);
    goto out;
  }
  if (model_type != 2) {
    rc = af_err(AF_ERR_UNSUPPORTED,
                "%s: SentencePiece model type %d is not BPE (only BPE, as LLaMA uses, is supported)", name,
                model_type);
    goto out;
  }
  if (norm_name[0] && strcmp(norm_name, "identity")) {
    rc = af_err(AF_ERR_UNSUPPORTED, "%s: normaliser '%s' is not supported (LLaMA uses 'identity')", name,
                norm_name);
    goto out;
  }
  if (t->o.pad_id >= t->n) t->o.pad_id = -1;
  rc = finish(t, name);
out:
  if (rc) {
    af_spm_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int af_spm_load(const char *path, af_spm **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n < 0 || n > (1L << 30)) {
    fclose(f);
    return af_err(AF_ERR_FORMAT, "%s: implausible tokenizer size", path);
  }
  void *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return af_err(AF_ERR_IO, "%s: read failed", path);
  }
  fclose(f);
  int rc = af_spm_load_buffer(buf, (size_t)n, path, out);
  free(buf);
  return rc;
}

int af_spm_n_vocab(const af_spm *t) {
  return t->n;
}
const char *af_spm_piece(const af_spm *t, int32_t id) {
  return id >= 0 && id < t->n ? t->p[id].s : NULL;
}
float af_spm_score(const af_spm *t, int32_t id) {
  return id >= 0 && id < t->n ? t->p[id].score : 0.0f;
}
int af_spm_type(const af_spm *t, int32_t id) {
  return id >= 0 && id < t->n ? t->p[id].type : 0;
}
const af_spm_opts *af_spm_options(const af_spm *t) {
  return &t->o;
}

/* ---- used by spm_encode.c ---- */
int32_t af_spm_lookup_internal(const af_spm *t, const char *s, size_t n);
int32_t af_spm_byte_id_internal(const af_spm *t, unsigned char b);
int af_spm_user_prefix_internal(const af_spm *t, const char *s, size_t n);

int32_t af_spm_lookup_internal(const af_spm *t, const char *s, size_t n) {
  return lookup(t, s, n);
}
int32_t af_spm_byte_id_internal(const af_spm *t, unsigned char b) {
  return t->byte_id[b];
}

/* length of the longest user-defined symbol at s, or 0 */
int af_spm_user_prefix_internal(const af_spm *t, const char *s, size_t n) {
  size_t best = 0;
  for (int i = 0; i < t->n_user; i++) {
    const piece *p = &t->p[t->user[i]];
    if (p->len > best && p->len <= n && !memcmp(p->s, s, p->len)) best = p->len;
  }
  return (int)best;
}
