#!/usr/bin/env bash
# stage-offline-deps.sh DIR: copies the header-only dependencies (CLI11, nlohmann_json) and the
# googletest sources from this Debian machine into DIR, for building ssn on a machine that has a
# LibTorch but not these packages (configure there with -DSSN_DEPS_DIR=DIR).
set -euo pipefail
dir=${1:?usage: stage-offline-deps.sh DIR}
mkdir -p "$dir/include"
cp -r /usr/include/CLI /usr/include/nlohmann "$dir/include/"
rm -rf "$dir/googletest"
cp -r /usr/src/googletest "$dir/googletest"
echo "staged in $dir"
