/* Status names (artflow, OpenCL, CLBlast) and the per-thread first-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <CL/cl.h>

#include "artflow/status.h"

static _Thread_local char err_msg[2048];
static _Thread_local int err_code;

#define CASE(x) \
  case x:       \
    return #x;

static const char *cl_name(int code) {
  switch (code) {
    // clang-format off
    CASE(CL_DEVICE_NOT_FOUND) CASE(CL_DEVICE_NOT_AVAILABLE) CASE(CL_COMPILER_NOT_AVAILABLE)
    CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE) CASE(CL_OUT_OF_RESOURCES) CASE(CL_OUT_OF_HOST_MEMORY)
    CASE(CL_PROFILING_INFO_NOT_AVAILABLE) CASE(CL_MEM_COPY_OVERLAP) CASE(CL_IMAGE_FORMAT_MISMATCH)
    CASE(CL_IMAGE_FORMAT_NOT_SUPPORTED) CASE(CL_BUILD_PROGRAM_FAILURE) CASE(CL_MAP_FAILURE)
    CASE(CL_MISALIGNED_SUB_BUFFER_OFFSET) CASE(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    CASE(CL_COMPILE_PROGRAM_FAILURE) CASE(CL_LINKER_NOT_AVAILABLE) CASE(CL_LINK_PROGRAM_FAILURE)
    CASE(CL_DEVICE_PARTITION_FAILED) CASE(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    CASE(CL_INVALID_VALUE) CASE(CL_INVALID_DEVICE_TYPE) CASE(CL_INVALID_PLATFORM)
    CASE(CL_INVALID_DEVICE) CASE(CL_INVALID_CONTEXT) CASE(CL_INVALID_QUEUE_PROPERTIES)
    CASE(CL_INVALID_COMMAND_QUEUE) CASE(CL_INVALID_HOST_PTR) CASE(CL_INVALID_MEM_OBJECT)
    CASE(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) CASE(CL_INVALID_IMAGE_SIZE) CASE(CL_INVALID_SAMPLER)
    CASE(CL_INVALID_BINARY) CASE(CL_INVALID_BUILD_OPTIONS) CASE(CL_INVALID_PROGRAM)
    CASE(CL_INVALID_PROGRAM_EXECUTABLE) CASE(CL_INVALID_KERNEL_NAME)
    CASE(CL_INVALID_KERNEL_DEFINITION) CASE(CL_INVALID_KERNEL) CASE(CL_INVALID_ARG_INDEX)
    CASE(CL_INVALID_ARG_VALUE) CASE(CL_INVALID_ARG_SIZE) CASE(CL_INVALID_KERNEL_ARGS)
    CASE(CL_INVALID_WORK_DIMENSION) CASE(CL_INVALID_WORK_GROUP_SIZE)
    CASE(CL_INVALID_WORK_ITEM_SIZE) CASE(CL_INVALID_GLOBAL_OFFSET) CASE(CL_INVALID_EVENT_WAIT_LIST)
    CASE(CL_INVALID_EVENT) CASE(CL_INVALID_OPERATION) CASE(CL_INVALID_GL_OBJECT)
    CASE(CL_INVALID_BUFFER_SIZE) CASE(CL_INVALID_MIP_LEVEL) CASE(CL_INVALID_GLOBAL_WORK_SIZE)
    CASE(CL_INVALID_PROPERTY) CASE(CL_INVALID_IMAGE_DESCRIPTOR) CASE(CL_INVALID_COMPILER_OPTIONS)
    CASE(CL_INVALID_LINKER_OPTIONS) CASE(CL_INVALID_DEVICE_PARTITION_COUNT)
        // clang-format on
        case -1001 : return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
      return NULL;
  }
}

/* CLBlast's StatusCode values that are not OpenCL codes (clblast_c.h). */
static const char *clblast_name(int code) {
  switch (code) {
    case -1024:
      return "CLBlastNotImplemented";
    case -1022:
      return "CLBlastInvalidMatrixA";
    case -1021:
      return "CLBlastInvalidMatrixB";
    case -1020:
      return "CLBlastInvalidMatrixC";
    case -1019:
      return "CLBlastInvalidVectorX";
    case -1018:
      return "CLBlastInvalidVectorY";
    case -1017:
      return "CLBlastInvalidDimension";
    case -1016:
      return "CLBlastInvalidLeadDimA";
    case -1015:
      return "CLBlastInvalidLeadDimB";
    case -1014:
      return "CLBlastInvalidLeadDimC";
    case -1013:
      return "CLBlastInvalidIncrementX";
    case -1012:
      return "CLBlastInvalidIncrementY";
    case -1011:
      return "CLBlastInsufficientMemoryA";
    case -1010:
      return "CLBlastInsufficientMemoryB";
    case -1009:
      return "CLBlastInsufficientMemoryC";
    case -1008:
      return "CLBlastInsufficientMemoryX";
    case -1007:
      return "CLBlastInsufficientMemoryY";
    case -2050:
      return "CLBlastInsufficientMemoryTemp";
    case -2049:
      return "CLBlastInvalidBatchCount";
    case -2048:
      return "CLBlastInvalidOverrideKernel";
    case -2047:
      return "CLBlastMissingOverrideParameter";
    case -2046:
      return "CLBlastInvalidLocalMemUsage";
    case -2045:
      return "CLBlastNoHalfPrecision";
    case -2044:
      return "CLBlastNoDoublePrecision";
    case -2043:
      return "CLBlastInvalidVectorScalar";
    case -2042:
      return "CLBlastInsufficientMemoryScalar";
    case -2041:
      return "CLBlastDatabaseError";
    case -2040:
      return "CLBlastUnknownError";
    case -2039:
      return "CLBlastUnexpectedError";
    default:
      return NULL;
  }
}

const char *af_strerror(int code) {
  switch (code) {
    case AF_OK:
      return "success";
    case AF_ERR_NOMEM:
      return "out of host memory";
    case AF_ERR_IO:
      return "I/O error";
    case AF_ERR_FORMAT:
      return "malformed file";
    case AF_ERR_INVALID:
      return "invalid argument";
    case AF_ERR_UNSUPPORTED:
      return "unsupported";
    case AF_ERR_NO_PLATFORM:
      return "no OpenCL platform";
    case AF_ERR_NO_DEVICE:
      return "no OpenCL device";
    case AF_ERR_BUILD:
      return "kernel build failed";
    case AF_ERR_DEVICE_MEM:
      return "out of device memory";
    case AF_ERR_RANGE:
      return "value out of range";
    case AF_ERR_NOT_FOUND:
      return "not found";
    case AF_ERR_CONFIG:
      return "configuration error";
    case AF_ERR_INTERRUPTED:
      return "interrupted";
    case AF_ERR_NOT_IMPLEMENTED:
      return "not implemented";
    case AF_ERR_MISMATCH:
      return "mismatch";
    default:
      break;
  }
  const char *s = cl_name(code);
  if (!s) s = clblast_name(code);
  return s ? s : "unknown error";
}

static int set_msg(int replace, int code, const char *fmt, va_list ap) {
  if (replace || err_msg[0] == 0) {
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    err_code = code;
  }
  return code;
}

int af_err(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_msg(0, code, fmt, ap);
  va_end(ap);
  return code;
}

int af_err_replace(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_msg(1, code, fmt, ap);
  va_end(ap);
  return code;
}

const char *af_error_message(void) {
  return err_msg;
}
int af_error_code(void) {
  return err_code;
}
void af_error_clear(void) {
  err_msg[0] = 0;
  err_code = 0;
}
