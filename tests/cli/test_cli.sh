#!/usr/bin/env bash
# Command-line contract: help for every command, usage errors (exit 2, one-line
# message), the device listing, and the no-platform error.
set -u
A=${ARTFLOW:?ARTFLOW must point at the artflow binary}
fail=0; pass=0
ok()   { pass=$((pass+1)); }
bad()  { echo "FAIL: $*" >&2; fail=$((fail+1)); }
expect_rc() { # expected-rc description command...
  local want=$1 what=$2; shift 2
  "$@" >/tmp/af-cli.$$ 2>&1; local rc=$?
  if [ $rc -eq "$want" ]; then ok; else bad "$what: exit $rc, wanted $want: $(head -3 /tmp/af-cli.$$)"; fi
}
expect_out() { # regex description command...
  local re=$1 what=$2; shift 2
  "$@" >/tmp/af-cli.$$ 2>&1
  if grep -Eq -- "$re" /tmp/af-cli.$$; then ok; else bad "$what: output lacks /$re/: $(head -3 /tmp/af-cli.$$)"; fi
}

for c in run describe chat convert export inspect tokenize devices tune bench mkmodel version; do
  expect_rc 0 "$c --help" "$A" "$c" --help
  expect_out "usage: artflow $c" "$c --help text" "$A" "$c" --help
done
expect_rc 2 "no command" "$A"
expect_rc 2 "unknown command" "$A" frobnicate
expect_out "unknown command 'frobnicate'" "unknown command message" "$A" frobnicate
expect_rc 0 "top-level help" "$A" --help
expect_rc 0 "version" "$A" version
expect_out "^artflow [0-9]+\.[0-9]+\.[0-9]+" "version text" "$A" version
expect_rc 2 "export without --llm-only" "$A" export --model m.gguf -o x.gguf
expect_out "^artflow export: say what to export: --llm-only" "export without --llm-only message" "$A" export --model m.gguf -o x.gguf
expect_rc 2 "export without -o" "$A" export --llm-only --model m.gguf
expect_out "ImageAdapters.*" "export --help says the adapters are left out" "$A" export --help
expect_out "re-trained RMSNorm gains" "export --help says the gains are kept" "$A" export --help
expect_rc 1 "export of a missing file" "$A" export --llm-only --model /nonexistent/m.gguf -o /tmp/af-cli-x.$$.gguf
expect_rc 2 "devices bad flag" "$A" devices --bogus
expect_out "^artflow devices: unknown option '--bogus'" "devices bad flag message" "$A" devices --bogus
expect_rc 0 "devices" "$A" devices
expect_out "max allocation" "devices lists limits" "$A" devices
expect_out '"fp16":(true|false)' "devices --json" "$A" devices --json
# no OpenCL platform at all: a one-line hint, exit 1, no crash
expect_rc 1 "no platform" env OCL_ICD_VENDORS=/nonexistent-artflow-dir OCL_ICD_FILENAMES= "$A" devices
expect_out "no OpenCL platform found: install" "no platform message" env OCL_ICD_VENDORS=/nonexistent-artflow-dir "$A" devices
rm -f /tmp/af-cli.$$ /tmp/af-cli-x.$$.gguf
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
