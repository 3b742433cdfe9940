/* Every hostile fixture in tests/data/torch (listed with the expected message
 * in expected.json) must fail with one clear line naming the file and the
 * cause, either at open or, for storage corruption, at the first read. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "af_test.h"
#include "artflow/status.h"
#include "formats/tensorsrc.h"

/* Opens and reads every tensor; returns the first error. */
static int open_and_read(const char *path) {
  af_tsrc *src = NULL;
  int rc = af_tsrc_open(path, &src);
  for (size_t i = 0; !rc && i < af_tsrc_count(src); i++) {
    const af_tsrc_tensor *t = af_tsrc_get(src, i);
    float *x = malloc((t->numel ? t->numel : 1) * sizeof *x);
    rc = x ? af_tsrc_read_f32(t, x) : AF_ERR_NOMEM;
    free(x);
  }
  af_tsrc_close(src);
  return rc;
}

int main(void) {
  char *text = af_test_slurp(af_test_data("torch/expected.json"), NULL);
  cJSON *j = cJSON_Parse(text);
  const cJSON *h = cJSON_GetObjectItem(j, "hostile"), *it;
  CHECK(cJSON_GetArraySize(h) >= 11);
  cJSON_ArrayForEach(it, h) {
    char path[1024];
    snprintf(path, sizeof path, "%s", af_test_data("torch/"));
    strncat(path, it->string, sizeof path - strlen(path) - 1);
    af_error_clear();
    int rc = open_and_read(path);
    const char *msg = af_error_message();
    printf("  %-26s -> %s\n", it->string, msg);
    CHECK_MSG(rc < 0, "%s: accepted", it->string);
    CHECK_MSG(strstr(msg, it->string) != NULL, "%s: message does not name the file: %s", it->string, msg);
    CHECK_MSG(strstr(msg, it->valuestring) != NULL, "%s: expected '%s' in: %s", it->string, it->valuestring,
              msg);
    CHECK_MSG(!strchr(msg, '\n'), "%s: message is not one line", it->string);
  }
  af_error_clear();
  /* the refused global is reported as unsupported, not as a crash or a format error */
  CHECK(open_and_read(af_test_data("torch/evil_os_system.pth")) == AF_ERR_UNSUPPORTED);
  af_error_clear();
  CHECK(open_and_read(af_test_data("torch/does-not-exist.pth")) == AF_ERR_IO);
  af_error_clear();
  cJSON_Delete(j);
  free(text);
  return af_test_done("test_torch_hostile");
}
