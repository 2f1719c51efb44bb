"""pip install --no-build-isolation .   (Debian's setuptools; see docs/python.md)

Builds the compiled part (_prefmix) with the repository's CMake build in ./build (or
$PREFMIX_BUILD_DIR) and installs python/prefmix with it. On Debian 12 install into a virtual
environment that sees the system packages (numpy, h5py, pandas):
    python3 -m venv --system-site-packages ~/prefmix-env
    ~/prefmix-env/bin/pip install --no-build-isolation .
"""
import glob
import os
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    text = open(os.path.join(HERE, "CMakeLists.txt")).read()
    return re.search(r"project\(prefmix VERSION ([0-9.]+)", text).group(1)


class BuildWithCMake(build_py):
    """Builds the _prefmix target with CMake, then copies it (and the LibTorch module it loads on
    demand) beside the Python files."""

    def run(self):
        build = os.environ.get("PREFMIX_BUILD_DIR", os.path.join(HERE, "build"))
        subprocess.check_call(["cmake", "-S", HERE, "-B", build, "-G", "Ninja",
                               "-DCMAKE_BUILD_TYPE=Release", "-DPREFMIX_PYTHON=ON"])
        subprocess.check_call(["cmake", "--build", build, "--target", "prefmix_python",
                               "-j", os.environ.get("PREFMIX_JOBS", "2")])
        super().run()
        built = glob.glob(os.path.join(build, "python", "prefmix", "_prefmix*.so"))
        if not built:
            raise RuntimeError(f"no _prefmix module in {build}/python/prefmix after the build")
        target = os.path.join(self.build_lib, "prefmix")
        os.makedirs(target, exist_ok=True)
        shutil.copy2(built[0], target)
        # The LibTorch module, loaded beside _prefmix when a torch family is first used.
        torch_module = os.path.join(build, "python", "prefmix", "libprefmix_torch.so")
        if not os.path.exists(torch_module):
            raise RuntimeError(f"no {torch_module} after the build")
        shutil.copy2(torch_module, target)


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # the wheel carries a compiled module: tag it for this platform
        return True


setup(
    name="prefmix",
    version=version(),
    description="Pluralistic / personalized preference (reward) models on cached embeddings",
    packages=["prefmix"],
    package_dir={"": "python"},
    python_requires=">=3.9",
    install_requires=["numpy"],
    cmdclass={"build_py": BuildWithCMake},
    options={"build": {"build_base": os.path.join("build", "setuptools")}},
    distclass=BinaryDistribution,
)
