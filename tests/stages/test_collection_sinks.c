/* The collection sinks through the stage harness, with items built by hand as
 * the describing (llm) and tagging stages leave them: a text output "text",
 * "language", "question", and a label output "tags" (a ranked JSON array of
 * {label, id, uri, logprob, logprob_per_token, p}).
 *  - annotations: the W3C Web Annotation structure (required keys and types),
 *    describing / tagging / classifying, top_k and min_p, the target rule
 *    (IIIF canvas, target_base, file URI), stable ids, the extension
 *    properties and their @context, one IIIF AnnotationPage per canvas; error
 *    items and a bad label output write nothing;
 *  - xmp: the sidecar read back with Exempi (and with exiftool when installed):
 *    dc:description per language, IPTC alt text, dc:subject keywords, the IPTC
 *    AI fields; an existing sidecar's other fields are kept; stem naming. */
#include <cjson/cJSON.h>
#include <exempi/xmp.h>
#include <exempi/xmpconsts.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "af_test.h"
#include "artflow/status.h"
#include "core/iofile.h"
#include "io_harness.h"

extern const af_stage_desc af_stage_annotations, af_stage_xmp;

static char dir[4096];

static const char *tags_json =
    "[{\"label\":\"still life\",\"id\":\"300015638\",\"uri\":\"http://vocab.getty.edu/aat/300015638\","
    "\"logprob\":-0.5,\"logprob_per_token\":-0.25,\"p\":0.6},"
    "{\"label\":\"portrait\",\"id\":\"300015637\",\"uri\":null,\"logprob\":-1.2,\"logprob_per_token\":-1.2,"
    "\"p\":0.3},"
    "{\"label\":\"landscape\",\"logprob\":-3.0,\"logprob_per_token\":-3.0,\"p\":0.1}]";

static af_item *described(const char *id, const char *path, const char *canvas) {
  af_item *it = af_item_new(id, path);
  af_item_set_text(it, "text", "A vase of sunflowers on a table.");
  af_item_set_text(it, "language", "en");
  af_item_set_text(it, "question", "Describe this image in detail.");
  af_item_set_text(it, "tags", tags_json);
  if (canvas) af_item_set_meta(it, "iiif_canvas", canvas);
  return it;
}

static int run_sink(const af_stage_desc *d, const char *const *sets, af_stage_ctx *ctx, af_item **items,
                    int n) {
  void *cfg = io_config(d, sets), *self = NULL;
  int rc = d->create(ctx, cfg, &self);
  if (rc == 0 && d->process(self, ctx, items, n) != AF_FLOW_OK) rc = -1;
  d->destroy(self);
  io_config_free(d, cfg);
  return rc;
}

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_GetObjectItemCaseSensitive(o, k);
}
static const char *s_of(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The Web Annotation Data Model's MUSTs for what we write (sections 3.1-3.2):
 * @context names the W3C context, id is an IRI, type is Annotation, target
 * present; a TextualBody has a value string. */
static int check_anno(const cJSON *a, int with_context) {
  int ok = 1;
  if (with_context) {
    const cJSON *c = get(a, "@context");
    ok &= cJSON_IsArray(c) && cJSON_IsString(c->child) &&
          !strcmp(c->child->valuestring, "http://www.w3.org/ns/anno.jsonld");
    const cJSON *ext = c ? cJSON_GetArrayItem(c, 1) : NULL;
    ok &= s_of(ext, "artflow") && get(ext, "artflow:confidence") != NULL;
  }
  ok &= s_of(a, "id") && !strncmp(s_of(a, "id"), "urn:artflow:annotation:", 23);
  ok &= s_of(a, "type") && !strcmp(s_of(a, "type"), "Annotation");
  ok &= s_of(a, "target") != NULL && s_of(a, "motivation") != NULL && s_of(a, "created") != NULL;
  const cJSON *b = get(a, "body");
  const cJSON *tb = cJSON_IsArray(b) ? b->child : b;
  ok &= cJSON_IsObject(tb) && !strcmp(s_of(tb, "type"), "TextualBody") && s_of(tb, "value") != NULL;
  const cJSON *cr = get(a, "creator"), *ge = get(a, "generator");
  ok &= cJSON_IsObject(cr) && !strcmp(s_of(cr, "type"), "Software") && s_of(cr, "name");
  ok &= cJSON_IsObject(ge) && !strcmp(s_of(ge, "type"), "Software") &&
        !strncmp(s_of(ge, "name"), "artflow ", 8);
  return ok;
}

static void test_annotations(void) {
  char out[4200], pages[4200], s0[4300], s1[4300];
  snprintf(out, sizeof out, "%s/anno.jsonl", dir);
  snprintf(pages, sizeof pages, "%s/pages", dir);
  snprintf(s0, sizeof s0, "path=%s", out);
  snprintf(s1, sizeof s1, "pages=%s", pages);
  const char *sets[] = {s0, s1, "tagging=tags", "top_k=2", "min_p=0.2", "fsync=none", NULL};
  af_stage_ctx ctx = io_ctx("anno", NULL, 0);
  af_item *a = described("c1", NULL, "https://example.org/iiif/book1/canvas/p1");
  af_item *b = described("local.jpg", "/data/img/a b.jpg", NULL);
  af_item *bad = af_item_new("bad.jpg", "/data/bad.jpg");
  af_item_fail(bad, "decode", "not a JPEG");
  af_item *junk = af_item_new("junk.jpg", "/data/junk.jpg");
  af_item_set_text(junk, "tags", "{\"not\": \"a list\"}");
  af_item *items[] = {a, b, bad, junk};
  CHECK_OK(run_sink(&af_stage_annotations, sets, &ctx, items, 4));
  char *text = af_test_slurp(out, NULL);
  CHECK(text != NULL);
  int n = 0, describing = 0, tagging = 0, good = 1;
  for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL, n++) {
    nl = strchr(line, '\n');
    cJSON *o = cJSON_ParseWithLength(line, nl ? (size_t)(nl - line) : strlen(line));
    good &= o && check_anno(o, 1);
    const char *m = s_of(o, "motivation"), *t = s_of(o, "target");
    if (m && !strcmp(m, "describing")) {
      describing++;
      const cJSON *body = get(o, "body");
      CHECK(!strcmp(s_of(body, "language"), "en") && !strcmp(s_of(body, "format"), "text/plain"));
      CHECK(!strcmp(s_of(body, "value"), "A vase of sunflowers on a table."));
    }
    if (m && !strcmp(m, "tagging")) {
      tagging++;
      const cJSON *body = get(o, "body");
      const cJSON *first = cJSON_IsArray(body) ? body->child : body;
      const char *label = s_of(first, "value");
      CHECK(label && (!strcmp(label, "still life") || !strcmp(label, "portrait")));
      if (label && !strcmp(label, "still life")) { /* the authority's term as an identifying body */
        CHECK(cJSON_IsArray(body) &&
              !strcmp(s_of(body->child->next, "id"), "http://vocab.getty.edu/aat/300015638"));
        CHECK(!strcmp(s_of(first, "artflow:termId"), "300015638"));
        CHECK(get(o, "artflow:confidence")->valuedouble == 0.6 &&
              get(o, "artflow:logprob")->valuedouble == -0.5);
      }
    }
    CHECK(t && (!strcmp(t, "https://example.org/iiif/book1/canvas/p1") ||
                !strcmp(t, "file:///data/img/a%20b.jpg")));
    cJSON_Delete(o);
  }
  CHECK_MSG(good, "an annotation lacks a required key: %s", text ? text : "");
  /* 2 items x (1 describing + 2 tags: landscape is below min_p); none for the
   * error item or the bad label output */
  CHECK_MSG(n == 6 && describing == 2 && tagging == 4, "%d lines, %d describing, %d tagging", n, describing,
            tagging);
  CHECK(text && !strstr(text, "junk.jpg") && !strstr(text, "bad.jpg"));
  /* the same inputs give the same ids */
  char *again = NULL;
  CHECK_OK(run_sink(&af_stage_annotations, sets, &ctx, items, 4));
  again = af_test_slurp(out, NULL);
  cJSON *x = text ? cJSON_ParseWithLength(text, strcspn(text, "\n")) : NULL;
  cJSON *y = again ? cJSON_ParseWithLength(again, strcspn(again, "\n")) : NULL;
  CHECK(x && y && !strcmp(s_of(x, "id"), s_of(y, "id")));
  cJSON_Delete(x), cJSON_Delete(y);
  free(again);
  free(text);
  /* one AnnotationPage per canvas, named after it */
  char pf[4400];
  snprintf(pf, sizeof pf, "%s/https___example.org_iiif_book1_canvas_p1-", pages);
  char cmd[4600];
  snprintf(cmd, sizeof cmd, "ls %s/ | grep -c '^https___example.org_iiif_book1_canvas_p1-[0-9a-f]*\\.json$'",
           pages);
  FILE *p = popen(cmd, "r");
  int count = 0;
  CHECK(p && fscanf(p, "%d", &count) == 1 && count == 1);
  if (p) pclose(p);
  snprintf(cmd, sizeof cmd, "cat %s/https___example.org_iiif_book1_canvas_p1-*.json", pages);
  p = popen(cmd, "r");
  af_buf pb = {0};
  char chunk[4096];
  size_t got;
  while (p && (got = fread(chunk, 1, sizeof chunk, p)) > 0) af_buf_put(&pb, chunk, got);
  if (p) pclose(p);
  cJSON *page = pb.p ? cJSON_Parse(pb.p) : NULL;
  CHECK_MSG(page != NULL, "no page: %s", pf);
  if (page) {
    const cJSON *c = get(page, "@context");
    CHECK(cJSON_IsArray(c) && !strcmp(cJSON_GetArrayItem(c, cJSON_GetArraySize(c) - 1)->valuestring,
                                      "http://iiif.io/api/presentation/3/context.json"));
    CHECK(!strcmp(s_of(page, "type"), "AnnotationPage") && s_of(page, "id"));
    const cJSON *its = get(page, "items");
    CHECK(cJSON_GetArraySize(its) == 3);
    for (const cJSON *e = its ? its->child : NULL; e; e = e->next)
      CHECK(check_anno(e, 0) && !get(e, "@context"));
  }
  cJSON_Delete(page);
  af_buf_free(&pb);
  /* target_base, and a sink with neither path nor pages is refused */
  const char *tb[] = {s0, "target_base=https://museum.example/objects/", "fsync=none", NULL};
  af_item *only[] = {b};
  CHECK_OK(run_sink(&af_stage_annotations, tb, &ctx, only, 1));
  text = af_test_slurp(out, NULL);
  CHECK(text && strstr(text, "\"target\":\"https://museum.example/objects/local.jpg\""));
  free(text);
  const char *none[] = {"tagging=tags", NULL};
  void *cfg = io_config(&af_stage_annotations, none), *self = NULL;
  CHECK(af_stage_annotations.create(&ctx, cfg, &self) == AF_ERR_CONFIG);
  af_error_clear();
  af_stage_annotations.destroy(self);
  io_config_free(&af_stage_annotations, cfg);
  af_item_free(a);
  af_item_free(b);
  af_item_free(bad);
  af_item_free(junk);
}

/* dc:description etc. read back with Exempi */
static char *alt(XmpPtr x, const char *ns, const char *prop, const char *lang) {
  XmpStringPtr v = xmp_string_new(), actual = xmp_string_new();
  char *r =
      xmp_get_localized_text(x, ns, prop, "", lang, actual, v, NULL) ? strdup(xmp_string_cstr(v)) : NULL;
  xmp_string_free(v), xmp_string_free(actual);
  return r;
}

static char *prop(XmpPtr x, const char *ns, const char *name) {
  XmpStringPtr v = xmp_string_new();
  char *r = xmp_get_property(x, ns, name, v, NULL) ? strdup(xmp_string_cstr(v)) : NULL;
  xmp_string_free(v);
  return r;
}

static XmpPtr read_xmp(const char *file) {
  size_t n = 0;
  char *t = af_test_slurp(file, &n);
  XmpPtr x = t ? xmp_new(t, n) : NULL;
  free(t);
  return x;
}

#define NS_EXT "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"

static void test_xmp(void) {
  char img[4200], side[4300], stem[4300];
  snprintf(img, sizeof img, "%s/sunflowers.jpg", dir);
  snprintf(side, sizeof side, "%s.xmp", img);
  snprintf(stem, sizeof stem, "%s/sunflowers.xmp", dir);
  FILE *fp = fopen(img, "wb");
  fputs("not decoded by the sink", fp);
  fclose(fp);
  /* a curator's sidecar already there: its fields stay */
  fp = fopen(side, "wb");
  fputs(
      "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF "
      "xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">"
      "<rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">"
      "<dc:rights><rdf:Alt><rdf:li xml:lang=\"x-default\">CC0</rdf:li></rdf:Alt></dc:rights>"
      "<dc:subject><rdf:Bag><rdf:li>portrait</rdf:li></rdf:Bag></dc:subject>"
      "</rdf:Description></rdf:RDF></x:xmpmeta>",
      fp);
  fclose(fp);
  af_stage_ctx ctx = io_ctx("xmp", NULL, 0);
  af_item *it = described("sunflowers.jpg", img, NULL);
  af_item_set_text(it, "language", "fr");
  af_item_set_text(it, "alt", "Sunflowers in a vase.");
  af_item *items[] = {it};
  const char *sets[] = {"subjects=tags", "min_p=0.2", "alt_text=alt", NULL};
  CHECK_OK(run_sink(&af_stage_xmp, sets, &ctx, items, 1));
  CHECK(xmp_init());
  XmpPtr x = read_xmp(side);
  CHECK_MSG(x != NULL, "%s is not XMP", side);
  if (x) {
    char *d = alt(x, NS_DC, "description", "fr"), *a = alt(x, NS_IPTC4XMP, "AltTextAccessibility", "fr");
    char *rights = alt(x, NS_DC, "rights", "x-default");
    CHECK(d && !strcmp(d, "A vase of sunflowers on a table."));
    CHECK(a && !strcmp(a, "Sunflowers in a vase."));
    CHECK(rights && !strcmp(rights, "CC0"));
    free(d), free(a), free(rights);
    XmpStringPtr v = xmp_string_new();
    int ns = 0, still = 0, portrait = 0;
    for (int32_t i = 1; xmp_get_array_item(x, NS_DC, "subject", i, v, NULL); i++, ns++) {
      still += !strcmp(xmp_string_cstr(v), "still life");
      portrait += !strcmp(xmp_string_cstr(v), "portrait");
    }
    xmp_string_free(v);
    CHECK_MSG(ns == 2 && still == 1 && portrait == 1, "%d subjects", ns); /* no repeat, landscape < min_p */
    char *sys = prop(x, NS_EXT, "AISystemUsed"), *q = prop(x, NS_EXT, "AIPromptInformation");
    char *tool = prop(x, NS_XAP, "CreatorTool");
    CHECK(sys && !strncmp(sys, "artflow ", 8));
    CHECK(q && !strcmp(q, "Describe this image in detail."));
    CHECK(tool && !strncmp(tool, "artflow ", 8));
    CHECK(!xmp_has_property(x, NS_EXT, "DigitalSourceType"));
    free(sys), free(q), free(tool);
    xmp_free(x);
  }
  /* exiftool, an independent reader, where installed */
  if (system("exiftool -ver > /dev/null 2>&1") == 0) {
    char cmd[4500];
    snprintf(cmd, sizeof cmd,
             "exiftool -j -lang fr -XMP-dc:Description -XMP-dc:Subject -XMP-iptcCore:all '%s'", side);
    FILE *p = popen(cmd, "r");
    af_buf b = {0};
    char chunk[4096];
    size_t got;
    while (p && (got = fread(chunk, 1, sizeof chunk, p)) > 0) af_buf_put(&b, chunk, got);
    if (p) pclose(p);
    cJSON *j = b.p ? cJSON_Parse(b.p) : NULL;
    const cJSON *o = cJSON_IsArray(j) ? j->child : NULL;
    CHECK_MSG(o != NULL, "exiftool said: %s", b.p ? b.p : "");
    const cJSON *desc = get(o, "Description"), *subj = get(o, "Subject"),
                *altt = get(o, "AltTextAccessibility");
    CHECK(cJSON_IsString(desc) && !strcmp(desc->valuestring, "A vase of sunflowers on a table."));
    CHECK(cJSON_IsArray(subj) && cJSON_GetArraySize(subj) == 2);
    CHECK(cJSON_IsString(altt) && !strcmp(altt->valuestring, "Sunflowers in a vase."));
    cJSON_Delete(j);
    af_buf_free(&b);
  } else {
    printf("exiftool not installed: the sidecar was read back with Exempi only\n");
  }
  /* stem naming: photo.xmp */
  const char *st[] = {"naming=stem", "hash_model=false", NULL};
  CHECK_OK(run_sink(&af_stage_xmp, st, &ctx, items, 1));
  CHECK(access(stem, F_OK) == 0);
  xmp_terminate();
  af_item_free(it);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s", af_test_tmpdir());
  test_annotations();
  test_xmp();
  return af_test_done("test_collection_sinks");
}
