/* SentencePiece BPE encoding and decoding (see spm.h).  Merge candidates live
 * in a binary heap ordered by (piece score desc, left position asc); stale
 * candidates (a side already merged away) are skipped when popped, as in
 * sentencepiece's bpe_model.cc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "formats/spm.h"

#define SPACE "\xe2\x96\x81"

/* internal view of af_spm needed here */
int32_t af_spm_lookup_internal(const af_spm *t, const char *s, size_t n);
int32_t af_spm_byte_id_internal(const af_spm *t, unsigned char b);
int af_spm_user_prefix_internal(const af_spm *t, const char *s, size_t n);

typedef struct {
  size_t start, len;
  int prev, next, freeze;
} sym;

typedef struct {
  float score;
  int left, right;
  size_t size;
} cand;

typedef struct {
  cand *v;
  size_t n, cap;
} heap;

static int better(const cand *a, const cand *b) { /* a pops before b */
  return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int push(heap *h, cand c) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    cand *v = realloc(h->v, cap * sizeof *v);
    if (!v) return -1;
    h->v = v, h->cap = cap;
  }
  size_t i = h->n++;
  while (i > 0 && better(&c, &h->v[(i - 1) / 2])) {
    h->v[i] = h->v[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h->v[i] = c;
  return 0;
}

static cand pop(heap *h) {
  cand top = h->v[0], last = h->v[--h->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && better(&h->v[c + 1], &h->v[c])) c++;
    if (!better(&h->v[c], &last)) break;
    h->v[i] = h->v[c];
    i = c;
  }
  if (h->n) h->v[i] = last;
  return top;
}

static size_t utf8_len(unsigned char c) {
  static const unsigned char t[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return t[c >> 4];
}

/* length of the valid UTF-8 character at b (strict: no overlongs, no
 * surrogates, <= U+10FFFF), or 0 when invalid */
static size_t utf8_valid(const unsigned char *b, size_t n) {
  if (b[0] < 0x80) return 1;
  size_t l = b[0] >= 0xc2 && b[0] <= 0xdf   ? 2
             : b[0] >= 0xe0 && b[0] <= 0xef ? 3
             : b[0] >= 0xf0 && b[0] <= 0xf4 ? 4
                                            : 0;
  if (!l || l > n) return 0;
  for (size_t k = 1; k < l; k++)
    if ((b[k] & 0xc0) != 0x80) return 0;
  if (b[0] == 0xe0 && b[1] < 0xa0) return 0;  /* overlong */
  if (b[0] == 0xed && b[1] >= 0xa0) return 0; /* surrogate */
  if (b[0] == 0xf0 && b[1] < 0x90) return 0;
  if (b[0] == 0xf4 && b[1] >= 0x90) return 0;
  return l;
}

/* normalised text: optional dummy prefix, spaces escaped, extra spaces removed */
static char *normalise(const af_spm_opts *o, const char *text, size_t len, int dummy, size_t *out_len) {
  char *buf = malloc(len * 3 + 8), *w = buf;
  if (!buf) return NULL;
  size_t i = 0, end = len;
  if (o->remove_extra_whitespaces) {
    while (i < end && text[i] == ' ') i++;
    while (end > i && text[end - 1] == ' ') end--;
  }
  if (i < end && dummy && !o->treat_whitespace_as_suffix) memcpy(w, SPACE, 3), w += 3;
  for (; i < end; i++) {
    if (text[i] == ' ') {
      if (o->remove_extra_whitespaces && i > 0 && text[i - 1] == ' ') continue;
      if (o->escape_whitespaces) {
        memcpy(w, SPACE, 3), w += 3;
        continue;
      }
    }
    size_t l = utf8_valid((const unsigned char *)text + i, end - i);
    if (!l) { /* invalid UTF-8: U+FFFD, as sentencepiece's normaliser does */
      memcpy(w, "\xef\xbf\xbd", 3), w += 3;
      continue;
    }
    memcpy(w, text + i, l), w += l;
    i += l - 1;
  }
  if (i > 0 && w > buf && dummy && o->treat_whitespace_as_suffix) memcpy(w, SPACE, 3), w += 3;
  *out_len = (size_t)(w - buf);
  return buf;
}

typedef struct {
  int32_t *v;
  size_t n, cap;
} idvec;

static int emit(idvec *o, int32_t id) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 64;
    int32_t *v = realloc(o->v, cap * sizeof *v);
    if (!v) return -1;
    o->v = v, o->cap = cap;
  }
  o->v[o->n++] = id;
  return 0;
}

int af_spm_encode(const af_spm *t, const char *text, size_t len, int add_bos, int dummy_prefix, int32_t **ids,
                  size_t *n) {
  *ids = NULL;
  *n = 0;
  const af_spm_opts *o = af_spm_options(t);
  size_t nl = 0;
  char *s = normalise(o, text, len, dummy_prefix < 0 ? o->add_dummy_prefix : dummy_prefix, &nl);
  sym *sy = malloc(sizeof *sy * (nl + 1));
  heap h = {0};
  idvec out = {0};
  int rc = 0, ns = 0;
  if (!s || !sy) goto nomem;
  if (add_bos && o->bos_id >= 0 && emit(&out, o->bos_id)) goto nomem;
  for (size_t i = 0; i < nl; ns++) { /* characters, user-defined symbols whole */
    int ul = af_spm_user_prefix_internal(t, s + i, nl - i);
    size_t l = ul > 0 ? (size_t)ul : utf8_len((unsigned char)s[i]);
    if (l > nl - i) l = nl - i;
    sy[ns] = (sym){i, l, ns - 1, -1, ul > 0};
    if (ns > 0) sy[ns - 1].next = ns;
    i += l;
  }
#define TRY_PAIR(a, b)                                                                \
  do {                                                                                \
    if ((a) >= 0 && (b) >= 0 && !sy[a].freeze && !sy[b].freeze) {                     \
      size_t sz = sy[a].len + sy[b].len;                                              \
      int32_t id = af_spm_lookup_internal(t, s + sy[a].start, sz);                    \
      if (id >= 0 && push(&h, (cand){af_spm_score(t, id), (a), (b), sz})) goto nomem; \
    }                                                                                 \
  } while (0)
  for (int i = 1; i < ns; i++) TRY_PAIR(i - 1, i);
  while (h.n) {
    cand c = pop(&h);
    sym *L = &sy[c.left], *R = &sy[c.right];
    if (!L->len || !R->len || L->len + R->len != c.size || L->next != c.right) continue; /* stale */
    L->len += R->len;
    L->next = R->next;
    if (R->next >= 0) sy[R->next].prev = c.left;
    R->len = 0;
    TRY_PAIR(L->prev, c.left);
    TRY_PAIR(c.left, L->next);
  }
#undef TRY_PAIR
  int prev_unk = 0;
  for (int i = ns ? 0 : -1; i >= 0; i = sy[i].next) {
    const char *p = s + sy[i].start;
    int32_t id = af_spm_lookup_internal(t, p, sy[i].len);
    if (id >= 0 && af_spm_type(t, id) == AF_SPM_UNUSED) id = -1;
    if (id >= 0) {
      if (emit(&out, id)) goto nomem;
      prev_unk = 0;
    } else if (o->byte_fallback) {
      for (size_t k = 0; k < sy[i].len; k++) {
        int32_t b = af_spm_byte_id_internal(t, (unsigned char)p[k]);
        if (emit(&out, b >= 0 ? b : o->unk_id)) goto nomem;
      }
    } else if (!prev_unk) { /* a run of unknown symbols becomes one unk */
      if (emit(&out, o->unk_id)) goto nomem;
      prev_unk = 1;
    }
  }
  *ids = out.v;
  *n = out.n;
  out.v = NULL;
  goto done;
nomem:
  rc = af_err(AF_ERR_NOMEM, "out of memory while tokenising");
done:
  free(out.v);
  free(h.v);
  free(sy);
  free(s);
  return rc;
}

int af_spm_encode_hf(const af_spm *t, const char *text, size_t len, int add_bos, int32_t **ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  const af_spm_opts *o = af_spm_options(t);
  int32_t special[3] = {o->unk_id, o->bos_id, o->eos_id};
  const char *sp[3];
  size_t spl[3];
  for (int k = 0; k < 3; k++) {
    sp[k] = af_spm_piece(t, special[k]);
    spl[k] = sp[k] ? strlen(sp[k]) : 0;
  }
  idvec out = {0};
  int rc = 0;
  if (add_bos && o->bos_id >= 0 && emit(&out, o->bos_id)) goto nomem;
  /* leftmost, then longest special-token text; the runs between are
   * tokenised separately (each with its own dummy prefix), empty ones skipped */
  for (size_t i = 0, start = 0; i <= len; i++) {
    int hit = -1;
    for (int k = 0; k < 3 && i < len; k++)
      if (spl[k] && spl[k] <= len - i && !memcmp(text + i, sp[k], spl[k]) && (hit < 0 || spl[k] > spl[hit]))
        hit = k;
    if (hit < 0 && i < len) continue;
    if (i > start) {
      int32_t *part = NULL;
      size_t np = 0;
      if ((rc = af_spm_encode(t, text + start, i - start, 0, -1, &part, &np))) goto fail;
      for (size_t k = 0; k < np && !rc; k++) rc = emit(&out, part[k]);
      free(part);
      if (rc) goto nomem;
    }
    if (hit >= 0) {
      if (emit(&out, special[hit])) goto nomem;
      i += spl[hit] - 1;
      start = i + 1;
    }
  }
  *ids = out.v;
  *n = out.n;
  return 0;
nomem:
  rc = af_err(AF_ERR_NOMEM, "out of memory while tokenising");
fail:
  free(out.v);
  return rc;
}

/* appends bytes, replacing invalid UTF-8 sequences with U+FFFD */
static int put_utf8(char **buf, size_t *n, size_t *cap, const unsigned char *b, size_t len) {
  if (*n + len * 3 + 4 > *cap) {
    size_t c = (*n + len * 3 + 4) * 2;
    char *p = realloc(*buf, c);
    if (!p) return -1;
    *buf = p, *cap = c;
  }
  for (size_t i = 0; i < len;) {
    size_t l = utf8_valid(b + i, len - i);
    if (!l) {
      memcpy(*buf + *n, "\xef\xbf\xbd", 3), *n += 3, i++;
      continue;
    }
    memcpy(*buf + *n, b + i, l), *n += l, i += l;
  }
  return 0;
}

/* put_utf8 of a NUL-terminated string */
static int put(char **buf, size_t *n, size_t *cap, const char *s) {
  return put_utf8(buf, n, cap, (const unsigned char *)s, strlen(s));
}

int af_spm_decode_hf(const af_spm *t, const int32_t *ids, size_t n, char **text) {
  *text = NULL;
  const af_spm_opts *o = af_spm_options(t);
  int32_t special[3] = {o->unk_id, o->bos_id, o->eos_id};
  size_t len = 0, cap = 64;
  char *out = malloc(cap), *run = NULL;
  int rc = 0;
  if (!out) return af_err(AF_ERR_NOMEM, "out of memory while decoding");
  /* sub_texts (split at added tokens, joined with " "); within one,
   * convert_tokens_to_string's rule for the special tokens */
  int first_sub = 1;
  for (size_t s0 = 0; s0 < n;) {
    size_t s1 = s0;
    int added = af_spm_type(t, ids[s0]) == AF_SPM_USER;
    if (!added)
      while (s1 < n && af_spm_type(t, ids[s1]) != AF_SPM_USER) s1++;
    else
      s1 = s0 + 1;
    if (!first_sub && put(&out, &len, &cap, " ")) goto nomem;
    first_sub = 0;
    if (added) {
      const char *p = af_spm_piece(t, ids[s0]);
      if (p && put(&out, &len, &cap, p)) goto nomem;
    } else {
      int prev_special = 0;
      size_t r0 = s0; /* the current run of ordinary tokens */
      for (size_t i = s0; i <= s1; i++) {
        int sp = 0;
        for (int k = 0; i < s1 && k < 3; k++) sp |= special[k] >= 0 && ids[i] == special[k];
        if (i < s1 && !sp) {
          prev_special = 0;
          continue;
        }
        if (i < s1 && !prev_special && i != s0 && put(&out, &len, &cap, " ")) goto nomem;
        if ((rc = af_spm_decode(t, ids + r0, i - r0, &run))) goto fail;
        if (put(&out, &len, &cap, run)) goto nomem;
        free(run), run = NULL;
        if (i < s1) {
          const char *p = af_spm_piece(t, ids[i]);
          if (p && put(&out, &len, &cap, p)) goto nomem;
          prev_special = 1;
        }
        r0 = i + 1;
      }
    }
    s0 = s1;
  }
  out[len] = 0; /* put_utf8 leaves room */
  *text = out;
  return 0;
nomem:
  rc = af_err(AF_ERR_NOMEM, "out of memory while decoding");
fail:
  free(run);
  free(out);
  return rc;
}

int af_spm_decode(const af_spm *t, const int32_t *ids, size_t n, char **text) {
  *text = NULL;
  const af_spm_opts *o = af_spm_options(t);
  size_t len = 0, cap = 64;
  char *buf = malloc(cap);
  unsigned char *bytes = malloc(n + 1);
  size_t nb = 0;
  int strip = o->add_dummy_prefix && !o->treat_whitespace_as_suffix;
  if (!buf || !bytes) goto nomem;
  for (size_t i = 0; i <= n; i++) {
    int type = i < n ? af_spm_type(t, ids[i]) : 0;
    if (type == AF_SPM_BYTE) {
      unsigned v = 0;
      sscanf(af_spm_piece(t, ids[i]), "<0x%2X>", &v);
      bytes[nb++] = (unsigned char)v;
      continue;
    }
    if (nb) { /* flush a run of byte pieces */
      if (put_utf8(&buf, &len, &cap, bytes, nb)) goto nomem;
      nb = 0;
      strip = 0;
    }
    if (i == n) break;
    const char *p = af_spm_piece(t, ids[i]);
    if (!p || type == AF_SPM_CONTROL) continue;
    if (type == AF_SPM_UNKNOWN) p = " \xe2\x81\x87 "; /* sentencepiece's unknown surface */
    size_t pl = strlen(p);
    if (strip && pl >= 3 && !memcmp(p, SPACE, 3)) p += 3, pl -= 3, strip = 0; /* only the dummy prefix */
    if (pl || type == AF_SPM_UNKNOWN) strip = 0;
    for (size_t k = 0; k < pl;) {
      if (k + 3 <= pl && !memcmp(p + k, SPACE, 3)) {
        if (put_utf8(&buf, &len, &cap, (const unsigned char *)" ", 1)) goto nomem;
        k += 3;
      } else {
        size_t l = utf8_len((unsigned char)p[k]);
        if (l > pl - k) l = pl - k;
        if (put_utf8(&buf, &len, &cap, (const unsigned char *)p + k, l)) goto nomem;
        k += l;
      }
    }
  }
  buf[len] = 0;
  free(bytes);
  *text = buf;
  return 0;
nomem:
  free(buf);
  free(bytes);
  return af_err(AF_ERR_NOMEM, "out of memory while decoding");
}
