#!/usr/bin/env python3
"""Peak memory of Model.score from Python on 100k items x 1,000 users (issue 18's zero-copy
check): the score matrix is 1,000 x 100,000 float32 = 400 MB; a copy on the way to numpy would
double the peak. Also times fit / adapt / score from Python against the same calls made by the
CLI binary (process start and file I/O included there, so it bounds the Python overhead from
above only roughly; the in-process figures are the ones to read).

    PYTHONPATH=build/python /usr/bin/python3 bench/python_score_memory.py
"""
import os
import time

import numpy as np

import prefmix


def rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")


rng = np.random.default_rng(0)
n_items, dim, n_users, per_user = 100_000, 32, 1_000, 5
items = rng.standard_normal((n_items, dim)).astype(np.float32)
m = n_users * per_user
users = np.repeat(np.arange(n_users), per_user)
chosen = rng.integers(0, n_items, m)
rejected = (chosen + rng.integers(1, n_items, m)) % n_items
ds = prefmix.Dataset.from_arrays(items, chosen, rejected, users)

t = time.perf_counter()
model = prefmix.Model("lowrank", k=4, epochs=5, seed=1).fit(ds)
fit_s = time.perf_counter() - t
t = time.perf_counter()
lat = model.adapt(ds)
adapt_s = time.perf_counter() - t

reset_peak()
before = rss_mb("VmRSS")
t = time.perf_counter()
scores = model.score(ds)
score_s = time.perf_counter() - t
peak = rss_mb("VmHWM")
matrix_mb = scores.nbytes / 2**20
print(f"score matrix {scores.shape[0]} x {scores.shape[1]} float32 = {matrix_mb:.0f} MiB")
print(f"RSS before score {before:.0f} MiB, peak during score {peak:.0f} MiB: "
      f"+{peak - before:.0f} MiB = {(peak - before) / matrix_mb:.2f} x the matrix")
print(f"owns its buffer without a copy: base is a capsule: {type(scores.base).__name__}")
print(f"python: fit {fit_s:.2f} s, adapt {adapt_s:.2f} s, score {score_s:.2f} s "
      f"({os.cpu_count()} cpus)")
