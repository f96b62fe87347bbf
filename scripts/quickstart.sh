#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs metatape's main job on the built-in data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${BUILD_DIR:-build}/apps/metatape" sinusoid --learners maml --seconds 60
