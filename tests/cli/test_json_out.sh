#!/usr/bin/env bash
# Every JSON the command line prints parses as JSON (a strict parser: no
# NaN/Infinity, no raw control characters, valid UTF-8), one object per line,
# with the keys it promises: devices --json, bench --model --json (vision,
# LLM, --compare), describe --json (a file name with " and \, a file that
# fails, --max-new-tokens 0), chat --json, run with a jsonl sink on stdout.
#   test_json_out.sh          the quick commands
#   test_json_out.sh ops      bench ops --json (about a minute on 2 cores: label slow)
# Needs $ARTFLOW, $AF_SOURCE_DIR, $AF_BINARY_DIR, $AF_TEST_DATA and python3
# (INSTALL: python3-jsonschema's python3).
set -u
A=${ARTFLOW:?}; M="$AF_BINARY_DIR/demo/artgpt4-demo-random.gguf"; D="$AF_TEST_DATA/artgpt4-tiny"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { local what=$1; shift; if "$@"; then pass=$((pass+1)); else echo "FAIL: $what" >&2; fail=$((fail+1)); fi; }
# json_lines FILE N KEY...: exactly N lines, each a JSON object (strict) holding every KEY
json_lines() {
  python3 - "$@" <<'PY'
import json, sys
path, n, keys = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def constant(c):
    raise ValueError(f"{c} is not JSON")
lines = open(path, "rb").read().decode("utf-8").splitlines()
if len(lines) != n:
    sys.exit(f"{path}: {len(lines)} lines, wanted {n}")
for i, line in enumerate(lines):
    try:
        o = json.loads(line, parse_constant=constant)
    except ValueError as e:
        sys.exit(f"{path}:{i + 1}: {e}: {line[:200]}")
    if not isinstance(o, dict):
        sys.exit(f"{path}:{i + 1}: not an object")
    missing = [k for k in keys if k not in o]
    if missing:
        sys.exit(f"{path}:{i + 1}: no {missing}: {line[:200]}")
PY
}

if [ "${1:-}" = ops ]; then
  "$A" bench ops --json --repeat 1 > "$T/ops.json" 2> "$T/ops.err"
  rc=$?; check "bench ops --json exit 0 ($(tail -1 "$T/ops.err"))" test $rc -eq 0
  check "bench ops --json is one JSON object" json_lines "$T/ops.json" 1 device copy_gb_s ops gemv_dram
  echo "$pass passed, $fail failed"
  [ $fail -eq 0 ]
  exit
fi

ndev=$("$A" devices | grep -c '^[ *]\[')
"$A" devices --json > "$T/dev.json" 2> "$T/dev.err"
check "devices --json exit 0" test $? -eq 0
check "devices --json: one JSON object per device" json_lines "$T/dev.json" "$ndev" index device platform fp16 profile

if [ -s "$M" ]; then
  "$A" bench --model "$M" --repeat 1 --batch 2 --vision-only --json > "$T/bv.json" 2> "$T/bv.err"
  rc=$?; check "bench --vision-only --json exit 0 ($(tail -1 "$T/bv.err"))" test $rc -eq 0
  check "bench --vision-only --json parses" json_lines "$T/bv.json" 1 device model profile copy_gb_s runs
  "$A" bench --model "$M" --repeat 1 --batch 2 --llm-only --json > "$T/bl.json" 2> "$T/bl.err"
  rc=$?; check "bench --llm-only --json exit 0 ($(tail -1 "$T/bl.err"))" test $rc -eq 0
  check "bench --llm-only --json parses" json_lines "$T/bl.json" 1 device decode_tokens_s kv_cache_bytes
  P="$AF_SOURCE_DIR/config/profiles/pocl/cpu.yaml"
  sed -e 's/^name: .*/name: second/' "$P" > "$T/p2.yaml"
  "$A" bench --model "$M" --repeat 1 --batch 2 --llm-only --json --profile "$P" --compare "$T/p2.yaml" \
    > "$T/bc.json" 2> "$T/bc.err"
  rc=$?; check "bench --compare --json exit 0 ($(tail -1 "$T/bc.err"))" test $rc -eq 0
  check "bench --compare --json parses" json_lines "$T/bc.json" 1 device profiles ratio

  # describe --json: a name with a quote and a backslash, a file that is no image
  mkdir -p "$T/img"
  cp "$D/image.png" "$T/img/say \"hi\" back\\slash.png"
  printf 'not a png' > "$T/img/broken.png"
  "$A" describe "$T/img/say \"hi\" back\\slash.png" "$T/img/broken.png" --model "$M" --json --max-new-tokens 0 \
    > "$T/d0.json" 2> "$T/d0.err"
  check "describe --json --max-new-tokens 0 with a failed image exits 1" test $? -eq 1
  check "describe --json: two objects that parse (the failed image's has an error)" \
    json_lines "$T/d0.json" 2 image status
  check "describe --json keeps the quote and backslash" grep -qF 'say \"hi\" back\\slash.png' "$T/d0.json"
  "$A" describe "$D/image.png" --model "$M" --json --greedy --max-new-tokens 3 > "$T/d.json" 2> "$T/d.err"
  rc=$?; check "describe --json exit 0 ($(tail -1 "$T/d.err"))" test $rc -eq 0
  check "describe --json parses" json_lines "$T/d.json" 1 image text ids
  printf 'Describe it.\nAnd now?\n' | "$A" chat "$D/image.png" --model "$M" --json --greedy --max-new-tokens 2 \
    > "$T/c.json" 2> "$T/c.err"
  rc=$?; check "chat --json exit 0 ($(tail -1 "$T/c.err"))" test $rc -eq 0
  check "chat --json: one object per turn" json_lines "$T/c.json" 2 turn question answer
else
  echo "note: $M missing; bench/describe/chat part skipped" >&2
fi

# run: a jsonl sink on stdout (no model: the checksum stage)
mkdir -p "$T/files"
printf 'a' > "$T/files/one.txt"
printf 'b' > "$T/files/two \"q\".txt"
cat > "$T/p.yaml" <<Y
source: {stage: dir, path: files, extensions: [txt]}
stages:
  - stage: checksum
sinks:
  - stage: jsonl
    path: "-"
Y
"$A" run "$T/p.yaml" --progress=none -q > "$T/run.json" 2> "$T/run.err"
rc=$?; check "run with jsonl on stdout exit 0 ($(tail -1 "$T/run.err"))" test $rc -eq 0
check "run: one JSON record per file" json_lines "$T/run.json" 2 id schema_version
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
