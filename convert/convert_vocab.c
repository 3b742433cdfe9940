/* Tokenizer vocabularies for model files: the pieces of a SentencePiece
 * tokenizer.model (a minimal protobuf walk over the few fields needed), the
 * built-in byte-level vocabulary of random models, and the tokenizer.ggml.*
 * metadata keys (see mkmodel.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artflow/status.h"
#include "convert/mkmodel.h"

typedef struct {
  const uint8_t *p, *end;
} pb;

static int varint(pb *b, uint64_t *v) {
  *v = 0;
  for (int s = 0; s < 64; s += 7) {
    if (b->p >= b->end) return -1;
    uint8_t c = *b->p++;
    *v |= (uint64_t)(c & 0x7f) << s;
    if (!(c & 0x80)) return 0;
  }
  return -1;
}

/* Reads one field header and its payload: LEN fields give [*sub, *sub_end),
 * VARINT/FIXED give *v.  Returns 0 or -1 on malformed input. */
static int field(pb *b, uint32_t *num, uint32_t *wt, uint64_t *v, pb *sub) {
  uint64_t key;
  if (varint(b, &key)) return -1;
  *num = (uint32_t)(key >> 3);
  *wt = (uint32_t)(key & 7);
  switch (*wt) {
    case 0:
      return varint(b, v);
    case 1:
      if (b->end - b->p < 8) return -1;
      memcpy(v, b->p, 8);
      b->p += 8;
      return 0;
    case 5: {
      uint32_t u;
      if (b->end - b->p < 4) return -1;
      memcpy(&u, b->p, 4);
      b->p += 4;
      *v = u;
      return 0;
    }
    case 2:
      if (varint(b, v) || *v > (uint64_t)(b->end - b->p)) return -1;
      sub->p = b->p;
      sub->end = b->p + *v;
      b->p += *v;
      return 0;
    default:
      return -1;
  }
}

static int grow(af_vocab *v, size_t n) {
  char **p = realloc(v->pieces, n * sizeof *p);
  if (p) v->pieces = p;
  float *s = realloc(v->scores, n * sizeof *s);
  if (s) v->scores = s;
  int32_t *t = realloc(v->types, n * sizeof *t);
  if (t) v->types = t;
  return p && s && t ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

static int push(af_vocab *v, const char *s, size_t len, float score, int32_t type) {
  if ((v->n & (v->n - 1)) == 0 || v->n == 0) { /* grow at powers of two */
    int rc = grow(v, v->n ? v->n * 2 : 512);
    if (rc) return rc;
  }
  char *c = malloc(len + 1);
  if (!c) return af_err(AF_ERR_NOMEM, "out of memory");
  memcpy(c, s, len);
  c[len] = 0;
  v->pieces[v->n] = c;
  v->scores[v->n] = score;
  v->types[v->n] = type;
  v->n++;
  return 0;
}

static int parse_spm(const char *path, const uint8_t *data, size_t size, af_vocab *v) {
  pb b = {data, data + size}, sub, f;
  uint32_t num, wt;
  uint64_t val;
  int rc;
  v->unk = 0, v->bos = 1, v->eos = 2, v->pad = -1;
  v->add_dummy_prefix = 1, v->remove_extra_whitespaces = 1, v->byte_fallback = 0;
  while (b.p < b.end) {
    if (field(&b, &num, &wt, &val, &sub)) goto bad;
    if (num == 1 && wt == 2) {
      const uint8_t *ps = NULL;
      size_t plen = 0;
      float score = 0;
      int32_t type = 1;
      while (sub.p < sub.end) {
        if (field(&sub, &num, &wt, &val, &f)) goto bad;
        if (num == 1 && wt == 2)
          ps = f.p, plen = (size_t)(f.end - f.p);
        else if (num == 2 && wt == 5) {
          uint32_t u = (uint32_t)val;
          memcpy(&score, &u, 4);
        } else if (num == 3 && wt == 0)
          type = (int32_t)val;
      }
      if (!ps) goto bad;
      if (type < 1 || type > 6) type = 1;
      if ((rc = push(v, (const char *)ps, plen, score, type))) return rc;
    } else if ((num == 2 || num == 3) && wt == 2) {
      int trainer = num == 2;
      while (sub.p < sub.end) {
        if (field(&sub, &num, &wt, &val, &f)) goto bad;
        if (wt != 0) continue;
        if (trainer && num >= 40 && num <= 43) {
          int id = (int)(int32_t)(uint32_t)val; /* negative ids are 10-byte varints */
          if (num == 40) v->unk = id;
          if (num == 41) v->bos = id;
          if (num == 42) v->eos = id;
          if (num == 43) v->pad = id;
        } else if (trainer && num == 35)
          v->byte_fallback = val != 0;
        else if (!trainer && num == 3)
          v->add_dummy_prefix = val != 0;
        else if (!trainer && num == 4)
          v->remove_extra_whitespaces = val != 0;
      }
    }
  }
  if (v->n == 0) return af_err(AF_ERR_FORMAT, "%s: tokenizer.model has no pieces", path);
  int *ids[] = {&v->unk, &v->bos, &v->eos, &v->pad};
  for (int i = 0; i < 4; i++)
    if (*ids[i] >= (int)v->n || *ids[i] < -1) *ids[i] = -1;
  return 0;
bad:
  return af_err(AF_ERR_FORMAT, "%s: malformed SentencePiece model (protobuf) near byte %zu", path,
                (size_t)(b.p - data));
}

int af_vocab_load_spm(const char *path, af_vocab *out) {
  memset(out, 0, sizeof *out);
  FILE *fp = fopen(path, "rb");
  if (!fp) return af_err(AF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  uint8_t *data = NULL;
  long size = -1;
  int rc = 0;
  if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
  if (size < 0 || size > (256l << 20) || fseek(fp, 0, SEEK_SET) != 0) {
    rc = af_err(AF_ERR_IO, "%s: cannot read (or larger than 256 MiB)", path);
    goto out;
  }
  if (!(data = malloc((size_t)size + 1))) {
    rc = af_err(AF_ERR_NOMEM, "out of memory");
    goto out;
  }
  if (fread(data, 1, (size_t)size, fp) != (size_t)size) {
    rc = af_err(AF_ERR_IO, "%s: short read", path);
    goto out;
  }
  rc = parse_spm(path, data, (size_t)size, out);
out:
  free(data);
  fclose(fp);
  if (rc) af_vocab_free(out);
  return rc;
}

int af_vocab_builtin(af_vocab *v) {
  static const char *merges[] = {"\xe2\x96\x81t",
                                 "he",
                                 "\xe2\x96\x81the",
                                 "in",
                                 "er",
                                 "an",
                                 "\xe2\x96\x81"
                                 "a",
                                 "on",
                                 "re",
                                 "\xe2\x96\x81i",
                                 "##",
                                 "###",
                                 "\xe2\x96\x81"
                                 "###"};
  int rc = 0;
  char s[16];
  memset(v, 0, sizeof *v);
  v->unk = 0, v->bos = 1, v->eos = 2, v->pad = -1;
  v->add_dummy_prefix = 1, v->remove_extra_whitespaces = 0, v->byte_fallback = 1;
  if (!rc) rc = push(v, "<unk>", 5, 0, 2);
  if (!rc) rc = push(v, "<s>", 3, 0, 3);
  if (!rc) rc = push(v, "</s>", 4, 0, 3);
  for (int i = 0; i < 256 && !rc; i++) {
    snprintf(s, sizeof s, "<0x%02X>", i);
    rc = push(v, s, strlen(s), 0, 6);
  }
  for (size_t i = 0; i < sizeof merges / sizeof merges[0] && !rc; i++)
    rc = push(v, merges[i], strlen(merges[i]), -(float)i, 1);
  /* single characters score below every merge, as SentencePiece BPE does */
  rc = rc ? rc : push(v, "\xe2\x96\x81", 3, -100.0f, 1);
  for (int c = 33; c < 127 && !rc; c++) {
    s[0] = (char)c;
    rc = push(v, s, 1, -100.0f - (float)c, 1);
  }
  if (rc) af_vocab_free(v);
  return rc;
}

int af_vocab_pad(af_vocab *v, size_t n, const char *const *names, size_t n_names) {
  char s[32];
  size_t used = 0;
  if (!v->n_model && v->n < n) v->n_model = v->n;
  while (v->n < n) {
    int rc;
    if (names && used < n_names && names[used]) {
      rc = push(v, names[used], strlen(names[used]), 0, 4);
      used++;
    } else {
      snprintf(s, sizeof s, "<extra_%zu>", v->n);
      rc = push(v, s, strlen(s), -1e9f, 5);
    }
    if (rc) return rc;
  }
  return 0;
}

void af_vocab_free(af_vocab *v) {
  for (size_t i = 0; v->pieces && i < v->n; i++) free(v->pieces[i]);
  free(v->pieces);
  free(v->scores);
  free(v->types);
  memset(v, 0, sizeof *v);
}

int af_vocab_write(af_gguf_writer *w, const af_vocab *v) {
  int rc = af_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
  if (!rc)
    rc = af_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->pieces, NULL, v->n);
  if (!rc) rc = af_gguf_writer_set_arr(w, "tokenizer.ggml.scores", AF_GGUF_FLOAT32, v->scores, v->n);
  if (!rc) rc = af_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", AF_GGUF_INT32, v->types, v->n);
  if (!rc && v->bos >= 0) rc = af_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
  if (!rc && v->eos >= 0) rc = af_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
  if (!rc && v->unk >= 0) rc = af_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
  if (!rc && v->pad >= 0) rc = af_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
  if (!rc) rc = af_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
  if (!rc) rc = af_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
  if (!rc) rc = af_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_dummy_prefix != 0);
  if (!rc)
    rc = af_gguf_writer_set_bool(w, "tokenizer.ggml.remove_extra_whitespaces",
                                 v->remove_extra_whitespaces != 0);
  if (!rc) rc = af_gguf_writer_set_bool(w, "artflow.tokenizer.byte_fallback", v->byte_fallback != 0);
  if (!rc && v->n_model && v->n_model < v->n)
    rc = af_gguf_writer_set_u32(w, "artflow.tokenizer.pieces", (uint32_t)v->n_model);
  return rc;
}
