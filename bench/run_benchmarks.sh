#!/usr/bin/env bash
# End-to-end performance figures of bench/RESULTS.md.
#
#   bench/run_benchmarks.sh [BUILD_DIR]      (default BUILD_DIR: <repo>/build-bench)
#
# Builds prefmix_bench and the CLI if needed (CPU only, ninja -j$JOBS, default 1), creates the big
# synthetic dataset once (~335 MB in $PREFMIX_BENCH_DIR, default /tmp; never in the repo), then:
#   1. peak resident memory of ReadDataset in a fresh process (and of `prefmix inspect`);
#   2. the benches (those matching $BENCH_FILTER, default the load and lowrank ones), 3 repetitions
#      each, medians and minima summarised against the issue's targets.
# Run it on an otherwise idle machine: the 2-thread figures are meaningless when other processes
# compete for the 2 cores (OpenMP and Eigen's GEMM spin at barriers).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build-bench}
out=${PREFMIX_BENCH_OUT:-$build/bench-results}
mkdir -p "$out"

if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DPREFMIX_CUDA=OFF -DPREFMIX_TESTS=OFF
fi
ninja -j"${JOBS:-1}" -C "$build" prefmix_bench prefmix_cli

bench=$build/prefmix_bench
data=$("$bench" --make-data)

echo "== machine"
lscpu | grep 'Model name' | sed 's/  */ /g'
echo "cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

echo
echo "== peak RSS: ReadDataset in a fresh process"
"$bench" --peak-rss-load "$data" --with-pairs | tee "$out/peak_rss.txt"
if [ -x /usr/bin/time ]; then
  echo
  echo "== peak RSS: prefmix inspect (ReadDataset + AllPairs + summary)"
  /usr/bin/time -v "$build/prefmix" inspect "$data" 2>"$out/inspect_time.txt" >/dev/null
  grep -E 'Maximum resident|Elapsed' "$out/inspect_time.txt"
fi

echo
echo "== benches (3 repetitions; medians below)"
"$bench" --benchmark_filter="${BENCH_FILTER:-ReadDataset|PlainHdf5Read|LowRank}" \
  --benchmark_repetitions=3 --benchmark_display_aggregates_only=true \
  --benchmark_out="$out/bench.json" --benchmark_out_format=json

python3 - "$out/bench.json" "$out/peak_rss.txt" <<'EOF'
import json, re, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
med = {r["run_name"]: r["real_time"] for r in runs if r.get("aggregate_name") == "median"}
low = {}
for r in runs:
    if r.get("run_type") == "iteration":
        low[r["run_name"]] = min(low.get(r["run_name"], float("inf")), r["real_time"])
ms = lambda name: med.get(name + "/real_time")
print("\n== summary (real time, ms: median and minimum of the 3 repetitions)")
for k in sorted(med):
    print(f"  {k:<52} {med[k]:10.1f} {low.get(k, float('nan')):10.1f}")
rd, plain, fresh = (ms("BM_ReadDataset/cold:0"), ms("BM_PlainHdf5Read/prealloc:1/cold:0"),
                    ms("BM_PlainHdf5Read/prealloc:0/cold:0"))
print("\n== targets")
if rd and plain:
    print(f"  load, page cache: ReadDataset {rd:.1f} ms / plain HDF5 into preallocated buffers "
          f"{plain:.1f} ms = {rd / plain:.2f}x  (target <= 2x: {'PASS' if rd <= 2 * plain else 'FAIL'})")
if rd and fresh:
    print(f"  load, page cache: ReadDataset {rd:.1f} ms / plain HDF5 into fresh buffers "
          f"{fresh:.1f} ms = {rd / fresh:.2f}x")
peak = open(sys.argv[2]).read()
m = re.search(r"maxrss after read\s+\d+ KiB \(([\d.]+) MB\)", peak)
b = re.search(r"bound 1.15\*payload\+200MB\s+([\d.]+) MB", peak)
if m and b:
    ok = float(m.group(1)) <= float(b.group(1))
    print(f"  peak RSS after ReadDataset {m.group(1)} MB vs bound {b.group(1)} MB: "
          f"{'PASS' if ok else 'FAIL'}")
for t in (1, 2):
    p = ms(f"BM_LowRankPass/threads:{t}")
    r = ms(f"BM_LowRankFloorRead/threads:{t}")
    e = ms(f"BM_LowRankFloorGemmEigen/threads:{t}")
    g = ms(f"BM_LowRankFloorGemmBlas/threads:{t}")
    if p:
        print(f"  lowrank pass, {t} thread(s): {p / 1e3:.3f} s (target <= 0.1 s: "
              f"{'PASS' if p <= 100 else 'FAIL'}); floor: 2 item reads {2 * r / 1e3:.3f} s, "
              f"two GEMMs Eigen {e / 1e3:.3f} s" + (f", OpenBLAS {g / 1e3:.3f} s" if g else ""))
EOF
