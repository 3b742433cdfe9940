/* Tag vocabularies: YAML files and plain label lists (see tagvocab.h).
 * Parsed with libyaml's document API; every problem is one line naming the
 * file and, for YAML, the line. */
#include "formats/tagvocab.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "artflow/status.h"
#include "core/datadir.h"
#include "core/iofile.h"

#define MAX_LABELS 100000

const char *af_tag_mode_name(af_tag_mode m) {
  return m == AF_TAG_YESNO ? "yesno" : "choose";
}

int af_tag_mode_parse(const char *s) {
  return !s ? -1 : !strcmp(s, "choose") ? AF_TAG_CHOOSE : !strcmp(s, "yesno") ? AF_TAG_YESNO : -1;
}

static void label_free(af_tag_label *l) {
  free(l->id), free(l->label), free(l->uri);
  for (int i = 0; i < l->n_aliases; i++) free(l->aliases[i]);
  free(l->aliases);
}

void af_tagvocab_free(af_tagvocab *v) {
  if (!v) return;
  for (int i = 0; i < v->n_labels; i++) label_free(&v->labels[i]);
  free(v->labels), free(v->path), free(v->name), free(v->question);
  free(v);
}

/* the file name without folder and extension */
static char *stem(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  const char *dot = strrchr(b, '.');
  return strndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
}

static int new_vocab(const char *path, af_tagvocab **out) {
  af_tagvocab *v = calloc(1, sizeof *v);
  if (!v || !(v->path = strdup(path))) {
    free(v);
    return af_err(AF_ERR_NOMEM, "out of memory");
  }
  *out = v;
  return 0;
}

/* the text is not blank */
static int blank(const char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
  return !*s;
}

/* the labels so far are unique (label and id) and not blank */
static int check_label(const af_tagvocab *v, const af_tag_label *l, const char *where) {
  if (blank(l->label)) return af_err(AF_ERR_FORMAT, "%s: a blank label", where);
  if (blank(l->id)) return af_err(AF_ERR_FORMAT, "%s: label '%s' has a blank id", where, l->label);
  for (int i = 0; i < v->n_labels; i++) {
    if (!strcmp(v->labels[i].label, l->label))
      return af_err(AF_ERR_FORMAT, "%s: label '%s' is given twice", where, l->label);
    if (!strcmp(v->labels[i].id, l->id))
      return af_err(AF_ERR_FORMAT, "%s: id '%s' is given twice", where, l->id);
  }
  return 0;
}

static int add_label(af_tagvocab *v, af_tag_label *l, const char *where) {
  int rc = check_label(v, l, where);
  if (!rc && v->n_labels >= MAX_LABELS)
    rc = af_err(AF_ERR_FORMAT, "%s: more than %d labels", where, MAX_LABELS);
  af_tag_label *nl = rc ? NULL : realloc(v->labels, sizeof *nl * (size_t)(v->n_labels + 1));
  if (!rc && !nl) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (rc) {
    label_free(l);
    return rc;
  }
  v->labels = nl;
  v->labels[v->n_labels++] = *l;
  return 0;
}

int af_tagvocab_load_lines(const char *path, af_tagvocab **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot open labels file: %s", path, strerror(errno));
  af_tagvocab *v = NULL;
  int rc = new_vocab(path, &v), ln = 0;
  if (!rc && !(v->name = stem(path))) rc = af_err(AF_ERR_NOMEM, "out of memory");
  char line[4096];
  while (!rc && fgets(line, sizeof line, f)) {
    ln++;
    size_t n = strlen(line);
    if (n == sizeof line - 1 && line[n - 1] != '\n') {
      rc = af_err(AF_ERR_FORMAT, "%s:%d: line longer than %zu bytes", path, ln, sizeof line - 2);
      break;
    }
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
      line[--n] = 0;
    char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s || *s == '#') continue;
    char where[1100];
    snprintf(where, sizeof where, "%s:%d", path, ln);
    af_tag_label l = {.id = strdup(s), .label = strdup(s)};
    rc =
        !l.id || !l.label ? (label_free(&l), af_err(AF_ERR_NOMEM, "out of memory")) : add_label(v, &l, where);
  }
  fclose(f);
  if (!rc && !v->n_labels) rc = af_err(AF_ERR_FORMAT, "%s: no labels in the file", path);
  if (rc) {
    af_tagvocab_free(v);
    return rc;
  }
  *out = v;
  return 0;
}

/* ---- YAML ---- */

typedef struct vload {
  yaml_document_t doc;
  const char *path;
  af_tagvocab *v;
} vload;

static yaml_node_t *node(vload *L, int id) {
  return yaml_document_get_node(&L->doc, id);
}

static int bad(vload *L, const yaml_node_t *n, const char *what) {
  return af_err(AF_ERR_FORMAT, "%s:%zu: %s", L->path, n ? n->start_mark.line + 1 : 0, what);
}

/* a scalar's text, copied; *out NULL for an empty or null value */
static int text(vload *L, yaml_node_t *n, const char *key, char **out) {
  *out = NULL;
  char why[160];
  if (n->type != YAML_SCALAR_NODE) {
    snprintf(why, sizeof why, "'%s' must be a single value", key);
    return bad(L, n, why);
  }
  const char *s = (const char *)n->data.scalar.value;
  int plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (!*s || (plain && (!strcmp(s, "~") || !strcmp(s, "null")))) return 0;
  return (*out = strdup(s)) ? 0 : af_err(AF_ERR_NOMEM, "out of memory");
}

static int aliases(vload *L, yaml_node_t *n, af_tag_label *l) {
  if (n->type == YAML_SCALAR_NODE) {
    char *s = NULL;
    int rc = text(L, n, "aliases", &s);
    if (rc || !s) return rc;
    if (!(l->aliases = malloc(sizeof(char *)))) return free(s), af_err(AF_ERR_NOMEM, "out of memory");
    l->aliases[l->n_aliases++] = s;
    return 0;
  }
  if (n->type != YAML_SEQUENCE_NODE) return bad(L, n, "'aliases' must be a list of texts");
  size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  if (cnt && !(l->aliases = calloc(cnt, sizeof(char *)))) return af_err(AF_ERR_NOMEM, "out of memory");
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    char *s = NULL;
    int rc = text(L, node(L, *it), "aliases", &s);
    if (rc) return rc;
    if (!s || blank(s)) {
      free(s);
      return bad(L, node(L, *it), "a blank alias");
    }
    l->aliases[l->n_aliases++] = s;
  }
  return 0;
}

/* one entry of `labels:`: a string, or {id, label, uri, aliases} */
static int one_label(vload *L, yaml_node_t *n) {
  af_tag_label l = {0};
  int rc = 0;
  if (n->type == YAML_SCALAR_NODE) {
    rc = text(L, n, "labels", &l.label);
  } else if (n->type == YAML_MAPPING_NODE) {
    for (yaml_node_pair_t *a = n->data.mapping.pairs.start; !rc && a < n->data.mapping.pairs.top; a++) {
      yaml_node_t *k = node(L, a->key), *val = node(L, a->value);
      const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
      char **dst = !strcmp(key, "id")      ? &l.id
                   : !strcmp(key, "label") ? &l.label
                   : !strcmp(key, "uri")   ? &l.uri
                                           : NULL;
      if (dst && *dst)
        rc = bad(L, k, "a key given twice in a label");
      else if (dst)
        rc = text(L, val, key, dst);
      else if (!strcmp(key, "aliases") && !l.aliases)
        rc = aliases(L, val, &l);
      else
        rc = bad(L, k, "unknown key in a label (valid: id, label, uri, aliases)");
    }
  } else {
    rc = bad(L, n, "a label is a text or a mapping {id, label, uri, aliases}");
  }
  if (!rc && !l.label) rc = bad(L, n, "a label without text");
  if (!rc && !l.id && !(l.id = strdup(l.label))) rc = af_err(AF_ERR_NOMEM, "out of memory");
  if (rc) {
    label_free(&l);
    return rc;
  }
  char where[1100];
  snprintf(where, sizeof where, "%s:%zu", L->path, n->start_mark.line + 1);
  return add_label(L->v, &l, where);
}

static int load_root(vload *L) {
  yaml_node_t *root = yaml_document_get_root_node(&L->doc);
  if (!root || root->type != YAML_MAPPING_NODE)
    return bad(L, root, "a vocabulary is a mapping with name, question, mode and labels");
  yaml_node_t *labels = NULL;
  int rc = 0;
  char *mode = NULL;
  for (yaml_node_pair_t *a = root->data.mapping.pairs.start; !rc && a < root->data.mapping.pairs.top; a++) {
    yaml_node_t *k = node(L, a->key), *val = node(L, a->value);
    const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
    if (!strcmp(key, "name") && !L->v->name)
      rc = text(L, val, key, &L->v->name);
    else if (!strcmp(key, "question") && !L->v->question)
      rc = text(L, val, key, &L->v->question);
    else if (!strcmp(key, "mode") && !mode)
      rc = text(L, val, key, &mode);
    else if (!strcmp(key, "labels") && !labels)
      labels = val;
    else
      rc = bad(L, k, "unknown or repeated key (valid: name, question, mode, labels)");
  }
  if (!rc && mode) {
    int m = af_tag_mode_parse(mode);
    if (m < 0) rc = bad(L, root, "mode must be choose or yesno");
    L->v->mode = m < 0 ? AF_TAG_CHOOSE : (af_tag_mode)m;
  }
  free(mode);
  if (!rc && (!labels || labels->type != YAML_SEQUENCE_NODE))
    rc = bad(L, labels ? labels : root, "'labels' must be a list");
  for (yaml_node_item_t *it = rc ? NULL : labels->data.sequence.items.start;
       !rc && it < labels->data.sequence.items.top; it++)
    rc = one_label(L, node(L, *it));
  if (!rc && !L->v->n_labels) rc = bad(L, labels, "no labels");
  if (!rc && L->v->question && blank(L->v->question)) rc = bad(L, root, "a blank question");
  if (!rc && L->v->mode == AF_TAG_YESNO && (!L->v->question || !strstr(L->v->question, "{label}")))
    rc = bad(L, root, "a yesno vocabulary's question must hold {label}");
  if (!rc && !L->v->name && !(L->v->name = stem(L->path))) rc = af_err(AF_ERR_NOMEM, "out of memory");
  return rc;
}

int af_tagvocab_load(const char *path, af_tagvocab **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return af_err(AF_ERR_IO, "%s: cannot open vocabulary: %s", path, strerror(errno));
  af_buf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) af_buf_put(&b, chunk, n);
  int err = ferror(f);
  fclose(f);
  if (err || b.oom) {
    af_buf_free(&b);
    return af_err(err ? AF_ERR_IO : AF_ERR_NOMEM, "%s: cannot read vocabulary", path);
  }
  vload L = {.path = path};
  int rc = new_vocab(path, &L.v);
  yaml_parser_t parser;
  if (!rc && !yaml_parser_initialize(&parser)) rc = af_err(AF_ERR_NOMEM, "yaml: out of memory");
  if (!rc) {
    yaml_parser_set_input_string(&parser, (const unsigned char *)(b.p ? b.p : ""), b.n);
    if (!yaml_parser_load(&parser, &L.doc)) {
      rc = af_err(AF_ERR_FORMAT, "%s:%zu: YAML syntax error: %s", path, parser.problem_mark.line + 1,
                  parser.problem ? parser.problem : "malformed");
    } else {
      rc = load_root(&L);
      yaml_document_delete(&L.doc);
    }
    yaml_parser_delete(&parser);
  }
  af_buf_free(&b);
  if (rc) {
    af_tagvocab_free(L.v);
    return rc;
  }
  *out = L.v;
  return 0;
}

static int ends_with(const char *s, const char *e) {
  size_t n = strlen(s), m = strlen(e);
  return n >= m && !strcmp(s + n - m, e);
}

int af_tagvocab_open(const char *spec, const char *base_dir, af_tagvocab **out) {
  *out = NULL;
  if (!spec || !*spec) return af_err(AF_ERR_INVALID, "no vocabulary given");
  if (strchr(spec, '/') || ends_with(spec, ".yaml") || ends_with(spec, ".yml")) {
    if (spec[0] == '/' || !base_dir || !*base_dir) return af_tagvocab_load(spec, out);
    char *p = af_path_join(base_dir, spec);
    if (!p) return af_err(AF_ERR_NOMEM, "out of memory");
    int rc = af_tagvocab_load(p, out);
    free(p);
    return rc;
  }
  af_data_where w;
  if (af_data_locate(AF_DATA_VOCABULARIES, &w))
    return af_err(AF_ERR_NOT_FOUND, "vocabulary '%s': no vocabularies folder (tried %s); give a file path",
                  spec, w.tried);
  char path[2200];
  snprintf(path, sizeof path, "%s/%s.yaml", w.dir, spec);
  FILE *f = fopen(path, "rb");
  if (f) {
    fclose(f);
    return af_tagvocab_load(path, out);
  }
  af_buf names = {0};
  DIR *d = opendir(w.dir);
  for (struct dirent *e; d && (e = readdir(d));)
    if (ends_with(e->d_name, ".yaml")) {
      af_buf_puts(&names, names.n ? ", " : "");
      af_buf_put(&names, e->d_name, strlen(e->d_name) - 5);
    }
  if (d) closedir(d);
  af_buf_put(&names, "", 1);
  int rc = af_err(AF_ERR_NOT_FOUND, "no vocabulary named '%s' in %s (known: %s)", spec, w.dir,
                  names.p && *names.p ? names.p : "none");
  af_buf_free(&names);
  return rc;
}
