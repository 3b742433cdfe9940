#!/usr/bin/env bash
# `artflow chat` on the demo model (the tiny release files converted at build
# time), stdin-scripted and greedy: for every scenario of the ORIGINAL Chat's
# goldens (one image two turns; two images; the max_length truncation; a
# repetition penalty with greedy search; "<s>", "</s>", "<unk>" in questions) each
# turn's prompt segments ids, generated ids, truncation start and answer equal
# the original's.  Also: the plain output format, /reset, a failing turn that
# leaves the conversation intact, usage errors.
set -u
A=${ARTFLOW:?}; M="$AF_BINARY_DIR/demo/artgpt4-demo-random.gguf"; D="$AF_TEST_DATA/artgpt4-tiny"; G="$D/golden/chat"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { local what=$1; shift; if "$@"; then pass=$((pass+1)); else echo "FAIL: $what" >&2; fail=$((fail+1)); fi; }

for sc in one-image two-images truncated penalty special-text; do
  read -r -a args < "$G/$sc/args.txt"
  imgs=(); opts=()
  for a in "${args[@]}"; do case $a in *.png) imgs+=("$D/$a");; *) opts+=("$a");; esac; done
  "$A" chat "${imgs[@]}" --model "$M" --greedy --max-new-tokens 12 "${opts[@]}" --json --dump "$T/$sc" \
    < "$G/$sc/questions.txt" > "$T/$sc.jsonl" 2> "$T/$sc.err"
  rc=$?; check "$sc: exit 0 ($(head -2 "$T/$sc.err"))" test $rc -eq 0
  n=$(ls -d "$G/$sc"/turn* | wc -l)
  check "$sc: one JSON line per question" test "$(wc -l < "$T/$sc.jsonl")" -eq "$n"
  for t in $(seq 1 "$n"); do
    for f in prompt_ids ids info; do
      check "$sc turn $t: $f.txt equals the original's" cmp -s "$T/$sc/turn$t/$f.txt" "$G/$sc/turn$t/$f.txt"
    done
    # an answer holding a NUL byte (byte token <0x00>) cannot be a C string: ids are compared above
    if ! tr -d '\n' < "$G/$sc/turn$t/answer.txt" | grep -qaP '\x00'; then
      check "$sc turn $t: the answer equals the original's" cmp -s "$T/$sc/turn$t/answer.txt" "$G/$sc/turn$t/answer.txt"
    fi
  done
done
# describe tokenises its question as chat's first turn does
"$A" describe "$D/image.png" --model "$M" --greedy --max-new-tokens 12 --question "$(head -1 "$G/special-text/questions.txt")" \
  --dump "$T/desc-special" > /dev/null 2> "$T/desc-special.err"
for f in prompt_ids ids; do
  check "describe, special-token text: $f.txt equals the original chat's first turn" \
    cmp -s "$T/desc-special/image/$f.txt" "$G/special-text/turn1/$f.txt"
done
# tokenize splits special-token text out as the original's tokenizer does; --sentencepiece does not
check "tokenize: </s> is id 2" test "$("$A" tokenize --model "$M" 'a</s>b')" = "259 2 367 384"
check "tokenize --sentencepiece: </s> is text" test "$("$A" tokenize --sentencepiece --model "$M" 'a</s>b')" = "259 312 373 394 384"
check "truncation warns on stderr" grep -q "oldest 37 positions are left out" "$T/truncated.err"
check "JSON lines carry turn, question, answer and ids" \
  grep -q '^{"turn":2,"question":"What feelings does the painting evoke?","answer":"[^"]*","ids":\[' "$T/one-image.jsonl"

# plain output: each answer followed by a blank line; /reset starts again; empty lines are skipped
printf 'Describe this image in detail.\n\n/reset\nDescribe this image in detail.\n' |
  "$A" chat "$D/image.png" --model "$M" --greedy --max-new-tokens 12 --dump "$T/r" > "$T/plain.txt" 2> "$T/plain.err"
rc=$?; check "plain chat exit 0 ($(head -2 "$T/plain.err"))" test $rc -eq 0
first=$(head -1 "$G/one-image/turn1/answer.txt")
check "plain output: answer, blank line, answer, blank line" \
  test "$(cat "$T/plain.txt")" = "$(printf '%s\n\n%s' "$first" "$first")"
check "after /reset the first turn repeats exactly" cmp -s "$T/r/turn2/prompt_ids.txt" "$G/one-image/turn1/prompt_ids.txt"

# --question asks first; a turn that fails (an <ImageHere> in the question) leaves the history as it was
printf 'What feelings does the painting evoke?\n' |
  "$A" chat "$D/image.png" --model "$M" --greedy --max-new-tokens 12 --json --dump "$T/q" \
  --question "Describe this image in detail." > "$T/q.jsonl" 2> /dev/null
check "--question then stdin = the golden two turns" cmp -s "$T/q/turn2/prompt_ids.txt" "$G/one-image/turn2/prompt_ids.txt"
printf 'Describe this image in detail.\nlook <ImageHere>\nWhat feelings does the painting evoke?\n' |
  "$A" chat "$D/image.png" --model "$M" --greedy --max-new-tokens 12 --json --dump "$T/e" > "$T/e.jsonl" 2> "$T/e.err"
check "a failed turn makes the exit status 1" test $? -eq 1
check "the failed turn is one line naming the cause" test "$(grep -c 'turn 2: .*image places' "$T/e.err")" -eq 1
check "the turn after a failed one sees the history before it" \
  cmp -s "$T/e/turn3/prompt_ids.txt" "$G/one-image/turn2/prompt_ids.txt"

"$A" chat "$D/image.png" > /dev/null 2>&1 < /dev/null
check "chat without --model exits 2" test $? -eq 2
"$A" chat --model "$M" > /dev/null 2>&1 < /dev/null
check "chat without an image exits 2" test $? -eq 2
"$A" chat "$D/image.png" --model "$M" --max-length x > /dev/null 2>&1 < /dev/null
check "a bad --max-length exits 2" test $? -eq 2
"$A" chat "$T/none.png" --model "$M" > /dev/null 2> "$T/ni.err" < /dev/null
check "a missing image exits 1 naming it" test $? -eq 1 -a -n "$(grep none.png "$T/ni.err")"
"$A" chat --help | grep -q "/reset"
check "--help documents /reset" test $? -eq 0
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
