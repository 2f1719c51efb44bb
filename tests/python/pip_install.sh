#!/usr/bin/env bash
# `pip install --no-build-isolation .` into a fresh virtual environment that sees Debian's
# numpy / h5py / pandas, then `import prefmix` from outside the repository. Arguments: the source
# directory and the (already configured) build directory that setup.py builds _prefmix in.
set -euo pipefail
src=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$tmp/env"
PREFMIX_BUILD_DIR="$build" "$tmp/env/bin/pip" install --quiet --no-build-isolation --no-deps \
  "$src" >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; exit 1; }
cd "$tmp"
"$tmp/env/bin/python" - <<'PY'
import numpy as np
import prefmix
assert prefmix.__file__.startswith(__import__("sys").prefix), prefmix.__file__
rng = np.random.default_rng(0)
ds = prefmix.Dataset.from_arrays(rng.standard_normal((20, 4)), [0, 1, 2], [3, 4, 5], [0, 1, 1])
m = prefmix.Model("bt", epochs=3).fit(ds)
# A torch family: the installed package carries the LibTorch module it loads on demand.
p = prefmix.Model("pal-b", k=2, epochs=2).fit(ds)
assert p.fitted
print("installed prefmix", prefmix.__version__, "from", prefmix.__file__, m, p)
PY
