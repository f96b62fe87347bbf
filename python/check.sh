#!/usr/bin/env bash
# The Python package's checks, reusing an existing C++ build tree so that only the extension compiles
# (the C++ layers are the tree's static, position-independent libraries):
#   1. a virtual environment under <build>/python-venv with numpy, pytest, mypy, nanobind,
#      scikit-build-core, and torch (CPU) when the PyTorch CPU index answers (else the torch tests
#      report themselves skipped);
#   2. pip install . with the build tree as scikit-build-core's build directory and the tree's own
#      METATAPE_* options (nothing else is reconfigured, nothing of the C++ layers rebuilt);
#   3. `import metatape` from outside the repository; the pytest suite (python/tests);
#   4. the checked-in stubs (python/metatape/_metatape/*.pyi) equal freshly generated ones;
#   5. mypy on examples/python against the stubs.
#   python/check.sh [BUILD_DIR]     (default $BUILD_DIR or build; configured and built by scripts/test.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-${BUILD_DIR:-build}}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "python/check.sh: $build is not a configured build tree; run bash scripts/test.sh first" >&2
  exit 2
fi
if grep -q '^METATAPE_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "python/check.sh: $build is a sanitizer build; use a plain one" >&2
  exit 2
fi
start=$(date +%s)

include="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if ! python3 -c "import ensurepip, venv" 2>/dev/null || [ ! -f "$include/Python.h" ]; then
  echo "python/check.sh: installing python3-venv and python3-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-dev \
    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3-venv python3-dev)
fi
venv="$build/python-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
# nanobind pinned: the checked-in stubs are its stubgen's output.
"$py" -m pip install -q numpy pytest mypy nanobind==3.1.0 scikit-build-core || {
  echo "python/check.sh: pip could not install numpy, pytest, mypy, nanobind and scikit-build-core (is the" \
       "package index reachable? pip's message is above)" >&2
  exit 1
}
if ! "$py" -c "import torch" 2>/dev/null; then
  timeout 300 "$py" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu \
    || echo "python/check.sh: torch (CPU) could not be installed; the DLPack and PyTorch-parity tests will be skipped"
fi
echo "   environment ready after $(( $(date +%s) - start )) s"

# The tree's own options, so that configuring for the extension changes nothing else.
defines=(-C cmake.define.METATAPE_PYTHON=ON)
for option in METATAPE_CUDA METATAPE_NATIVE METATAPE_WERROR METATAPE_BUILD_TESTS METATAPE_BUILD_BENCH; do
  value="$(sed -n "s/^$option:[A-Z]*=//p" "$build/CMakeCache.txt")"
  [ -n "$value" ] && defines+=(-C "cmake.define.$option=$value")
done
generator="$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$build/CMakeCache.txt")"
CMAKE_GENERATOR="$generator" MAKEFLAGS="-j${PYTHON_CHECK_JOBS:-2}" "$py" -m pip install -q --no-build-isolation \
  "$root" -C build-dir="$build" "${defines[@]}"
echo "   extension built and installed after $(( $(date +%s) - start )) s"

(cd / && "$py" -c "import metatape, sys; print('   import metatape from /:', metatape.__file__)")
(cd "$root" && "$py" -m pytest -q -rs -p no:cacheprovider python/tests)

stubs="$(mktemp -d "${TMPDIR:-/tmp}/metatape-stubs.XXXXXX")"
trap 'rm -rf "$stubs"' EXIT
(cd / && "$py" -m nanobind.stubgen -q -m metatape._metatape -r -O "$stubs")
if ! diff -ru "$root/python/metatape/_metatape" "$stubs/_metatape"; then
  echo "python/check.sh: the checked-in stubs are out of date; regenerate them with python/stubgen.sh" >&2
  exit 1
fi
(cd "$root" && "$py" -m mypy --strict --ignore-missing-imports --no-incremental examples/python)
echo "== python checks done in $(( $(date +%s) - start )) s"
