//! Scoring a model on graphs: the batched loop shared by the trainer's validation and
//! `hydragnn eval`, and the [`BranchSpec`] of a saved model's branch on a dataset. For an
//! ensemble: every member's and the committee mean's error sums in one pass
//! ([`eval_ensemble_sums`]), the per-atom and per-structure model deviations next to the mean's
//! actual errors, their Spearman rank correlation ([`spearman`]) and a binned calibration
//! ([`calibration`]).

use mlip::model::config::HeadKind;
use mlip::Model;
use tch::{Device, Kind, Tensor};

use crate::config::LossType;
use crate::data::DatasetMeta;
use crate::error::{Error, Result};
use crate::graphs::{collate, Graph};
use crate::metrics::{accumulate, predict, BranchSpec, Parity, Prediction, PropSpec};

/// Flat error sums ([`crate::metrics::finish`] turns them into metrics) of `graphs` in batches
/// of `batch_size`; (true, predicted) pairs go to `parity` when given.
#[allow(clippy::too_many_arguments)]
pub fn eval_sums(
    model: &Model,
    spec: &BranchSpec,
    graphs: &[Graph],
    batch_size: usize,
    loss: LossType,
    kind: Kind,
    device: Device,
    mut parity: Option<&mut Parity>,
) -> Result<Vec<f64>> {
    let mut sums = vec![0.0; spec.sums_len()];
    let (gp, np) = (spec.graph_props(), spec.node_props());
    for chunk in graphs.chunks(batch_size.max(1)) {
        let refs: Vec<&Graph> = chunk.iter().collect();
        let c = collate(&refs, &gp, &np, kind, device, spec.forces || spec.stress);
        let mut run = || -> Result<()> {
            let p = predict(model, spec, &c, false)?;
            accumulate(spec, &p, &c, loss, &mut sums);
            if let Some(par) = parity.as_deref_mut() {
                par.add(spec, &p, &c);
            }
            Ok(())
        };
        if spec.forces || spec.stress {
            run()?;
        } else {
            tch::no_grad(run)?;
        }
    }
    Ok(sums)
}

/// What branch `branch` of a saved model can be scored on in a dataset: energy and forces when
/// the dataset has them, and every other head whose name the dataset carries at the same level.
/// Loss weights are HydraGNN's defaults (1, 0, 100, 1).
pub fn spec_for_model(model: &Model, branch: usize, meta: &DatasetMeta) -> Result<BranchSpec> {
    let bc = &model.config().branches[branch];
    let mut props = Vec::new();
    for h in &bc.output_heads {
        if h.name == "energy" {
            continue;
        }
        let width = match h.kind {
            HeadKind::Graph => meta
                .scalars
                .iter()
                .find(|p| p.name == h.name)
                .map(|p| p.width),
            HeadKind::Node => meta
                .atom_props
                .iter()
                .find(|p| p.name == h.name)
                .map(|p| p.width),
        };
        match width {
            Some(w) if w as i64 == h.dim => props.push(PropSpec { name: h.name.clone(), kind: h.kind, width: w, weight: 1.0 }),
            Some(w) => {
                return Err(Error::Invalid(format!(
                    "head '{}' of branch '{}' has dimension {} but the dataset's '{}' has {w} components",
                    h.name, bc.name, h.dim, h.name
                )))
            }
            None => {}
        }
    }
    let energy = meta.layout.energy && bc.output_heads.iter().any(|h| h.name == "energy");
    Ok(BranchSpec {
        name: bc.name.clone(),
        branch,
        energy,
        forces: energy && meta.layout.forces,
        props,
        w_energy: 1.0,
        w_energy_peratom: 0.0,
        w_forces: 100.0,
        stress: energy && meta.layout.forces && meta.layout.stress,
        w_stress: 0.0,
        loss_types: Default::default(),
        smooth_l1_beta: crate::config::default_smooth_l1_beta(),
    })
}

/// The loss of a training run, recorded in the model file (`info.provenance.loss`) so that
/// `hydragnn eval` scores a model with the weights it was trained with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossRecord {
    /// `NeuralNetwork.Training.loss_function_type`.
    pub loss_function_type: LossType,
    /// The weights of each branch, by branch name.
    pub branches: std::collections::BTreeMap<String, LossWeights>,
}

/// The loss weights of one branch (those of [`BranchSpec`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossWeights {
    /// Weight of L(E).
    pub energy: f64,
    /// Weight of L(E/N).
    pub energy_peratom: f64,
    /// Weight of L(F).
    pub forces: f64,
    /// Weight of L(σ).
    pub stress: f64,
    /// Weights of the other outputs, by name.
    pub props: std::collections::BTreeMap<String, f64>,
    /// The loss of single terms where it differs from the run's `loss_function_type`
    /// (`NeuralNetwork.Training.loss_function_types`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub types: std::collections::BTreeMap<String, LossType>,
    /// β of the `smooth_l1` loss (`NeuralNetwork.Training.smooth_l1_beta`).
    #[serde(default = "crate::config::default_smooth_l1_beta")]
    pub smooth_l1_beta: f64,
}

impl LossWeights {
    /// The weights of `spec`.
    pub fn of(spec: &BranchSpec) -> Self {
        LossWeights {
            energy: spec.w_energy,
            energy_peratom: spec.w_energy_peratom,
            forces: spec.w_forces,
            stress: spec.w_stress,
            props: spec
                .props
                .iter()
                .map(|p| (p.name.clone(), p.weight))
                .collect(),
            types: spec.loss_types.clone(),
            smooth_l1_beta: spec.smooth_l1_beta,
        }
    }

    /// Puts these weights into `spec` (outputs not recorded keep theirs).
    pub fn apply(&self, spec: &mut BranchSpec) {
        spec.w_energy = self.energy;
        spec.w_energy_peratom = self.energy_peratom;
        spec.w_forces = self.forces;
        spec.w_stress = self.stress;
        spec.loss_types = self.types.clone();
        spec.smooth_l1_beta = self.smooth_l1_beta;
        for p in &mut spec.props {
            if let Some(w) = self.props.get(&p.name) {
                p.weight = *w;
            }
        }
    }

    /// `energy 1, energy/atom 0, forces 100, stress 0, gap 1`.
    pub fn describe(&self) -> String {
        let mut v = vec![
            format!("energy {}", self.energy),
            format!("energy/atom {}", self.energy_peratom),
            format!("forces {}", self.forces),
            format!("stress {}", self.stress),
        ];
        v.extend(self.props.iter().map(|(k, w)| format!("{k} {w}")));
        let mut s = v.join(", ");
        if !self.types.is_empty() {
            let t: Vec<String> = self
                .types
                .iter()
                .map(|(k, t)| format!("{k} {}", t.name()))
                .collect();
            s.push_str(&format!("; loss of single terms: {}", t.join(", ")));
        }
        s
    }
}

/// The training run's loss recorded in the model file at `path`, or `None` when the file does
/// not record one (models written before it was recorded, imported models). For an ensemble
/// file: that of member 0.
pub fn recorded_loss(path: &std::path::Path) -> Result<Option<LossRecord>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if mlip::ensemble::is_ensemble(&bytes) {
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            Error::Engine(mlip::Error::ModelFile {
                path: path.to_path_buf(),
                msg: format!("not a safetensors file: {e}"),
            })
        })?;
        return match st.tensor("member.0") {
            Ok(t) => recorded_loss_of(t.data(), path),
            Err(_) => Ok(None),
        };
    }
    recorded_loss_of(&bytes, path)
}

/// [`recorded_loss`] of a model file's bytes (`path` names it in errors).
fn recorded_loss_of(bytes: &[u8], path: &std::path::Path) -> Result<Option<LossRecord>> {
    let bad = |msg: String| {
        Error::Engine(mlip::Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        })
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let Some(info) = header.metadata().as_ref().and_then(|m| m.get("info")) else {
        return Ok(None);
    };
    let info: serde_json::Value =
        serde_json::from_str(info).map_err(|e| bad(format!("info is not JSON: {e}")))?;
    let Some(text) = info["provenance"]["loss"].as_str() else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| bad(format!("info.provenance.loss: {e}")))
}

/// Deviation and actual error of one structure (an ensemble's mean against the labels).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StructureDeviation {
    /// Index of the graph in its split.
    pub index: usize,
    /// Atoms.
    pub n_atoms: usize,
    /// Standard deviation of the members' energies per atom (eV/atom; population std).
    pub energy_std: f64,
    /// |mean energy − label| per atom (eV/atom), when labelled.
    pub energy_error: Option<f64>,
    /// Max over atoms of the per-atom force deviation (eV/Å; DeePMD's `max_devi_f`).
    pub max_devi_f: Option<f64>,
    /// Mean over atoms of the per-atom force deviation (eV/Å).
    pub avg_devi_f: Option<f64>,
    /// Max over atoms of |mean force − label| (eV/Å), when labelled.
    pub max_force_error: Option<f64>,
    /// sqrt(mean over atoms of |mean force − label|²) (eV/Å), when labelled.
    pub rms_force_error: Option<f64>,
}

/// What [`eval_ensemble_sums`] gathers.
#[derive(Debug, Clone, Default)]
pub struct EnsembleSums {
    /// Error sums of the committee mean ([`crate::metrics::finish`] them).
    pub mean: Vec<f64>,
    /// Error sums of each member.
    pub members: Vec<Vec<f64>>,
    /// Per labelled atom: (force deviation, |mean force − label|), eV/Å.
    pub atoms: Vec<(f64, f64)>,
    /// Per structure.
    pub structures: Vec<StructureDeviation>,
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).contiguous().view([-1]))
        .unwrap_or_default()
}

/// The member-wise mean of predictions (energy, forces, stress, other heads).
pub fn mean_prediction(preds: &[Prediction]) -> Prediction {
    tch::no_grad(|| {
        let mean = |ts: Vec<&Tensor>| Tensor::stack(&ts, 0).detach().mean_dim(0, false, None);
        let opt = |f: &dyn Fn(&Prediction) -> Option<&Tensor>| {
            let ts: Option<Vec<&Tensor>> = preds.iter().map(f).collect();
            ts.map(mean)
        };
        Prediction {
            energy: mean(preds.iter().map(|p| &p.energy).collect()),
            forces: opt(&|p| p.forces.as_ref()),
            stress: opt(&|p| p.stress.as_ref()),
            props: preds[0]
                .props
                .keys()
                .filter_map(|k| {
                    let ts: Option<Vec<&Tensor>> = preds.iter().map(|p| p.props.get(k)).collect();
                    ts.map(|ts| (k.clone(), mean(ts)))
                })
                .collect(),
        }
    })
}

/// Every member (`specs[k]` is member k's branch, the same outputs) and the committee mean on
/// `graphs` in batches: error sums of each and of the mean, the per-atom force deviation
/// `sqrt(mean_k |F_k − F̄|²)` with the mean's force error, and per structure the energy std,
/// max/avg force deviation and the mean's errors.
#[allow(clippy::too_many_arguments)]
pub fn eval_ensemble_sums(
    members: &[&Model],
    specs: &[BranchSpec],
    graphs: &[Graph],
    batch_size: usize,
    loss: LossType,
    kind: Kind,
    device: Device,
) -> Result<EnsembleSums> {
    let spec = &specs[0];
    let k = members.len();
    let mut out = EnsembleSums {
        mean: vec![0.0; spec.sums_len()],
        members: vec![vec![0.0; spec.sums_len()]; k],
        ..Default::default()
    };
    let (gp, np) = (spec.graph_props(), spec.node_props());
    for chunk in graphs.chunks(batch_size.max(1)) {
        let refs: Vec<&Graph> = chunk.iter().collect();
        let c = collate(&refs, &gp, &np, kind, device, spec.forces || spec.stress);
        let mut run = || -> Result<()> {
            let preds = members
                .iter()
                .zip(specs)
                .map(|(m, s)| predict(m, s, &c, false))
                .collect::<Result<Vec<_>>>()?;
            for (p, sums) in preds.iter().zip(out.members.iter_mut()) {
                accumulate(spec, p, &c, loss, sums);
            }
            let mean = mean_prediction(&preds);
            accumulate(spec, &mean, &c, loss, &mut out.mean);
            let energies: Vec<Vec<f64>> = preds.iter().map(|p| to_vec(&p.energy)).collect();
            let forces: Option<Vec<Vec<f64>>> = preds
                .iter()
                .map(|p| p.forces.as_ref().map(to_vec))
                .collect();
            let mut off = 0;
            for (gi, g) in chunk.iter().enumerate() {
                let n = g.n_atoms();
                let nf = n as f64;
                let es: Vec<f64> = energies.iter().map(|e| e[gi] / nf).collect();
                let em = es.iter().sum::<f64>() / k as f64;
                let energy_std =
                    (es.iter().map(|e| (e - em).powi(2)).sum::<f64>() / k as f64).sqrt();
                let mut sd = StructureDeviation {
                    index: g.index,
                    n_atoms: n,
                    energy_std,
                    energy_error: g.energy.map(|e| (em - e / nf).abs()),
                    max_devi_f: None,
                    avg_devi_f: None,
                    max_force_error: None,
                    rms_force_error: None,
                };
                if let Some(f) = &forces {
                    let (mut max_d, mut sum_d) = (0.0f64, 0.0);
                    let (mut max_e, mut sum_e2) = (0.0f64, 0.0);
                    for a in off..off + n {
                        let mut fm = [0.0; 3];
                        for fk in f {
                            for (c, m) in fm.iter_mut().enumerate() {
                                *m += fk[3 * a + c] / k as f64;
                            }
                        }
                        let d2: f64 = f
                            .iter()
                            .map(|fk| (0..3).map(|c| (fk[3 * a + c] - fm[c]).powi(2)).sum::<f64>())
                            .sum::<f64>()
                            / k as f64;
                        let d = d2.sqrt();
                        max_d = max_d.max(d);
                        sum_d += d;
                        if let Some(t) = &g.forces {
                            let i = a - off;
                            let e2: f64 = (0..3).map(|c| (fm[c] - t[3 * i + c]).powi(2)).sum();
                            let e = e2.sqrt();
                            max_e = max_e.max(e);
                            sum_e2 += e2;
                            out.atoms.push((d, e));
                        }
                    }
                    if n > 0 {
                        sd.max_devi_f = Some(max_d);
                        sd.avg_devi_f = Some(sum_d / nf);
                        if g.forces.is_some() {
                            sd.max_force_error = Some(max_e);
                            sd.rms_force_error = Some((sum_e2 / nf).sqrt());
                        }
                    }
                }
                off += n;
                out.structures.push(sd);
            }
            Ok(())
        };
        if spec.forces || spec.stress {
            run()?;
        } else {
            tch::no_grad(run)?;
        }
    }
    Ok(out)
}

/// Ranks 1..n, ties given their average rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &t in &idx[i..=j] {
            r[t] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of the pairs (the Pearson correlation of their ranks, ties
/// averaged), in [-1, 1]; `None` with fewer than 2 pairs, a non-finite value or a constant side.
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 2 || pairs.iter().any(|(a, b)| !a.is_finite() || !b.is_finite()) {
        return None;
    }
    let rx = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let ry = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// One bin of a calibration curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationBin {
    /// Mean predicted deviation in the bin.
    pub predicted: f64,
    /// Observed RMS error in the bin.
    pub observed_rms: f64,
    /// Entries in the bin.
    pub count: usize,
}

/// (predicted deviation, observed error) pairs sorted by the deviation and cut into `bins`
/// bins of equal count (fewer when there are fewer pairs): per bin the mean deviation and the
/// RMS of the errors. A calibrated ensemble lies on y = x.
pub fn calibration(pairs: &[(f64, f64)], bins: usize) -> Vec<CalibrationBin> {
    let mut v: Vec<(f64, f64)> = pairs
        .iter()
        .copied()
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bins = bins.min(v.len()).max(1);
    let n = v.len();
    (0..bins)
        .filter_map(|b| {
            let part = &v[b * n / bins..(b + 1) * n / bins];
            (!part.is_empty()).then(|| {
                let m = part.len() as f64;
                CalibrationBin {
                    predicted: part.iter().map(|p| p.0).sum::<f64>() / m,
                    observed_rms: (part.iter().map(|p| p.1 * p.1).sum::<f64>() / m).sqrt(),
                    count: part.len(),
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_reversed_tied_and_degenerate_data() {
        let up: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, (i as f64).exp())).collect();
        assert!((spearman(&up).unwrap() - 1.0).abs() < 1e-12);
        let down: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, -(i as f64).powi(3))).collect();
        assert!((spearman(&down).unwrap() + 1.0).abs() < 1e-12);
        // scipy.stats.spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138
        let tied = [(1.0, 1.0), (2.0, 3.0), (2.0, 2.0), (3.0, 4.0)];
        assert!((spearman(&tied).unwrap() - 0.9486832980505138).abs() < 1e-12);
        assert_eq!(spearman(&[(1.0, 2.0)]), None);
        assert_eq!(spearman(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn calibration_bins_have_equal_counts_and_rms_errors() {
        let pairs: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0)).collect();
        let c = calibration(&pairs, 5);
        assert_eq!(c.len(), 5);
        assert!(c
            .iter()
            .all(|b| b.count == 2 && (b.observed_rms - 2.0).abs() < 1e-12));
        assert!((c[0].predicted - 0.5).abs() < 1e-12 && (c[4].predicted - 8.5).abs() < 1e-12);
        assert_eq!(calibration(&pairs[..3], 10).len(), 3);
    }
}
