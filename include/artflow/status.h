/* Status codes and the first-error message shared by all of artflow.
 *
 * Every function that can fail returns int: 0 (AF_OK) on success or a negative
 * code.  OpenCL codes (-1 .. -72) and CLBlast codes (-1024 .. -2048) pass through
 * unchanged; artflow's own codes live at -3000 and below so they never collide.
 * The message of the first error on a thread is kept until af_error_clear(). */
#ifndef ARTFLOW_STATUS_H
#define ARTFLOW_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum af_status {
  AF_OK = 0,
  AF_ERR_NOMEM = -3001,       /* host allocation failed */
  AF_ERR_IO = -3002,          /* file missing, unreadable, short read/write */
  AF_ERR_FORMAT = -3003,      /* malformed or hostile file contents */
  AF_ERR_INVALID = -3004,     /* invalid argument or API misuse */
  AF_ERR_UNSUPPORTED = -3005, /* valid but not supported (dtype, opcode, ...) */
  AF_ERR_NO_PLATFORM = -3006, /* no OpenCL platform (no ICD installed) */
  AF_ERR_NO_DEVICE = -3007,   /* no device matches the selection */
  AF_ERR_BUILD = -3008,       /* kernel compilation failed (log in message) */
  AF_ERR_DEVICE_MEM = -3009,  /* device allocation failed or too large */
  AF_ERR_RANGE = -3010,       /* value out of range / limit exceeded */
  AF_ERR_NOT_FOUND = -3011,   /* a named thing (tensor, key, stage) is absent */
  AF_ERR_CONFIG = -3012,      /* bad configuration (YAML, flags) */
  AF_ERR_INTERRUPTED = -3013, /* stopped by a signal */
  AF_ERR_NOT_IMPLEMENTED = -3014,
  AF_ERR_MISMATCH = -3015, /* shapes / hyper-parameters disagree */
} af_status;

/* Name of any code: artflow, OpenCL or CLBlast.  Never NULL; static storage. */
const char *af_strerror(int code);

/* Records "fmt ..." as this thread's error message if none is recorded yet and
 * returns code, so callers write `return af_err(AF_ERR_IO, "%s: %s", p, why);`. */
int af_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like af_err but replaces any recorded message (use when the earlier one is
 * superseded, e.g. a retry succeeded and a new error happened). */
int af_err_replace(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's recorded message, or "" when none.  Borrowed. */
const char *af_error_message(void);
/* Code recorded with the message (0 when none). */
int af_error_code(void);
void af_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif
