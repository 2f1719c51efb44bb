"""Tests of python/prefmix/schema.py (stdlib unittest; run by ctest as `python.schema`)."""
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from prefmix import schema  # noqa: E402

try:
    import h5py
except ImportError:  # pragma: no cover
    h5py = None


@unittest.skipIf(h5py is None, "python3-h5py missing: apt-get install python3-h5py")
class SchemaTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "d.h5")

    def tearDown(self):
        self.dir.cleanup()

    def test_write_read_round_trip(self):
        items = np.arange(12, dtype=np.float32).reshape(4, 3)
        schema.write(self.path, items=items, users=["ann", "bo"], chosen=[0, 2, 3],
                     rejected=[1, 1, 0], comparison_users=[0, 1, 1], weight=[1, 2, 0.5],
                     rankings=[(1, [3, 2, 1])], attributes={"age": ([1, -1], ["young", "old"])},
                     embedding_model="toy")
        d = schema.read(self.path)
        np.testing.assert_array_equal(d["items_embeddings"], items)
        self.assertEqual(d["users_ids"], ["ann", "bo"])
        np.testing.assert_array_equal(d["comparisons_chosen"], [0, 2, 3])
        self.assertEqual(d["comparisons_chosen"].dtype, np.int64)
        np.testing.assert_array_equal(d["rankings_offsets"], [0, 3])
        self.assertEqual(d["n_ranking_pairs"], 3)
        codes, labels = d["users_attributes"]["age"]
        np.testing.assert_array_equal(codes, [1, -1])
        self.assertEqual(labels, ["young", "old"])
        self.assertEqual(d["embedding_model"], "toy")
        s = schema.validate(self.path)
        self.assertEqual((s["items"], s["dim"], s["users"], s["comparisons"]), (4, 3, 2, 3))

    def test_example_uses_every_part(self):
        schema.example(self.path, seed=3)
        s = schema.validate(self.path)
        self.assertEqual(s, {"items": 30, "dim": 8, "users": 6, "comparisons": 40,
                             "ranking_pairs": 18, "contexts": 3, "attributes": {"region": 2}})

    def test_fixed_length_strings_keep_every_character(self):
        schema.example(self.path)
        with h5py.File(self.path, "r+") as f:
            del f["users/ids"]
            f["users/ids"] = np.array([b"new0_g0", b"u1", b"u2", b"u3", b"u4", b"user_five"])
        self.assertEqual(schema.read(self.path)["users_ids"][0], "new0_g0")
        self.assertEqual(schema.read(self.path)["users_ids"][5], "user_five")

    def test_errors_name_the_field_and_value(self):
        cases = [
            ("c = f['comparisons/chosen']; x = c[()]; x[5] = 999; c[...] = x",
             "/comparisons/chosen[5]", "999"),
            ("e = f['items/embeddings']; x = e[()]; x[3, 2] = np.nan; e[...] = x",
             "/items/embeddings[3, 2]", "nan"),
            ("f.attrs['format_version'] = 2", "format_version", "2"),
            ("ids = f['users/ids']; x = ids[()]; x[4] = x[1]; ids[...] = x",
             "/users/ids[4]", "user1"),
            ("o = f['rankings/offsets']; x = o[()]; x[0] = 1; o[...] = x",
             "/rankings/offsets", "1"),
            ("w = f['comparisons/weight']; x = w[()]; x[7] = -0.5; w[...] = x",
             "/comparisons/weight[7]", "-0.5"),
            ("a = f['users/attributes/region']; x = a[()]; x[0] = 5; a[...] = x",
             "/users/attributes/region[0]", "5"),
            ("c = f['comparisons/context']; x = c[()]; x[1] = 3; c[...] = x",
             "/comparisons/context[1]", "3"),
            ("del f['users/ids']", "/users/ids", "missing"),
        ]
        for code, field, value in cases:
            with self.subTest(field=field):
                schema.example(self.path)
                with h5py.File(self.path, "r+") as f:
                    exec(code, {"f": f, "np": np})
                with self.assertRaises(schema.SchemaError) as e:
                    schema.validate(self.path)
                self.assertEqual(e.exception.field, field)
                self.assertIn(value, str(e.exception))
                self.assertIn(self.path, str(e.exception))

    def test_not_hdf5(self):
        with open(self.path, "w") as f:
            f.write("user,chosen,rejected\n")
        with self.assertRaises(schema.SchemaError) as e:
            schema.validate(self.path)
        self.assertIn("not an HDF5 file", str(e.exception))

    def test_command_line(self):
        self.assertEqual(schema._main(["example", self.path, "1"]), 0)
        self.assertEqual(schema._main(["validate", self.path]), 0)
        with h5py.File(self.path, "r+") as f:
            f.attrs["format"] = "other"
        self.assertEqual(schema._main(["validate", self.path]), 1)


if __name__ == "__main__":
    if h5py is None:
        print("skipped: python3-h5py missing (apt-get install python3-h5py)")
        sys.exit(77)
    unittest.main()
