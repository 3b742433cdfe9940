#!/usr/bin/env bash
# Formats every C and OpenCL C file of the project with the committed
# .clang-format (Debian's clang-format-14, the version CI uses).
#   tools/format.sh            rewrite the files in place
#   tools/format.sh --check    list the files that differ and exit 1 (CI)
#   tools/format.sh FILE...    only these files
set -euo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-}
if [ -z "$CF" ]; then
  for c in clang-format-14 clang-format; do
    command -v "$c" >/dev/null 2>&1 && { CF=$c; break; }
  done
fi
[ -n "$CF" ] || { echo "tools/format.sh: clang-format not found (apt-get install clang-format-14)" >&2; exit 2; }
case "$("$CF" --version)" in
  *"version 14."*) ;;
  *) echo "tools/format.sh: warning: $("$CF" --version) is not clang-format 14; its output may differ from CI's" >&2 ;;
esac
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.c' '*.h' '*.cl' | grep -v '^tests/data/')
fi
if [ $check = 1 ]; then
  bad=()
  for f in "${files[@]}"; do
    "$CF" --style=file --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    printf '%s\n' "${bad[@]}"
    echo "tools/format.sh: ${#bad[@]} file(s) differ from .clang-format; run tools/format.sh" >&2
    exit 1
  fi
  exit 0
fi
"$CF" --style=file -i "${files[@]}"
