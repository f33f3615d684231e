//! Scoring a model on graphs: the batched loop shared by the trainer's validation and
//! `hydragnn eval`, and the [`BranchSpec`] of a saved model's branch on a dataset.

use mlip::model::config::HeadKind;
use mlip::Model;
use tch::{Device, Kind};

use crate::config::LossType;
use crate::data::DatasetMeta;
use crate::error::{Error, Result};
use crate::graphs::{collate, Graph};
use crate::metrics::{accumulate, predict, BranchSpec, Parity, PropSpec};

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
        }
    }

    /// Puts these weights into `spec` (outputs not recorded keep theirs).
    pub fn apply(&self, spec: &mut BranchSpec) {
        spec.w_energy = self.energy;
        spec.w_energy_peratom = self.energy_peratom;
        spec.w_forces = self.forces;
        spec.w_stress = self.stress;
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
        v.join(", ")
    }
}

/// The training run's loss recorded in the model file at `path`, or `None` when the file does
/// not record one (models written before it was recorded, imported models).
pub fn recorded_loss(path: &std::path::Path) -> Result<Option<LossRecord>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: String| {
        Error::Engine(mlip::Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        })
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
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
