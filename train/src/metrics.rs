//! What a branch predicts and is scored on: predictions (energy, autograd forces and stress,
//! other heads), the weighted loss (HydraGNN's, `energy_weight·L(E) +
//! energy_peratom_weight·L(E/N) + force_weight·L(F) + stress_weight·L(σ) +
//! Σ_k task_weight_k·L(y_k)` with L = MSE or MAE), and the
//! metrics reported per branch (energy MAE/RMSE per atom, force MAE/RMSE per component, stress
//! MAE/RMSE per component, MAE/RMSE of every other output). Sums are kept as flat `f64` vectors so
//! they can be added over MPI ranks.
//!
//! Labels may be missing from some graphs (a dataset's presence masks): every term and every
//! metric averages over the entries present only, and counts them; a term with no entry present
//! in a batch contributes exactly zero.

use std::collections::BTreeMap;

use mlip::compute::edge_forces;
use mlip::model::config::HeadKind;
use mlip::Model;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::config::LossType;
use crate::error::Result;
use crate::graphs::Collated;

/// A trained (or evaluated) output other than energy and forces.
#[derive(Debug, Clone, PartialEq)]
pub struct PropSpec {
    /// Head and dataset property name.
    pub name: String,
    /// Graph or node level.
    pub kind: HeadKind,
    /// Components per graph or per atom.
    pub width: usize,
    /// Loss weight.
    pub weight: f64,
}

/// What one branch is trained or evaluated on.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchSpec {
    /// Branch name.
    pub name: String,
    /// Branch index in the model.
    pub branch: usize,
    /// Energy targets used.
    pub energy: bool,
    /// Forces (autograd) used.
    pub forces: bool,
    /// Other outputs.
    pub props: Vec<PropSpec>,
    /// Weight of L(E).
    pub w_energy: f64,
    /// Weight of L(E/N).
    pub w_energy_peratom: f64,
    /// Weight of L(F).
    pub w_forces: f64,
    /// Stress (autograd virial over the cell volume) predicted and scored (needs `forces`).
    pub stress: bool,
    /// Weight of L(σ) (per component, eV/Angstrom^3).
    pub w_stress: f64,
    /// The loss of single terms (`energy`, `energy_peratom`, `forces`, `stress`, an output's
    /// name) where it differs from the run's `loss_function_type`.
    pub loss_types: BTreeMap<String, LossType>,
    /// β of the `smooth_l1` loss (`Training.smooth_l1_beta`).
    pub smooth_l1_beta: f64,
}

impl BranchSpec {
    /// This spec with each weight named in `start` (keys `energy`, `energy_peratom`, `forces`,
    /// `stress`, an output's name) moved towards its start value:
    /// `w + (start - w) · lr_ratio` (DeePMD-kit's prefactor schedule; `lr_ratio` is the current
    /// over the initial learning rate, 1 at the first step).
    pub fn with_start_weights(&self, start: &BTreeMap<String, f64>, lr_ratio: f64) -> BranchSpec {
        let at = |w: f64, key: &str| match start.get(key) {
            Some(s) => w + (s - w) * lr_ratio,
            None => w,
        };
        let mut s = self.clone();
        s.w_energy = at(s.w_energy, "energy");
        s.w_energy_peratom = at(s.w_energy_peratom, "energy_peratom");
        if s.forces {
            s.w_forces = at(s.w_forces, "forces");
        }
        if s.stress {
            s.w_stress = at(s.w_stress, "stress");
        }
        for p in &mut s.props {
            p.weight = at(p.weight, &p.name);
        }
        s
    }

    /// The loss of `term`: its entry in [`BranchSpec::loss_types`], else `default`.
    pub fn loss_of(&self, term: &str, default: LossType) -> LossType {
        self.loss_types.get(term).copied().unwrap_or(default)
    }
    /// Graph-level properties with widths (for [`crate::graphs::collate`]).
    pub fn graph_props(&self) -> Vec<(String, usize)> {
        self.props
            .iter()
            .filter(|p| p.kind == HeadKind::Graph)
            .map(|p| (p.name.clone(), p.width))
            .collect()
    }
    /// Node-level properties with widths.
    pub fn node_props(&self) -> Vec<(String, usize)> {
        self.props
            .iter()
            .filter(|p| p.kind == HeadKind::Node)
            .map(|p| (p.name.clone(), p.width))
            .collect()
    }
    /// Length of the flat sums vector of this branch.
    pub fn sums_len(&self) -> usize {
        SUM_FIXED + PROP_STRIDE * self.props.len()
    }
}

/// Present entries of each loss term over a (global) batch: the denominators of the terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossCounts {
    /// Graphs with an energy.
    pub energy: f64,
    /// Atoms with forces.
    pub forces: f64,
    /// Periodic graphs with a stress.
    pub stress: f64,
    /// Rows (graphs or atoms) with each other output, aligned with [`BranchSpec::props`].
    pub props: Vec<f64>,
}

impl LossCounts {
    /// Every entry present: `graphs` graphs of `atoms` atoms in all (stress counted on every graph).
    pub fn all(spec: &BranchSpec, graphs: f64, atoms: f64) -> Self {
        LossCounts {
            energy: graphs,
            forces: atoms,
            stress: graphs,
            props: spec
                .props
                .iter()
                .map(|p| match p.kind {
                    HeadKind::Graph => graphs,
                    HeadKind::Node => atoms,
                })
                .collect(),
        }
    }

    /// The entries present in a collated batch.
    pub fn of(spec: &BranchSpec, c: &Collated) -> Self {
        let rows = |t: &Option<crate::graphs::Target>| t.as_ref().map_or(0.0, |t| t.rows as f64);
        LossCounts {
            energy: rows(&c.energy),
            forces: rows(&c.forces),
            stress: rows(&c.stress),
            props: spec
                .props
                .iter()
                .map(|p| c.props.get(&p.name).map_or(0.0, |t| t.rows as f64))
                .collect(),
        }
    }

    /// As a flat vector (to add over ranks).
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = vec![self.energy, self.forces, self.stress];
        v.extend_from_slice(&self.props);
        v
    }

    /// From [`LossCounts::to_vec`]'s layout.
    pub fn from_slice(v: &[f64]) -> Self {
        LossCounts {
            energy: v[0],
            forces: v[1],
            stress: v[2],
            props: v[3..].to_vec(),
        }
    }
}

/// Model outputs of one batch.
#[derive(Debug)]
pub struct Prediction {
    /// Energies (n_graphs,).
    pub energy: Tensor,
    /// Forces (n_atoms, 3), when requested.
    pub forces: Option<Tensor>,
    /// Stress (n_graphs, 3, 3), eV/Angstrom^3, when requested: `-W/V` with the virial
    /// `W = -Σ_e r_e ⊗ g_e` from the same edge gradients as the forces (the engine's convention).
    pub stress: Option<Tensor>,
    /// Other heads by name: (n_graphs, dim) or (n_atoms, dim).
    pub props: BTreeMap<String, Tensor>,
}

/// Runs the model on a batch. Forces are -dE/dx through autograd over the edge vectors, the
/// stress `Σ_e r_e ⊗ g_e / V` per graph from the same gradients g_e = dE/dr_e (`create_graph`
/// keeps both differentiable for the loss); the batch must have been collated with `edge_grad`
/// when forces or stress are wanted.
pub fn predict(
    model: &Model,
    spec: &BranchSpec,
    c: &Collated,
    create_graph: bool,
) -> Result<Prediction> {
    let out = model.forward(&c.graph, Some(spec.branch))?;
    let (mut forces, mut stress) = (None, None);
    if spec.forces || spec.stress {
        let (f, st) = edge_forces(
            &out.energy,
            &c.graph,
            spec.stress.then_some(&c.volume),
            create_graph,
        )?;
        forces = Some(f);
        stress = st;
    }
    if !spec.forces {
        forces = None;
    }
    if !spec.stress {
        stress = None;
    }
    let mut props = BTreeMap::new();
    for p in &spec.props {
        let t = match p.kind {
            HeadKind::Graph => out.graph_properties.get(&p.name),
            HeadKind::Node => out.node_properties.get(&p.name),
        };
        if let Some(t) = t {
            props.insert(p.name.clone(), t.shallow_clone());
        }
    }
    Ok(Prediction {
        energy: out.energy,
        forces,
        stress,
        props,
    })
}

/// The elementwise loss of the errors `d` of `term` under the run's loss `default` (or the
/// term's own, [`BranchSpec::loss_of`]).
fn elem(spec: &BranchSpec, term: &str, default: LossType, d: &Tensor) -> Tensor {
    match spec.loss_of(term, default) {
        LossType::Mse => d.square(),
        LossType::Mae => d.abs(),
        LossType::SmoothL1 => {
            d.smooth_l1_loss(&d.zeros_like(), tch::Reduction::None, spec.smooth_l1_beta)
        }
    }
}

/// The weighted loss of a batch whose every entry is present, each term *summed* over this batch
/// and divided by the global counts `graphs` and `atoms` (of the whole global batch, over all
/// ranks): the sum over ranks is then the loss of the global batch, and so are the gradients.
/// With presence masks use [`batch_loss_counted`].
pub fn batch_loss(
    spec: &BranchSpec,
    p: &Prediction,
    c: &Collated,
    loss: LossType,
    graphs: f64,
    atoms: f64,
) -> Tensor {
    batch_loss_counted(spec, p, c, loss, &LossCounts::all(spec, graphs, atoms))
}

/// The weighted loss of a batch, each term summed over the entries present in this batch and
/// divided by `n`, the entries present in the whole global batch (over all ranks). A term with no
/// entry present contributes exactly zero.
pub fn batch_loss_counted(
    spec: &BranchSpec,
    p: &Prediction,
    c: &Collated,
    loss: LossType,
    n: &LossCounts,
) -> Tensor {
    let kind = p.energy.kind();
    let mut total = Tensor::zeros([], (kind, p.energy.device()));
    if let (true, Some(e)) = (spec.energy, &c.energy) {
        let d = (&p.energy - &e.value) * &e.mask;
        let ng = n.energy.max(1.0);
        if spec.w_energy > 0.0 {
            total += elem(spec, "energy", loss, &d).sum(kind) * (spec.w_energy / ng);
        }
        if spec.w_energy_peratom > 0.0 {
            total += elem(spec, "energy_peratom", loss, &(&d / &c.n_atoms)).sum(kind)
                * (spec.w_energy_peratom / ng);
        }
    }
    if let (true, Some(f), Some(t)) = (spec.forces, &p.forces, &c.forces) {
        if spec.w_forces > 0.0 {
            let d = (f - &t.value) * &t.mask;
            total += elem(spec, "forces", loss, &d).sum(kind)
                * (spec.w_forces / (3.0 * n.forces.max(1.0)));
        }
    }
    if let (true, Some(s), Some(t)) = (spec.stress, &p.stress, &c.stress) {
        if spec.w_stress > 0.0 {
            let d = (s - &t.value) * &t.mask;
            total += elem(spec, "stress", loss, &d).sum(kind)
                * (spec.w_stress / (9.0 * n.stress.max(1.0)));
        }
    }
    for (k, ps) in spec.props.iter().enumerate() {
        if ps.weight == 0.0 {
            continue;
        }
        let (y, t) = (&p.props[&ps.name], &c.props[&ps.name]);
        let rows = n.props.get(k).copied().unwrap_or(0.0).max(1.0);
        let d = (y - &t.value) * &t.mask;
        total += elem(spec, &ps.name, loss, &d).sum(kind) * (ps.weight / (rows * ps.width as f64));
    }
    total
}

// Layout of the flat sums of one branch.
const S_GRAPHS: usize = 0;
const S_ATOMS: usize = 1;
const S_E_ABS: usize = 2; // Σ |ΔE|/N
const S_E_SQ: usize = 3; // Σ (ΔE/N)²
const S_E_LOSS: usize = 4; // Σ l(ΔE)
const S_EPA_LOSS: usize = 5; // Σ l(ΔE/N)
const S_F_ABS: usize = 6; // Σ |ΔF| over components
const S_F_SQ: usize = 7;
const S_F_LOSS: usize = 8; // Σ l(ΔF)
const S_E_N: usize = 9; // graphs with an energy
const S_F_N: usize = 10; // atoms with forces
const S_S_ABS: usize = 11; // Σ |Δσ| over components
const S_S_SQ: usize = 12;
const S_S_LOSS: usize = 13;
const S_S_N: usize = 14; // periodic graphs with a stress
const SUM_FIXED: usize = 15;
// Per other output: Σ|Δ|, ΣΔ², Σ l(Δ), rows present.
const PROP_STRIDE: usize = 4;

fn tsum(t: &Tensor) -> f64 {
    t.sum(Kind::Double).double_value(&[])
}

/// Adds a batch's errors to the flat sums `s` (length [`BranchSpec::sums_len`]), over the entries
/// present only.
pub fn accumulate(spec: &BranchSpec, p: &Prediction, c: &Collated, loss: LossType, s: &mut [f64]) {
    tch::no_grad(|| {
        s[S_GRAPHS] += c.n_graphs as f64;
        s[S_ATOMS] += c.n_atoms_total as f64;
        if let (true, Some(e)) = (spec.energy, &c.energy) {
            let d = ((&p.energy - &e.value) * &e.mask).to_kind(Kind::Double);
            let dpa = &d / c.n_atoms.to_kind(Kind::Double);
            s[S_E_ABS] += tsum(&dpa.abs());
            s[S_E_SQ] += tsum(&dpa.square());
            s[S_E_LOSS] += tsum(&elem(spec, "energy", loss, &d));
            s[S_EPA_LOSS] += tsum(&elem(spec, "energy_peratom", loss, &dpa));
            s[S_E_N] += e.rows as f64;
        }
        if let (true, Some(f), Some(t)) = (spec.forces, &p.forces, &c.forces) {
            let d = ((f - &t.value) * &t.mask).to_kind(Kind::Double);
            s[S_F_ABS] += tsum(&d.abs());
            s[S_F_SQ] += tsum(&d.square());
            s[S_F_LOSS] += tsum(&elem(spec, "forces", loss, &d));
            s[S_F_N] += t.rows as f64;
        }
        if let (true, Some(st), Some(t)) = (spec.stress, &p.stress, &c.stress) {
            let d = ((st - &t.value) * &t.mask).to_kind(Kind::Double);
            s[S_S_ABS] += tsum(&d.abs());
            s[S_S_SQ] += tsum(&d.square());
            s[S_S_LOSS] += tsum(&elem(spec, "stress", loss, &d));
            s[S_S_N] += t.rows as f64;
        }
        for (k, ps) in spec.props.iter().enumerate() {
            let t = &c.props[&ps.name];
            let d = ((&p.props[&ps.name] - &t.value) * &t.mask).to_kind(Kind::Double);
            let o = SUM_FIXED + PROP_STRIDE * k;
            s[o] += tsum(&d.abs());
            s[o + 1] += tsum(&d.square());
            s[o + 2] += tsum(&elem(spec, &ps.name, loss, &d));
            s[o + 3] += t.rows as f64;
        }
    });
}

/// Errors of one output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Err2 {
    /// Mean absolute error.
    pub mae: f64,
    /// Root-mean-square error.
    pub rmse: f64,
}

/// Metrics of one branch over a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchMetrics {
    /// Graphs evaluated.
    pub n_graphs: usize,
    /// Atoms evaluated.
    pub n_atoms: usize,
    /// The weighted loss with the training weights (terms averaged over the split).
    pub loss: f64,
    /// Energy error per atom (eV/atom).
    pub energy_per_atom: Option<Err2>,
    /// Force error per component (eV/Angstrom).
    pub forces: Option<Err2>,
    /// Stress error per component (eV/Angstrom^3), over periodic graphs with a stress label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress: Option<Err2>,
    /// Other outputs by name.
    pub props: BTreeMap<String, Err2>,
    /// Entries counted per output (graphs for `energy`, `stress` and per-graph outputs, atoms for
    /// `forces` and per-atom outputs): labels missing from some graphs are not counted.
    #[serde(default)]
    pub counted: BTreeMap<String, usize>,
}

/// Turns flat sums (already added over ranks) into metrics (averages over the entries present).
pub fn finish(spec: &BranchSpec, s: &[f64]) -> BranchMetrics {
    let mut counted = BTreeMap::new();
    let mut loss = 0.0;
    let energy_per_atom = spec.energy.then(|| {
        let g = s[S_E_N].max(1.0);
        counted.insert("energy".to_string(), s[S_E_N] as usize);
        loss += spec.w_energy * s[S_E_LOSS] / g + spec.w_energy_peratom * s[S_EPA_LOSS] / g;
        Err2 {
            mae: s[S_E_ABS] / g,
            rmse: (s[S_E_SQ] / g).sqrt(),
        }
    });
    let forces = spec.forces.then(|| {
        let a = s[S_F_N].max(1.0);
        counted.insert("forces".to_string(), s[S_F_N] as usize);
        loss += spec.w_forces * s[S_F_LOSS] / (3.0 * a);
        Err2 {
            mae: s[S_F_ABS] / (3.0 * a),
            rmse: (s[S_F_SQ] / (3.0 * a)).sqrt(),
        }
    });
    let stress = spec.stress.then(|| {
        let g = s[S_S_N].max(1.0);
        counted.insert("stress".to_string(), s[S_S_N] as usize);
        loss += spec.w_stress * s[S_S_LOSS] / (9.0 * g);
        Err2 {
            mae: s[S_S_ABS] / (9.0 * g),
            rmse: (s[S_S_SQ] / (9.0 * g)).sqrt(),
        }
    });
    let mut props = BTreeMap::new();
    for (k, ps) in spec.props.iter().enumerate() {
        let o = SUM_FIXED + PROP_STRIDE * k;
        counted.insert(ps.name.clone(), s[o + 3] as usize);
        let n = s[o + 3].max(1.0) * ps.width as f64;
        loss += ps.weight * s[o + 2] / n;
        props.insert(
            ps.name.clone(),
            Err2 {
                mae: s[o] / n,
                rmse: (s[o + 1] / n).sqrt(),
            },
        );
    }
    BranchMetrics {
        n_graphs: s[S_GRAPHS] as usize,
        n_atoms: s[S_ATOMS] as usize,
        loss,
        energy_per_atom,
        forces,
        stress,
        props,
        counted,
    }
}

/// eV/Angstrom^3 in GPa.
pub const EV_PER_A3_IN_GPA: f64 = 160.217_663_4;

impl BranchMetrics {
    /// Named values in a fixed order: `energy_mae_per_atom`, `energy_rmse_per_atom`,
    /// `force_mae`, `force_rmse`, `stress_mae`, `stress_rmse` (eV/Angstrom^3), `<prop>_mae`,
    /// `<prop>_rmse` (those the branch has).
    pub fn columns(&self) -> Vec<(String, f64)> {
        let mut v = vec![("loss".to_string(), self.loss)];
        if let Some(e) = self.energy_per_atom {
            v.push(("energy_mae_per_atom".into(), e.mae));
            v.push(("energy_rmse_per_atom".into(), e.rmse));
        }
        if let Some(f) = self.forces {
            v.push(("force_mae".into(), f.mae));
            v.push(("force_rmse".into(), f.rmse));
        }
        if let Some(s) = self.stress {
            v.push(("stress_mae".into(), s.mae));
            v.push(("stress_rmse".into(), s.rmse));
        }
        for (k, e) in &self.props {
            v.push((format!("{k}_mae"), e.mae));
            v.push((format!("{k}_rmse"), e.rmse));
        }
        v
    }

    /// A one-line human summary (energies in meV/atom).
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} graphs", self.n_graphs)];
        if let Some(e) = self.energy_per_atom {
            parts.push(format!(
                "E MAE {:.2} meV/atom (RMSE {:.2})",
                1e3 * e.mae,
                1e3 * e.rmse
            ));
        }
        if let Some(f) = self.forces {
            parts.push(format!("F MAE {:.4} eV/A (RMSE {:.4})", f.mae, f.rmse));
        }
        if let Some(s) = self.stress {
            let n = self.counted.get("stress").copied().unwrap_or(0);
            parts.push(format!(
                "S MAE {:.4} GPa (RMSE {:.4}) over {n} graphs",
                EV_PER_A3_IN_GPA * s.mae,
                EV_PER_A3_IN_GPA * s.rmse
            ));
        }
        // Outputs that only some graphs carry: how many entries were counted.
        let partial: Vec<String> = self
            .counted
            .iter()
            .filter(|(k, &n)| match k.as_str() {
                "stress" => false,
                "forces" => n != self.n_atoms,
                "energy" => n != self.n_graphs,
                _ => n != self.n_graphs && n != self.n_atoms,
            })
            .map(|(k, n)| format!("{k} on {n}"))
            .collect();
        if !partial.is_empty() {
            parts.push(format!("counted: {}", partial.join(", ")));
        }
        for (k, e) in &self.props {
            parts.push(format!("{k} MAE {:.4} (RMSE {:.4})", e.mae, e.rmse));
        }
        parts.join(", ")
    }
}

/// (true, predicted) pairs of every output, for parity plots.
#[derive(Debug, Default, Clone)]
pub struct Parity {
    /// By output name (`energy_per_atom`, `forces`, properties).
    pub series: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
}

impl Parity {
    /// Adds a batch.
    pub fn add(&mut self, spec: &BranchSpec, p: &Prediction, c: &Collated) {
        let v = |t: &Tensor| -> Vec<f64> {
            Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).contiguous().view([-1]))
                .unwrap_or_default()
        };
        let mut push = |name: &str, t: &Tensor, y: &Tensor| {
            let e = self.series.entry(name.to_string()).or_default();
            e.0.extend(v(t));
            e.1.extend(v(y));
        };
        // Only the entries present: rows selected by the mask.
        let sel = |t: &Tensor, m: &Tensor| -> Tensor {
            let rows = t.size()[0];
            let keep = m.reshape([rows]).gt(0.5);
            t.reshape([rows, -1])
                .index_select(0, &keep.nonzero().view([-1]))
        };
        if let (true, Some(e)) = (spec.energy, &c.energy) {
            let n = &c.n_atoms;
            push(
                "energy_per_atom",
                &sel(&(&e.value / n), &e.mask),
                &sel(&(&p.energy / n), &e.mask),
            );
        }
        if let (Some(f), Some(t)) = (&p.forces, &c.forces) {
            push("forces", &sel(&t.value, &t.mask), &sel(f, &t.mask));
        }
        if let (Some(s), Some(t)) = (&p.stress, &c.stress) {
            push("stress", &sel(&t.value, &t.mask), &sel(s, &t.mask));
        }
        for ps in &spec.props {
            let t = &c.props[&ps.name];
            push(
                &ps.name,
                &sel(&t.value, &t.mask),
                &sel(&p.props[&ps.name], &t.mask),
            );
        }
    }
}
