/* af_k8s_manifest DIR OUT: checks the Kubernetes manifests of examples/k8s
 * and extracts what a test needs to run the Indexed Job's container command
 * without a cluster.
 *
 * kubectl's --dry-run=client still asks an API server for the resource types,
 * so where no cluster is reachable this is the schema check: every mapping at
 * a known place may only hold the fields the Kubernetes API defines there (a
 * subset of the OpenAPI schema: the objects these manifests use), values have
 * the right YAML shape, and the manifests fit together and with artflow:
 *  - the Job is Indexed, completions == parallelism == `--shards N` of the
 *    command, which runs `--shard auto`; restartPolicy Never; one GPU;
 *  - terminationGracePeriodSeconds exceeds `--grace` by at least 10 s (the
 *    flush after the grace), so the kubelet's SIGKILL never cuts it;
 *  - every volumeMount names a volume, every PVC / ConfigMap a volume uses is
 *    defined in the folder, and the command's files lie on a mount.
 * Writes OUT/command (the Indexed Job's container command, one argument per
 * line), OUT/env (NAME=VALUE), OUT/mounts (MOUNTPATH VOLUME-KIND NAME), OUT/
 * merge-command, and OUT/configmap/NAME/KEY for each ConfigMap entry.
 * Exit 0 when every check passes, 1 with one line per problem. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

static int problems;
static const char *cur_file;
static yaml_document_t *doc;

#define PROBLEM(...)                   \
  do {                                 \
    fprintf(stderr, "%s: ", cur_file); \
    fprintf(stderr, __VA_ARGS__);      \
    fputc('\n', stderr);               \
    problems++;                        \
  } while (0)

/* fields the API defines, per place ("Kind:path", [] = an element of a list) */
static const struct {
  const char *path, *keys;
} schema[] = {
    {"*:", "apiVersion kind metadata spec data"},
    {"*:metadata", "name namespace labels annotations"},
    {"PersistentVolumeClaim:spec", "accessModes resources storageClassName volumeMode selector volumeName"},
    {"PersistentVolumeClaim:spec.resources", "requests limits"},
    {"Job:spec",
     "completionMode completions parallelism backoffLimit backoffLimitPerIndex maxFailedIndexes "
     "podFailurePolicy "
     "template ttlSecondsAfterFinished activeDeadlineSeconds suspend selector manualSelector"},
    {"Job:spec.podFailurePolicy", "rules"},
    {"Job:spec.podFailurePolicy.rules[]", "action onExitCodes onPodConditions"},
    {"Job:spec.podFailurePolicy.rules[].onExitCodes", "containerName operator values"},
    {"Job:spec.podFailurePolicy.rules[].onPodConditions[]", "type status"},
    {"Job:spec.template", "metadata spec"},
    {"Job:spec.template.spec",
     "restartPolicy terminationGracePeriodSeconds containers initContainers volumes securityContext "
     "nodeSelector "
     "tolerations affinity serviceAccountName priorityClassName"},
    {"Job:spec.template.spec.containers[]",
     "name image command args env envFrom resources volumeMounts imagePullPolicy workingDir securityContext"},
    {"Job:spec.template.spec.containers[].env[]", "name value valueFrom"},
    {"Job:spec.template.spec.containers[].resources", "limits requests"},
    {"Job:spec.template.spec.containers[].volumeMounts[]", "name mountPath readOnly subPath"},
    {"Job:spec.template.spec.volumes[]", "name persistentVolumeClaim configMap hostPath emptyDir secret"},
    {"Job:spec.template.spec.volumes[].persistentVolumeClaim", "claimName readOnly"},
    {"Job:spec.template.spec.volumes[].configMap", "name items defaultMode optional"},
    {"Job:spec.template.spec.volumes[].hostPath", "path type"},
};

static yaml_node_t *node(int id) {
  return yaml_document_get_node(doc, id);
}

static const char *scalar(yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *get(yaml_node_t *m, const char *key) {
  if (!m || m->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    const char *k = scalar(node(p->key));
    if (k && !strcmp(k, key)) return node(p->value);
  }
  return NULL;
}

/* get(m, "a.b.c") */
static yaml_node_t *at(yaml_node_t *m, const char *path) {
  char buf[256], *save = NULL;
  snprintf(buf, sizeof buf, "%s", path);
  for (char *k = strtok_r(buf, ".", &save); k && m; k = strtok_r(NULL, ".", &save)) m = get(m, k);
  return m;
}

static int count(yaml_node_t *seq) {
  return seq && seq->type == YAML_SEQUENCE_NODE
             ? (int)(seq->data.sequence.items.top - seq->data.sequence.items.start)
             : 0;
}

static yaml_node_t *item(yaml_node_t *seq, int i) {
  return node(seq->data.sequence.items.start[i]);
}

static void check_keys(yaml_node_t *n, const char *kind, const char *path) {
  char here[512];
  if (n->type == YAML_SEQUENCE_NODE) {
    snprintf(here, sizeof here, "%s[]", path);
    for (int i = 0; i < count(n); i++) check_keys(item(n, i), kind, here);
    return;
  }
  if (n->type != YAML_MAPPING_NODE) return;
  const char *keys = NULL;
  char full[600], any[600];
  snprintf(full, sizeof full, "%s:%s", kind, path);
  snprintf(any, sizeof any, "*:%s", path);
  for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
    if (!strcmp(schema[i].path, full) || !strcmp(schema[i].path, any)) keys = schema[i].keys;
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    const char *k = scalar(node(p->key));
    if (!k) continue;
    if (keys) {
      char pad[700];
      snprintf(pad, sizeof pad, " %s ", keys);
      char want[200];
      snprintf(want, sizeof want, " %s ", k);
      if (!strstr(pad, want))
        PROBLEM("%s: unknown field '%s' (the API has: %s)", *path ? path : kind, k, keys);
    }
    snprintf(here, sizeof here, "%s%s%s", path, *path ? "." : "", k);
    check_keys(node(p->value), kind, here);
  }
}

static long number(yaml_node_t *n, const char *what) {
  const char *s = scalar(n);
  char *end;
  long v = s ? strtol(s, &end, 10) : -1;
  if (!s || !*s || *end) {
    PROBLEM("%s: expected an integer, got '%s'", what, s ? s : "(none)");
    return -1;
  }
  return v;
}

/* every document of every manifest, kept for the cross checks */
#define MAX_DOCS 16
static yaml_document_t docs[MAX_DOCS];
static char names[MAX_DOCS][256];
static int n_docs;

static yaml_node_t *find(const char *kind, const char *name) {
  for (int i = 0; i < n_docs; i++) {
    doc = &docs[i];
    yaml_node_t *r = yaml_document_get_root_node(doc);
    if (scalar(get(r, "kind")) && !strcmp(scalar(get(r, "kind")), kind) &&
        (!name || (scalar(at(r, "metadata.name")) && !strcmp(scalar(at(r, "metadata.name")), name))))
      return r;
  }
  return NULL;
}

static void write_lines(const char *out, const char *file, yaml_node_t *seq) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", out, file);
  FILE *f = fopen(path, "w");
  for (int i = 0; f && i < count(seq); i++)
    fprintf(f, "%s\n", scalar(item(seq, i)) ? scalar(item(seq, i)) : "");
  if (f) fclose(f);
}

/* The Indexed Job: fits artflow's sharding and preemption. */
static void check_job(yaml_node_t *job, const char *out) {
  cur_file = "job";
  if (!scalar(at(job, "spec.completionMode")) || strcmp(scalar(at(job, "spec.completionMode")), "Indexed"))
    PROBLEM("spec.completionMode must be Indexed (JOB_COMPLETION_INDEX is the shard)");
  long completions = number(at(job, "spec.completions"), "spec.completions");
  long parallelism = number(at(job, "spec.parallelism"), "spec.parallelism");
  if (parallelism > completions) PROBLEM("parallelism %ld above completions %ld", parallelism, completions);
  yaml_node_t *pod = at(job, "spec.template.spec");
  if (!scalar(get(pod, "restartPolicy")) || strcmp(scalar(get(pod, "restartPolicy")), "Never"))
    PROBLEM("restartPolicy must be Never (a stopped pod is replaced and resumes; podFailurePolicy needs it)");
  long tgp = number(get(pod, "terminationGracePeriodSeconds"), "terminationGracePeriodSeconds");
  yaml_node_t *cs = get(pod, "containers");
  if (count(cs) != 1) {
    PROBLEM("one container expected, found %d", count(cs));
    return;
  }
  yaml_node_t *c = item(cs, 0), *cmd = get(c, "command");
  long shards = -1, grace = 20;
  int auto_ = 0;
  for (int i = 0; i + 1 < count(cmd); i++) {
    const char *a = scalar(item(cmd, i)), *v = scalar(item(cmd, i + 1));
    if (!a || !v) continue;
    if (!strcmp(a, "--shards")) shards = strtol(v, NULL, 10);
    if (!strcmp(a, "--grace")) grace = strtol(v, NULL, 10);
    if (!strcmp(a, "--shard") && !strcmp(v, "auto")) auto_ = 1;
  }
  if (count(cmd) < 3 || !scalar(item(cmd, 0)) || strcmp(scalar(item(cmd, 0)), "artflow") ||
      strcmp(scalar(item(cmd, 1)), "run"))
    PROBLEM("the command must be 'artflow run PIPELINE ...'");
  if (!auto_) PROBLEM("the command must use --shard auto (the shard from JOB_COMPLETION_INDEX)");
  if (shards != completions) PROBLEM("--shards %ld must equal completions %ld", shards, completions);
  if (tgp < grace + 10)
    PROBLEM("terminationGracePeriodSeconds %ld must exceed --grace %ld by 10 s (the flush after the grace)",
            tgp, grace);
  const char *gpu = scalar(get(at(c, "resources.limits"), "nvidia.com/gpu")); /* a key with dots */
  if (!gpu || strcmp(gpu, "1")) PROBLEM("each pod needs one GPU: resources.limits nvidia.com/gpu: 1");
  write_lines(out, "command", cmd);
  char path[1024];
  snprintf(path, sizeof path, "%s/env", out);
  FILE *f = fopen(path, "w");
  yaml_node_t *env = get(c, "env");
  for (int i = 0; f && i < count(env); i++)
    fprintf(f, "%s=%s\n", scalar(get(item(env, i), "name")), scalar(get(item(env, i), "value")));
  if (f) fclose(f);
}

/* Mounts name volumes; volumes name objects defined here. */
static void check_volumes(yaml_node_t *job, const char *what, const char *out, const char *mounts_file) {
  cur_file = what;
  yaml_node_t *pod = at(job, "spec.template.spec"), *vols = get(pod, "volumes");
  yaml_node_t *c = item(get(pod, "containers"), 0), *vm = get(c, "volumeMounts");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", out, mounts_file);
  FILE *f = fopen(path, "w");
  for (int i = 0; i < count(vm); i++) {
    const char *name = scalar(get(item(vm, i), "name")), *mp = scalar(get(item(vm, i), "mountPath"));
    yaml_node_t *v = NULL;
    for (int k = 0; k < count(vols); k++)
      if (name && scalar(get(item(vols, k), "name")) && !strcmp(scalar(get(item(vols, k), "name")), name))
        v = item(vols, k);
    if (!v) {
      PROBLEM("volumeMount '%s' names no volume", name ? name : "?");
      continue;
    }
    const char *claim = scalar(at(v, "persistentVolumeClaim.claimName"));
    const char *cm = scalar(at(v, "configMap.name"));
    const char *host = scalar(at(v, "hostPath.path"));
    yaml_document_t *keep = doc;
    if (claim && !find("PersistentVolumeClaim", claim))
      PROBLEM("volume '%s': no PersistentVolumeClaim '%s' here", name, claim);
    if (cm && !find("ConfigMap", cm)) PROBLEM("volume '%s': no ConfigMap '%s' here", name, cm);
    doc = keep;
    if (f)
      fprintf(f, "%s %s %s\n", mp,
              claim  ? "pvc"
              : cm   ? "configmap"
              : host ? "hostpath"
                     : "other",
              claim  ? claim
              : cm   ? cm
              : host ? host
                     : "-");
  }
  if (f) fclose(f);
}

static void check_pvc(yaml_node_t *pvc) {
  cur_file = "pvc";
  yaml_node_t *modes = at(pvc, "spec.accessModes");
  if (!count(modes)) PROBLEM("spec.accessModes: none");
  if (!scalar(get(at(pvc, "spec.resources.requests"), "storage")))
    PROBLEM("spec.resources.requests.storage: none");
}

static void dump_configmap(yaml_node_t *cm, const char *out) {
  const char *name = scalar(at(cm, "metadata.name"));
  yaml_node_t *data = get(cm, "data");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/configmap", out);
  mkdir(dir, 0755);
  snprintf(dir, sizeof dir, "%s/configmap/%s", out, name ? name : "unnamed");
  mkdir(dir, 0755);
  for (yaml_node_pair_t *p = data && data->type == YAML_MAPPING_NODE ? data->data.mapping.pairs.start : NULL;
       p && p < data->data.mapping.pairs.top; p++) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, scalar(node(p->key)));
    FILE *f = fopen(path, "w");
    if (f) fputs(scalar(node(p->value)) ? scalar(node(p->value)) : "", f), fclose(f);
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: af_k8s_manifest MANIFEST_DIR OUT_DIR\n");
    return 2;
  }
  DIR *d = opendir(argv[1]);
  struct dirent *e;
  while (d && (e = readdir(d)) && n_docs < MAX_DOCS) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".yaml")) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
    FILE *f = fopen(path, "rb");
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    snprintf(names[n_docs], sizeof names[n_docs], "%s", e->d_name);
    cur_file = names[n_docs];
    for (;;) {
      if (!yaml_parser_load(&parser, &docs[n_docs])) {
        PROBLEM("YAML error: %s at line %zu", parser.problem ? parser.problem : "?",
                parser.problem_mark.line + 1);
        break;
      }
      yaml_node_t *root = yaml_document_get_root_node(&docs[n_docs]);
      if (!root) {
        yaml_document_delete(&docs[n_docs]);
        break;
      }
      doc = &docs[n_docs];
      const char *kind = scalar(get(root, "kind"));
      if (!kind || !scalar(get(root, "apiVersion")) || !scalar(at(root, "metadata.name")))
        PROBLEM("every object needs apiVersion, kind and metadata.name");
      else
        check_keys(root, kind, "");
      snprintf(names[n_docs], sizeof names[n_docs], "%s", e->d_name);
      if (++n_docs == MAX_DOCS) break;
    }
    yaml_parser_delete(&parser);
    fclose(f);
  }
  if (d) closedir(d);
  yaml_node_t *job = NULL, *merge = NULL, *pvc = find("PersistentVolumeClaim", NULL);
  for (int i = 0; i < n_docs; i++) {
    doc = &docs[i];
    yaml_node_t *r = yaml_document_get_root_node(doc);
    if (scalar(get(r, "kind")) && !strcmp(scalar(get(r, "kind")), "Job")) {
      if (scalar(at(r, "spec.completionMode")))
        job = r;
      else
        merge = r;
    }
    if (scalar(get(r, "kind")) && !strcmp(scalar(get(r, "kind")), "ConfigMap")) dump_configmap(r, argv[2]);
  }
  cur_file = argv[1];
  if (!job) PROBLEM("no Indexed Job");
  if (!pvc) PROBLEM("no PersistentVolumeClaim");
  if (pvc) check_pvc(pvc);
  for (int i = 0; job && i < n_docs; i++)
    if (yaml_document_get_root_node(&docs[i]) == job) doc = &docs[i];
  if (job) check_job(job, argv[2]), check_volumes(job, "job", argv[2], "mounts");
  for (int i = 0; merge && i < n_docs; i++)
    if (yaml_document_get_root_node(&docs[i]) == merge) doc = &docs[i];
  if (merge) {
    write_lines(argv[2], "merge-command",
                get(item(at(merge, "spec.template.spec.containers"), 0), "command"));
    check_volumes(merge, "merge", argv[2], "merge-mounts");
  }
  for (int i = 0; i < n_docs; i++) yaml_document_delete(&docs[i]);
  if (!problems) printf("af_k8s_manifest: %d objects checked\n", n_docs);
  return problems ? 1 : 0;
}
