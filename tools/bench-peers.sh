#!/usr/bin/env bash
# artflow against the tools users would pick instead, on this machine, in one run
# (issue 20; results in docs/performance.md):
#   LLM     llama.cpp (PyPI's llama-cpp-python, built for this CPU into a virtual
#           environment here: a benchmark-time dependency only, several minutes to
#           compile once) on the same random LLaMA-7B (Vicuna shape) GGUFs, q4_0 and
#           q8_0: prompt processing, decode after a 100-token prompt, artflow's batch-8
#           decode, each next to the streaming read measured by `artflow bench`;
#           then the quality of each against the f16 file of the same weights
#           (NMSE, KL divergence, top-1 agreement) from both engines;
#   vision  full-size ViT-g: `artflow bench --vision-only` against PyTorch (Debian's
#           python3-torch, fp32, threads = cores, OPENBLAS_CORETYPE=SkylakeX so that
#           OpenBLAS 0.3.21 uses its AVX-512 kernels on this CPU) at batch 1 and its best
#           batch (tools/bench_vit_torch.py).
# Runs alternate A/B, B/A, ... (PEERS_REPS each, default 3) and report min / median, with the
# load average around each pair (the machine may be shared).
#
#   tools/bench-peers.sh [WORKDIR]        (default /tmp/artflow-peers; ~25 GB of models)
#   PEERS_PARTS="llm quality vision"      which parts to run
#   PEERS_TYPES="q4_0 q8_0"               which quantised LLM files (llm and quality parts)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=${ARTFLOW:-$ROOT/build/artflow}
W=${1:-/tmp/artflow-peers}
VENV=${PEERS_VENV:-$W/venv}
REPS=${PEERS_REPS:-3}
PARTS=${PEERS_PARTS:-llm quality vision}
TYPES=${PEERS_TYPES:-q4_0 q8_0}
NPROC=$(nproc)
mkdir -p "$W"
[ -x "$A" ] || { echo "bench-peers: $A missing (build artflow first)" >&2; exit 2; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $NPROC cores," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "artflow: $("$A" version | head -1)"

case " $PARTS " in *" llm "* | *" quality "*)
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp, gguf, numpy" 2>/dev/null; then
    echo "bench-peers: installing llama-cpp-python, gguf, numpy into $VENV (compiles llama.cpp)" >&2
    python3 -m venv "$VENV"
    # built for this CPU (GGML_NATIVE: its AVX-512 / VNNI kernels), no libcurl needed;
    # PEERS_LCP=path/to/llama_cpp_python-X.tar.gz installs a downloaded sdist instead
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL=$NPROC \
      "$VENV/bin/pip" install -q "${PEERS_LCP:-llama-cpp-python}" gguf numpy
  fi
  PY="$VENV/bin/python"
  echo "llama.cpp: llama-cpp-python $("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')," \
    "ggml build: $("$PY" -c 'import llama_cpp as l; print(l.llama_print_system_info().decode().strip())')" ;;
esac

# the LLM files: artflow's random minigpt4-7b, its LLM copied byte for byte
# into a llama.cpp GGUF that both engines load
llm() {
  local t=$1 out="$W/llm-7b-$1.gguf"
  if [ ! -s "$out" ]; then
    [ -s "$W/full-$t.gguf" ] || "$A" mkmodel --arch "$ROOT/config/models/minigpt4-7b.yaml" --random --type "$t" \
      -o "$W/full-$t.gguf" >&2
    "$PY" "$ROOT/tools/bench_peers.py" extract "$W/full-$t.gguf" "$out" >&2
    rm -f "$W/full-$t.gguf"
  fi
  echo "$out"
}

case " $PARTS " in *" llm "*)
  for t in $TYPES; do
    M=$(llm $t)
    echo; echo "== LLM speed, $t"
    "$PY" "$ROOT/tools/bench_peers.py" speed --artflow "$A" --model "$M" --reps "$REPS" > "$W/speed-$t.txt"
    grep -v '^JSON ' "$W/speed-$t.txt"  # the runs' JSON stays in $W/speed-$t.txt
  done ;;
esac

case " $PARTS " in *" quality "*)
  R=$(llm f16)
  head -c 1500 "$ROOT/README.md" > "$W/text.txt.new"
  cmp -s "$W/text.txt.new" "$W/text.txt" && rm "$W/text.txt.new" || mv "$W/text.txt.new" "$W/text.txt"
  for t in $TYPES; do
    M=$(llm $t)
    echo; echo "== quality, $t against f16"
    # the quality is deterministic (no timing): a result newer than artflow and both files is reused
    Q="$W/quality-artflow-$t.txt"
    if [ -n "${PEERS_FRESH:-}" ] || [ ! -s "$Q" ] || [ "$A" -nt "$Q" ] || [ "$M" -nt "$Q" ] || [ "$R" -nt "$Q" ] || [ "$W/text.txt" -nt "$Q" ]; then
      "$A" bench --model "$M" --reference "$R" --text "$W/text.txt" --positions 256 > "$Q.tmp" && mv "$Q.tmp" "$Q"
    else
      echo "artflow: (reusing $Q, from $(date -r "$Q" '+%F %T'); PEERS_FRESH=1 recomputes it)"
    fi
    sed 's/^/artflow: /' "$Q"
    "$A" tokenize --model "$M" --bos "$(cat "$W/text.txt")" | tr ' ' '\n' | head -256 | tr '\n' ' ' > "$W/ids.txt"
    "$PY" "$ROOT/tools/bench_peers.py" quality --ids "$W/ids.txt" --model "$M" --reference "$R"
  done ;;
esac

case " $PARTS " in *" vision "*)
  # PyTorch's fastest setup here: OpenBLAS with its AVX-512 kernels.  Without the
  # libopenblas0-pthread package, torch falls back to the netlib reference BLAS
  # (~100x slower); the package is unpacked under $W (dpkg -x) instead of
  # installed, so the machine's BLAS alternative is left as it is.
  OB=/usr/lib/x86_64-linux-gnu/openblas-pthread
  if [ ! -e "$OB/libblas.so.3" ]; then
    OB="$W/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread"
    if [ ! -e "$OB/libblas.so.3" ]; then
      (cd "$W" && apt-get download libopenblas0-pthread >&2 && dpkg -x libopenblas0-pthread_*.deb "$W/openblas")
    fi
  fi
  echo "PyTorch BLAS: $OB (OPENBLAS_CORETYPE=SkylakeX)"
  V="$W/vision-full.gguf"
  [ -s "$V" ] || "$A" mkmodel --arch "$ROOT/config/models/bench-vision-full.yaml" --random -o "$V" >&2
  echo; echo "== ViT-g, 224 px, s/image (artflow: fp16 weights as shipped; PyTorch: fp32)"
  for r in $(seq "$REPS"); do
    "$A" bench --model "$V" --vision-only --batch 2 --images 4 --repeat 1 --json > "$W/vit.json"
    python3 -c "import json; j = json.load(open('$W/vit.json')); print('artflow rep $r: ' + ', '.join(
      'batch %d %.3f' % (x['batch'], x['vit_s_per_image']) for x in j['runs']))"
    LD_LIBRARY_PATH="$OB" OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$ROOT/tools/bench_vit_torch.py" --threads "$NPROC" \
      --batches 1,2,4 | sed "s/^/pytorch rep $r: /"
  done ;;
esac
