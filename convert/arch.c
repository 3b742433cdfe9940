/* Architecture YAML loader (see arch.h): a table of known keys per section,
 * parsed with libyaml's document API; every error names file:line and key. */
#include "convert/arch.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "artflow/status.h"

typedef enum { K_INT, K_FLOAT, K_STR, K_FLOAT3, K_STRLIST } kind;

typedef struct {
  const char *section, *key;
  kind k;
  size_t off;
  int required;
} field;

#define F(sec, key, k, member, req) \
  { sec, key, k, offsetof(af_arch, member), req }
static const field k_fields[] = {
    F("vision", "image_size", K_INT, vision.image_size, 1),
    F("vision", "patch_size", K_INT, vision.patch_size, 1),
    F("vision", "width", K_INT, vision.width, 1),
    F("vision", "heads", K_INT, vision.heads, 1),
    F("vision", "mlp_width", K_INT, vision.mlp_width, 1),
    F("vision", "layers", K_INT, vision.layers, 1),
    F("vision", "ln_eps", K_FLOAT, vision.ln_eps, 1),
    F("vision", "ln_vision_eps", K_FLOAT, vision.ln_vision_eps, 1),
    F("vision", "mean", K_FLOAT3, vision.mean, 1),
    F("vision", "std", K_FLOAT3, vision.std, 1),
    F("qformer", "width", K_INT, qformer.width, 1),
    F("qformer", "layers", K_INT, qformer.layers, 1),
    F("qformer", "heads", K_INT, qformer.heads, 1),
    F("qformer", "ffn_width", K_INT, qformer.ffn_width, 1),
    F("qformer", "queries", K_INT, qformer.queries, 1),
    F("qformer", "cross_attention_every", K_INT, qformer.cross_attention_every, 1),
    F("qformer", "ln_eps", K_FLOAT, qformer.ln_eps, 1),
    F("llm", "hidden", K_INT, llm.hidden, 0),
    F("llm", "layers", K_INT, llm.layers, 0),
    F("llm", "heads", K_INT, llm.heads, 0),
    F("llm", "kv_heads", K_INT, llm.kv_heads, 0),
    F("llm", "ffn", K_INT, llm.ffn, 0),
    F("llm", "vocab", K_INT, llm.vocab, 0),
    F("llm", "context_length", K_INT, llm.context_length, 0),
    F("llm", "adapter_width", K_INT, llm.adapter_width, 0),
    F("llm", "rms_eps", K_FLOAT, llm.rms_eps, 0),
    F("llm", "rope_base", K_FLOAT, llm.rope_base, 0),
    F("prompt", "template", K_STR, prompt.template_, 1),
    F("prompt", "default_question", K_STR, prompt.default_question, 1),
    F("prompt", "stop", K_STRLIST, prompt.stop, 1),
};
#undef F
#define N_FIELDS (sizeof k_fields / sizeof k_fields[0])

typedef struct {
  const char *path;
  yaml_document_t *doc;
  af_arch *a;
  char seen[N_FIELDS];
} ctx;

static int line_of(const yaml_node_t *n) {
  return (int)n->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int bad(ctx *c, const yaml_node_t *n, const char *sec, const char *key, const char *why) {
  return af_err(AF_ERR_CONFIG, "%s:%d: %s%s%s: %s", c->path, line_of(n), sec, key ? "." : "", key ? key : "",
                why);
}

static int parse_int(ctx *c, const yaml_node_t *n, const field *f, int *out) {
  const char *s = scalar(n);
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || errno || v <= 0 || v > 1000000000)
    return bad(c, n, f->section, f->key, "expected a positive integer");
  *out = (int)v;
  return 0;
}

static int parse_float(ctx *c, const yaml_node_t *n, const field *f, float *out) {
  const char *s = scalar(n);
  char *end;
  errno = 0;
  double v = s ? strtod(s, &end) : 0;
  if (!s || !*s || *end || errno || !isfinite(v)) return bad(c, n, f->section, f->key, "expected a number");
  *out = (float)v;
  return 0;
}

static int parse_value(ctx *c, const yaml_node_t *n, const field *f) {
  char *dst = (char *)c->a + f->off;
  switch (f->k) {
    case K_INT:
      return parse_int(c, n, f, (int *)dst);
    case K_FLOAT:
      return parse_float(c, n, f, (float *)dst);
    case K_STR: {
      const char *s = scalar(n);
      if (!s) return bad(c, n, f->section, f->key, "expected a string");
      if (strlen(s) >= AF_ARCH_STR) return bad(c, n, f->section, f->key, "string too long");
      strcpy(dst, s);
      return 0;
    }
    case K_FLOAT3: {
      if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top - n->data.sequence.items.start != 3)
        return bad(c, n, f->section, f->key, "expected a list of 3 numbers");
      for (int i = 0; i < 3; i++) {
        yaml_node_t *e = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        int rc = parse_float(c, e, f, (float *)dst + i);
        if (rc) return rc;
      }
      return 0;
    }
    case K_STRLIST: {
      if (n->type != YAML_SEQUENCE_NODE) return bad(c, n, f->section, f->key, "expected a list of strings");
      int cnt = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
      if (cnt > AF_ARCH_MAX_STOP) return bad(c, n, f->section, f->key, "too many stop strings (8 at most)");
      for (int i = 0; i < cnt; i++) {
        const char *s = scalar(yaml_document_get_node(c->doc, n->data.sequence.items.start[i]));
        if (!s || !*s || strlen(s) >= 64)
          return bad(c, n, f->section, f->key, "stop strings: 1..63 bytes each");
        strcpy(c->a->prompt.stop[i], s);
      }
      c->a->prompt.n_stop = cnt;
      return 0;
    }
  }
  return 0;
}

static int parse_section(ctx *c, const char *sec, const yaml_node_t *m) {
  if (m->type == YAML_SCALAR_NODE && strcmp(sec, "llm") == 0 && !*m->data.scalar.value) return 0; /* llm: */
  if (m->type != YAML_MAPPING_NODE) return bad(c, m, sec, NULL, "expected a mapping");
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
    const char *key = scalar(kn);
    if (!key) return bad(c, kn, sec, NULL, "keys must be strings");
    size_t i;
    for (i = 0; i < N_FIELDS; i++)
      if (strcmp(k_fields[i].section, sec) == 0 && strcmp(k_fields[i].key, key) == 0) break;
    if (i == N_FIELDS) return bad(c, kn, sec, key, "unknown key");
    if (c->seen[i]) return bad(c, kn, sec, key, "given twice");
    c->seen[i] = 1;
    int rc = parse_value(c, vn, &k_fields[i]);
    if (rc) return rc;
  }
  return 0;
}

static int parse_root(ctx *c, const yaml_node_t *root) {
  if (!root || root->type != YAML_MAPPING_NODE)
    return af_err(AF_ERR_CONFIG, "%s: expected a mapping with vision, qformer, llm, prompt", c->path);
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
    const char *key = scalar(kn);
    int rc;
    if (!key) return bad(c, kn, "", NULL, "keys must be strings");
    if (strcmp(key, "name") == 0 || strcmp(key, "architecture") == 0) {
      const char *s = scalar(vn);
      char *dst = key[0] == 'n' ? c->a->name : c->a->architecture;
      size_t cap = key[0] == 'n' ? sizeof c->a->name : sizeof c->a->architecture;
      if (!s || strlen(s) >= cap) return bad(c, vn, key, NULL, "expected a short string");
      if (key[0] == 'a' && strcmp(s, "artgpt4") != 0 && strcmp(s, "minigpt4") != 0)
        return bad(c, vn, key, NULL, "must be artgpt4 or minigpt4");
      strcpy(dst, s);
      continue;
    }
    if (strcmp(key, "vision") && strcmp(key, "qformer") && strcmp(key, "llm") && strcmp(key, "prompt"))
      return bad(c, kn, key, NULL, "unknown section (vision, qformer, llm, prompt, name, architecture)");
    if ((rc = parse_section(c, key, vn))) return rc;
  }
  for (size_t i = 0; i < N_FIELDS; i++)
    if (k_fields[i].required && !c->seen[i])
      return af_err(AF_ERR_CONFIG, "%s: missing %s.%s", c->path, k_fields[i].section, k_fields[i].key);
  return 0;
}

static int validate(const char *path, const af_arch *a) {
  if (a->vision.image_size % a->vision.patch_size)
    return af_err(AF_ERR_CONFIG, "%s: vision.image_size %d is not a multiple of patch_size %d", path,
                  a->vision.image_size, a->vision.patch_size);
  if (a->vision.width % a->vision.heads)
    return af_err(AF_ERR_CONFIG, "%s: vision.width %d is not a multiple of heads %d", path, a->vision.width,
                  a->vision.heads);
  if (a->qformer.width % a->qformer.heads)
    return af_err(AF_ERR_CONFIG, "%s: qformer.width %d is not a multiple of heads %d", path, a->qformer.width,
                  a->qformer.heads);
  if (a->llm.hidden > 0 && a->llm.heads > 0 && a->llm.hidden % a->llm.heads)
    return af_err(AF_ERR_CONFIG, "%s: llm.hidden %d is not a multiple of heads %d", path, a->llm.hidden,
                  a->llm.heads);
  if (a->prompt.template_[0] && !strstr(a->prompt.template_, "<ImageHere>"))
    return af_err(AF_ERR_CONFIG, "%s: prompt.template must contain <ImageHere>", path);
  for (int i = 0; i < 3; i++)
    if (!(a->vision.std[i] > 0)) return af_err(AF_ERR_CONFIG, "%s: vision.std must be positive", path);
  return 0;
}

int af_arch_load(const char *path, af_arch *out) {
  memset(out, 0, sizeof *out);
  out->llm.hidden = out->llm.layers = out->llm.heads = out->llm.kv_heads = -1;
  out->llm.ffn = out->llm.vocab = out->llm.context_length = out->llm.adapter_width = -1;
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  yaml_parser_t parser;
  yaml_document_t doc;
  int rc = 0, have_doc = 0;
  if (!yaml_parser_initialize(&parser)) {
    fclose(f);
    return af_err(AF_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
  }
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = af_err(AF_ERR_CONFIG, "%s:%d:%d: YAML error: %s", path, (int)parser.problem_mark.line + 1,
                (int)parser.problem_mark.column + 1, parser.problem ? parser.problem : "unknown");
    goto out;
  }
  have_doc = 1;
  ctx c = {path, &doc, out, {0}};
  if ((rc = parse_root(&c, yaml_document_get_root_node(&doc)))) goto out;
  if ((rc = validate(path, out))) goto out;
  if (!out->name[0]) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out->name, sizeof out->name, "%.*s", (int)(strcspn(b, ".") < 63 ? strcspn(b, ".") : 63), b);
  }
out:
  if (have_doc) yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

int af_arch_require_llm(af_arch *a, const char *path) {
  static const char *names[] = {"hidden", "layers", "heads", "ffn", "vocab"};
  int *vals[] = {&a->llm.hidden, &a->llm.layers, &a->llm.heads, &a->llm.ffn, &a->llm.vocab};
  for (int i = 0; i < 5; i++)
    if (*vals[i] <= 0) return af_err(AF_ERR_CONFIG, "%s: llm.%s is required here", path, names[i]);
  if (a->llm.kv_heads <= 0) a->llm.kv_heads = a->llm.heads;
  if (a->llm.context_length <= 0) a->llm.context_length = 2048;
  if (a->llm.rms_eps <= 0) a->llm.rms_eps = 1e-6f;
  if (a->llm.rope_base <= 0) a->llm.rope_base = 10000.0f;
  if (a->llm.hidden % a->llm.heads)
    return af_err(AF_ERR_CONFIG, "%s: llm.hidden is not a multiple of llm.heads", path);
  return 0;
}

int af_arch_check(const char *arch_path, const char *key, int *yaml_val, long long found,
                  const char *source) {
  if (*yaml_val <= 0) {
    *yaml_val = (int)found;
    return 0;
  }
  if (*yaml_val != found)
    return af_err(AF_ERR_MISMATCH, "%s: %s is %d but %s has %lld", arch_path, key, *yaml_val, source, found);
  return 0;
}
