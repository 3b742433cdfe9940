/* Status names and the first-error message rule. */
#include <string.h>

#include "af_test.h"
#include "artflow/status.h"

int main(void) {
  CHECK(!strcmp(af_strerror(0), "success"));
  CHECK(!strcmp(af_strerror(-11), "CL_BUILD_PROGRAM_FAILURE"));
  CHECK(!strcmp(af_strerror(-2045), "CLBlastNoHalfPrecision"));
  CHECK(!strcmp(af_strerror(AF_ERR_DEVICE_MEM), "out of device memory"));
  CHECK(!strcmp(af_strerror(-123456), "unknown error"));
  CHECK(af_error_message()[0] == 0 && af_error_code() == 0);
  CHECK(af_err(AF_ERR_IO, "first %d", 1) == AF_ERR_IO);
  CHECK(af_err(AF_ERR_FORMAT, "second") == AF_ERR_FORMAT);
  CHECK(!strcmp(af_error_message(), "first 1")); /* the first error is kept */
  CHECK(af_error_code() == AF_ERR_IO);
  af_err_replace(AF_ERR_FORMAT, "third");
  CHECK(!strcmp(af_error_message(), "third"));
  af_error_clear();
  CHECK(af_error_message()[0] == 0);
  /* every artflow code has a name */
  for (int c = AF_ERR_MISMATCH; c <= AF_ERR_NOMEM; c++) CHECK(strcmp(af_strerror(c), "unknown error") != 0);
  return af_test_done("test_status");
}
