#!/usr/bin/env bash
# Latency and throughput of `artflow serve` against `artflow describe` on the
# same images in the same run (docs/serve.md, "Performance").
#
#   tools/bench_serve.sh --model M.gguf [--images "examples/images/*"] [--requests 24]
#                        [--clients "1 8"] [--max-tokens 32] [--artflow build/artflow]
#                        [-- serve options...]
#
# Starts the server on 127.0.0.1 (a free port), warms it up (one round at
# the highest client count: the first batch of a size builds its kernels),
# then for each client count C sends REQUESTS chat completions from C
# clients at once, each client one request after another; request i asks
# about image i mod (number of images), greedily, for at most max-tokens
# answer tokens.  Per C it prints requests/s, answer tokens/s, latency p50 /
# p90 / max as the client sees it (curl's total time), and the ratio of its
# requests/s to describe's.  The server is stopped, then `artflow describe`
# takes the same REQUESTS images in one process (the engine with no HTTP,
# its model load and kernel setup inside the timing), and one image alone
# (a cold process's latency); the difference of the two is describe's rate
# once loaded.  Greedy answers are deterministic, so describe's token ids
# count the tokens of both, and the server's answers must equal describe's
# (the script says how many did).  Needs curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
A=build/artflow M= IMAGES="examples/images/*" N=24 CLIENTS="1 8" TOK=32 EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) M=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --requests) N=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --max-tokens) TOK=$2; shift 2 ;;
    --artflow) A=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "bench_serve: unknown option $1 (see the top of the file)" >&2; exit 2 ;;
  esac
done
[ -n "$M" ] || { echo "bench_serve: --model M.gguf is required" >&2; exit 2; }
# shellcheck disable=SC2206 # the pattern is meant to expand
IMG=($IMAGES)
K=${#IMG[@]}
T=$(mktemp -d); PID=
trap '[ -n "$PID" ] && kill -TERM $PID 2> /dev/null; rm -rf "$T"' EXIT
Q="Describe this artwork in one sentence."
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN {printf "%.2f", n / (b - a)}'; }
echo "machine: $(nproc) cores, $("$A" devices 2> /dev/null | head -1 | sed 's/^\*\[0\] //'), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "model: $M; $K images, $N requests per client count, at most $TOK answer tokens, greedy"

"$A" serve --model "$M" --port 0 --queue 256 "${EXTRA[@]}" > /dev/null 2> "$T/err" &
PID=$!
PORT=
for _ in $(seq 300); do
  PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/err" | grep -o '[0-9]*$' || true)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "bench_serve: the server did not start:" >&2; cat "$T/err" >&2; exit 1; }
U="http://127.0.0.1:$PORT"
for _ in $(seq 1500); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$U/health")" = 200 ] && break
  sleep 0.2
done
for ((j = 0; j < K; j++)); do
  case ${IMG[j],,} in *.png) mime=image/png ;; *) mime=image/jpeg ;; esac
  jq -cn --arg q "$Q" --rawfile img <(printf 'data:%s;base64,%s' $mime "$(base64 -w0 "${IMG[j]}")") --argjson t "$TOK" \
    '{messages: [{role: "user", content: [{type: "text", text: $q}, {type: "image_url", image_url: {url: $img}}]}],
      max_tokens: $t, temperature: 0}' > "$T/req.$j.json"
done

# client K of C: requests K, K + C, ... one after another; one latency per line
client() {
  local k=$1 c=$2
  for ((i = k; i < N; i += c)); do
    curl -s --max-time 600 -o "$T/a.$i" -w '%{time_total}\n' -X POST "$U/v1/chat/completions" \
      --data-binary @"$T/req.$((i % K)).json"
  done > "$T/lat.$k"
}
# C clients at once; prints the seconds from the first request to the last answer
round() {
  local c=$1 t0 pids=()
  t0=$(now)
  for ((k = 0; k < c; k++)); do
    client $k "$c" &
    pids+=($!)
  done
  wait "${pids[@]}"
  echo "$t0 $(now)"
}
maxc=$(printf '%s\n' $CLIENTS | sort -n | tail -1)
N_RUN=$N N=$((maxc > K ? maxc : K))
round "$maxc" > /dev/null # warm-up
N=$N_RUN
rm -f "$T"/lat.*
for C in $CLIENTS; do
  read -r t0 t1 < <(round "$C")
  sort -n "$T"/lat.* | awk '{v[NR] = $1} END {printf "%.3f %.3f %.3f\n", v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.999)], v[NR]}' \
    > "$T/stats.$C"
  echo "$t0 $t1" > "$T/time.$C"
  rm -f "$T"/lat.*
done
most=$(curl -s "$U/health" | jq .most_generating)
kill -TERM $PID && wait $PID 2> /dev/null || true
PID=

# describe: the same N images in one process, then the first alone
for ((i = 0; i < N; i++)); do
  f=${IMG[i % K]}
  ln -s "$(realpath "$f")" "$T/img$(printf %03d $i).${f##*.}"
done
d0=$(now)
"$A" describe "$T"/img*.* --model "$M" --question "$Q" --greedy --max-new-tokens "$TOK" --json > "$T/d.json" 2> /dev/null
d1=$(now)
"$A" describe "$T"/img000.* --model "$M" --question "$Q" --greedy --max-new-tokens "$TOK" --json > /dev/null 2>&1
d2=$(now)
[ "$(jq -s 'length' "$T/d.json")" = "$N" ] || { echo "bench_serve: describe answered $(jq -s length "$T/d.json") of $N" >&2; exit 1; }
toks=$(jq -s '[.[].ids | length] | add' "$T/d.json")
# the last round's answers (request i is image i mod K) against describe's
same=0
for ((i = 0; i < N; i++)); do
  [ "$(jq .choices[0].message.content "$T/a.$i")" = "$(jq -s ".[$i].text" "$T/d.json")" ] && same=$((same + 1))
done
dr=$(rate "$N" "$d0" "$d1")

printf '%-30s %8s %8s %8s %8s %8s %12s\n' "" "req/s" "tok/s" "p50 s" "p90 s" "max s" "x describe"
for C in $CLIENTS; do
  read -r t0 t1 < "$T/time.$C"
  read -r p50 p90 mx < "$T/stats.$C"
  r=$(rate "$N" "$t0" "$t1")
  printf '%-30s %8s %8s %8s %8s %8s %12s\n' "serve, $C client(s)" "$r" "$(rate "$toks" "$t0" "$t1")" "$p50" "$p90" "$mx" \
    "$(awk -v a="$r" -v b="$dr" 'BEGIN {printf "%.2f", a / b}')"
done
printf '%-30s %8s %8s %8s\n' "describe, $N images, 1 process" "$dr" "$(rate "$toks" "$d0" "$d1")" \
  "$(awk -v a="$d1" -v b="$d2" 'BEGIN {printf "%.3f", b - a}')"
loaded=$(awk -v a="$d0" -v b="$d1" -v c="$d2" -v n="$N" 'BEGIN {printf "%.2f", (n - 1) / ((b - a) - (c - b))}')
echo "  describe's p50 column: one image in a fresh process, model load included; once loaded" \
  "(the $N images' time less the one image's) describe ran $loaded req/s"
echo "most answers generated at once (the llm stage's batches): $most"
echo "serve's answers equal to describe's: $same of $N"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
