"""`import prefmix` (python/prefmix): round trips, every family from Python, identical results to
the CLI, errors as ValueError naming the argument, and zero-copy scores. Run by ctest with
PYTHONPATH=build/python and PREFMIX_CLI set (stdlib unittest)."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import prefmix

CLI = os.environ.get("PREFMIX_CLI", "build/prefmix")


def planted(n_users=40, per_user=16, n_items=80, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((n_items, dim)).astype(np.float32)
    tastes = rng.standard_normal((3, dim))
    group = rng.integers(0, 3, n_users)
    users, chosen, rejected = [], [], []
    for u in range(n_users):
        for _ in range(per_user):
            a, b = rng.choice(n_items, 2, replace=False)
            d = items[a] @ tastes[group[u]] - items[b] @ tastes[group[u]]
            win = rng.random() < 1 / (1 + np.exp(-2 * d))
            users.append(u)
            chosen.append(a if win else b)
            rejected.append(b if win else a)
    return items, np.array(chosen), np.array(rejected), np.array(users), group


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        items, chosen, rejected, users, group = planted()
        cls.arrays = (items, chosen, rejected, users)
        cls.ds = prefmix.Dataset.from_arrays(
            items, chosen, rejected, users, user_ids=[f"p{u}" for u in range(40)],
            item_ids=[f"i{i}" for i in range(80)],
            attributes={"group": [f"g{g}" for g in group]}, embedding_model="toy")

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_arrays_dataset_file_dataset(self):
        ds = self.ds
        self.assertEqual((ds.n_items, ds.dim, ds.n_users, len(ds)), (80, 6, 40, 640))
        ds.save(self.path("d.h5"))
        back = prefmix.Dataset.load(self.path("d.h5"))
        np.testing.assert_array_equal(back.items, self.arrays[0])
        self.assertEqual(back.user_ids, ds.user_ids)
        self.assertEqual(back.item_ids, ds.item_ids)
        comparisons, users = back.to_pandas()
        self.assertEqual(len(comparisons), 640)
        self.assertEqual(comparisons["chosen_row"].tolist(), self.arrays[1].tolist())
        self.assertEqual(comparisons["user"].iloc[0], "p0")
        self.assertEqual(users.shape, (40, 1))
        # The file follows the schema as the pure-Python reader sees it.
        self.assertEqual(prefmix.schema.validate(self.path("d.h5"))["comparisons"], 640)
        # Users given by id instead of row.
        ids = [f"x{u}" for u in self.arrays[3]]
        by_id = prefmix.Dataset.from_arrays(*self.arrays[:3], ids)
        self.assertEqual(by_id.user_ids[:2], ["x0", "x1"])

    def test_every_family_fits_and_predicts(self):
        budget = dict(k=3, epochs=8, hidden=16, dim=3, components=3, inducing=20, no_refit=True,
                      router="attributes", threads=1, seed=2)
        self.assertEqual(set(prefmix.families()),
                         {"bt", "lowrank", "em-bt", "pal-a", "pal-b", "vpl", "micro", "gppl"})
        for family in prefmix.families():
            with self.subTest(family=family):
                m = prefmix.Model(family, **budget).fit(self.ds)
                p = m.predict_proba(self.ds, ["p0", "p1", "p0"], [0, 1, 2], [3, 4, 5])
                self.assertEqual(p.shape, (3,))
                self.assertTrue(np.all((p >= 0) & (p <= 1)))
                s = m.score(self.ds)
                self.assertEqual(s.shape, (40, 80))
                self.assertEqual(s.dtype, np.float32)
                lat = m.adapt(self.ds)
                self.assertEqual(lat.values.shape[0], 40)

    def test_auto_chooses_a_family_and_reports_every_candidate(self):
        m = prefmix.Model("auto", auto_families="bt,lowrank", seed=1, threads=1)
        self.assertEqual(m.family, "auto")
        m.fit(self.ds)
        report = m.fit_report["auto"]
        self.assertEqual([c["candidate"] for c in report["candidates"]], ["bt", "lowrank"])
        self.assertIn(m.family, ("bt", "lowrank"))
        self.assertEqual(m.family, report["chosen"])
        m.save(self.path("auto.pfmx"))
        self.assertEqual(prefmix.load(self.path("auto.pfmx")).family, m.family)
        e = prefmix.experiment(self.ds, "auto", auto_families="bt,lowrank", seed=1)
        self.assertEqual(e["model"], "auto")
        self.assertIn(e["fit"]["auto"]["chosen"], ("bt", "lowrank"))
        with self.assertRaisesRegex(ValueError, "--auto-families: unknown family 'nope'"):
            prefmix.Model("auto", auto_families="bt,nope")

    def test_same_predictions_as_the_cli(self):
        self.ds.save(self.path("cli.h5"))
        run = [CLI, "train", "--data", self.path("cli.h5"), "--model", "lowrank", "--k", "3",
               "--epochs", "30", "--seed", "4", "--threads", "1", "--quiet",
               "--out", self.path("cli.pfmx")]
        subprocess.run(run, check=True)
        subprocess.run([CLI, "score", "--model-file", self.path("cli.pfmx"), "--data",
                        self.path("cli.h5"), "--out", self.path("cli_scores.h5")], check=True)
        cli_scores = prefmix.schema.h5py.File(self.path("cli_scores.h5"), "r")["scores"][()]
        m = prefmix.Model("lowrank", k=3, epochs=30, seed=4, threads=1).fit(self.ds)
        np.testing.assert_array_equal(m.score(self.ds), cli_scores)
        # A model file from the CLI loads in Python and predicts the same.
        loaded = prefmix.load(self.path("cli.pfmx"))
        np.testing.assert_array_equal(loaded.score(self.ds), cli_scores)
        m.save(self.path("py.pfmx"))
        out = subprocess.run([CLI, "eval", "--model-file", self.path("py.pfmx"), "--data",
                              self.path("cli.h5"), "--json", "-"], check=True,
                             capture_output=True, text=True).stdout
        self.assertIn('"model": "lowrank"', out)

    def test_bad_arguments_raise_value_error_naming_them(self):
        cases = [
            (lambda: prefmix.Model("nope"), "unknown family 'nope'"),
            (lambda: prefmix.Model("lowrank", epochs=-3), "--epochs"),
            (lambda: prefmix.Model("lowrank", frobnicate=1), "frobnicate"),
            (lambda: prefmix.Model("gppl", components=0), "--components: 0"),
            (lambda: prefmix.Model("bt", l2=float("nan")), "--l2: nan"),
            (lambda: prefmix.Dataset.from_arrays(np.zeros((3, 2)), [0], [0], [0]),
             "compared with itself"),
            (lambda: prefmix.Dataset.from_arrays(np.zeros((3, 2)), [0], [7], [0]), "7"),
            (lambda: prefmix.Dataset.from_arrays(np.zeros((3, 2)), [0, 1], [1], [0]),
             "lengths"),
            (lambda: prefmix.Model("bt").score(self.ds), "not fitted"),
            (lambda: prefmix.Dataset.load(self.path("missing.h5")), "missing.h5"),
        ]
        for call, text in cases:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as e:
                    call()
                self.assertIn(text, str(e.exception))
        m = prefmix.Model("lowrank", k=3, epochs=5).fit(self.ds)
        with self.assertRaises(ValueError) as e:
            m.predict_proba(self.ds, ["stranger"], [0], [1])
        self.assertIn("stranger", str(e.exception))
        p = m.predict_proba(self.ds, ["stranger"], [0], [1], unknown_users="population")
        self.assertEqual(p.shape, (1,))

    def test_adapt_from_the_first_shots_and_score_some_items(self):
        m = prefmix.Model("lowrank", k=3, epochs=10, seed=1).fit(self.ds)
        full = m.adapt(self.ds)
        cold = m.adapt(self.ds, shots=0)
        two = m.adapt(self.ds, shots=2)
        self.assertEqual(cold.ids, self.ds.user_ids)
        # 0 shots: every user at the population latent; 2 shots: in between, not the full fit.
        np.testing.assert_allclose(cold.values, np.repeat(cold.values[:1], 40, axis=0))
        self.assertFalse(np.allclose(two.values, cold.values))
        self.assertFalse(np.allclose(two.values, full.values))
        s = m.score(self.ds, users=["p3"], items=[5, 1])
        np.testing.assert_array_equal(s, m.score(self.ds, users=["p3"])[:, [5, 1]])
        frame = m.score(self.ds, latents=two, items=[0], frame=True)
        self.assertEqual(list(frame.columns), ["i0"])
        with self.assertRaises(ValueError) as e:
            m.score(self.ds, items=[80])
        self.assertIn("items: row 80", str(e.exception))

    def test_scores_are_not_copied(self):
        m = prefmix.Model("bt", epochs=5).fit(self.ds)
        s = m.score(self.ds)
        # The array owns the C++ result through a capsule: no second buffer.
        self.assertIsNotNone(s.base)
        self.assertTrue(s.flags["C_CONTIGUOUS"])
        frame = m.score(self.ds, frame=True)
        self.assertEqual(list(frame.columns[:2]), ["i0", "i1"])
        self.assertEqual(frame.index[0], "p0")

    def test_experiment_returns_the_cli_metrics(self):
        m = prefmix.experiment(self.ds, "lowrank", protocol="unseen", shots=[0, 2], k=3,
                               epochs=10, seed=1)
        self.assertEqual(m["model"], "lowrank")
        self.assertEqual(m["protocol"], "unseen")
        self.assertEqual([s["k"] for s in m["shots"]], [0, 2])
        self.assertIn("per_group", m)
        both = prefmix.experiment(self.ds, ["bt", "em-bt"], k=3, seed=1)
        self.assertEqual([x["model"] for x in both], ["bt", "em-bt"])

    def test_fairness_returns_the_cli_dict(self):
        f = prefmix.fairness(self.ds, ["bt", "lowrank"], k=3, epochs=10, bootstrap=50, seed=1)
        for key in ["format", "format_version", "dataset", "protocol", "groupings", "bootstrap",
                    "models"]:
            self.assertIn(key, f)
        self.assertEqual([m["model"] for m in f["models"]], ["bt", "lowrank"])
        with self.assertRaises(ValueError) as e:
            prefmix.fairness(self.ds, "bt", by=["nonexistent"])
        self.assertIn("nonexistent", str(e.exception))

    def test_libtorch_loads_only_when_a_torch_family_is_used(self):
        # A fresh interpreter: `import prefmix` and a bt (linear) fit map no LibTorch; a pal-b fit
        # loads the module beside _prefmix and trains.
        code = """
import numpy as np, prefmix
def torch_mapped():
    return any("libtorch" in line or "libprefmix_torch" in line for line in open("/proc/self/maps"))
rng = np.random.default_rng(0)
ds = prefmix.Dataset.from_arrays(rng.standard_normal((30, 4)), list(range(0, 20)),
                                 list(range(10, 30)), [i % 4 for i in range(20)])
print("import", torch_mapped())
prefmix.Model("bt", epochs=3).fit(ds)
print("bt", torch_mapped())
m = prefmix.Model("pal-b", k=2, epochs=2).fit(ds)
print("pal-b", torch_mapped(), m.fitted)
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split("\n")[:3],
                         ["import False", "bt False", "pal-b True True"], out.stdout)

    def test_the_module_exports_prefmix_symbols_only(self):
        # _prefmix is imported with RTLD_GLOBAL (for the LibTorch module): its Eigen, Boost and
        # standard-library instantiations must stay local (python/src/exports.map).
        import glob
        so = glob.glob(os.path.join(os.path.dirname(prefmix.__file__), "_prefmix*.so"))[0]
        out = subprocess.run(["nm", "-D", "--defined-only", "-C", so], capture_output=True,
                             text=True, check=True).stdout
        names = [line.split(" ", 2)[2] for line in out.splitlines() if line.count(" ") >= 2]
        self.assertIn("PyInit__prefmix", names)
        self.assertEqual([n for n in names if "prefmix" not in n], [])

    def test_ctrl_c_stops_a_long_fit(self):
        import signal
        import threading
        import time
        # About a million epochs of bt: minutes of work, interrupted after one second.
        m = prefmix.Model("bt", epochs=1000000, patience=1000000, l2=0.001, threads=1)
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        t0 = time.monotonic()
        timer.start()
        with self.assertRaises(KeyboardInterrupt):
            m.fit(self.ds)
        latency = time.monotonic() - t0 - 1.0
        timer.join()
        print(f"\nKeyboardInterrupt {latency:.3f} s after SIGINT", file=sys.stderr)
        self.assertLess(latency, 3.0)
        self.assertFalse(m.fitted)  # an interrupted fit leaves no half-trained model
        self.assertTrue(prefmix.Model("bt", epochs=3).fit(self.ds).fitted)  # usable afterwards


if __name__ == "__main__":
    unittest.main()
