"""Clear Python exceptions, with the engine's message, for a missing or corrupt model file, an
element the model does not know, a NaN position, bad options, and a missing library; and the
faults of issue 13: thread counts out of range, a fork after threaded use, model paths as bytes
or os.PathLike, atoms at the same position."""

import os
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ase_testutil import random_atoms
import hydragnn_ase
from hydragnn_ase import (
    HydraGNNCalculator,
    HydraGNNError,
    InvalidArgumentError,
    ModelFileError,
    ModelIOError,
    ModelNotFoundError,
    UnknownSpeciesError,
)


def test_missing_model_file(tmp_path):
    path = tmp_path / "nowhere.model"
    with pytest.raises(FileNotFoundError, match="model file not found") as e:
        HydraGNNCalculator(path)
    assert isinstance(e.value, ModelNotFoundError) and isinstance(e.value, HydraGNNError)
    assert e.value.filename == str(path)


def test_model_path_that_is_a_directory(tmp_path):
    with pytest.raises(ModelIOError, match=str(tmp_path)) as e:
        HydraGNNCalculator(tmp_path)
    assert isinstance(e.value, OSError)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "text"])
def test_corrupt_model_file(schnet_path, tmp_path, damage):
    data = schnet_path.read_bytes()
    bad = tmp_path / f"{damage}.model"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        b = bytearray(data)
        b[len(b) // 2] ^= 0xFF
        bad.write_bytes(bytes(b))
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        bad.write_text("pair_style eam\n")
    with pytest.raises(ModelFileError, match="invalid model file") as e:
        HydraGNNCalculator(bad)
    assert isinstance(e.value, ValueError)
    assert str(bad) in str(e.value)
    assert e.value.code == hydragnn_ase._capi.HGNN_ERROR_MODEL_FILE


def test_element_not_in_model(schnet_path):
    atoms = bulk("Cu", "fcc", a=3.6).repeat(2)
    atoms.numbers[3] = 26
    atoms.calc = HydraGNNCalculator(schnet_path)
    with pytest.raises(UnknownSpeciesError, match=r"atom 3 .*Fe.*not in the model") as e:
        atoms.get_forces()
    assert isinstance(e.value, ValueError)
    # The calculator stays usable.
    atoms.numbers[3] = 29
    assert np.isfinite(atoms.get_forces()).all()


def _batch_with_oxygen(schnet_path):
    calc = HydraGNNCalculator(schnet_path)
    good = bulk("Cu", "fcc", a=3.6)
    bad = Atoms("CuO", positions=[[0, 0, 0], [0, 0, 2.0]])
    calc.batch([good, bad])


def test_element_not_in_model_in_a_batch_names_the_structure(schnet_path):
    with pytest.raises(ValueError, match=r"structure 1: .*atomic number 8 \(O\).*not in the model"):
        _batch_with_oxygen(schnet_path)


def test_element_not_in_model_in_a_batch_is_unknown_species(schnet_path):
    with pytest.raises(UnknownSpeciesError):
        _batch_with_oxygen(schnet_path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_position(schnet_path, rng, value):
    atoms = random_atoms(rng, 4, [29])
    atoms.calc = HydraGNNCalculator(schnet_path)
    atoms.positions[2, 1] = value
    with pytest.raises(InvalidArgumentError, match="atom 2 is not finite") as e:
        atoms.get_potential_energy()
    assert isinstance(e.value, ValueError)


def test_bad_options(schnet_path):
    with pytest.raises(ValueError, match="dtype"):
        HydraGNNCalculator(schnet_path, dtype="float16")
    with pytest.raises(ValueError, match="device"):
        HydraGNNCalculator(schnet_path, device="tpu")
    with pytest.raises(ValueError, match="threads"):
        HydraGNNCalculator(schnet_path, threads=0)
    with pytest.raises(HydraGNNError, match="no-such-head"):
        HydraGNNCalculator(schnet_path, head="no-such-head")


def test_zero_volume_cell(schnet_path):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.5, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    atoms.calc = HydraGNNCalculator(schnet_path)
    with pytest.raises(InvalidArgumentError, match="zero volume"):
        atoms.get_potential_energy()


def test_library_not_found(tmp_path):
    """HYDRAGNN_LIB pointing nowhere is an ImportError that names the path."""
    code = (
        "import hydragnn_ase\n"
        "try:\n"
        "    hydragnn_ase.load_library()\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    env = dict(os.environ, HYDRAGNN_LIB=str(tmp_path / "libnothing.so"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("LibraryNotFoundError") and "libnothing.so" in out.stdout


@pytest.mark.parametrize("threads", [0, -1, 1025, 2048, 5000, 10**6, 2**31, 2**40, 2.0, "2", True])
def test_thread_counts_out_of_range_are_refused(schnet_path, threads):
    """Issue 13: threads >= 2048 crashed after success, 10**6 ended the process, 2**40 was
    truncated by ctypes to 0. Every value outside 1..=1024 raises, naming it and the range."""
    with pytest.raises(InvalidArgumentError, match=r"threads.*1\.\.=1024") as e:
        HydraGNNCalculator(schnet_path, threads=threads)
    assert repr(threads) in str(e.value) or str(threads) in str(e.value)
    calc = HydraGNNCalculator(schnet_path, threads=1)
    with pytest.raises(InvalidArgumentError, match=r"1\.\.=1024"):
        calc.set(threads=threads)
    assert calc.parameters.threads == 1


def test_thread_count_range_is_the_engines():
    """The binding's bound (MAX_THREADS, checked before ctypes can truncate) is the engine's."""
    from hydragnn_ase import _capi

    lib = _capi.load_library()
    with pytest.raises(InvalidArgumentError, match=rf"1\.\.={_capi.MAX_THREADS}\b"):
        lib.hgnn_set_num_threads(_capi.MAX_THREADS + 1)
    lib.hgnn_set_num_threads(1)


def test_model_path_as_bytes_and_pathlike(schnet_path, rng):
    """Issue 13: HydraGNNCalculator(b"path") raised AttributeError."""
    import pathlib

    atoms = random_atoms(rng, 4, [29])
    energies = []
    for model in (str(schnet_path), os.fsencode(str(schnet_path)), pathlib.Path(schnet_path)):
        calc = HydraGNNCalculator(model)
        assert calc.parameters.model == str(schnet_path)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1] == energies[2]
    calc.set(model=os.fsencode(str(schnet_path)))
    with pytest.raises(FileNotFoundError, match="nowhere.model"):
        HydraGNNCalculator(b"/nonexistent/nowhere.model")
    with pytest.raises(TypeError, match="model must be a path"):
        HydraGNNCalculator(12)


def test_atoms_at_the_same_position_are_refused(schnet_path):
    """Issue 13: an atom exactly on another was silently dropped (109 atoms scored lower than
    108); the error names both atoms by their ASE indices."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    atoms.calc = HydraGNNCalculator(schnet_path)
    e = atoms.get_potential_energy()
    atoms.append("Cu")
    atoms.positions[-1] = atoms.positions[17]
    atoms.calc = HydraGNNCalculator(schnet_path)
    with pytest.raises(InvalidArgumentError, match="atoms 17 and 108 are at the same position"):
        atoms.get_potential_energy()
    # on a periodic image of atom 0
    atoms.positions[-1] = atoms.cell[2]
    with pytest.raises(InvalidArgumentError, match="atoms 0 and 108.*periodic image"):
        atoms.get_potential_energy()
    # in a batch: the structure and both atoms
    good = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    with pytest.raises(InvalidArgumentError, match="structure 1: .*atoms 0 and 108"):
        atoms.calc.batch([good, atoms])
    assert np.isfinite(e)


_FORK_CHILD = """
import multiprocessing as mp, os, sys
import numpy as np
from ase.build import bulk
from hydragnn_ase import HydraGNNCalculator

COMPRESS = sys.argv[2] == "fast"
REPS = int(sys.argv[3])

def energy(args):
    path, new = args
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(REPS)
    atoms.rattle(0.05, seed=1)
    atoms.calc = HydraGNNCalculator(path, threads=2, compress=COMPRESS) if new else CALC
    return atoms.get_potential_energy()

if __name__ == "__main__":
    path = sys.argv[1]
    CALC = HydraGNNCalculator(path, threads=2, compress=COMPRESS)
    want = energy((path, False))   # the parent computes with 2 threads first
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        got = pool.map(energy, [(path, False), (path, True), (path, False)])
    pid = os.fork()
    if pid == 0:
        os._exit(0 if abs(energy((path, True)) - want) < 1e-9 * max(1, abs(want)) else 3)
    _, status = os.waitpid(pid, 0)
    print("ENERGIES", want, *got, "CHILD", os.waitstatus_to_exitcode(status))
    # and the parent still computes with its threads
    print("PARENT", energy((path, True)))
"""


@pytest.mark.parametrize("path,reps", [("exact", 4), ("fast", 7)], ids=["libgomp", "rayon"])
def test_fork_after_threaded_use_does_not_hang(schnet_path, tmp_path, path, reps):
    """Issue 13: a calculator used with threads=2, then a fork (multiprocessing's default start
    method on Linux): the child blocked forever in hgnn_compute, with the inherited calculator
    or a new one, because the parent's threads do not survive a fork: libgomp's (libtorch's
    intra-op threads, the exact path on 256 atoms) and rayon's (the neighbour list above 1,000
    atoms, 1,372 here). Both hung before the fix (measured: killed by the timeout). The engine
    now runs one thread in a forked child; the results are the parent's. In a subprocess, with a
    timeout."""
    script = tmp_path / "fork_child.py"
    script.write_text(_FORK_CHILD)
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, str(script), str(schnet_path), path, str(reps)], capture_output=True,
                         text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("ENERGIES"))
    parts = line.split()
    values = [float(v) for v in parts[1:5]]
    assert parts[5] == "CHILD" and parts[6] == "0", line
    assert np.allclose(values[1:], values[0], rtol=1e-9, atol=1e-9), values
    assert "PARENT" in out.stdout


def test_the_largest_thread_count_works(schnet_path, tmp_path):
    """The upper bound, threads=1024, computes (on the exact path, where libtorch runs OpenMP
    regions) the same energy and forces as one thread: the cap is below the counts that crashed.
    In a subprocess, so that this process keeps its thread count."""
    code = (
        "import sys\n"
        "from ase.build import bulk\n"
        "from hydragnn_ase import HydraGNNCalculator\n"
        "a = bulk('Cu', 'fcc', a=3.61, cubic=True).repeat(4)\n"
        "a.rattle(0.05, seed=1)\n"
        "out = []\n"
        "for n in (1, 1024):\n"
        "    a.calc = HydraGNNCalculator(sys.argv[1], threads=n, compress=False)\n"
        "    out.append((a.get_potential_energy(), a.get_forces()))\n"
        "(e1, f1), (e2, f2) = out\n"
        "assert abs(e1 - e2) <= 1e-9 * abs(e1) and abs(f1 - f2).max() < 1e-9, (e1, e2)\n"
        "print('OK')\n"
    )
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code, str(schnet_path)], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
