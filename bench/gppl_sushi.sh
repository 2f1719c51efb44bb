#!/usr/bin/env bash
# gppl on the SUSHI table of docs/protocols.md#published-numbers-to-beat (bench/RESULTS.md §9): accuracy, log loss and seconds per run
# of each variant on Sushi-A-small, Sushi-A and Sushi-B under the subsample protocol.
#
#   PREFMIX_SUSHI_DIR=/path/to/sushi3 bench/gppl_sushi.sh [PREFMIX_BINARY] [REPEATS_A] [REPEATS_B]
#
# Defaults: build/prefmix, 25 repeats on set A, 10 on set B (about 45 s per Sushi-B run on
# 2 cores). The converted .h5 files go to a temporary directory (SUSHI's licence forbids
# redistributing anything derived from it) and are removed at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$root/build/prefmix}
ra=${2:-25}
rb=${3:-10}
: "${PREFMIX_SUSHI_DIR:?set PREFMIX_SUSHI_DIR to the directory of the SUSHI3 files}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" import sushi --dir "$PREFMIX_SUSHI_DIR" --set a --out "$tmp/a.h5" >/dev/null 2>&1
"$bin" import sushi --dir "$PREFMIX_SUSHI_DIR" --set b --out "$tmp/b.h5" >/dev/null 2>&1
row() {  # block data users train test repeats variant-args...
  local block=$1 data=$2 users=$3 train=$4 test=$5 reps=$6
  shift 6
  "$bin" experiment --data "$data" --model gppl "$@" --protocol subsample --users "$users" \
    --train-pairs "$train" --test-pairs "$test" --repeats "$reps" --seed 1 --quiet \
    --json "$tmp/r.json" >/dev/null
  python3 - "$tmp/r.json" "$block" "$*" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:14s} {sys.argv[3] or 'crowd (default)':28s} acc {d['accuracy']:.3f} "
      f"± {d['accuracy_std']:.3f}  log loss {d['log_loss']:.3f}  "
      f"s/run {d['timing']['seconds_per_run']:.2f}  ({len(d['repeats'])} repeats)")
PY
}
for variant in "" "--gppl-users per-user" "--gppl-users pooled"; do
  # shellcheck disable=SC2086
  row Sushi-A-small "$tmp/a.h5" 100 5 25 "$ra" $variant
  # shellcheck disable=SC2086
  row Sushi-A "$tmp/a.h5" 100 20 25 "$ra" $variant
  # shellcheck disable=SC2086
  row Sushi-B "$tmp/b.h5" 0 10 1 "$rb" $variant
done
