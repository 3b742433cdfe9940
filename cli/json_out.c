/* JSON on stdout for the command line (see json_out.h). */
#include "cli/json_out.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

static cJSON *number(double v, int decimals) {
  if (!isfinite(v)) return cJSON_CreateNull();
  if (decimals < 0) decimals = 0;
  if (decimals > 9) decimals = 9;
  double scale = pow(10, decimals), r = round(v * scale) / scale;
  /* cJSON prints the shortest of %.15g / %.17g that reads back the same
   * double: 0.1234 stays "0.1234"; a value past 2^53 / scale keeps v */
  return cJSON_CreateNumber(isfinite(r) ? r : v);
}

void af_json_num(cJSON *o, const char *key, double v, int decimals) {
  cJSON_AddItemToObject(o, key, number(v, decimals));
}

void af_json_push_num(cJSON *arr, double v, int decimals) {
  cJSON_AddItemToArray(arr, number(v, decimals));
}

int af_json_print(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!s) {
    fprintf(stderr, "artflow: out of memory printing JSON\n");
    return 1;
  }
  puts(s);
  free(s);
  fflush(stdout);
  return 0;
}
