#!/usr/bin/env bash
# libFuzzer runs of the loaders' harnesses (tests/fuzz: csv, npy, h5, model, grid).
#
#   bench/fuzz.sh SECONDS [TARGET...]        (default: every target, one after the other)
#
# Configures and builds the fuzz build in <repo>/build-fuzz (clang-14, -DPREFMIX_FUZZ=ON, no
# tests, benches, CUDA or Python module; ninja -j$JOBS, default 2), then runs each target for
# SECONDS (-max_total_time) with -timeout=10 -rss_limit_mb=4096 on a fresh copy of its seed
# corpus (tests/fuzz/corpus/<target>) in $PREFMIX_FUZZ_WORK (default ${TMPDIR:-/tmp}/prefmix-fuzz,
# never the repository), where its log and any crash/leak/timeout/oom input land too (the inputs
# of an earlier run are moved to $PREFMIX_FUZZ_WORK/saved/ first).
# A target stops at its first finding (crash, sanitizer report, uncaught exception, leak, timeout,
# out-of-memory), except the targets in $PREFMIX_FUZZ_FORK (default: none), which run in fork
# mode (-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1): every finding is saved and
# counted and the run goes on for the whole time. h5 fuzzes ReadDataset as the CLI runs it:
# libhdf5 1.10.8 crashes, loops or allocates gigabytes on some corrupt files
# (bench/results/2026-12-fuzz.md), and ReadDataset lets it do so in a child process (the
# harness sets PREFMIX_READ_TIMEOUT=0.5 s). So h5 gets -malloc_limit_mb far above its RSS
# limit: a child's gigabyte allocation is the child's (libFuzzer's malloc hook would save it as
# the harness's own out-of-memory), and the harness's own memory is still bounded by
# -rss_limit_mb.
# Prints per target: executions, exec/s, cov, ft and corpus size (libFuzzer's last status line),
# peak RSS (of the fuzzer and, in fork mode, its jobs), fork mode's oom/timeout/crash counts and
# the number of saved inputs (crash-, leak-, oom-, timeout-, slow-unit- files). Exits 1 if any
# target saved one.
# Everything runs under nice -n 19 (the machine is shared).
set -euo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: bench/fuzz.sh SECONDS [csv|npy|h5|model|grid ...]" >&2
  exit 2
fi
secs=$1
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(csv npy h5 model grid)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PREFMIX_FUZZ_BUILD:-$root/build-fuzz}
work=${PREFMIX_FUZZ_WORK:-${TMPDIR:-/tmp}/prefmix-fuzz}
cc=${PREFMIX_FUZZ_CC:-clang-14}
cxx=${PREFMIX_FUZZ_CXX:-clang++-14}
fork_targets=${PREFMIX_FUZZ_FORK-}

if [ ! -f "$build/build.ninja" ]; then
  nice -n 19 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_CXX_COMPILER="$cxx" -DPREFMIX_FUZZ=ON -DPREFMIX_TESTS=OFF -DPREFMIX_BENCH=OFF \
    -DPREFMIX_CUDA=OFF -DPREFMIX_PYTHON=OFF
fi
exes=()
for t in "${targets[@]}"; do exes+=("fuzz_$t"); done
nice -n 19 ninja -j"${JOBS:-2}" -C "$build" "${exes[@]}"

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== commit: $(git -C "$root" rev-parse --short=12 HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (+ uncommitted changes)')"
echo "== date: $(date -u '+%Y-%m-%d %H:%M UTC'), $secs s per target"

mkdir -p "$work"
summary=()
failed=0
for t in "${targets[@]}"; do
  dir=$work/$t
  # Inputs an earlier run saved are kept (moved to $work/saved/), never overwritten.
  if [ -n "$(find "$dir/artifacts" -type f 2>/dev/null | head -n 1)" ]; then
    mkdir -p "$work/saved"
    mv "$dir/artifacts" "$work/saved/$t-$(date -u +%Y%m%dT%H%M%S)"
  fi
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  cp "$root/tests/fuzz/corpus/$t/"* "$dir/corpus/"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -artifact_prefix="$dir/artifacts/")
  [ -f "$root/tests/fuzz/dict/$t.dict" ] && args+=(-dict="$root/tests/fuzz/dict/$t.dict")
  [ "$t" = h5 ] && args+=(-malloc_limit_mb=1048576)
  fork=0
  [[ " $fork_targets " == *" $t "* ]] && fork=1
  if [ "$fork" -eq 1 ]; then
    # Fork mode (one job at a time): each finding is saved and counted and the run goes on.
    args+=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  else
    args+=(-print_final_stats=1)
  fi
  echo "== fuzz_$t: log $dir/fuzz.log$([ "$fork" -eq 1 ] && echo ' (fork mode)')"
  rc=0
  # TMPDIR: the harness's input file (and fork mode's job files) stay in the target's directory;
  # a job that crashes or times out cannot remove its own.
  (cd "$dir" && TMPDIR="$dir/tmp" nice -n 19 /usr/bin/time -f 'peak_rss_kb %M' -o "$dir/time.txt" \
    "$build/tests/fuzz/fuzz_$t" "${args[@]}" corpus >fuzz.log 2>&1) || rc=$?
  log=$dir/fuzz.log
  if [ "$fork" -eq 1 ]; then
    # #RUNS: cov: N ft: N corp: N exec/s N oom/timeout/crash: a/b/c time: Ns job: N ...
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
    rate=$(sed -n 's/.* exec\/s \([0-9]*\).*/\1/p' <<<"$last")
    otc=$(sed -n 's/.* oom\/timeout\/crash: \([0-9]*\/[0-9]*\/[0-9]*\).*/\1/p' <<<"$last")
  else
    # #RUNS  DONE cov: N ft: N corp: N/SIZE ... and the stat:: lines of -print_final_stats.
    last=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    otc=-
  fi
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  rss=$(($(sed -n 's/^peak_rss_kb //p' "$dir/time.txt" 2>/dev/null || echo 0) / 1024))
  found=$(find "$dir/artifacts" -type f | wc -l)
  if [ "$rc" -ne 0 ] && [ "$found" -eq 0 ]; then found=1; fi  # died without saving an input
  [ "$found" -eq 0 ] || failed=1
  summary+=("$(printf '%-6s %10s %7s %6s %7s %6s %7s %10s %8s' "$t" "${execs:--}" "${rate:--}" \
    "${cov:--}" "${ft:--}" "${corp:--}" "$rss" "${otc:--}" "$found")")
  if [ "$found" -ne 0 ]; then
    echo "   fuzz_$t: exit $rc; saved inputs:"
    find "$dir/artifacts" -type f | sed 's/^/     /'
    grep -E '^(==[0-9]+== ?ERROR|SUMMARY|.*runtime error|terminate called|  what\(\)|fuzz_)' "$log" |
      sort | uniq -c | sort -rn | head -n 8 | sed 's/^/     /' || true
  fi
done

echo
printf '%-6s %10s %7s %6s %7s %6s %7s %10s %8s\n' target execs exec/s cov ft corp rss_mb \
  oom/to/cr findings
printf '%s\n' "${summary[@]}"
exit "$failed"
