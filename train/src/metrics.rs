//! What a branch predicts and is scored on: predictions (energy, autograd forces, other heads),
//! the weighted loss (HydraGNN's: `energy_weight·L(E) + energy_peratom_weight·L(E/N) +
//! force_weight·L(F) + Σ_k task_weight_k·L(y_k)`, L = MSE or MAE), and the metrics reported per
//! branch (energy MAE/RMSE per atom, force MAE/RMSE per component, MAE/RMSE of every other
//! output). Sums are kept as flat `f64` vectors so they can be added over MPI ranks.

use std::collections::BTreeMap;

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
}

impl BranchSpec {
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
        SUM_FIXED + 3 * self.props.len()
    }
}

/// Model outputs of one batch.
#[derive(Debug)]
pub struct Prediction {
    /// Energies (n_graphs,).
    pub energy: Tensor,
    /// Forces (n_atoms, 3), when requested.
    pub forces: Option<Tensor>,
    /// Other heads by name: (n_graphs, dim) or (n_atoms, dim).
    pub props: BTreeMap<String, Tensor>,
}

/// Runs the model on a batch. Forces are -dE/dx through autograd over the edge vectors
/// (`create_graph` keeps them differentiable for the force loss); the batch must have been
/// collated with `edge_grad` when forces are wanted.
pub fn predict(
    model: &Model,
    spec: &BranchSpec,
    c: &Collated,
    create_graph: bool,
) -> Result<Prediction> {
    let out = model.forward(&c.graph, Some(spec.branch))?;
    let forces = if spec.forces {
        Some(mlip::compute::edge_forces(
            &out.energy,
            &c.graph,
            create_graph,
        )?)
    } else {
        None
    };
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
        props,
    })
}

fn elem(loss: LossType, d: &Tensor) -> Tensor {
    match loss {
        LossType::Mse => d.square(),
        LossType::Mae => d.abs(),
    }
}

/// The weighted loss of a batch, each term *summed* over this batch and divided by the global
/// counts `graphs` and `atoms` (of the whole global batch, over all ranks): the sum over ranks is
/// then the loss of the global batch, and so are the gradients.
pub fn batch_loss(
    spec: &BranchSpec,
    p: &Prediction,
    c: &Collated,
    loss: LossType,
    graphs: f64,
    atoms: f64,
) -> Tensor {
    let kind = p.energy.kind();
    let mut total = Tensor::zeros([], (kind, p.energy.device()));
    if spec.energy {
        let e = c.energy.as_ref().expect("energy targets collated");
        let d = &p.energy - e;
        if spec.w_energy > 0.0 {
            total += elem(loss, &d).sum(kind) * (spec.w_energy / graphs);
        }
        if spec.w_energy_peratom > 0.0 {
            total += elem(loss, &(&d / &c.n_atoms)).sum(kind) * (spec.w_energy_peratom / graphs);
        }
    }
    if let (true, Some(f), Some(t)) = (spec.forces, &p.forces, &c.forces) {
        if spec.w_forces > 0.0 {
            total += elem(loss, &(f - t)).sum(kind) * (spec.w_forces / (3.0 * atoms));
        }
    }
    for ps in &spec.props {
        if ps.weight == 0.0 {
            continue;
        }
        let (y, t) = (&p.props[&ps.name], &c.props[&ps.name]);
        let n = match ps.kind {
            HeadKind::Graph => graphs,
            HeadKind::Node => atoms,
        } * ps.width as f64;
        total += elem(loss, &(y - t)).sum(kind) * (ps.weight / n);
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
const SUM_FIXED: usize = 9;

fn tsum(t: &Tensor) -> f64 {
    t.sum(Kind::Double).double_value(&[])
}

/// Adds a batch's errors to the flat sums `s` (length [`BranchSpec::sums_len`]).
pub fn accumulate(spec: &BranchSpec, p: &Prediction, c: &Collated, loss: LossType, s: &mut [f64]) {
    tch::no_grad(|| {
        s[S_GRAPHS] += c.n_graphs as f64;
        s[S_ATOMS] += c.n_atoms_total as f64;
        if spec.energy {
            let d = (&p.energy - c.energy.as_ref().expect("energy targets")).to_kind(Kind::Double);
            let dpa = &d / c.n_atoms.to_kind(Kind::Double);
            s[S_E_ABS] += tsum(&dpa.abs());
            s[S_E_SQ] += tsum(&dpa.square());
            s[S_E_LOSS] += tsum(&elem(loss, &d));
            s[S_EPA_LOSS] += tsum(&elem(loss, &dpa));
        }
        if let (true, Some(f), Some(t)) = (spec.forces, &p.forces, &c.forces) {
            let d = (f - t).to_kind(Kind::Double);
            s[S_F_ABS] += tsum(&d.abs());
            s[S_F_SQ] += tsum(&d.square());
            s[S_F_LOSS] += tsum(&elem(loss, &d));
        }
        for (k, ps) in spec.props.iter().enumerate() {
            let d = (&p.props[&ps.name] - &c.props[&ps.name]).to_kind(Kind::Double);
            let o = SUM_FIXED + 3 * k;
            s[o] += tsum(&d.abs());
            s[o + 1] += tsum(&d.square());
            s[o + 2] += tsum(&elem(loss, &d));
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
    /// Other outputs by name.
    pub props: BTreeMap<String, Err2>,
}

/// Turns flat sums (already added over ranks) into metrics.
pub fn finish(spec: &BranchSpec, s: &[f64]) -> BranchMetrics {
    let g = s[S_GRAPHS].max(1.0);
    let a = s[S_ATOMS].max(1.0);
    let mut loss = 0.0;
    let energy_per_atom = spec.energy.then(|| {
        loss += spec.w_energy * s[S_E_LOSS] / g + spec.w_energy_peratom * s[S_EPA_LOSS] / g;
        Err2 {
            mae: s[S_E_ABS] / g,
            rmse: (s[S_E_SQ] / g).sqrt(),
        }
    });
    let forces = spec.forces.then(|| {
        loss += spec.w_forces * s[S_F_LOSS] / (3.0 * a);
        Err2 {
            mae: s[S_F_ABS] / (3.0 * a),
            rmse: (s[S_F_SQ] / (3.0 * a)).sqrt(),
        }
    });
    let mut props = BTreeMap::new();
    for (k, ps) in spec.props.iter().enumerate() {
        let o = SUM_FIXED + 3 * k;
        let n = match ps.kind {
            HeadKind::Graph => g,
            HeadKind::Node => a,
        } * ps.width as f64;
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
        props,
    }
}

impl BranchMetrics {
    /// Named values in a fixed order: `energy_mae_per_atom`, `energy_rmse_per_atom`,
    /// `force_mae`, `force_rmse`, `<prop>_mae`, `<prop>_rmse` (those the branch has).
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
        if spec.energy {
            let n = &c.n_atoms;
            push(
                "energy_per_atom",
                &(c.energy.as_ref().expect("energy") / n),
                &(&p.energy / n),
            );
        }
        if let (Some(f), Some(t)) = (&p.forces, &c.forces) {
            push("forces", t, f);
        }
        for ps in &spec.props {
            push(&ps.name, &c.props[&ps.name], &p.props[&ps.name]);
        }
    }
}
