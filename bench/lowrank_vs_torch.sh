#!/usr/bin/env bash
# issue 21: prefmix's lowrank pass against a vectorized PyTorch reference of the same model, in
# the same run, on the same data (the bench's big file) and thread count.
#
#   bench/lowrank_vs_torch.sh [BUILD_DIR] [THREADS]   (defaults: <repo>/build-bench, 2)
#
# Needs Debian's python3-torch and python3-h5py (apt-get install -y python3-torch python3-h5py);
# PYTHON picks the interpreter (default /usr/bin/python3, the one those packages serve). Prints
# the median seconds of a pass for prefmix (5 repetitions of BM_LowRankPass) and for the two
# PyTorch formulations of bench/lowrank_torch_ref.py, and the ratios. Run it on an idle machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build-bench}
threads=${2:-2}
py=${PYTHON:-/usr/bin/python3}
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DPREFMIX_CUDA=OFF -DPREFMIX_TESTS=OFF
fi
cmake --build "$build" -j"${JOBS:-1}" --target prefmix_bench
bench=$build/prefmix_bench
data=$("$bench" --make-data)
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
echo "machine: $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp -d)
"$bench" --benchmark_filter="BM_LowRankPass/threads:$threads/" --benchmark_repetitions=5 \
  --benchmark_display_aggregates_only=true --benchmark_out="$out/bench.json" \
  --benchmark_out_format=json >/dev/null
"$py" "$root/bench/lowrank_torch_ref.py" "$data" --threads "$threads" --reps 5 >"$out/torch.json"
"$py" - "$out/bench.json" "$out/torch.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
med = [r for r in runs if r.get("aggregate_name") == "median"][0]
unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[med["time_unit"]]
ours = med["real_time"] * unit
t = json.load(open(sys.argv[2]))
print(f"threads {t['threads']}, {t['pairs']:,} pairs, {t['items']:,} items x {t['dim']}, K = {t['K']}, torch {t['torch']}")
print(f"prefmix lowrank pass (BM_LowRankPass, median of 5): {ours:.4f} s")
for k, what in (("diff", "PyTorch, per-pair differences (reference code)"), ("proj", "PyTorch, items projected once")):
    s = t[k + "_seconds"]
    print(f"{what}: {s:.3f} s (median of 5) -> prefmix is {s / ours:.1f}x faster")
PY
rm -rf "$out"
