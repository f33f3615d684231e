"""The plugin's C ABI version check: an engine library whose hgnn_abi_version() differs from the
HGNN_ABI_VERSION of the hydragnn.h the plugin was compiled with is refused when pair_style
hydragnn is read, with a message naming both versions. The mismatching library is a shim that
defines hgnn_abi_version() and takes every other symbol from the real libhydragnn.so."""

import os
import re
import subprocess

from lammps_util import ROOT, run_lammps

LIB = os.path.join(ROOT, "target", "release", "libhydragnn.so")
HEADER = os.path.join(ROOT, "mlip", "capi", "include", "hydragnn.h")


def _header_abi_version():
    with open(HEADER) as f:
        return int(re.search(r"#define HGNN_ABI_VERSION (\d+)", f.read()).group(1))


def test_mismatched_engine_abi_is_refused(plugin, tmp_path):
    shim = tmp_path / "libhydragnn_shim.so"
    src = tmp_path / "shim.c"
    src.write_text("#include <stdint.h>\nint32_t hgnn_abi_version(void) { return 999; }\n")
    libdir = os.path.dirname(LIB)
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(shim), f"-L{libdir}", "-Wl,--no-as-needed",
                    "-lhydragnn", f"-Wl,-rpath,{libdir}"], check=True)
    script = f"plugin load {plugin}\nunits metal\nlattice fcc 3.61\nregion box block 0 1 0 1 0 1\n" \
             "create_box 1 box\npair_style hydragnn\n"
    rc, out = run_lammps(script, str(tmp_path), check=False, env_extra={"HYDRAGNN_LIB": str(shim)})
    assert rc != 0, out[-3000:]
    assert "implements C ABI version 999" in out, out[-3000:]
    assert f"built against hydragnn.h of ABI version {_header_abi_version()}" in out, out[-3000:]


def test_real_engine_passes_the_check(plugin):
    src = open(os.path.join(ROOT, "lammps-plugin", "pair_hydragnn.cpp")).read()
    assert "hgnn_abi_version() != HGNN_ABI_VERSION" in src
