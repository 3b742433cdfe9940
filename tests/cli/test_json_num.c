/* cli/json_out.c: numbers of the --json outputs keep the text output's
 * precision and become null when NaN or infinite (a time of 0 gives inf
 * rates, a failed step NaN), which printf would write as `nan` / `inf`,
 * text no JSON parser accepts; the whole object parses back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "af_test.h"
#include "cli/json_out.h"

int main(void) {
  cJSON *o = cJSON_CreateObject();
  af_json_num(o, "nan", NAN, 2);
  af_json_num(o, "inf", 1.0 / 0.0, 2);
  af_json_num(o, "ninf", -INFINITY, 3);
  af_json_num(o, "rate", 1 / 0.0078, 4);
  af_json_num(o, "two", 12.345678, 2);
  af_json_num(o, "whole", 12.0, 2);
  af_json_num(o, "tiny", 0.0001234, 3);
  af_json_num(o, "huge", 1e300, 9); /* v * 10^9 overflows: v kept */
  cJSON *a = cJSON_AddArrayToObject(o, "arr");
  af_json_push_num(a, 0.5, 1);
  af_json_push_num(a, NAN, 1);
  char *s = cJSON_PrintUnformatted(o);
  CHECK_MSG(
      s && !strcmp(s,
                   "{\"nan\":null,\"inf\":null,\"ninf\":null,\"rate\":128.2051,\"two\":12.35,\"whole\":12,"
                   "\"tiny\":0,\"huge\":1e+300,\"arr\":[0.5,null]}"),
      "%s", s ? s : "(null)");
  cJSON *back = s ? cJSON_Parse(s) : NULL;
  CHECK(back && cJSON_IsNull(cJSON_GetObjectItem(back, "inf")) &&
        cJSON_GetObjectItem(back, "two")->valuedouble == 12.35);
  cJSON_Delete(back);
  free(s);
  CHECK(af_json_print(NULL) == 1); /* nothing to print: an error, not a crash */
  CHECK(af_json_print(o) == 0);    /* prints one line and frees o */
  return af_test_done("test_json_num");
}
