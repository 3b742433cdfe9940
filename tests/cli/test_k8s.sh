#!/bin/bash
# examples/k8s: the manifests pass the structure check (af_k8s_manifest: the
# API's fields at each place, an Indexed Job whose --shards equals its
# completions, a termination grace above artflow's --grace, one GPU, volumes
# that exist), broken copies are refused for the right reason, and the Job's
# container command runs here once per JOB_COMPLETION_INDEX (the ConfigMap's
# pipeline, /data and /config mapped to folders, the demo model), followed by
# the merge Job's command: every image once, nothing missing.
# kubectl's --dry-run=client needs an API server; with one reachable
# (KUBECONFIG), the manifests are also checked with --dry-run=server.
# Needs: $ARTFLOW, $AF_SOURCE_DIR, $AF_BINARY_DIR, $AF_K8S_CHECK.
set -u
fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if ! "$@"; then
    echo "FAIL: $what" >&2
    fail=1
  fi
}
T=$(mktemp -d "${TMPDIR:-/tmp}/af-k8s-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SRC=${AF_SOURCE_DIR:?}
BIN=${AF_BINARY_DIR:?}
A=${ARTFLOW:?}
CHK=${AF_K8S_CHECK:?}
K8S=$SRC/examples/k8s
unset SLURM_ARRAY_TASK_ID JOB_COMPLETION_INDEX ARTFLOW_SHARDS

mkdir -p "$T/m"
"$CHK" "$K8S" "$T/m" > "$T/chk.out" 2>&1
check "manifests pass the structure check: $(cat "$T/chk.out")" test $? -eq 0
check "command extracted" test -s "$T/m/command"
check "pipeline extracted from the ConfigMap" test -s "$T/m/configmap/artflow-pipeline/describe.yaml"

# broken copies: each refused with its reason
broken() { # broken WHAT SED-EXPR PATTERN
  rm -rf "$T/b" && mkdir -p "$T/b/out" && cp "$K8S"/*.yaml "$T/b/"
  sed -i "$2" "$T/b/job.yaml"
  "$CHK" "$T/b" "$T/b/out" > "$T/b.err" 2>&1
  local rc=$?
  check "$1: refused (rc $rc)" test $rc -eq 1
  check "$1: says '$3' ($(head -c 300 "$T/b.err"))" grep -q -- "$3" "$T/b.err"
}
broken "a misspelt field" 's/terminationGracePeriodSeconds:/terminationGracePeriodSecond:/' "unknown field 'terminationGracePeriodSecond'"
broken "--shards not the completions" 's/completions: 4/completions: 5/' "shards 4 must equal completions 5"
broken "grace too short" 's/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: 35/' "must exceed --grace 30"
broken "a volume of no claim" 's/claimName: artflow-data/claimName: other/' "no PersistentVolumeClaim 'other'"
broken "not Indexed" 's/completionMode: Indexed/completionMode: NonIndexed/' "must be Indexed"
broken "no GPU" 's#nvidia.com/gpu: 1#nvidia.com/gpu: 0#' "one GPU"

if command -v kubectl > /dev/null 2>&1 && timeout 10 kubectl version > /dev/null 2>&1; then
  timeout 60 kubectl apply --dry-run=server -f "$K8S" > "$T/kubectl.out" 2>&1
  check "kubectl --dry-run=server: $(cat "$T/kubectl.out")" test $? -eq 0
else
  echo "test_k8s: NOTE: no Kubernetes API server reachable: kubectl's dry runs need one; the structure check stands in"
fi

# --------------------------------------------- the container command, here
data=$T/data
mkdir -p "$data/images" "$data/models"
cp "$SRC"/examples/images/* "$data/images/"
ln -s "$BIN/demo/artgpt4-demo-random.gguf" "$data/models/artgpt4.gguf"
cfg=$T/m/configmap/artflow-pipeline
map() { sed -e "s#^/data#$data#" -e "s#^/config#$cfg#" -e "s#=/data#=$data#" -e "s#=/config#=$cfg#" -e "s# /data# $data#g" -e "s# /config# $cfg#g"; }
mapfile -t cmd < <(map < "$T/m/command")
cmd[0]=$A
mapfile -t env < <(map < "$T/m/env")
shards=$(grep -A1 -x -- --shards "$T/m/command" | tail -1)
check "the Job runs $shards shards" test "$shards" -ge 2
# the demo model's sizes (the ConfigMap's pipeline reads them from the environment)
env+=(ARTFLOW_IMAGE_SIZE=56 ARTFLOW_MAX_NEW_TOKENS=8)
for ((i = 0; i < shards; i++)); do
  env "${env[@]}" JOB_COMPLETION_INDEX=$i "${cmd[@]}" > "$T/pod-$i.log" 2>&1
  check "pod $i: exit 0 ($(tail -n 3 "$T/pod-$i.log"))" test $? -eq 0
  check "pod $i: shard $i/$shards" grep -q "shard $i/$shards (JOB_COMPLETION_INDEX=$i of $shards)" "$T/pod-$i.log"
done
# a restarted pod resumes: nothing is written twice
env "${env[@]}" JOB_COMPLETION_INDEX=0 "${cmd[@]}" > "$T/pod-0-again.log" 2>&1
check "a restarted pod resumes" grep -q "skipped (done earlier)" "$T/pod-0-again.log"
mapfile -t mcmd < <(map < "$T/m/merge-command")
mcmd[2]=$(printf '%s' "${mcmd[2]}" | sed "s#artflow merge#\"$A\" merge#")
env "${env[@]}" "${mcmd[@]}" > "$T/merge.log" 2>&1
check "merge job: exit 0 ($(cat "$T/merge.log"))" test $? -eq 0
n=$(ls "$data/images" | wc -l)
check "merged: $n records" test "$(wc -l < "$data/out/all.jsonl")" -eq "$n"
for f in $(ls "$data/images"); do
  check "merged: $f once" test "$(grep -cE "^\{(\"schema_version\":[0-9]+,)?\"id\":\"$f\"" "$data/out/all.jsonl")" = 1
done
check "merged: nothing missing" test -f "$data/out/missing.txt" -a ! -s "$data/out/missing.txt"

[ $fail -eq 0 ] && echo "test_k8s: all checks passed"
exit $fail
