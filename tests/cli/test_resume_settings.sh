#!/bin/bash
# `artflow run --resume` checks the settings the journal records (CPU-only:
# dir source -> checksum -> jsonl + csv, no model, a few seconds):
#  - a changed setting (--set or an edited YAML) stops with exit 2, names each
#    changed key with both values, and leaves the outputs and journal alone;
#  - --allow-changed goes on, appends the new settings line, and the records
#    made from then on use the new settings;
#  - the same settings, or only runtime ones (fsync, batch, --queue), resume
#    silently, without writing anything twice; so does the same pipeline named
#    by a relative or an absolute path;
#  - a format-1 journal (no settings) resumes with a warning and is checked
#    from then on.
# Needs: $ARTFLOW (set by ctest), $AF_SOURCE_DIR.
set -u
A=${ARTFLOW:?ARTFLOW must point at the artflow binary}
SRC=${AF_SOURCE_DIR:?}
T=$(mktemp -d "${TMPDIR:-/tmp}/af-resume-set-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if ! "$@"; then
    echo "FAIL: $what" >&2
    fail=1
  fi
}
has() { grep -qF -- "$2" "$1"; } # has FILE TEXT

mkdir -p "$T/img"
cp "$SRC"/examples/images/* "$T/img/"
N=$(ls "$T/img" | wc -l)
cat > "$T/p.yaml" << 'EOF'
source: {stage: dir, path: img}
stages:
  - stage: checksum
sinks:
  - stage: jsonl
    path: out/r.jsonl
  - stage: csv
    path: out/r.csv
    columns: [id, status, text.checksum]
EOF
J=$T/out/r.jsonl
JR=$T/out/r.jsonl.journal
run() { "$A" run "$T/p.yaml" --progress=none "$@" > "$T/out.txt" 2> "$T/err.txt"; }
ids() { grep -o '^{"id":"[^"]*"' "$J" | sort; }
# forget the last $1 items (as if the run had been killed before they were written)
forget() {
  local gone
  gone=$(grep -o '^{"id":"[^"]*"' "$J" | tail -n "$1" | cut -d'"' -f4)
  head -n -"$1" "$J" > "$T/j.tmp" && mv "$T/j.tmp" "$J"
  head -n -"$1" "$T/out/r.csv" > "$T/c.tmp" && mv "$T/c.tmp" "$T/out/r.csv"
  for id in $gone; do grep -vxF "D $id" "$JR" > "$T/jr.tmp" && mv "$T/jr.tmp" "$JR"; done
}

# --------------------------------------------------------------- fresh run
run
check "first run: exit 0 (got $?: $(cat "$T/err.txt"))" test $? -eq 0
check "first run: $N records" test "$(wc -l < "$J")" -eq "$N"
check "journal format 2" test "$(head -n 1 "$JR")" = "# artflow journal 2"
check "journal: settings line after the magic" grep -qE '^P [0-9a-f]{64} \{.*"checksum.max_bytes":1099511627776' <(sed -n 2p "$JR")
check "journal: no runtime-only settings" test "$(grep -c '"jsonl.fsync"\|"csv.fsync"\|batch' "$JR")" -eq 0
cp "$J" "$T/r1.jsonl"
cp "$JR" "$T/r1.journal"

# ------------------------------------------------------ changed: refused
run --resume --set checksum.max_bytes=5 --set checksum.tensor=rgb
rc=$?
check "changed --set: exit 2 (got $rc)" test $rc -eq 2
check "changed --set: names the journal and the keys" \
  has "$T/err.txt" "$JR: --resume with settings that differ from the journal's (2 changed: checksum.max_bytes, checksum.tensor)"
check "changed --set: number diff line" has "$T/err.txt" "  checksum.max_bytes: 1099511627776 -> 5"
check "changed --set: string diff line" has "$T/err.txt" '  checksum.tensor: (default) -> "rgb"'
check "changed --set: hint" has "$T/err.txt" "use --resume --allow-changed to append records made with the new settings anyway"
check "changed --set: records untouched" cmp -s "$J" "$T/r1.jsonl"
check "changed --set: journal untouched" cmp -s "$JR" "$T/r1.journal"
check "changed --set: no stage ran" test "$(grep -c 'items:' "$T/err.txt")" -eq 0

# an edited YAML, the same
sed 's/stage: checksum/{stage: checksum, max_bytes: 100000}/' "$T/p.yaml" > "$T/p2.yaml"
"$A" run "$T/p2.yaml" --progress=none --resume > /dev/null 2> "$T/err2.txt"
rc=$?
check "edited YAML: exit 2 (got $rc: $(cat "$T/err2.txt"))" test $rc -eq 2
check "edited YAML: diff line" has "$T/err2.txt" "  checksum.max_bytes: 1099511627776 -> 100000"

# ----------------------------------------------- the same settings: resumes
forget 2
run --resume
rc=$?
check "same settings: exit 0 (got $rc: $(cat "$T/err.txt"))" test $rc -eq 0
check "same settings: no warning" test ! -s "$T/err.txt" -o "$(grep -c 'warning' "$T/err.txt")" -eq 0
check "same settings: every item once" test "$(ids | uniq | wc -l)" -eq "$N" -a "$(wc -l < "$J")" -eq "$N"
check "same settings: csv rows once" test "$(tail -n +2 "$T/out/r.csv" | wc -l)" -eq "$N"
check "same settings: the forgotten items redone" grep -q '2 items' "$T/err.txt"
check "same settings: still one settings line" test "$(grep -c '^P ' "$JR")" -eq 1
run --resume
check "nothing left: nothing written" test "$(wc -l < "$J")" -eq "$N"

# runtime-only changes and another way to name the pipeline file
forget 1
run --resume --set jsonl.fsync=none --set csv.fsync=close --set checksum.batch=3 --set jsonl.hash_model=false --queue 2
rc=$?
check "runtime-only changes: exit 0 (got $rc: $(cat "$T/err.txt"))" test $rc -eq 0
check "runtime-only changes: no warning" test "$(grep -c 'warning' "$T/err.txt")" -eq 0
check "runtime-only changes: every item once" test "$(ids | uniq | wc -l)" -eq "$N" -a "$(wc -l < "$J")" -eq "$N"
forget 1
(cd "$T" && "$A" run p.yaml --progress=none --resume > /dev/null 2> "$T/err.txt")
rc=$?
check "relative pipeline path: exit 0 (got $rc: $(cat "$T/err.txt"))" test $rc -eq 0
check "relative pipeline path: every item once" test "$(wc -l < "$J")" -eq "$N"
check "still one settings line" test "$(grep -c '^P ' "$JR")" -eq 1

# ----------------------------------------------------- --allow-changed
"$A" run "$T/p.yaml" --allow-changed > /dev/null 2> "$T/err.txt"
check "--allow-changed without --resume: exit 2" test $? -eq 2
forget 2
run --resume --allow-changed --set checksum.max_bytes=5
rc=$?
check "--allow-changed: exit 0 (got $rc: $(cat "$T/err.txt"))" test $rc -eq 0
check "--allow-changed: warning with the diff" has "$T/err.txt" "  checksum.max_bytes: 1099511627776 -> 5"
check "--allow-changed: the journal gains a settings line" test "$(grep -c '^P ' "$JR")" -eq 2
check "--allow-changed: the new line holds the new value" grep -q '"checksum.max_bytes":5,' <(grep '^P ' "$JR" | tail -n 1)
check "--allow-changed: every item once" test "$(ids | uniq | wc -l)" -eq "$N" -a "$(wc -l < "$J")" -eq "$N"
check "--allow-changed: the redone items use the new settings" \
  test "$(tail -n 2 "$J" | grep -c '"status":"error","error":"[^"]*larger than max_bytes (5)')" -eq 2
check "--allow-changed: earlier records kept" test "$(head -n $((N - 2)) "$J" | grep -c '"status":"ok"')" -eq $((N - 2))
# later resumes compare with the latest settings
run --resume --set checksum.max_bytes=5
check "resume with the allowed settings: exit 0 (got $?: $(cat "$T/err.txt"))" test $? -eq 0
run --resume
check "resume with the first settings now: exit 2 (got $?)" test $? -eq 2
check "... the diff goes from the latest" has "$T/err.txt" "  checksum.max_bytes: 5 -> 1099511627776"

# ------------------------------------------------------- format-1 journal
cp "$T/r1.journal" "$JR"
cp "$T/r1.jsonl" "$J"
grep -v '^P ' "$JR" | sed '1s/.*/# artflow journal 1/' > "$T/jr.tmp" && mv "$T/jr.tmp" "$JR"
forget 1
run --resume
rc=$?
check "format 1: exit 0 (got $rc: $(cat "$T/err.txt"))" test $rc -eq 0
check "format 1: a warning naming the journal" has "$T/err.txt" "warning: $JR records no settings (journal format 1)"
check "format 1: every item once" test "$(ids | uniq | wc -l)" -eq "$N" -a "$(wc -l < "$J")" -eq "$N"
check "format 1: the settings recorded for next time" test "$(grep -c '^P ' "$JR")" -eq 1
run --resume --set checksum.max_bytes=5
check "format 1, then a change: exit 2 (got $?)" test $? -eq 2

# ------------------------------------------------------------------ help
"$A" run --help > "$T/help.txt"
check "--help documents --allow-changed" has "$T/help.txt" "--allow-changed"
exit $fail
