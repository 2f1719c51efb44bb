#!/usr/bin/env python3
"""Writes a golden model file per family on data/golden/tiny.h5, plus expected.json with each
one's scores at a few (user, item) cells, for tests/family/test_golden.cpp: files of the current
model format version that later builds must keep loading and scoring the same.

Run when a family is added or the model format version changes (files are named by the format
version they were written in, and existing files are kept), never to make a failing test pass (a changed score of an existing file is a compatibility break to fix, not to record):
    PYTHONPATH=build/python /usr/bin/python3 data/golden/make_golden.py [FAMILY ...]
Existing files of the families not named are kept as they are.
"""
import json
import os
import struct
import sys

import prefmix

HERE = os.path.dirname(os.path.abspath(__file__))
CELLS = [(0, 0), (0, 1), (0, 2), (5, 10), (5, 11), (11, 39)]
# Small budgets: the files are fixtures, not good models.
BUDGET = {"k": 3, "epochs": 15, "hidden": 8, "dim": 3, "components": 3, "inducing": 10,
          "router": "attributes", "threads": 1, "seed": 7}


def main(names):
    ds = prefmix.Dataset.load(os.path.join(HERE, "tiny.h5"))
    path = os.path.join(HERE, "expected.json")
    expected = json.load(open(path)) if os.path.exists(path) else {}
    for family in names or prefmix.families():
        tmp = os.path.join(HERE, f".{family}.pfmx")
        prefmix.Model(family, **BUDGET).fit(ds).save(tmp)
        # Named by the model format version it was written in (the uint32 after the magic and
        # the archive's endianness byte): files of earlier versions stay beside it.
        version = struct.unpack_from("<I", open(tmp, "rb").read(), 5)[0]
        name = f"{family}-v{version}.pfmx"
        if os.path.exists(os.path.join(HERE, name)):
            os.remove(tmp)
            print(f"{name}: exists, kept")
            continue
        os.replace(tmp, os.path.join(HERE, name))
        scores = prefmix.load(os.path.join(HERE, name)).score(ds)
        expected[name] = [[u, i, float(scores[u, i])] for u, i in CELLS]
        print(f"{name}: {os.path.getsize(os.path.join(HERE, name))} bytes")
    with open(path, "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
