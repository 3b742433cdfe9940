/* JSON on stdout for the command line's --json flags: every object is built
 * with cJSON and printed by it, so strings are escaped, text that is not
 * UTF-8 follows the records' rule (af_json_add_text, core/iofile.h) and a
 * measurement that is NaN or infinite (a time of 0, a failed step) is
 * written as null, never as `nan` or `inf`, which no JSON parser accepts. */
#ifndef AF_CLI_JSON_OUT_H
#define AF_CLI_JSON_OUT_H

struct cJSON;

/* key: v rounded to `decimals` places (the precision the command's text
 * output shows; 0..9), or null when v is NaN or infinite. */
void af_json_num(struct cJSON *o, const char *key, double v, int decimals);
/* The same for an array element. */
void af_json_push_num(struct cJSON *arr, double v, int decimals);
/* Prints o on one line and a newline on stdout, then frees it.  Returns 0,
 * or 1 when o is NULL or cannot be printed (out of memory; one line on
 * stderr). */
int af_json_print(struct cJSON *o);

#endif
