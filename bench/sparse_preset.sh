#!/usr/bin/env bash
# Every family's defaults on the sparse planted preset (`generate --kind groups --preset sparse`:
# 5,000 people with 10 pairs each), seen and unseen protocols, against bt on the same seed
# (bench/RESULTS.md, "Sparse data and --model auto").
#
#   bench/sparse_preset.sh [PREFMIX_BINARY] [SEEDS] [FAMILIES] [THREADS]
#
# Defaults: build/prefmix, seeds "1 2 3 4 5", families "bt em-bt micro lowrank gppl pal-b pal-a
# vpl", 1 thread. bt runs first on every seed (the reference). `auto` may be listed as a family;
# AUTO_ARGS holds its flags (e.g. AUTO_ARGS="--auto-budget 120"). Results go to a temporary
# directory that is removed at the end; the table goes to stdout.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$root/build/prefmix}
seeds=${2:-1 2 3 4 5}
families=${3:-bt em-bt micro lowrank gppl pal-b pal-a vpl}
threads=${4:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for s in $seeds; do
  "$bin" generate --kind groups --preset sparse --seed "$s" --out "$tmp/sp$s.h5" --quiet
done
for fam in bt $families; do
  [ "$fam" = bt ] && [ -f "$tmp/done-bt" ] && continue
  extra=()
  # shellcheck disable=SC2206
  [ "$fam" = auto ] && extra=(${AUTO_ARGS:-})
  for s in $seeds; do
    for protocol in seen unseen; do
      start=$(date +%s%N)
      "$bin" experiment --data "$tmp/sp$s.h5" --model "$fam" "${extra[@]}" --protocol "$protocol" \
        --shots 0,1,2,5 --seed "$s" --threads "$threads" --quiet \
        --json "$tmp/$fam-$protocol-$s.json"
      echo $((($(date +%s%N) - start) / 1000000)) >"$tmp/$fam-$protocol-$s.ms"
    done
  done
  touch "$tmp/done-$fam"
done
python3 - "$tmp" "$seeds" "bt $families" <<'PY'
import json, sys
tmp, seeds, fams = sys.argv[1], [int(s) for s in sys.argv[2].split()], []
for f in sys.argv[3].split():
    if f not in fams:
        fams.append(f)
for protocol in ("seen", "unseen"):
    print(f"{protocol}: accuracy per seed {seeds} | minus bt (points) | mean | seconds per run")
    ref = {s: json.load(open(f"{tmp}/bt-{protocol}-{s}.json"))["accuracy"] for s in seeds}
    for fam in fams:
        acc = {s: json.load(open(f"{tmp}/{fam}-{protocol}-{s}.json"))["accuracy"] for s in seeds}
        sec = [float(open(f"{tmp}/{fam}-{protocol}-{s}.ms").read()) / 1000 for s in seeds]
        print(f"  {fam:8s} " + " ".join(f"{acc[s]:.4f}" for s in seeds) + " | "
              + " ".join(f"{100 * (acc[s] - ref[s]):+.1f}" for s in seeds)
              + f" | {sum(acc.values()) / len(seeds):.4f} | {sum(sec) / len(sec):.1f}")
PY
