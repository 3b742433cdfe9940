#!/usr/bin/env bash
# Latency and throughput of `artflow serve` (docs/serve.md, "Performance"):
# starts the server on 127.0.0.1 (an ephemeral port), then for each client
# count C sends REQUESTS chat completions from C clients at once (each
# client one request after another), and prints per C: requests/s, answer
# tokens/s, latency p50 / p90 / max, and the most answers the llm stage
# has generated at once so far (/health's most_generating: the batches
# requests shared).  The baseline is the
# same images through `artflow describe` in one process (the engine with no
# HTTP, batched as the llm stage's batch allows).
#
#   tools/bench_serve.sh --model M.gguf [--image IMG] [--requests 16] [--clients "1 8"]
#                        [--max-tokens 32] [--artflow build/artflow] [-- serve options...]
#
# Every request asks the same question greedily with max_tokens answer
# tokens, so requests differ only in when they arrive.  Needs curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
A=build/artflow M= IMG=examples/images/portrait.jpg N=16 CLIENTS="1 8" TOK=32 EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) M=$2; shift 2 ;;
    --image) IMG=$2; shift 2 ;;
    --requests) N=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --max-tokens) TOK=$2; shift 2 ;;
    --artflow) A=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "bench_serve: unknown option $1 (see the top of the file)" >&2; exit 2 ;;
  esac
done
[ -n "$M" ] || { echo "bench_serve: --model M.gguf is required" >&2; exit 2; }
T=$(mktemp -d); PID=
trap '[ -n "$PID" ] && kill -TERM $PID 2> /dev/null; rm -rf "$T"' EXIT
Q="Describe this artwork in one sentence."

"$A" serve --model "$M" --port 0 --queue 256 "${EXTRA[@]}" > /dev/null 2> "$T/err" &
PID=$!
for _ in $(seq 300); do grep -q 'model loaded' "$T/err" && break; sleep 0.2; done
PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/err" | grep -o '[0-9]*$')
U="http://127.0.0.1:$PORT"
jq -cn --arg q "$Q" --rawfile img <(printf 'data:image/jpeg;base64,%s' "$(base64 -w0 "$IMG")") --argjson t "$TOK" \
  '{messages: [{role: "user", content: [{type: "text", text: $q}, {type: "image_url", image_url: {url: $img}}]}],
    max_tokens: $t, temperature: 0}' > "$T/req.json"
curl -s -o /dev/null -X POST "$U/v1/chat/completions" --data-binary @"$T/req.json" # warm-up

now() { date +%s.%N; }
# client K: its share of N requests, one after another; one latency per line
client() {
  local k=$1 c=$2
  for ((i = k; i < N; i += c)); do
    curl -s -o "$T/a.$i" -w '%{time_total}\n' -X POST "$U/v1/chat/completions" --data-binary @"$T/req.json"
  done > "$T/lat.$k"
}
stats() { sort -n | awk '{v[NR] = $1} END {printf "%.3f %.3f %.3f\n", v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.999)], v[NR]}'; }

printf '%-28s %9s %9s %9s %9s %9s %7s\n' "" "req/s" "tok/s" "p50 s" "p90 s" "max s" "batch"
for C in $CLIENTS; do
  t0=$(now)
  pids=()
  for ((k = 0; k < C; k++)); do
    client $k "$C" &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(now)
  toks=0
  for ((i = 0; i < N; i++)); do
    n=$("$A" tokenize --model "$M" "$(jq -r '.choices[0].message.content' "$T/a.$i")" 2> /dev/null | wc -w)
    toks=$((toks + n))
  done
  most=$(curl -s "$U/health" | jq .most_generating)
  read -r p50 p90 mx < <(cat "$T"/lat.* | stats)
  rm -f "$T"/lat.*
  printf '%-28s %9.2f %9.1f %9s %9s %9s %7s\n' "serve, $C client(s)" "$(echo "$N $t0 $t1" | awk '{print $1 / ($3 - $2)}')" \
    "$(echo "$toks $t0 $t1" | awk '{print $1 / ($3 - $2)}')" "$p50" "$p90" "$mx" "$most"
done
kill -TERM $PID && wait $PID 2> /dev/null || true
PID=

# baseline: the same N images through describe in one process
for ((i = 0; i < N; i++)); do ln -s "$(realpath "$IMG")" "$T/img$i.${IMG##*.}"; done
t0=$(now)
"$A" describe "$T"/img*."${IMG##*.}" --model "$M" --question "$Q" --greedy --max-new-tokens "$TOK" --json \
  > /dev/null 2>&1
t1=$(now)
printf '%-28s %9.2f\n' "describe, one process" "$(echo "$N $t0 $t1" | awk '{print $1 / ($3 - $2)}')"
