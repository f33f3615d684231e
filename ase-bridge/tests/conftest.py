"""Fixtures for the hydragnn_ase tests: the random models (written once per session), the engine's
two evaluation paths (`compress`), and a fresh random generator per test (the seed is printed;
HYDRAGNN_TEST_SEED replays a failure)."""

import os

import numpy as np
import pytest

from ase_testutil import MODELS, write_random_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    for name, args in MODELS.items():
        write_random_model(d / f"{name}.model", *args)
    return d


@pytest.fixture(scope="session", params=sorted(MODELS))
def model_path(request, model_dir):
    """Each random model in turn (SchNet on Cu, PaiNN on Cu+Ni)."""
    return model_dir / f"{request.param}.model"


@pytest.fixture(scope="session")
def schnet_path(model_dir):
    return model_dir / "schnet.model"


@pytest.fixture(scope="session")
def painn_path(model_dir):
    return model_dir / "painn.model"


@pytest.fixture(params=[True, False], ids=["fast", "exact"])
def compress(request):
    """Each of the engine's evaluation paths in turn: compress=True (the fast path, where the
    backbone has one) and compress=False (the exact libtorch path)."""
    return request.param


@pytest.fixture
def rng():
    seed = int(os.environ.get("HYDRAGNN_TEST_SEED", np.random.SeedSequence().entropy % 2**32))
    print(f"random seed: HYDRAGNN_TEST_SEED={seed}")
    return np.random.default_rng(seed)
