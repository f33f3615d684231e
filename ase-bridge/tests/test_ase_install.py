"""Issue 13: `pip install ./ase-bridge` into a fresh environment raised LibraryNotFoundError with
a meaningless path (.../lib/python3.11/target/release/libhydragnn.so). Installed for real with
pip into a throwaway venv (no downloads: --no-deps --no-build-isolation, its dependencies taken
from this environment through a .pth file), run from outside the repository without HYDRAGNN_LIB:
the wheel ships the engine and computes; built without one, the error says how to fix it."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ase_testutil import REPO

CHECK = """
import os, sys
import hydragnn_ase
from ase.build import bulk
from hydragnn_ase import HydraGNNCalculator, LibraryNotFoundError
assert hydragnn_ase.__file__.startswith(sys.prefix), hydragnn_ase.__file__
try:
    path = hydragnn_ase.library_path()
except LibraryNotFoundError as e:
    print("NOTFOUND", e)
    raise SystemExit(0)
print("LIBRARY", path)
atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
atoms.calc = HydraGNNCalculator(sys.argv[1])
print("ENERGY", atoms.get_potential_energy())
"""


def _venv(tmp_path, lib):
    """A venv with hydragnn-ase installed by pip from a copy of ase-bridge; the engine given to
    the build through HYDRAGNN_LIB (None: no engine)."""
    src = tmp_path / "ase-bridge"
    shutil.copytree(REPO / "ase-bridge", src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info",
                                                                              "__pycache__", "*.so"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # ase, numpy, setuptools, pip (and torch, for libtorch) from this environment
    Path(purelib, "_hgnn_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRAGNN_LIB", "PYTHONPATH", "CARGO_TARGET_DIR")}
    build_env = dict(env, HYDRAGNN_LIB=str(lib)) if lib else env
    out = subprocess.run([str(py), "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", "--no-index",
                          str(src)], env=build_env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    return py, env, out.stdout + out.stderr


def test_pip_install_ships_the_engine(tmp_path, schnet_path):
    lib = Path(os.environ.get("HYDRAGNN_LIB") or REPO / "target" / "release" / "libhydragnn.so")
    assert lib.is_file(), lib
    py, env, _ = _venv(tmp_path, lib)
    out = subprocess.run([str(py), "-c", CHECK, str(schnet_path)], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"LIBRARY {tmp_path / 'venv'}" in out.stdout and "hydragnn_ase/libhydragnn.so" in out.stdout, out.stdout
    energy = float(next(l for l in out.stdout.splitlines() if l.startswith("ENERGY")).split()[1])
    from ase.build import bulk
    from hydragnn_ase import HydraGNNCalculator

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.calc = HydraGNNCalculator(schnet_path)
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-12)


def test_pip_install_without_the_engine_says_how_to_fix_it(tmp_path, schnet_path):
    # Built where neither HYDRAGNN_LIB nor a built engine exists: a copy outside the checkout.
    py, env, log = _venv(tmp_path, None)
    assert "no libhydragnn.so to ship" in log, log
    out = subprocess.run([str(py), "-c", CHECK, str(schnet_path)], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    msg = out.stdout
    assert msg.startswith("NOTFOUND"), msg
    # no path made up from the install location, and the two ways to fix it
    assert "python3.11/target" not in msg and "site-packages/target" not in msg, msg
    assert "HYDRAGNN_LIB" in msg and "cargo build --release -p hydragnn-capi" in msg and "pip install ./ase-bridge" in msg
