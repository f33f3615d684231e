//! Layer-by-layer evaluation for spatial decomposition (LAMMPS). The caller owns the
//! communication: after each forward layer it fills the ghost rows of the next layer's node
//! features from their owners (forward exchange), and after each backward layer it adds the ghost
//! rows of the feature gradient into their owners (reverse exchange). The ghost shell therefore
//! needs to be one cutoff wide, whatever the number of layers.
//!
//! Protocol, with L layers:
//! 1. [`LayeredEval::new`]: features entering layer 0 for every atom (no exchange needed).
//! 2. for l in 0..L: if l > 0, fill ghost rows of `features_mut(l)`; `forward_layer(l)`.
//! 3. `readout()` (energies of local atoms; seeds the gradient of the final features).
//! 4. for l in (0..L).rev(): `backward_layer(l)`; if l > 0, reverse-exchange `grads_mut(l)`
//!    (add ghost rows into owners; ghost rows are ignored afterwards).
//! 5. `results(req)`: forces on local and ghost atoms (ghost forces belong to their owners),
//!    virial, per-atom energies and virials.
//!
//! A graph-level energy ([`Model::energy_is_pooled`]: node features summed, then an MLP) is not
//! a sum over atoms, so between 3 and 4 comes a reduction: after `readout()` the caller reduces
//! every piece's [`LayeredEval::head_partials`] (sums added, maxima maxed, e.g. MPI_Allreduce)
//! and passes the result to [`LayeredEval::reduce`], which returns the energy of the whole
//! structure and seeds the local atoms' backward pass with ∂E/∂(pooled features). Per-atom
//! energies are not defined then; forces, virial and per-atom virials are.

use tch::Tensor;

use crate::compute::{
    check_graph, edge_grads_to_results, guarded, tensor_to_vec, GraphInput, Request, Results,
};
use crate::error::{invalid, Error, Result};
use crate::model::nn::tensor_from;
use crate::model::{HeadPartials, Model};

/// Node heads on the local atoms: (name, n_local × dim values) in head order.
type NodeHeads = Vec<(String, Vec<f64>)>;

struct Saved {
    input: Tensor,
    edges: Tensor,
    output: Tensor,
}

/// Where a [`LayeredEval`] stands in the protocol: the call it accepts next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `forward_layer(layer)` is next (`layer` < L).
    Forward { layer: usize },
    /// All layers ran forward: `readout()` is next.
    Readout,
    /// Graph-level energy: `reduce()` is next.
    Reduce,
    /// `backward_layer(layer)` is next (`layer` < L).
    Backward { layer: usize },
    /// The backward pass finished: `results()` may be called.
    Done,
}

impl Stage {
    /// The first stage of a model with `nl` layers.
    fn first(nl: usize) -> Stage {
        match nl {
            0 => Stage::Readout,
            _ => Stage::Forward { layer: 0 },
        }
    }
    /// The stage after forward layer `l` of `nl`.
    fn after_forward(l: usize, nl: usize) -> Stage {
        if l + 1 < nl {
            Stage::Forward { layer: l + 1 }
        } else {
            Stage::Readout
        }
    }
    /// The stage after the readout of a model with `nl` layers.
    fn after_readout(nl: usize) -> Stage {
        match nl {
            0 => Stage::Done,
            _ => Stage::Backward { layer: nl - 1 },
        }
    }
    /// The stage after backward layer `l`.
    fn after_backward(l: usize) -> Stage {
        match l {
            0 => Stage::Done,
            _ => Stage::Backward { layer: l - 1 },
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Forward { layer } => write!(f, "forward_layer({layer})"),
            Stage::Readout => write!(f, "readout()"),
            Stage::Reduce => write!(f, "reduce()"),
            Stage::Backward { layer } => write!(f, "backward_layer({layer})"),
            Stage::Done => write!(f, "results()"),
        }
    }
}

/// One layer-by-layer evaluation of a graph of local + ghost atoms.
pub struct LayeredEval<'m> {
    model: &'m Model,
    n_local: usize,
    n_total: usize,
    species: Tensor,
    src: Tensor,
    dst: Tensor,
    src_v: Vec<i64>,
    dst_v: Vec<i64>,
    vecs: Vec<f64>,
    edge_vec: Tensor,
    feats: Vec<Vec<f64>>,
    grads: Vec<Vec<f64>>,
    saved: Vec<Option<Saved>>,
    edge_grad: Vec<f64>,
    energies: Vec<f64>,
    energy: f64,
    stage: Stage,
    /// Species index of every atom.
    species_v: Vec<i64>,
    /// The local atoms' graph-head partials and node heads, from `readout()`.
    heads: Option<(HeadPartials, NodeHeads)>,
    /// The fast path's evaluation, when the model has one enabled.
    fast: Option<crate::fast::Layered<'m>>,
    /// ∂E/∂(edge vector) of the ZBL repulsion ([`crate::zbl`]), from `readout()`; empty without.
    zbl_grad: Vec<f64>,
}

impl<'m> LayeredEval<'m> {
    /// Checks the graph and computes the features entering layer 0 for every atom.
    pub fn new(model: &'m Model, g: &GraphInput) -> Result<Self> {
        model.check_graph_attr()?;
        let (species, vecs) = check_graph(model, g)?;
        if g.centers.iter().any(|&i| i >= g.n_local) {
            return invalid("layer-by-layer evaluation needs every edge centre to be a local atom");
        }
        guarded(|| {
            let (kind, dev) = (model.kind(), model.device());
            let n = g.positions.len();
            let src_v: Vec<i64> = g.neighbors.iter().map(|&x| x as i64).collect();
            let dst_v: Vec<i64> = g.centers.iter().map(|&x| x as i64).collect();
            if let Some(f) = model.fast() {
                let l = model.num_layers();
                let fast = crate::fast::Layered::new(
                    f,
                    &species,
                    g.n_local,
                    &src_v,
                    &dst_v,
                    &vecs,
                    model.cutoff(),
                );
                // the rows the caller exchanges live in the fast path's pooled workspace
                let (feats, grads) = (Vec::new(), Vec::new());
                let mut ev = LayeredEval {
                    model,
                    n_local: g.n_local,
                    n_total: n,
                    species: Tensor::new(),
                    src: Tensor::new(),
                    dst: Tensor::new(),
                    edge_grad: vec![0.0; vecs.len()],
                    src_v,
                    dst_v,
                    vecs,
                    edge_vec: Tensor::new(),
                    feats,
                    grads,
                    saved: (0..l).map(|_| None).collect(),
                    energies: Vec::new(),
                    energy: 0.0,
                    stage: Stage::first(l),
                    species_v: species.clone(),
                    heads: None,
                    fast: None,
                    zbl_grad: Vec::new(),
                };
                ev.fast = Some(fast);
                return Ok(ev);
            }
            let species_v = species.clone();
            let species = Tensor::from_slice(&species).to_device(dev);
            let bb = model.backbone();
            let x0 = tch::no_grad(|| bb.flatten(&bb.init_state(&model.input_features(&species))));
            let l = model.num_layers();
            let mut feats: Vec<Vec<f64>> = (0..=l)
                .map(|k| vec![0.0; n * bb.width(k) as usize])
                .collect();
            feats[0] = tensor_to_vec(&x0)?;
            let grads = (0..=l)
                .map(|k| vec![0.0; n * bb.width(k) as usize])
                .collect();
            let edge_vec = tensor_from(&vecs, &[g.centers.len() as i64, 3], kind, dev);
            Ok(LayeredEval {
                model,
                n_local: g.n_local,
                n_total: n,
                species,
                src: Tensor::from_slice(&src_v).to_device(dev),
                dst: Tensor::from_slice(&dst_v).to_device(dev),
                edge_grad: vec![0.0; vecs.len()],
                src_v,
                dst_v,
                vecs,
                edge_vec,
                feats,
                grads,
                saved: (0..l).map(|_| None).collect(),
                energies: Vec::new(),
                energy: 0.0,
                stage: Stage::first(l),
                species_v,
                heads: None,
                fast: None,
                zbl_grad: Vec::new(),
            })
        })
    }

    /// Number of message-passing layers of the model.
    pub fn num_layers(&self) -> usize {
        self.model.num_layers()
    }
    /// Number of local atoms.
    pub fn n_local(&self) -> usize {
        self.n_local
    }
    /// Number of local + ghost atoms.
    pub fn n_total(&self) -> usize {
        self.n_total
    }
    /// Number of values per atom in the features entering layer `l` (0..=L).
    pub fn width(&self, l: usize) -> usize {
        self.model.backbone().width(l) as usize
    }
    /// Features entering layer `l`, row-major (n_total × width(l)).
    pub fn features(&self, l: usize) -> &[f64] {
        match &self.fast {
            Some(f) => f.features(l),
            None => &self.feats[l],
        }
    }
    /// Mutable features entering layer `l`: the caller writes ghost rows here.
    pub fn features_mut(&mut self, l: usize) -> &mut [f64] {
        match &mut self.fast {
            Some(f) => f.features_mut(l),
            None => &mut self.feats[l],
        }
    }
    /// Gradient of the energy with respect to the features entering layer `l`.
    pub fn grads(&self, l: usize) -> &[f64] {
        match &self.fast {
            Some(f) => f.grads(l),
            None => &self.grads[l],
        }
    }
    /// Mutable gradient: the caller adds ghost rows into their owners here.
    pub fn grads_mut(&mut self, l: usize) -> &mut [f64] {
        match &mut self.fast {
            Some(f) => f.grads_mut(l),
            None => &mut self.grads[l],
        }
    }

    fn rows(&self, data: &[f64], l: usize, ghosts_zero: bool) -> Tensor {
        let w = self.width(l);
        let t = tensor_from(
            data,
            &[self.n_total as i64, w as i64],
            self.model.kind(),
            self.model.device(),
        );
        if ghosts_zero && self.n_total > self.n_local {
            let _ = t
                .narrow(0, self.n_local as i64, (self.n_total - self.n_local) as i64)
                .fill_(0.0);
        }
        t
    }

    /// Forward through layer `l`; the local rows of `features(l + 1)` are filled, ghost rows zeroed.
    pub fn forward_layer(&mut self, l: usize) -> Result<()> {
        let nl = self.model.num_layers();
        if self.stage != (Stage::Forward { layer: l }) {
            return invalid(format!(
                "forward_layer({l}) called out of order (next expected: {})",
                self.stage
            ));
        }
        if let Some(fast) = self.fast.as_mut() {
            fast.forward_layer(l);
            self.stage = Stage::after_forward(l, nl);
            return Ok(());
        }
        guarded(|| {
            let bb = self.model.backbone();
            let input = self.rows(&self.feats[l], l, false).set_requires_grad(true);
            let edges = self.edge_vec.detach().set_requires_grad(true);
            let e = self
                .model
                .edges(&self.src, &self.dst, &edges, self.n_total as i64);
            let output = bb.flatten(&bb.layer(l, &bb.unflatten(l, &input), &e));
            let mut out = tensor_to_vec(&output.detach())?;
            let w = self.width(l + 1);
            out[self.n_local * w..].iter_mut().for_each(|x| *x = 0.0);
            self.feats[l + 1] = out;
            self.saved[l] = Some(Saved {
                input,
                edges,
                output,
            });
            self.stage = Stage::after_forward(l, nl);
            Ok(())
        })
    }

    /// Energies of local atoms from the final features; seeds the backward pass. Returns the
    /// energy of the local atoms. For a graph-level energy ([`Model::energy_is_pooled`]) it
    /// computes the local partials only and returns 0: [`LayeredEval::reduce`] is next.
    pub fn readout(&mut self) -> Result<f64> {
        let l = self.model.num_layers();
        if self.stage != Stage::Readout {
            return invalid(format!(
                "readout called out of order: before all {l} layers ran forward, or twice (next \
                 expected: {})",
                self.stage
            ));
        }
        if self.model.energy_is_pooled(None) {
            self.heads = Some(self.local_heads()?);
            self.stage = Stage::Reduce;
            return Ok(0.0);
        }
        // A branch with the (sum-pooled) energy head alone needs no extra head evaluation: its
        // partials are the local energy and atom count, set below.
        let heads = &self.model.config().branches[self.model.active_branch()].output_heads;
        let energy_only = heads.len() == 1
            && heads[0].pooling == crate::model::config::Pooling::Sum
            && !heads[0].pool_first;
        self.heads = if energy_only {
            None
        } else {
            Some(self.local_heads()?)
        };
        let result = self.readout_energy();
        if !energy_only && self.model.config().zbl.is_some() {
            // The head partials' energy is the network's; the local energy also holds the ZBL
            // repulsion (per-atom, like the network's energies), so it is the energy's partial.
            let model = self.model;
            if let (Ok(e), Some((p, _))) = (&result, self.heads.as_mut()) {
                if let Some(i) = model.energy_partial_index(None)? {
                    p.sums[i] = *e;
                }
            }
        }
        if energy_only {
            if let Ok(e) = result {
                let sums = vec![e, self.n_local as f64];
                self.heads = Some((HeadPartials { sums, maxs: vec![] }, vec![]));
            }
        }
        result
    }

    fn readout_energy(&mut self) -> Result<f64> {
        let l = self.model.num_layers();
        if let Some(fast) = self.fast.as_mut() {
            fast.readout(self.model.active_branch(), &mut self.energies)?;
            self.add_zbl();
            self.energy = self.energies.iter().sum();
            if !self.energy.is_finite() {
                return Err(Error::Internal(
                    "the model produced a non-finite energy".into(),
                ));
            }
            self.stage = Stage::after_readout(l);
            return Ok(self.energy);
        }
        guarded(|| {
            let input = self.rows(&self.feats[l], l, false).set_requires_grad(true);
            let st = self.model.backbone().unflatten(l, &input);
            let node_e =
                self.model
                    .node_energy(self.model.active_branch(), &st.s, &self.species)?;
            let local = node_e.narrow(0, 0, self.n_local as i64);
            let e = local.sum(self.model.kind());
            let g = Tensor::f_run_backward(&[&e], &[&input], false, false)?;
            self.grads[l] = tensor_to_vec(&g[0])?;
            self.energies = tensor_to_vec(&local.detach())?;
            self.add_zbl();
            self.energy = self.energies.iter().sum();
            if !self.energy.is_finite() {
                return Err(Error::Internal(
                    "the model produced a non-finite energy".into(),
                ));
            }
            self.stage = Stage::after_readout(l);
            Ok(self.energy)
        })
    }

    /// Adds the model's ZBL repulsion ([`crate::zbl`]) of the edges (all with local centres) to
    /// the local energies, and its edge gradient to `zbl_grad`.
    fn add_zbl(&mut self) {
        let Some(z) = &self.model.config().zbl else {
            return;
        };
        let zs = &self.model.config().species;
        let numbers: Vec<i32> = self.species_v.iter().map(|&s| zs[s as usize]).collect();
        self.zbl_grad = vec![0.0; self.vecs.len()];
        let n_local = self.n_local;
        crate::zbl::add_edges(
            z,
            &numbers,
            &self.dst_v,
            &self.src_v,
            &self.vecs,
            |i| i < n_local,
            &mut self.energies,
            Some(&mut self.zbl_grad),
        );
    }

    /// Graph-level energy, after `readout()`: `total` is every piece's
    /// [`LayeredEval::head_partials`] reduced (sums added, maxima maxed). Returns the energy of
    /// the whole structure (the same on every piece) and seeds the backward pass.
    pub fn reduce(&mut self, total: &HeadPartials) -> Result<f64> {
        let l = self.model.num_layers();
        if self.stage != Stage::Reduce {
            return invalid(format!(
                "reduce called out of order, or for a model whose energy is a sum of per-atom energies (next expected: {})",
                self.stage
            ));
        }
        let (energy, g) = self.model.pooled_energy_grad(None, total)?;
        guarded(|| {
            let (kind, dev) = (self.model.kind(), self.model.device());
            let input = self.rows(&self.feats[l], l, false).set_requires_grad(true);
            let s = self.model.backbone().unflatten(l, &input).s;
            let g = tensor_from(&g, &[1, g.len() as i64], kind, dev);
            let seed = (s.narrow(0, 0, self.n_local as i64) * g).sum(kind);
            let grad = Tensor::f_run_backward(&[&seed], &[&input], false, false)?;
            self.grads[l] = tensor_to_vec(&grad[0])?;
            Ok(())
        })?;
        self.energy = energy;
        self.stage = Stage::after_readout(l);
        Ok(energy)
    }

    /// Graph-head partials and node heads of the active branch over the local atoms, from the
    /// final features.
    fn local_heads(&self) -> Result<(HeadPartials, NodeHeads)> {
        let l = self.model.num_layers();
        let w = self.width(l);
        let (kind, dev) = (self.model.kind(), self.model.device());
        guarded(|| {
            let rows = &self.features(l)[..self.n_local * w];
            let t = tensor_from(rows, &[self.n_local as i64, w as i64], kind, dev);
            let s = self.model.backbone().unflatten(l, &t).s;
            let species = Tensor::from_slice(&self.species_v[..self.n_local]).to_device(dev);
            Ok((
                self.model.head_partials(None, &s, &species)?,
                self.model.node_heads(None, &s)?,
            ))
        })
    }

    /// After `readout()`: the local atoms' partials of the active branch's graph heads (see
    /// [`crate::model::pooled`]), to be reduced across every piece of the structure and passed to
    /// [`Model::finish_heads`].
    pub fn head_partials(&self) -> Result<&HeadPartials> {
        match &self.heads {
            Some((p, _)) => Ok(p),
            None => invalid("head partials requested before readout()"),
        }
    }

    /// After `readout()`: the active branch's node heads on the local atoms, in head order
    /// (name, n_local × dim values).
    pub fn node_heads(&self) -> Result<&[(String, Vec<f64>)]> {
        match &self.heads {
            Some((_, v)) => Ok(v),
            None => invalid("node heads requested before readout()"),
        }
    }

    /// Backward through layer `l`: fills `grads(l)` for every row (ghost rows hold contributions
    /// that belong to their owners) and accumulates the edge gradients.
    pub fn backward_layer(&mut self, l: usize) -> Result<()> {
        if self.stage != (Stage::Backward { layer: l }) {
            return invalid(format!(
                "backward_layer({l}) called out of order (next expected: {})",
                self.stage
            ));
        }
        if let Some(fast) = self.fast.as_mut() {
            fast.backward_layer(l);
            if l == 0 {
                fast.edge_grads(&mut self.edge_grad);
            }
            self.stage = Stage::after_backward(l);
            return Ok(());
        }
        guarded(|| {
            let saved = self.saved[l]
                .take()
                .ok_or_else(|| Error::Internal(format!("layer {l} has no saved forward pass")))?;
            let g_out = self.rows(&self.grads[l + 1], l + 1, true);
            let loss = (&saved.output * g_out).sum(self.model.kind());
            let g = Tensor::f_run_backward(&[&loss], &[&saved.input, &saved.edges], false, false)?;
            self.grads[l] = tensor_to_vec(&g[0])?;
            for (acc, x) in self.edge_grad.iter_mut().zip(tensor_to_vec(&g[1])?) {
                *acc += x;
            }
            self.stage = Stage::after_backward(l);
            Ok(())
        })
    }

    /// Results after the backward pass through layer 0. For a graph-level energy, `energy` is
    /// the whole structure's (from [`LayeredEval::reduce`]) and per-atom energies are an error.
    pub fn results(&self, req: Request) -> Result<Results> {
        if self.stage != Stage::Done {
            return invalid("results requested before the backward pass finished");
        }
        let mut r = Results {
            energy: self.energy,
            ..Default::default()
        };
        if req.energies {
            if self.model.energy_is_pooled(None) {
                let b = &self.model.config().branches[self.model.active_branch()].name;
                return Err(crate::model::per_atom_energy_undefined(b));
            }
            r.energies = self.energies.clone();
        }
        let with_zbl: Vec<f64>;
        let edge_grad = if self.zbl_grad.is_empty() {
            &self.edge_grad
        } else {
            with_zbl = self
                .edge_grad
                .iter()
                .zip(&self.zbl_grad)
                .map(|(a, b)| a + b)
                .collect();
            &with_zbl
        };
        edge_grads_to_results(
            edge_grad,
            &self.vecs,
            &self.src_v,
            &self.dst_v,
            self.n_total,
            req,
            &mut r,
        );
        Ok(r)
    }
}
