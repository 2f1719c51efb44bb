#!/usr/bin/env python3
"""Peak memory of Model.score from Python on 100k items x 1,000 users (issue 18's zero-copy
check): the score matrix is 1,000 x 100,000 float32 = 400 MB; a copy on the way to numpy would
double the peak. Also the Python overhead of fit / adapt / score: the wall time of the Python
call minus the seconds the library spent inside C++ on it (measured there), median of 5 calls.

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
model = prefmix.Model("lowrank", k=4, epochs=5, seed=1)


def timed(call, repeats=5):
    """(median wall s of the Python call, median s inside C++)."""
    walls, inner = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t)
        inner.append(model._m.last_seconds)
    return float(np.median(walls)), float(np.median(inner))


small = prefmix.Dataset.from_arrays(items[:1000], chosen % 1000, (chosen + 1) % 1000, users)
rows = [("fit", *timed(lambda: model.fit(ds))),
        ("adapt", *timed(lambda: model.adapt(ds))),
        ("score (1,000 users x 1,000 items)", *timed(lambda: model.score(small)))]
for name, wall, inner in rows:
    print(f"{name}: python {wall * 1e3:.2f} ms, inside C++ {inner * 1e3:.2f} ms, "
          f"overhead {(wall - inner) * 1e3:.2f} ms")

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
print(f"owns its buffer without a copy: base is a {type(scores.base).__name__}")
print(f"score of the full matrix {score_s:.2f} s ({os.cpu_count()} cpus)")
