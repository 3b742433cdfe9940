/* Device profiles: the three merge levels (base, vendor default, device
 * file), each match rule, CLBlast override forms and their validation, bad
 * files with file:line errors, and which shipped profile each known device
 * gets. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "af_test.h"
#include "cl/devprofile.h"

static void put(const char *dir, const char *name, const char *text) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  CHECK(f != NULL);
  if (f) fputs(text, f), fclose(f);
}

static af_device_info dev(const char *platform, const char *vendor, const char *name, int gpu,
                          const char *driver, unsigned cu) {
  af_device_info i;
  memset(&i, 0, sizeof i);
  snprintf(i.platform, sizeof i.platform, "%s", platform);
  snprintf(i.vendor, sizeof i.vendor, "%s", vendor);
  snprintf(i.name, sizeof i.name, "%s", name);
  snprintf(i.driver, sizeof i.driver, "%s", driver);
  i.is_gpu = gpu, i.is_cpu = !gpu;
  i.type = gpu ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_CPU;
  i.compute_units = cu;
  return i;
}

/* select must fail with AF_ERR_CONFIG and a message holding both parts */
static void expect_bad(const af_device_info *i, const char *where, const char *what) {
  af_devprofile p;
  int rc = af_devprofile_select(i, NULL, &p);
  CHECK_MSG(rc == AF_ERR_CONFIG, "rc %d for %s", rc, what);
  CHECK_MSG(strstr(af_error_message(), where) && strstr(af_error_message(), what), "message: %s",
            af_error_message());
  af_error_clear();
}

static const char *XGEMM =
    "{precision: 32, params: {GEMMK: 0, KREG: 1, KWG: 32, KWI: 2, MDIMA: 16, MDIMC: 8, "
    "MWG: 64, NDIMB: 16, NDIMC: 8, NWG: 128, SA: 0, SB: 0, STRM: 1, STRN: 0, VWM: 4, VWN: 8}}";

static void merge_levels(const char *dir) {
  char vendor[1100], text[1024];
  snprintf(vendor, sizeof vendor, "%s/acme", dir);
  mkdir(vendor, 0755);
  put(dir, "default.yaml", "name: base\nbatch: {vit: 3, qformer: 5, llm: 7}\nkernels: {AF_A: 1}\n");
  put(vendor, "default.yaml",
      "name: acme\nmatch: {vendor: Acme}\nbatch: {vit: 9}\nkernels: {AF_A: 4, AF_C: 3}\nmemory_budget_mb: "
      "512\n");
  snprintf(text, sizeof text,
           "name: acme-rocket\nmatch: {vendor: Acme, device_regex: '^Rocket [0-9]+$', type: gpu}\n"
           "kernels: {AF_B: 2, AF_GEMM_IMPL: tiled}\nclblast:\n  Xgemm: %s\nweights: fp16_storage\n",
           XGEMM);
  put(vendor, "rocket.yaml", text);
  put(vendor, "old.yaml", "name: acme-old\nmatch: {vendor: Acme, driver_max: '2.5', min_compute_units: 4}\n");
  af_device_info i = dev("Acme CL", "Acme Corp", "Rocket 9000", 1, "3.0.1", 8);
  af_devprofile p;
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(!strcmp(p.name, "acme-rocket"));                               /* the device file is applied last */
  CHECK(p.batch_vit == 9 && p.batch_qformer == 5 && p.batch_llm == 7); /* vendor, then base */
  CHECK(!strcmp(af_devprofile_defines(&p), "-DAF_A=4 -DAF_C=3 -DAF_B=2 -DAF_GEMM_IMPL=tiled"));
  CHECK(af_devprofile_gemm_impl(&p) == AF_GEMM_IMPL_TILED);
  CHECK(af_devprofile_define(&p, "AF_C") && !strcmp(af_devprofile_define(&p, "AF_C"), "3"));
  CHECK(af_devprofile_define(&p, "AF_D") == NULL);
  CHECK(p.n_overrides == 1 && p.overrides[0].n == 16 && p.overrides[0].values[6] == 64);
  CHECK(af_devprofile_fp16_storage(&p) == 1 && af_devprofile_memory_budget_mb(&p) == 512);
  CHECK(af_devprofile_batch(&p, "qformer") == 5 && af_devprofile_batch(&p, "other") == 0);
  CHECK(strstr(p.why, "acme/default.yaml [vendor~'Acme']") && strstr(p.why, "acme/rocket.yaml"));
  CHECK(strstr(p.why, "device=~/^Rocket [0-9]+$/") != NULL);
  /* the regex must match the whole name pattern: "Rocket 9000 Pro" does not */
  snprintf(i.name, sizeof i.name, "Rocket 9000 Pro");
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(!strcmp(p.name, "acme") && p.batch_vit == 9 && af_devprofile_gemm_impl(&p) == AF_GEMM_IMPL_CLBLAST);
  /* driver range and compute units: old.yaml fits driver 2.4 with >= 4 units */
  snprintf(i.driver, sizeof i.driver, "2.4.7 (beta)");
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(!strcmp(p.name, "acme-old") && strstr(p.why, "driver 2.4.7 (beta) in [-, 2.5]"));
  i.compute_units = 2;
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(!strcmp(p.name, "acme"));
  /* type: the device file wants a GPU */
  snprintf(i.name, sizeof i.name, "Rocket 9000");
  i.is_gpu = 0, i.is_cpu = 1;
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(!strcmp(p.name, "acme"));
  /* no match: the base alone */
  snprintf(i.vendor, sizeof i.vendor, "Other");
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(!strcmp(p.name, "base") && p.file[0] == 0 && strstr(p.why, "no vendor or device file matches"));
  /* an explicit file replaces the matching */
  char forced[1200];
  snprintf(forced, sizeof forced, "%s/rocket.yaml", vendor);
  CHECK_OK(af_devprofile_select(&i, forced, &p));
  CHECK(!strcmp(p.name, "acme-rocket") && strstr(p.why, "given explicitly") && p.batch_vit == 3);
  setenv("ARTFLOW_PROFILE_FILE", forced, 1);
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(!strcmp(p.name, "acme-rocket"));
  unsetenv("ARTFLOW_PROFILE_FILE");
  /* one kernel, two precisions (a list), and a later level replacing one */
  snprintf(text, sizeof text,
           "name: two\nmatch: {vendor: Other}\nclblast:\n  Xgemv: [{precision: 32, WGS1: 64, WPT1: 1},\n"
           "          {precision: 64, WGS1: 32, WPT1: 2}]\n");
  put(vendor, "two.yaml", text);
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  CHECK(p.n_overrides == 2 && p.overrides[1].precision == 64 && p.overrides[1].values[0] == 32);
  snprintf(text, sizeof text, "%s/two.yaml", vendor);
  remove(text);
}

static void bad_files(const char *dir) {
  char vendor[1100];
  snprintf(vendor, sizeof vendor, "%s/acme", dir);
  af_device_info i = dev("P", "Other", "Thing", 1, "1.0", 1);
  put(vendor, "bad.yaml", "name: bad\nmatch: {vendor: Other}\nbatch: {vit: 0}\n");
  expect_bad(&i, "bad.yaml:3:", "batch.vit must be an integer 1..256");
  put(vendor, "bad.yaml", "name: bad\nflavour: spicy\n");
  expect_bad(&i, "bad.yaml:2:1", "unknown key 'flavour'");
  put(vendor, "bad.yaml", "name: [unclosed\n");
  expect_bad(&i, "bad.yaml:", "");
  put(vendor, "bad.yaml", "name: bad\nmatch: {colour: red}\n");
  expect_bad(&i, "bad.yaml:2:", "unknown key 'colour'");
  put(vendor, "bad.yaml", "name: bad\nmatch: {device_regex: 'gfx[9'}\n");
  expect_bad(&i, "bad.yaml:2:", "not a valid extended regular expression");
  put(vendor, "bad.yaml", "name: bad\nclblast:\n  Xgemm: {precision: 32, MWG: 64}\n");
  expect_bad(&i, "bad.yaml:3:", "parameter GEMMK is missing");
  put(vendor, "bad.yaml", "name: bad\nclblast:\n  Xgemv: {WGS1: 64, WPT1: 1, WPT2: 1}\n");
  expect_bad(&i, "bad.yaml:3:", "unknown or repeated parameter");
  put(vendor, "bad.yaml", "name: bad\nclblast:\n  Xgemv: {precision: 8, WGS1: 64, WPT1: 1}\n");
  expect_bad(&i, "bad.yaml:3:", "precision must be");
  put(vendor, "bad.yaml", "name: bad\nkernels: {lower: 1}\n");
  expect_bad(&i, "bad.yaml:2:", "upper-case define");
  put(vendor, "bad.yaml", "name: bad\nkernels: {AF_X: 'a b'}\n");
  expect_bad(&i, "bad.yaml:2:", "a number or a word");
  put(vendor, "bad.yaml", "name: bad\nweights: fp8\n");
  expect_bad(&i, "bad.yaml:2:", "fp16_storage or fp32_copy");
  char p[1200];
  snprintf(p, sizeof p, "%s/bad.yaml", vendor);
  remove(p);
  af_devprofile pr;
  CHECK(af_devprofile_select(&i, "/nonexistent/x.yaml", &pr) == AF_ERR_IO);
  CHECK(strstr(af_error_message(), "/nonexistent/x.yaml") != NULL);
  af_error_clear();
}

/* the shipped profiles: every file loads, and each known device gets the intended one */
static void shipped(void) {
  unsetenv("ARTFLOW_PROFILE_DIR");
  static const struct {
    const char *platform, *vendor, *name;
    int gpu;
    const char *want;
    int fp16, tiled;
  } cases[] = {
      {"Portable Computing Language", "GenuineIntel", "pthread-skylake-avx512-Intel(R) Xeon(R) Processor", 0,
       "pocl-cpu", 1, 1},
      {"Portable Computing Language", "AuthenticAMD", "pthread-znver3-AMD EPYC 7763", 0, "pocl-cpu", 1, 1},
      {"NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA A100-SXM4-80GB", 1, "nvidia-a100", 1, 0},
      {"NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA A100-PCIE-40GB", 1, "nvidia-a100", 1, 0},
      {"NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA H100 80GB HBM3", 1, "nvidia-h100", 1, 0},
      {"NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA H200", 1, "nvidia-h100", 1, 0},
      {"NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA GeForce RTX 3090", 1, "nvidia", 1, 0},
      {"AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.", "gfx90a:sramecc+:xnack-", 1,
       "amd-cdna", 1, 0},
      {"AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.", "gfx942:sramecc+:xnack-", 1,
       "amd-cdna", 1, 0},
      {"AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.", "gfx1100", 1, "amd-rdna3", 1,
       0},
      {"AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.", "gfx1030", 1, "amd-rdna", 1, 0},
      {"Intel(R) OpenCL Graphics", "Intel(R) Corporation", "Intel(R) Arc(TM) A770 Graphics", 1, "intel-xe", 1,
       0},
      {"Intel(R) OpenCL Graphics", "Intel(R) Corporation", "Intel(R) UHD Graphics 630", 1, "intel-gpu", 1, 0},
      {"Some CL", "Unknown Inc.", "Mystery", 1, "default", 0, 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    af_device_info i = dev(cases[c].platform, cases[c].vendor, cases[c].name, cases[c].gpu, "1.0", 64);
    af_devprofile p;
    CHECK_OK(af_devprofile_select(&i, NULL, &p));
    CHECK_MSG(!strcmp(p.name, cases[c].want), "%s: got %s (%s)", cases[c].name, p.name, p.why);
    CHECK_MSG(p.fp16_storage == cases[c].fp16, "%s: weights", cases[c].name);
    CHECK_MSG((af_devprofile_gemm_impl(&p) == AF_GEMM_IMPL_TILED) == cases[c].tiled, "%s: GEMM",
              cases[c].name);
    CHECK(p.batch_vit >= 1 && p.batch_qformer >= 1 && p.batch_llm >= 1);
  }
  /* the description names the files and the GEMM choice */
  af_device_info i = dev("Portable Computing Language", "GenuineIntel", "pthread-x", 0, "3.1", 2);
  af_devprofile p;
  CHECK_OK(af_devprofile_select(&i, NULL, &p));
  char buf[4096] = "";
  FILE *f = fmemopen(buf, sizeof buf - 1, "w");
  CHECK(f != NULL);
  if (f) af_devprofile_describe(&p, f), fclose(f);
  CHECK(strstr(buf, "pocl/cpu.yaml") && strstr(buf, "own tiled kernel") && strstr(buf, "Xgemm"));
}

int main(void) {
  const char *tmp = af_test_tmpdir();
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", tmp);
  setenv("ARTFLOW_PROFILE_DIR", dir, 1);
  unsetenv("ARTFLOW_PROFILE_FILE");
  merge_levels(dir);
  bad_files(dir);
  shipped();
  return af_test_done("test_devprofile");
}
