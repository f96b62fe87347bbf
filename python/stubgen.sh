#!/usr/bin/env bash
# Regenerates the checked-in type stubs python/metatape/_metatape/*.pyi from the installed extension
# (nanobind's stubgen); python/check.sh fails when they differ.   python/stubgen.sh [PYTHON]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${1:-python3}"
rm -rf "$root/python/metatape/_metatape"
(cd / && "$py" -m nanobind.stubgen -q -m metatape._metatape -r -O "$root/python/metatape")
echo "stubs written to python/metatape/_metatape/"
