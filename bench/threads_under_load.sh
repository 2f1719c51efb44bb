#!/usr/bin/env bash
# One thread against two, on an idle machine and beside a one-core background load, with OpenMP
# workers waiting passively (prefmix's default, core/exe/passive_wait.cpp) and spinning
# (OMP_WAIT_POLICY=ACTIVE, libgomp's behaviour before).
#
#   bench/threads_under_load.sh [BUILD_DIR] [REPS] [FAMILIES]
#       BUILD_DIR default build, REPS default 3, FAMILIES default "bt lowrank em-bt";
#       POLICIES (environment) default "PASSIVE ACTIVE": the OMP_WAIT_POLICY settings to run
#
# Each run is `prefmix train` of one family on SUSHI-B (from $PREFMIX_SUSHI_DIR, converted once
# into a temporary directory) or, without the SUSHI files, on `generate --kind groups
# --users 2000`; wall seconds from process start to exit, median of REPS, runs of the four
# settings interleaved. The load is one busy loop (bash `while :`) at normal priority, started
# before and stopped after each loaded run. Prints one table row per family and setting.
set -euo pipefail
build=${1:-build}
reps=${2:-3}
families=${3:-bt lowrank em-bt}
policies=${POLICIES:-PASSIVE ACTIVE}
cli=$(cd "$build" && pwd)/prefmix
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${load:-}" ] && kill "$load" 2>/dev/null || true' EXIT

sushi=${PREFMIX_SUSHI_DIR:-}
if [ -n "$sushi" ] && [ -f "$sushi/sushi3.udata" ]; then
  "$cli" import sushi --dir "$sushi" --set b --out "$tmp/d.h5" >/dev/null
  data="SUSHI-B"
else
  "$cli" generate --kind groups --users 2000 --seed 1 --out "$tmp/d.h5" --quiet >/dev/null
  data="groups, 2000 users"
fi

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== commit: $(git -C "$(dirname "$0")" rev-parse --short=12 HEAD), date $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== data: $data; prefmix train --model F --threads T --quiet; median of $reps (seconds)"
echo
printf '| family | background | OMP_WAIT_POLICY | 1 thread | 2 threads | 2 / 1 |\n|---|---|---|---:|---:|---:|\n'

run() {  # family threads policy -> seconds
  local s e
  s=$(date +%s.%N)
  OMP_WAIT_POLICY=$3 "$cli" train --data "$tmp/d.h5" --model "$1" --threads "$2" --quiet \
    --out "$tmp/m.pfmx" >/dev/null 2>&1
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

for f in $families; do
  for bg in idle "one busy core"; do
    declare -A t=()
    for ((r = 0; r < reps; r++)); do
      for pol in $policies; do
        for th in 1 2; do
          load=""
          if [ "$bg" != idle ]; then
            (while :; do :; done) &
            load=$!
          fi
          t[$pol-$th]+="$(run "$f" "$th" "$pol") "
          if [ -n "$load" ]; then kill "$load"; wait "$load" 2>/dev/null || true; load=""; fi
        done
      done
    done
    for pol in $policies; do
      one=$(tr ' ' '\n' <<<"${t[$pol-1]}" | grep . | median)
      two=$(tr ' ' '\n' <<<"${t[$pol-2]}" | grep . | median)
      printf '| %s | %s | %s | %.2f | %.2f | %.2f |\n' "$f" "$bg" "$pol" "$one" "$two" \
        "$(echo "$two / $one" | bc -l)"
    done
    unset t
  done
done
