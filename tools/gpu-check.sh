#!/usr/bin/env bash
# One-shot GPU check, for a machine with an NVIDIA (or other) OpenCL driver:
# builds artflow, lists the devices, runs the OpenCL op/model tests on the GPU,
# benchmarks the ops and the full-size vision path, and writes everything to
# a results folder.  Sized for a 10-minute budget.
#
#   tools/gpu-check.sh [RESULTS_DIR]       (default: $OUT, else ./gpu-results)
#
# Needs: the Debian build dependencies (./INSTALL --deps-only) and a vendor ICD,
# e.g. /etc/OpenCL/vendors/nvidia.icd.  ARTFLOW_DEVICE picks the device
# (default: "NVIDIA", falling back to the first GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
R=${1:-${OUT:-gpu-results}}
mkdir -p "$R"
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$PWD/.gpu-cache/pocl} XDG_CACHE_HOME=${XDG_CACHE_HOME:-$PWD/.gpu-cache/xdg}
mkdir -p "$POCL_CACHE_DIR" "$XDG_CACHE_HOME"
log() { echo "==> [$(date +%T)] $*" | tee -a "$R/summary.txt"; }

log "environment"
{ nvidia-smi 2>&1 | head -15; ls -l /etc/OpenCL/vendors/ 2>&1; } > "$R/env.txt"
if ! command -v cmake >/dev/null || ! pkg-config --exists clblast vips yaml-0.1 libcjson 2>/dev/null; then
  log "installing build dependencies"
  ./INSTALL --deps-only > "$R/install.txt" 2>&1 || log "INSTALL --deps-only failed (see install.txt)"
fi
log "build"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release > "$R/build.txt" 2>&1 &&
  cmake --build build-gpu -j"$(nproc)" >> "$R/build.txt" 2>&1 || { log "build failed (see build.txt)"; exit 1; }
A=build-gpu/artflow
$A devices > "$R/devices.txt" 2>&1
if [ -z "${ARTFLOW_DEVICE:-}" ]; then
  if grep -qi nvidia "$R/devices.txt"; then export ARTFLOW_DEVICE=NVIDIA; fi
fi
log "device: ${ARTFLOW_DEVICE:-default} -> $(grep '^\*' "$R/devices.txt" | head -1)"
log "OpenCL tests (labels cl, model)"
timeout 240 ctest --test-dir build-gpu -L 'cl|model' --output-on-failure > "$R/ctest.txt" 2>&1
grep -E "tests passed|tests failed" "$R/ctest.txt" | tee -a "$R/summary.txt"
log "bench ops"
timeout 120 $A bench ops --json > "$R/bench-ops.json" 2> "$R/bench-ops.err"
timeout 60 $A bench ops > "$R/bench-ops.txt" 2>&1
log "full-size vision model (random weights)"
M=build-gpu/bench-vision-full.gguf
[ -f "$M" ] || $A mkmodel --arch config/models/bench-vision-full.yaml --random --type f16 -o "$M" > "$R/mkmodel.txt" 2>&1
timeout 180 $A bench --model "$M" --batch 8 --repeat 3 > "$R/bench-model.txt" 2>&1
cat "$R/bench-model.txt" >> "$R/summary.txt"
log "tune (90 s on the ViT-g shapes) and the tuned profile against the shipped one"
timeout 150 $A tune --budget 90s -o "$R/tuned-profile.yaml" > "$R/tune.txt" 2>&1
[ -f "$R/tuned-profile.yaml" ] && timeout 120 $A bench --model "$M" --vision-only --batch 8 --repeat 2 \
  --compare "$R/tuned-profile.yaml" > "$R/bench-compare.txt" 2>&1 && grep -A4 '^ratio' "$R/bench-compare.txt" >> "$R/summary.txt"
log "done: results in $R"
