#!/bin/bash
# `artflow run --shard` and `artflow merge` end to end (no model: dir ->
# checksum -> jsonl):
#  1. three shards merged give the unsharded run's records (id + checksum),
#     each once; --source finds nothing missing; -o - writes to stdout;
#  2. a lost record: --source names it and its shard, exit 1, file written;
#  3. refusals write nothing: an id twice, records of other settings, outputs
#     of another shard count, a record in the wrong shard, a broken line;
#  4. the run's own refusals: --shard 3/3, a sink path without {shard},
#     --shard auto without a scheduler, all exit 2.
# Needs: $ARTFLOW (set by ctest), $AF_SOURCE_DIR.  No Python.
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
T=$(mktemp -d "${TMPDIR:-/tmp}/af-merge-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SRC=${AF_SOURCE_DIR:?}
A=${ARTFLOW:?}
unset SLURM_ARRAY_TASK_ID JOB_COMPLETION_INDEX ARTFLOW_SHARDS

mkdir -p "$T/img/sub"
for i in $(seq 1 24); do
  d=$T/img
  [ $((i % 4)) -eq 0 ] && d=$T/img/sub
  printf 'image %d %s\n' "$i" "$(head -c $((i * 37)) /dev/zero | tr '\0' x)" > "$d/img-$i.jpg"
done
cat > "$T/p.yaml" << 'EOF'
source: {stage: dir, path: img}
stages:
  - stage: checksum
sinks:
  - stage: jsonl
    path: out/shard-{shard}.jsonl
EOF
# a record's id (records may start with "schema_version")
rid() { sed -n 's/^{\("schema_version":[0-9]*,\)\{0,1\}"id":"\([^"]*\)".*/\2/p' "$@"; }
ids() { rid "$@" | sort; }
pairs() { paste -d' ' <(rid "$1") <(grep -o '"checksum":"[0-9a-f]*"' "$1") | sort; }

# ------------------------------------------------------------ 1. shards + merge
"$A" run "$T/p.yaml" -q
check "unsharded run writes shard-0.jsonl" test "$(wc -l < "$T/out/shard-0.jsonl")" -eq 24
mv "$T/out" "$T/whole"
for i in 0 1 2; do
  "$A" run "$T/p.yaml" --shard $i/3 -q
  check "shard $i/3: exit 0" test $? -eq 0
done
check "three shard files and their journals" test -f "$T/out/shard-2.jsonl" -a -f "$T/out/shard-2.jsonl.journal"
check "each shard has some items" test -s "$T/out/shard-0.jsonl" -a -s "$T/out/shard-1.jsonl" -a -s "$T/out/shard-2.jsonl"
check "provenance names the shard" grep -q '"shard":{"index":1,"count":3}' "$T/out/shard-1.jsonl"
check "settings the same in every shard" test "$(grep -ho '"settings_sha256":"[0-9a-f]*"' "$T"/out/shard-*.jsonl | sort -u | wc -l)" -eq 1
"$A" merge "$T"/out/shard-*.jsonl -o "$T/all.jsonl" --source "$T/p.yaml" > "$T/m.out" 2> "$T/m.err"
rc=$?
check "merge: exit 0 (got $rc: $(cat "$T/m.err"))" test $rc -eq 0
check "merge: nothing missing printed" test ! -s "$T/m.out"
check "merge: 24 records" test "$(wc -l < "$T/all.jsonl")" -eq 24
check "merge: each id once" test "$(ids "$T/all.jsonl" | uniq | wc -l)" -eq 24
check "merge: the unsharded run's records" diff <(pairs "$T/all.jsonl") <(pairs "$T/whole/shard-0.jsonl")
check "merge: records copied byte for byte" test "$(cat "$T"/out/shard-*.jsonl | sort | md5sum)" = "$(sort "$T/all.jsonl" | md5sum)"
check "merge: summary line" grep -q "24 records (24 ok, 0 errors) from 3 files" "$T/m.err"
"$A" merge "$T"/out/shard-*.jsonl -o - 2> /dev/null > "$T/stdout.jsonl"
check "merge -o -: to standard output" cmp -s "$T/stdout.jsonl" "$T/all.jsonl"

# ------------------------------------------------------------ 2. a lost record
mkdir -p "$T/lost"
cp "$T"/out/shard-*.jsonl "$T/lost/"
lost=$(head -n 1 "$T/lost/shard-1.jsonl" | rid)
sed -i 1d "$T/lost/shard-1.jsonl"
"$A" merge "$T"/lost/shard-*.jsonl -o "$T/lost.jsonl" --source "$T/p.yaml" > "$T/m.out" 2> "$T/m.err"
rc=$?
check "lost record: exit 1 (got $rc)" test $rc -eq 1
check "lost record: named with its shard" test "$(cat "$T/m.out")" = "$(printf '%s\tshard 1/3' "$lost")"
check "lost record: counted" grep -q "24 items, 1 missing" "$T/m.err"
check "lost record: the merge is still written" test "$(wc -l < "$T/lost.jsonl")" -eq 23

# ------------------------------------------------------------ 3. refusals
refused() { # refused WHAT PATTERN FILE...
  local what=$1 pat=$2
  shift 2
  rm -f "$T/r.jsonl"
  "$A" merge "$@" -o "$T/r.jsonl" > /dev/null 2> "$T/r.err"
  local rc=$?
  check "$what: exit 1 (got $rc)" test $rc -eq 1
  check "$what: says '$pat'" grep -q -- "$pat" "$T/r.err"
  check "$what: nothing written" test ! -e "$T/r.jsonl"
  ls "$T"/r.jsonl.merge-* > /dev/null 2>&1 && check "$what: no temporary left" false
}
cp "$T/out/shard-0.jsonl" "$T/copy-0.jsonl"
refused "an id twice" "is already in $T/out/shard-0.jsonl:1" "$T/out/shard-0.jsonl" "$T/copy-0.jsonl"
# another setting: shard 2 run with a byte limit on the checksum
"$A" run "$T/p.yaml" --shard 2/3 --set checksum.max_bytes=100000 --set jsonl.path="$T/other/shard-{shard}.jsonl" -q
refused "other settings" "made with other settings" "$T/out/shard-0.jsonl" "$T/out/shard-1.jsonl" "$T/other/shard-2.jsonl"
# another shard count
"$A" run "$T/p.yaml" --shard 1/2 --set jsonl.path="$T/two/shard-{shard}.jsonl" -q
refused "another shard count" "outputs of different shardings" "$T/out/shard-0.jsonl" "$T/two/shard-1.jsonl"
# a record whose id belongs to another shard
mkdir -p "$T/wrong"
sed 's/"shard":{"index":0,"count":3}/"shard":{"index":1,"count":3}/' "$T/out/shard-0.jsonl" > "$T/wrong/shard-1.jsonl"
refused "wrong shard" "hashes to shard 0/3, but the record says 1/3" "$T/wrong/shard-1.jsonl" "$T/out/shard-2.jsonl"
printf '{"id":"x"\n' > "$T/broken.jsonl"
refused "a broken line" "broken.jsonl:1: not a JSON record" "$T/out/shard-0.jsonl" "$T/broken.jsonl"
"$A" merge "$T/out/shard-0.jsonl" > /dev/null 2>&1
check "merge without -o: exit 2" test $? -eq 2
"$A" merge "$T/out/shard-0.jsonl" -o "$T/out/shard-0.jsonl" > /dev/null 2>&1
check "merge onto an input: exit 2" test $? -eq 2

# ------------------------------------------------------------ 4. run refusals
"$A" run "$T/p.yaml" --shard 3/3 -q 2> "$T/e"
check "--shard 3/3: exit 2" test $? -eq 2
check "--shard 3/3: says why" grep -q "index I must be an integer 0..2" "$T/e"
sed 's#out/shard-{shard}.jsonl#out/all.jsonl#' "$T/p.yaml" > "$T/flat.yaml"
"$A" run "$T/flat.yaml" --shard 0/2 -q 2> "$T/e"
check "no {shard} in the path: exit 2" test $? -eq 2
check "no {shard} in the path: file:line and the fix" grep -q "flat.yaml:5:5: stage 'jsonl': key 'path'.*put {shard} in the path" "$T/e"
"$A" run "$T/p.yaml" --shard auto -q 2> "$T/e"
check "--shard auto without a scheduler: exit 2" test $? -eq 2
JOB_COMPLETION_INDEX=1 "$A" run "$T/p.yaml" --shard auto -q 2> "$T/e"
check "JOB_COMPLETION_INDEX without a count: exit 2" test $? -eq 2
rm -rf "$T/out"
JOB_COMPLETION_INDEX=1 "$A" run "$T/p.yaml" --shard auto --shards 3 --progress=none 2> "$T/e"
check "JOB_COMPLETION_INDEX=1 --shards 3: exit 0" test $? -eq 0
check "JOB_COMPLETION_INDEX=1 --shards 3: shard 1's file" test -s "$T/out/shard-1.jsonl" -a ! -e "$T/out/shard-0.jsonl"
check "JOB_COMPLETION_INDEX=1 --shards 3: says so" grep -q "shard 1/3 (JOB_COMPLETION_INDEX=1 of 3)" "$T/e"
# shard auto resumes: a second run of the same task does nothing new
n1=$(wc -l < "$T/out/shard-1.jsonl")
JOB_COMPLETION_INDEX=1 ARTFLOW_SHARDS=3 "$A" run "$T/p.yaml" --shard auto --progress=none 2> "$T/e"
check "rerun of a task: resumes (no record twice)" test "$(wc -l < "$T/out/shard-1.jsonl")" -eq "$n1"
check "rerun of a task: skips what is done" grep -q "skipped (done earlier)" "$T/e"

[ $fail -eq 0 ] && echo "test_merge: all checks passed"
exit $fail
