#!/usr/bin/env bash
# Installs everything llmc needs from Debian's archive (Debian 12 "bookworm" or newer).
# OpenBLAS matters: with Debian's reference BLAS, LibTorch's matrix products are ~50x slower.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config python3 binutils
  libtorch-dev libopenblas0-pthread
  libboost-dev libboost-filesystem-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev
  libgtest-dev libdlpack-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
