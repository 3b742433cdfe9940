#!/usr/bin/env bash
# `artflow describe` end to end on the demo model (the tiny release files
# converted at build time): from the raw PNG, greedy tokens and prompt ids must
# equal the ORIGINAL PyTorch code's (tests/data/artgpt4-tiny/golden); --dump
# writes every promised file; bad inputs give one-line errors.
set -u
A=${ARTFLOW:?}; M="$AF_BINARY_DIR/demo/artgpt4-demo-random.gguf"; G="$AF_TEST_DATA/artgpt4-tiny"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { local what=$1; shift; if "$@"; then pass=$((pass+1)); else echo "FAIL: $what" >&2; fail=$((fail+1)); fi; }

"$A" describe "$G/image.png" --model "$M" --greedy --max-new-tokens 12 --dump "$T/d" > "$T/out.txt" 2> "$T/err.txt"
rc=$?; check "describe exit 0 ($(head -2 "$T/err.txt"))" test $rc -eq 0
check "greedy ids equal the original's" cmp -s "$T/d/image/ids.txt" "$G/golden/ids.txt"
check "prompt ids equal the original's" cmp -s "$T/d/image/prompt_ids.txt" "$G/golden/prompt_ids.txt"
for f in pixels vit qformer proj logits0; do check "dump has $f.npy" test -s "$T/d/image/$f.npy"; done
check "pixels.npy is f32 [3,56,56]" test "$(stat -c %s "$T/d/image/pixels.npy")" -eq $((128 + 3*56*56*4))
check "plain output names the image" grep -q "image.png: " "$T/out.txt"
# the streamed answer is complete when max_new_tokens ends it (no held-back tail)
check "streamed text equals the original's answer" test "$(sed -n 's/^.*image.png: //p' "$T/out.txt")" = "$(cat "$G/golden/text.txt")"

"$A" describe "$G/image.png" --model "$M" --json --max-new-tokens 5 --seed 7 > "$T/j1" && \
"$A" describe "$G/image.png" --model "$M" --json --max-new-tokens 5 --seed 7 > "$T/j2"
check "--json with a seed is reproducible" cmp -s "$T/j1" "$T/j2"
check "--json has text and ids" grep -q '"text":' "$T/j1"

"$A" describe "$G/image.png" --model "$M" --max-new-tokens 0 > "$T/v.txt" 2>&1
check "--max-new-tokens 0 runs the vision path only" grep -q "vision path done" "$T/v.txt"

printf 'not an image' > "$T/bad.jpg"
"$A" describe "$T/bad.jpg" "$G/image.png" --model "$M" --greedy --max-new-tokens 2 > "$T/b.txt" 2> "$T/b.err"
check "a bad image fails the run (exit 1)" test $? -eq 1
check "a bad image is named in one line" grep -q "bad.jpg: not a recognised image" "$T/b.err"
check "the good image is still described" grep -q "image.png: " "$T/b.txt"

"$A" describe "$G/image.png" --model "$T/none.gguf" > /dev/null 2> "$T/m.err"
check "a missing model exits 1" test $? -eq 1
check "a missing model is named" grep -q "none.gguf" "$T/m.err"
"$A" describe "$G/image.png" --model "$M" --top-p 7 > /dev/null 2> "$T/u.err"
check "a bad flag value exits 2" test $? -eq 2
check "the bad value's flag is named" grep -q "bad value '7' for --top-p" "$T/u.err"
"$A" describe "$G/image.png" --model "$M" --max-length 1 > /dev/null 2> "$T/l.err"
rc=$?; check "--max-length 1 is refused (exit 2)" test $rc -eq 2
check "--max-length's bad value is named" grep -q "bad value '1' for --max-length" "$T/l.err"
for v in 0 -1 abc; do
  "$A" describe "$G/image.png" --model "$M" --repetition-penalty "$v" > /dev/null 2> "$T/r.err"
  rc=$?; check "--repetition-penalty $v is refused (exit 2)" test $rc -eq 2
  check "--repetition-penalty's bad value $v is named" grep -q "bad value '$v' for --repetition-penalty" "$T/r.err"
done
"$A" convert --arch a.yaml --vit v --qformer q --llm l -o o.gguf --demo > /dev/null 2> "$T/c.err"
rc=$?; check "convert --demo without a note exits 2" test $rc -eq 2
check "convert --demo without a note: one line naming it" grep -q "^artflow convert: --demo needs a value" "$T/c.err"
"$A" describe "$G/image.png" --model "$M" --greedy --max-new-tokens 12 --max-length 12 > /dev/null 2> "$T/n.err"
rc=$?; check "no room for the prompt fails (exit 1)" test $rc -eq 1
check "no room for the prompt: one line naming the image" grep -q "image.png: max_new_tokens 12 leaves no room" "$T/n.err"
# the generation flags are the llm stage's rows: every row is offered, with the
# stage's ranges (the same check a pipeline's llm: keys get)
"$A" describe --help > "$T/h.txt"
"$A" inspect stage llm > "$T/llm.txt"
for row in question max_new_tokens max_length greedy temperature top_k top_p repetition_penalty seed; do
  check "describe --help offers the llm row $row" grep -q -- "--${row//_/-}" "$T/h.txt"
  check "the llm stage has the row $row" grep -q "$row" "$T/llm.txt"
done
"$A" describe "$G/image.png" --model "$M" --max-new-tokens 5000 > /dev/null 2> "$T/x.err"
rc=$?; check "--max-new-tokens over the llm stage's maximum is refused (exit 2)" test $rc -eq 2
check "--max-new-tokens's range is the llm stage's" grep -q "bad value '5000' for --max-new-tokens: 5000 is above the maximum 2048" "$T/x.err"
# --json: a failed image is an error object, the good one is described
"$A" describe "$T/bad.jpg" "$G/image.png" --model "$M" --greedy --max-new-tokens 2 --json > "$T/bj.txt" 2> /dev/null
check "--json: a failed image is a JSON error object" grep -q '^{"image":"[^"]*bad.jpg","status":"error","error":"[^"]*not a recognised image' "$T/bj.txt"
check "--json: the good image has its object" grep -q '"image":"[^"]*image.png","status":"ok","text":' "$T/bj.txt"
# --dump: two images with the same stem get two folders
mkdir -p "$T/other"; cp "$G/image2.png" "$T/other/image.png"
"$A" describe "$G/image.png" "$T/other/image.png" --model "$M" --max-new-tokens 0 --dump "$T/dd" > /dev/null 2>&1
check "--dump: same stems get image/ and image-2/" test -s "$T/dd/image/pixels.npy" -a -s "$T/dd/image-2/pixels.npy"
differ() { ! cmp -s "$1" "$2"; }
check "--dump: the two images' pixels differ" differ "$T/dd/image/pixels.npy" "$T/dd/image-2/pixels.npy"
# a file name that is not UTF-8: --json stays valid UTF-8, the exact bytes in image_bytes
cp "$G/image.png" "$T/caf"$'\xe9'".png"
"$A" describe "$T/caf"$'\xe9'".png" --model "$M" --max-new-tokens 2 --greedy --json > "$T/u8.txt" 2> /dev/null
check "--json with a non-UTF-8 name is valid UTF-8" iconv -f UTF-8 -t UTF-8 "$T/u8.txt" -o /dev/null
check "--json with a non-UTF-8 name keeps its bytes" grep -q '"image_bytes":"[^"]*caf%E9.png"' "$T/u8.txt"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
