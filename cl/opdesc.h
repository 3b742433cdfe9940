/* One description per op, shared by the op tests (tolerance) and
 * `artflow bench ops` (work and traffic): conventions.md "every op is
 * described once".  Shapes are (m, n, k, b) with a meaning per op given in
 * `shape`. */
#ifndef AF_CL_OPDESC_H
#define AF_CL_OPDESC_H

typedef struct af_opdesc {
  const char *name;
  const char *shape; /* what m, n, k, b mean */
  double tolerance;  /* normalised L2 error allowed against the plain-C reference */
  double (*flops)(double m, double n, double k, double b);
  double (*bytes)(double m, double n, double k, double b); /* minimum device traffic */
} af_opdesc;

/* NULL-terminated table; af_opdesc_find returns NULL for an unknown name. */
extern const af_opdesc af_opdescs[];
const af_opdesc *af_opdesc_find(const char *name);

#endif
