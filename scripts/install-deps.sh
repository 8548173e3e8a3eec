#!/usr/bin/env bash
# Installs the Debian 12 packages facet's build, tests and examples need (run as root).
# Skips apt entirely when everything is already there, so repeated runs cost nothing.
set -euo pipefail
packages=(build-essential cmake libeigen3-dev libstb-dev doctest-dev libbenchmark-dev)
# fer's JSON output; face detection in fer predict (OpenCV's cascades, dlib's HOG detector and its
# 68-point landmark model; bzip2 unpacks the model where it ships compressed).
packages+=(nlohmann-json3-dev libopencv-dev opencv-data libdlib-dev libdlib-data bzip2)
# Data-parallel training (fer train under mpirun, tests/test_mpi.cpp): Open MPI.
packages+=(libopenmpi-dev openmpi-bin)
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
