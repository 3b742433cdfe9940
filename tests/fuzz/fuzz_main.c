/* Runs a libFuzzer entry point over files without libFuzzer, so gcc builds
 * (and the sanitizer CI) replay the seed corpus as a plain test:
 *   fuzz_x_corpus FILE_OR_DIR...   (folders are walked two levels deep;
 * files over 8 MiB are skipped).  Exit status 0 unless a file cannot be read;
 * crashes and sanitizer reports are the failures this exists to catch. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int runs;

static int run_path(const char *path, int depth) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    fprintf(stderr, "%s: cannot stat\n", path);
    return 1;
  }
  if (S_ISDIR(sb.st_mode)) {
    if (depth > 2) return 0;
    DIR *d = opendir(path);
    if (!d) return 1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char sub[4096];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      rc |= run_path(sub, depth + 1);
    }
    closedir(d);
    return rc;
  }
  if (!S_ISREG(sb.st_mode) || sb.st_size > (8 << 20)) return 0;
  FILE *f = fopen(path, "rb");
  if (!f) return 1;
  size_t n = (size_t)sb.st_size;
  uint8_t *buf = malloc(n ? n : 1);
  int rc = buf && fread(buf, 1, n, f) == n ? 0 : 1;
  fclose(f);
  if (!rc) {
    /* the exact bytes, then every prefix-truncation at a few points */
    LLVMFuzzerTestOneInput(buf, n);
    for (int k = 1; k < 8; k++) LLVMFuzzerTestOneInput(buf, n * (size_t)k / 8);
    runs++;
  }
  free(buf);
  return rc;
}

int main(int argc, char **argv) {
  int rc = 0;
  for (int i = 1; i < argc; i++) rc |= run_path(argv[i], 0);
  printf("%s: %d inputs replayed\n", argv[0], runs);
  return rc;
}
