#!/usr/bin/env bash
# Packs a Release build of artflow, its tests and the shared libraries they need
# (all but glibc, libstdc++ and libgcc_s) for a GPU machine that has a vendor
# OpenCL driver but no Debian packages and no network, such as a borrowed
# cloud GPU.  tools/gpu-check.sh unpacks the bundle when it finds one.
#
#   tools/gpu-bundle.sh [DIR]     (default: .gpu, which git ignores)
#
# Writes DIR/build.tar.xz (build-gpu/ without objects) and DIR/libs.tar.xz
# (lib/*.so*).  The build keeps this checkout's absolute paths (tests and the
# profile directory use them), so gpu-check.sh links the checkout it runs in
# to the same path when it differs.  Built here, run there: both must be
# x86-64 with a glibc at least as new as this one (Debian 12: 2.36).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-.gpu}
B=build-gpu
mkdir -p "$D"
echo "==> build ($B, Release)"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release > "$D/build.log"
cmake --build "$B" -j"$(nproc)" >> "$D/build.log"
echo "==> libraries"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/lib"
{ find "$B" -maxdepth 2 \( -type f -perm -u+x -o -name '*.so' \) | grep -v CMakeFiles |
    while read -r f; do ldd "$f" 2>/dev/null || true; done; } |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so' |
  while read -r l; do cp -L "$l" "$tmp/lib/"; done
strip --strip-unneeded "$tmp"/lib/* 2>/dev/null || true
echo "    $(ls "$tmp/lib" | wc -l) libraries, $(du -sh "$tmp/lib" | cut -f1) unpacked"
tar cJf "$D/libs.tar.xz" -C "$tmp" lib
tar cJf "$D/build.tar.xz" --exclude=CMakeFiles --exclude='*.a' --exclude=pocl-cache \
  --exclude=cache --exclude='*.gguf.tmp' "$B"
echo "==> $(du -ch "$D"/*.tar.xz | tail -1 | cut -f1) in $D (built at $PWD)"
