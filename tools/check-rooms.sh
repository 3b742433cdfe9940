#!/usr/bin/env bash
# Checks the include rules between the rooms of the source tree
# (docs/internals.md): every `#include "room/..."` in a file of room R must
# name a room R may reach.  Lower rooms never include higher ones; stages/
# reach net/ only through net/net.h, and never cl/ or pipeline/ (the engine
# hands them what they need through the stage context).
#   tools/check-rooms.sh [SOURCE_DIR]     exit 0 when clean, 1 with one line per breach
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# room: the rooms (or room/file.h headers) its files may include
declare -A allow=(
  [core]="artflow core"
  [formats]="artflow core formats"
  [convert]="artflow core formats convert"
  [cl]="artflow core formats cl"
  [image]="artflow core cl image"
  [net]="artflow core formats cl net"
  [pipeline]="artflow core formats cl pipeline"
  [stages]="artflow core formats image net/net.h stages"
  [cli]="artflow core formats convert cl image net pipeline stages cli"
)

bad=0
for room in "${!allow[@]}"; do
  [ -d "$room" ] || continue
  for f in "$room"/*.[ch]; do
    [ -e "$f" ] || continue
    while IFS= read -r inc; do
      ok=0
      for a in ${allow[$room]}; do
        case "$inc" in
          "$a" | "$a"/*) ok=1 ;;
        esac
      done
      if [ $ok = 0 ]; then
        echo "$f: includes \"$inc\", but $room/ may include only: ${allow[$room]}"
        bad=1
      fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done
done
# include/artflow/ is the public SDK: it names nothing of the tree
if grep -n '#include "' include/artflow/*.h | grep -v '"artflow/'; then
  echo "include/artflow/: public headers include only artflow/*.h"
  bad=1
fi
# no comment points at a document outside the repository
if grep -rn "model-spec" --include='*.[ch]' --include='*.cl' core formats convert cl image net pipeline stages cli include; then
  echo "the lines above cite model-spec, which is not in the repository: cite docs/model.md"
  bad=1
fi
exit $bad
