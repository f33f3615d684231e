"""`HydraGNNCalculator`: an ASE calculator that evaluates a hydragnn-rs model file with the engine
through its C ABI (one `hgnn_compute` per configuration, everything in one pass), plus `batch`
for a list of structures in one `hgnn_compute_batch` call. `compress` chooses between the
engine's fast path (tabulated radial filters, fused kernels) and its exact libtorch path."""

import copy
import json
import os
import warnings
import weakref
from ctypes import POINTER, byref, c_char_p, c_double, c_int32, c_int64, c_void_p

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from . import _capi, _ensemble
from ._capi import HGNN_DEVICE_CPU, HGNN_DEVICE_CUDA

_DEVICES = {"cpu": HGNN_DEVICE_CPU, "cuda": HGNN_DEVICE_CUDA, "cuda:0": HGNN_DEVICE_CUDA}
_STRESS = ("stress", "stresses")
# Parameters that select the loaded model; changing one with `set` reloads it. (`compress` only
# switches the evaluation path of the loaded model.)
_MODEL_KEYS = ("model", "device", "dtype", "head", "threads")


def _dptr(a):
    return a.ctypes.data_as(POINTER(c_double))


class _Model:
    """Owns one `hgnn_model_t` (freed with the object) and the model's self-description. A copy
    or an unpickled one loads the file again: a handle is never shared."""

    def __init__(self, path, device, dtype, head, threads, compress=True):
        path = _model_path(path)
        _check_compress(compress)
        threads = _capi.check_threads(threads)
        self.args = (path, device, dtype, head, threads)
        self.lib = lib = _capi.load_library()
        if not os.path.exists(path):
            raise _capi.ModelNotFoundError(path)
        opts = lib.hgnn_options_default()
        opts.device = _choice("device", device, _DEVICES)
        opts.dtype = _capi.parse_precision(dtype)
        opts.num_threads = 0 if threads is None else threads
        opts.branch = None if head is None else str(head).encode()
        handle = c_void_p()
        lib.hgnn_model_load(os.fsencode(path), byref(opts), byref(handle))
        self.handle = handle
        self._free = weakref.finalize(self, lib.hgnn_model_free, handle)

        cutoff, n_layers, n_species, info = c_double(), c_int32(), c_int32(), c_char_p()
        lib.hgnn_model_cutoff(handle, byref(cutoff))
        lib.hgnn_model_num_layers(handle, byref(n_layers))
        lib.hgnn_model_num_species(handle, byref(n_species))
        species = (c_int32 * n_species.value)()
        lib.hgnn_model_species(handle, species, n_species.value)
        lib.hgnn_model_info(handle, byref(info))
        self.cutoff = cutoff.value
        self.num_layers = n_layers.value
        self.species = tuple(species)
        self.info = json.loads(info.value.decode()) if info.value else {}
        dmin = c_double()
        lib.hgnn_model_min_training_distance(handle, byref(dmin))
        self.min_training_distance = dmin.value  # 0: not recorded
        self._read_heads(path, head)
        self.ensemble_size = _ensemble.size(lib, handle)  # K members (1: a model file)
        self.set_compress(compress)

    def _read_heads(self, path, head):
        """The branches, the active one, and its heads (name -> (kind, dim)); warns when a
        multi-branch model is used without naming a branch."""
        lib, handle = self.lib, self.handle
        nb, active, nh = c_int32(), c_int32(), c_int32()
        lib.hgnn_model_num_branches(handle, byref(nb))
        names = []
        for k in range(nb.value):
            name = c_char_p()
            lib.hgnn_model_branch_name(handle, k, byref(name))
            names.append(name.value.decode())
        lib.hgnn_model_active_branch(handle, byref(active))
        pooled = c_int32()
        lib.hgnn_model_energy_is_pooled(handle, byref(pooled))
        # a graph-level energy (HydraGNN graph heads) has no per-atom energies
        self.energy_is_pooled = bool(pooled.value)
        n_attr = c_int32()
        lib.hgnn_model_num_graph_attr(handle, byref(n_attr))
        self.graph_attr_names = []
        for k in range(n_attr.value):
            name = c_char_p()
            lib.hgnn_model_graph_attr_name(handle, k, byref(name))
            self.graph_attr_names.append(name.value.decode())
        self.branches = tuple(names)
        self.branch = names[active.value]
        if head is None and len(names) > 1:
            others = [b for b in names if b != self.branch]
            warnings.warn(
                f"model {path} has {len(names)} branches ({', '.join(names)}) and none was named: "
                f"using branch '{self.branch}'. Choose another with "
                f"HydraGNNCalculator(..., head={others[0]!r}).",
                UserWarning,
                stacklevel=4,
            )
        lib.hgnn_model_num_heads(handle, byref(nh))
        self.heads = {}
        for k in range(nh.value):
            h = _capi.hgnn_head_t()
            lib.hgnn_model_head(handle, k, byref(h))
            self.heads[h.name.decode()] = (h.kind, h.dim)

    def set_graph_attr(self, atoms, where=""):
        """For a model conditioned on per-structure attributes (HydraGNN's total charge and spin):
        their values from `atoms.info` (keys "charge", "spin", as fairchem and HydraGNN's ASE
        example name them) for the engine calls that follow."""
        if not self.graph_attr_names:
            return
        missing = [n for n in self.graph_attr_names if n not in atoms.info]
        if missing:
            raise ValueError(
                f"{where}the model is conditioned on the system's {' and '.join(self.graph_attr_names)}: "
                f"set atoms.info[{missing[0]!r}] (missing: {', '.join(missing)})"
            )
        values = np.array([float(atoms.info[n]) for n in self.graph_attr_names], dtype=np.float64)
        self.lib.hgnn_model_set_graph_attr(self.handle, _dptr(values), values.size)

    def extra_heads(self):
        """The heads other than the energy: {name: (kind, dim)}."""
        return {k: v for k, v in self.heads.items() if k != "energy"}

    def compute_heads(self, jobs):
        """The extra heads' values for the structures of `jobs` (one `hgnn_compute_head` batch
        per head): one dict per job, graph heads as a float (dim 1) or an array (dim), node heads
        as an (n,) or (n, dim) array."""
        out = [{} for _ in jobs]
        if not jobs:
            return out
        heads = self.extra_heads()
        if not heads:
            return out
        structures = (_capi.hgnn_structure_t * len(jobs))(*[j.structure for j in jobs])
        for name, (kind, dim) in heads.items():
            node = kind == _capi.HGNN_HEAD_NODE
            sizes = [(j.n if node else 1) * dim for j in jobs]
            buf = np.zeros(sum(sizes))
            self.lib.hgnn_compute_head(self.handle, len(jobs), structures, name.encode(), _dptr(buf), buf.size)
            at = 0
            for r, j, size in zip(out, jobs, sizes):
                v = buf[at:at + size].copy()
                at += size
                if node:
                    r[name] = v if dim == 1 else v.reshape(j.n, dim)
                else:
                    r[name] = float(v[0]) if dim == 1 else v
        return out

    def set_compress(self, compress):
        """Selects the engine's evaluation path (`hgnn_model_set_compress`) and records which one
        runs (`hgnn_model_path`): the fast path falls back to the exact one, with a reason, for a
        backbone that has none."""
        _check_compress(compress)
        self.lib.hgnn_model_set_compress(self.handle, int(bool(compress)), 0.0)  # 0: default tolerance
        self.compress = bool(compress)
        path = c_char_p()
        self.lib.hgnn_model_path(self.handle, byref(path))
        self.path_info = json.loads(path.value.decode()) if path.value else {}

    def __reduce__(self):
        return (_Model, self.args + (self.compress,))


def _model_path(path):
    """A model path given as str, bytes or os.PathLike, as str (bytes decoded as the file
    system encodes names, so that os.fsencode gives the same bytes back)."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(
            f"model must be a path (str, bytes or os.PathLike), got {path!r} of type {type(path).__name__}"
        ) from None


def _check_compress(value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"compress must be True (the engine's fast path, where the model has one) or False "
            f"(the exact libtorch path), got {value!r} of type {type(value).__name__}"
        )


def _choice(name, value, table):
    key = str(value).lower()
    if key not in table:
        raise ValueError(f"{name} must be one of {sorted(set(table))}, got {value!r}")
    return table[key]


def _full_rank(atoms):
    """True when the cell has three independent vectors: the stress (strain derivative over the
    cell volume) is defined, whatever the periodicity (a slab's cell includes its vacuum)."""
    return atoms.cell.rank == 3


class _Job:
    """One structure in the C layout, plus the fresh numpy arrays its results go to (the arrays
    become the results, so nothing is shared between calls)."""

    def __init__(self, atoms, want, per_atom_energies=True):
        n = len(atoms)
        self.n = n
        self.positions = np.ascontiguousarray(atoms.get_positions(), dtype=np.float64)
        self.numbers = np.ascontiguousarray(atoms.numbers, dtype=np.int32)
        self.volume = abs(atoms.cell.volume) if _full_rank(atoms) else None
        s = _capi.hgnn_structure_t()
        s.n_atoms = n
        s.positions = _dptr(self.positions)
        s.atomic_numbers = self.numbers.ctypes.data_as(POINTER(c_int32))
        s.cell[:] = np.asarray(atoms.cell.array, dtype=np.float64).ravel().tolist()
        s.pbc[:] = [int(bool(p)) for p in atoms.pbc]
        self.structure = s
        stress = "stress" in want or "stresses" in want
        self.forces = np.zeros((n, 3))
        self.energies = np.zeros(n) if per_atom_energies else None
        self.virial = np.zeros((3, 3)) if stress else None
        self.virials = np.zeros((n, 3, 3)) if stress else None
        r = _capi.hgnn_results_t()
        r.forces = _dptr(self.forces)
        if per_atom_energies:
            r.energies = _dptr(self.energies)
        if stress:
            r.virial = _dptr(self.virial)
            r.virials = _dptr(self.virials)
        self.raw = r

    def results(self):
        """ASE results: eV, eV/Å, and stress = -virial/V in Voigt order (xx yy zz yz xz xy)."""
        e = float(self.raw.energy)
        out = {"energy": e, "free_energy": e, "forces": self.forces}
        if self.energies is not None:
            out["energies"] = self.energies
        if self.virial is not None:
            out["stress"] = full_3x3_to_voigt_6_stress(-self.virial / self.volume)
            out["stresses"] = full_3x3_to_voigt_6_stress(-self.virials / self.volume)
        return out


class HydraGNNCalculator(Calculator):
    """ASE calculator for a hydragnn-rs model file, evaluated by the engine (libhydragnn.so).

    Parameters
    ----------
    model : str, bytes or os.PathLike
        The model file (the same file the LAMMPS pair style reads).
    device : {"cpu", "cuda"}
        Where the engine evaluates.
    dtype : {"float64", "float32"} or a numpy float dtype
        The engine's precision (inputs and outputs are float64 either way). Parsed by the engine
        (`hgnn_precision_parse`), which also accepts fp64/f64/double and fp32/f32/single.
    head : str or None
        The output branch to use; None selects the model's first one (with a warning naming it
        when the model has several).
    threads : int or None
        libtorch intra-op threads (process-wide), 1..=1024 (anything else raises
        InvalidArgumentError, a ValueError); None keeps the current setting (or the environment
        variable HYDRAGNN_NUM_THREADS). In a process forked from one that had used the engine
        (multiprocessing's "fork" start method), the engine runs one thread whatever is asked.
    compress : bool
        True (default): the engine's fast path (radial filters tabulated to the engine's default
        tolerance, fused kernels) where the model's backbone has one, else the exact path; False: the exact
        path (libtorch autograd). `path_info` says which one runs. Set explicitly, so the
        environment variable HYDRAGNN_COMPRESS does not apply to the calculator.

    Every calculation computes energy, per-atom energies (not for a model whose energy is
    graph-level, e.g. HydraGNN's graph heads: `energies` is then not implemented) and forces, and for a cell of full rank
    also the stress and per-atom stresses, in one engine call; ASE caches them until the
    positions, numbers, cell or pbc change. The stress is the strain derivative of the energy
    over the cell volume, -(1/V) dE/dε, for any periodicity: for a slab (pbc=(T, T, F)) V
    includes the vacuum, so the in-plane components are the surface stress (plus the bulk's)
    divided by the cell height, and a cell filter can relax the periodic directions
    (FrechetCellFilter(slab, mask=...)). A cell of rank < 3 (e.g. a molecule with no cell)
    raises PropertyNotImplementedError for stress.

    A model conditioned on the system's total charge and spin (HydraGNN's graph attributes,
    `concat_node`) reads them from `atoms.info["charge"]` and `atoms.info["spin"]` (the names
    fairchem and HydraGNN's ASE example use), in the convention of its training data; they are
    required, and a change of them is a reason to recompute.

    The other heads of the branch (e.g. a HOMO-LUMO `gap`, per-atom `charges`) are computed with
    every calculation too and appear in `results` under their names: graph heads as a float (or
    an array of `dim` values), node heads as per-atom arrays, (n,) or (n, dim). They are in
    `implemented_properties`, so `calc.get_property("gap", atoms)` works; `heads` lists them.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]
    # The model reads positions, numbers, cell and pbc only: a change of these two is no reason to
    # recompute.
    ignored_changes = {"initial_charges", "initial_magmoms"}

    def __init__(self, model, device="cpu", dtype="float64", head=None, threads=None, compress=True, **kwargs):
        _check_compress(compress)
        model = _model_path(model)
        threads = _capi.check_threads(threads)
        Calculator.__init__(
            self, model=model, device=device, dtype=dtype, head=head, threads=threads,
            compress=bool(compress), **kwargs
        )
        self._model = _Model(model, device, dtype, head, threads, compress)
        self._set_heads()

    def _set_heads(self):
        """`implemented_properties` of this instance: the standard ones plus the model's heads."""
        base = HydraGNNCalculator.implemented_properties
        if self._model.energy_is_pooled:
            base = [p for p in base if p != "energies"]
        self.implemented_properties = base + [h for h in self._model.extra_heads() if h not in base]
        if self._model.ensemble_size > 1:
            self.implemented_properties += _ensemble.PROPERTIES

    def set(self, **kwargs):
        """Sets parameters; a new model, device, dtype, head or thread count reloads the model
        and discards the results; a new `compress` switches the loaded model's path and discards
        the results."""
        if "model" in kwargs:
            kwargs["model"] = _model_path(kwargs["model"])
        if "threads" in kwargs:
            kwargs["threads"] = _capi.check_threads(kwargs["threads"])
        if "compress" in kwargs:
            _check_compress(kwargs["compress"])
            kwargs["compress"] = bool(kwargs["compress"])
        changed = Calculator.set(self, **kwargs)
        if getattr(self, "_model", None) is not None:
            p = self.parameters
            if any(k in changed for k in _MODEL_KEYS):
                self._model = _Model(p.model, p.device, p.dtype, p.head, p.threads, p.get("compress", True))
                self._set_heads()
                self.reset()
            elif "compress" in changed:
                self._model.set_compress(p.compress)
                self.reset()
        return changed

    # --- the model's self-description ---------------------------------------------------------

    @property
    def cutoff(self):
        """The model's cutoff radius (Å)."""
        return self._model.cutoff

    @property
    def num_layers(self):
        """The number of message-passing layers."""
        return self._model.num_layers

    @property
    def species(self):
        """The atomic numbers the model knows."""
        return self._model.species

    @property
    def info(self):
        """The model's self-description (cutoff, species, units, dtype, branches, provenance)."""
        return self._model.info

    @property
    def branch(self):
        """The name of the output branch in use."""
        return self._model.branch

    @property
    def branches(self):
        """The names of the model's output branches."""
        return self._model.branches

    @property
    def heads(self):
        """The heads of the branch in use, {name: {"kind": "graph" or "node", "dim": n}}
        (the energy included)."""
        kinds = {_capi.HGNN_HEAD_GRAPH: "graph", _capi.HGNN_HEAD_NODE: "node"}
        return {k: {"kind": kinds[kind], "dim": dim} for k, (kind, dim) in self._model.heads.items()}

    @property
    def path_info(self):
        """Which evaluation path the engine runs (`hgnn_model_path`), a dict: `path` is "fast"
        or "exact", `description` a sentence; on the fast path also the tables' errors
        (`table_rel_error`, ...), on the exact path the `reason` (compression off, or a backbone
        without a fast path)."""
        return copy.deepcopy(self._model.path_info)

    # --- evaluation ---------------------------------------------------------------------------

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        # properties=None (a direct call): everything that applies to this structure.
        Calculator.calculate(self, atoms, properties or ["energy"], system_changes)
        if properties is not None:
            _check_stress(self.atoms, properties)
        want = _STRESS if _full_rank(self.atoms) else ()
        m = self._model
        m.set_graph_attr(self.atoms)
        job = _Job(self.atoms, want, not m.energy_is_pooled)
        if m.ensemble_size > 1:
            extra = _ensemble.compute(m, job, m.ensemble_size)  # the mean drives
        else:
            extra = {}
            m.lib.hgnn_compute(m.handle, byref(job.structure), byref(job.raw))
        results = job.results()
        results.update(extra)
        results.update(m.compute_heads([job])[0])
        self.results = results
        self._warn_close_pair(job)

    def _warn_close_pair(self, job):
        """Warns once per calculator when two atoms are closer than any pair in the model's
        training data (the shortest distance the model file records)."""
        m = self._model
        if getattr(self, "_warned_close", False) or m.min_training_distance <= 0:
            return
        i, j, r = c_int64(), c_int64(), c_double()
        m.lib.hgnn_closest_pair(m.handle, byref(job.structure), byref(i), byref(j), byref(r))
        if i.value >= 0:
            self._warned_close = True
            warnings.warn(
                f"atoms {i.value} and {j.value} are {r.value:.4f} Å apart, closer than any pair in the "
                f"model's training data ({m.min_training_distance:.4f} Å): the model is extrapolating "
                "(warned once per calculator)",
                RuntimeWarning,
                stacklevel=3,
            )

    def check_state(self, atoms, tol=1e-15):
        """ASE's changes, plus "info" when a model conditioned on the system's charge or spin
        sees other values in `atoms.info`."""
        changes = Calculator.check_state(self, atoms, tol)
        names = self._model.graph_attr_names
        if names and self.atoms is not None and any(atoms.info.get(n) != self.atoms.info.get(n) for n in names):
            changes.append("info")
        return changes

    def batch(self, images, properties=None):
        """Evaluates a list of structures in one engine call (`hgnn_compute_batch`).

        Returns one dict per structure with the keys of `calculate`'s results (the model's other
        heads included). `properties`
        (default: all that apply to every structure) decides whether stresses are computed; asking
        for stress when some structure has no cell of full rank raises PropertyNotImplementedError.
        The structures' own calculators are not touched; to attach the results use e.g.
        `SinglePointCalculator(atoms, **r)`.
        """
        images = list(images)
        if isinstance(properties, str):
            properties = [properties]
        if properties is None:
            properties = [p for p in self.implemented_properties if p not in _STRESS]
            if images and all(_full_rank(a) for a in images):
                properties += list(_STRESS)
        for p in properties:
            if p not in self.implemented_properties:
                raise PropertyNotImplementedError(f"{p} is not one of {self.implemented_properties}")
        for k, a in enumerate(images):
            _check_stress(a, properties, f"structure {k}: ")
        if not images:
            return []
        jobs = [_Job(a, properties, not self._model.energy_is_pooled) for a in images]
        structures = (_capi.hgnn_structure_t * len(jobs))(*[j.structure for j in jobs])
        raws = (_capi.hgnn_results_t * len(jobs))(*[j.raw for j in jobs])
        m = self._model
        if m.graph_attr_names:
            # the charge and spin apply to a whole engine call: one call per structure
            out = []
            for k, (a, j) in enumerate(zip(images, jobs)):
                m.set_graph_attr(a, f"structure {k}: ")
                m.lib.hgnn_compute(m.handle, byref(j.structure), byref(j.raw))
                out.append({**j.results(), **m.compute_heads([j])[0]})
            return out
        m.lib.hgnn_compute_batch(m.handle, len(jobs), structures, raws)
        for j, r in zip(jobs, raws):
            j.raw = r
        out = [j.results() for j in jobs]
        for r, h in zip(out, m.compute_heads(jobs)):
            r.update(h)
        return out


def _check_stress(atoms, properties, where=""):
    if any(p in _STRESS for p in properties) and not _full_rank(atoms):
        raise PropertyNotImplementedError(
            f"{where}stress needs a cell of full rank (three independent cell vectors; this one has "
            f"rank {atoms.cell.rank}, pbc={atoms.pbc.tolist()}): give the non-periodic directions "
            "a cell vector too (e.g. atoms.center(vacuum=...)); energy and forces work for any cell"
        )
