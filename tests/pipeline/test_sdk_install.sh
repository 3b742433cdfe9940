#!/bin/bash
# The installed SDK end to end, as a plugin author meets it:
#  1. `cmake --install` into a temporary prefix lays out bin/, include/artflow/,
#     lib/pkgconfig/artflow.pc and share/artflow/ (profiles, models, the
#     example plugin's sources); the prefix is then MOVED, so nothing may
#     depend on where it was installed or on the source tree;
#  2. the example plugin builds out of tree with exactly
#     `cc $(pkg-config --cflags artflow) -shared -fPIC -o dhash.so dhash.c`;
#  3. the installed binary lists the plugin's stage and parameter table
#     (`inspect stages/stage --plugin`), runs a pipeline with it, and refuses a
#     bad plugin and one built for another AF_STAGE_ABI_VERSION (exit 2, one
#     line naming the file and both versions);
#  4. it reads its data from <prefix>/share/artflow (no environment), an
#     environment variable wins, and without share/artflow/profiles it warns
#     once naming the paths it tried and goes on with built-in defaults;
#  5. the build-tree binary still reads the source tree.
# Usage: test_sdk_install.sh CMAKE_COMMAND.  Needs $ARTFLOW, $AF_BINARY_DIR,
# $AF_SOURCE_DIR (set by ctest), cc and pkg-config.  No Python.
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
CMAKE=${1:?usage: test_sdk_install.sh CMAKE_COMMAND}
B=${AF_BINARY_DIR:?}
SRC=${AF_SOURCE_DIR:?}
T=$(mktemp -d "${TMPDIR:-/tmp}/af-sdk-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-/tmp/pocl-cache}
# the installed binary must not lean on anything of the build or the tree
unset ARTFLOW_PROFILE_DIR ARTFLOW_MODELS_DIR ARTFLOW_VOCAB_DIR ARTFLOW_DATA_DIR ARTFLOW_PLUGIN_PATH \
  ARTFLOW_PROFILE_FILE AF_SOURCE_DIR
for tool in cc pkg-config; do
  command -v $tool > /dev/null || {
    echo "FAIL: $tool not found" >&2
    exit 1
  }
done

# ------------------------------------------------------------- 1. install
"$CMAKE" --install "$B" --prefix "$T/inst" > "$T/install.out" 2>&1
rc=$?
check "cmake --install: exit 0 (got $rc: $(tail -n 2 "$T/install.out"))" test $rc -eq 0
mv "$T/inst" "$T/moved"
P=$T/moved
for f in bin/artflow include/artflow/stage.h include/artflow/status.h lib/pkgconfig/artflow.pc \
  share/artflow/profiles/default.yaml share/artflow/profiles/pocl/cpu.yaml share/artflow/models/demo.yaml \
  share/artflow/examples/plugins/dhash.c share/artflow/examples/plugins/README.md \
  share/artflow/examples/plugins/dhash.yaml; do
  check "installed $f" test -f "$P/$f"
done
check "every profile installed" test "$(cd "$SRC/config/profiles" && find . -name '*.yaml' | sort)" = \
  "$(cd "$P/share/artflow/profiles" && find . -name '*.yaml' | sort)"
check "no kernel sources installed (they are embedded)" test -z "$(find "$P" -name '*.cl')"
A=$P/bin/artflow

# ------------------------------------------------- 2. build the plugin out of tree
export PKG_CONFIG_PATH=$P/lib/pkgconfig
check "pkg-config finds the moved prefix" test "$(pkg-config --cflags artflow | sed 's/ *$//')" = "-I$P/lib/pkgconfig/../../include"
check "pkg-config: plugins link nothing" test -z "$(pkg-config --libs artflow | tr -d ' ')"
check "pkg-config: the description says why" sh -c "pkg-config --print-provides artflow > /dev/null &&
  grep -q '^Description:.*ENABLE_EXPORTS' '$P/lib/pkgconfig/artflow.pc'"
# the ABI version as the installed header defines it (never written here;
# compiled and printed, so any spelling of the define works)
mkdir -p "$T/work"
printf '#include <stdio.h>\n#include <artflow/stage.h>\nint main(void) { printf("%%u\\n", (unsigned)AF_STAGE_ABI_VERSION); return 0; }\n' > "$T/work/abi.c"
abi=$(cc $(pkg-config --cflags artflow) -o "$T/work/abi" "$T/work/abi.c" && "$T/work/abi")
check "AF_STAGE_ABI_VERSION read from the installed header ('$abi')" test -n "$abi"
check "artflow.pc stage_abi = the header's" test "$(pkg-config --variable=stage_abi artflow)" = "$abi"
cp "$P/share/artflow/examples/plugins/dhash.c" "$P/share/artflow/examples/plugins/dhash.yaml" "$T/work/"
(cd "$T/work" && cc $(pkg-config --cflags artflow) -shared -fPIC -o dhash.so dhash.c) > "$T/cc.out" 2>&1
check "the example builds with the documented command: $(head -n 3 "$T/cc.out")" test -f "$T/work/dhash.so"
(cd "$T/work" && cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags artflow) -shared -fPIC \
  -o strict.so dhash.c) > "$T/cc2.out" 2>&1
check "the example is warning-free with -std=c11 -Wall -Wextra: $(head -n 3 "$T/cc2.out")" test -f "$T/work/strict.so"

# --------------------------------------------- 3. the installed binary with it
"$A" inspect stages --plugin "$T/work/dhash.so" > "$T/stages.out" 2>&1
rc=$?
check "inspect stages --plugin: exit 0 (got $rc: $(tail -n 1 "$T/stages.out"))" test $rc -eq 0
check "inspect stages lists dhash under transforms" \
  awk '/^transforms:/{t=1;next} /^[a-z]/{t=0} t && $1=="dhash"{ok=1} END{exit !ok}' "$T/stages.out"
check "inspect stages still lists the built-in stages" grep -q '^  decode ' "$T/stages.out"
"$A" inspect stage dhash --plugin "$T/work/dhash.so" > "$T/stage.out" 2>&1
rc=$?
check "inspect stage dhash --plugin: exit 0 (got $rc)" test $rc -eq 0
check "the parameter table: hash_size int 8 2..16" grep -Eq '^  hash_size +int +8 +2\.\.16 ' "$T/stage.out"
check "the ports: rgb in, dhash out" sh -c "grep -Eq '^  rgb +u8\[\*,\*,3\]' '$T/stage.out' &&
  grep -Eq '^  dhash +text ' '$T/stage.out'"
"$A" inspect stage dhash > /dev/null 2>&1
check "without --plugin there is no dhash (exit 2)" test $? -eq 2
# repeatable, and a bare name through ARTFLOW_PLUGIN_PATH
cp "$T/work/dhash.so" "$T/work/dhash2.so"
"$A" inspect stages --plugin "$T/work/dhash.so" --plugin="$T/work/dhash2.so" > "$T/two.out" 2>&1
rc=$?
check "two plugins with one stage name: exit 2 (got $rc)" test $rc -eq 2
check "... naming the second file and the clash ($(cat "$T/two.out"))" \
  grep -q "plugin $T/work/dhash2.so: .*'dhash' already exists" "$T/two.out"
ARTFLOW_PLUGIN_PATH=$T/work "$A" inspect stage dhash --plugin dhash.so > /dev/null 2>&1
check "a bare name is looked up in ARTFLOW_PLUGIN_PATH" test $? -eq 0

# a bad plugin: one line naming the file, exit 2
printf 'not a library\n' > "$T/work/junk.so"
"$A" inspect stages --plugin "$T/work/junk.so" > "$T/junk.out" 2> "$T/junk.err"
rc=$?
check "not a library: exit 2 (got $rc)" test $rc -eq 2
check "not a library: one line naming the file ($(cat "$T/junk.err"))" sh -c \
  "test \$(wc -l < '$T/junk.err') -eq 1 && grep -q 'plugin $T/work/junk.so: ' '$T/junk.err'"
check "not a library: nothing listed" test ! -s "$T/junk.out"
"$A" inspect stage dhash --plugin "$T/work/none.so" > /dev/null 2> "$T/none.err"
rc=$?
check "missing plugin: exit 2 (got $rc)" test $rc -eq 2
check "missing plugin: names it" grep -q "none.so" "$T/none.err"
# built against another stage contract: refused, both versions named
cat > "$T/work/future.c" <<'EOF'
#include <artflow/stage.h>
__attribute__((visibility("default"))) const af_plugin af_plugin_entry = {AF_STAGE_ABI_VERSION + 1, "future", 0, 0};
EOF
(cd "$T/work" && cc $(pkg-config --cflags artflow) -shared -fPIC -o future.so future.c)
"$A" inspect stages --plugin "$T/work/future.so" > /dev/null 2> "$T/future.err"
rc=$?
check "other ABI: exit 2 (got $rc)" test $rc -eq 2
check "other ABI: names the file and both versions ($(cat "$T/future.err"))" \
  grep -q "plugin $T/work/future.so: stage ABI version $((abi + 1)), this artflow needs $abi " "$T/future.err"

# a pipeline with the plugin stage: a duplicate gets the same hash
mkdir -p "$T/work/images"
cp "$SRC/examples/images/landscape.jpg" "$T/work/images/a.jpg"
cp "$SRC/examples/images/landscape.jpg" "$T/work/images/b_copy.jpg"
cp "$SRC/examples/images/portrait.jpg" "$T/work/images/c.jpg"
(cd / && "$A" run "$T/work/dhash.yaml" --progress=none > "$T/run.out" 2>&1)
rc=$?
check "the example pipeline (installed binary): exit 0 (got $rc: $(tail -n 2 "$T/run.out"))" test $rc -eq 0
J=$T/work/dhash.jsonl
h() { sed -n "s/.*\"id\":\"$1\".*\"dhash\":\"\([0-9a-f]*\)\".*/\1/p" "$J"; }
check "three records, each a 64-bit hash" test "$(grep -c '"dhash":"[0-9a-f]\{16\}"' "$J")" -eq 3
check "a copy hashes the same ($(h a.jpg) / $(h b_copy.jpg))" test -n "$(h a.jpg)" -a "$(h a.jpg)" = "$(h b_copy.jpg)"
check "another image hashes differently" test -n "$(h c.jpg)" -a "$(h a.jpg)" != "$(h c.jpg)"
"$A" run "$T/work/dhash.yaml" --set dhash.hash_size=4 --progress=none > /dev/null 2>&1
check "--set dhash.hash_size=4: 16-bit hashes" test "$(grep -c '"dhash":"[0-9a-f]\{4\}"' "$J")" -eq 3

# ------------------------------------------------ 4. where the data comes from
"$A" version > "$T/version.out" 2> "$T/version.err"
check "version: profiles from the moved prefix" \
  grep -qF "profiles:     $P/share/artflow/profiles (installed)" "$T/version.out"
check "version: models from the moved prefix" grep -qF "models:       $P/share/artflow/models (installed)" "$T/version.out"
check "version: the binary's stage ABI is the installed header's" grep -qx "  stage ABI $abi" "$T/version.out"
check "version: nothing read from the source tree" sh -c "! grep -qF '$SRC' '$T/version.out'"
"$A" devices > "$T/dev.out" 2> "$T/dev.err"
rc=$?
check "devices (installed): exit 0 (got $rc)" test $rc -eq 0
check "devices: profiles from the moved prefix" grep -qF "profiles: $P/share/artflow/profiles (installed)" "$T/dev.out"
check "devices: the profile's files are the installed ones" grep -qF "from: $P/share/artflow/profiles: default.yaml" "$T/dev.out"
check "devices: no warning ($(head -n 1 "$T/dev.err"))" sh -c "! grep -q warning '$T/dev.err'"
ARTFLOW_PROFILE_DIR=$SRC/config/profiles "$A" version > "$T/env.out" 2>&1
check "ARTFLOW_PROFILE_DIR wins" grep -qF "profiles:     $SRC/config/profiles (ARTFLOW_PROFILE_DIR)" "$T/env.out"
ARTFLOW_DATA_DIR=$SRC/config "$A" version > "$T/data.out" 2>&1
check "ARTFLOW_DATA_DIR wins over the prefix" grep -qF "models:       $SRC/config/models (ARTFLOW_DATA_DIR)" "$T/data.out"

# without its profiles: one warning naming the paths tried, built-in defaults
cp -a "$P" "$T/noprof"
rm -rf "$T/noprof/share/artflow/profiles"
"$T/noprof/bin/artflow" devices > "$T/np.out" 2> "$T/np.err"
rc=$?
check "devices without profiles: exit 0 (got $rc)" test $rc -eq 0
check "devices without profiles: exactly one warning ($(cat "$T/np.err"))" test "$(grep -c warning "$T/np.err")" -eq 1
check "the warning names the path tried" grep -qF "no device profiles found (tried $T/noprof/share/artflow/profiles)" "$T/np.err"
check "built-in defaults in effect" grep -q "from: built-in defaults" "$T/np.out"

# ------------------------------------------------- 5. the build-tree binary
"$ARTFLOW" version > "$T/bt.out" 2>&1
check "the build-tree binary reads the source tree" grep -qF "config/profiles (source tree)" "$T/bt.out"

exit $fail
