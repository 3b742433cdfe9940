/* Bad inputs to af_image_decode: each must fail with the right status and a
 * one-line message that names the file and the cause -- missing file,
 * permission denied (root bypasses file modes, so then a child process that
 * drops to uid "nobody" checks it), a folder, 0-byte file, truncated JPEG,
 * garbage bytes with a .jpg extension, an image over the pixel limit (a crafted 20000x20000 PNG header:
 * the limit must trip before any pixel is decoded), an unsupported format
 * (SVG, which libvips reads but artflow refuses). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "af_test.h"
#include "image/image.h"

static char dir[512];

static const char *tmp(const char *name) {
  static char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(data, 1, n, f) == n);
  fclose(f);
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)len);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

/* Decodes `path` expecting status `code` and a message holding the path and
 * `cause`, on one line. */
static void expect_fail(const char *path, const af_decode_opts *o, int code, const char *cause) {
  af_image_u8 im;
  af_error_clear();
  int rc = af_image_decode(path, o, &im);
  const char *msg = af_error_message();
  printf("  %-28s -> %s\n", strrchr(path, '/') + 1, msg);
  CHECK_MSG(rc == code, "%s: got %d (%s), want %s", path, rc, af_strerror(rc), af_strerror(code));
  CHECK_MSG(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
  CHECK_MSG(strstr(msg, cause) != NULL, "message lacks '%s': %s", cause, msg);
  CHECK_MSG(strchr(msg, '\n') == NULL, "message is not one line: %s", msg);
  CHECK(im.data == NULL);
  af_error_clear();
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A PNG whose header claims w x h 1-bit gray, with one tiny IDAT. */
static void write_png_header(const char *path, uint32_t w, uint32_t h) {
  unsigned char buf[256];
  size_t o = 0;
  memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
  o = 8;
  unsigned char ihdr[13];
  put32(ihdr, w);
  put32(ihdr + 4, h);
  ihdr[8] = 1, ihdr[9] = 0, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;
  const unsigned char idat[] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
  const struct {
    const char *t;
    const unsigned char *d;
    uint32_t n;
  } ch[3] = {{"IHDR", ihdr, 13}, {"IDAT", idat, sizeof idat}, {"IEND", NULL, 0}};
  for (int i = 0; i < 3; i++) {
    put32(buf + o, ch[i].n);
    memcpy(buf + o + 4, ch[i].t, 4);
    if (ch[i].n) memcpy(buf + o + 8, ch[i].d, ch[i].n);
    uLong crc = crc32(0, buf + o + 4, 4 + ch[i].n);
    put32(buf + o + 8 + ch[i].n, (uint32_t)crc);
    o += 12 + ch[i].n;
  }
  write_file(path, buf, o);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s", af_test_tmpdir());
  CHECK_OK(af_image_init());

  expect_fail(tmp("missing.jpg"), NULL, AF_ERR_IO, "no such file");

  write_file(tmp("denied.png"), "x", 1);
  chmod(tmp("denied.png"), 0);
  if (access(tmp("denied.png"), R_OK) != 0) {
    expect_fail(tmp("denied.png"), NULL, AF_ERR_IO, "permission denied");
  } else {
    /* Root ignores file modes: check from a child that drops to "nobody". */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      if (setgid(65534) || setuid(65534)) _exit(77);
      expect_fail(tmp("denied.png"), NULL, AF_ERR_IO, "permission denied");
      fflush(stdout);
      _exit(af_test_failures ? 1 : 0);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
      printf("  permission denied: skipped (cannot drop root privileges)\n");
    else
      CHECK_MSG(WEXITSTATUS(st) == 0, "permission-denied check failed in the child");
  }

  expect_fail(dir, NULL, AF_ERR_IO, "is a folder");

  write_file(tmp("empty.jpg"), "", 0);
  expect_fail(tmp("empty.jpg"), NULL, AF_ERR_FORMAT, "empty file (0 bytes)");

  unsigned char junk[4096];
  af_rng r;
  af_rng_seed(&r, 7);
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)af_rng_u32(&r);
  write_file(tmp("garbage.jpg"), junk, sizeof junk);
  expect_fail(tmp("garbage.jpg"), NULL, AF_ERR_FORMAT, "not a recognised image");

  /* Truncated JPEG: the first 60% of a real one. */
  size_t n = 0;
  unsigned char *jpg = read_all(af_test_data("image/dec_rgb.jpg"), &n);
  CHECK(jpg != NULL && n > 1000);
  if (jpg) {
    write_file(tmp("truncated.jpg"), jpg, n * 6 / 10);
    expect_fail(tmp("truncated.jpg"), NULL, AF_ERR_FORMAT, "corrupt or truncated");
    /* ...which the lenient level accepts, filling in the missing part. */
    af_decode_opts lax = {.max_pixels = 0, .fail_on = AF_FAIL_ON_NONE};
    af_image_u8 im;
    setenv("VIPS_WARNING", "0", 1);
    CHECK_OK(af_image_decode(tmp("truncated.jpg"), &lax, &im));
    CHECK(im.w == 40 && im.h == 30);
    af_image_free(&im);
    free(jpg);
  }

  write_png_header(tmp("huge.png"), 20000, 20000);
  expect_fail(tmp("huge.png"), NULL, AF_ERR_RANGE,
              "400000000 pixels (400.0 MP), over the limit of 100000000");
  af_decode_opts lim = {.max_pixels = 1000000, .fail_on = AF_FAIL_ON_ERROR};
  write_png_header(tmp("big.png"), 2000, 1000);
  expect_fail(tmp("big.png"), &lim, AF_ERR_RANGE, "2000000 pixels (2.0 MP), over the limit of 1000000");

  const char svg[] =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">"
      "<rect width=\"10\" height=\"10\" fill=\"red\"/></svg>\n";
  write_file(tmp("drawing.svg"), svg, sizeof svg - 1);
  expect_fail(tmp("drawing.svg"), NULL, AF_ERR_UNSUPPORTED, "unsupported format");

  const char text[] = "just some text, not an image\n";
  write_file(tmp("notes.txt"), text, sizeof text - 1);
  expect_fail(tmp("notes.txt"), NULL, AF_ERR_FORMAT, "not a recognised image");

  CHECK(af_image_decode("", NULL, &(af_image_u8){0}) == AF_ERR_INVALID);
  af_error_clear();
  return af_test_done("test_image_bad");
}
