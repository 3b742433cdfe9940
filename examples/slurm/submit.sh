#!/bin/bash
# Submits a sharded run to Slurm: the array (one shard per task) and the merge
# as a job that waits for the whole array.
#   examples/slurm/submit.sh PIPELINE.yaml OUT_DIR TASKS [sbatch options...]
# e.g. submit.sh $PWD/describe.yaml /scratch/$USER/collection 16 --partition=gpu
# The pipeline must write its outputs under $ARTFLOW_OUT with {shard} in the
# names (see describe.yaml here).  Prints the two job ids.
set -euo pipefail
[ $# -ge 3 ] || {
  sed -n 2,8p "$0" >&2
  exit 2
}
here=$(cd "$(dirname "$0")" && pwd)
ARTFLOW_PIPELINE=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
mkdir -p "$2"
ARTFLOW_OUT=$(cd "$2" && pwd)
tasks=$3
shift 3
export ARTFLOW_PIPELINE ARTFLOW_OUT
array=$(sbatch --parsable --array=0-$((tasks - 1)) "$@" "$here/artflow-array.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency=afterany:"$array" "$@" "$here/merge.sbatch")
echo "array $array ($tasks tasks), merge ${merge%%;*}: outputs in $ARTFLOW_OUT"
