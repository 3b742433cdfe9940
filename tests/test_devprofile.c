/* Device profiles: merge order (base, then the best-matching file key by key),
 * matching rules, an explicit file, and bad files with file:line errors. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "af_test.h"
#include "cl/devprofile.h"

static void write(const char *dir, const char *name, const char *text) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  CHECK(f != NULL);
  if (f) fputs(text, f), fclose(f);
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  char dir[1024], vendor[1100];
  snprintf(dir, sizeof dir, "%s", tmp);
  snprintf(vendor, sizeof vendor, "%s/acme", dir);
  mkdir(vendor, 0755);
  setenv("ARTFLOW_PROFILE_DIR", dir, 1);
  unsetenv("ARTFLOW_PROFILE_FILE");
  write(dir, "default.yaml", "name: base\nbatch: {vit: 3, qformer: 5, llm: 7}\nkernels: {AF_A: 1}\n");
  write(vendor, "default.yaml", "name: acme\nmatch: {vendor: Acme}\nbatch: {vit: 9}\n");
  write(vendor, "rocket.yaml",
        "name: acme-rocket\nmatch: {vendor: Acme, device: Rocket, type: gpu}\nkernels: {AF_B: 2}\n"
        "clblast:\n  Xgemm: {precision: 32, MWG: 64}\nweights: fp16_storage\n");
  af_device_info info;
  memset(&info, 0, sizeof info);
  snprintf(info.vendor, sizeof info.vendor, "Acme Corp");
  snprintf(info.name, sizeof info.name, "Rocket 9000");
  info.is_gpu = 1;
  af_devprofile p;
  CHECK_OK(af_devprofile_select(&info, NULL, &p));
  CHECK(!strcmp(p.name, "acme-rocket"));          /* most specific match wins */
  CHECK(p.batch_vit == 3 && p.batch_llm == 7);     /* base values kept where not overridden */
  CHECK(p.n_defines == 2 && !strcmp(af_devprofile_defines(&p), "-DAF_A=1 -DAF_B=2"));
  CHECK(p.n_overrides == 1 && p.overrides[0].n == 1 && p.overrides[0].values[0] == 64);
  CHECK(p.fp16_storage == 1);
  CHECK(strstr(p.why, "3 match rules") != NULL);
  info.is_gpu = 0, info.is_cpu = 1; /* the device file wants a GPU: the vendor default applies */
  CHECK_OK(af_devprofile_select(&info, NULL, &p));
  CHECK(!strcmp(p.name, "acme") && p.batch_vit == 9 && p.batch_qformer == 5);
  snprintf(info.vendor, sizeof info.vendor, "Other");
  CHECK_OK(af_devprofile_select(&info, NULL, &p));
  CHECK(!strcmp(p.name, "base") && p.file[0] == 0);
  /* explicit file */
  char forced[1200];
  snprintf(forced, sizeof forced, "%s/rocket.yaml", vendor);
  CHECK_OK(af_devprofile_select(&info, forced, &p));
  CHECK(!strcmp(p.name, "acme-rocket") && !strcmp(p.why, "given explicitly"));
  /* bad files */
  write(vendor, "bad.yaml", "name: bad\nmatch: {vendor: Other}\nbatch: {vit: 0}\n");
  CHECK(af_devprofile_select(&info, NULL, &p) == AF_ERR_CONFIG);
  CHECK(strstr(af_error_message(), "bad.yaml:3:") && strstr(af_error_message(), "1..256"));
  af_error_clear();
  write(vendor, "bad.yaml", "name: bad\nflavour: spicy\n");
  CHECK(af_devprofile_select(&info, NULL, &p) == AF_ERR_CONFIG);
  CHECK(strstr(af_error_message(), "unknown key 'flavour'") != NULL);
  af_error_clear();
  write(vendor, "bad.yaml", "name: [unclosed\n");
  CHECK(af_devprofile_select(&info, NULL, &p) == AF_ERR_CONFIG);
  CHECK(strstr(af_error_message(), "bad.yaml:") != NULL);
  af_error_clear();
  /* the shipped profiles all load */
  unsetenv("ARTFLOW_PROFILE_DIR");
  snprintf(info.vendor, sizeof info.vendor, "NVIDIA Corporation");
  snprintf(info.name, sizeof info.name, "NVIDIA A100-SXM4-80GB");
  info.is_gpu = 1, info.is_cpu = 0;
  CHECK_OK(af_devprofile_select(&info, NULL, &p));
  CHECK(!strcmp(p.name, "nvidia-a100") && p.fp16_storage);
  snprintf(info.platform, sizeof info.platform, "Portable Computing Language");
  snprintf(info.vendor, sizeof info.vendor, "GenuineIntel");
  info.is_gpu = 0, info.is_cpu = 1;
  CHECK_OK(af_devprofile_select(&info, NULL, &p));
  CHECK(!strcmp(p.name, "pocl-cpu") && p.n_overrides == 1 && p.overrides[0].n == 16 && p.fp16_storage);
  return af_test_done("test_devprofile");
}
