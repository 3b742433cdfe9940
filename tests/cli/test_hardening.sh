#!/bin/bash
# Unattended collection runs through `artflow run` (issue 21):
#  1. one writer per output: a second run on the same outputs (fresh or
#     --resume) exits 2 naming the first run's PID and host, writes nothing;
#  2. a model file that is not there is exit 2, as a missing source is;
#  3. a FIFO and other special files in a collection become error records
#     ("not a regular file") and the run ends; a per-item decode deadline
#     turns a decode that takes too long into that item's error;
#  4. a 255-byte file name: the npy sink's names fit NAME_MAX, the records
#     keep the full id, --resume finishes;
#  5. YAML limits through the command: exit 2 with one line.
# Needs: $ARTFLOW, $AF_SOURCE_DIR (set by ctest).  No Python.
set -u
fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if ! "$@"; then echo "FAIL: $what" >&2; fail=1; fi
}
T=$(mktemp -d "${TMPDIR:-/tmp}/af-hard-XXXXXX")
holder=
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2> /dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
SRC=${AF_SOURCE_DIR:?}
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-/tmp/pocl-cache}

# ------------------------------------------------------ 1. one writer per output
# the first run reads its items from stdin and waits there, holding the lock
cat > "$T/lock.yaml" <<EOF2
source: {stage: jsonl}
sinks:
  - stage: jsonl
    name: records
    path: out/lock.jsonl
EOF2
mkfifo "$T/feed"
(cd "$T" && exec "$ARTFLOW" run lock.yaml --progress=none < feed > lock1.out 2>&1) &
holder=$!
exec 7> "$T/feed" # the writer end: run 1 blocks reading stdin until it closes
for i in $(seq 1 100); do
  grep -q "^pid $holder " "$T/out/lock.jsonl.journal.lock" 2> /dev/null && break
  sleep 0.05
done
check "lock: the holder wrote its PID" grep -q "^pid $holder host $(hostname) started " "$T/out/lock.jsonl.journal.lock"
for mode in "" --resume; do
  (cd "$T" && "$ARTFLOW" run lock.yaml --progress=none $mode < /dev/null > lock2.out 2>&1)
  rc=$?
  check "lock: second run $mode exits 2 (got $rc)" test $rc -eq 2
  check "lock: second run $mode names PID and host" \
    grep -q "another artflow run (PID $holder on host $(hostname)) is writing these outputs" "$T/lock2.out"
done
printf '{"id": "a", "path": "nothere.jpg"}\n' >&7
exec 7>&-
wait "$holder"
rc=$?
holder=
check "lock: the first run ends normally (got $rc)" test $rc -eq 0
check "lock: one record, written by the first run" test "$(wc -l < "$T/out/lock.jsonl")" -eq 1
(cd "$T" && "$ARTFLOW" run lock.yaml --progress=none --resume < /dev/null > lock3.out 2>&1)
check "lock: released after the run (got $?)" test $? -eq 0

# ----------------------------------------------------------- 2. missing model
cat > "$T/nomodel.yaml" <<EOF2
model: no/such/model.gguf
source: {stage: list, path: list.txt}
stages:
  - stage: decode
  - stage: preprocess
  - stage: vit
sinks:
  - stage: jsonl
    path: out/nomodel.jsonl
EOF2
: > "$T/list.txt"
"$ARTFLOW" run "$T/nomodel.yaml" --progress=none > "$T/nomodel.out" 2>&1
rc=$?
check "missing model: exit 2 (got $rc)" test $rc -eq 2
check "missing model: one line naming the file" grep -q "no/such/model.gguf: model file: No such file or directory" "$T/nomodel.out"

# ------------------------------------------------ 3. special files, deadline
mkdir -p "$T/col/sub"
cp "$SRC/examples/images/landscape.jpg" "$T/col/a.jpg"
mkfifo "$T/col/b.jpg"          # a FIFO named like an image: hung the run
ln -s /dev/zero "$T/col/sub/c.png"
cp "$SRC/examples/images/portrait.jpg" "$T/col/sub/d.jpg"
cat > "$T/col.yaml" <<EOF2
source: {stage: dir, path: col}
stages:
  - stage: decode
  - stage: checksum
sinks:
  - stage: jsonl
    path: out/col.jsonl
EOF2
timeout 60 "$ARTFLOW" run "$T/col.yaml" --progress=none > "$T/col.out" 2>&1
rc=$?
check "special files: the run ends, exit 0 (got $rc)" test $rc -eq 0
J="$T/out/col.jsonl"
check "special files: 4 records" test "$(wc -l < "$J")" -eq 4
check "special files: FIFO is an error record" \
  grep -q '"id":"b.jpg",.*"status":"error","error":"[^"]*b.jpg: not a regular file (a FIFO)"' "$J"
check "special files: device is an error record" \
  grep -q '"id":"sub/c.png",.*"status":"error","error":"[^"]*c.png: not a regular file (a character device)"' "$J"
check "special files: the images are ok" test "$(grep -c '"status":"ok"' "$J")" -eq 2
# checksum alone (no decode) refuses them too
sed -i '/stage: decode/d' "$T/col.yaml"
timeout 60 "$ARTFLOW" run "$T/col.yaml" --progress=none > "$T/col2.out" 2>&1
check "checksum: the run ends, exit 0 (got $?)" test $? -eq 0
check "checksum: FIFO refused" grep -q '"id":"b.jpg",.*"error":"[^"]*b.jpg: not a regular file"' "$J"
# a deadline too short for any decode: every image is an error record, the run ends
cat > "$T/dl.yaml" <<EOF2
source: {stage: dir, path: col}
stages:
  - stage: decode
    deadline: 0.000001
sinks:
  - stage: jsonl
    path: out/dl.jsonl
EOF2
timeout 60 "$ARTFLOW" run "$T/dl.yaml" --progress=none > "$T/dl.out" 2>&1
check "deadline: exit 0 (got $?)" test $? -eq 0
# (the special files are checked on the decode's helper thread, which may not
# get to run within 1 us: only the two images are sure to meet the deadline)
for img in a.jpg sub/d.jpg; do
  check "deadline: $img fails with the deadline" \
    grep -q "\"id\":\"$img\",.*no result within the 1e-06 s decode deadline" "$T/out/dl.jsonl"
done

# ------------------------------------------------------- 4. a 255-byte name
mkdir -p "$T/long"
LONG=$(printf 'n%.0s' $(seq 1 251)).jpg
cp "$SRC/examples/images/landscape.jpg" "$T/long/$LONG"
cp "$SRC/examples/images/portrait.jpg" "$T/long/short.jpg"
cat > "$T/long.yaml" <<EOF2
source: {stage: dir, path: long}
stages:
  - stage: decode
    resize: 16
sinks:
  - stage: npy
    path: out/npy
  - stage: jsonl
    path: out/long.jsonl
EOF2
"$ARTFLOW" run "$T/long.yaml" --progress=none > "$T/long.out" 2>&1
rc=$?
check "255-byte name: exit 0 (got $rc: $(tail -n 1 "$T/long.out"))" test $rc -eq 0
check "255-byte name: two .npy files" test "$(ls "$T/out/npy" | grep -c '\.rgb\.npy$')" -eq 2
check "255-byte name: names fit NAME_MAX" test "$(ls "$T/out/npy" | awk '{ if (length($0) > 255) n++ } END { print n + 0 }')" -eq 0
check "255-byte name: the record keeps the full id" grep -q "\"id\":\"$LONG\",.*\"status\":\"ok\"" "$T/out/long.jsonl"
"$ARTFLOW" run "$T/long.yaml" --progress=none --resume > "$T/long2.out" 2>&1
check "255-byte name: --resume finishes (got $?)" test $? -eq 0
check "255-byte name: still two records" test "$(wc -l < "$T/out/long.jsonl")" -eq 2

# ------------------------------------------------------------------- 5. YAML
{
  echo "source: {stage: list, path: list.txt}"
  echo "sinks: [{stage: jsonl, path: out/y.jsonl}]"
  head -c $((1 << 20)) /dev/zero | tr '\0' '#'
  echo
} > "$T/huge.yaml"
"$ARTFLOW" run "$T/huge.yaml" --progress=none > "$T/huge.out" 2>&1
rc=$?
check "YAML over 1 MiB: exit 2 (got $rc)" test $rc -eq 2
check "YAML over 1 MiB: message" grep -q "huge.yaml: more than the 1048576 bytes a pipeline file may hold" "$T/huge.out"
exit $fail
