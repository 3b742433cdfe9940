#!/bin/sh
# The llm stage with batch 3 (three answers decoded together, one KV-cache
# slot each) writes the same records, in the same order, as with batch 1, on
# the demo model over examples/images (6 images: two batches of 3), greedy and
# sampled (seeded).  Compared: each record's id, status and outputs.
A=${ARTFLOW:?ARTFLOW must point at the artflow binary}
M="${AF_BINARY_DIR:?}/demo/artgpt4-demo-random.gguf"
IMG="${AF_SOURCE_DIR:?}/examples/images"
T=$(mktemp -d /tmp/af-llm-batch.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }
[ -f "$M" ] || { echo "FAIL: no demo model at $M" >&2; exit 1; }
for G in true false; do
  for B in 1 3; do
    cat > "$T/p$B$G.yaml" <<Y
model: $M
source: {stage: dir, path: "$IMG", extensions: [jpg, png]}
stages:
  - stage: decode
  - stage: preprocess
    image_size: 56
  - stage: vit
  - stage: qformer
  - stage: llm
    batch: $B
    max_new_tokens: 24
    greedy: $G
    seed: 5
sinks:
  - stage: jsonl
    path: out$B$G/records.jsonl
Y
    "$A" run "$T/p$B$G.yaml" --progress=none -q > "$T/log$B$G" 2>&1 || bad "run batch $B greedy $G: exit $? $(cat "$T/log$B$G")"
    sed 's/.*\("id":"[^"]*"\).*\("status":"[^"]*"\).*\("outputs":{[^}]*}\).*/\1 \2 \3/' \
      "$T/out$B$G/records.jsonl" > "$T/r$B$G.txt" 2>/dev/null
  done
  n=$(grep -c '"status":"ok"' "$T/r1$G.txt")
  [ "$n" -eq 6 ] || bad "greedy $G: expected 6 ok records with batch 1, got $n"
  grep -q '"llm","name":"llm","batch":3' "$T/out3$G/records.jsonl" || bad "greedy $G: the records do not show llm batch 3"
  cmp -s "$T/r1$G.txt" "$T/r3$G.txt" || bad "greedy $G: batch 3 differs from batch 1: $(diff "$T/r1$G.txt" "$T/r3$G.txt" | head -5)"
done
# without -q the stage says when each batch's prompts are prefilled (two batches of 3)
"$A" run "$T/p3true.yaml" --progress=log > "$T/log-info" 2>&1 || bad "run with progress: exit $?"
n=$(grep -c '^artflow: llm: info: 3 images: prompts prefilled in [0-9.]* s, generating$' "$T/log-info")
[ "$n" -eq 2 ] || bad "expected 2 'prompts prefilled' lines from the llm stage, got $n: $(head -5 "$T/log-info")"
[ $fail -eq 0 ] && echo "llm batch 3 = batch 1 (greedy and sampled)"
exit $fail
