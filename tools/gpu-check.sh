#!/usr/bin/env bash
# One-shot GPU check, for a machine with an NVIDIA (or other) OpenCL driver:
# lists the devices, runs the whole test suite on the GPU, benchmarks the
# full-size vision path and 7B-shaped LLMs (q4_0, q8_0, f16), tunes a profile
# and compares it with the shipped one, and benchmarks the ops.  Each stage
# runs only if the time budget still fits it, so a short lease still returns
# the most important results first.
#
#   tools/gpu-check.sh [RESULTS_DIR]       (default: $OUT, else ./gpu-results)
#
# Two ways to get artflow onto the machine:
#   - prebuilt (offline machines): run tools/gpu-bundle.sh here first; it writes
#     .gpu/build.tar.xz and .gpu/libs.tar.xz, which this script unpacks.  The
#     bundle keeps its build's absolute paths, so this checkout is linked there.
#   - built here: the Debian build dependencies (./INSTALL --deps-only).
# A vendor ICD must exist (/etc/OpenCL/vendors/*.icd); if none is registered,
# the NVIDIA OpenCL library is looked for and registered via OCL_ICD_VENDORS.
# ARTFLOW_DEVICE picks the device (default: "NVIDIA", falling back to the
# first GPU).  GPU_CHECK_BUDGET: seconds for all stages (default 540).
# RESULTS_DIR gets at most 8 files: summary.txt env.txt ctest.txt bench.txt
# tune.txt ops.txt tuned-profile.yaml (+ its .tune-state).
set -uo pipefail
cd "$(dirname "$0")/.."
R=${1:-${OUT:-gpu-results}}
BUDGET=${GPU_CHECK_BUDGET:-540}
mkdir -p "$R"
S=$R/summary.txt E=$R/env.txt
log() { echo "==> [$(date +%T) +${SECONDS}s] $*" | tee -a "$S"; }
left() { echo $((BUDGET - SECONDS)); }
# fits NEED: true when at least NEED seconds of the budget are left
fits() { local l; l=$(left); [ "$l" -ge "$1" ] || { log "skipped: $2 (needs ${1}s, ${l}s left)"; return 1; }; }
# cap N: the smaller of N and the time left
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }

log "environment"
{ nvidia-smi 2>&1 | head -15; uname -a; nproc; free -g; df -h . /tmp; ls -l /etc/OpenCL/vendors/ 2>&1; } > "$E"

# untar FILE DIR: tar, else Python's tarfile (images without xz)
untar() { if command -v xz >/dev/null; then tar xJf "$1" -C "$2"; else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; fi; }
if [ -f .gpu/build.tar.xz ] && [ -f .gpu/libs.tar.xz ]; then
  log "unpacking the prebuilt bundle (.gpu)"
  untar .gpu/build.tar.xz . || { log "error: cannot unpack .gpu/build.tar.xz"; exit 1; }
  built_at=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' build-gpu/CMakeCache.txt)
  if [ -n "$built_at" ] && [ "$(cd "$built_at" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
    if [ -e "$built_at" ]; then log "error: the bundle was built at $built_at, which exists here and is another folder"; exit 1; fi
    mkdir -p "$(dirname "$built_at")" && ln -s "$(pwd -P)" "$built_at" || { log "error: cannot link $built_at"; exit 1; }
    echo "linked $built_at -> $(pwd -P)" >> "$E"
  fi
  mkdir -p /tmp/af-gpu && untar .gpu/libs.tar.xz /tmp/af-gpu || { log "error: cannot unpack .gpu/libs.tar.xz"; exit 1; }
  export LD_LIBRARY_PATH=/tmp/af-gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
  if ! command -v cmake >/dev/null || ! pkg-config --exists clblast vips yaml-0.1 libcjson libcrypto 2>/dev/null; then
    log "installing build dependencies"
    ./INSTALL --deps-only >> "$E" 2>&1 || log "INSTALL --deps-only failed (see env.txt)"
  fi
  log "build"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >> "$E" 2>&1 &&
    cmake --build build-gpu -j"$(nproc)" >> "$E" 2>&1 || { log "build failed (see env.txt)"; exit 1; }
fi
A=build-gpu/artflow
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$PWD/.gpu-cache/pocl} XDG_CACHE_HOME=${XDG_CACHE_HOME:-$PWD/.gpu-cache/xdg}
mkdir -p "$POCL_CACHE_DIR" "$XDG_CACHE_HOME"

# No ICD registered: look for the NVIDIA OpenCL library (drivers mounted into
# containers often ship it without the .icd file).
if ! ls /etc/OpenCL/vendors/*.icd >/dev/null 2>&1 && [ -z "${OCL_ICD_VENDORS:-}" ]; then
  lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF; exit}')
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/cuda/lib64; do
    [ -n "$lib" ] && break
    [ -e "$d/libnvidia-opencl.so.1" ] && lib=$d/libnvidia-opencl.so.1
  done
  [ -n "$lib" ] || lib=$(timeout 30 find / \( -path /proc -o -path /sys \) -prune -o -name 'libnvidia-opencl.so*' -print 2>/dev/null | head -1)
  if [ -n "$lib" ]; then
    mkdir -p /tmp/af-icd && echo "$lib" > /tmp/af-icd/nvidia.icd
    export OCL_ICD_VENDORS=/tmp/af-icd LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(dirname "$lib")
    log "registered $lib as an OpenCL ICD"
  else
    log "no ICD registered and no libnvidia-opencl found"
  fi
fi
$A devices > "$R/devices.tmp" 2>&1
cat "$R/devices.tmp" >> "$E"
if [ -z "${ARTFLOW_DEVICE:-}" ] && grep -qi nvidia "$R/devices.tmp"; then export ARTFLOW_DEVICE=NVIDIA; fi
DEVTYPE=GPU; [ -n "${GPU_CHECK_ALLOW_CPU:-}" ] && DEVTYPE='GPU|CPU'   # CPU: dry runs of this script
if ! grep -qE "^ ?\*?\[[0-9]+\] .*\(($DEVTYPE)\)\$" "$R/devices.tmp"; then
  log "error: no GPU OpenCL device (see env.txt)"
  { echo "--- OCL_ICD_DEBUG"; OCL_ICD_DEBUG=15 $A devices 2>&1 | head -40; ls -la /usr/local/nvidia/lib64 2>&1 | head -60; } >> "$E"
  rm -f "$R/devices.tmp"; exit 1
fi
log "device: ${ARTFLOW_DEVICE:-default} -> $(grep '^\*' "$R/devices.tmp" | head -1)"
rm -f "$R/devices.tmp"

# Random models, made on the CPU (in parallel) while the tests use the GPU.
W=${GPU_CHECK_MODELS:-build-gpu/gpu-models}
mkdir -p "$W"
declare -A MK
for spec in bench-vision-full:f16 minigpt4-7b:q4_0 minigpt4-7b:q8_0 minigpt4-7b:f16; do
  arch=${spec%%:*} type=${spec##*:} f=$W/${arch}-${type}.gguf
  [ -f "$f" ] && continue
  ( t=$SECONDS
    if $A mkmodel --arch "config/models/$arch.yaml" --random --type "$type" -o "$f.part" > /dev/null 2> "$f.err"; then
      mv "$f.part" "$f" && echo "mkmodel $arch $type: $((SECONDS - t)) s, $(du -h "$f" | cut -f1)"
    else echo "mkmodel $arch $type failed: $(tail -1 "$f.err")"; fi ) >> "$E" 2>&1 &
  MK[$f]=$!
done
# wait_for FILE: until the model exists, its maker has ended, or 30 s are left
wait_for() {
  while [ ! -f "$1" ] && [ "$(left)" -gt 30 ] && kill -0 "${MK[$1]:-0}" 2>/dev/null; do sleep 2; done
  [ -f "$1" ] || { log "skipped: $1 not made in time"; return 1; }
}

if fits 60 "test suite"; then
  log "test suite (ctest -j8)"
  CT=$(command -v ctest || ls /opt/*/.venv/bin/ctest 2>/dev/null | head -1)
  if [ -n "$CT" ]; then
    timeout "$(cap 240)" "$CT" --test-dir build-gpu -j8 --timeout 150 --output-on-failure > "$R/ctest.txt" 2>&1
    grep -E "tests passed|tests failed|\*\*\*|Failed|Timeout" "$R/ctest.txt" | tail -30 | tee -a "$S"
  else
    log "no ctest on this machine"
  fi
fi
B=$R/bench.txt
if fits 60 "full-size vision bench" && wait_for "$W/bench-vision-full-f16.gguf"; then
  log "full-size vision model (random weights), batch 8"
  timeout "$(cap 150)" $A bench --model "$W/bench-vision-full-f16.gguf" --batch 8 --repeat 3 >> "$B" 2>&1
fi
for type in q4_0 q8_0 f16; do
  if fits 60 "7B $type LLM bench" && wait_for "$W/minigpt4-7b-$type.gguf"; then
    log "7B LLM $type, batch 1 and 8"
    echo "### 7B $type" >> "$B"
    timeout "$(cap 120)" $A bench --model "$W/minigpt4-7b-$type.gguf" --llm-only --batch 8 >> "$B" 2>&1
  fi
done
[ -f "$B" ] && grep -E "decode|prefill|s/image|GB/s|profile" "$B" | head -60 >> "$S"
if fits 150 "tune"; then
  log "tune (90 s on the ViT-g shapes) and the tuned profile against the shipped one"
  T=$R/tune.txt
  timeout "$(cap 160)" $A tune --budget 90s -o "$R/tuned-profile.yaml" > "$T" 2>&1
  if [ -f "$R/tuned-profile.yaml" ] && [ -f "$W/bench-vision-full-f16.gguf" ] && fits 60 "profile comparison"; then
    timeout "$(cap 150)" $A bench --model "$W/bench-vision-full-f16.gguf" --vision-only --batch 8 --repeat 2 \
      --compare "$R/tuned-profile.yaml" >> "$T" 2>&1
    grep -A4 '^ratio' "$T" >> "$S"
  fi
fi
if fits 40 "ops bench"; then
  log "bench ops"
  timeout "$(cap 90)" $A bench ops > "$R/ops.txt" 2>&1
fi
kill "${MK[@]}" 2>/dev/null; pkill -f 'artflow mkmodel' 2>/dev/null
log "done: results in $R"
