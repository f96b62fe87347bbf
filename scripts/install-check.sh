#!/usr/bin/env bash
# Installs metatape into a temporary prefix and proves the package works from outside the tree:
#   1. cmake --install <build> --prefix <tmp>; libmetatape.so exports only mt_* symbols;
#   2. examples/external (find_package(metatape)) configures and builds against the prefix, on the
#      shared and the static library; the C example also builds through pkg-config;
#   3. a checkpoint from a tiny training run (`metatape train` when the CLI is built, else
#      metatape_train_tiny) is adapted and predicted by each of the three programs.
#   scripts/install-check.sh [BUILD_DIR]     (default $BUILD_DIR or build, as scripts/test.sh; configured
#                                            if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-${BUILD_DIR:-build}}"
case "$build" in /*) ;; *) [ -d "$build" ] && build="$(cd "$build" && pwd)" || build="$root/$build" ;; esac
jobs="${INSTALL_CHECK_JOBS:-2}"
work="$(mktemp -d "${TMPDIR:-/tmp}/metatape-install-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

[ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -DMETATAPE_CUDA=OFF >/dev/null
targets=(metatape_capi metatape_capi_archive metatape_train_tiny)
if grep -q '^METATAPE_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "install-check: $build is a sanitizer build; use a plain one" >&2
  exit 2
fi
have_cli=0
if [ -f "$root/apps/train_command.cpp" ]; then targets+=(metatape); have_cli=1; fi
cmake --build "$build" --target "${targets[@]}" -j"$jobs"

echo "== install into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
lib="$(find "$prefix" -name "libmetatape.so*" -type f | head -1)"
libdir="$(dirname "$lib")"
exported="$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^mt_' || true)"
if [ -n "$exported" ]; then
  echo "install-check: libmetatape.so exports symbols outside the C API:" >&2
  echo "$exported" | head -20 >&2
  exit 1
fi
echo "   libmetatape.so exports $(nm -D --defined-only "$lib" | grep -c ' mt_') mt_* functions and nothing else"

echo "== build examples/external against the installed package"
cmake -S "$root/examples/external" -B "$work/ext" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/ext" -j"$jobs" >/dev/null
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -O2 -o "$work/adapt_predict_pc" "$root/examples/external/adapt_predict.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs metatape) -lm

echo "== tiny training run"
if [ "$have_cli" = 1 ]; then
  "$build/apps/metatape" train --learners maml --families risk --meta-steps 3 --out "$work/train" \
    --no-progress -q >"$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
  checkpoint="$(find "$work/train" -name 'maml.ckpt' | head -1)"
else
  "$build/capi/metatape_train_tiny" "$work/tiny.ckpt" 20 >/dev/null
  checkpoint="$work/tiny.ckpt"
fi
[ -f "$checkpoint" ] || { echo "install-check: the training run wrote no checkpoint" >&2; exit 1; }
echo "   checkpoint $checkpoint"

for program in "$work/ext/adapt_predict" "$work/ext/adapt_predict_static" "$work/adapt_predict_pc"; do
  echo "== $(basename "$program")"
  LD_LIBRARY_PATH="$libdir" "$program" "$checkpoint" | sed 's/^/   /'
done
if ldd "$work/ext/adapt_predict_static" | grep -q libmetatape; then
  echo "install-check: adapt_predict_static links libmetatape.so dynamically" >&2
  exit 1
fi
echo "install-check: OK"
