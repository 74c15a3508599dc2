#!/usr/bin/env bash
# Installs the Debian packages ssn needs to build, test and benchmark.
# Runs `apt-get update` only when something is missing, so it is a no-op on a ready machine.
set -euo pipefail

packages=(
  cmake g++ make ccache pkg-config
  libtorch-dev
  libinsighttoolkit5-dev
  libcli11-dev nlohmann-json3-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libpng-dev zlib1g-dev libhdf5-dev
  libgloo-dev
  python3-torch python3-numpy python3-scipy python3-pil python3-h5py
  chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
