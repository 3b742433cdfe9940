#!/usr/bin/env bash
# Tagging end to end on the demo model (the tiny release files converted at
# build time, so the ORIGINAL model's numbers apply): `artflow tag` scores
# equal make_golden_tags.py's full forward of prompt + label (1e-4 relative),
# --json holds ranked {label, id, uri, logprob, logprob_per_token, p}; a
# describe task gives the text `artflow describe` gives; questions from item
# metadata, a missing key failing that item only; two stages writing one
# output and bad vocabularies are configuration errors (exit 2).
set -u
A=${ARTFLOW:?}; M="$AF_BINARY_DIR/demo/artgpt4-demo-random.gguf"; G="$AF_TEST_DATA/artgpt4-tiny"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { local what=$1; shift; if "$@"; then pass=$((pass+1)); else echo "FAIL: $what" >&2; fail=$((fail+1)); fi; }

# the golden question 0 and its labels (multi-token, non-ASCII)
Q=$(jq -r '.questions[0].question' "$G/golden/tags.json")
jq -r '.questions[0].labels[].label' "$G/golden/tags.json" > "$T/labels.txt"
"$A" tag "$G/image.png" --model "$M" --labels-file "$T/labels.txt" --question "$Q" --json > "$T/t.json" 2> "$T/t.err"
check "tag exit 0 ($(head -2 "$T/t.err"))" test $? -eq 0
check "one JSON line per image" test "$(wc -l < "$T/t.json")" -eq 1
check "every label scored" test "$(jq '.labels | length' "$T/t.json")" -eq "$(wc -l < "$T/labels.txt")"
worst=$(jq -n --slurpfile t "$T/t.json" --slurpfile g "$G/golden/tags.json" '
  [$g[0].questions[0].labels[] as $gl | ($t[0].labels[] | select(.label == $gl.label)) as $l
   | (($l.logprob - $gl.logprob) / $gl.logprob | fabs)] | max')
check "scores equal the original's full forward (worst relative $worst)" jq -n "$worst < 1e-4" -e
check "ranked by p, p sums to 1" jq -e '[.labels[].p] as $p | ($p == ($p | sort | reverse)) and ((($p | add) - 1) | fabs) < 1e-9' "$T/t.json"
check "fields of a label" jq -e '.labels[0] | has("label") and has("id") and has("uri") and has("logprob") and has("logprob_per_token") and has("p")' "$T/t.json"
check "per token = logprob / tokens" jq -e --slurpfile g "$G/golden/tags.json" \
  '.labels[] | select(.label == "Naïve art") | ((.logprob / .logprob_per_token) - ($g[0].questions[0].labels[] | select(.label == "Naïve art") | .ids | length) | fabs) < 1e-6' "$T/t.json"

"$A" tag "$G/image.png" --model "$M" --vocab wikiart-styles --top-k 3 > "$T/p.txt" 2> /dev/null
check "shipped vocabulary by name, --top-k 3" test "$(grep -o '(' "$T/p.txt" | wc -l)" -eq 3
"$A" tag "$G/image.png" --model "$M" --labels-file "$T/labels.txt" --mode yesno \
  --question "Does this artwork show {label}? Answer yes or no." --json > "$T/y.json" 2> /dev/null
check "yesno: p in [0,1] for every label" jq -e '[.labels[].p | select(. >= 0 and . <= 1)] | length == 9' "$T/y.json"
"$A" tag "$G/image.png" --model "$M" --labels-file "$T/labels.txt" > /dev/null 2> "$T/e1"
check "labels without a question: exit 2" test $? -eq 2
check "... naming the missing question" grep -q "no question" "$T/e1"
"$A" tag "$G/image.png" --model "$M" --vocab nope > /dev/null 2> "$T/e2"
check "unknown vocabulary: exit 2" test $? -eq 2
check "... listing the shipped ones" grep -q "artemis-emotions" "$T/e2"
"$A" inspect vocab wikiart-genres > "$T/iv.txt"
check "inspect vocab lists the labels" grep -q "still_life" "$T/iv.txt"

# a pipeline: a describe task equals artflow describe; metadata in questions
mkdir -p "$T/img" && cp "$G/image.png" "$T/img/a.png" && cp "$G/image.png" "$T/img/b.png"
printf '{"path": "img/a.png", "title": "Nuit étoilée"}\n{"path": "img/b.png"}\n' > "$T/items.jsonl"
cat > "$T/p.yaml" <<YAML
model: $M
source: {stage: jsonl, path: items.jsonl}
stages:
  - {stage: decode}
  - {stage: preprocess, image_size: 56}
  - {stage: vit}
  - {stage: qformer}
  - stage: llm
    tasks:
      - {name: said, mode: describe, greedy: true, max_new_tokens: 12}
      - {name: style, labels: [Impressionism, Ukiyo-e], question: "Which style is {meta.title}?"}
      - {name: emotion, vocabulary: artemis-emotions, top_k: 2}
sinks:
  - {stage: jsonl, name: records, path: out.jsonl}
  - {stage: csv, path: out.csv}
YAML
"$A" run "$T/p.yaml" --progress=none -q > "$T/run.out" 2>&1
rc=$?; check "pipeline with tasks runs ($(tail -1 "$T/run.out"))" test $rc -eq 0
check "describe task = artflow describe" test "$(jq -r 'select(.id == "img/a.png") | .outputs.said' "$T/out.jsonl")" = "$(cat "$G/golden/text.txt")"
check "label output is a JSON array in the record" jq -s -e 'map(select(.id == "img/a.png"))[0].outputs.emotion | length == 2' "$T/out.jsonl"
check "a missing metadata key fails that item, naming it" jq -e 'select(.id == "img/b.png") | .status == "error" and (.error | contains("title"))' "$T/out.jsonl"
check "the csv shows labels with p" grep -q 'Impressionism (' "$T/out.csv"
check "records with label outputs fit docs/record.schema.json" \
  python3 "$AF_SOURCE_DIR/tests/data/schema/validate.py" record "$T/out.jsonl"

# per_item tasks: each item's metadata holds its own task keys (what a
# server's request asks); an item without them skips the task; an item's
# question is its own text (no {meta.KEY}); an item names no files and only
# shipped vocabularies; bad keys fail that item alone
Qx='What is {meta.title} about?'
cat > "$T/pi.jsonl" <<'JSONL'
{"path": "img/a.png", "title": "x", "chat": {"question": "What is {meta.title} about?"}}
{"path": "img/b.png", "tag": {"labels": ["Impressionism", "Ukiyo-e"], "question": "Which style is it?"}}
{"path": "img/a.png", "id": "c", "tag": {"vocabulary": "../../etc/passwd"}}
{"path": "img/a.png", "id": "d", "chat": {"temperature": 500}}
{"path": "img/b.png", "id": "e", "tag": {"vocabulary": "artemis-emotions", "top_k": 3}, "chat": {}}
JSONL
cat > "$T/pi.yaml" <<YAML
model: $M
source: {stage: jsonl, path: pi.jsonl}
stages:
  - {stage: decode}
  - {stage: preprocess, image_size: 56}
  - {stage: vit}
  - {stage: qformer}
  - stage: llm
    tasks:
      - {name: said, mode: describe, per_item: chat, greedy: true, max_new_tokens: 12}
      - {name: labels, per_item: tag}
sinks: [{stage: jsonl, name: records, path: pi-out.jsonl}]
YAML
"$A" run "$T/pi.yaml" --progress=none -q > "$T/pi.out" 2>&1
check "per_item pipeline runs ($(tail -1 "$T/pi.out"))" test $? -eq 0
want=$("$A" describe "$G/image.png" --model "$M" --question "$Qx" --greedy --max-new-tokens 12 --json 2> /dev/null | jq -r .text)
check "an item's describe = artflow describe with its question, taken literally" \
  test "$(jq -r 'select(.id == "img/a.png") | .outputs.said' "$T/pi-out.jsonl")" = "$want"
check "... and no labels for it (no 'tag')" jq -s -e 'map(select(.id == "img/a.png"))[0] | .outputs | has("labels") | not' "$T/pi-out.jsonl"
check "an item's labels and question" jq -s -e 'map(select(.id == "img/b.png"))[0] | (.outputs.labels | length == 2) and (.outputs | has("said") | not)' "$T/pi-out.jsonl"
check "an item's vocabulary is a shipped name, never a path" \
  jq -s -e 'map(select(.id == "c"))[0] | .status == "error" and (.error | contains("shipped vocabulary"))' "$T/pi-out.jsonl"
check "an item's keys are checked by the rows" \
  jq -s -e 'map(select(.id == "d"))[0] | .status == "error" and (.error | contains("temperature"))' "$T/pi-out.jsonl"
check "both tasks for one item; a shipped vocabulary with top_k" \
  jq -s -e 'map(select(.id == "e"))[0] | (.outputs.labels | length == 3) and (.outputs.said | length > 0)' "$T/pi-out.jsonl"

cat > "$T/two.yaml" <<YAML
model: $M
source: {stage: jsonl, path: items.jsonl}
stages:
  - {stage: decode}
  - {stage: preprocess, image_size: 56}
  - {stage: vit}
  - {stage: qformer}
  - {stage: llm}
  - {stage: llm, name: again}
sinks: [{stage: csv, path: out2.csv}]
YAML
"$A" run "$T/two.yaml" > /dev/null 2> "$T/two.err"; rc=$?
check "two stages writing text: exit 2" test $rc -eq 2
check "... naming both" grep -q "stage 'again' output 'text': stage 'llm'" "$T/two.err"

echo "test_tag: $pass passed, $fail failed"
test $fail -eq 0
