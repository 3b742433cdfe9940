/* UTF-8 checks for the JSON writers: cJSON copies bytes as they are, so a
 * file name or text that is not valid UTF-8 would make an invalid JSON line.
 * The rule the sinks follow (docs/pipeline-io.md, "Text that is not UTF-8"):
 * the text field holds the bytes decoded with each invalid byte replaced by
 * U+FFFD, and a `<field>_bytes` field holds every byte percent-encoded where
 * it is not printable ASCII, so the exact name can be recovered. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/iofile.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the byte at s
 * does not start one (overlong forms, surrogates, > U+10FFFF refused). */
static int seq_len(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (!n) return 0;
  for (int i = 1; i < n; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
  if (c == 0xED && s[1] > 0x9F) return 0; /* surrogates */
  if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
  if (c == 0xF4 && s[1] > 0x8F) return 0; /* > U+10FFFF */
  return n;
}

int af_utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n = seq_len(p);
    if (!n) return 0;
    p += n;
  }
  return 1;
}

char *af_utf8_lossy(const char *s) {
  af_buf b = {0};
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n = seq_len(p);
    if (n) {
      af_buf_put(&b, (const char *)p, (size_t)n);
      p += n;
    } else {
      af_buf_put(&b, "\xEF\xBF\xBD", 3); /* U+FFFD REPLACEMENT CHARACTER */
      p++;
    }
  }
  if (!b.p) af_buf_put(&b, "", 0);
  if (b.oom) {
    af_buf_free(&b);
    return NULL;
  }
  return b.p;
}

void af_bytes_pct(af_buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p >= 0x20 && *p < 0x7F && *p != '%') {
      af_buf_put(b, (const char *)p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      af_buf_put(b, e, 3);
    }
  }
}

/* Adds key: text as a JSON string, valid UTF-8 whatever the bytes (U+FFFD for
 * a bad byte).  With bytes_key, a text that was not valid also gets its exact
 * bytes percent-encoded under bytes_key. */
void af_json_add_text(cJSON *o, const char *key, const char *text, const char *bytes_key) {
  if (af_utf8_valid(key) && af_utf8_valid(text)) {
    cJSON_AddStringToObject(o, key, text);
    return;
  }
  char *k = af_utf8_lossy(key), *t = af_utf8_lossy(text);
  if (k && t) cJSON_AddStringToObject(o, k, t);
  free(k), free(t);
  if (bytes_key && !af_utf8_valid(text)) {
    af_buf b = {0};
    af_bytes_pct(&b, text);
    if (!b.oom && b.p) cJSON_AddStringToObject(o, bytes_key, b.p);
    af_buf_free(&b);
  }
}
