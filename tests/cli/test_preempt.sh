#!/bin/bash
# Preemption end to end, on the demo model with a test plugin stage (`slow`,
# tests/plugins/slow.c) that makes each batch take long enough for the signal
# to land mid-batch:
#  1. SIGTERM mid-run with --grace 1: exit 75 within grace + 2 s, the message
#     names what was done and what is abandoned; --resume then gives the same
#     records (id, status, answer) as an uninterrupted run, each once;
#  2. the same when a stage call outlasts the grace (a 3 s batch): the run
#     leaves that thread behind and still exits 75 in time;
#  3. a second SIGTERM ends the process at once (by the signal); resumable.
# Needs: $ARTFLOW, $AF_SOURCE_DIR, $AF_BINARY_DIR (the demo model, the plugin).
set -u
fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if ! "$@"; then
    echo "FAIL: $what" >&2
    fail=1
  fi
}
T=$(mktemp -d "${TMPDIR:-/tmp}/af-preempt-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SRC=${AF_SOURCE_DIR:?}
BIN=${AF_BINARY_DIR:?}
A=${ARTFLOW:?}
MODEL=$BIN/demo/artgpt4-demo-random.gguf
PLUGIN=$BIN/tests/pipeline/af_test_slow.so
for f in "$MODEL" "$PLUGIN"; do
  [ -f "$f" ] || {
    echo "test_preempt: $f is missing (build the demo model and the test plugins)" >&2
    exit 1
  }
done

mkdir -p "$T/img"
for k in 1 2 3 4; do
  for f in "$SRC"/examples/images/*; do cp "$f" "$T/img/$k-$(basename "$f")"; done
done
pipeline() { # pipeline OUT.yaml MS_PER_ITEM OUTPUT
  cat > "$1" << EOF
model: $MODEL
plugins: [$PLUGIN]
source: {stage: dir, path: img}
stages:
  - stage: decode
  - {stage: preprocess, image_size: 56}
  - {stage: slow, ms: $2, batch: 4}
  - stage: vit
  - stage: qformer
  - {stage: llm, max_new_tokens: 8, greedy: true}
sinks:
  - {stage: jsonl, path: $3}
EOF
}
# what a record says, without times: id, status, answer
records() {
  paste -d' ' <(sed -n 's/^{\("schema_version":[0-9]*,\)\{0,1\}\("id":"[^"]*","path":"[^"]*","status":"[a-z]*"\).*/\2/p' "$1") \
    <(grep -o '"outputs":{[^}]*}' "$1") | sort
}
now() { date +%s.%N; }
elapsed_ok() { awk -v a="$1" -v b="$2" -v lim="$3" 'BEGIN { exit !(b - a <= lim) }'; }

pipeline "$T/ref.yaml" 50 out/ref.jsonl
"$A" run "$T/ref.yaml" -q 2> "$T/ref.err"
check "reference run: exit 0" test $? -eq 0
check "reference run: 24 records" test "$(wc -l < "$T/out/ref.jsonl")" -eq 24

# run_and_signal NAME YAML GRACE SIGNALS: starts the run, waits for its first
# record, sends SIGTERM (twice when SIGNALS=2), records status and seconds
run_and_signal() {
  local name=$1 yaml=$2 grace=$3 sigs=$4 out=$5
  "$A" run "$yaml" --grace "$grace" --progress=none 2> "$T/$name.err" &
  local pid=$! i=0
  while [ "$(cat "$out" 2> /dev/null | wc -l)" -lt 1 ] && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  sleep 0.3 # into the next batch
  t_sig=$(now)
  kill -TERM $pid
  [ "$sigs" = 2 ] && sleep 0.2 && kill -TERM $pid
  wait $pid
  status=$?
  t_end=$(now)
}

# ------------------------------------------------ 1. SIGTERM mid-batch
pipeline "$T/p1.yaml" 400 out/p1.jsonl
run_and_signal p1 "$T/p1.yaml" 1 1 "$T/out/p1.jsonl"
check "SIGTERM: exit 75 (got $status)" test $status -eq 75
check "SIGTERM: ended within grace + 2 s" elapsed_ok "$t_sig" "$t_end" 3
check "SIGTERM: says what was done and abandoned" grep -q "interrupted by SIGTERM.*items done in this run, [0-9]* abandoned: [1-4]-" "$T/p1.err"
check "SIGTERM: says how to go on" grep -q "p1.yaml --resume. redoes the abandoned items" "$T/p1.err"
n=$(wc -l < "$T/out/p1.jsonl")
check "SIGTERM: stopped before the end ($n records)" test "$n" -lt 24
check "SIGTERM: whole lines only" test "$(grep -c '}}$' "$T/out/p1.jsonl")" -eq "$n"
AF_TEST_SLOW_MS=50 "$A" run "$T/p1.yaml" --resume -q 2> "$T/p1r.err"
check "resume: exit 0" test $? -eq 0
check "resume: the uninterrupted run's records" diff <(records "$T/out/p1.jsonl") <(records "$T/out/ref.jsonl")

# ------------------------------------------------ 2. a call outlasting the grace
pipeline "$T/p2.yaml" 1500 out/p2.jsonl
# the first batch (6 s) must pass before a record exists: signal in the 2nd
run_and_signal p2 "$T/p2.yaml" 1 1 "$T/out/p2.jsonl"
check "stuck call: exit 75 (got $status)" test $status -eq 75
check "stuck call: ended within grace + 2 s" elapsed_ok "$t_sig" "$t_end" 3
check "stuck call: says a stage was left" grep -q "did not finish its call within the grace" "$T/p2.err"
AF_TEST_SLOW_MS=50 "$A" run "$T/p2.yaml" --resume -q 2> /dev/null
check "stuck call, resumed: the uninterrupted run's records" diff <(records "$T/out/p2.jsonl") <(records "$T/out/ref.jsonl")

# ------------------------------------------------ 3. a second signal
pipeline "$T/p3.yaml" 400 out/p3.jsonl
run_and_signal p3 "$T/p3.yaml" 30 2 "$T/out/p3.jsonl"
check "second SIGTERM: killed by it (got $status)" test $status -eq 143
check "second SIGTERM: at once" elapsed_ok "$t_sig" "$t_end" 2
check "second SIGTERM: says so" grep -q "second signal: exiting now" "$T/p3.err"
AF_TEST_SLOW_MS=50 "$A" run "$T/p3.yaml" --resume -q 2> /dev/null
check "second SIGTERM, resumed: the uninterrupted run's records" diff <(records "$T/out/p3.jsonl") <(records "$T/out/ref.jsonl")

[ $fail -eq 0 ] && echo "test_preempt: all checks passed"
exit $fail
