/* A zip-bomb checkpoint under a memory limit (issue 21): eight deflated
 * storages of 32 MiB of zeros each (under 1 MiB of file) are read tensor by
 * tensor, as `artflow convert` does, in a child whose address space is
 * limited to what it uses plus 128 MiB.  Inflating every storage at open
 * and keeping it (what a 45 MB .pth turned into 20 GB) needs 256 MiB and
 * fails; inflating one storage at a time, only as far as its views reach,
 * fits.  Also: a view of the first 16 floats of a 32 MiB storage keeps 64
 * bytes, and a deflated storage whose size disagrees with what the pickle
 * declares is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "af_test.h"
#include "core/iofile.h"
#include "formats/tensorsrc.h"

#define NST 8
#define NUMEL (8u << 20) /* floats per storage: 32 MiB */

static void pk_str(af_buf *b, const char *s) {
  char h[2] = {(char)0x8c, (char)strlen(s)};
  af_buf_put(b, h, 2);
  af_buf_puts(b, s);
}

static void pk_int(af_buf *b, uint32_t v) {
  char h[5] = {'J', (char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24)};
  af_buf_put(b, h, 5);
}

/* {'w0': _rebuild_tensor_v2(storage '0' of `numel` floats, 0, (view,), (1,), False, OrderedDict()), ...} */
static void tensor_dict(af_buf *b, int n, uint32_t numel, uint32_t view) {
  af_buf_put(b, "\x80\x02}(", 4);
  for (int i = 0; i < n; i++) {
    char key[8];
    snprintf(key, sizeof key, "w%d", i);
    pk_str(b, key);
    af_buf_puts(b, "ctorch._utils\n_rebuild_tensor_v2\n((");
    pk_str(b, "storage");
    af_buf_puts(b, "ctorch\nFloatStorage\n");
    snprintf(key, sizeof key, "%d", i);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    af_buf_puts(b, "tQ");
    pk_int(b, 0);
    af_buf_puts(b, "(");
    pk_int(b, view);
    af_buf_puts(b, "t(");
    pk_int(b, 1);
    af_buf_puts(b,
                "t\x89"
                "ccollections\nOrderedDict\n)RtR");
  }
  af_buf_puts(b, "u.");
}

static void le(af_buf *b, uint64_t v, int n) {
  char c[8];
  for (int i = 0; i < n; i++) c[i] = (char)(v >> (8 * i));
  af_buf_put(b, c, (size_t)n);
}

typedef struct entry {
  const char *name;
  const void *data; /* stored bytes, or NULL: `usize` zeros, deflated */
  uint64_t usize;
} entry;

/* A zip with the entries; deflated ones are made with zlib here. */
static void write_zip(const char *path, const entry *e, int n) {
  af_buf z = {0}, cd = {0};
  for (int i = 0; i < n; i++) {
    const uint8_t *body = e[i].data;
    uint64_t csize = e[i].usize;
    uint8_t *packed = NULL;
    uLong crc = crc32(0, Z_NULL, 0);
    if (!body) {
      uint8_t *zeros = calloc(1, (size_t)e[i].usize);
      crc = crc32(crc, zeros, (uInt)e[i].usize);
      z_stream s = {0};
      CHECK(deflateInit2(&s, 1, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK);
      size_t cap = deflateBound(&s, (uLong)e[i].usize);
      packed = malloc(cap);
      s.next_in = zeros, s.avail_in = (uInt)e[i].usize, s.next_out = packed, s.avail_out = (uInt)cap;
      CHECK(deflate(&s, Z_FINISH) == Z_STREAM_END);
      csize = s.total_out;
      deflateEnd(&s);
      free(zeros);
      body = packed;
    } else {
      crc = crc32(crc, body, (uInt)e[i].usize);
    }
    uint64_t off = z.n;
    size_t nl = strlen(e[i].name);
    int method = e[i].data ? 0 : 8;
    le(&z, 0x04034b50u, 4), le(&z, 20, 2), le(&z, 0, 2), le(&z, method, 2), le(&z, 0, 4);
    le(&z, crc, 4), le(&z, csize, 4), le(&z, e[i].usize, 4), le(&z, nl, 2), le(&z, 0, 2);
    af_buf_put(&z, e[i].name, nl);
    af_buf_put(&z, (const char *)body, (size_t)csize);
    le(&cd, 0x02014b50u, 4), le(&cd, 20, 2), le(&cd, 20, 2), le(&cd, 0, 2), le(&cd, method, 2), le(&cd, 0, 4);
    le(&cd, crc, 4), le(&cd, csize, 4), le(&cd, e[i].usize, 4), le(&cd, nl, 2), le(&cd, 0, 2), le(&cd, 0, 2);
    le(&cd, 0, 2), le(&cd, 0, 2), le(&cd, 0, 4), le(&cd, off, 4);
    af_buf_put(&cd, e[i].name, nl);
    free(packed);
  }
  uint64_t cd_off = z.n;
  af_buf_put(&z, cd.p, cd.n);
  le(&z, 0x06054b50u, 4), le(&z, 0, 2), le(&z, 0, 2), le(&z, n, 2), le(&z, n, 2), le(&z, cd.n, 4);
  le(&z, cd_off, 4), le(&z, 0, 2);
  FILE *f = fopen(path, "wb");
  CHECK(f && fwrite(z.p, 1, z.n, f) == z.n);
  if (f) fclose(f);
  af_buf_free(&z);
  af_buf_free(&cd);
}

static long vm_size_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmSize:", 7)) kib = atol(line + 7);
  if (f) fclose(f);
  return kib;
}

/* Reads every tensor in 4 MiB row blocks; 0, or the first error. */
static int read_all(const char *path, double *sum) {
  af_tsrc *src = NULL;
  int rc = af_tsrc_open(path, &src);
  float *buf = malloc(sizeof(float) << 20);
  *sum = 0;
  for (size_t i = 0; !rc && i < af_tsrc_count(src); i++) {
    const af_tsrc_tensor *t = af_tsrc_get(src, i);
    for (int64_t r = 0; !rc && r < t->shape[0]; r += 1 << 20) {
      int64_t k = t->shape[0] - r < (1 << 20) ? t->shape[0] - r : (1 << 20);
      rc = af_tsrc_read_rows_f32(t, r, k, buf);
      for (int64_t j = 0; !rc && j < k; j += 4096) *sum += buf[j];
    }
  }
  free(buf);
  af_tsrc_close(src);
  return rc;
}

int main(void) {
  const char *dir = af_test_tmpdir();
  char bomb[1024], view[1024], liar[1024];
  snprintf(bomb, sizeof bomb, "%s/bomb_many.pth", dir);
  snprintf(view, sizeof view, "%s/small_view.pth", dir);
  snprintf(liar, sizeof liar, "%s/liar.pth", dir);
  af_buf pk = {0};
  tensor_dict(&pk, NST, NUMEL, NUMEL);
  entry e[NST + 2] = {{"archive/data.pkl", pk.p, pk.n}, {"archive/version", "3\n", 2}};
  static char names[NST][32];
  for (int i = 0; i < NST; i++) {
    snprintf(names[i], sizeof names[i], "archive/data/%d", i);
    e[2 + i] = (entry){names[i], NULL, (uint64_t)NUMEL * 4};
  }
  write_zip(bomb, e, NST + 2);
  FILE *f = fopen(bomb, "rb");
  fseek(f, 0, SEEK_END);
  printf("  %s: %ld bytes declaring %d x 32 MiB\n", strrchr(bomb, '/') + 1, ftell(f), NST);
  fclose(f);

  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    long base = vm_size_kib();
    struct rlimit rl = {(rlim_t)(base + (128 << 10)) << 10, (rlim_t)(base + (128 << 10)) << 10};
    if (base < 0 || setrlimit(RLIMIT_AS, &rl)) _exit(77);
    double sum = -1;
    int rc = read_all(bomb, &sum);
    printf("  read under a %ld MiB address-space limit: %s (sum %g)\n", (long)(rl.rlim_cur >> 20),
           rc ? af_error_message() : "ok", sum);
    fflush(stdout);
    _exit(rc == 0 && sum == 0 ? 0 : 1);
  }
  int st = 0;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st));
  CHECK_MSG(WEXITSTATUS(st) == 0, "the bomb did not read within the memory limit (exit %d)", WEXITSTATUS(st));

  /* a view of 16 floats of a 32 MiB deflated storage: 64 bytes kept */
  pk.n = 0;
  tensor_dict(&pk, 1, NUMEL, 16);
  entry v[3] = {{"archive/data.pkl", pk.p, pk.n},
                {"archive/version", "3\n", 2},
                {"archive/data/0", NULL, NUMEL * 4ull}};
  write_zip(view, v, 3);
  af_tsrc *src = NULL;
  CHECK_OK(af_tsrc_open(view, &src));
  const af_tsrc_tensor *t = src ? af_tsrc_get(src, 0) : NULL;
  CHECK(t && t->numel == 16 && t->data == NULL && t->blob_ && t->blob_->need == 64);
  float x[16] = {1};
  if (t) CHECK_OK(af_tsrc_read_f32(t, x));
  CHECK(x[0] == 0 && x[15] == 0 && af_tsrc_data(t) != NULL);
  af_tsrc_close(src);

  /* a deflated storage smaller than the pickle says */
  pk.n = 0;
  tensor_dict(&pk, 1, 1024, 16);
  entry l[3] = {
      {"archive/data.pkl", pk.p, pk.n}, {"archive/version", "3\n", 2}, {"archive/data/0", NULL, 8192}};
  write_zip(liar, l, 3);
  src = NULL;
  CHECK(af_tsrc_open(liar, &src) == AF_ERR_FORMAT);
  printf("  %s\n", af_error_message());
  CHECK(strstr(af_error_message(), "liar.pth: deflated storage '0' holds 8192 bytes but declares 4096"));
  af_error_clear();
  af_tsrc_close(src);
  af_buf_free(&pk);
  return af_test_done("test_torch_bomb");
}
