#!/bin/bash
# The iiif source against a server this test starts on 127.0.0.1
# (tests/data/iiif/iiif_server.py: fixture manifests and one image, plus
# 404, 429, 500-once, 500-always, slow and truncated answers), then the
# records and annotations it leads to checked against the committed JSON
# Schemas (docs/record.schema.json, docs/annotation.schema.json).
#  - Presentation 3: one item per canvas, canvas id / label / the manifest's
#    metadata in meta, images asked for at /full/!S,S/0/default.jpg with our
#    User-Agent; 429 and a first 500 retried into ok records; 404, a server
#    that stays down, a slow answer and a truncated body are error records
#    naming the URL; a second run fetches nothing (cache);
#  - Presentation 2.1 through a collection, whose missing manifest is one
#    error record; a local manifest with map_prefix/map_dir reads from disk.
A=${ARTFLOW:?ARTFLOW must point at the artflow binary}
D=${AF_TEST_DATA:?}/iiif
T=$(mktemp -d /tmp/af-iiif.XXXXXX)
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }
python3 "$D/iiif_server.py" "$D" "$T/requests.log" > "$T/port" 2> "$T/server.err" &
spid=$!
trap 'kill $spid 2> /dev/null; wait $spid 2> /dev/null; rm -rf "$T"' EXIT
for _ in $(seq 1 50); do grep -q PORT "$T/port" && break; sleep 0.1; done
port=$(sed -n 's/^PORT //p' "$T/port")
[ -n "$port" ] || { echo "FAIL: the test server did not start: $(cat "$T/server.err")"; exit 1; }
B="http://127.0.0.1:$port"

cat > "$T/p.yaml" << Y
source:
  stage: iiif
  manifest: $B/manifest3.json
  size: 224
  timeout_s: 2
  retries: 2
  delay_ms: 0
  cache: cache
stages:
  - stage: checksum
    algorithm: sha256
sinks:
  - stage: jsonl
    path: out/records.jsonl
    hash_model: false
  - stage: jsonl
    name: runmode
    path: out/r.jsonl
    provenance: run
    hash_model: false
  - stage: annotations
    path: out/annotations.jsonl
    pages: out/pages
    describing: [checksum]
    hash_model: false
Y
"$A" run "$T/p.yaml" --progress=none > "$T/log" 2>&1 || bad "run: exit $? $(cat "$T/log")"
R="$T/out/records.jsonl"
[ "$(wc -l < "$R")" -eq 7 ] || bad "7 canvases, $(wc -l < "$R") records"
rec() { grep "\"id\":\"$B/canvas/$1\"" "$R"; }
sha=$(sha256sum "$D/image.jpg" | cut -d' ' -f1)
for ok in ok busy flaky; do
  rec $ok | grep -q "\"status\":\"ok\".*\"checksum\":\"$sha\"" || bad "$ok: not ok with the image's sha256: $(rec $ok)"
done
rec ok | grep -q '"label":"Canvas ok"' || bad "canvas label not in meta"
rec ok | grep -q '"Artist":"Unknown painter"' || bad "manifest metadata not in meta"
rec ok | grep -q "\"iiif_manifest\":\"$B/manifest3.json\"" || bad "manifest id not in meta"
rec missing | grep -q '"status":"error".*/img/missing/full/!224,224/0/default.jpg: HTTP 404' || bad "404: $(rec missing)"
rec down | grep -q 'HTTP 500 (after 2 retries)' || bad "500 always: $(rec down)"
rec slow | grep -qi 'timeout\|timed out' || bad "slow: $(rec slow)"
rec cut | grep -q '"status":"error"' || bad "truncated: $(rec cut)"
grep -q "^/img/ok/full/!224,224/0/default.jpg artflow/" "$T/requests.log" || bad "Image API URL / User-Agent: $(cat "$T/requests.log")"
grep -q "/full/max/" "$T/requests.log" && bad "the master image was fetched"
[ "$(grep -c '^/img/busy/' "$T/requests.log")" -eq 2 ] || bad "429 not retried once"
[ "$(ls "$T/out/pages" | wc -l)" -eq 3 ] || bad "3 AnnotationPages expected: $(ls "$T/out/pages")"
# a second run reads the cached images
before=$(grep -c '^/img/' "$T/requests.log")
"$A" run "$T/p.yaml" --progress=none > "$T/log2" 2>&1 || bad "second run: $(cat "$T/log2")"
after=$(grep -c '^/img/ok/' "$T/requests.log")
[ "$after" -eq 1 ] || bad "the cached image was fetched again ($before -> $after)"

# Presentation 2.1 through a collection with a missing member
cat > "$T/c.yaml" << Y
source: {stage: iiif, manifest: "$B/collection.json", delay_ms: 0, retries: 0, cache: cache}
sinks:
  - stage: jsonl
    path: out/c.jsonl
    hash_model: false
Y
"$A" run "$T/c.yaml" --progress=none > "$T/log3" 2>&1 || bad "collection run: $(cat "$T/log3")"
grep -q "\"id\":\"$B/canvas2/a\".*\"status\":\"ok\".*\"label\":\"Leaf 1r\".*\"Artist\":\"Another painter\"" "$T/out/c.jsonl" ||
  bad "2.1 canvas: $(cat "$T/out/c.jsonl")"
grep -q "\"id\":\"$B/gone.json\",.*\"status\":\"error\".*HTTP 404" "$T/out/c.jsonl" || bad "missing manifest: $(cat "$T/out/c.jsonl")"
grep -q '^/img/leaf/full/!448,448/0/default.jpg' "$T/requests.log" || bad "2.1 image service URL"

# a local manifest mapped onto local files: nothing fetched
mkdir -p "$T/loc/imgs"
cp "$D/image.jpg" "$T/loc/imgs/leaf"
sed "s#{BASE}#https://iiif.example.org#g" "$D/manifest2.json" > "$T/loc/m.json"
cat > "$T/loc/l.yaml" << Y
source: {stage: iiif, manifest: m.json, map_prefix: "https://iiif.example.org/img/", map_dir: imgs}
stages: [{stage: checksum, algorithm: sha256}]
sinks: [{stage: jsonl, path: l.jsonl, hash_model: false}]
Y
"$A" run "$T/loc/l.yaml" --progress=none > "$T/log4" 2>&1 || bad "local run: $(cat "$T/log4")"
grep -q "\"checksum\":\"$sha\"" "$T/loc/l.jsonl" || bad "mapped local image: $(cat "$T/loc/l.jsonl")"
# an unreadable manifest is a setup error (exit 2) naming it
"$A" run "$T/p.yaml" --set "source.manifest=$B/nothing.json" --progress=none > "$T/log5" 2>&1
[ $? -eq 2 ] && grep -q "nothing.json: HTTP 404" "$T/log5" || bad "missing manifest: $(cat "$T/log5")"

# every JSON written validates against its schema
python3 "$AF_SOURCE_DIR/tests/data/schema/validate.py" run "$T/out/r.jsonl.runs.jsonl" || bad "run manifest vs schema"
python3 "$AF_SOURCE_DIR/tests/data/schema/validate.py" record "$R" "$T/out/r.jsonl" "$T/out/c.jsonl" "$T/loc/l.jsonl" || bad "records vs docs/record.schema.json"
python3 "$AF_SOURCE_DIR/tests/data/schema/validate.py" annotation "$T/out/annotations.jsonl" || bad "annotations vs schema"
python3 "$AF_SOURCE_DIR/tests/data/schema/validate.py" page "$T"/out/pages/*.json || bad "pages vs schema"
[ $fail -eq 0 ] && echo "test_iiif: all checks passed"
exit $fail
