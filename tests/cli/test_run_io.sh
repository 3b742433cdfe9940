#!/bin/bash
# End-to-end checks of sources, sinks and resume through `artflow run`:
#  1. bad inputs (missing, 0-byte, garbage, truncated) become error records
#     naming the file; exit 0, 1 with --strict; summary counts ok/errors;
#  2. the example pipeline (examples/describe.yaml) runs and writes .npy files;
#  3. a plugin stage loaded through `plugins:` and ARTFLOW_PLUGIN_PATH;
#  4. kill -9 at random moments + --resume until done: every item exactly once,
#     every line whole, in the jsonl and csv sinks.
# Needs: $ARTFLOW (set by ctest), $AF_SOURCE_DIR.  No Python.
set -u
fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if ! "$@"; then echo "FAIL: $what" >&2; fail=1; fi
}
T=$(mktemp -d "${TMPDIR:-/tmp}/af-runio-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SRC=${AF_SOURCE_DIR:?}
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-/tmp/pocl-cache}

# ---------------------------------------------------------------- 1. bad input
mkdir -p "$T/bad"
cp "$SRC/examples/images/landscape.jpg" "$T/bad/good.jpg"
: > "$T/bad/empty.jpg"
printf 'this is not an image at all' > "$T/bad/garbage.png"
head -c 2000 "$SRC/examples/images/portrait.jpg" > "$T/bad/truncated.jpg"
printf 'good.jpg\nempty.jpg\ngarbage.png\ntruncated.jpg\nmissing.jpg\n' > "$T/bad/list.txt"
cat > "$T/bad.yaml" <<EOF
source: {stage: list, path: bad/list.txt}
stages:
  - stage: decode
sinks:
  - stage: jsonl
    path: out/bad.jsonl
EOF
"$ARTFLOW" run "$T/bad.yaml" --progress=none > "$T/bad.out" 2> "$T/bad.err"
rc=$?
check "bad inputs: exit 0 without --strict (got $rc)" test $rc -eq 0
J="$T/out/bad.jsonl"
check "bad inputs: 5 records" test "$(wc -l < "$J")" -eq 5
for f in empty.jpg garbage.png truncated.jpg missing.jpg; do
  check "bad inputs: error record naming $f" \
    grep -q "\"id\":\"$f\",.*\"status\":\"error\",\"error\":\"[^\"]*$f" "$J"
done
check "bad inputs: good.jpg ok" grep -q '"id":"good.jpg",.*"status":"ok"' "$J"
check "bad inputs: summary counts" grep -Eiq '1 ok.*4 (error|failed)|ok[ =:]+1.*(error|failed)[a-z]*[ =:]+4' "$T/bad.out" "$T/bad.err"
"$ARTFLOW" run "$T/bad.yaml" --progress=none --strict > /dev/null 2>&1
rc=$?
check "bad inputs: exit 1 with --strict (got $rc)" test $rc -eq 1

# ----------------------------------------------------------- 2. example pipeline
cp -r "$SRC/examples" "$T/ex"
rm -rf "$T/ex/out"
ARTFLOW_MODEL="$AF_BINARY_DIR/demo/artgpt4-demo-random.gguf" \
  "$ARTFLOW" run "$T/ex/describe.yaml" --progress=none > "$T/ex.out" 2>&1
rc=$?
check "example pipeline: exit 0 (got $rc: $(tail -n 3 "$T/ex.out"))" test $rc -eq 0
n_img=$(ls "$T/ex/images" | grep -Eci '\.(jpg|jpeg|png)$')
check "example pipeline: one record per image" test "$(wc -l < "$T/ex/out/records.jsonl")" -eq "$n_img"
check "example pipeline: all ok" test "$(grep -c '"status":"ok"' "$T/ex/out/records.jsonl")" -eq "$n_img"
check "example pipeline: one proj.npy per image" test "$(ls "$T/ex/out/npy" | grep -c '\.proj\.npy$')" -eq "$n_img"
# the demo model's image embeddings: float32 [8 queries, 64] after the 128-byte header
f=$(ls "$T/ex/out/npy"/*.proj.npy | head -n 1)
check "example pipeline: npy size" test "$(stat -c %s "$f")" -eq $((128 + 8 * 64 * 4))
# the demo model says it is one: a warning on stderr and a note in every record's provenance
check "example pipeline: DEMO warning" grep -q "holds DEMO weights (toy-size ArtGPT-4 with random weights)" "$T/ex.out"
check "example pipeline: demo note in the records" \
  test "$(grep -c '"provenance":{[^}]*"demo":"toy-size ArtGPT-4 with random weights"' "$T/ex/out/records.jsonl")" -eq "$n_img"

# a preprocess size the model cannot take: configuration error (exit 2) before
# any item is read, naming both stages, both shapes and the model file
rm -rf "$T/ex/out"
ARTFLOW_MODEL="$AF_BINARY_DIR/demo/artgpt4-demo-random.gguf" \
  "$ARTFLOW" run "$T/ex/describe.yaml" --progress=none --set preprocess.image_size=224 > "$T/mis.out" 2>&1
rc=$?
check "shape mismatch: exit 2 (got $rc)" test $rc -eq 2
check "shape mismatch: one line naming stages, shapes and the model" \
  grep -q "stage 'preprocess' output 'pixels' f32\[3,224,224\].*stage 'vit' input 'pixels' f32\[3,56,56\].*S = 56 from the model .*artgpt4-demo-random.gguf" "$T/mis.out"
check "shape mismatch: no record written" test ! -s "$T/ex/out/records.jsonl"

# JSON Lines on stdin -> csv with metadata columns (relative paths: the cwd)
cat > "$T/stdin.yaml" <<EOF
source: {stage: jsonl}
stages:
  - stage: decode
sinks:
  - stage: csv
    path: out/stdin.csv
    columns: [id, status, meta.artist, tensor.rgb]
EOF
(cd "$T/ex" && printf '%s\n' '{"path": "images/banner.jpg", "id": "obj-1", "artist": "Anon, \"the\" elder"}' \
   '{"path": "images/nothere.jpg", "id": "obj-2"}' |
   "$ARTFLOW" run "$T/stdin.yaml" --progress=none > /dev/null 2>&1)
check "stdin source: exit 0 (got $?)" test $? -eq 0
check "stdin source: csv rows" diff <(cat "$T/out/stdin.csv") <(printf '%s\r\n' 'id,status,meta.artist,tensor.rgb' \
  'obj-1,ok,"Anon, ""the"" elder","u8[90,200,3]"' 'obj-2,error,,')

# ------------------------------------------------------------------ 3. plugins
PLUGDIR=${AF_BINARY_DIR:-}/plugins
if [ -f "$PLUGDIR/af_plugin_dhash.so" ]; then
  cat > "$T/plug.yaml" <<EOF
plugins: [af_plugin_dhash.so]
source: {stage: dir, path: ex/images}
stages:
  - stage: decode
  - stage: dhash
sinks:
  - stage: jsonl
    path: out/plug.jsonl
EOF
  ARTFLOW_PLUGIN_PATH="$PLUGDIR" "$ARTFLOW" run "$T/plug.yaml" --progress=none > "$T/plug.out" 2>&1
  rc=$?
  check "plugin pipeline: exit 0 (got $rc: $(tail -n 2 "$T/plug.out"))" test $rc -eq 0
  check "plugin pipeline: a 64-bit dhash per image" \
    test "$(grep -c '"outputs":{"dhash":"[0-9a-f]\{16\}"}' "$T/out/plug.jsonl")" -eq "$n_img"
  # not found: a configuration error (exit 2) naming the file
  sed 's/af_plugin_dhash.so/no_such_plugin.so/' "$T/plug.yaml" > "$T/noplug.yaml"
  ARTFLOW_PLUGIN_PATH="$PLUGDIR" "$ARTFLOW" run "$T/noplug.yaml" --progress=none > "$T/noplug.out" 2>&1
  rc=$?
  check "missing plugin: exit 2 (got $rc)" test $rc -eq 2
  check "missing plugin: message names it" grep -q 'no_such_plugin.so' "$T/noplug.out"
else
  echo "FAIL: $PLUGDIR/af_plugin_dhash.so not built" >&2
  fail=1
fi

# --------------------------------------------------------- 4. kill and resume
N=3000
mkdir -p "$T/kr"
for i in $(seq 1 $N); do echo "img-$i.jpg"; done > "$T/kr/list.txt"
cat > "$T/kr.yaml" <<EOF
source: {stage: list, path: kr/list.txt}
sinks:
  - stage: jsonl
    path: out/kr.jsonl
    fsync: none
  - stage: csv
    path: out/kr.csv
    fsync: none
    columns: [id, status]
EOF
kills=0
resume=""
for round in $(seq 1 60); do
  "$ARTFLOW" run "$T/kr.yaml" --progress=none $resume > /dev/null 2>&1 &
  pid=$!
  sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
  if kill -9 "$pid" 2> /dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2> /dev/null
  resume=--resume
  K="$T/out/kr.jsonl"
  [ -f "$K" ] || continue
  # whole lines only (a torn tail without '\n' is allowed until the resume)
  bad=$(head -n "$(wc -l < "$K")" "$K" | grep -vc '^{"id":"img-[0-9]*\.jpg",.*}$')
  dup=$(grep -o '^{"id":"[^"]*"' "$K" | sort | uniq -d | wc -l)
  check "round $round: $bad broken lines, $dup duplicated ids" test "$bad" -eq 0 -a "$dup" -eq 0
  [ "$bad" -eq 0 ] && [ "$dup" -eq 0 ] || break
done
"$ARTFLOW" run "$T/kr.yaml" --progress=none --resume > "$T/kr.out" 2>&1
check "final resume exits 0" test $? -eq 0
K="$T/out/kr.jsonl"
check "kill/resume: $kills kills" test $kills -ge 5
check "kill/resume: every line whole" test "$(grep -c '^{"id":"img-[0-9]*\.jpg",.*}$' "$K")" -eq "$(wc -l < "$K")"
check "kill/resume: each item once in jsonl" test "$(grep -o '^{"id":"[^"]*"' "$K" | sort -u | wc -l)" -eq $N -a "$(wc -l < "$K")" -eq $N
check "kill/resume: each item once in csv" test "$(tail -n +2 "$T/out/kr.csv" | cut -d, -f1 | sort -u | wc -l)" -eq $N -a "$(tail -n +2 "$T/out/kr.csv" | wc -l)" -eq $N
echo "kill/resume: $kills kills over $round rounds, $N items"
exit $fail
