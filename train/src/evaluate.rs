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
