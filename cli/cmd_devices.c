/* artflow devices: every OpenCL platform and device with the facts that
 * matter for artflow (memory limits, fp16/fp64, OpenCL C version). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cl/devprofile.h"
#include "cl/runtime.h"
#include "cli/cli.h"
#include "cli/json_out.h"
#include "core/datadir.h"
#include "core/iofile.h"

static const char usage[] =
    "usage: artflow devices [--json]\n"
    "\n"
    "Lists every OpenCL platform and device: vendor, driver, compute units, global\n"
    "and local memory, largest allocation, fp16/fp64 support, OpenCL C version.\n"
    "The device marked '*' is the one artflow uses by default (ARTFLOW_DEVICE,\n"
    "else the first GPU, else the first CPU).  Select another with --device N or\n"
    "a name substring on any command, or ARTFLOW_DEVICE.  The last line names the\n"
    "profile folder and how it was found (docs/profiles.md).\n"
    "\n"
    "options:\n"
    "  --json     one JSON object per device, one per line\n";

static double mib(cl_ulong b) {
  return b / 1048576.0;
}

int af_cmd_devices(int argc, char **argv) {
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if (af_cli_is_help(argv[i])) {
      fputs(usage, stdout);
      return AF_EXIT_OK;
    } else if (!strcmp(argv[i], "--json"))
      json = 1;
    else
      return af_cli_usage_error("devices", usage, "unknown option '%s'", argv[i]);
  }
  af_device_ref *refs;
  int n, rc = af_cl_enumerate(&refs, &n);
  if (rc) return af_cli_fail(rc, NULL);
  af_device_ref def;
  int defidx = -1;
  if (af_cl_select(NULL, &def) == 0) defidx = def.info.index;
  af_error_clear();
  for (int k = 0; k < n; k++) {
    const af_device_info *d = &refs[k].info;
    const char *type = d->is_gpu ? "GPU" : d->is_cpu ? "CPU" : "other";
    if (json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "index", d->index);
      cJSON_AddBoolToObject(o, "default", k == defidx);
      af_json_add_text(o, "platform", d->platform, NULL);
      af_json_add_text(o, "device", d->name, NULL);
      af_json_add_text(o, "vendor", d->vendor, NULL);
      cJSON_AddStringToObject(o, "type", type);
      af_json_add_text(o, "driver", d->driver, NULL);
      af_json_add_text(o, "version", d->version, NULL);
      af_json_add_text(o, "opencl_c", d->c_version, NULL);
      cJSON_AddNumberToObject(o, "compute_units", d->compute_units);
      cJSON_AddNumberToObject(o, "clock_mhz", d->clock_mhz);
      cJSON_AddNumberToObject(o, "global_mem", (double)d->global_mem);
      cJSON_AddNumberToObject(o, "local_mem", (double)d->local_mem);
      cJSON_AddNumberToObject(o, "max_alloc", (double)d->max_alloc);
      cJSON_AddNumberToObject(o, "max_work_group", (double)d->max_wg);
      cJSON_AddBoolToObject(o, "fp16", d->fp16);
      cJSON_AddBoolToObject(o, "fp64", d->fp64);
      af_devprofile prof;
      const char *dir = af_devprofile_dir();
      if (dir)
        af_json_add_text(o, "profile_dir", dir, "profile_dir_bytes");
      else
        cJSON_AddNullToObject(o, "profile_dir");
      if (af_devprofile_select(d, NULL, &prof) == 0) {
        af_json_add_text(o, "profile", prof.name, NULL);
        af_json_add_text(o, "profile_file", prof.file, "profile_file_bytes");
        af_json_add_text(o, "profile_why", prof.why, NULL);
      }
      af_error_clear();
      if (af_json_print(o)) rc = 1;
      continue;
    }
    printf("%s[%d] %s (%s)\n", k == defidx ? "*" : " ", d->index, d->name, type);
    printf("      platform:      %s (%s)\n", d->platform, d->platform_version);
    printf("      vendor:        %s\n", d->vendor);
    printf("      driver:        %s\n", d->driver);
    printf("      version:       %s, %s\n", d->version, d->c_version);
    printf("      compute units: %u at %u MHz, max work-group %zu\n", d->compute_units, d->clock_mhz,
           d->max_wg);
    printf("      memory:        global %.0f MiB, local %.0f KiB, max allocation %.0f MiB\n",
           mib(d->global_mem), d->local_mem / 1024.0, mib(d->max_alloc));
    printf("      fp16: %s, fp64: %s\n", d->fp16 ? "yes (cl_khr_fp16)" : "storage only (no cl_khr_fp16)",
           d->fp64 ? "yes" : "no");
    af_devprofile prof;
    if (af_devprofile_select(d, NULL, &prof) == 0) {
      printf("      ");
      af_devprofile_describe(&prof, stdout);
    } else {
      printf("      profile: %s\n", af_error_message());
      af_error_clear();
    }
  }
  if (!json) {
    af_data_where w;
    if (af_data_locate(AF_DATA_PROFILES, &w) == 0)
      printf("profiles: %s (%s)\n", w.dir, w.origin);
    else
      printf("profiles: none found (tried %s); built-in defaults\n", w.tried);
  }
  free(refs);
  return rc ? AF_EXIT_FAIL : AF_EXIT_OK;
}
