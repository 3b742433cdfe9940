/* Limits on pipeline files and the repeated-key search, both linear (or
 * n log n) in the file's size.  The limits are checked on libyaml's event
 * stream before the document is built (docs/pipeline-format.md, "Limits"):
 * a pipeline is a few kilobytes, its parameters are copied into every
 * record's provenance, and libyaml's scanner slows down with nesting depth
 * (a 100,000-deep nesting took over 3 minutes to load), so files far beyond
 * any real pipeline are refused at the first limit they cross. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "pipeline/internal.h"

/* key text, then position: equal keys end up side by side, earliest first */
typedef struct keyref {
  const char *s;
  size_t i;
} keyref;

static int cmp_keyref(const void *a, const void *b) {
  const keyref *x = a, *y = b;
  int c = strcmp(x->s, y->s);
  return c ? c : (x->i > y->i) - (x->i < y->i);
}

size_t af_yaml_first_repeat(const char *const *keys, size_t n) {
  keyref *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return SIZE_MAX;
  for (size_t i = 0; i < n; i++) v[i] = (keyref){keys[i], i};
  qsort(v, n, sizeof *v, cmp_keyref);
  size_t dup = n;
  for (size_t i = 1; i < n; i++)
    if (!strcmp(v[i].s, v[i - 1].s) && v[i].i < dup) dup = v[i].i;
  free(v);
  return dup;
}

/* An anchor and the number of nodes it stands for, so that an alias counts
 * as what it repeats (1,000 aliases of a 1,000-entry list are 10^6 nodes for
 * anything that walks the document). */
typedef struct anchor_size {
  char *name;
  int64_t first, nodes; /* node count at its start; its size once closed (-1 open) */
} anchor_size;

int af_yaml_check_limits(const char *name, const char *yaml, size_t len) {
  yaml_parser_t ps;
  if (!yaml_parser_initialize(&ps)) return af_err(AF_ERR_NOMEM, "yaml: out of memory");
  yaml_parser_set_input_string(&ps, (const unsigned char *)yaml, len);
  anchor_size *an = NULL;
  int n_an = 0, cap_an = 0, depth = 0, rc = 0;
  int64_t nodes = 0;
  struct {
    int anchor; /* index into an[] of the collection opened at this depth, -1 none */
  } open[AF_YAML_MAX_DEPTH + 1];
  for (int done = 0; !done && !rc;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&ps, &ev)) break; /* the loader reports syntax errors with context */
    const char *anchor = NULL;
    switch (ev.type) {
      case YAML_SCALAR_EVENT:
        nodes++;
        anchor = (const char *)ev.data.scalar.anchor;
        break;
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT:
        nodes++;
        anchor = ev.type == YAML_SEQUENCE_START_EVENT ? (const char *)ev.data.sequence_start.anchor
                                                      : (const char *)ev.data.mapping_start.anchor;
        if (++depth > AF_YAML_MAX_DEPTH) {
          rc = af_err(AF_ERR_CONFIG,
                      "%s:%zu:%zu: nested deeper than %d levels (the limit for a pipeline file)", name,
                      ev.start_mark.line + 1, ev.start_mark.column + 1, AF_YAML_MAX_DEPTH);
          break;
        }
        open[depth].anchor = -1;
        break;
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        if (depth > 0 && open[depth].anchor >= 0) {
          anchor_size *a = &an[open[depth].anchor];
          a->nodes = nodes - a->first;
        }
        depth--;
        break;
      case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev.data.alias.anchor;
        int64_t size = 1;
        for (int i = n_an - 1; i >= 0; i--)
          if (!strcmp(an[i].name, name)) {
            size = an[i].nodes > 0 ? an[i].nodes : 1;
            break;
          }
        nodes += size;
        break;
      }
      case YAML_STREAM_END_EVENT:
        done = 1;
        break;
      default:
        break;
    }
    if (!rc && nodes > AF_YAML_MAX_NODES)
      rc = af_err(AF_ERR_CONFIG,
                  "%s:%zu:%zu: more than %d values, lists and mappings (aliases counted as what they "
                  "repeat): the limit for a pipeline file",
                  name, ev.start_mark.line + 1, ev.start_mark.column + 1, AF_YAML_MAX_NODES);
    if (!rc && anchor) {
      if (n_an == cap_an) {
        int c = cap_an ? cap_an * 2 : 16;
        anchor_size *na = realloc(an, (size_t)c * sizeof *na);
        if (!na) rc = af_err(AF_ERR_NOMEM, "yaml: out of memory");
        if (na) an = na, cap_an = c;
      }
      if (!rc && !(an[n_an].name = strdup(anchor))) rc = af_err(AF_ERR_NOMEM, "yaml: out of memory");
      if (!rc) {
        an[n_an].first = nodes - 1;
        an[n_an].nodes = ev.type == YAML_SCALAR_EVENT ? 1 : -1;
        if (ev.type != YAML_SCALAR_EVENT) open[depth].anchor = n_an;
        n_an++;
      }
    }
    yaml_event_delete(&ev);
  }
  for (int i = 0; i < n_an; i++) free(an[i].name);
  free(an);
  yaml_parser_delete(&ps);
  return rc;
}
