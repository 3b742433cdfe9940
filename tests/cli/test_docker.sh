#!/bin/bash
# The Dockerfile, checked without Docker (no daemon can run here): two Debian
# 12 stages, the build stage installing INSTALL's build packages and running
# cmake --install, the run stage installing PoCL, the ICD loader and the
# Debian package of every library the built artflow links (readelf NEEDED ->
# dpkg -S), and no vendor OpenCL driver; every package named exists in
# Debian's lists (when apt has them); COPY sources exist; .dockerignore keeps
# build folders out of the context.  Where a Docker daemon answers, the image
# is also built and `artflow version` run in it.
# Needs: $ARTFLOW, $AF_SOURCE_DIR.
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
SRC=${AF_SOURCE_DIR:?}
A=${ARTFLOW:?}
D=$SRC/Dockerfile
check "Dockerfile exists" test -f "$D"
# logical lines (continuations joined)
lines=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$D" | grep -v '^\s*#')
froms=$(grep -c '^FROM ' <<< "$lines")
check "multi-stage: 2 FROM lines (got $froms)" test "$froms" -eq 2
check "every stage is Debian 12" test "$(grep '^FROM ' <<< "$lines" | grep -cE 'FROM debian:(12|bookworm)(-slim)?( |$)')" -eq "$froms"
stage() { awk -v n="$1" '/^FROM /{s++} s==n' <<< "$lines"; }
pkgs() { grep -o 'apt-get install [^&]*' | sed 's/apt-get install//; s/-y//g; s/--no-install-recommends//g' | tr ' ' '\n' | grep -v '^$'; }
build_pkgs=$(stage 1 | pkgs | sort -u)
run_pkgs=$(stage 2 | pkgs | sort -u)
check "the run stage copies the install from the build stage" grep -q 'COPY --from=build /opt/artflow' <<< "$(stage 2)"
check "the build stage runs cmake --install" grep -q 'cmake --install' <<< "$(stage 1)"
check "the run stage's entry point is artflow" grep -q 'ENTRYPOINT \["artflow"\]' <<< "$(stage 2)"
# INSTALL's build packages: the compiler and build tools and every -dev
# package (not clinfo, PoCL or the tools only tests use)
want=$(sed -n '/^PACKAGES=(/,/^)/p' "$SRC/INSTALL" | sed 's/#.*//' | tr ' ' '\n' | grep -E '^[a-z0-9.+-]+$' |
  grep -E -- '-dev$|^(build-essential|cmake|pkg-config|opencl-c-headers)$' | sort -u)
for p in $want; do check "build stage installs $p (as INSTALL does)" grep -qx "$p" <<< "$build_pkgs"; done
check "run stage: PoCL (CPU OpenCL)" grep -qx pocl-opencl-icd <<< "$run_pkgs"
check "run stage: the ICD loader" grep -qx ocl-icd-libopencl1 <<< "$run_pkgs"
for v in nvidia-opencl-icd intel-opencl-icd mesa-opencl-icd rocm-opencl-icd; do
  check "no vendor ICD baked in ($v)" bash -c "! grep -qx $v <<< \"$run_pkgs\""
done
# every library the binary links comes from a package the run stage installs
if command -v readelf > /dev/null && command -v dpkg > /dev/null; then
  for l in $(readelf -d "$A" | grep NEEDED | grep -o '\[.*\]' | tr -d '[]'); do
    p=$(ldconfig -p | awk -v l="$l" '$1==l {print $NF; exit}')
    [ -n "$p" ] || continue
    r=$(readlink -f "$p")
    pk=$(dpkg -S "$p" 2> /dev/null || dpkg -S "$r" 2> /dev/null || dpkg -S "/usr$p" 2> /dev/null || dpkg -S "/usr$r" 2> /dev/null)
    pk=${pk%%:*}
    [ -z "$pk" ] || [ "$pk" = libc6 ] && continue
    check "run stage installs $pk (for $l)" grep -qx "$pk" <<< "$run_pkgs"
  done
fi
# the names exist in Debian (skipped when apt has no lists here)
if apt-cache show cmake > /dev/null 2>&1; then
  known=$(apt-cache policy $build_pkgs $run_pkgs 2> /dev/null | grep -o '^[a-z0-9.+-]*:$' | tr -d :)
  for p in $build_pkgs $run_pkgs; do
    check "package $p exists in Debian" grep -qx "$p" <<< "$known"
  done
fi
for s in $(grep '^COPY ' <<< "$lines" | grep -v -- '--from' | awk '{print $2}'); do
  check "COPY source $s exists" test -e "$SRC/$s"
done
check ".dockerignore keeps build folders out" grep -qx 'build\*/' "$SRC/.dockerignore"
if command -v docker > /dev/null 2>&1 && timeout 10 docker info > /dev/null 2>&1; then
  timeout 1800 docker build -q -t artflow-test "$SRC" > /dev/null 2>&1
  check "docker build" test $? -eq 0
  check "artflow version in the image" docker run --rm artflow-test version
else
  echo "test_docker: NOTE: no Docker daemon here; the Dockerfile was checked statically"
fi
[ $fail -eq 0 ] && echo "test_docker: all checks passed"
exit $fail
