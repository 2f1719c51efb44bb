#!/usr/bin/env bash
# CLI start-up (issue 21): wall time from process start to the first byte of output, and to exit,
# for `--help`, `inspect`, a bt `train` on a small dataset, and, for contrast, commands that load
# the LibTorch module (bt --arch mlp, pal-b; one epoch each). Medians of RUNS runs.
#
#   bench/startup.sh [BUILD_DIR] [RUNS]
#
# Defaults: build, 21 runs. Uses Debian's /usr/bin/python3 (standard library only) to time the
# children. Prints one line per command and the number of shared libraries each binary needs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
runs=${2:-21}
bin=$build/prefmix
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# 40 users x 10 pairs over 60 items: training is a few milliseconds, the rest is start-up.
"$bin" generate --kind groups --users 40 --pairs-per-user 10 --items 60 --dim 8 --seed 1 \
  --out "$tmp/small.h5" --quiet
echo "prefmix needs $(ldd "$bin" | wc -l) shared libraries; libprefmix_torch.so $(ldd "$build/libprefmix_torch.so" | wc -l)"
/usr/bin/python3 - "$bin" "$tmp" "$runs" <<'PY'
import os, select, statistics, subprocess, sys, time
bin, tmp, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = f"{tmp}/small.h5"
cases = [
    ("--help", [bin, "--help"]),
    ("inspect", [bin, "inspect", d]),
    ("train bt (linear)", [bin, "train", "--data", d, "--model", "bt", "--out", f"{tmp}/bt.pfm", "--threads", "2"]),
    ("train bt --arch mlp, 1 epoch (loads LibTorch)", [bin, "train", "--data", d, "--model", "bt", "--arch", "mlp", "--epochs", "1", "--out", f"{tmp}/mlp.pfm", "--threads", "2"]),
    ("train pal-b, 1 epoch (loads LibTorch)", [bin, "train", "--data", d, "--model", "pal-b", "--epochs", "1", "--out", f"{tmp}/pal.pfm", "--threads", "2"]),
]
def once(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = None
    open_fds = [p.stdout, p.stderr]
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [])
        for f in ready:
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                open_fds.remove(f)
            elif first is None:
                first = time.perf_counter() - t0
    rc = p.wait()
    total = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"{' '.join(cmd)}: exit {rc}")
    return first if first is not None else total, total
print(f"median of {runs} runs (ms): first output / exit")
for name, cmd in cases:
    once(cmd)  # warm the page cache
    firsts, totals = zip(*(once(cmd) for _ in range(runs)))
    print(f"  {name:48s} {1000 * statistics.median(firsts):8.1f} / {1000 * statistics.median(totals):8.1f}")
PY
