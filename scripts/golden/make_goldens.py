#!/usr/bin/env python3
"""Reference outputs (goldens) of upstream HydraGNN for what ../shared/hydragnn_golden lacks.

Runs upstream HydraGNN itself (ORNL/HydraGNN d251f81, torch 2.13.0 CPU, torch_geometric 2.8.0,
e3nn 0.5.1, torch_scatter 2.1.2) and writes `GFM_<NAME>_{config.json,state_dict.npz,modules.txt}`
and `GFM_<NAME>_<structure>_golden.npz` into tests/hydragnn_golden_extra/ following the protocol
of the shared goldens ("GFM-style models" in ../shared/hydragnn_golden/README.md): untrained
models from HydraGNN's `create_model_config`, fp64, `+= 0.1*randn` on every named parameter in
order (generator seeded 777), BatchNorm running stats perturbed (seed 778), `model.eval()`.
The structures (pos, Z, cell, pbc and the edge list) are read from the shared golden npz files,
so the inputs are byte-identical to the shared ones. See tests/hydragnn_golden_extra/README.md.

Usage (env in the README):
  python scripts/golden/make_goldens.py --check-shared PAINN_graph2_concat PNA_node
  python scripts/golden/make_goldens.py PAINN_graph2_film PAINN_graph2_fuse_pool ...
  python scripts/golden/make_goldens.py --all
"""

import argparse
import copy
import json
import os
import re
import sys
import tempfile
import time
import traceback

import numpy as np

# Upstream order of imports (see ../shared/ENVIRONMENT.md).
import hydragnn.utils.input_config_parsing  # noqa: F401
import hydragnn  # noqa: F401
import torch
import torch_geometric
from torch_geometric.data import Batch, Data

from hydragnn.models.create import create_model_config
from hydragnn.utils.model.model import load_existing_model

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_SHARED = os.path.abspath(os.path.join(REPO, "..", "shared", "hydragnn_golden"))
DEFAULT_OUT = os.path.join(REPO, "tests", "hydragnn_golden_extra")

DT = torch.float64
SEED = 777
BN_SEED = 778
FD_H = 1e-5
GRAPH_ATTR = [-1.0, 2.0]

# Where each structure is read from (any shared golden of that structure holds the same input).
STRUCTURE_SOURCES = {
    "cual12": "GFM_PNA_node_cual12_golden.npz",
    "ethanol": "GFM_SchNet_node_ethanol_golden.npz",
}
STRUCTURE_KEYS = [
    "pos", "x", "atomic_numbers", "cell", "pbc", "edge_index", "edge_shifts",
    "edge_cell_shifts", "radius",
]


# --------------------------------------------------------------------------------------------
# The models. Each starts from the closest shared GFM_<base>_config.json and changes only what
# must change (listed in `changes`, copied into GoldenNotes.changes_from_base).
# --------------------------------------------------------------------------------------------
def _spec(name, base, structure, changes, notes=None, extra_structures=()):
    return dict(name=name, base=base, structure=structure, changes=changes, notes=notes or {},
                extra_structures=list(extra_structures))


SPECS = [
    _spec("PAINN_graph2_film", "PAINN_graph2_concat", "ethanol",
          {"graph_attr_conditioning_mode": "film"}),
    _spec("PAINN_graph2_fuse_pool", "PAINN_graph2_concat", "ethanol",
          {"graph_attr_conditioning_mode": "fuse_pool"}),
    _spec("PNAPlus_node_edge", "PNAPlus_node", "ethanol", {"edge_dim": 1}),
    _spec("PNAEq_node_edge", "PNAEq_node", "cual12", {"edge_dim": 1}),
    _spec("DimeNet_node_edge", "DimeNet_node", "cual12", {"edge_dim": 1}),
    # CGCNN: HydraGNN's update_config sets hidden_dim = input_dim for CGCNN without global
    # attention (hydragnn/utils/input_config_parsing/config_utils.py); CGConv keeps the width.
    _spec("CGCNN_node", "PNA_node", "cual12",
          {"mpnn_type": "CGCNN", "pna_deg": None, "hidden_dim": 1},
          {"hidden_dim": "1 = input_dim: HydraGNN's update_config forces hidden_dim = input_dim "
                         "for CGCNN without global attention (config_utils.py); CGConv keeps "
                         "the channel count, so hidden_dim 16 cannot run (see hidden_dim_16_error)"},
          extra_structures=["ethanol"]),
    # GAT: create_model hard-codes heads = 6, negative_slope = 0.05 (no config key is read).
    _spec("GAT_node", "PNA_node", "cual12", {"mpnn_type": "GAT", "pna_deg": None},
          {"gat_heads": "6 (hard-coded in hydragnn/models/create.py; no config key is read)",
           "gat_negative_slope": "0.05 (hard-coded in hydragnn/models/create.py)"}),
    _spec("GIN_node", "SchNet_node", "ethanol", {"mpnn_type": "GIN"}),
    _spec("SAGE_node", "SchNet_node", "ethanol", {"mpnn_type": "SAGE"}),
    # MFC: create_model passes max_neighbours as MFConv's max_degree.
    _spec("MFC_node", "SchNet_node", "ethanol", {"mpnn_type": "MFC"},
          {"max_degree": "= max_neighbours = 100 (create_model passes max_neighbours as "
                         "MFConv max_degree)"}),
    # MACE with charge/spin conditioning: MACEStack.forward applies _apply_graph_conditioning
    # after the embedding and after every conv+readout; it never calls
    # _apply_graph_pool_conditioning (its readouts pool on their own).
    _spec("MACE_graph2_concat", "MACE_graph2", "ethanol",
          {"use_graph_attr_conditioning": True, "graph_attr_conditioning_mode": "concat_node"}),
    _spec("MACE_graph2_film", "MACE_graph2", "ethanol",
          {"use_graph_attr_conditioning": True, "graph_attr_conditioning_mode": "film"}),
    _spec("MACE_graph2_fuse_pool", "MACE_graph2", "ethanol",
          {"use_graph_attr_conditioning": True, "graph_attr_conditioning_mode": "fuse_pool"}),
]
SPEC_BY_NAME = {s["name"]: s for s in SPECS}
NON_EDGE_MODELS = {"GIN", "SAGE", "MFC"}


# --------------------------------------------------------------------------------------------
def load_structure(shared, structure):
    d = np.load(os.path.join(shared, STRUCTURE_SOURCES[structure]))
    s = {k: d[k] for k in STRUCTURE_KEYS}
    # Every shared golden of this structure must hold the same input.
    for f in sorted(os.listdir(shared)):
        if f.startswith("GFM_") and f.endswith(f"_{structure}_golden.npz"):
            o = np.load(os.path.join(shared, f))
            for k in STRUCTURE_KEYS:
                assert np.array_equal(o[k], s[k]), (f, k)
    return s


def edge_vectors(pos, ei, shifts):
    return pos[ei[1]] - pos[ei[0]] + shifts


def make_batch(s, pos, spec_cfg, branch=None, edge_attr_const=None):
    """One HydraGNN-style batch (Batch.from_data_list of one Data), pos as given (may require
    grad). edge_attr = |r_ij| recomputed from pos unless edge_attr_const is given."""
    arch = spec_cfg["NeuralNetwork"]["Architecture"]
    ei = torch.from_numpy(s["edge_index"]).long()
    shifts = torch.from_numpy(s["edge_shifts"]).to(DT)
    d = Data(
        x=torch.from_numpy(s["x"]).to(DT),
        pos=pos.detach().clone(),
        edge_index=ei,
        edge_shifts=shifts,
    )
    if arch.get("use_graph_attr_conditioning"):
        # HydraGNN datasets store graph_attr as a 1-D float32 [charge, spin] per sample.
        d.graph_attr = torch.tensor(GRAPH_ATTR, dtype=torch.float32)
    if branch is not None:
        d.dataset_name = torch.tensor([[branch]], dtype=torch.long)
    b = Batch.from_data_list([d])
    b.pos = pos
    if arch.get("edge_dim"):
        if edge_attr_const is not None:
            b.edge_attr = edge_attr_const
        else:
            b.edge_attr = edge_vectors(pos, ei, shifts).norm(dim=-1, keepdim=True)
    return b


class Recorder:
    """Captures node features (input of the graph pooling), pooled_raw (its output) and pooled
    (input of graph_shared[branch]) without changing the computation."""

    def __init__(self, model):
        inner = model.model
        self.rec = {}
        if hasattr(inner, "multihead_decoders"):
            self._init_mace(inner)
            return
        orig_pool = inner._pool_graph_features

        def pool(x, batch):
            self.rec["node_features"] = x
            out = orig_pool(x, batch)
            self.rec["pooled_raw"] = out
            return out

        inner._pool_graph_features = pool
        for k, m in inner.graph_shared.items():
            m.register_forward_pre_hook(self._hook_pooled)

    def _hook_pooled(self, module, args):
        self.rec["pooled"] = args[0]

    def _init_mace(self, inner):
        """MACE (own forward, L+1 readouts): readout_pooled_<l> = the add-pooled scalar input of
        readout l, readout_energy[l] = its energy contribution, pooled = the input of the last
        readout's graph_shared[branch] (the keys of the shared MACE goldens)."""
        self.mace = True
        n = len(inner.multihead_decoders)
        for l, dec in enumerate(inner.multihead_decoders):
            orig = dec._pool_graph_features

            def pool(x, batch, l=l, orig=orig):
                out = orig(x, batch)
                self.rec[f"readout_pooled_{l}"] = out
                return out

            dec._pool_graph_features = pool
            dec.register_forward_hook(
                lambda m, a, out, l=l: self.rec.__setitem__(f"readout_energy_{l}", out[0]))
            if l == n - 1:
                for k, m in dec.graph_shared.items():
                    m.register_forward_pre_hook(self._hook_pooled)
        self.n_readouts = n


def head_kind(cfg):
    return cfg["NeuralNetwork"]["Architecture"]["output_type"][0]


def branches(cfg):
    arch = cfg["NeuralNetwork"]["Architecture"]
    if head_kind(cfg) == "graph":
        return list(range(len(arch["output_heads"]["graph"])))
    return [None]


def energy_of(model, s, cfg, pos, branch, edge_attr_const=None):
    b = make_batch(s, pos, cfg, branch, edge_attr_const)
    out = model(b)
    if head_kind(cfg) == "node":
        ne = out[0]
        return ne.sum(), ne
    return out[0].reshape(-1)[0], None


def grad_or_zero(e, pos):
    """-dE/dpos. If pos is not part of the graph (HydraGNN raises in that case), returns zeros
    and the exact error text."""
    try:
        g = torch.autograd.grad(e, pos, retain_graph=True)[0]
        return -g, None
    except RuntimeError as err:
        return torch.zeros_like(pos), str(err).strip()


def fd_forces(model, s, cfg, pos0, branch):
    """Central differences of the energy (edge_attr recomputed), h = 1e-5; a coordinate where
    h and h/4 disagree beyond truncation and rounding noise (e.g. a min/max switch inside
    [x-h, x+h]) falls back to h/4, h/16, ... (recorded in forces_fd_h)."""
    n = pos0.shape[0]
    f = np.zeros((n, 3))
    hs = np.full((n, 3), FD_H)

    def e_at(p):
        with torch.no_grad():
            return energy_of(model, s, cfg, p, branch)[0].item()

    e0 = abs(e_at(pos0.clone()))

    def cd(a, c, h):
        p = pos0.clone(); p[a, c] += h
        m = pos0.clone(); m[a, c] -= h
        return -(e_at(p) - e_at(m)) / (2 * h)

    for a in range(n):
        for c in range(3):
            h = FD_H
            v = cd(a, c, h)
            while h > 1e-8:
                v4 = cd(a, c, h / 4)
                # agreement within truncation (1e-6 rel) plus rounding (~1e-12 |E| / h) noise
                if abs(v - v4) <= 1e-6 * max(1.0, abs(v)) + 1e-12 * max(1.0, e0) / (h / 4):
                    break
                h, v = h / 4, v4
            f[a, c] = v
            hs[a, c] = h
    return f, hs


def perturb(model):
    """The shared protocol: N(0, 0.1) on every named parameter in order (seed 777); BatchNorm
    running_mean += 0.1 randn, running_var *= exp(0.2 randn) in state_dict order (seed 778)."""
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=DT))
    g2 = torch.Generator().manual_seed(BN_SEED)
    nbn = 0
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if k.endswith("running_mean"):
                t.add_(0.1 * torch.randn(t.shape, generator=g2, dtype=DT))
                nbn += 1
            elif k.endswith("running_var"):
                t.mul_(torch.exp(0.2 * torch.randn(t.shape, generator=g2, dtype=DT)))
    return nbn


def build(cfg):
    # HydraGNN builds the model in the default dtype (float32) and create_model_config then
    # casts it to fp64 and sets the default dtype to float64 (which stays set afterwards, so
    # lazily created conditioning modules are made in float64). Reset it for every model so
    # that each build starts as in a fresh process.
    torch.set_default_dtype(torch.float32)
    model = create_model_config(config=cfg["NeuralNetwork"], verbosity=0, use_gpu=False)
    return model


def state_dict_np(model):
    out = {}
    for k, v in model.state_dict().items():
        k = k[len("module."):] if k.startswith("module.") else k
        v = v.detach().cpu()
        out[k] = v.to(torch.float64).numpy() if v.is_floating_point() else v.numpy()
    return out


def safe_repr(model):
    """repr(model); where an upstream class's own __repr__ raises (PNAEq's PainnMessage reads a
    missing self.in_channels), that class falls back to torch.nn.Module.__repr__ (as the shared
    GFM_PNAEq_node_modules.txt shows)."""
    patched = []
    try:
        while True:
            try:
                return repr(model)
            except AttributeError:
                for m in list(model.modules())[::-1]:  # children first
                    cls = type(m)
                    if cls in patched or cls.__repr__ is torch.nn.Module.__repr__:
                        continue
                    try:
                        cls.__repr__(m)
                    except AttributeError:
                        cls._golden_saved_repr = cls.__repr__
                        cls.__repr__ = torch.nn.Module.__repr__
                        patched.append(cls)
                        break
                else:
                    raise
    finally:
        for cls in patched:
            cls.__repr__ = cls._golden_saved_repr
            del cls._golden_saved_repr


def modules_txt(model):
    # drop the lambdas' memory addresses ("<function ...<lambda> at 0x7f...>") so that the
    # file is the same on every run
    lines = [re.sub(r" at 0x[0-9a-f]+>", ">", safe_repr(model)), "", f"# parameters: {sum(p.numel() for p in model.parameters())}",
             "# state_dict (key, shape, dtype)"]
    for k, v in model.state_dict().items():
        lines.append(f"{k}\t{tuple(v.shape)}\t{v.dtype}")
    return "\n".join(lines) + "\n"


def rotation():
    g = torch.Generator().manual_seed(11)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=DT))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_config(shared, spec):
    base = json.load(open(os.path.join(shared, f"GFM_{spec['base']}_config.json")))
    cfg = copy.deepcopy(base)
    arch = cfg["NeuralNetwork"]["Architecture"]
    for k, v in spec["changes"].items():
        arch[k] = v
    notes = cfg.get("GoldenNotes", {})
    notes = dict(notes)
    notes["set"] = "hydragnn_golden_extra"
    notes["structures"] = [spec["structure"]]
    notes["base_config"] = f"GFM_{spec['base']}_config.json (shared)"
    notes["changes_from_base"] = spec["changes"]
    notes["structure_source"] = (
        f"pos/x/Z/cell/pbc/edge list read from shared {STRUCTURE_SOURCES[spec['structure']]}")
    if arch.get("edge_dim"):
        notes["edge_attr"] = "edge_attr = |r_ij| (E,1), PBCDistance(norm=False) convention"
    else:
        notes["edge_attr"] = None
    if arch["mpnn_type"] != "SchNet":
        notes["schnet_radius_graph"] = None
    notes["perturbation_bn"] = ("BatchNorm running_mean += 0.1*randn, running_var *= "
                                "exp(0.2*randn), state_dict order, torch.Generator().manual_seed(778)")
    if arch.get("use_graph_attr_conditioning"):
        notes["lazy_conditioning_modules"] = (
            "created by HydraGNN on one forward pass (model.eval(), branch 0, the golden input) "
            "run before the perturbation; they come last in named_parameters/state_dict, so they "
            "get the last draws of the seed-777 generator")
    if arch["mpnn_type"] in NON_EDGE_MODELS:
        notes["edge_dim"] = ("null: not an edge model; create_model does not pass edge_dim to "
                             "this stack, so edge_dim 1 gives the same model (checked)")
        notes["positions"] = ("unused: the energy does not depend on pos, forces are identically "
                              "zero and torch.autograd.grad(E, pos) raises (see summary)")
    notes.update(spec["notes"])
    cfg["GoldenNotes"] = notes
    return cfg


def evaluate(model, cfg, s, rec):
    """The golden dict of one structure, and its checks."""
    arch = cfg["NeuralNetwork"]["Architecture"]
    pos0 = torch.from_numpy(s["pos"]).to(DT)
    g = {k: s[k] for k in STRUCTURE_KEYS}
    ei = torch.from_numpy(s["edge_index"]).long()
    shifts = torch.from_numpy(s["edge_shifts"]).to(DT)
    ea0 = edge_vectors(pos0, ei, shifts).norm(dim=-1, keepdim=True)
    if arch.get("edge_dim"):
        g["edge_attr"] = ea0.numpy()
    if arch.get("use_graph_attr_conditioning"):
        g["graph_attr"] = np.array(GRAPH_ATTR)

    E, F, Ffd, H, Fc, NE = [], [], [], [], [], None
    pooled_raw, pooled = [], []
    readout_e, readout_p = {}, {}
    errors = {}
    for br in branches(cfg):
        pos = pos0.clone().requires_grad_(True)
        e, ne = energy_of(model, s, cfg, pos, br)
        r = dict(rec.rec)
        f, err = grad_or_zero(e, pos)
        if err:
            errors["forces_autograd"] = err
        E.append(e.item())
        F.append(f.detach().numpy())
        if ne is not None:
            NE = ne.detach().numpy()
        if getattr(rec, "mace", False):
            for l in range(rec.n_readouts):
                readout_e.setdefault(l, []).append(
                    float(r[f"readout_energy_{l}"].detach().reshape(-1)[0]))
                readout_p.setdefault(l, []).append(
                    r[f"readout_pooled_{l}"].detach().numpy()[0])
            pooled.append(r["pooled"].detach().numpy()[0])
        else:
            g["node_features"] = r["node_features"].detach().numpy()
        if not getattr(rec, "mace", False) and head_kind(cfg) == "graph":
            pooled_raw.append(r["pooled_raw"].detach().numpy()[0])
            pooled.append(r["pooled"].detach().numpy()[0])
        if arch.get("edge_dim"):
            posc = pos0.clone().requires_grad_(True)
            ec, _ = energy_of(model, s, cfg, posc, br, edge_attr_const=ea0.clone())
            fc, errc = grad_or_zero(ec, posc)
            if errc:
                errors["forces_edge_attr_const_autograd"] = errc
            Fc.append(fc.detach().numpy())
        ffd, h = fd_forces(model, s, cfg, pos0, br)
        Ffd.append(ffd)
        H.append(h)

    if head_kind(cfg) == "node":
        g["node_energy"] = NE
        g["energy"] = np.array(E[0])
        g["forces"], g["forces_fd"], g["forces_fd_h"] = F[0], Ffd[0], H[0]
        if Fc:
            g["forces_edge_attr_const"] = Fc[0]
    else:
        br = np.array(branches(cfg), dtype=np.int64)
        g["branch"] = br
        g["dataset_name"] = br.reshape(-1, 1)
        g["energy"] = np.array(E)
        g["forces"], g["forces_fd"], g["forces_fd_h"] = np.stack(F), np.stack(Ffd), np.stack(H)
        if Fc:
            g["forces_edge_attr_const"] = np.stack(Fc)
        if readout_e:
            g["readout_energy"] = np.array([[readout_e[l][b] for l in sorted(readout_e)]
                                            for b in range(len(E))])
            for l in sorted(readout_p):
                g[f"readout_pooled_{l}"] = np.stack(readout_p[l])
        else:
            g["pooled_raw"] = np.stack(pooled_raw)
        g["pooled"] = np.stack(pooled)

    # ---- checks ----
    c = {}
    Fa, Fd = np.asarray(g["forces"]), np.asarray(g["forces_fd"])
    c["energy"] = np.asarray(g["energy"]).tolist()
    c["max_abs_force"] = float(np.abs(Fa).max())
    c["fd_max_abs_err"] = float(np.abs(Fa - Fd).max())
    c["fd_rel_err"] = float(np.abs(Fa - Fd).max() / max(np.abs(Fa).max(), 1e-300))
    c["fd_coords_small_h"] = int((np.asarray(g["forces_fd_h"]) < FD_H).sum())
    c["fd_min_h"] = float(np.asarray(g["forces_fd_h"]).min())
    c["sum_forces_max"] = float(np.abs(Fa.sum(axis=-2)).max())
    if "forces_edge_attr_const" in g:
        c["max_abs_forces_edge_attr_const"] = float(np.abs(g["forces_edge_attr_const"]).max())
    if errors:
        c["autograd_errors"] = errors
    # translation / rotation of the whole input (graph unchanged: same pairs, rotated shifts)
    R = rotation()
    dEt, dEr, dFr = 0.0, 0.0, 0.0
    for i, br in enumerate(branches(cfg)):
        with torch.no_grad():
            et = energy_of(model, s, cfg, pos0 + torch.tensor([0.3, -0.7, 1.1], dtype=DT), br)[0]
        s_rot = dict(s)
        s_rot["edge_shifts"] = (shifts @ R.T).numpy()
        posr = (pos0 @ R.T).clone().requires_grad_(True)
        er, _ = energy_of(model, s_rot, cfg, posr, br)
        fr, _ = grad_or_zero(er, posr)
        e_ref = float(np.asarray(g["energy"]).reshape(-1)[i])
        f_ref = np.asarray(g["forces"]).reshape(len(branches(cfg)), -1, 3)[i]
        dEt = max(dEt, abs(et.item() - e_ref))
        dEr = max(dEr, abs(er.item() - e_ref))
        dFr = max(dFr, float(np.abs(fr.detach().numpy() - f_ref @ R.T.numpy()).max()))
    c.update(translate_dE=dEt, rotate_dE=dEr, rotate_dF=dFr)
    return g, c


def film_formula_check(model, cfg, s):
    """Checks the README's film formula against HydraGNN's own forward: for every conv layer,
    the feature-layer input must be conv_out * (1 + tanh(s)) + t with
    [s, t] = graph_conditioner(graph_attr) (first half s, second half t)."""
    inner = model.model
    outs, ins = {}, {}
    hs = []
    for l, (conv, fl) in enumerate(zip(inner.graph_convs, inner.feature_layers)):
        hs.append(conv.register_forward_hook(
            lambda m, a, kw_out, l=l: outs.__setitem__(l, kw_out[0].detach())))
        hs.append(fl.register_forward_pre_hook(
            lambda m, a, l=l: ins.__setitem__(l, a[0].detach())))
    with torch.no_grad():
        energy_of(model, s, cfg, torch.from_numpy(s["pos"]).to(DT), branches(cfg)[0])
        gc = inner.graph_conditioner
        st = gc[2](torch.relu(gc[0](torch.tensor([GRAPH_ATTR], dtype=DT))))
        H = inner.hidden_dim
        sc, sh = torch.tanh(st[:, :H]), st[:, H:]
        d = max(float((ins[l] - (outs[l] * (1 + sc) + sh)).abs().max()) for l in outs)
    for h in hs:
        h.remove()
    return d


def reload_check(model, cfg, name, structs):
    """A new model from the config, loaded with HydraGNN's own load_existing_model (which
    pre-creates the lazy conditioning modules from the checkpoint keys)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, name))
        torch.save({"model_state_dict": model.state_dict()}, os.path.join(tmp, name, name + ".pk"))
        m2 = build(copy.deepcopy(cfg))
        load_existing_model(m2, name, path=tmp)
        m2.eval()
        for sname, (s, g) in structs.items():
            dE, dF = 0.0, 0.0
            pos0 = torch.from_numpy(s["pos"]).to(DT)
            for i, br in enumerate(branches(cfg)):
                pos = pos0.clone().requires_grad_(True)
                e2, _ = energy_of(m2, s, cfg, pos, br)
                f2, _ = grad_or_zero(e2, pos)
                e_ref = float(np.asarray(g["energy"]).reshape(-1)[i])
                f_ref = np.asarray(g["forces"]).reshape(len(branches(cfg)), -1, 3)[i]
                dE = max(dE, abs(e2.item() - e_ref))
                dF = max(dF, float(np.abs(f2.detach().numpy() - f_ref).max()))
            out[sname] = {"reload_dE": dE, "reload_dF": dF}
    return out


def run_one(spec, shared, out, write=True, compare_to=None):
    t0 = time.time()
    name = spec["name"]
    cfg = make_config(shared, spec) if compare_to is None else json.load(
        open(os.path.join(shared, f"GFM_{name}_config.json")))
    arch = cfg["NeuralNetwork"]["Architecture"]
    snames = [spec["structure"]] + list(spec.get("extra_structures", []))
    structs = {n: load_structure(shared, n) for n in snames}
    s = structs[spec["structure"]]
    summ = {"mpnn_type": arch["mpnn_type"], "head": head_kind(cfg), "structure": spec["structure"],
            "edge_dim": arch.get("edge_dim"), "hidden_dim": arch["hidden_dim"],
            "conditioning": arch.get("graph_attr_conditioning_mode")
            if arch.get("use_graph_attr_conditioning") else None}

    model = build(cfg)
    model.eval()
    pos0 = torch.from_numpy(s["pos"]).to(DT)

    # Lazily created conditioning modules: one forward pass before the perturbation
    # (branch 0, the golden's own input), exactly how HydraGNN creates them when training.
    if arch.get("use_graph_attr_conditioning"):
        with torch.no_grad():
            energy_of(model, s, cfg, pos0.clone(), branches(cfg)[0])
        inner = model.model
        made = {k: getattr(inner, k) is not None
                for k in ("graph_conditioner", "graph_concat_projector", "graph_pool_projector")}
        summ["lazy_modules_created_by_first_forward"] = made
    nbn = perturb(model)
    summ["batchnorms_perturbed"] = nbn
    summ["params"] = sum(p.numel() for p in model.parameters())
    summ["state_dict_tensors"] = len(model.state_dict())
    rec = Recorder(model)

    is_mace = hasattr(model.model, "multihead_decoders")
    if (arch.get("use_graph_attr_conditioning") and arch["graph_attr_conditioning_mode"] == "film"
            and not is_mace):
        summ["film_formula_max_abs_diff"] = film_formula_check(model, cfg, s)

    goldens = {}
    summ["structures"] = {}
    for sn in snames:
        g, c = evaluate(model, cfg, structs[sn], rec)
        goldens[sn] = g
        summ["structures"][sn] = c
    main_c = summ["structures"][spec["structure"]]
    for k in ("energy", "max_abs_force", "fd_max_abs_err", "fd_rel_err"):
        summ[k] = main_c[k]
    g = goldens[spec["structure"]]

    sd = state_dict_np(model)
    rl = reload_check(model, cfg, name, {sn: (structs[sn], goldens[sn]) for sn in snames})
    for sn in snames:
        summ["structures"][sn].update(rl[sn])
    summ["reload_dE"] = max(v["reload_dE"] for v in rl.values())
    summ["reload_dF"] = max(v["reload_dF"] for v in rl.values())

    # ---- MACE fuse_pool: the same model without conditioning gives the same numbers? ----
    if is_mace and arch.get("use_graph_attr_conditioning") and \
            arch["graph_attr_conditioning_mode"] == "fuse_pool":
        cfg0 = copy.deepcopy(cfg)
        cfg0["NeuralNetwork"]["Architecture"]["use_graph_attr_conditioning"] = False
        m0 = build(cfg0)
        summ["fuse_pool_same_keys_as_unconditioned"] = (
            list(m0.state_dict().keys()) == list(model.state_dict().keys()))
        m0.load_state_dict(model.state_dict())
        m0.eval()
        dE, dF = 0.0, 0.0
        for i, br in enumerate(branches(cfg)):
            pos = pos0.clone().requires_grad_(True)
            e0, _ = energy_of(m0, s, cfg0, pos, br)
            f0, _ = grad_or_zero(e0, pos)
            dE = max(dE, abs(e0.item() - float(g["energy"][i])))
            dF = max(dF, float(np.abs(f0.detach().numpy() - g["forces"][i]).max()))
        summ["fuse_pool_vs_unconditioned_dE"] = dE
        summ["fuse_pool_vs_unconditioned_dF"] = dF

    # ---- non-edge backbones: does edge_dim change anything? ----
    if arch["mpnn_type"] in NON_EDGE_MODELS:
        cfg1 = copy.deepcopy(cfg)
        cfg1["NeuralNetwork"]["Architecture"]["edge_dim"] = 1
        m1 = build(cfg1)
        sd1 = m1.state_dict()
        same_keys = list(sd1.keys()) == list(model.state_dict().keys())
        if same_keys:
            m1.load_state_dict(model.state_dict())
            m1.eval()
            with torch.no_grad():
                b = make_batch(s, pos0.clone(), cfg, None)
                ei = torch.from_numpy(s["edge_index"]).long()
                b.edge_attr = edge_vectors(pos0, ei, torch.from_numpy(s["edge_shifts"]).to(DT)
                                           ).norm(dim=-1, keepdim=True)
                e1 = m1(b)[0].sum().item()
            summ["edge_dim_1_same_keys"] = True
            summ["edge_dim_1_dE"] = abs(e1 - float(g["energy"]))
        else:
            summ["edge_dim_1_same_keys"] = False

    summ["seconds"] = round(time.time() - t0, 1)

    if compare_to is not None:
        ref = np.load(os.path.join(shared, f"GFM_{name}_{spec['structure']}_golden.npz"))
        ref_sd = np.load(os.path.join(shared, f"GFM_{name}_state_dict.npz"))
        cmp = {}
        cmp["state_dict_same_keys"] = list(ref_sd.files) == list(sd.keys())
        cmp["state_dict_max_abs_diff"] = max(
            float(np.abs(ref_sd[k].astype(np.float64) - sd[k].astype(np.float64)).max())
            if sd[k].size else 0.0 for k in ref_sd.files)
        for k in ref.files:
            if k in g:
                a, b = np.asarray(ref[k], dtype=np.float64), np.asarray(g[k], dtype=np.float64)
                cmp[k] = float(np.abs(a - b).max()) if a.shape == b.shape else f"shape {a.shape} vs {b.shape}"
            else:
                cmp[k] = "missing"
        cmp["energy_rel"] = float(np.abs(np.asarray(ref["energy"]) - np.asarray(g["energy"])).max()
                                  / np.abs(ref["energy"]).max())
        cmp["forces_rel"] = float(np.abs(ref["forces"] - g["forces"]).max()
                                  / np.abs(ref["forces"]).max())
        summ["compare_with_shared"] = cmp
        return summ

    if write:
        os.makedirs(out, exist_ok=True)
        pre = os.path.join(out, f"GFM_{name}")
        with open(pre + "_config.json", "w") as fh:
            json.dump(cfg, fh, indent=2)
            fh.write("\n")
        np.savez_compressed(pre + "_state_dict.npz", **sd)
        with open(pre + "_modules.txt", "w") as fh:
            fh.write(modules_txt(model))
        for sn in snames:
            np.savez_compressed(f"{pre}_{sn}_golden.npz", **goldens[sn])
    return summ


def hidden16_cgcnn_error(shared):
    """What HydraGNN does with CGCNN at hidden_dim 16 (update_config would never allow it)."""
    spec = dict(SPEC_BY_NAME["CGCNN_node"])
    spec["changes"] = {"mpnn_type": "CGCNN", "pna_deg": None}
    cfg = make_config(shared, spec)
    s = load_structure(shared, "cual12")
    try:
        m = build(cfg)
        m.eval()
        with torch.no_grad():
            energy_of(m, s, cfg, torch.from_numpy(s["pos"]).to(DT), None)
        return "no error"
    except Exception as err:  # record the exact upstream error
        return f"{type(err).__name__}: {str(err).strip()}"


def versions():
    import e3nn
    import torch_scatter
    import subprocess
    src = os.path.dirname(os.path.dirname(hydragnn.__file__))
    try:
        commit = subprocess.check_output(["git", "-C", src, "rev-parse", "HEAD"], text=True).strip()
    except Exception:
        commit = None
    return {"hydragnn_commit": commit, "torch": torch.__version__,
            "torch_geometric": torch_geometric.__version__, "e3nn": e3nn.__version__,
            "torch_scatter": getattr(torch_scatter, "__version__", "DEV SHIM (not a golden run)"),
            "torch_scatter_file": torch_scatter.__file__.replace(os.path.expanduser("~"), "~"),
            "numpy": np.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="models to make (default with --all: every one)")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--check-shared", nargs="*", default=[],
                    help="regenerate these shared goldens and compare (writes nothing)")
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args()

    torch.set_num_threads(1)
    summary_path = os.path.join(a.out, "GFM_extra_summary.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
    summary["versions"] = versions()
    summary.setdefault("models", {})
    summary.setdefault("failed", {})
    summary.setdefault("check_shared", {})

    for name in a.check_shared:
        spec = {"name": name, "structure": "cual12" if os.path.exists(
            os.path.join(a.shared, f"GFM_{name}_cual12_golden.npz")) else "ethanol"}
        r = run_one(spec, a.shared, a.out, write=False, compare_to=True)
        print(name, json.dumps(r["compare_with_shared"], indent=1))
        summary["check_shared"][name] = r["compare_with_shared"]

    names = [s["name"] for s in SPECS] if a.all else a.names
    for name in names:
        spec = SPEC_BY_NAME[name]
        try:
            r = run_one(spec, a.shared, a.out)
            if name == "CGCNN_node":
                r["hidden_dim_16_error"] = hidden16_cgcnn_error(a.shared)
            summary["models"][f"GFM_{name}"] = r
            summary["failed"].pop(f"GFM_{name}", None)
            print(name, json.dumps({k: r[k] for k in ("energy", "fd_max_abs_err", "fd_rel_err",
                                                      "reload_dE", "reload_dF", "seconds")}))
        except Exception as err:
            tb = traceback.format_exc()
            print(f"{name} FAILED\n{tb}", file=sys.stderr)
            summary["failed"][f"GFM_{name}"] = {"error": f"{type(err).__name__}: {err}",
                                               "traceback_tail": tb.strip().splitlines()[-6:]}
    if names or a.check_shared:
        os.makedirs(a.out, exist_ok=True)
        with open(summary_path, "w") as fh:
            json.dump(summary, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
