#!/bin/sh
# artflow run / inspect end to end with the CPU-only checksum stage: exit
# codes (0, 1 with --strict, 2 for configuration errors), error records for
# missing files, --set, and the FNV-1a values against the published test
# vectors ("" -> cbf29ce484222325, "a" -> af63dc4c8601ec8c).
A=${ARTFLOW:?ARTFLOW must point at the artflow binary}
T=$(mktemp -d /tmp/af-pipe-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

mkdir -p "$T/in"
printf '' > "$T/in/empty.bin"
printf 'a' > "$T/in/a.bin"
cat > "$T/p.yaml" <<'Y'
source: {stage: dir, path: in, extensions: []}
stages:
  - stage: checksum
sinks:
  - stage: jsonl
    path: out/records.jsonl
Y
"$A" run "$T/p.yaml" --progress=none > "$T/log" 2>&1 || bad "run: exit $? $(cat "$T/log")"
n=$(wc -l < "$T/out/records.jsonl")
[ "$n" -eq 2 ] || bad "expected 2 records, got $n"
grep '"id":"a.bin"' "$T/out/records.jsonl" | grep -q '"checksum":"af63dc4c8601ec8c"' || bad "checksum of 'a'"
grep '"id":"empty.bin"' "$T/out/records.jsonl" | grep -q '"checksum":"cbf29ce484222325"' || bad "checksum of ''"
grep -q 'checksum' "$T/log" || bad "no statistics table: $(cat "$T/log")"
grep -q '2 items: 2 ok, 0 errors' "$T/log" || bad "summary line: $(cat "$T/log")"

# a missing file becomes an error record: exit 0, or 1 with --strict
printf 'in/a.bin\nin/missing.bin\n' > "$T/list.txt"
cat > "$T/l.yaml" <<'Y'
source: {stage: list, path: list.txt}
stages: [{stage: checksum}]
sinks: [{stage: jsonl, path: out/l.jsonl}]
Y
"$A" run "$T/l.yaml" -q > "$T/log" 2>&1; rc=$?
[ $rc -eq 0 ] || bad "missing file without --strict: exit $rc $(cat "$T/log")"
grep '"status":"error"' "$T/out/l.jsonl" | grep -q 'missing.bin' || bad "no error record for missing.bin"
"$A" run "$T/l.yaml" -q --strict > "$T/log" 2>&1; rc=$?
[ $rc -eq 1 ] || bad "--strict: exit $rc"

# configuration errors: exit 2 with file:line:column, stage and key
cat > "$T/bad.yaml" <<'Y'
source: {stage: dir, path: in}
stages:
  - stage: checksum
    max_byte: 10
sinks: [{stage: jsonl, path: out/x.jsonl}]
Y
"$A" run "$T/bad.yaml" > "$T/log" 2>&1; rc=$?
[ $rc -eq 2 ] || bad "unknown key: exit $rc"
grep -q "bad.yaml:4:5: stage 'checksum': key 'max_byte': unknown key" "$T/log" || bad "unknown key message: $(cat "$T/log")"
"$A" run "$T/p.yaml" --set checksum.max_bytes=0 > "$T/log" 2>&1; rc=$?
[ $rc -eq 2 ] || bad "--set out of range: exit $rc"
grep -q "key 'max_bytes': 0 is below the minimum 1" "$T/log" || bad "--set message: $(cat "$T/log")"
"$A" run "$T/p.yaml" --set checksum.max_bytes=1 -q > "$T/log" 2>&1 || bad "--set run: exit $?"
grep '"id":"a.bin"' "$T/out/records.jsonl" | grep -q '"status":"ok"' || bad "1-byte file within max_bytes=1"
"$A" run > /dev/null 2>&1; [ $? -eq 2 ] || bad "run without a file: not exit 2"
"$A" run "$T/p.yaml" --bogus > /dev/null 2>&1; [ $? -eq 2 ] || bad "run --bogus: not exit 2"
"$A" run "$T/nonexistent.yaml" > /dev/null 2>&1; [ $? -eq 2 ] || bad "missing pipeline file: not exit 2"

# inspect
"$A" inspect stages | grep -q '^  checksum' || bad "inspect stages lacks checksum"
"$A" inspect stage checksum > "$T/log" 2>&1 || bad "inspect stage checksum: exit $?"
grep -q 'max_bytes' "$T/log" && grep -q 'outputs:' "$T/log" || bad "inspect stage: $(cat "$T/log")"
"$A" inspect stage nosuch > /dev/null 2>&1; [ $? -eq 2 ] || bad "inspect unknown stage: not exit 2"
[ $fail -eq 0 ] && echo "test_pipeline_cli: all passed"
exit $fail
