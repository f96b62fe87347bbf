#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs metatape's main job on the built-in market simulator
# (configs/main.yaml): meta-trains the learners on price-direction and regime tasks, evaluates them
# against the baselines and prints the report table. Extra arguments go to `metatape run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${BUILD_DIR:-build}/apps/metatape" run "$@"
