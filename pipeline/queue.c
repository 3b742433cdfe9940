/* Bounded FIFO queues between stage threads.  A full queue blocks its
 * producer (backpressure), so memory stays bounded by the queue capacities
 * and batch sizes whatever the collection size.  Full means `cap` items or,
 * counted in bytes, the queue's budget of tensor bytes: 24 full-resolution
 * 3000x3000 images waiting for preprocess were 730 MB with items alone. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "pipeline/internal.h"

int af_fifo_init(af_fifo *q, int cap, int64_t budget) {
  q->ring = calloc((size_t)cap, sizeof *q->ring);
  if (!q->ring) return af_err(AF_ERR_NOMEM, "queue: out of memory");
  q->cap = cap;
  q->budget = budget;
  q->bytes = q->max_bytes_seen = 0;
  q->head = q->count = q->closed = q->max_seen = 0;
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  return 0;
}

void af_fifo_destroy(af_fifo *q) {
  if (!q->ring) return;
  /* items still queued belong to nobody else: free them */
  for (int i = 0; i < q->count; i++) af_item_free(q->ring[(q->head + i) % q->cap].item);
  free(q->ring);
  q->ring = NULL;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
}

static int64_t item_bytes(const af_item *it) {
  int64_t n = 0;
  for (int i = 0; it && i < it->n_tensors; i++) n += (int64_t)it->tensors[i].bytes;
  return n;
}

void af_fifo_push(af_fifo *q, af_slot s) {
  s.bytes = item_bytes(s.item);
  pthread_mutex_lock(&q->mu);
  while ((q->count == q->cap || (q->budget > 0 && q->count > 0 && q->bytes + s.bytes > q->budget)) &&
         !q->closed)
    pthread_cond_wait(&q->not_full, &q->mu);
  if (q->closed) { /* the run is being abandoned (stop after the grace) */
    pthread_mutex_unlock(&q->mu);
    af_item_free(s.item);
    return;
  }
  q->ring[(q->head + q->count) % q->cap] = s;
  q->count++;
  q->bytes += s.bytes;
  if (q->count > q->max_seen) q->max_seen = q->count;
  if (q->bytes > q->max_bytes_seen) q->max_bytes_seen = q->bytes;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->mu);
}

static void take(af_fifo *q, af_slot *s) {
  *s = q->ring[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  q->bytes -= s->bytes;
  pthread_cond_signal(&q->not_full); /* one producer per queue */
}

int af_fifo_pop(af_fifo *q, af_slot *s) {
  pthread_mutex_lock(&q->mu);
  while (q->count == 0 && !q->closed) pthread_cond_wait(&q->not_empty, &q->mu);
  int got = q->count > 0;
  if (got) take(q, s);
  pthread_mutex_unlock(&q->mu);
  return got;
}

int af_fifo_trypop(af_fifo *q, af_slot *s) {
  pthread_mutex_lock(&q->mu);
  int got = q->count > 0;
  if (got) take(q, s);
  pthread_mutex_unlock(&q->mu);
  return got;
}

int af_fifo_pop_until(af_fifo *q, af_slot *s, double deadline) {
  /* the condition variables wait on CLOCK_REALTIME: the monotonic deadline
   * becomes a realtime one once, here */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double left = deadline - af_now(), at = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + left;
  ts.tv_sec = (time_t)at;
  ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
  pthread_mutex_lock(&q->mu);
  int r = 0;
  while (q->count == 0 && !q->closed && left > 0 && r != ETIMEDOUT)
    r = pthread_cond_timedwait(&q->not_empty, &q->mu, &ts);
  int got = q->count > 0 ? 1 : q->closed ? -1 : 0;
  if (got > 0) take(q, s);
  pthread_mutex_unlock(&q->mu);
  return got;
}

void af_fifo_close(af_fifo *q) {
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  pthread_cond_broadcast(&q->not_empty);
  pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->mu);
}
