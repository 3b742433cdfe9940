#!/usr/bin/env bash
# artflow serve end to end on the demo model, over real HTTP on 127.0.0.1
# (an ephemeral port): /health; a chat completion answers what `artflow
# describe` answers (image as a data: URL, a path under --files, a file://
# URL); stream: true is OpenAI's chunks ending in [DONE], the deltas adding
# up to the answer; /v1/tag ranks as `artflow tag --json` does (a shipped
# vocabulary, inline labels in choose and yesno mode); concurrent clients
# get the answers they get alone and share the llm's batches; bad requests
# get 400 with a reason (malformed JSON, turns, options the llm rows refuse,
# paths outside --files, URLs the server will not fetch, bytes that are no
# image, and never the server's temporary file name); an unknown path 404;
# an image over --max-pixels and a body over --max-body get 413; a full
# queue 503 with Retry-After; a client that disconnects mid-stream cancels
# its answer and the server goes on; a second server on the port exits 2;
# SIGTERM stops it cleanly (exit 0, within the grace) with the answers in
# flight delivered and its temporary folder removed.  Answers are greedy, so
# "equal" is exact: a streamed answer equals the non-streamed one and
# describe's; choose-mode p over inline labels sum to 1.  No sanitizer
# report may appear in any log (the test passes under ASan/UBSan too).
set -u
A=${ARTFLOW:?}; M="$AF_BINARY_DIR/demo/artgpt4-demo-random.gguf"; G="$AF_TEST_DATA/artgpt4-tiny"
T=$(mktemp -d); PID=; WATCH=
# the server never outlives the test: the trap on a normal end, the watchdog
# when the shell itself is killed (ctest's timeout)
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2> /dev/null
  [ -n "$WATCH" ] && kill "$WATCH" 2> /dev/null
  rm -rf "$T"
}
trap cleanup EXIT
pass=0; fail=0
check() { local what=$1; shift; if "$@" > /dev/null; then pass=$((pass+1)); else echo "FAIL: $what" >&2; fail=$((fail+1)); fi; }
# no request may hang the test: each gets 120 s (a 150-token answer queued
# behind 7 others takes seconds on a busy 2-core machine under ASan)
curl() { command curl --max-time 120 "$@"; }
# gives up at once, with the server's log, when starting failed
die() { echo "FAIL: $*" >&2; echo "--- server log ---" >&2; tail -30 "$T/err" >&2; exit 1; }

mkdir -p "$T/files/sub" "$T/tmp"
cp "$G/image.png" "$T/files/a.png"                       # 70 x 45 = 3150 pixels
cp "$G/image.png" "$T/secret.png"                        # outside --files
cp "$AF_SOURCE_DIR/examples/images/banner.jpg" "$T/files/big.jpg" # 200 x 90: over --max-pixels 3200
printf 'not an image at all\n' > "$T/files/text.png"

# ---- start: listen on an ephemeral port, wait for the model ----
TMPDIR="$T/tmp" "$A" serve --model "$M" --port 0 --files "$T/files" --queue 8 --max-pixels 3200 \
  --max-body 64K --grace 5 > "$T/out" 2> "$T/err" &
PID=$!
(
  while kill -0 $$ 2> /dev/null; do sleep 1; done
  kill -9 "$PID" 2> /dev/null
) > /dev/null 2>&1 &
WATCH=$!
# the port is bound before the model loads; then /health says 200 once it is
# loaded (cold PoCL kernel caches on a busy machine: minutes)
PORT=
for _ in $(seq 300); do
  PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$T/err" | grep -o '[0-9]*$')
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2> /dev/null || break
  sleep 0.1
done
[ -n "$PORT" ] || die "the server did not listen within 30 s"
U="http://127.0.0.1:$PORT"
code=
for _ in $(seq 1200); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$U/health")
  [ "$code" = 200 ] && break
  kill -0 "$PID" 2> /dev/null || die "the server exited while loading"
  sleep 0.2
done
[ "$code" = 200 ] || die "/health did not say 200 within 240 s (last: $code)"
curl -s "$U/health" > "$T/health.json"
check "/health: 200 ok once the model is loaded" jq -e '.status == "ok" and .queue.capacity == 8' "$T/health.json"
check "/v1/models lists the model" test "$(curl -s "$U/v1/models" | jq -r '.data[0].id')" = artgpt4-demo-random

# post PATH BODY_FILE OUT: the status code
post() { curl -s -o "$3" -w '%{http_code}' -X POST "$U$1" -H 'Content-Type: application/json' --data-binary @"$2"; }
# chat IMAGE_URL [extra JSON] > body: one user message, the question, greedy, 12 tokens
Q="What is in this picture?"
chat() {
  jq -cn --arg q "$Q" --rawfile u <(printf '%s' "$1") --argjson x "${2:-{\}}" \
    '{model: "any", messages: [{role: "user", content: [{type: "text", text: $q},
      {type: "image_url", image_url: {url: $u}}]}], max_tokens: 12, temperature: 0} + $x'
}
DATA="data:image/png;base64,$(base64 -w0 "$T/files/a.png")"

# ---- answers: what artflow describe / tag answer ----
"$A" describe "$G/image.png" --model "$M" --question "$Q" --greedy --max-new-tokens 12 --json > "$T/d12.json" 2>> "$T/cli.err"
check "describe (the reference): exit 0" test $? = 0
want=$(jq .text "$T/d12.json")
chat "$DATA" > "$T/c1.json"
check "chat completion: 200" test "$(post /v1/chat/completions "$T/c1.json" "$T/r1.json")" = 200
check "... OpenAI's shape" jq -e '.object == "chat.completion" and .choices[0].message.role == "assistant" and .choices[0].finish_reason == "stop" and .model == "artgpt4-demo-random"' "$T/r1.json"
check "... the answer of artflow describe ($want)" test "$(jq .choices[0].message.content "$T/r1.json")" = "$want"
chat "a.png" > "$T/c2.json"
post /v1/chat/completions "$T/c2.json" "$T/r2.json" > /dev/null
check "a path under --files: the same answer" test "$(jq .choices[0].message.content "$T/r2.json")" = "$want"
chat "file://$T/files/a.png" > "$T/c3.json"
post /v1/chat/completions "$T/c3.json" "$T/r3.json" > /dev/null
check "a file:// URL: the same answer" test "$(jq .choices[0].message.content "$T/r3.json")" = "$want"

chat "$DATA" '{"stream": true}' > "$T/s.json"
curl -sN -D "$T/s.head" -X POST "$U/v1/chat/completions" --data-binary @"$T/s.json" > "$T/s.sse"
check "stream: text/event-stream" grep -qi '^content-type: text/event-stream' "$T/s.head"
check "stream: ends with data: [DONE]" test "$(grep '^data: ' "$T/s.sse" | tail -1)" = "data: [DONE]"
grep '^data: {' "$T/s.sse" | sed 's/^data: //' > "$T/s.chunks"
check "stream: every event a chat.completion.chunk" jq -s -e 'length > 2 and all(.object == "chat.completion.chunk")' "$T/s.chunks"
check "stream: role first, finish_reason last" jq -s -e '(.[0].choices[0].delta.role == "assistant") and (.[-1].choices[0].finish_reason == "stop")' "$T/s.chunks"
check "stream: the deltas add up to the answer" test "$(jq -s '[.[].choices[0].delta.content // ""] | add' "$T/s.chunks")" = "$want"
check "stream: the same answer as without streaming" \
  test "$(jq -s '[.[].choices[0].delta.content // ""] | add' "$T/s.chunks")" = "$(jq .choices[0].message.content "$T/r1.json")"
check "stream: every event is one 'data: ' line and a blank line" \
  awk '/^data: ./ {d++; next} /^$/ {b++; next} {bad = 1} END {exit !(!bad && d > 2 && d == b)}' "$T/s.sse"

jq -cn --arg u "$DATA" '{image: $u, vocabulary: "artemis-emotions", top_k: 3}' > "$T/t1.json"
check "tag: 200" test "$(post /v1/tag "$T/t1.json" "$T/tr1.json")" = 200
"$A" tag "$G/image.png" --model "$M" --vocab artemis-emotions --top-k 3 --json > "$T/tag.json" 2>> "$T/cli.err"
check "tag (the reference): exit 0" test $? = 0
check "tag: the labels of artflow tag --json" jq -e --slurpfile t "$T/tag.json" '.labels == $t[0].labels and .vocabulary == "artemis-emotions"' "$T/tr1.json"
check "tag: 3 labels ranked by p" jq -e '(.labels | length == 3) and ([.labels[].p] | . == (sort | reverse))' "$T/tr1.json"
jq -cn '{image: "a.png", labels: ["a river", "a portrait", "mountains"], mode: "yesno",
         question: "Does this artwork show {label}? Answer yes or no."}' > "$T/t2.json"
post /v1/tag "$T/t2.json" "$T/tr2.json" > /dev/null
check "tag: inline labels, yesno" jq -e '(.labels | length == 3) and all(.labels[]; .p >= 0 and .p <= 1 and has("logprob_per_token"))' "$T/tr2.json"
jq -cn '{image: "a.png", labels: ["a river", "a portrait", "mountains"], mode: "choose",
         question: "What does this artwork show?"}' > "$T/t3.json"
check "tag: inline labels, choose: 200" test "$(post /v1/tag "$T/t3.json" "$T/tr3.json")" = 200
check "tag: every label once, ranked by p, the p summing to 1 ($(jq -c '[.labels[].p]' "$T/tr3.json"))" \
  jq -e '([.labels[].label] | sort == ["a portrait", "a river", "mountains"]) and ([.labels[].p] | . == (sort | reverse))
         and ([.labels[].p] | add - 1 | fabs < 1e-5)' "$T/tr3.json"

# ---- concurrent clients share batches and get their lone answers ----
"$A" describe "$G/image.png" --model "$M" --question "$Q" --greedy --max-new-tokens 48 --json > "$T/d48.json" 2>> "$T/cli.err"
check "describe 48 tokens (the reference): exit 0" test $? = 0
want48=$(jq .text "$T/d48.json")
chat "$DATA" '{"max_tokens": 48}' > "$T/c48.json"
chat "a.png" '{"max_tokens": 48, "stream": true}' > "$T/c48s.json"
pids=()
for i in 1 2 3 4 5 6 7 8; do
  case $i in
    1 | 2 | 5) curl -sN -X POST "$U/v1/chat/completions" --data-binary @"$T/c48s.json" > "$T/p$i.sse" & ;;
    4 | 8) post /v1/tag "$T/t1.json" "$T/p$i.json" > "$T/p$i.code" & ;;
    *) post /v1/chat/completions "$T/c48.json" "$T/p$i.json" > "$T/p$i.code" & ;;
  esac
  pids+=($!)
done
wait "${pids[@]}" # (not the server)
ok=1
for i in 3 6 7; do [ "$(cat "$T/p$i.code")" = 200 ] && [ "$(jq .choices[0].message.content "$T/p$i.json")" = "$want48" ] || ok=0; done
for i in 1 2 5; do
  [ "$(grep '^data: {' "$T/p$i.sse" | sed 's/^data: //' | jq -s '[.[].choices[0].delta.content // ""] | add')" = "$want48" ] || ok=0
done
for i in 4 8; do jq -e --slurpfile t "$T/tag.json" '.labels == $t[0].labels' "$T/p$i.json" > /dev/null || ok=0; done
check "8 concurrent clients (chat, streamed chat, tag): each gets its lone answer" test $ok = 1
curl -s "$U/health" > "$T/health2.json"
check "... answers grew together in the llm's batches ($(jq -c '{most_generating, answered}' "$T/health2.json"))" \
  jq -e '.most_generating >= 2 and .generating == 0 and .queue.admitted == 0' "$T/health2.json"

# ---- bad requests: 400 with a reason, 404, 405 ----
# bad NAME STATUS WHAT BODY_FILE [PATH]
bad() {
  local code
  code=$(post "${5:-/v1/chat/completions}" "$4" "$T/bad.json")
  check "$1: $2 (got $code: $(jq -r .error.message "$T/bad.json" 2> /dev/null | head -c 200))" \
    test "$code" = "$2"
  check "$1: the reason names $3" jq -e --arg w "$3" '.error.message | contains($w)' "$T/bad.json"
  check "$1: no temporary file name in it" bash -c "! grep -q artflow-serve- '$T/bad.json'"
}
printf '{"messages": [' > "$T/b1.json"
bad "malformed JSON" 400 "not a JSON object" "$T/b1.json"
jq -cn --arg u "$DATA" '{messages: [{role: "user", content: [{type: "image_url", image_url: {url: $u}}]},
  {role: "assistant", content: "x"}, {role: "user", content: "and?"}]}' > "$T/b2.json"
bad "a conversation" 400 "single turns" "$T/b2.json"
jq -cn '{messages: [{role: "user", content: "What is it?"}]}' > "$T/b3.json"
bad "no image" 400 "no image" "$T/b3.json"
chat "$DATA" '{"temperature": 500}' > "$T/b4.json"
bad "a temperature the llm rows refuse" 400 "temperature" "$T/b4.json"
chat "$DATA" '{"stop": ["\n"]}' > "$T/b5.json"
bad "stop sequences" 400 "stop" "$T/b5.json"
chat "../secret.png" > "$T/b6.json"
bad "a path outside --files" 400 "no such file under the --files folder" "$T/b6.json"
chat "/etc/passwd" > "$T/b6b.json"
bad "an absolute path outside --files" 400 "no such file under the --files folder" "$T/b6b.json"
chat "https://example.org/a.png" > "$T/b7.json"
bad "an http URL" 400 "fetches nothing" "$T/b7.json"
chat "data:image/png;base64,%%%" > "$T/b8.json"
bad "a data: URL that is not base64" 400 "base64" "$T/b8.json"
chat "data:image/png;base64,$(base64 -w0 "$T/files/text.png")" > "$T/b9.json"
bad "bytes that are no image" 400 "image" "$T/b9.json"
jq -cn '{image: "a.png", vocabulary: "../../etc/passwd"}' > "$T/b10.json"
bad "a vocabulary path" 400 "shipped vocabulary" "$T/b10.json" /v1/tag
jq -cn '{image: "a.png", vocabulary: "no-such-vocabulary"}' > "$T/b11.json"
bad "an unknown vocabulary" 400 "artemis-emotions" "$T/b11.json" /v1/tag
jq -cn '{image: "a.png"}' > "$T/b12.json"
bad "tag without labels" 400 "vocabulary" "$T/b12.json" /v1/tag
check "an unknown path: 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$U/v2/nope")" = 404
check "GET on a POST endpoint: 405" test "$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/chat/completions")" = 405

# ---- sizes: 413 ----
chat "data:image/jpeg;base64,$(base64 -w0 "$T/files/big.jpg")" > "$T/z1.json"
bad "an image over --max-pixels" 413 "max_pixels" "$T/z1.json"
chat "big.jpg" > "$T/z1b.json"
bad "an image over --max-pixels, by path" 413 "big.jpg: 200x90" "$T/z1b.json"
check "... named as the client named it, not by the server's path" bash -c "! grep -q '$T' '$T/bad.json'"
head -c 70000 /dev/urandom | base64 -w0 | sed 's|^|data:image/png;base64,|' > "$T/huge.url"
chat "$(cat "$T/huge.url")" > "$T/z2.json"
bad "a body over --max-body" 413 "--max-body" "$T/z2.json"

# ---- a full queue: 503 with Retry-After ----
chat "a.png" '{"max_tokens": 150}' > "$T/c150.json"
pids=()
for i in $(seq 24); do
  curl -s -o "$T/q$i.json" -D "$T/q$i.head" -w '%{http_code}' -X POST "$U/v1/chat/completions" \
    --data-binary @"$T/c150.json" > "$T/q$i.code" &
  pids+=($!)
done
wait "${pids[@]}"
for f in "$T"/q*.code; do cat "$f"; echo; done > "$T/q.codes"
codes=$(sort "$T/q.codes" | uniq -c | tr -s ' ' | tr '\n' ';')
check "24 at once on a queue of 8: 200s and 503s only, some of each ($codes)" \
  bash -c "grep -qx 503 '$T/q.codes' && grep -qx 200 '$T/q.codes' && ! grep -vqxE '200|503' '$T/q.codes'"
r=$(grep -lx 503 "$T"/q*.code | head -1)
r=${r%.code}
check "... a 503 says Retry-After and why" bash -c "grep -qi '^retry-after: 1' '$r.head' && jq -e '.error.message | contains(\"queue is full\")' '$r.json' > /dev/null"

# ---- a client that disconnects mid-stream ----
before=$(curl -s "$U/health" | jq .cancelled)
chat "a.png" '{"max_tokens": 150, "stream": true}' > "$T/d.json"
exec 3<> "/dev/tcp/127.0.0.1/$PORT"
printf 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n' \
  "$(stat -c %s "$T/d.json")" >&3
cat "$T/d.json" >&3
status=
IFS= read -r -t 120 status <&3 # the answer began: the status line
exec 3<&- 3>&-
for _ in $(seq 200); do
  [ "$(curl -s "$U/health" | jq '.queue.admitted')" = 0 ] && break
  sleep 0.1
done
curl -s "$U/health" > "$T/health3.json"
check "disconnect mid-stream: the stream had begun ($status)" grep -q '200' <<< "$status"
check "... its answer was cancelled, nothing left in flight ($(jq -c . "$T/health3.json"))" \
  jq -e --argjson b "$before" '.cancelled == $b + 1 and .queue.admitted == 0 and .generating == 0' "$T/health3.json"
check "... logged as gone" grep -q 'client gone' "$T/err"
post /v1/chat/completions "$T/c1.json" "$T/r4.json" > /dev/null
check "... and the server answers the next request" test "$(jq .choices[0].message.content "$T/r4.json")" = "$want"

# ---- a second server on the same port: exit 2 at once, naming the port ----
timeout 60 "$A" serve --model "$M" --port "$PORT" > /dev/null 2> "$T/busy.err"
rc=$?
check "a busy port: exit 2 ($rc)" test $rc = 2
check "... saying so" grep -q "cannot listen on 127.0.0.1:$PORT (is the port in use?)" "$T/busy.err"
cat "$T/busy.err" >> "$T/cli.err"

# ---- SIGTERM: the answers in flight are delivered, then a clean exit ----
curl -sN -X POST "$U/v1/chat/completions" --data-binary @"$T/c48s.json" > "$T/last.sse" &
cpid=$!
for _ in $(seq 600); do grep -q '^data: ' "$T/last.sse" 2> /dev/null && break; sleep 0.05; done
t0=$(date +%s.%N)
kill -TERM "$PID"
wait "$PID"
rc=$?
t1=$(date +%s.%N)
PID=
wait $cpid
check "SIGTERM: exit 0 ($rc)" test $rc = 0
check "... within the grace + 2 s ($(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') s)" \
  awk -v a="$t0" -v b="$t1" 'BEGIN {exit !(b - a < 7)}'
check "... the stream in flight ended with [DONE]" test "$(grep '^data: ' "$T/last.sse" | tail -1)" = "data: [DONE]"
check "... says what it did" grep -q 'stopped: .* answered' "$T/err"
check "... its temporary folder is gone" test -z "$(ls -A "$T/tmp")"

# under ASan/UBSan: no report from the server or the reference commands
san='ERROR: AddressSanitizer|LeakSanitizer: detected|runtime error:'
grep -hE "$san" "$T/err" "$T/cli.err" >&2
check "no sanitizer report" bash -c "! grep -qE '$san' '$T/err' '$T/cli.err'"

echo "test_serve: $pass passed, $fail failed"
[ $fail -eq 0 ] || { echo "--- server log ---" >&2; tail -30 "$T/err" >&2; }
test $fail -eq 0
