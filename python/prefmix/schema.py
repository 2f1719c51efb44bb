#!/usr/bin/env python3
"""prefmix dataset files (HDF5 schema v1) in plain h5py + numpy.

This module is the reference for people who write prefmix datasets from their own pipelines, and
the repository's second implementation of the format (the tests check the C++ reader and writer
against it). The format itself is described in docs/formats.md.

    read(path)            -> dict of numpy arrays and strings (every part of the file that exists)
    validate(path)        -> summary dict; raises SchemaError naming the path, field and value
    write(path, **parts)  -> writes a schema v1 file from arrays (ids and labels as Python strings)
    example(path, seed)   -> writes a small file that uses every optional part of the schema

Command line (Debian's /usr/bin/python3 with python3-h5py and python3-numpy):

    python3 python/prefmix/schema.py validate FILE...    exit 0 and one summary line per file,
                                                         or exit 1 and one line saying what is wrong
    python3 python/prefmix/schema.py example OUT [SEED]  write the example file
"""
import sys

import numpy as np

try:
    import h5py
except ImportError:  # pragma: no cover - reported when used
    h5py = None

FORMAT = "prefmix.dataset"
FORMAT_VERSION = 1


class SchemaError(ValueError):
    """A file that does not follow schema v1. `field` is the HDF5 path (or attribute) at fault."""

    def __init__(self, file, field, message):
        self.file, self.field = file, field
        super().__init__(f"{file}: {field}: {message}")


def _need_h5py():
    if h5py is None:
        raise RuntimeError("prefmix.schema needs h5py (Debian: apt-get install python3-h5py)")


def _text(x):
    """One string from any HDF5 string layout: variable-length or fixed-length, bytes or str
    (fixed-length byte strings are NUL-padded; numpy strips the padding, never a real character)."""
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.bytes_):
        return bytes(x).decode("utf-8")
    return str(x)


def _strings(dset):
    return [_text(x) for x in np.asarray(dset[()]).reshape(-1)]


def _attr_text(attrs, name):
    v = attrs.get(name)
    if v is None:
        return None
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    return _text(v)


class _Checker:
    """Shape, dtype and range checks that name the file, the field and the offending value."""

    def __init__(self, path, f):
        self.path, self.f = path, f

    def fail(self, field, message):
        raise SchemaError(self.path, field, message)

    def dataset(self, name, required=True):
        if name not in self.f:
            if required:
                self.fail("/" + name, "missing")
            return None
        d = self.f[name]
        if not isinstance(d, h5py.Dataset):
            self.fail("/" + name, "a dataset expected, found a group")
        return d

    def index(self, name, n=None, lo=0, hi=None, required=True):
        d = self.dataset(name, required)
        if d is None:
            return None
        if d.dtype.kind not in "iu":
            self.fail("/" + name, f"integer indices expected, found dtype {d.dtype}")
        if d.ndim != 1:
            self.fail("/" + name, f"1-D expected, found shape {list(d.shape)}")
        a = d[()].astype(np.int64)
        if n is not None and len(a) != n:
            self.fail("/" + name, f"{len(a)} entries, expected {n}")
        if len(a):
            bad = np.flatnonzero((a < lo) | (a >= hi) if hi is not None else (a < lo))
            if len(bad):
                i = int(bad[0])
                where = f"[{lo}, {hi})" if hi is not None else f"[{lo}, ...)"
                self.fail(f"/{name}[{i}]", f"value {a[i]} outside {where}")
        return a

    def matrix(self, name, rows=None, required=True):
        d = self.dataset(name, required)
        if d is None:
            return None
        if d.dtype.kind != "f":
            self.fail("/" + name, f"float32 expected, found dtype {d.dtype}")
        if d.ndim != 2:
            self.fail("/" + name, f"2-D expected, found shape {list(d.shape)}")
        x = d[()]
        if rows is not None and x.shape[0] != rows:
            self.fail("/" + name, f"{x.shape[0]} rows, expected {rows}")
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            i, j = (int(v) for v in bad[0])
            self.fail(f"/{name}[{i}, {j}]", f"non-finite value {x[i, j]}")
        return x.astype(np.float32, copy=False)

    def strings(self, name, n=None, unique=False, required=True):
        d = self.dataset(name, required)
        if d is None:
            return None
        if d.dtype.kind not in "OSU":
            self.fail("/" + name, f"strings expected, found dtype {d.dtype}")
        s = _strings(d)
        if n is not None and len(s) != n:
            self.fail("/" + name, f"{len(s)} entries, expected {n}")
        if unique:
            seen = {}
            for i, x in enumerate(s):
                if x in seen:
                    self.fail(f"/{name}[{i}]", f"duplicate id '{x}' (first at row {seen[x]})")
                seen[x] = i
        return s


def read(path):
    """Every part of a schema v1 file, validated. Keys follow the HDF5 paths with '/' → '_'
    (items_embeddings, comparisons_user, ...); attributes come as {name: (codes, labels)}."""
    _need_h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SchemaError(path, "file", f"not an HDF5 file ({e})") from None
    with f:
        c = _Checker(path, f)
        fmt = _attr_text(f.attrs, "format")
        if fmt != FORMAT:
            c.fail("format", f"root attribute is {fmt!r}, expected {FORMAT!r}")
        ver = f.attrs.get("format_version")
        if ver is None or np.asarray(ver).dtype.kind not in "iu" or int(ver) != FORMAT_VERSION:
            c.fail("format_version", f"root attribute is {ver!r}, expected the integer 1")
        out = {"embedding_model": _attr_text(f.attrs, "embedding_model"),
               "description": _attr_text(f.attrs, "description")}

        emb = c.matrix("items/embeddings")
        if f["items/embeddings"].dtype != np.float32:
            c.fail("/items/embeddings", f"float32 expected, found dtype {f['items/embeddings'].dtype}")
        n_items = emb.shape[0]
        out["items_embeddings"] = emb
        out["items_ids"] = c.strings("items/ids", n_items, unique=True, required=False)
        ctx = c.matrix("contexts/embeddings", required=False)
        out["contexts_embeddings"] = ctx
        n_ctx = 0 if ctx is None else ctx.shape[0]

        ids = c.strings("users/ids", unique=True)
        n_users = len(ids)
        out["users_ids"] = ids

        m = 0
        if "comparisons" in f:
            u = c.index("comparisons/user", hi=n_users)
            m = len(u)
            ch = c.index("comparisons/chosen", m, hi=n_items)
            rj = c.index("comparisons/rejected", m, hi=n_items)
            same = np.flatnonzero(ch == rj)
            if len(same):
                i = int(same[0])
                c.fail(f"/comparisons/chosen[{i}]", f"item {ch[i]} compared with itself")
            out.update(comparisons_user=u, comparisons_chosen=ch, comparisons_rejected=rj)
            out["comparisons_context"] = c.index("comparisons/context", m, -1, n_ctx, required=False)
            wd = c.dataset("comparisons/weight", required=False)
            if wd is not None:
                w = wd[()]
                if w.ndim != 1 or len(w) != m:
                    c.fail("/comparisons/weight", f"shape {list(w.shape)}, expected [{m}]")
                bad = np.flatnonzero(~(np.isfinite(w) & (w > 0)))
                if len(bad):
                    i = int(bad[0])
                    c.fail(f"/comparisons/weight[{i}]", f"value {w[i]}: weights are finite and > 0")
                out["comparisons_weight"] = w.astype(np.float32, copy=False)

        n_rank_pairs = 0
        if "rankings" in f:
            ru = c.index("rankings/user", hi=n_users)
            off = c.index("rankings/offsets", len(ru) + 1)
            items = c.index("rankings/items", hi=n_items)
            if off[0] != 0:
                c.fail("/rankings/offsets", f"must start at 0, starts at {off[0]}")
            if off[-1] != len(items):
                c.fail("/rankings/offsets", f"ends at {off[-1]}, /rankings/items has {len(items)}")
            if (np.diff(off) < 0).any():
                c.fail("/rankings/offsets", "decreases")
            lengths = np.diff(off)
            n_rank_pairs = int((lengths * (lengths - 1) // 2).sum())
            out.update(rankings_user=ru, rankings_offsets=off, rankings_items=items)
        if m == 0 and n_rank_pairs == 0:
            c.fail("/comparisons", "no comparisons and no ranking pairs")

        attributes = {}
        if "users/attributes" in f:
            for name in f["users/attributes"]:
                field = f"users/attributes/{name}"
                d = c.dataset(field)
                labels = d.attrs.get("labels")
                labels = None if labels is None else [_text(x) for x in np.asarray(labels).reshape(-1)]
                codes = c.index(field, n_users, -1, len(labels) if labels is not None else None)
                attributes[name] = (codes.astype(np.int32), labels)
        out["users_attributes"] = attributes
        out["users_features"] = c.matrix("users/features", n_users, required=False)

        if "truth" in f:
            out["truth_pair_prob"] = f["truth/pair_prob"][()] if "truth/pair_prob" in f else None
            for k in ("user_group", "user_weights", "group_item_reward"):
                out["truth_" + k] = f["truth/" + k][()] if "truth/" + k in f else None
        out["n_ranking_pairs"] = n_rank_pairs
        return out


def validate(path):
    """Checks `path` against schema v1; returns a summary dict or raises SchemaError."""
    d = read(path)
    return {
        "items": d["items_embeddings"].shape[0],
        "dim": d["items_embeddings"].shape[1],
        "users": len(d["users_ids"]),
        "comparisons": 0 if d.get("comparisons_user") is None else len(d["comparisons_user"]),
        "ranking_pairs": d["n_ranking_pairs"],
        "contexts": 0 if d["contexts_embeddings"] is None else d["contexts_embeddings"].shape[0],
        "attributes": {k: (len(v[1]) if v[1] is not None else None)
                       for k, v in d["users_attributes"].items()},
    }


def write(path, items, users, chosen=None, rejected=None, comparison_users=None, *,
          item_ids=None, contexts=None, context=None, weight=None, rankings=None,
          attributes=None, user_features=None, embedding_model=None, description=None):
    """Writes a schema v1 file.

    items: [n_items, D] float array. users: the user ids (strings), one per user row.
    chosen, rejected, comparison_users: per-comparison item and user row indices.
    rankings: list of (user_row, [item rows best first]). attributes: {name: (codes, labels)}.
    Indices are written as int64, strings as variable-length UTF-8 (the layout prefmix writes)."""
    _need_h5py()
    text = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        if embedding_model is not None:
            f.attrs["embedding_model"] = embedding_model
        if description is not None:
            f.attrs["description"] = description
        f.create_dataset("items/embeddings", data=np.asarray(items, dtype=np.float32))
        if item_ids is not None:
            f.create_dataset("items/ids", data=list(item_ids), dtype=text)
        if contexts is not None:
            f.create_dataset("contexts/embeddings", data=np.asarray(contexts, dtype=np.float32))
        if chosen is not None:
            for name, a in (("user", comparison_users), ("chosen", chosen), ("rejected", rejected)):
                f.create_dataset("comparisons/" + name, data=np.asarray(a, dtype=np.int64))
            if context is not None:
                f.create_dataset("comparisons/context", data=np.asarray(context, dtype=np.int64))
            if weight is not None:
                f.create_dataset("comparisons/weight", data=np.asarray(weight, dtype=np.float32))
        if rankings:
            lists = [np.asarray(r, dtype=np.int64) for _, r in rankings]
            f.create_dataset("rankings/user", data=np.array([u for u, _ in rankings], np.int64))
            f.create_dataset("rankings/offsets",
                             data=np.concatenate([[0], np.cumsum([len(r) for r in lists])]).astype(np.int64))
            f.create_dataset("rankings/items", data=np.concatenate(lists))
        f.create_dataset("users/ids", data=list(users), dtype=text)
        for name, (codes, labels) in (attributes or {}).items():
            d = f.create_dataset("users/attributes/" + name, data=np.asarray(codes, dtype=np.int32))
            if labels is not None:
                d.attrs.create("labels", list(labels), dtype=text)
        if user_features is not None:
            f.create_dataset("users/features", data=np.asarray(user_features, dtype=np.float32))


def example(path, seed=0):
    """A small file using every optional part: 30 items × 8, 3 contexts, 6 users, 40 comparisons
    (some with a context, all weighted), 3 rankings of 4 items (18 derived pairs), an attribute
    `region` (east/west, one user unknown) and 3 user features."""
    rng = np.random.default_rng(seed)
    n_items, n_users, m = 30, 6, 40
    chosen = rng.integers(0, n_items, m)
    rejected = (chosen + rng.integers(1, n_items, m)) % n_items  # never the chosen item
    write(path,
          items=rng.standard_normal((n_items, 8)),
          users=[f"user{u}" for u in range(n_users)],
          chosen=chosen, rejected=rejected, comparison_users=rng.integers(0, n_users, m),
          item_ids=[f"item{i}" for i in range(n_items)],
          contexts=rng.standard_normal((3, 8)),
          context=np.where(rng.random(m) < 0.5, rng.integers(0, 3, m), -1),
          weight=rng.uniform(0.25, 2.0, m),
          rankings=[(u, rng.permutation(n_items)[:4]) for u in (0, 3, 5)],
          attributes={"region": ([0, 1, 0, -1, 1, 1], ["east", "west"])},
          user_features=rng.standard_normal((n_users, 3)),
          embedding_model="example")


def _main(argv):
    if len(argv) >= 2 and argv[0] == "validate":
        status = 0
        for p in argv[1:]:
            try:
                s = validate(p)
            except SchemaError as e:
                print(f"invalid: {e}", file=sys.stderr)
                status = 1
                continue
            print(f"ok: {p}: {s['items']} items x {s['dim']}, {s['users']} users, "
                  f"{s['comparisons']} comparisons + {s['ranking_pairs']} ranking pairs, "
                  f"{s['contexts']} contexts, attributes {s['attributes']}")
        return status
    if len(argv) in (2, 3) and argv[0] == "example":
        example(argv[1], int(argv[2]) if len(argv) == 3 else 0)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
