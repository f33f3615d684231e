//! Energy, forces, virial and per-atom quantities through libtorch autograd, for whole structures
//! (the engine builds the neighbour list), batches of structures, and caller-supplied graphs of
//! local + ghost atoms. Forces and virials come from the gradient of the energy with respect to
//! every edge vector g_e = ∂E/∂r_e (r_e = x_src - x_dst): F_src -= g_e, F_dst += g_e,
//! W = -Σ_e r_e ⊗ g_e (= -∂E/∂ε, the strain derivative), and each atom of an edge takes half of
//! that edge's virial.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use tch::{Kind, Tensor};

use crate::error::{invalid, Error, Result};
use crate::model::{GraphArrays, GraphTensors, Model};
use crate::neighbors::{neighbor_list, NeighborList};
use crate::structure::Structure;

/// A caller-supplied graph. Atoms `0..n_local` are the ones whose energies count; the rest are
/// ghosts (periodic images or other ranks' atoms). Edge e carries a message from `neighbors[e]` to
/// `centers[e]`; its vector is `positions[neighbors[e]] - positions[centers[e]] + shifts[e]`.
#[derive(Debug, Clone, Copy)]
pub struct GraphInput<'a> {
    /// Number of local atoms (the first ones).
    pub n_local: usize,
    /// Positions of local then ghost atoms (Å).
    pub positions: &'a [[f64; 3]],
    /// Atomic numbers of local then ghost atoms.
    pub numbers: &'a [i32],
    /// Centre atom of each edge (receives the message).
    pub centers: &'a [usize],
    /// Neighbour atom of each edge (sends the message).
    pub neighbors: &'a [usize],
    /// Cartesian shift added to each edge vector (None: all zero).
    pub shifts: Option<&'a [[f64; 3]]>,
}

/// Which quantities to compute (the energy always is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Forces on every atom (local and ghost).
    pub forces: bool,
    /// The 3x3 virial.
    pub virial: bool,
    /// Per-atom energies of local atoms.
    pub energies: bool,
    /// Per-atom virials of every atom.
    pub virials: bool,
}

impl Request {
    /// Energy only.
    pub const ENERGY: Request = Request {
        forces: false,
        virial: false,
        energies: false,
        virials: false,
    };
    /// Everything.
    pub const ALL: Request = Request {
        forces: true,
        virial: true,
        energies: true,
        virials: true,
    };
    /// Energy, forces and virial.
    pub const EFV: Request = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: false,
    };
    fn needs_grad(&self) -> bool {
        self.forces || self.virial || self.virials
    }
}

/// Results of one evaluation, in eV, Å, eV/Å; the virial in eV (W = -∂E/∂ε, LAMMPS's sign; the
/// stress of a periodic cell is -W/V).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Results {
    /// Total energy of the local atoms.
    pub energy: f64,
    /// Forces on every atom (local then ghost); empty if not requested.
    pub forces: Vec<[f64; 3]>,
    /// Virial (row-major 3x3); zero if not requested.
    pub virial: [[f64; 3]; 3],
    /// Per-atom energies of local atoms; empty if not requested.
    pub energies: Vec<f64>,
    /// Per-atom virials of every atom; empty if not requested.
    pub virials: Vec<[[f64; 3]; 3]>,
    /// Other outputs of the active branch: graph heads (dim values), node heads (n_local × dim).
    pub properties: BTreeMap<String, Vec<f64>>,
}

impl Results {
    /// Stress (eV/Å^3, row-major 3x3, positive = tensile as in ASE) for a cell of volume `volume`.
    pub fn stress(&self, volume: f64) -> [[f64; 3]; 3] {
        self.virial.map(|row| row.map(|w| -w / volume))
    }
}

/// Runs `f`, turning a libtorch panic into [`Error::Internal`], so that nothing panics out of the engine.
pub fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::Internal(format!(
            "libtorch failed: {}",
            panic_message(p.as_ref())
        ))),
    }
}

/// The message carried by a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Checks a caller-supplied graph and returns its f64 edge vectors.
pub(crate) fn check_graph(model: &Model, g: &GraphInput) -> Result<(Vec<i64>, Vec<f64>)> {
    let n = g.positions.len();
    if g.numbers.len() != n {
        return invalid(format!(
            "{n} positions but {} atomic numbers",
            g.numbers.len()
        ));
    }
    if g.n_local > n {
        return invalid(format!(
            "n_local = {} exceeds the number of atoms {n}",
            g.n_local
        ));
    }
    if g.n_local < n {
        model.check_ghost_rows()?;
    }
    if g.centers.len() != g.neighbors.len() {
        return invalid(format!(
            "{} edge centres but {} edge neighbours",
            g.centers.len(),
            g.neighbors.len()
        ));
    }
    if let Some(s) = g.shifts {
        if s.len() != g.centers.len() {
            return invalid(format!(
                "{} edge shifts for {} edges",
                s.len(),
                g.centers.len()
            ));
        }
    }
    for (i, p) in g.positions.iter().enumerate() {
        if !p.iter().all(|x| x.is_finite()) {
            return invalid(format!("position of atom {i} is not finite: {p:?}"));
        }
    }
    let species = model.species_indices(g.numbers)?;
    let mut vecs = Vec::with_capacity(3 * g.centers.len());
    for e in 0..g.centers.len() {
        let (i, j) = (g.centers[e], g.neighbors[e]);
        if i >= n || j >= n {
            return invalid(format!(
                "edge {e} ({i} -> {j}) refers to an atom index >= {n}"
            ));
        }
        let s = g.shifts.map(|s| s[e]).unwrap_or([0.0; 3]);
        if !s.iter().all(|x| x.is_finite()) {
            return invalid(format!("shift of edge {e} is not finite"));
        }
        let r = [0, 1, 2].map(|k| g.positions[j][k] - g.positions[i][k] + s[k]);
        if r.iter().map(|x| x * x).sum::<f64>() < 1e-20 {
            return invalid(format!(
                "edge {e}: atoms {i} and {j} are at the same position"
            ));
        }
        vecs.extend_from_slice(&r);
    }
    Ok((species, vecs))
}

/// Forces F = -∂E/∂x on every node of `g`, (n, 3) in the energy's kind, differentiable: the
/// gradient g_e of `energy` (summed) with respect to `g.edge_vec` (which must require gradients),
/// assembled as F_src -= g_e, F_dst += g_e. With `volumes` (one per graph, Å³) also the stress of
/// every graph from the same gradients, σ = -W/V = Σ_e r_e ⊗ g_e / V (summed over the edges whose
/// centre is in the graph), (n_graphs, 3, 3). `create_graph` keeps both differentiable with
/// respect to the weights (for a force or stress loss). A graph without edges has zero forces and
/// stress. This is the tensor form of what [`Model::compute_graphs`] does on the host (in f64,
/// with per-atom virials) in `edge_grads_to_results`.
pub fn edge_forces(
    energy: &Tensor,
    g: &GraphTensors,
    volumes: Option<&Tensor>,
    create_graph: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let kind = energy.kind();
    let dev = energy.device();
    let n = g.species.size()[0];
    if g.edge_vec.size()[0] == 0 {
        let stress = volumes.map(|_| Tensor::zeros([g.n_graphs, 3, 3], (kind, dev)));
        return Ok((Tensor::zeros([n, 3], (kind, dev)), stress));
    }
    let grad = Tensor::f_run_backward(
        &[energy.sum(kind)],
        &[&g.edge_vec],
        create_graph,
        create_graph,
    )?
    .pop()
    .expect("one gradient");
    let z = Tensor::zeros([n, 3], (kind, grad.device()));
    let forces = z.index_add(0, &g.dst, &grad) - z.index_add(0, &g.src, &grad);
    let stress = volumes.map(|v| {
        // -W = Σ_e r_e ⊗ g_e per graph; σ = -W / V.
        let rg = g.edge_vec.unsqueeze(2) * grad.unsqueeze(1);
        let edge_graph = g.batch.index_select(0, &g.dst);
        let mw = Tensor::zeros([g.n_graphs, 3, 3], (kind, dev)).index_add(0, &edge_graph, &rg);
        mw / v.view([-1, 1, 1])
    });
    Ok((forces, stress))
}

/// Turns per-edge energy gradients (E×3, row-major) into forces, virial and per-atom virials.
pub(crate) fn edge_grads_to_results(
    grad: &[f64],
    vecs: &[f64],
    src: &[i64],
    dst: &[i64],
    n_total: usize,
    req: Request,
    out: &mut Results,
) {
    if req.forces {
        out.forces = vec![[0.0; 3]; n_total];
    }
    if req.virials {
        out.virials = vec![[[0.0; 3]; 3]; n_total];
    }
    let mut w = [[0.0; 3]; 3];
    for e in 0..src.len() {
        let g = &grad[3 * e..3 * e + 3];
        let r = &vecs[3 * e..3 * e + 3];
        let (s, d) = (src[e] as usize, dst[e] as usize);
        if req.forces {
            for (k, &gk) in g.iter().enumerate() {
                out.forces[s][k] -= gk;
                out.forces[d][k] += gk;
            }
        }
        if req.virial || req.virials {
            for a in 0..3 {
                for b in 0..3 {
                    let v = -r[a] * g[b];
                    w[a][b] += v;
                    if req.virials {
                        out.virials[s][a][b] += 0.5 * v;
                        out.virials[d][a][b] += 0.5 * v;
                    }
                }
            }
        }
    }
    if req.virial {
        out.virial = w;
    }
}

pub(crate) fn tensor_to_vec(t: &Tensor) -> Result<Vec<f64>> {
    let t = t
        .f_to_kind(Kind::Double)?
        .f_to_device(tch::Device::Cpu)?
        .f_contiguous()?
        .f_view([-1])?;
    Vec::<f64>::try_from(&t).map_err(Error::Torch)
}

impl Model {
    /// Energy, forces, virial ... of a whole structure; the engine builds the neighbour list.
    pub fn compute(&self, s: &Structure, req: Request) -> Result<Results> {
        Ok(self
            .compute_batch(std::slice::from_ref(s), req)?
            .pop()
            .expect("one result"))
    }

    /// Several structures evaluated as one batched graph.
    pub fn compute_batch(&self, structures: &[Structure], req: Request) -> Result<Vec<Results>> {
        let lists = whole_structure_lists(structures, self.cutoff())?;
        self.compute_graphs(&whole_structure_inputs(structures, &lists), req)
    }

    /// One caller-supplied graph (local + ghost atoms, explicit edges).
    pub fn compute_graph(&self, g: &GraphInput, req: Request) -> Result<Results> {
        Ok(self
            .compute_graphs(std::slice::from_ref(g), req)?
            .pop()
            .expect("one result"))
    }

    /// Several caller-supplied graphs, batched: consecutive graphs are evaluated together in
    /// chunks of at most [`BATCH_EDGES`] edges (libtorch) or [`BATCH_EDGES_FAST`] (fast path), so
    /// that a large batch is never slower than a loop over its graphs (libtorch's tensors grow
    /// past the allocator's reuse and every step pays page faults; measured in
    /// `cargo bench -p mlip --bench engine`).
    pub fn compute_graphs(&self, graphs: &[GraphInput], req: Request) -> Result<Vec<Results>> {
        Ok(compute_graphs_shared(&[self], graphs, req)?
            .pop()
            .expect("one model"))
    }
}

/// Each structure validated, its neighbour list within `cutoff` and the Cartesian shift of every
/// edge: what the whole-structure graphs of [`whole_structure_inputs`] borrow.
pub(crate) fn whole_structure_lists(
    structures: &[Structure],
    cutoff: f64,
) -> Result<Vec<(NeighborList, Vec<[f64; 3]>)>> {
    structures
        .iter()
        .enumerate()
        .map(|(k, s)| {
            s.validate()
                .map_err(|e| e.in_structure(k, structures.len()))?;
            let nl = neighbor_list(s, cutoff).map_err(|e| e.in_structure(k, structures.len()))?;
            let shifts: Vec<[f64; 3]> = nl
                .shifts
                .iter()
                .map(|sh| [0, 1, 2].map(|c| (0..3).map(|k| sh[k] as f64 * s.cell[k][c]).sum()))
                .collect();
            Ok((nl, shifts))
        })
        .collect()
}

/// The graphs of whole structures (every atom local, periodic images as edge shifts).
pub(crate) fn whole_structure_inputs<'a>(
    structures: &'a [Structure],
    lists: &'a [(NeighborList, Vec<[f64; 3]>)],
) -> Vec<GraphInput<'a>> {
    structures
        .iter()
        .zip(lists)
        .map(|(s, (nl, shifts))| GraphInput {
            n_local: s.len(),
            positions: &s.positions,
            numbers: &s.numbers,
            centers: &nl.centers,
            neighbors: &nl.neighbors,
            shifts: Some(shifts),
        })
        .collect()
}

/// [`Model::compute_graphs`] for several models of one species list (an ensemble): each chunk's
/// graph arrays (species indices, edge vectors, the checks) are built once and evaluated by every
/// model; `out[m][g]` is model m's results for graph g.
pub(crate) fn compute_graphs_shared(
    models: &[&Model],
    graphs: &[GraphInput],
    req: Request,
) -> Result<Vec<Vec<Results>>> {
    let limit = if models.iter().all(|m| m.fast().is_some()) {
        BATCH_EDGES_FAST
    } else {
        BATCH_EDGES
    };
    let mut out: Vec<Vec<Results>> = models
        .iter()
        .map(|_| Vec::with_capacity(graphs.len()))
        .collect();
    let mut start = 0;
    while start < graphs.len() {
        let mut end = start + 1;
        let mut edges = graphs[start].centers.len();
        while end < graphs.len() && edges + graphs[end].centers.len() <= limit {
            edges += graphs[end].centers.len();
            end += 1;
        }
        let chunk =
            compute_graphs_chunk(models, &graphs[start..end], req).map_err(|e| match e {
                Error::InStructure { index, source } => Error::InStructure {
                    index: index + start,
                    source,
                },
                e if end - start == 1 => e.in_structure(start, graphs.len()),
                e => e,
            })?;
        for (o, c) in out.iter_mut().zip(chunk) {
            o.extend(c);
        }
        start = end;
    }
    Ok(out)
}

/// One chunk of [`compute_graphs_shared`]: the graph arrays built once (with the first model's
/// species index, which every model shares), then each model's evaluation.
fn compute_graphs_chunk(
    models: &[&Model],
    graphs: &[GraphInput],
    req: Request,
) -> Result<Vec<Vec<Results>>> {
    let mut arrays = GraphArrays::default();
    let mut local = Vec::new();
    for (k, g) in graphs.iter().enumerate() {
        let (sp, v) = check_graph(models[0], g).map_err(|e| e.in_structure(k, graphs.len()))?;
        arrays.push(
            &sp,
            g.neighbors.iter().map(|&j| j as i64),
            g.centers.iter().map(|&i| i as i64),
            &v,
        );
        local.extend((0..g.positions.len()).map(|i| if i < g.n_local { 1.0 } else { 0.0 }));
    }
    models
        .iter()
        .map(|m| m.compute_prepared(graphs, &arrays, &local, req))
        .collect()
}

impl Model {
    /// Evaluates graphs whose arrays [`compute_graphs_chunk`] built.
    fn compute_prepared(
        &self,
        graphs: &[GraphInput],
        arrays: &GraphArrays,
        local: &[f64],
        req: Request,
    ) -> Result<Vec<Results>> {
        self.check_graph_attr()?;
        if req.energies && self.energy_is_pooled(None) {
            let b = &self.config().branches[self.active_branch()].name;
            return Err(crate::model::per_atom_energy_undefined(b));
        }
        if let Some(fast) = self.fast() {
            return guarded(|| self.compute_graphs_fast(fast, graphs, arrays, local, req));
        }
        guarded(|| {
            let (kind, dev) = (self.kind(), self.device());
            let n_edges = arrays.n_edges();
            let gt = arrays.to_tensors(kind, dev, req.needs_grad());
            let st = self.propagate(&gt);
            let out = self.heads(None, &st.s, &gt)?;
            let mask = crate::model::nn::tensor_from(local, &[local.len() as i64], kind, dev);
            let graph_e = if self.energy_is_pooled(None) {
                // graph-level energy: the local atoms' features pooled, then the MLP
                self.pooled_energy(self.active_branch(), &st.s, &gt, Some(&mask))?
            } else {
                let node_e = &out.node_energy * &mask;
                Tensor::zeros([graphs.len() as i64], (kind, dev)).index_add(0, &gt.batch, &node_e)
            };
            let grad = if req.needs_grad() && n_edges > 0 {
                let total = graph_e.sum(kind);
                let g = Tensor::f_run_backward(&[&total], &[&gt.edge_vec], false, false)?;
                tensor_to_vec(&g[0])?
            } else {
                vec![0.0; arrays.edge_vec.len()]
            };
            let energies = tensor_to_vec(&out.node_energy)?;
            let graph_e = tensor_to_vec(&graph_e)?;
            if let Some(k) = graph_e.iter().position(|e| !e.is_finite()) {
                return Err(
                    Error::Internal("the model produced a non-finite energy".into())
                        .in_structure(k, graphs.len()),
                );
            }
            let props: Vec<(String, Vec<f64>, bool)> =
                (out.graph_properties.iter().map(|p| (p, true)))
                    .chain(out.node_properties.iter().map(|p| (p, false)))
                    .map(|((name, t), per_graph)| Ok((name.clone(), tensor_to_vec(t)?, per_graph)))
                    .collect::<Result<_>>()?;
            Ok(split_results(
                graphs, arrays, &energies, &grad, &graph_e, &props, req,
            ))
        })
    }
}

impl Model {
    /// [`Model::compute_graphs`] on the fast path: energies, forces and virials from the fused
    /// kernels; other heads of the active branch (if any) from the final features through
    /// libtorch, without gradients.
    fn compute_graphs_fast(
        &self,
        fast: &crate::fast::FastModel,
        graphs: &[GraphInput],
        arrays: &GraphArrays,
        local: &[f64],
        req: Request,
    ) -> Result<Vec<Results>> {
        let (species, batch) = (&arrays.species, &arrays.batch);
        let is_local: Vec<bool> = local.iter().map(|&x| x > 0.0).collect();
        let has_props = self.config().branches[self.active_branch()]
            .output_heads
            .iter()
            .any(|h| h.name != "energy");
        let mut feats = Vec::new();
        let mut out = fast.whole(
            self.active_branch(),
            species,
            &arrays.src,
            &arrays.dst,
            &arrays.edge_vec,
            &is_local,
            self.cutoff(),
            req.needs_grad(),
            has_props.then_some(&mut feats),
        )?;
        if let Some(z) = &self.config().zbl {
            // The fused kernels evaluate the network; the ZBL repulsion is added here.
            let zs = &self.config().species;
            let numbers: Vec<i32> = species.iter().map(|&s| zs[s as usize]).collect();
            let grad = req.needs_grad().then_some(&mut out.edge_grad[..]);
            crate::zbl::add_edges(
                z,
                &numbers,
                &arrays.dst,
                &arrays.src,
                &arrays.edge_vec,
                |i| is_local[i],
                &mut out.node_energy,
                grad,
            );
        }
        let mut graph_e = vec![0.0; graphs.len()];
        for (i, &e) in out.node_energy.iter().enumerate() {
            if is_local[i] {
                graph_e[batch[i] as usize] += e;
            }
        }
        if let Some(k) = graph_e.iter().position(|e| !e.is_finite()) {
            return Err(
                Error::Internal("the model produced a non-finite energy".into())
                    .in_structure(k, graphs.len()),
            );
        }
        let mut props: Vec<(String, Vec<f64>, bool)> = Vec::new();
        if has_props {
            let (kind, dev) = (self.kind(), self.device());
            let n = species.len() as i64;
            let s = crate::model::nn::tensor_from(
                &feats,
                &[n, feats.len() as i64 / n.max(1)],
                kind,
                dev,
            );
            // The heads read species and graph membership only, not the edges.
            let gt = arrays.to_tensors(kind, dev, false);
            let st = self.backbone().unflatten(self.num_layers(), &s);
            let o = tch::no_grad(|| self.heads(None, &st.s, &gt))?;
            for (name, t) in o.graph_properties.iter() {
                props.push((name.clone(), tensor_to_vec(t)?, true));
            }
            for (name, t) in o.node_properties.iter() {
                props.push((name.clone(), tensor_to_vec(t)?, false));
            }
        }
        Ok(split_results(
            graphs,
            arrays,
            &out.node_energy,
            &out.edge_grad,
            &graph_e,
            &props,
            req,
        ))
    }
}

/// Splits a batched evaluation into per-graph results: energies, forces, virials from the edge
/// gradients, and the other heads' properties (per graph or per local atom).
fn split_results(
    graphs: &[GraphInput],
    arrays: &GraphArrays,
    node_energy: &[f64],
    grad: &[f64],
    graph_e: &[f64],
    props: &[(String, Vec<f64>, bool)],
    req: Request,
) -> Vec<Results> {
    let (src, dst, vecs) = (&arrays.src, &arrays.dst, &arrays.edge_vec);
    let (node_off, edge_off, n_nodes) =
        (&arrays.node_offsets, &arrays.edge_offsets, arrays.n_nodes());
    let mut results = Vec::with_capacity(graphs.len());
    for (k, g) in graphs.iter().enumerate() {
        let (n0, n1) = (node_off[k], node_off[k + 1]);
        let (e0, e1) = (edge_off[k], edge_off[k + 1]);
        let mut r = Results {
            energy: graph_e[k],
            ..Default::default()
        };
        if req.energies {
            r.energies = node_energy[n0..n0 + g.n_local].to_vec();
        }
        let s: Vec<i64> = src[e0..e1].iter().map(|&x| x - n0 as i64).collect();
        let d: Vec<i64> = dst[e0..e1].iter().map(|&x| x - n0 as i64).collect();
        edge_grads_to_results(
            &grad[3 * e0..3 * e1],
            &vecs[3 * e0..3 * e1],
            &s,
            &d,
            n1 - n0,
            req,
            &mut r,
        );
        for (name, v, per_graph) in props {
            let dim = v.len() / if *per_graph { graphs.len() } else { n_nodes };
            let vals = if *per_graph {
                v[k * dim..(k + 1) * dim].to_vec()
            } else {
                v[n0 * dim..(n0 + g.n_local) * dim].to_vec()
            };
            r.properties.insert(name.clone(), vals);
        }
        results.push(r);
    }
    results
}

/// Largest number of edges evaluated in one libtorch pass by [`Model::compute_graphs`].
pub const BATCH_EDGES: usize = 20_000;
/// Largest number of edges evaluated in one fast-path pass by [`Model::compute_graphs`].
pub const BATCH_EDGES_FAST: usize = 200_000;

/// The largest number of libtorch intra-op threads accepted ([`set_num_threads`]): far above any
/// useful count (one per logical CPU), and far below the counts at which libgomp crashes (2048
/// threads: a segfault after the call succeeded) or exhausts memory (10^6).
pub const MAX_THREADS: i32 = 1024;

/// Sets the number of libtorch intra-op threads (also read from `HYDRAGNN_NUM_THREADS` by
/// [`threads_from_env`]); `n` must be in `1..=MAX_THREADS`. In a process forked from one that
/// had loaded the engine, one thread is used whatever `n` is ([`crate::fork`]).
pub fn set_num_threads(n: i32) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&n) {
        return invalid(format!(
            "number of threads {n} is out of range: it must be in 1..={MAX_THREADS}"
        ));
    }
    tch::set_num_threads(crate::fork::effective_threads(n));
    Ok(())
}

/// Applies `HYDRAGNN_NUM_THREADS` if it is set; returns the value applied.
pub fn threads_from_env() -> Result<Option<i32>> {
    match std::env::var("HYDRAGNN_NUM_THREADS") {
        Ok(v) => {
            let n: i64 = v.trim().parse().map_err(|_| {
                Error::InvalidInput(format!(
                    "HYDRAGNN_NUM_THREADS='{v}' is not an integer in 1..={MAX_THREADS}"
                ))
            })?;
            let out_of_range = || {
                Error::InvalidInput(format!(
                    "HYDRAGNN_NUM_THREADS='{v}' is out of range: it must be in 1..={MAX_THREADS}"
                ))
            };
            let n = i32::try_from(n).map_err(|_| out_of_range())?;
            set_num_threads(n).map_err(|_| out_of_range())?;
            Ok(Some(n))
        }
        Err(_) => Ok(None),
    }
}
