"""Fixtures for the LAMMPS tests: the engine and the plugin are built once per session (cargo and
lammps-plugin/build.sh are both incremental), random-weight models are written to a temp dir.
Set HYDRAGNN_LAMMPS_NO_BUILD=1 to use what is already built."""

import os
import subprocess

import pytest

from lammps_util import PLUGIN, RANDOM_MODEL, ROOT, env, make_random_model


@pytest.fixture(scope="session")
def plugin():
    if not os.environ.get("HYDRAGNN_LAMMPS_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "hydragnn-capi", "-p", "mlip",
                        "--example", "random_model"], cwd=ROOT, check=True,
                       env={**env(), "LIBTORCH_USE_PYTORCH": "1"})
        subprocess.run([os.path.join(ROOT, "lammps-plugin", "build.sh")], cwd=ROOT, check=True, env=env())
    assert os.path.exists(PLUGIN), PLUGIN
    assert os.path.exists(RANDOM_MODEL), RANDOM_MODEL
    return PLUGIN


@pytest.fixture(scope="session")
def models(plugin, tmp_path_factory):
    """Random-weight Cu/Ni models: 2-layer SchNet (rc 4.5), 3-layer PaiNN (rc 4.0), a 4-layer
    SchNet (rc 3.2), a float32 copy of the SchNet model, and a 3-layer H/C/O SchNet (rc 4.0)."""
    d = tmp_path_factory.mktemp("models")
    return {
        "schnet2": make_random_model(str(d / "schnet2.model"), "SchNet", "Cu,Ni", 4.5, 2, "float64", 11),
        "painn3": make_random_model(str(d / "painn3.model"), "PAINN", "Cu,Ni", 4.0, 3, "float64", 12),
        "schnet4": make_random_model(str(d / "schnet4.model"), "SchNet", "Cu,Ni", 3.2, 4, "float64", 13),
        "schnet2_f32": make_random_model(str(d / "schnet2_f32.model"), "SchNet", "Cu,Ni", 4.5, 2, "float32", 11),
        "mol3": make_random_model(str(d / "mol3.model"), "SchNet", "H,C,O", 4.0, 3, "float64", 14),
    }
