#!/usr/bin/env bash
# Installs the Debian packages metatape needs (only the missing ones, saying which), then configures
# and builds into build/ (Release). Idempotent; runs as root or through sudo.
# Environment: BUILD_DIR (default build), METATAPE_CMAKE_ARGS (extra configure arguments).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libeigen3-dev doctest-dev libbenchmark-dev libcli11-dev
          nlohmann-json3-dev libyaml-cpp-dev zlib1g-dev libpng-dev libcpp-httplib-dev python3
          libopenmpi-dev openmpi-bin)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "metatape setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "metatape setup: all Debian packages present"
fi

build_dir=${BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release ${METATAPE_CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$jobs"
echo "metatape setup: built into $build_dir/"
