"""The #[repr(C)] structs of the C ABI as C sees them (sizeof/offsetof from a small program
compiled against mlip/capi/include/hydragnn.h) against the hand-written ctypes copies: the ASE
binding's (ase-bridge/hydragnn_ase/_capi.py) and the LAMMPS tests' reference client
(tests/lammps/hgnn_ref.py, independent of the ASE bridge on purpose). Every struct and field the
header declares is checked; a ctypes copy must list the same fields, in order, at the same
offsets, with the same total size."""

import ctypes
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "mlip", "capi", "include", "hydragnn.h")
sys.path.insert(0, os.path.join(ROOT, "ase-bridge"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lammps"))


def header_structs():
    """{struct name: [field names in order]} for every struct the header defines."""
    text = open(HEADER).read()
    out = {}
    for name, body, tail in re.findall(r"typedef struct (\w+) \{(.*?)\} (\w+);", text, re.S):
        assert name == tail
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", body, flags=re.S)
        fields = re.findall(r"\b(\w+)(?:\[\d+\])?\s*;", code)
        out[name] = fields
    return out


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    """{struct: {"size": n, "fields": {field: offset}}} as the C compiler lays them out."""
    structs = header_structs()
    assert {"hgnn_options_t", "hgnn_structure_t", "hgnn_graph_t", "hgnn_results_t", "hgnn_head_t"} <= set(structs)
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "hydragnn.h"', "int main(void) {",
             '  printf("{");']
    for k, (name, fields) in enumerate(structs.items()):
        sep = "," if k else ""
        lines.append(f'  printf("{sep}\\"{name}\\": {{\\"size\\": %zu, \\"fields\\": {{", sizeof({name}));')
        for i, f in enumerate(fields):
            fsep = "," if i else ""
            lines.append(f'  printf("{fsep}\\"{f}\\": %zu", offsetof({name}, {f}));')
        lines.append('  printf("}}");')
    lines += ['  printf("}\\n");', "  return 0;", "}"]
    d = tmp_path_factory.mktemp("layout")
    (d / "layout.c").write_text("\n".join(lines) + "\n")
    exe = d / "layout"
    subprocess.run(["gcc", "-Wall", "-Werror", f"-I{os.path.dirname(HEADER)}", str(d / "layout.c"), "-o", str(exe)],
                   check=True)
    layout = json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    for name, fields in structs.items():
        assert list(layout[name]["fields"]) == fields
    return layout


def ctypes_layout(cls):
    return {"size": ctypes.sizeof(cls), "fields": {f[0]: getattr(cls, f[0]).offset for f in cls._fields_}}


def _copies():
    from hydragnn_ase import _capi, _ensemble

    import hgnn_ref

    return [
        ("ase-bridge _ensemble.hgnn_ensemble_results_t", "hgnn_ensemble_results_t", _ensemble.hgnn_ensemble_results_t),
        ("ase-bridge _capi.hgnn_options_t", "hgnn_options_t", _capi.hgnn_options_t),
        ("ase-bridge _capi.hgnn_structure_t", "hgnn_structure_t", _capi.hgnn_structure_t),
        ("ase-bridge _capi.hgnn_results_t", "hgnn_results_t", _capi.hgnn_results_t),
        ("ase-bridge _capi.hgnn_head_t", "hgnn_head_t", _capi.hgnn_head_t),
        ("tests/lammps hgnn_ref._Options", "hgnn_options_t", hgnn_ref._Options),
        ("tests/lammps hgnn_ref._Structure", "hgnn_structure_t", hgnn_ref._Structure),
        ("tests/lammps hgnn_ref._Results", "hgnn_results_t", hgnn_ref._Results),
    ]


@pytest.mark.parametrize("where,struct,cls", _copies(), ids=[c[0] for c in _copies()])
def test_ctypes_copy_matches_c(c_layout, where, struct, cls):
    assert ctypes_layout(cls) == c_layout[struct], f"{where} differs from {struct} in hydragnn.h"


def test_every_ctypes_struct_is_checked():
    """A new ctypes struct in either copy must be added to the list above."""
    from hydragnn_ase import _capi, _ensemble

    import hgnn_ref

    checked = {id(c[2]) for c in _copies()}
    for mod in (_capi, _ensemble, hgnn_ref):
        for name, obj in vars(mod).items():
            if isinstance(obj, type) and issubclass(obj, ctypes.Structure) and obj is not ctypes.Structure:
                assert id(obj) in checked, f"{mod.__name__}.{name} is not compared with the C layout"
