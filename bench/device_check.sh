#!/usr/bin/env bash
# Issue 7's device check, for a GPU machine with the CUDA toolkit and CMake but no Debian
# packages and no network: builds bench/device/ (CUDA + CMake only), runs the CPU vs CUDA parity
# checks of every user-step link and the kernel benchmark, and prints one table.
# Usage: bench/device_check.sh [--parity-only] [--link VARIANT]  (an unknown VARIANT lists them)
# (build directory: build-device/)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
if [ ! -x /usr/bin/nvcc ] && [ -x /usr/local/cuda/bin/nvcc ] && [ -z "${CUDACXX:-}" ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S "$root/bench/device" -B "$root/build-device" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build-device" -j "$(nproc)"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
exec "$root/build-device/device_check" "$@"
