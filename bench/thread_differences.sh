#!/usr/bin/env bash
# What differs between thread counts (issue 20, reproducible bytes): trains every family on the
# same planted dataset with --threads 1 and --threads N (default 2), then compares the model
# files' bytes, the eval metrics and every user's item scores (max |difference|).
# Same inputs, seed and thread count give identical bytes (tests/family/test_contract.cpp);
# this script measures what a different thread count changes.
# usage: bench/thread_differences.sh [BUILD_DIR] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
n=${2:-2}
bin=$build/prefmix
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" generate --kind groups --users 120 --items 300 --pairs-per-user 20 --seed 3 \
  --out "$dir/d.h5" --quiet
printf '%-8s %-10s %-10s %-10s %-13s %-13s %s\n' family payload acc-1 acc-N log-loss-1 log-loss-N \
  max-score-diff
for fam in $("$bin" options | grep -v '^ ' ); do
  extra=""
  case $fam in
    vpl) extra="--epochs 20" ;;
    gppl) extra="--epochs 20" ;;
    pal-a|pal-b) extra="--epochs 40" ;;
  esac
  for t in 1 "$n"; do
    "$bin" train --data "$dir/d.h5" --model "$fam" $extra --threads "$t" --quiet \
      --out "$dir/$fam.$t.pfmx"
    "$bin" eval --model-file "$dir/$fam.$t.pfmx" --data "$dir/d.h5" --threads "$t" \
      --json "$dir/$fam.$t.json" >/dev/null
    "$bin" score --model-file "$dir/$fam.$t.pfmx" --data "$dir/d.h5" --threads "$t" \
      --out "$dir/$fam.$t.scores.h5" >/dev/null
  done
  /usr/bin/python3 - "$dir" "$fam" "$n" <<'PY'
import json, struct, sys
import h5py, numpy as np
d, fam, n = sys.argv[1:]

def payload(path):
    """The model file's payload (the header records --threads, so whole files always differ)."""
    b = open(path, "rb").read()
    (version,) = struct.unpack_from("<I", b, 5)
    pos = 4 + 1 + 4  # magic, the archive's endianness byte, format version
    for _ in range(4):  # prefmix version, family, options, embedding model
        (size,) = struct.unpack_from("<Q", b, pos)
        pos += 8 + size
    pos += 8 + 8  # item dimension, context dimension
    pos += 4 if version >= 2 else 0  # the family's payload version
    return b[pos + 8:]  # after the payload size

same = "identical" if payload(f"{d}/{fam}.1.pfmx") == payload(f"{d}/{fam}.{n}.pfmx") else "differs"
m = [json.load(open(f"{d}/{fam}.{t}.json")) for t in ("1", n)]
s = [h5py.File(f"{d}/{fam}.{t}.scores.h5")["/scores"][()] for t in ("1", n)]
print(f"{fam:8s} {same:10s} {m[0]['accuracy']:<10.5f} {m[1]['accuracy']:<10.5f} "
      f"{m[0]['log_loss']:<13.8f} {m[1]['log_loss']:<13.8f} {np.abs(s[0] - s[1]).max():.3g}")
PY
done
