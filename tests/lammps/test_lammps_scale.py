"""Scaling pair_style hydragnn: under pair_style hybrid/scaled with factor 0.5, and with fix adapt
changing its "scale" (extract("scale"), uniform over the type pairs), energy and forces are half
the unscaled ones; a non-uniform scale is refused. Also: pair_coeff's element mapping through
LAMMPS's map_element2type (a repeated element)."""

import numpy as np
import pytest

from lammps_util import rel_err, run_lammps
from test_lammps_hybrid_options import _run0, config  # noqa: F401 (the module fixture)

TOL = 1e-12


@pytest.fixture(scope="module")
def unscaled(plugin, models, config, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("unscaled")
    e, f, _ = _run0(plugin, config, f"pair_style hydragnn\npair_coeff * * {models['schnet2']} Cu Ni", d, "plain")
    return e, f


def test_hybrid_scaled_half(plugin, models, config, tmp_path, unscaled):  # noqa: F811
    e0, f0 = unscaled
    e, f, _ = _run0(plugin, config, f"pair_style hybrid/scaled 0.5 hydragnn\npair_coeff * * hydragnn {models['schnet2']} Cu Ni",
                    tmp_path, "scaled", nprocs=2)
    assert rel_err(e, 0.5 * e0) <= TOL
    assert rel_err(f, 0.5 * f0) <= TOL


@pytest.mark.parametrize("nprocs", [1, 2])
def test_fix_adapt_scale_half(plugin, models, config, tmp_path, unscaled, nprocs):  # noqa: F811
    e0, f0 = unscaled
    pair = (f"pair_style hydragnn\npair_coeff * * {models['schnet2']} Cu Ni\n"
            "variable s equal 0.5\nfix a all adapt 1 pair hydragnn scale * * v_s")
    e, f, _ = _run0(plugin, config, pair, tmp_path, f"adapt{nprocs}", nprocs=nprocs)
    assert rel_err(e, 0.5 * e0) <= TOL
    assert rel_err(f, 0.5 * f0) <= TOL


def test_non_uniform_scale_is_refused(plugin, models, config, tmp_path):  # noqa: F811
    script = f"""plugin load {plugin}
units metal
atom_style atomic
read_data {config['data']}
pair_style hydragnn
pair_coeff * * {models['schnet2']} Cu Ni
variable s equal 0.5
fix a all adapt 1 pair hydragnn scale 1 2 v_s
run 0
"""
    rc, out = run_lammps(script, str(tmp_path), check=False)
    assert rc != 0 and "one scale for all types" in out, out[-2000:]


def test_repeated_element_maps_both_types(plugin, models, config, tmp_path):  # noqa: F811
    """Cu Cu: both types are copper (map_element2type gives them the same element)."""
    e, f, _, out = _run0(plugin, config, f"pair_style hydragnn\npair_coeff * * {models['schnet2']} Cu Cu", tmp_path,
                      "cucu", output=True)
    assert "1->Cu 2->Cu" in out
    assert np.isfinite(e)
