"""prefmix: pluralistic / personalized preference (reward) models on cached embeddings.

The Python face of the C++ library: numpy in, numpy / pandas out, the same model families,
options, defaults and checks as the `prefmix` command line.

    import numpy as np, prefmix
    ds = prefmix.Dataset.from_arrays(items, chosen, rejected, users)   # items: [n_items, D]
    model = prefmix.Model("lowrank", k=3).fit(ds)
    p = model.predict_proba(ds, users=["u1"], chosen=[0], rejected=[5])
    scores = model.score(ds, frame=True)             # DataFrame: users x items

Bad input raises ValueError naming the argument (prefmix's own one-line message); anything
else from the library is a RuntimeError. `prefmix.schema` reads and validates dataset files
with h5py alone.
"""
import json as _json
import logging as _logging
import os as _os
import sys as _sys

# OpenMP workers that wait passively do not take the core the thread they wait for needs (two
# threads would otherwise lose to one on a shared machine). libgomp reads this once, when it is
# first loaded, so it is set before _prefmix loads it; a value already set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as _np

from . import schema  # noqa: F401  (pure Python: usable without the compiled part)

# _prefmix's symbols are made global so that the LibTorch module (libprefmix_torch.so beside it),
# which _prefmix loads when a torch family (bt-mlp, pal-a, pal-b, vpl) is first used, resolves
# its references to prefmix there; `import prefmix` itself does not load LibTorch.
_dlopen_flags = _sys.getdlopenflags()
_sys.setdlopenflags(_dlopen_flags | _os.RTLD_GLOBAL)
try:
    from . import _prefmix as _core
except ImportError as _e:  # pragma: no cover - reported on use
    _core = None
    _import_error = _e
finally:
    _sys.setdlopenflags(_dlopen_flags)

_log = _logging.getLogger("prefmix")  # quiet unless the application configures logging

__all__ = ["Dataset", "Model", "load", "experiment", "fairness", "families", "schema", "Latents"]


def _need_core():
    if _core is None:
        raise ImportError(
            "prefmix's compiled module (_prefmix) is missing: build the repository with CMake "
            "(python3-dev and pybind11-dev installed) and put build/python on PYTHONPATH "
            f"({_import_error})")
    return _core


__version__ = _core.__version__ if _core is not None else "unknown"


def families():
    """The registered model families, in presentation order."""
    return list(_need_core().families())


def _as_ids(values, n, name):
    if values is None:
        return None
    ids = [str(v) for v in values]
    if len(ids) != n:
        raise ValueError(f"{name}: {len(ids)} names for {n} rows")
    return ids


class Dataset:
    """A preference dataset: item embeddings and who preferred which item over which."""

    def __init__(self, core):
        self._ds = core

    @classmethod
    def from_arrays(cls, items, chosen, rejected, users, *, item_ids=None, user_ids=None,
                    attributes=None, contexts=None, context=None, weights=None,
                    user_features=None, embedding_model=""):
        """Builds a dataset from arrays.

        items: [n_items, D] embeddings. chosen, rejected: per comparison, the item rows (chosen
        preferred over rejected). users: per comparison, the user's row (integers 0..n_users-1)
        or the user's id (any hashable; rows are given in order of first appearance).
        user_ids / item_ids: names of the rows. attributes: a pandas DataFrame (one row per user,
        index = user ids, categorical columns) or a dict name -> per-user values; None / NaN is
        unknown. contexts: [n_contexts, Dc] prompt embeddings, context: per comparison context
        row or -1. weights: per comparison weight (> 0). user_features: [n_users, Du].
        """
        core = _need_core()
        items = _np.asarray(items, dtype=_np.float32)
        users = _np.asarray(users)
        if users.dtype.kind in "iu":
            user_rows = users.astype(_np.int64)
            n_users = int(user_rows.max()) + 1 if len(user_rows) else 0
            if user_ids is None:
                user_ids = [str(u) for u in range(n_users)]
        else:
            order = {}
            user_rows = _np.array([order.setdefault(u, len(order)) for u in users.tolist()],
                                  dtype=_np.int64)
            if user_ids is not None:
                raise ValueError("user_ids: give it only when users are integer rows")
            user_ids = [str(u) for u in order]
            n_users = len(user_ids)
        user_ids = _as_ids(user_ids, len(user_ids), "user_ids")
        item_ids = _as_ids(item_ids, items.shape[0] if items.ndim == 2 else -1, "item_ids") or []
        attrs = []
        if attributes is not None:
            attrs = _attributes(attributes, user_ids)
        return cls(core._Dataset.from_arrays(
            items, _np.asarray(chosen, dtype=_np.int64), _np.asarray(rejected, dtype=_np.int64),
            user_rows, user_ids, item_ids,
            None if contexts is None else _np.asarray(contexts, dtype=_np.float32),
            None if context is None else _np.asarray(context, dtype=_np.int64),
            None if weights is None else _np.asarray(weights, dtype=_np.float32),
            attrs,
            None if user_features is None else _np.asarray(user_features, dtype=_np.float32),
            embedding_model))

    @classmethod
    def load(cls, path):
        """Reads a dataset file (HDF5 schema v1, docs/formats.md)."""
        return cls(_need_core()._Dataset.load(str(path)))

    def save(self, path):
        """Writes the dataset file (atomically: whole or not at all)."""
        self._ds.save(str(path))

    n_items = property(lambda self: self._ds.n_items)
    n_users = property(lambda self: self._ds.n_users)
    dim = property(lambda self: self._ds.dim)
    user_ids = property(lambda self: list(self._ds.user_ids))
    item_ids = property(lambda self: list(self._ds.item_ids) or
                        [str(i) for i in range(self._ds.n_items)])
    items = property(lambda self: self._ds.items, doc="[n_items, D] float32 embeddings (a copy)")

    def __len__(self):
        return self._ds.n_pairs  # stored comparisons and ranking-derived pairs

    def __repr__(self):
        return (f"<prefmix.Dataset: {self.n_items} items x {self.dim}, {self.n_users} users, "
                f"{len(self)} comparisons>")

    def to_pandas(self):
        """(comparisons, users) DataFrames: every comparison with user and item ids (stored ones
        first, then those derived from rankings), and one row per user with its attributes."""
        import pandas as pd
        p = self._ds.pairs()
        uid, iid = _np.array(self.user_ids, dtype=object), _np.array(self.item_ids, dtype=object)
        comparisons = pd.DataFrame({
            "user": uid[p["user"]], "chosen": iid[p["chosen"]], "rejected": iid[p["rejected"]],
            "chosen_row": p["chosen"], "rejected_row": p["rejected"], "weight": p["weight"],
            "context": p["context"]})
        users = pd.DataFrame(index=pd.Index(self.user_ids, name="user"))
        for name, (codes, labels) in self._ds.attributes.items():
            labels = list(labels) or [str(c) for c in range(int(codes.max()) + 1)]
            users[name] = pd.Categorical.from_codes(codes, categories=labels)
        return comparisons, users


def _attributes(attributes, user_ids):
    """[(name, codes, labels)] from a DataFrame indexed by user id or a dict of per-user lists."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(attributes, pd.DataFrame):
        frame = attributes
        if frame.index.astype(str).tolist() != user_ids:
            frame = frame.copy()
            frame.index = frame.index.astype(str)
            missing = [u for u in user_ids if u not in frame.index]
            if missing:
                raise ValueError(f"attributes: no row for user '{missing[0]}'")
            frame = frame.loc[user_ids]
        columns = {c: frame[c].tolist() for c in frame.columns}
    else:
        columns = dict(attributes)
    out = []
    for name, values in columns.items():
        values = list(values)
        if len(values) != len(user_ids):
            raise ValueError(f"attributes['{name}']: {len(values)} values for {len(user_ids)} users")
        labels, codes = [], []
        for v in values:
            if v is None or (isinstance(v, float) and v != v):
                codes.append(-1)
                continue
            v = str(v)
            if v not in labels:
                labels.append(v)
            codes.append(labels.index(v))
        out.append((str(name), codes, labels))
    return out


def _args(options):
    """CLI words for keyword options: k=3 -> --k 3, no_refit=True -> --no-refit."""
    words = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                words.append(flag)
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        words += [flag, str(value)]
    return words


class Latents:
    """Users' latents: `ids` (user ids) and `values` [n_users, L]."""

    def __init__(self, ids, values):
        self.ids, self.values = list(ids), values

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.values, index=pd.Index(self.ids, name="user"))

    def __repr__(self):
        return f"<prefmix.Latents: {len(self.ids)} users x {self.values.shape[1]}>"


class Model:
    """A model family with its options, as on the command line (same names, with _ for -, same
    defaults, same checks): Model("lowrank", k=3, epochs=100, seed=1, threads=2)."""

    def __init__(self, family, **options):
        self._family = family
        self._options = dict(options)
        self._m = _need_core()._Model(family, _args(options))
        for note in self._m.notes:
            _log.info(note)

    @classmethod
    def _wrap(cls, core):
        self = cls.__new__(cls)
        self._family, self._options, self._m = core.family, {}, core
        return self

    family = property(lambda self: self._m.family,
                      doc="the family; after fit() with family 'auto', the family it chose")
    fit_report = property(lambda self: _json.loads(self._m.fit_report_json()),
                          doc="the last fit's report: the family's choices on validation (for "
                              "'auto', every candidate's validation score)")
    options = property(lambda self: _json.loads(self._m.options_json()),
                       doc="the resolved options (what the model file records)")
    fitted = property(lambda self: self._m.fitted)

    def get_params(self, deep=True):
        return {"family": self._family, **self._options}

    def fit(self, dataset, valid_fraction=0.2):
        """Trains on every comparison of `dataset` (valid_fraction of each user's pairs held out
        for model selection, as `prefmix train`). Returns the model."""
        self._m.fit(dataset._ds, float(valid_fraction))  # Ctrl-C stops it within an epoch
        return self

    def predict_proba(self, dataset, users, chosen, rejected, unknown_users="error"):
        """P(chosen preferred over rejected) for each (user id, chosen row, rejected row), items
        being rows of `dataset`. Users the model never saw raise ValueError unless
        unknown_users="population"."""
        return _np.asarray(self._m.predict_proba(
            dataset._ds, [str(u) for u in users], [int(i) for i in chosen],
            [int(i) for i in rejected], unknown_users))

    def score(self, dataset, users=None, items=None, latents=None, unknown_users="error",
              frame=False):
        """Reward of each item of `dataset` (all, or the rows in `items`) for each user: users by
        id (default: the training users), or `latents` from adapt(). A float32 array
        [n_users, n_items] that owns the C++ result (no copy when all items are scored), or with
        frame=True a DataFrame indexed by user id, columns item ids."""
        if latents is not None:
            ids, values = latents.ids, self._m.score_latents(dataset._ds, latents.values)
        else:
            ids = list(self._m.train_user_ids) if users is None else [str(u) for u in users]
            values = self._m.score(dataset._ds, ids, unknown_users)
        columns = dataset.item_ids
        if items is not None:
            items = _np.asarray(items, dtype=_np.int64)
            if items.size and (items.min() < 0 or items.max() >= dataset.n_items):
                bad = items[(items < 0) | (items >= dataset.n_items)][0]
                raise ValueError(f"items: row {bad} is not in [0, {dataset.n_items})")
            values = values[:, items]
            columns = [columns[i] for i in items]
        if not frame:
            return values
        import pandas as pd
        return pd.DataFrame(values, index=pd.Index(ids, name="user"), columns=columns)

    def adapt(self, dataset, shots=None):
        """The user step for every user of `dataset` (shared parameters frozen) from all of each
        user's comparisons, or from the first `shots` of them (file order: stored comparisons,
        then ranking-derived ones). Returns Latents(ids, values)."""
        if shots is not None and int(shots) < 0:
            raise ValueError(f"shots: {shots} is negative")
        return Latents(dataset.user_ids,
                       self._m.adapt(dataset._ds, -1 if shots is None else int(shots)))

    def save(self, path):
        """Writes the model file (the CLI's format: `prefmix eval --model-file` reads it)."""
        self._m.save(str(path))

    def __repr__(self):
        state = "fitted" if self.fitted else "not fitted"
        return f"<prefmix.Model {self._family} ({state})>"


def load(path):
    """Reads a model file written by Model.save or `prefmix train`."""
    return Model._wrap(_need_core()._Model.load(str(path)))


def experiment(dataset, families, protocol="seen", **options):
    """Trains and evaluates each family under a protocol (seen | unseen | subsample), with the
    CLI's model and protocol options (e.g. shots=[1, 5], repeats=5, k=3). Returns the metrics
    dict `prefmix experiment` writes as JSON (a list when several families are given)."""
    single = isinstance(families, str)
    fams = [families] if single else list(families)
    out = _json.loads(_need_core()._experiment(dataset._ds, fams,
                                               _args({"protocol": protocol, **options})))
    for note in out["notes"]:
        _log.info(note)
    return out["results"][0] if single else out["results"]


def fairness(dataset, families, protocol="seen", by=None, bootstrap=1000, ci_level=0.95,
             hist_bins=10, closure=True, **options):
    """`prefmix fairness` from Python: every family under the same split(s), per-group accuracy
    and log loss with bootstrap CIs, worst group, gaps, per-user distributions, MaxMin selection
    win rates for multi-head models. Returns the dict the CLI writes as fairness.json (without
    provenance). `by`: the attributes to report (default: every user attribute)."""
    fams = [families] if isinstance(families, str) else list(families)
    out = _json.loads(_need_core()._fairness(
        dataset._ds, fams, _args({"protocol": protocol, **options}), list(by or []),
        int(bootstrap), float(ci_level), int(hist_bins), bool(closure)))
    for note in out["notes"]:
        _log.info(note)
    return out["result"]
