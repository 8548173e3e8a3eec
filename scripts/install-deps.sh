#!/usr/bin/env bash
# Installs the Debian 12 packages facet's build, tests and examples need (run as root).
# Skips apt entirely when everything is already there, so repeated runs cost nothing.
set -euo pipefail
packages=(build-essential cmake libeigen3-dev libstb-dev doctest-dev libbenchmark-dev libopencv-dev opencv-data)
packages+=("$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
