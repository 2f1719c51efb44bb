#!/usr/bin/env python3
"""A vectorized PyTorch reference of prefmix's lowrank pass (issue 21), for bench/lowrank_vs_torch.sh.

The model, data and loss are those of BM_LowRankPass (bench/bench_lowrank.cpp): the bench's big
file (100,000 items x 768, 2,000 users x 500 comparisons), K = 8, the same V and omega shapes,
r_u(a) - r_u(b) = ((E_a - E_b) V) . softmax(omega_u), the weighted mean Bradley-Terry loss plus
l2 |V|^2, and the gradients of V and omega (one full-batch pass: loss + backward).

Two formulations are timed, each on --threads intra-op threads:
  diff   the items projected per pair difference, as reference reward-model code does
         (phi = E[a] - E[b] gathered per pair, then phi @ V), in chunks of --chunk pairs with the
         gradients accumulated (a whole batch would hold 3 GB of differences);
  proj   the items projected once (P = E @ V, then P[a] - P[b]), the formulation prefmix uses.

Prints one JSON object: median seconds per pass of each (of --reps passes after one warm-up).
Needs Debian's python3-torch and python3-h5py (apt-get install -y python3-torch python3-h5py).
"""
import argparse
import json
import statistics
import time

import h5py
import numpy as np
import torch

K = 8
L2 = 1e-4


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="the bench's big file (prefmix_bench --make-data prints its path)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with h5py.File(a.data, "r") as f:
        E = torch.from_numpy(np.ascontiguousarray(f["/items/embeddings"][...], dtype=np.float32))
        user = torch.from_numpy(f["/comparisons/user"][...].astype(np.int64))
        first = torch.from_numpy(f["/comparisons/chosen"][...].astype(np.int64))
        second = torch.from_numpy(f["/comparisons/rejected"][...].astype(np.int64))
        n_users = f["/users/ids"].shape[0]
    m, D = first.numel(), E.shape[1]
    # The bench's pairs as prefmix reads them: chosen first, label 1, weight 1. Parameters: fixed
    # seed, the bench's scales (V ~ N(0, 1/D), omega ~ N(0, 0.25)).
    label = torch.ones(m)
    weight = torch.ones(m)
    g = torch.Generator().manual_seed(a.seed)
    V0 = torch.randn(D, K, generator=g) / D**0.5
    omega0 = 0.5 * torch.randn(n_users, K, generator=g)
    inv = 1.0 / float(weight.sum())

    def pass_diff():
        V = V0.clone().requires_grad_(True)
        omega = omega0.clone().requires_grad_(True)
        W = torch.softmax(omega, dim=1)
        total = L2 * (V * V).sum()
        total.backward()
        loss = float(total)
        for s in range(0, m, a.chunk):
            e = min(m, s + a.chunk)
            phi = E[first[s:e]] - E[second[s:e]]  # [chunk, D]: the per-pair difference
            x = ((phi @ V) * W[user[s:e]]).sum(dim=1)
            part = inv * torch.nn.functional.binary_cross_entropy_with_logits(
                x, label[s:e], weight=weight[s:e], reduction="sum")
            part.backward(retain_graph=e < m)  # W is shared by the chunks
            loss += float(part)
        return loss, V.grad, omega.grad

    def pass_proj():
        V = V0.clone().requires_grad_(True)
        omega = omega0.clone().requires_grad_(True)
        P = E @ V  # [n_items, K]
        x = ((P[first] - P[second]) * torch.softmax(omega, dim=1)[user]).sum(dim=1)
        total = inv * torch.nn.functional.binary_cross_entropy_with_logits(
            x, label, weight=weight, reduction="sum") + L2 * (V * V).sum()
        total.backward()
        return float(total), V.grad, omega.grad

    out = {"threads": a.threads, "pairs": m, "items": E.shape[0], "dim": D, "K": K,
           "torch": torch.__version__}
    losses = {}
    for name, fn in (("diff", pass_diff), ("proj", pass_proj)):
        losses[name] = fn()[0]  # warm-up
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name + "_seconds"] = statistics.median(times)
        out[name + "_min_seconds"] = min(times)
    out["loss"] = losses
    print(json.dumps(out))


if __name__ == "__main__":
    main()
