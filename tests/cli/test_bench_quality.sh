#!/usr/bin/env bash
# artflow bench --reference: the quality report of a quantised LLM against the
# f16 file of the same (random, tiny) weights over a text.  A model against
# itself is exact (NMSE 0, KL 0, top-1 100 %); q8_0 against f16 stays close
# (NMSE < 1e-3, top-1 >= 90 %; measured 1e-4 and 98.8 %); q4_0 is further off
# than q8_0; --json carries the same numbers; --reference without --text is a
# usage error (exit 2); a missing text file fails naming it.  bench prints the
# peak resident set next to the model file's size.
set -u
A=${ARTFLOW:?}; S=${AF_SOURCE_DIR:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { local what=$1; shift; if "$@"; then pass=$((pass+1)); else echo "FAIL: $what" >&2; fail=$((fail+1)); fi; }

for t in f16 q8_0 q4_0; do
  "$A" mkmodel --arch "$S/config/models/tiny-test.yaml" --random --type $t -o "$T/m-$t.gguf" > /dev/null 2>&1
  check "mkmodel $t" test -s "$T/m-$t.gguf"
done
head -c 2500 "$S/README.md" > "$T/text.txt"
"$A" bench --model "$T/m-f16.gguf" --reference "$T/m-f16.gguf" --text "$T/text.txt" > "$T/self.out" 2>&1
check "self exit 0 ($(tail -1 "$T/self.out"))" test $? -eq 0
check "self: exact" grep -Eq 'NMSE 0, KL divergence mean 0 \(max 0\), top-1 agreement 100.00 % \(256 of 256\)' "$T/self.out"
"$A" bench --model "$T/m-q8_0.gguf" --reference "$T/m-f16.gguf" --text "$T/text.txt" --positions 200 --json \
  > "$T/q8.json" 2> "$T/q8.err"
check "q8_0 --json exit 0 ($(tail -1 "$T/q8.err"))" test $? -eq 0
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }
check "q8_0: 200 positions" grep -q '"positions":200' "$T/q8.json"
check "q8_0: NMSE < 1e-3 ($(num nmse "$T/q8.json"))" awk -v v="$(num nmse "$T/q8.json")" 'BEGIN{exit !(v > 0 && v < 1e-3)}'
check "q8_0: top-1 >= 0.9 ($(num top1 "$T/q8.json"))" awk -v v="$(num top1 "$T/q8.json")" 'BEGIN{exit !(v >= 0.9)}'
"$A" bench --model "$T/m-q4_0.gguf" --reference "$T/m-f16.gguf" --text "$T/text.txt" --positions 200 --json \
  > "$T/q4.json" 2>&1
check "q4_0 further off than q8_0" awk -v a="$(num nmse "$T/q4.json")" -v b="$(num nmse "$T/q8.json")" 'BEGIN{exit !(a > b)}'
"$A" bench --model "$T/m-q8_0.gguf" --reference "$T/m-f16.gguf" > "$T/u.out" 2>&1
check "--reference without --text: exit 2" test $? -eq 2
"$A" bench --model "$T/m-q8_0.gguf" --reference "$T/m-f16.gguf" --text "$T/none.txt" > "$T/n.out" 2>&1
rc=$?
check "missing text: fails" test $rc -ne 0
check "missing text: named" grep -q "none.txt" "$T/n.out"
"$A" bench --model "$T/m-q8_0.gguf" --llm-only --repeat 1 --batch 2 > "$T/b.out" 2>&1
check "bench --llm-only exit 0" test $? -eq 0
check "bench prints the peak resident set" grep -Eq '^peak resident set: [0-9.]+ GB \(model file [0-9.]+ GB: [0-9.]+x\)' "$T/b.out"
echo "$pass passed, $fail failed"
test $fail -eq 0
