/* Tiny kernels used by `artflow devices --check` and the runtime tests to prove
 * that a device compiles and runs code correctly. */

#ifdef AF_SELFTEST_BREAK
/* Deliberate syntax error: the runtime test checks that the build log is surfaced. */
this is not OpenCL C;
#endif

#ifndef AF_SELFTEST_SCALE
#define AF_SELFTEST_SCALE 1.0f
#endif

/* y[i] = a * x[i] + y[i] * AF_SELFTEST_SCALE, one element per work-item */
__kernel void af_selftest_axpy(const int n, const float a, __global const float *x, __global float *y) {
  int i = get_global_id(0);
  if (i < n) y[i] = a * x[i] + y[i] * AF_SELFTEST_SCALE;
}
