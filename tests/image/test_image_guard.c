/* Decoding hostile and stuck files (image/decode_guard.c, issue 21):
 *  - a FIFO and a character device are refused at once ("not a regular
 *    file"), never opened: a FIFO in a collection used to hang the run;
 *  - libvips' untrusted loaders are blocked: BMP (ImageMagick), SVG are
 *    refused by name, PPM and GIF (ImageMagick, GIF coder forced) still work;
 *  - a PNG with a damaged chunk names the chunk and its CRCs;
 *  - libvips' warnings land in the decoded file's notes;
 *  - the per-file deadline: a stuck open (another process holds a write lease
 *    on the file, as a hung network mount would block open()) and a decode
 *    that takes too long both fail in time; abandoned helpers are counted,
 *    past AF_DECODE_MAX_STUCK of them further decodes fail at once, and the
 *    count falls back to 0 when the storage answers again. */

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "af_test.h"
#include "image/image.h"

static char dir[512];

static const char *tmp(const char *name) {
  static char p[4][1024];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(data, 1, n, f) == n);
  fclose(f);
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A w x h RGB PNG of one colour; *n gets its size, *idat_crc the offset of
 * the IDAT chunk's CRC.  Caller frees. */
static unsigned char *make_png(uint32_t w, uint32_t h, size_t *n, size_t *idat_crc) {
  size_t raw_n = (size_t)h * (1 + 3 * (size_t)w);
  unsigned char *raw = calloc(raw_n, 1);
  for (size_t y = 0; y < h; y++)
    for (size_t x = 0; x < w; x++) raw[y * (1 + 3 * w) + 1 + 3 * x] = 200;
  uLongf zn = compressBound((uLong)raw_n);
  unsigned char *out = malloc(zn + 64);
  unsigned char *z = out + 8 + 25 + 8;
  CHECK(compress2(z, &zn, raw, (uLong)raw_n, 9) == Z_OK);
  free(raw);
  memcpy(out, "\x89PNG\r\n\x1a\n", 8);
  unsigned char *p = out + 8;
  put32(p, 13);
  memcpy(p + 4, "IHDR", 4);
  put32(p + 8, w);
  put32(p + 12, h);
  p[16] = 8, p[17] = 2, p[18] = p[19] = p[20] = 0;
  put32(p + 21, (uint32_t)crc32(0, p + 4, 17));
  p += 25;
  put32(p, (uint32_t)zn);
  memcpy(p + 4, "IDAT", 4);
  put32(p + 8 + zn, (uint32_t)crc32(0, p + 4, 4 + (uInt)zn));
  *idat_crc = (size_t)(p + 8 + zn - out);
  p += 12 + zn;
  put32(p, 0);
  memcpy(p + 4, "IEND", 4);
  put32(p + 8, (uint32_t)crc32(0, p + 4, 4));
  *n = (size_t)(p + 12 - out);
  return out;
}

static void expect_fail(const char *path, const af_decode_opts *o, int code, const char *cause,
                        double max_s) {
  af_image_u8 im;
  af_error_clear();
  double t0 = now();
  int rc = af_image_decode(path, o, &im);
  double dt = now() - t0;
  const char *msg = af_error_message();
  printf("  %-22s %.3f s -> %s\n", strrchr(path, '/') + 1, dt, msg);
  CHECK_MSG(rc == code, "%s: got %d (%s), want %s", path, rc, af_strerror(rc), af_strerror(code));
  CHECK_MSG(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
  CHECK_MSG(strstr(msg, cause) != NULL, "message lacks '%s': %s", cause, msg);
  CHECK_MSG(strchr(msg, '\n') == NULL, "message is not one line: %s", msg);
  CHECK_MSG(dt < max_s, "%s: took %.2f s", path, dt);
  CHECK(im.data == NULL);
  af_error_clear();
}

/* A child that holds a write lease on `path` for `secs` seconds: any open()
 * of the file blocks meanwhile (the kernel waits for the holder to give the
 * lease up), which is how a file on a hung network mount behaves. */
static pid_t hold_lease(const char *path, int secs) {
  int p[2];
  if (pipe(p)) return -1;
  pid_t c = fork();
  if (c == 0) {
    signal(SIGIO, SIG_IGN);
    int fd = open(path, O_RDONLY);
    char ok = fd >= 0 && fcntl(fd, F_SETLEASE, F_WRLCK) == 0 ? 'y' : 'n';
    if (write(p[1], &ok, 1) != 1) _exit(1);
    sleep((unsigned)secs);
    _exit(0);
  }
  char ok = 'n';
  if (c < 0 || read(p[0], &ok, 1) != 1 || ok != 'y') {
    if (c > 0) kill(c, SIGKILL), waitpid(c, NULL, 0);
    c = -1;
  }
  close(p[0]);
  close(p[1]);
  return c;
}

static int wait_unstuck(double max_s) {
  double t0 = now();
  while (af_image_decode_stuck() > 0 && now() - t0 < max_s) usleep(20000);
  return af_image_decode_stuck();
}

int main(void) {
  snprintf(dir, sizeof dir, "%s", af_test_tmpdir());
  CHECK_OK(af_image_init());
  alarm(120); /* a hang is a failure, not a stuck test run */

  /* special files: refused without being opened */
  CHECK(mkfifo(tmp("x.jpg"), 0644) == 0);
  expect_fail(tmp("x.jpg"), NULL, AF_ERR_IO, "not a regular file (a FIFO)", 1.0);
  af_image_u8 im;
  CHECK(af_image_decode("/dev/zero", NULL, &im) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "/dev/zero: not a regular file (a character device)"));
  af_error_clear();

  /* loaders: BMP would go through ImageMagick, SVG through librsvg: blocked */
  unsigned char bmp[58] = "BM";
  put32(bmp + 2, 0x3a000000u), put32(bmp + 10, 0x36000000u), put32(bmp + 14, 0x28000000u);
  put32(bmp + 18, 0x01000000u), put32(bmp + 22, 0x01000000u), put32(bmp + 26, 0x01001800u);
  write_file(tmp("one.bmp"), bmp, sizeof bmp);
  expect_fail(tmp("one.bmp"), NULL, AF_ERR_UNSUPPORTED, "untrusted input are blocked", 1.0);
  const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"/>\n";
  write_file(tmp("d.svg"), svg, sizeof svg - 1);
  expect_fail(tmp("d.svg"), NULL, AF_ERR_UNSUPPORTED, "unsupported format 'svg'", 1.0);
  /* ... PPM and GIF still decode (the fixtures' pixels: test_image_decode) */
  CHECK_OK(af_image_decode(af_test_data("image/dec_rgb.ppm"), NULL, &im));
  af_image_free(&im);
  CHECK_OK(af_image_decode(af_test_data("image/dec_trns.gif"), NULL, &im));
  CHECK(im.w > 0);
  af_image_free(&im);
  /* a PNG named .gif is not handed to ImageMagick's GIF coder by its name */
  size_t n, crc_at;
  unsigned char *png = make_png(16, 8, &n, &crc_at);
  write_file(tmp("really_png.gif"), png, n);
  CHECK_OK(af_image_decode(tmp("really_png.gif"), NULL, &im));
  CHECK(im.w == 16 && im.h == 8 && im.data && im.data[0] == 200);
  af_image_free(&im);

  /* PNG CRCs: the damaged chunk is named */
  png[crc_at] ^= 0xff;
  write_file(tmp("bad_idat.png"), png, n);
  expect_fail(tmp("bad_idat.png"), NULL, AF_ERR_FORMAT, "bad CRC in PNG chunk 'IDAT' at offset 33", 1.0);
  png[crc_at] ^= 0xff;
  png[29] ^= 0xff; /* IHDR's CRC */
  write_file(tmp("bad_ihdr.png"), png, n);
  expect_fail(tmp("bad_ihdr.png"), NULL, AF_ERR_FORMAT, "bad CRC in PNG chunk 'IHDR' at offset 8", 1.0);
  png[29] ^= 0xff;
  free(png);

  /* warnings belong to the file: a truncated JPEG decoded leniently */
  size_t jn = 0;
  char *jpg = af_test_slurp(af_test_data("image/dec_rgb.jpg"), &jn);
  CHECK(jpg && jn > 1000);
  if (jpg) write_file(tmp("cut.jpg"), jpg, jn * 6 / 10);
  free(jpg);
  af_decode_opts lax = {.fail_on = AF_FAIL_ON_NONE};
  af_decode_notes notes;
  CHECK_OK(af_image_decode_notes(tmp("cut.jpg"), &lax, &im, &notes));
  printf("  cut.jpg notes (%d): %s\n", notes.n, notes.text);
  CHECK(notes.n >= 1 && strstr(notes.text, "Premature end of JPEG file"));
  af_image_free(&im);
  lax.deadline_s = 5; /* the same through the helper thread */
  CHECK_OK(af_image_decode_notes(tmp("cut.jpg"), &lax, &im, &notes));
  CHECK(notes.n >= 1 && strstr(notes.text, "Premature end of JPEG file"));
  af_image_free(&im);
  CHECK_OK(af_image_decode_notes(af_test_data("image/dec_rgb.jpg"), &lax, &im, &notes));
  CHECK(notes.n == 0 && notes.text[0] == 0);
  af_image_free(&im);

  /* deadline: a stuck open */
  png = make_png(32, 32, &n, &crc_at);
  write_file(tmp("stuck.png"), png, n);
  pid_t holder = hold_lease(tmp("stuck.png"), 3);
  if (holder < 0) {
    printf("  stuck open: skipped (no file leases here)\n");
  } else {
    af_decode_opts dl = {.deadline_s = 0.3};
    expect_fail(tmp("stuck.png"), &dl, AF_ERR_IO, "no result within the 0.3 s decode deadline", 1.5);
    CHECK(af_image_decode_stuck() == 1);
    /* a good file still decodes meanwhile */
    CHECK_OK(af_image_decode(af_test_data("image/dec_rgba.png"), &dl, &im));
    af_image_free(&im);
    /* up to AF_DECODE_MAX_STUCK abandoned helpers, then refusal at once */
    for (int i = 1; i < AF_DECODE_MAX_STUCK; i++) {
      af_image_decode(tmp("stuck.png"), &dl, &im);
      af_error_clear();
    }
    CHECK(af_image_decode_stuck() == AF_DECODE_MAX_STUCK);
    expect_fail(af_test_data("image/dec_rgba.png"), &dl, AF_ERR_IO, "8 earlier decodes are still stuck", 0.1);
    waitpid(holder, NULL, 0); /* the lease goes: the helpers finish */
    CHECK_MSG(wait_unstuck(10) == 0, "%d helpers still stuck", af_image_decode_stuck());
    CHECK_OK(af_image_decode(tmp("stuck.png"), &dl, &im));
    CHECK(im.w == 32);
    af_image_free(&im);
  }
  free(png);

  /* deadline: a decode that takes too long (8000 x 6000, 144 MB of RGB) */
  png = make_png(8000, 6000, &n, &crc_at);
  write_file(tmp("slow.png"), png, n);
  free(png);
  af_decode_opts quick = {.deadline_s = 0.02};
  expect_fail(tmp("slow.png"), &quick, AF_ERR_IO, "decode deadline", 0.5);
  CHECK(wait_unstuck(30) == 0);
  return af_test_done("test_image_guard");
}
