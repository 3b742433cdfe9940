/* ARTFLOW_PROFILE=1: per-kernel device time, accumulated from event profiling
 * info and printed when the device is closed.  Profiling waits on each event,
 * so it serialises the queue: it is a diagnostic mode, not for benchmarks. */
#include <stdlib.h>
#include <string.h>

#include "cl/runtime_internal.h"

void af_queue_profile_event(af_queue *q, cl_event ev, const char *label) {
  if (!ev) return;
  af_cl *cl = q->cl;
  cl_ulong t0 = 0, t1 = 0;
  if (cl->profiling && clWaitForEvents(1, &ev) == CL_SUCCESS &&
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS) {
    pthread_mutex_lock(&cl->lock);
    struct af_prof_entry *e = NULL;
    for (int i = 0; i < cl->nprof; i++)
      if (!strcmp(cl->prof[i].label, label)) e = &cl->prof[i];
    if (!e && cl->nprof == cl->capprof) {
      int cap = cl->capprof ? cl->capprof * 2 : 32;
      struct af_prof_entry *p = realloc(cl->prof, cap * sizeof *p);
      if (p) {
        cl->prof = p;
        cl->capprof = cap;
      }
    }
    if (!e && cl->nprof < cl->capprof) {
      e = &cl->prof[cl->nprof++];
      memset(e, 0, sizeof *e);
      snprintf(e->label, sizeof e->label, "%s", label);
    }
    if (e) {
      e->total_ms += (t1 - t0) * 1e-6;
      e->count++;
    }
    pthread_mutex_unlock(&cl->lock);
  }
  clReleaseEvent(ev);
}

static int by_total(const void *a, const void *b) {
  double x = ((const struct af_prof_entry *)a)->total_ms, y = ((const struct af_prof_entry *)b)->total_ms;
  return (x < y) - (x > y);
}

void af_cl_profile_print(af_cl *cl, FILE *f) {
  qsort(cl->prof, cl->nprof, sizeof *cl->prof, by_total);
  double all = 0;
  for (int i = 0; i < cl->nprof; i++) all += cl->prof[i].total_ms;
  fprintf(f, "ARTFLOW_PROFILE: device time per kernel on %s\n", cl->info.name);
  fprintf(f, "  %-32s %10s %8s %10s %6s\n", "kernel", "total ms", "calls", "ms/call", "%");
  for (int i = 0; i < cl->nprof; i++) {
    struct af_prof_entry *e = &cl->prof[i];
    fprintf(f, "  %-32s %10.2f %8ld %10.4f %5.1f%%\n", e->label, e->total_ms, e->count,
            e->total_ms / e->count, all > 0 ? 100.0 * e->total_ms / all : 0.0);
  }
  fprintf(f, "  %-32s %10.2f\n", "all", all);
}
