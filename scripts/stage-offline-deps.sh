#!/usr/bin/env bash
# stage-offline-deps.sh DIR [ITK_PREFIX]: copies the header-only dependencies (CLI11,
# nlohmann_json) and the googletest sources from this Debian machine into DIR,
# for building and testing ssn on a machine that has a LibTorch but not these packages (configure
# there with -DSSN_DEPS_DIR=DIR). With ITK_PREFIX (an install made by scripts/build-static-itk.sh),
# also DIR/itk-static.tar.gz, which scripts/device-check.sh unpacks for the image I/O.
set -euo pipefail
dir=${1:?usage: stage-offline-deps.sh DIR [ITK_PREFIX]}
mkdir -p "$dir/include"
cp -r /usr/include/CLI /usr/include/nlohmann "$dir/include/"
rm -rf "$dir/googletest"
cp -r /usr/src/googletest "$dir/googletest"
if [ -n "${2:-}" ]; then
  # Headers and static libraries only: the documentation and CMake's helper modules stay here.
  tar -czf "$dir/itk-static.tar.gz" -C "$2" lib include
fi
echo "staged in $dir"
du -sh "$dir"
