#!/usr/bin/env bash
# Two-file models: `artflow convert --no-llm-base` writes our part (vision,
# Q-Former, projection, adapters, the re-trained norms, tokenizer, prompt);
# the base LLM comes from a llama.cpp-layout Vicuna GGUF (f16, q/k rows
# permuted, tokenizer.ggml.*; tests/data/artgpt4-tiny/make_llamacpp_gguf.py).
# describe --llm, chat --llm and a pipeline with model: {vision:, llm:} give
# the ORIGINAL code's greedy ids; files that do not fit give one-line errors.
set -u
A=${ARTFLOW:?}; D="$AF_TEST_DATA/artgpt4-tiny"; L="$D/vicuna-llamacpp-f16.gguf"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { local what=$1; shift; if "$@"; then pass=$((pass+1)); else echo "FAIL: $what" >&2; fail=$((fail+1)); fi; }

"$A" convert --arch "$D/arch.yaml" --vit "$D/eva_vit_g.pth" --qformer "$D/blip2_pretrained_flant5xxl.pth" \
  --llm "$D/vicuna" --adapter "$D/ArtGPT-4.pth" -o "$T/vision.gguf" --type f32 --no-llm-base > "$T/conv.txt" 2>&1
check "convert --no-llm-base exit 0 ($(tail -1 "$T/conv.txt"))" test $? -eq 0
"$A" inspect "$T/vision.gguf" > "$T/inspect.txt" 2>&1
check "our file keeps the adapters" grep -q "blk.1.adapter_up.weight" "$T/inspect.txt"
check "our file keeps the re-trained norms (ffn_norm of every layer, attn_norm of even ones)" \
  grep -q "blk.1.ffn_norm.weight" "$T/inspect.txt"
check "our file leaves out attn_norm of odd layers (not re-trained)" test -z "$(grep 'blk.1.attn_norm' "$T/inspect.txt")"
check "our file leaves out the base matrices" test -z "$(grep -E '^  (blk\.[0-9]+\.attn_q\.|token_embd|output\.weight)' "$T/inspect.txt")"

"$A" describe "$D/image.png" --model "$T/vision.gguf" --llm "$L" --greedy --max-new-tokens 12 --dump "$T/d" \
  > "$T/out.txt" 2> "$T/err.txt"
rc=$?; check "describe --llm exit 0 ($(head -2 "$T/err.txt"))" test $rc -eq 0
check "describe --llm: greedy ids equal the original's" cmp -s "$T/d/image/ids.txt" "$D/golden/ids.txt"
check "describe --llm: prompt ids equal the original's" cmp -s "$T/d/image/prompt_ids.txt" "$D/golden/prompt_ids.txt"

printf 'Describe this image in detail.\nWhat feelings does the painting evoke?\n' |
  "$A" chat "$D/image.png" --model "$T/vision.gguf" --llm "$L" --greedy --max-new-tokens 12 --json --dump "$T/c" \
  > /dev/null 2> "$T/c.err"
rc=$?; check "chat --llm exit 0 ($(head -2 "$T/c.err"))" test $rc -eq 0
check "chat --llm: turn 2 ids equal the original Chat's" cmp -s "$T/c/turn2/ids.txt" "$D/golden/chat/one-image/turn2/ids.txt"

mkdir -p "$T/img" && cp "$D/image.png" "$T/img/"
cat > "$T/p.yaml" <<Y
model: {vision: vision.gguf, llm: "$L"}
source: {stage: dir, path: img, extensions: [png]}
stages:
  - stage: decode
  - stage: preprocess
    image_size: 56
  - stage: vit
  - stage: qformer
  - stage: llm
    max_new_tokens: 12
    greedy: true
sinks:
  - stage: jsonl
    path: out/records.jsonl
Y
"$A" run "$T/p.yaml" --progress=none -q > "$T/run.txt" 2>&1
rc=$?; check "pipeline with model: {vision:, llm:} exit 0 ($(head -2 "$T/run.txt"))" test $rc -eq 0
check "pipeline: provenance names the LLM file and its hash" grep -q '"llm_model":"vicuna-llamacpp-f16.gguf",[^}]*"llm_model_sha256":"[0-9a-f]\{64\}"' "$T/out/records.jsonl"
check "pipeline: the answer equals the original's" grep -qF "\"text\":\"$(cat "$D/golden/text.txt")\"" "$T/out/records.jsonl"
sed 's/llm: "/lm: "/' "$T/p.yaml" > "$T/bad.yaml"
"$A" run "$T/bad.yaml" --progress=none -q > /dev/null 2> "$T/bad.err"
check "an unknown key under model: exits 2" test $? -eq 2
check "an unknown key under model: is named in one line" test "$(grep -c "bad.yaml:1:.*'lm'.*valid: vision, llm" "$T/bad.err")" -eq 1

# artflow export --llm-only writes the LLM as llama.cpp writes it: the export
# of the one-file model is a base LLM our --no-llm-base file runs on (q/k rows
# in llama.cpp's order, read as such without artflow.rope_layout)
"$A" convert --arch "$D/arch.yaml" --vit "$D/eva_vit_g.pth" --qformer "$D/blip2_pretrained_flant5xxl.pth" \
  --llm "$D/vicuna" --adapter "$D/ArtGPT-4.pth" -o "$T/whole.gguf" --type f32 > /dev/null 2>&1
"$A" export --llm-only --model "$T/whole.gguf" -o "$T/vicuna-export.gguf" > "$T/exp.txt" 2>&1
rc=$?; check "export --llm-only exit 0 ($(tail -1 "$T/exp.txt"))" test $rc -eq 0
check "export reports the reordered q/k rows" grep -q "q/k rows of 4 tensors reordered" "$T/exp.txt"
check "export reports the adapters left out" grep -q "8 ImageAdapter tensors" "$T/exp.txt"
"$A" inspect "$T/vicuna-export.gguf" > "$T/exp-inspect.txt" 2>&1
check "the export is a llama" grep -q "general.architecture.*llama" "$T/exp-inspect.txt"
check "the export has no adapters" test -z "$(grep -E 'adapter|^  v\.|proj\.weight' "$T/exp-inspect.txt")"
"$A" describe "$D/image.png" --model "$T/vision.gguf" --llm "$T/vicuna-export.gguf" --greedy --max-new-tokens 12 \
  --dump "$T/e" > /dev/null 2> "$T/e.err"
rc=$?; check "describe --llm EXPORT exit 0 ($(head -2 "$T/e.err"))" test $rc -eq 0
check "describe --llm EXPORT: greedy ids equal the original's" cmp -s "$T/e/image/ids.txt" "$D/golden/ids.txt"
"$A" export --llm-only --model "$T/vision.gguf" -o "$T/nobase.gguf" > /dev/null 2> "$T/nb.err"
check "export of a --no-llm-base file alone exits 1" test $? -eq 1
check "... saying to give --llm" grep -q "holds no base LLM.*--llm" "$T/nb.err"
check "... and leaves no file" test ! -e "$T/nobase.gguf"

# files that do not fit together
"$A" mkmodel --arch "$AF_SOURCE_DIR/config/models/tiny-test.yaml" --random -o "$T/other.gguf" > /dev/null 2>&1
"$A" describe "$D/image.png" --model "$T/vision.gguf" --llm "$T/other.gguf" --max-new-tokens 2 > /dev/null 2> "$T/m.err"
check "a mismatched LLM file exits 1" test $? -eq 1
check "a mismatched LLM file gives one line naming both files" \
  test "$(grep -c "vision.gguf: llama.feed_forward_length is 172 but 128 in .*other.gguf" "$T/m.err")" -eq 1
"$A" describe "$D/image.png" --model "$T/vision.gguf" --max-new-tokens 2 > /dev/null 2> "$T/n.err"
check "our file alone says the base LLM is missing" grep -q "holds no base LLM.*--llm" "$T/n.err"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
