#!/usr/bin/env bash
# gppl at LLM scale (issue 17): one SVI epoch of the default crowd model on the big synthetic set
# (100,000 items x 768 float32, 2,000 users x 500 pairs = 1M comparisons; bench/bench_common.h),
# with its wall time, the fit's own seconds and the peak resident memory of the process.
#
#   bench/gppl_scale.sh [BUILD_DIR] [THREADS] [EPOCHS]
#
# Defaults: build, 2 threads, 1 epoch (mini-batches of 2,000 pairs, 500 SVI steps, then every
# user's local factors). The big file is created once by `prefmix_bench --make-data` in
# $PREFMIX_BENCH_DIR (default /tmp), never in the repository.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
epochs=${3:-1}
data=$("$build/prefmix_bench" --make-data)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== commit: $(git -C "$root" rev-parse --short=12 HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (+ uncommitted changes)')"
echo "== date: $(date -u '+%Y-%m-%d %H:%M UTC'), data $data, $threads threads, $epochs epoch(s)"
/usr/bin/time -f '%e s wall, %M KiB peak RSS' -o "$tmp/time" \
  "$build/prefmix" train --data "$data" --model gppl --epochs "$epochs" --threads "$threads" \
  --valid-fraction 0 --out "$tmp/m.pfmx" --json "$tmp/fit.json" --quiet
python3 - "$tmp/fit.json" "$tmp/time" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
fit = d["fit"]
print(f"train {d['timing']['train_seconds']:.1f} s (fit: {fit['svi_steps']} SVI steps of "
      f"{fit['batch_pairs']} pairs, {fit['inducing_items']} inducing items, then every user's "
      f"local factors); process {open(sys.argv[2]).read().strip()}")
PY
