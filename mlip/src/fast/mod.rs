//! The fast evaluation path: compressed radial filters and fused edge kernels with a
//! hand-written backward pass, no autograd graph and no allocation per call once the buffers
//! have grown.
//!
//! At [`Model::enable_fast`](crate::Model::enable_fast) every layer's radial filter (a function of
//! the pair distance alone: SchNet's filter network times its envelope, PaiNN's radial filter) is
//! tabulated per channel as cubic Hermite splines ([`radial::Table`]); the energy is then a
//! function of the tabulated filters and the forces are its exact derivative (the table's own
//! derivative), so the compressed model is an exactly conservative potential whose distance from
//! the exact model is stated by the table's error. Per layer the node-side dense layers run as
//! GEMMs and one pass over the edges, grouped by centre (CSR), gathers, filters and aggregates;
//! the backward pass walks the same edges once and accumulates ∂E/∂(edge vector) directly.
//!
//! Layouts of the per-atom state are those of the libtorch backbones ([`crate::model::Backbone`]),
//! so the layer-by-layer ghost exchange is the same on both paths.

/// Defines `$name`, which runs the kernel `$k::<T, FMA>` compiled with AVX2 + FMA (`$fma`) when
/// the CPU has them and as baseline x86-64 code otherwise.
macro_rules! dispatch_fma {
    ($name:ident, $fma:ident, $k:ident, ($($a:ident : $t:ty),*)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name<T: $crate::fast::dense::Real>($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            if $crate::fast::dense::has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { $fma($($a),*) };
                return;
            }
            $k::<T, false>($($a),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fma<T: $crate::fast::dense::Real>($($a: $t),*) {
            $k::<T, true>($($a),*)
        }
    };
}

pub mod dense;
pub mod painn;
pub mod radial;
pub mod schnet;

use std::sync::Mutex;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::config::{Activation, MpnnType};
use crate::model::Model;
use dense::{resize, zeroed, Dense, MlpK, Real};
use radial::{Basis, Filter, Table};

/// Finest table tolerance used in float32 (its own rounding is ~6e-8 relative).
pub const F32_TOLERANCE: f64 = 1e-7;

/// Default relative tolerance of the radial tables (value error over max |filter|).
pub const DEFAULT_TOLERANCE: f64 = 1e-8;

/// Edges grouped by centre: the edges of centre i are `start[i]..start[i + 1]`; edges at or
/// beyond the cutoff are dropped (they contribute exactly zero).
#[derive(Debug, Default)]
pub struct Csr {
    /// Offsets, n_centres + 1.
    pub start: Vec<usize>,
    /// Neighbour (message source) of each edge.
    pub nbr: Vec<u32>,
    /// Distance of each edge.
    pub r: Vec<f64>,
    /// Edge vector x_nbr - x_centre (+ shift).
    pub vec: Vec<[f64; 3]>,
    /// Index of each edge in the caller's edge list.
    pub orig: Vec<usize>,
}

impl Csr {
    /// Number of centres (rows).
    #[inline]
    pub fn n_centres(&self) -> usize {
        self.start.len().saturating_sub(1)
    }
    /// Edge positions of centre `i`.
    #[inline]
    pub fn edges_of(&self, i: usize) -> std::ops::Range<usize> {
        self.start[i]..self.start[i + 1]
    }

    /// Rebuilds from edge lists (dst = centre, src = neighbour, vecs E×3), keeping the caller's
    /// order within each centre; `n` centres (every dst is below it).
    pub fn build(&mut self, n: usize, src: &[i64], dst: &[i64], vecs: &[f64], cutoff: f64) {
        self.start.clear();
        self.start.resize(n + 1, 0);
        let rc2 = cutoff * cutoff;
        let keep = |e: usize| {
            let v = &vecs[3 * e..3 * e + 3];
            v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < rc2
        };
        for (e, &d) in dst.iter().enumerate() {
            if keep(e) {
                self.start[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            self.start[i + 1] += self.start[i];
        }
        let m = self.start[n];
        self.nbr.clear();
        self.nbr.resize(m, 0);
        self.r.clear();
        self.r.resize(m, 0.0);
        self.vec.clear();
        self.vec.resize(m, [0.0; 3]);
        self.orig.clear();
        self.orig.resize(m, 0);
        let mut fill: Vec<usize> = self.start[..n].to_vec();
        for e in 0..dst.len() {
            if !keep(e) {
                continue;
            }
            let i = dst[e] as usize;
            let p = fill[i];
            fill[i] += 1;
            let v = [vecs[3 * e], vecs[3 * e + 1], vecs[3 * e + 2]];
            self.nbr[p] = src[e] as u32;
            self.r[p] = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            self.vec[p] = v;
            self.orig[p] = e;
        }
    }
}

/// Buffers a layer keeps between its forward and backward pass, reused across calls.
#[derive(Debug, Default)]
pub struct Saved<T> {
    /// Node-sized buffers, named by each layer's own constants.
    pub bufs: Vec<Vec<T>>,
    /// Pre-activations of MLPs, one list per MLP.
    pub zs: Vec<Vec<Vec<T>>>,
    /// Activations of MLPs' hidden layers, one list per MLP.
    pub acts: Vec<Vec<Vec<T>>>,
    /// Two scratch buffers for backward passes.
    pub scratch: [Vec<T>; 2],
    /// Per-edge filter values (one edge at a time).
    pub w: Vec<T>,
    /// Per-edge filter derivatives (one edge at a time).
    pub dw: Vec<T>,
}

impl<T: Real> Saved<T> {
    /// Makes room for `k` named buffers and MLP slots.
    pub fn ensure(&mut self, k: usize) {
        if self.bufs.len() < k {
            self.bufs.resize_with(k, Vec::new);
        }
        if self.zs.len() < k {
            self.zs.resize_with(k, Vec::new);
            self.acts.resize_with(k, Vec::new);
        }
    }
    /// The per-edge filter buffers, of at least `c` channels.
    pub fn edge_scratch(&mut self, c: usize) -> (&mut [T], &mut [T]) {
        resize(&mut self.w, c);
        resize(&mut self.dw, c);
        (&mut self.w[..c], &mut self.dw[..c])
    }
}

/// One message-passing layer on the fast path.
pub trait Layer<T: Real>: Send + Sync {
    /// Width of the per-atom state entering the layer.
    fn width_in(&self) -> usize;
    /// Width of the per-atom state leaving it.
    fn width_out(&self) -> usize;
    /// The layer's radial table.
    fn table(&self) -> Option<&Table<T>>;
    /// Forward for `n` nodes of which the first `nr` receive messages (the CSR's centres): `out`
    /// (n × width_out; rows from `nr` on are set to zero) from `input` (n × width_in). Node-side
    /// work runs on the `nr` receiving rows only (ghost atoms' outputs are not needed).
    fn forward(
        &self,
        csr: &Csr,
        n: usize,
        nr: usize,
        input: &[T],
        out: &mut [T],
        sv: &mut Saved<T>,
    );
    /// Backward: `g_in` (n × width_in, overwritten) from the first `nr` rows of `g_out` (may be
    /// used as scratch); ∂E/∂(edge vector) added into `edge_grad` (indexed by CSR position).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        csr: &Csr,
        n: usize,
        nr: usize,
        input: &[T],
        sv: &mut Saved<T>,
        g_out: &mut [T],
        g_in: &mut [T],
        edge_grad: &mut [[f64; 3]],
    );
    /// Multiply-adds per edge and per node (forward + backward), for the benchmark's count.
    fn flops(&self) -> (usize, usize);
}

struct EnergyHead<T> {
    mlp: MlpK<T>,
    e0: Vec<f64>,
}

/// A model on the fast path in one float type.
pub struct Net<T: Real> {
    input: Vec<T>,
    w0: usize,
    layers: Vec<Box<dyn Layer<T>>>,
    heads: Vec<Option<EnergyHead<T>>>,
    pool: Mutex<Vec<Workspace<T>>>,
}

/// Buffers of one evaluation, reused across calls.
#[derive(Default)]
pub struct Workspace<T> {
    csr: Csr,
    feats: Vec<Vec<T>>,
    grads: Vec<Vec<T>>,
    saved: Vec<Saved<T>>,
    head: Saved<T>,
    edge_grad: Vec<[f64; 3]>,
    e_node: Vec<T>,
    /// Layer-by-layer evaluation: the f64 rows the caller exchanges (features and gradients
    /// entering each layer), kept here so that they are reused across MD steps.
    host_feats: Vec<Vec<f64>>,
    host_grads: Vec<Vec<f64>>,
}

/// What the fast path is and how far its tables are from the exact filters.
#[derive(Debug, Clone, PartialEq)]
pub struct FastInfo {
    /// Largest table value error relative to the filter's largest value, over all layers.
    pub rel_error: f64,
    /// Largest absolute table value error, over all layers.
    pub abs_error: f64,
    /// Largest absolute table derivative error (per Å), over all layers.
    pub abs_error_deriv: f64,
    /// Grid spacing of the finest table (Å).
    pub spacing: f64,
    /// Bytes held by all tables.
    pub table_bytes: usize,
    /// Multiply-adds per edge (all layers, forward + backward).
    pub flops_per_edge: usize,
    /// Multiply-adds per atom for node-side work (all layers + energy head, forward + backward).
    pub flops_per_node: usize,
}

impl FastInfo {
    /// One line for logs.
    pub fn describe(&self) -> String {
        format!(
            "fast path: compressed radial filters (cubic Hermite, spacing {:.2e} A, {} KiB), table error {:.1e} relative ({:.1e} abs, derivative {:.1e}/A)",
            self.spacing,
            self.table_bytes / 1024,
            self.rel_error,
            self.abs_error,
            self.abs_error_deriv
        )
    }
}

/// The fast path of a model, in the model's float type.
pub enum FastModel {
    /// float32.
    F32(Net<f32>),
    /// float64.
    F64(Net<f64>),
}

/// Read access to a model's weights by their variable-store names, for the layer builders.
pub(crate) struct Weights {
    vars: std::collections::HashMap<String, Tensor>,
}

impl Weights {
    fn get(&self, name: &str) -> Result<(Vec<f64>, Vec<i64>)> {
        let t = self.vars.get(name).ok_or_else(|| {
            Error::Internal(format!("fast path: weight '{name}' not found in the model"))
        })?;
        Ok((crate::compute::tensor_to_vec(t)?, t.size()))
    }
    pub(crate) fn dense<T: Real>(&self, prefix: &str, bias: bool) -> Result<Dense<T>> {
        let (w, shape) = self.get(&format!("{prefix}.weight"))?;
        let b = if bias {
            Some(self.get(&format!("{prefix}.bias"))?.0)
        } else {
            None
        };
        Ok(Dense::new(
            &w,
            b.as_deref(),
            shape[1] as usize,
            shape[0] as usize,
        ))
    }
    fn dense_f64(&self, prefix: &str) -> Result<(Vec<f64>, Vec<f64>, usize, usize)> {
        let (w, shape) = self.get(&format!("{prefix}.weight"))?;
        let b = self.get(&format!("{prefix}.bias"))?.0;
        Ok((w, b, shape[0] as usize, shape[1] as usize))
    }
    pub(crate) fn mlp<T: Real>(
        &self,
        prefix: &str,
        n_layers: usize,
        act: Activation,
    ) -> Result<MlpK<T>> {
        let layers = (0..n_layers)
            .map(|k| self.dense(&format!("{prefix}.{k}"), true))
            .collect::<Result<Vec<_>>>()?;
        Ok(MlpK { layers, act })
    }
}

impl<T: Real> Net<T> {
    fn build(model: &Model, tol: f64) -> Result<Self> {
        let c = model.config();
        let wts = Weights {
            vars: model.var_store().variables(),
        };
        let basis = Basis {
            kind: c.radial_type,
            envelope: c.envelope,
            cutoff: c.radius,
            n: c.num_radial as usize,
        };
        let conv_act = c.conv_activation.unwrap_or(c.activation_function);
        let ns = c.species.len();
        let species = Tensor::arange(ns as i64, (Kind::Int64, model.device()));
        let x0 = tch::no_grad(|| model.input_features(&species));
        let w0 = x0.size()[1] as usize;
        let input: Vec<T> = crate::compute::tensor_to_vec(&x0)?
            .into_iter()
            .map(T::from_f)
            .collect();
        let mut layers: Vec<Box<dyn Layer<T>>> = Vec::new();
        let mut fin = w0;
        for l in 0..c.num_conv_layers {
            let p = format!("layers.{l}");
            match c.mpnn_type {
                MpnnType::SchNet => {
                    let mut w2 = wts.dense_f64(&format!("{p}.filter2"))?;
                    scale_filter(&mut w2, c.avg_num_neighbors);
                    let filter = Filter { basis, layers: vec![wts.dense_f64(&format!("{p}.filter1"))?, w2], act: conv_act };
                    let lin1: Dense<T> = wts.dense(&format!("{p}.lin1"), false)?;
                    let residual = lin1.fin == c.hidden_dim as usize;
                    layers.push(Box::new(schnet::SchNetLayer {
                        table: Table::build(filter, tol),
                        lin1,
                        lin2: wts.dense(&format!("{p}.lin2"), true)?,
                        lin3: wts.dense(&format!("{p}.lin3"), true)?,
                        residual,
                        act: conv_act,
                        post_act: c.post_conv_activation,
                    }));
                }
                MpnnType::PaiNN => {
                    let mut w = wts.dense_f64(&format!("{p}.message.filter"))?;
                    scale_filter(&mut w, c.avg_num_neighbors);
                    let filter = Filter { basis, layers: vec![w], act: conv_act };
                    let f = if l == 0 { fin } else { fin / 4 };
                    layers.push(Box::new(painn::PaiNNLayer::build(&wts, &p, c, l, f, Table::build(filter, tol))?));
                }
                MpnnType::Pna => {
                    return Err(Error::InvalidInput(
                        "the fast path does not support PNA: its min/max/std aggregators are not a radial filter times a node feature".into(),
                    ))
                }
                MpnnType::PnaEq | MpnnType::DimeNet => {
                    let name = if c.mpnn_type == MpnnType::PnaEq { "PNAEq" } else { "DimeNet" };
                    return Err(Error::InvalidInput(format!(
                        "the fast path does not support {name}: its messages are not a radial filter times a node feature"
                    )))
                }
                MpnnType::Mace => {
                    return Err(Error::InvalidInput(
                        "the fast path does not support MACE: its tensor-product weights read the node features of both ends, so its messages are not a radial filter times a node feature".into(),
                    ))
                }
                MpnnType::Cgcnn | MpnnType::Gat | MpnnType::Gin | MpnnType::Sage | MpnnType::Mfc => {
                    return Err(Error::InvalidInput(format!(
                        "the fast path does not support {:?}: its messages are not a radial filter times a node feature",
                        c.mpnn_type
                    )))
                }
                MpnnType::Egnn => {
                    return Err(Error::InvalidInput(
                        "the fast path does not support EGNN: its edge MLP reads the node features of both ends, so its messages are not a radial filter times a node feature".into(),
                    ))
                }
            }
            fin = layers.last().unwrap().width_out();
        }
        let heads = c
            .branches
            .iter()
            .map(|b| -> Result<Option<EnergyHead<T>>> {
                let Some(h) = b.output_heads.iter().find(|h| h.name == "energy") else {
                    return Ok(None);
                };
                let mlp = wts.mlp(
                    &format!("branches.{}.energy", b.name),
                    h.dim_headlayers.len() + 1,
                    c.activation_function,
                )?;
                let e0 = if b.reference_energies.is_empty() {
                    vec![0.0; ns]
                } else {
                    b.reference_energies.clone()
                };
                Ok(Some(EnergyHead { mlp, e0 }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Net {
            input,
            w0,
            layers,
            heads,
            pool: Mutex::new(Vec::new()),
        })
    }

    fn info(&self) -> FastInfo {
        let mut i = FastInfo {
            rel_error: 0.0,
            abs_error: 0.0,
            abs_error_deriv: 0.0,
            spacing: 0.0,
            table_bytes: 0,
            flops_per_edge: 0,
            flops_per_node: 0,
        };
        for l in &self.layers {
            if let Some(t) = l.table() {
                i.rel_error = i.rel_error.max(t.rel_error);
                i.abs_error = i.abs_error.max(t.abs_error);
                i.abs_error_deriv = i.abs_error_deriv.max(t.abs_error_deriv);
                i.spacing = if i.spacing == 0.0 {
                    t.h
                } else {
                    i.spacing.min(t.h)
                };
                i.table_bytes += t.bytes();
            }
            let (e, n) = l.flops();
            i.flops_per_edge += e;
            i.flops_per_node += n;
        }
        if let Some(Some(h)) = self.heads.first() {
            i.flops_per_node += 2 * h.mlp.flops();
        }
        i
    }

    fn take_ws(&self) -> Workspace<T> {
        self.pool
            .lock()
            .map(|mut p| p.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }
    fn give_ws(&self, ws: Workspace<T>) {
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < 4 {
                p.push(ws);
            }
        }
    }

    fn head(&self, branch: usize) -> Result<&EnergyHead<T>> {
        self.heads
            .get(branch)
            .and_then(|h| h.as_ref())
            .ok_or_else(|| Error::InvalidInput(format!("branch {branch} has no 'energy' head")))
    }

    /// Features entering layer 0 for every node.
    fn init(&self, ws: &mut Workspace<T>, species: &[i64]) {
        let n = species.len();
        let l = self.layers.len();
        ws.feats.resize_with(l + 1, Vec::new);
        ws.grads.resize_with(l + 1, Vec::new);
        ws.saved.resize_with(l, Saved::default);
        // the input features, then zeros (PaiNN's vectors entering layer 0)
        let wi = self.layers[0].width_in();
        zeroed(&mut ws.feats[0], n * wi);
        for (i, &s) in species.iter().enumerate() {
            let s = s as usize;
            ws.feats[0][i * wi..i * wi + self.w0]
                .copy_from_slice(&self.input[s * self.w0..(s + 1) * self.w0]);
        }
        for k in 1..=l {
            resize(&mut ws.feats[k], n * self.layers[k - 1].width_out());
        }
    }

    fn forward_layer(&self, ws: &mut Workspace<T>, l: usize, n: usize) {
        let nr = ws.csr.n_centres();
        let (a, b) = ws.feats.split_at_mut(l + 1);
        self.layers[l].forward(&ws.csr, n, nr, &a[l], &mut b[0], &mut ws.saved[l]);
    }

    /// Node energies (all n nodes) into ws.e_node; seeds ws.grads[L] with ∂E/∂s for the nodes
    /// with `weight` 1 (the local atoms).
    fn readout(
        &self,
        ws: &mut Workspace<T>,
        branch: usize,
        species: &[i64],
        weight: &dyn Fn(usize) -> bool,
        need_grad: bool,
    ) -> Result<()> {
        let n = species.len();
        // the head runs on the receiving rows (every node, or the local atoms layer by layer)
        let nr = ws.csr.n_centres();
        let l = self.layers.len();
        let h = self.head(branch)?;
        let fl = self.layers[l - 1].width_out();
        let hs = &mut ws.head;
        hs.ensure(1);
        resize(&mut ws.e_node, n);
        h.mlp.forward(
            nr,
            &ws.feats[l],
            fl,
            &mut ws.e_node,
            &mut hs.zs[0],
            &mut hs.acts[0],
        );
        if need_grad {
            let mut gy = std::mem::take(&mut hs.bufs[0]);
            resize(&mut gy, nr);
            for (i, g) in gy[..nr].iter_mut().enumerate() {
                *g = if weight(i) { T::one() } else { T::zero() };
            }
            zeroed(&mut ws.grads[l], n * fl);
            h.mlp.backward(
                nr,
                &gy,
                &mut ws.grads[l],
                fl,
                false,
                &hs.zs[0],
                &mut hs.scratch,
            );
            hs.bufs[0] = gy;
        }
        Ok(())
    }

    fn backward_layer(&self, ws: &mut Workspace<T>, l: usize, n: usize) {
        let nr = ws.csr.n_centres();
        let (a, b) = ws.grads.split_at_mut(l + 1);
        resize(&mut a[l], n * self.layers[l].width_in());
        self.layers[l].backward(
            &ws.csr,
            n,
            nr,
            &ws.feats[l],
            &mut ws.saved[l],
            &mut b[0],
            &mut a[l],
            &mut ws.edge_grad,
        );
    }

    /// Groups the edges by centre: the first `n` nodes (every node in a whole-graph evaluation,
    /// the local atoms layer by layer; every edge's centre is below `n`).
    fn start_edges(
        &self,
        ws: &mut Workspace<T>,
        n: usize,
        src: &[i64],
        dst: &[i64],
        vecs: &[f64],
        cutoff: f64,
    ) {
        ws.csr.build(n, src, dst, vecs, cutoff);
        ws.edge_grad.clear();
        ws.edge_grad.resize(ws.csr.nbr.len(), [0.0; 3]);
    }

    fn scatter_edge_grads(ws: &Workspace<T>, grad: &mut [f64]) {
        grad.iter_mut().for_each(|x| *x = 0.0);
        for (p, &e) in ws.csr.orig.iter().enumerate() {
            grad[3 * e..3 * e + 3].copy_from_slice(&ws.edge_grad[p]);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn whole(
        &self,
        branch: usize,
        species: &[i64],
        src: &[i64],
        dst: &[i64],
        vecs: &[f64],
        local: &[bool],
        cutoff: f64,
        need_grad: bool,
        final_feats: Option<&mut Vec<f64>>,
    ) -> Result<WholeOut> {
        let mut ws = self.take_ws();
        let n = species.len();
        self.init(&mut ws, species);
        self.start_edges(&mut ws, n, src, dst, vecs, cutoff);
        let nl = self.layers.len();
        for l in 0..nl {
            self.forward_layer(&mut ws, l, n);
        }
        self.readout(&mut ws, branch, species, &|i| local[i], need_grad)?;
        let e0 = &self.head(branch)?.e0;
        let node_energy: Vec<f64> = (0..n)
            .map(|i| ws.e_node[i].to_f() + e0[species[i] as usize])
            .collect();
        if let Some(ff) = final_feats {
            let w = self.layers[nl - 1].width_out();
            ff.clear();
            ff.extend(ws.feats[nl][..n * w].iter().map(|x| x.to_f()));
        }
        let mut grad = vec![0.0; vecs.len()];
        if need_grad {
            for l in (0..nl).rev() {
                self.backward_layer(&mut ws, l, n);
            }
            Self::scatter_edge_grads(&ws, &mut grad);
        }
        self.give_ws(ws);
        Ok(WholeOut {
            node_energy,
            edge_grad: grad,
        })
    }
}

/// Output of a whole-graph evaluation.
pub struct WholeOut {
    /// Per-node energies (reference energies included), every node.
    pub node_energy: Vec<f64>,
    /// ∂E/∂(edge vector), E×3 in the caller's edge order (E = Σ of local node energies).
    pub edge_grad: Vec<f64>,
}

/// Models the fast kernels do not evaluate (the exact path stays in use): graph-level energy
/// heads (the energy is an MLP of pooled features, not a sum of per-atom energies) and PaiNN's
/// distance-dependent `edge_filter` (its filter is not the tabulated radial filter alone).
fn unsupported(model: &Model) -> Result<()> {
    let c = model.config();
    for b in &c.branches {
        if b.output_heads
            .iter()
            .any(|h| h.name == "energy" && h.pool_first)
        {
            return Err(Error::InvalidInput(format!(
                "the fast path does not support graph-level energy heads (branch '{}': the energy is an MLP of pooled node features)",
                b.name
            )));
        }
    }
    if c.mpnn_type == MpnnType::SchNet && c.schnet != Default::default() {
        return Err(Error::InvalidInput(
            "the fast path does not support HydraGNN's SchNet variant (schnet options: CFConv-only layers, PyG's Gaussian grid)".into(),
        ));
    }
    if c.graph_attr.is_some() {
        return Err(Error::InvalidInput(
            "the fast path does not support conditioning on per-structure attributes (graph_attr)"
                .into(),
        ));
    }
    if c.mpnn_type == MpnnType::PaiNN && (c.painn.edge_filter || c.painn.update_bias) {
        return Err(Error::InvalidInput(
            "the fast path does not support PaiNN's edge_filter (HydraGNN edge_dim = 1) or update biases".into(),
        ));
    }
    Ok(())
}

impl FastModel {
    /// Builds the fast path of `model` (its current weights), tabulating every radial filter to
    /// relative tolerance `tol`.
    pub fn build(model: &Model, tol: f64) -> Result<Self> {
        if !(tol > 0.0 && tol < 1.0) {
            return Err(Error::InvalidInput(format!(
                "table tolerance must be in (0, 1), got {tol}"
            )));
        }
        unsupported(model)?;
        crate::compute::guarded(|| match model.kind() {
            // float32 rounds the tables' values at ~6e-8 relative: a finer grid than 1e-7 buys nothing
            Kind::Float => Ok(FastModel::F32(Net::build(model, tol.max(F32_TOLERANCE))?)),
            _ => Ok(FastModel::F64(Net::build(model, tol)?)),
        })
    }

    /// Table errors and work counts.
    pub fn info(&self) -> FastInfo {
        match self {
            FastModel::F32(n) => n.info(),
            FastModel::F64(n) => n.info(),
        }
    }

    /// Energies of every node and the edge gradients of Σ_{local} E_i, for a batch of graphs
    /// already concatenated (src, dst node indices, vecs E×3).
    #[allow(clippy::too_many_arguments)]
    pub fn whole(
        &self,
        branch: usize,
        species: &[i64],
        src: &[i64],
        dst: &[i64],
        vecs: &[f64],
        local: &[bool],
        cutoff: f64,
        need_grad: bool,
        final_feats: Option<&mut Vec<f64>>,
    ) -> Result<WholeOut> {
        match self {
            FastModel::F32(n) => n.whole(
                branch,
                species,
                src,
                dst,
                vecs,
                local,
                cutoff,
                need_grad,
                final_feats,
            ),
            FastModel::F64(n) => n.whole(
                branch,
                species,
                src,
                dst,
                vecs,
                local,
                cutoff,
                need_grad,
                final_feats,
            ),
        }
    }
}

/// A layer-by-layer evaluation on the fast path (see [`crate::layered`]); features and gradients
/// cross the boundary as f64 rows.
pub enum Layered<'m> {
    /// float32.
    F32(LayeredT<'m, f32>),
    /// float64.
    F64(LayeredT<'m, f64>),
}

/// [`Layered`] in one float type.
pub struct LayeredT<'m, T: Real> {
    net: &'m Net<T>,
    ws: Option<Workspace<T>>,
    species: Vec<i64>,
    n_local: usize,
}

impl<T: Real> Drop for LayeredT<'_, T> {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.take() {
            self.net.give_ws(ws);
        }
    }
}

impl<T: Real> LayeredT<'_, T> {
    fn ws(&mut self) -> &mut Workspace<T> {
        self.ws.as_mut().expect("workspace present until drop")
    }
    fn n(&self) -> usize {
        self.species.len()
    }
    fn ws_ref(&self) -> &Workspace<T> {
        self.ws.as_ref().expect("workspace present until drop")
    }
    /// Sizes the host buffers and fills the features entering layer 0.
    fn init_host(&mut self) {
        let n = self.n();
        let net = self.net;
        let nl = net.layers.len();
        let ws = self.ws();
        ws.host_feats.resize_with(nl + 1, Vec::new);
        ws.host_grads.resize_with(nl + 1, Vec::new);
        for k in 0..=nl {
            let w = if k == 0 {
                net.layers[0].width_in()
            } else {
                net.layers[k - 1].width_out()
            };
            ws.host_feats[k].resize(n * w, 0.0);
            ws.host_grads[k].resize(n * w, 0.0);
        }
        let w0 = net.layers[0].width_in();
        let Workspace {
            feats, host_feats, ..
        } = ws;
        for (o, x) in host_feats[0].iter_mut().zip(&feats[0][..n * w0]) {
            *o = x.to_f();
        }
    }
    fn forward_layer(&mut self, l: usize) {
        let n = self.n();
        let n_local = self.n_local;
        let net = self.net;
        let ws = self.ws();
        let w = net.layers[l].width_in();
        resize(&mut ws.feats[l], n * w);
        for (d, &s) in ws.feats[l][..n * w].iter_mut().zip(&ws.host_feats[l]) {
            *d = T::from_f(s);
        }
        net.forward_layer(ws, l, n);
        let wo = net.layers[l].width_out();
        let Workspace {
            feats, host_feats, ..
        } = ws;
        let out = &mut host_feats[l + 1];
        for (d, s) in out[..n_local * wo]
            .iter_mut()
            .zip(&feats[l + 1][..n_local * wo])
        {
            *d = s.to_f();
        }
        // ghost rows: filled by the caller's exchange before the next layer
        out[n_local * wo..].iter_mut().for_each(|x| *x = 0.0);
    }
    fn readout(&mut self, branch: usize, energies: &mut Vec<f64>) -> Result<()> {
        let n = self.n();
        let nl = self.net.layers.len();
        let net = self.net;
        let n_local = self.n_local;
        let species = std::mem::take(&mut self.species);
        let ws = self.ws.as_mut().expect("workspace");
        let w = net.layers[nl - 1].width_out();
        for (d, &s) in ws.feats[nl][..n * w].iter_mut().zip(&ws.host_feats[nl]) {
            *d = T::from_f(s);
        }
        let r = net.readout(ws, branch, &species, &|i| i < n_local, true);
        if r.is_ok() {
            let Workspace {
                grads, host_grads, ..
            } = &mut *ws;
            for (d, s) in host_grads[nl].iter_mut().zip(&grads[nl][..n * w]) {
                *d = s.to_f();
            }
            let e0 = &net.head(branch)?.e0;
            energies.clear();
            energies.extend((0..n_local).map(|i| ws.e_node[i].to_f() + e0[species[i] as usize]));
        }
        self.species = species;
        r
    }
    fn backward_layer(&mut self, l: usize) {
        let n = self.n();
        let n_local = self.n_local;
        let net = self.net;
        let ws = self.ws();
        let wo = net.layers[l].width_out();
        resize(&mut ws.grads[l + 1], n * wo);
        {
            let Workspace {
                grads, host_grads, ..
            } = &mut *ws;
            // ghost rows of the incoming gradient were added into their owners by the caller
            for (i, (d, &s)) in grads[l + 1][..n * wo]
                .iter_mut()
                .zip(&host_grads[l + 1])
                .enumerate()
            {
                *d = if i < n_local * wo {
                    T::from_f(s)
                } else {
                    T::zero()
                };
            }
        }
        net.backward_layer(ws, l, n);
        let wi = net.layers[l].width_in();
        let Workspace {
            grads, host_grads, ..
        } = ws;
        for (d, s) in host_grads[l].iter_mut().zip(&grads[l][..n * wi]) {
            *d = s.to_f();
        }
    }
    fn edge_grads(&mut self, grad: &mut [f64]) {
        Net::<T>::scatter_edge_grads(self.ws(), grad);
    }
}

macro_rules! both {
    ($self:expr, $x:ident => $e:expr) => {
        match $self {
            Layered::F32($x) => $e,
            Layered::F64($x) => $e,
        }
    };
}

impl<'m> Layered<'m> {
    /// Starts a layer-by-layer evaluation of `n = species.len()` nodes, the first `n_local` local.
    pub fn new(
        fast: &'m FastModel,
        species: &[i64],
        n_local: usize,
        src: &[i64],
        dst: &[i64],
        vecs: &[f64],
        cutoff: f64,
    ) -> Self {
        fn make<'m, T: Real>(
            net: &'m Net<T>,
            species: &[i64],
            n_local: usize,
            src: &[i64],
            dst: &[i64],
            vecs: &[f64],
            cutoff: f64,
        ) -> LayeredT<'m, T> {
            let mut ws = net.take_ws();
            net.init(&mut ws, species);
            net.start_edges(&mut ws, n_local, src, dst, vecs, cutoff);
            let mut l = LayeredT {
                net,
                ws: Some(ws),
                species: species.to_vec(),
                n_local,
            };
            l.init_host();
            l
        }
        match fast {
            FastModel::F32(n) => Layered::F32(make(n, species, n_local, src, dst, vecs, cutoff)),
            FastModel::F64(n) => Layered::F64(make(n, species, n_local, src, dst, vecs, cutoff)),
        }
    }
    /// Features entering layer `l` (n × width(l), f64 rows), for the caller's exchange.
    pub fn features(&self, l: usize) -> &[f64] {
        both!(self, x => &x.ws_ref().host_feats[l])
    }
    /// Mutable features entering layer `l`: the caller writes ghost rows here.
    pub fn features_mut(&mut self, l: usize) -> &mut [f64] {
        both!(self, x => &mut x.ws().host_feats[l])
    }
    /// Gradient of the energy with respect to the features entering layer `l`.
    pub fn grads(&self, l: usize) -> &[f64] {
        both!(self, x => &x.ws_ref().host_grads[l])
    }
    /// Mutable gradient: the caller adds ghost rows into their owners here.
    pub fn grads_mut(&mut self, l: usize) -> &mut [f64] {
        both!(self, x => &mut x.ws().host_grads[l])
    }
    /// Runs layer `l` on `features(l)` into `features(l + 1)` (local rows; ghost rows zeroed).
    pub fn forward_layer(&mut self, l: usize) {
        both!(self, x => x.forward_layer(l))
    }
    /// Energy head on the final features: ∂E_local/∂features into `grads(L)`, local energies.
    pub fn readout(&mut self, branch: usize, energies: &mut Vec<f64>) -> Result<()> {
        both!(self, x => x.readout(branch, energies))
    }
    /// Backward through layer `l`: `grads(l)` from the local rows of `grads(l + 1)`; edge
    /// gradients accumulated.
    pub fn backward_layer(&mut self, l: usize) {
        both!(self, x => x.backward_layer(l))
    }
    /// The accumulated ∂E/∂(edge vector), E×3 in the caller's order.
    pub fn edge_grads(&mut self, grad: &mut [f64]) {
        both!(self, x => x.edge_grads(grad))
    }
}

/// `avg_num_neighbors` = k: the messages of SchNet and PaiNN are linear in the last layer of
/// their radial filter, so dividing their sums by k is dividing that layer (weight and bias) by k.
fn scale_filter(layer: &mut (Vec<f64>, Vec<f64>, usize, usize), k: Option<f64>) {
    if let Some(k) = k {
        layer
            .0
            .iter_mut()
            .chain(layer.1.iter_mut())
            .for_each(|x| *x /= k);
    }
}
