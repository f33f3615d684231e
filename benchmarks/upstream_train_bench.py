#!/usr/bin/env python3
"""Training throughput of upstream HydraGNN (PyTorch) on the committed slice, for a side-by-side
comparison with our engine's `benchmarks/train_breakdown.sh` (issue 16).

NOT part of the tests: it needs the upstream HydraGNN environment, which lives outside the repo
(see ../shared/ENVIRONMENT.md and scripts/golden/make_goldens.py): the upstream source
(ORNL/HydraGNN d251f81) at /work/hydragnn-src and its dependencies (torch_geometric 2.8.0, e3nn
0.5.1, torch_scatter 2.1.2, ...) at /work/hgdeps, run with the repo's .venv python (torch 2.13.0
CPU):

  PYTHONPATH=/work/hgdeps:/work/hydragnn-src .venv/bin/python benchmarks/upstream_train_bench.py \
      [--models egnn,painn] [--steps 20] [--warmup 3] [--batch 8] [--threads 1] [--profile]

or `benchmarks/upstream_train_bench.sh [same arguments]`.

What it runs: upstream's own model, built by HydraGNN's `create_model_config` (hidden 64, 3 conv
layers, cutoff 5 Å, periodic, a node energy head [32] summed per graph, fp32,
`enable_interatomic_potential` with energy_weight 1, force_weight 10), on the 240 structures of
train/data/metals.xyz (read with ASE; radius graphs with ASE's periodic neighbour list, edge_index
(sender, receiver) + Cartesian edge_shifts as upstream's RadiusGraphPBC gives them; built once,
as the trainers do), batches of 8 graphs, one torch thread. A step is upstream's training step:
`pos.requires_grad_()`, forward, `energy_force_loss` (energy MSE + 10 × MSE of
forces = -autograd(E, pos, create_graph=True)), backward, AdamW. 3 warm-up steps are not timed.
Prints atoms/s (wall) and atoms per CPU-second (time.process_time) per model; with --profile,
torch.profiler's top operators by self CPU time over the timed steps, and the operator calls per
step.

Note on "the same architecture": upstream's E_GCL is built with its default act_fn=nn.ReLU()
(EGCLStack.get_conv passes no activation, so `activation_function` does not reach the edge and
node MLPs) and has no cutoff envelope; PaiNN's blocks use SiLU.
"""

import argparse
import os
import sys
import time

import numpy as np

# Upstream order of imports (see ../shared/ENVIRONMENT.md).
import hydragnn.utils.input_config_parsing  # noqa: F401
import hydragnn  # noqa: F401
import torch
from torch_geometric.data import Batch, Data

from hydragnn.models.create import create_model_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEFAULT_XYZ = os.path.join(REPO, "train", "data", "metals.xyz")

MPNN = {"egnn": "EGNN", "painn": "PAINN", "schnet": "SchNet"}


def config(mpnn_type, hidden, layers, radius, head):
    """A full NeuralNetwork config section as HydraGNN's update_config leaves it."""
    arch = {
        "periodic_boundary_conditions": True,
        "mpnn_type": mpnn_type,
        "radius": radius,
        "max_neighbours": 1000,
        "int_emb_size": 32,
        "out_emb_size": 16,
        "basis_emb_size": 8,
        "num_gaussians": 32,
        "num_filters": hidden,
        "num_before_skip": 1,
        "num_after_skip": 1,
        "envelope_exponent": 5,
        "max_ell": 1,
        "node_max_ell": 1,
        "num_radial": 32,
        "num_spherical": 2,
        "hidden_dim": hidden,
        "num_conv_layers": layers,
        "enable_interatomic_potential": True,
        "energy_weight": 1.0,
        "energy_peratom_weight": 0.0,
        "force_weight": 10.0,
        "output_heads": {
            "node": [
                {
                    "type": "branch-0",
                    "architecture": {
                        "num_headlayers": len(head),
                        "dim_headlayers": head,
                        "type": "mlp",
                    },
                }
            ]
        },
        "task_weights": [1],
        "global_attn_engine": None,
        "global_attn_type": None,
        "global_attn_heads": 0,
        "pe_dim": 0,
        "output_dim": [1],
        "output_type": ["node"],
        "num_nodes": 32,
        "input_dim": 1,
        "pna_deg": None,
        "avg_num_neighbors": None,
        "radial_type": None,
        "distance_transform": None,
        "correlation": None,
        "edge_dim": None,
        "equivariance": False,
        "freeze_conv_layers": False,
        "initial_bias": None,
        "activation_function": "silu",
        "SyncBatchNorm": False,
    }
    training = {"loss_function_type": "mse", "conv_checkpointing": False, "precision": "fp32"}
    return {"Architecture": arch, "Training": training}


def load_graphs(path, radius, max_neighbours=None):
    """One torch_geometric Data per structure: x = Z (n, 1), pos, edge_index (sender, receiver)
    with vector pos[receiver] - pos[sender] + edge_shifts, energy, forces. With max_neighbours,
    each receiver keeps its nearest max_neighbours edges (RadiusGraphPBC._limit_neighbors)."""
    from ase.io import read
    from ase.neighborlist import neighbor_list

    out = []
    for at in read(path, index=":"):
        # ASE: D = pos[j] - pos[i] + S·cell, so i is the sender and j the receiver.
        i, j, s, d = neighbor_list("ijSd", at, radius)
        if max_neighbours is not None:
            order = np.lexsort((d, j))
            i, j, s, jo = i[order], j[order], s[order], j[order]
            first = np.r_[True, jo[1:] != jo[:-1]]
            rank = np.arange(len(jo)) - np.flatnonzero(first)[np.cumsum(first) - 1]
            keep = rank < max_neighbours
            i, j, s = i[keep], j[keep], s[keep]
        shifts = s.astype(np.float64) @ np.asarray(at.cell)
        out.append(
            Data(
                x=torch.tensor(at.numbers, dtype=torch.float32).unsqueeze(-1),
                pos=torch.tensor(at.positions, dtype=torch.float32),
                edge_index=torch.tensor(np.stack([i, j]), dtype=torch.long),
                edge_shifts=torch.tensor(shifts, dtype=torch.float32),
                energy=torch.tensor([at.get_potential_energy()], dtype=torch.float32),
                forces=torch.tensor(at.get_forces(), dtype=torch.float32),
            )
        )
    return out


def batches(graphs, b):
    return [Batch.from_data_list(graphs[k : k + b]) for k in range(0, len(graphs) - b + 1, b)]


def step(model, opt, data):
    """Upstream's training step (hydragnn/train/train_validate_test.py with
    enable_interatomic_potential): forward, energy_force_loss, backward, optimizer."""
    opt.zero_grad()
    data.pos.requires_grad_(True)
    pred = model(data)
    loss, _ = model.energy_force_loss(pred, data)
    loss.backward()
    opt.step()
    return loss


def run(name, args, graphs):
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    cfg = config(MPNN[name], args.hidden, args.layers, args.radius, args.head)
    try:
        model = create_model_config(config=cfg, verbosity=0, use_gpu=False)
    except Exception as err:  # e.g. SchNet without pyg-lib
        print(f"{name}: upstream model not built: {type(err).__name__}: {err}")
        return
    model = model.float()
    torch.set_default_dtype(torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    bs = batches(graphs, args.batch)
    nparam = sum(p.numel() for p in model.parameters())

    def data_at(k):
        # A fresh leaf pos every step (as a DataLoader gives).
        d = bs[k % len(bs)].clone()
        d.pos = d.pos.detach()
        return d

    try:
        for k in range(args.warmup):
            step(model, opt, data_at(k))
    except Exception as err:  # SchNet: its radius_graph needs pyg-lib (not on the registries)
        print(f"{name}: upstream training step failed: {type(err).__name__}: {err}")
        return
    atoms = 0
    prof = None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU])
        prof.__enter__()
    w0, c0 = time.perf_counter(), time.process_time()
    for k in range(args.steps):
        d = data_at(args.warmup + k)
        atoms += d.num_nodes
        step(model, opt, d)
    w1, c1 = time.perf_counter(), time.process_time()
    if prof is not None:
        prof.__exit__(None, None, None)
    wall, cpu = w1 - w0, c1 - c0
    print(
        f"upstream {name}: {args.steps} steps, {atoms / args.steps:.0f} atoms/step, "
        f"{nparam} parameters: {atoms / wall:8.1f} atoms/s wall, {atoms / cpu:8.1f} atoms/CPU-s "
        f"({wall / args.steps * 1e3:.1f} ms wall, {cpu / args.steps * 1e3:.1f} ms CPU per step)"
    )
    if prof is not None:
        ev = prof.key_averages()
        calls = sum(e.count for e in ev)
        print(
            f"upstream {name}: {calls / args.steps:.0f} profiled operator calls per step "
            f"(timings below include the profiler's overhead)"
        )
        print(ev.table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--xyz", default=DEFAULT_XYZ)
    p.add_argument("--models", default="egnn,painn")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--radius", type=float, default=5.0)
    p.add_argument("--head", default="32", help="node head hidden widths, comma-separated")
    p.add_argument(
        "--max-neighbours",
        type=int,
        default=None,
        help="keep each atom's nearest K incoming edges (upstream's max_neighbours); default all",
    )
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-rows", type=int, default=25)
    args = p.parse_args()
    args.head = [int(x) for x in args.head.split(",") if x]
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    graphs = load_graphs(args.xyz, args.radius, args.max_neighbours)
    ne = sum(g.edge_index.shape[1] for g in graphs)
    na = sum(g.num_nodes for g in graphs)
    print(
        f"{len(graphs)} structures, {na} atoms, {ne / na:.1f} edges per atom (cutoff "
        f"{args.radius} Å, max_neighbours {args.max_neighbours}); torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    for name in args.models.split(","):
        if name not in MPNN:
            sys.exit(f"unknown model {name!r} (one of {', '.join(MPNN)})")
        run(name, args, graphs)


if __name__ == "__main__":
    main()
