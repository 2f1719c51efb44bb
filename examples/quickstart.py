#!/usr/bin/env python3
"""prefmix quick start: bring your own embeddings -> fit -> adapt new users -> fairness table.

Run from a build tree: PYTHONPATH=build/python python3 examples/quickstart.py
The embeddings here are random stand-ins for a foundation model's; the people are planted in
two taste groups (70 % / 30 %) so that a one-reward model serves the minority worse.
"""
import numpy as np

import prefmix

rng = np.random.default_rng(0)
n_items, dim, n_users, per_user = 400, 16, 200, 30
items = rng.standard_normal((n_items, dim)).astype(np.float32)   # your cached embeddings
tastes = rng.standard_normal((2, dim))                            # two planted tastes
group = (rng.random(n_users) < 0.3).astype(int)                   # 30 % minority

users, chosen, rejected = [], [], []
for u in range(n_users):
    for _ in range(per_user):
        a, b = rng.choice(n_items, 2, replace=False)
        ra, rb = items[a] @ tastes[group[u]], items[b] @ tastes[group[u]]
        win = rng.random() < 1 / (1 + np.exp(-(ra - rb)))
        users.append(f"user{u}")
        chosen.append(a if win else b)
        rejected.append(b if win else a)

ds = prefmix.Dataset.from_arrays(
    items, chosen, rejected, users,
    attributes={"group": ["minority" if g else "majority" for g in group]})
print(ds)

# Train on the first 150 people; the last 50 are new users adapted from their comparisons.
seen = [i for i, u in enumerate(users) if int(u[4:]) < 150]
train = prefmix.Dataset.from_arrays(items, np.take(chosen, seen), np.take(rejected, seen),
                                    [users[i] for i in seen])
model = prefmix.Model("lowrank", k=2, seed=1).fit(train)
new = [i for i, u in enumerate(users) if int(u[4:]) >= 150]
new_ds = prefmix.Dataset.from_arrays(items, np.take(chosen, new), np.take(rejected, new),
                                     [users[i] for i in new])
latents = model.adapt(new_ds)
scores = model.score(new_ds, latents=latents)                     # [50 users, 400 items]
print("adapted", latents, "scores", scores.shape)

# Fairness: every family under the same protocol, per-group and worst-group accuracy.
print(f"{'family':10s} {'accuracy':>9s} {'worst group':>12s}")
for family in ["bt", "lowrank", "em-bt"]:
    m = prefmix.experiment(ds, family, protocol="seen", k=2, seed=1)
    worst = m["worst_group"]
    print(f"{family:10s} {m['accuracy']:9.3f} {worst['accuracy']:9.3f} ({worst['group']})")
    assert 0.5 < m["accuracy"] <= 1.0
