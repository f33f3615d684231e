"""Build hook of hydragnn-ase: the wheel ships the engine, libhydragnn.so, inside the package
(hydragnn_ase/libhydragnn.so, the first place the binding looks after HYDRAGNN_LIB), so that
`pip install ./ase-bridge` gives a calculator that works without further set-up.

Which library: $HYDRAGNN_LIB at build time (an error if it names no file), else the checkout's
target/release/libhydragnn.so (build it first: `. scripts/env.sh && cargo build --release -p
hydragnn-capi`). Without either the wheel has no engine, a warning says so, and the package looks
for one at run time (HYDRAGNN_LIB). A wheel with the engine is tagged for this platform.
Everything else is in pyproject.toml."""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
LIBRARY = "libhydragnn.so"


def engine_library():
    env = os.environ.get("HYDRAGNN_LIB")
    if env:
        if not Path(env).is_file():
            raise SystemExit(f"hydragnn-ase: HYDRAGNN_LIB={env} is not a file (it must be the path of {LIBRARY})")
        return Path(env)
    built = HERE.parent / "target" / "release" / LIBRARY
    return built if built.is_file() else None


class BuildPy(build_py):
    """The standard build_py, plus a copy of the engine library into the package."""

    def run(self):
        super().run()
        lib = engine_library()
        dest = Path(self.build_lib) / "hydragnn_ase" / LIBRARY
        if lib is None:
            if not dest.is_file():
                self.warn(
                    f"hydragnn-ase: no {LIBRARY} to ship (set HYDRAGNN_LIB, or build the engine with "
                    "`cargo build --release -p hydragnn-capi` before `pip install ./ase-bridge`); "
                    "the installed package will need HYDRAGNN_LIB at run time"
                )
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, dest)
        os.chmod(dest, 0o755)


class EngineDistribution(Distribution):
    """A platform wheel when it carries the engine (a compiled library), a pure one otherwise."""

    def has_ext_modules(self):
        return engine_library() is not None or (HERE / "hydragnn_ase" / LIBRARY).is_file()


setup(cmdclass={"build_py": BuildPy}, distclass=EngineDistribution)
