//! Fine-tuning start: `Training.init_from` (a model file, the engine's format) gives the new
//! model its weights by name: the shared input and backbone weights must all be there with the
//! same shapes (the same architecture), a branch whose dataset has the same name as one of the
//! file's branches takes that branch's weights, and a branch of a new dataset starts fresh.
//! `Architecture.freeze_conv_layers` (HydraGNN's key) then keeps the shared weights fixed, so
//! only the heads train; `Training.warmup_steps` ramps the learning rate up linearly.

use std::path::PathBuf;

use mlip::Model;
use tch::{Device, Kind};

use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// The config key of the model file.
pub(super) const INIT_KEY: &str = "NeuralNetwork.Training.init_from";

/// `Training.init_from`, resolved against the config file's directory.
pub(super) fn init_path(cfg: &TrainConfig) -> Option<PathBuf> {
    let p = cfg.training().init_from.as_ref()?;
    Some(if p.is_absolute() {
        p.clone()
    } else {
        cfg.path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(p)
    })
}

/// The model file of `Training.init_from`, if any; errors name the key and the file.
pub(super) fn load_base(cfg: &TrainConfig, kind: Kind, device: Device) -> Result<Option<Model>> {
    let Some(path) = init_path(cfg) else {
        return Ok(None);
    };
    Model::load(&path, kind, device)
        .map(Some)
        .map_err(|e| Error::config(&cfg.path, INIT_KEY, format!("{}: {e}", path.display())))
}

/// Copies `base`'s weights into `model` by name: every shared weight (required, same shape) and
/// the weights of the branches that both have (same names and shapes). Returns (shared, branch)
/// counts of the weights copied.
pub(super) fn copy_weights(
    cfg: &TrainConfig,
    model: &mut Model,
    base: &Model,
) -> Result<(usize, usize)> {
    let from = base.var_store().variables();
    let mut to = model.var_store().variables();
    let (mut shared, mut branch) = (0, 0);
    let mut names: Vec<&String> = to.keys().collect();
    names.sort();
    let names: Vec<String> = names.into_iter().cloned().collect();
    for name in names {
        let dst = to.get_mut(&name).expect("own name");
        let is_shared = model.parameter_branch(&name).is_none();
        match from.get(&name) {
            Some(src) if src.size() == dst.size() => {
                tch::no_grad(|| dst.copy_(src));
                if is_shared {
                    shared += 1;
                } else {
                    branch += 1;
                }
            }
            Some(src) if is_shared => {
                return Err(Error::config(
                    &cfg.path,
                    INIT_KEY,
                    format!(
                        "weight '{name}' has shape {:?} in the model file but {:?} in this config's architecture (keep NeuralNetwork.Architecture as the model was trained)",
                        src.size(),
                        dst.size()
                    ),
                ));
            }
            None if is_shared => {
                return Err(Error::config(
                    &cfg.path,
                    INIT_KEY,
                    format!(
                        "the model file has no weight '{name}': it was trained with another architecture (its mpnn_type is {:?})",
                        base.config().mpnn_type
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok((shared, branch))
}

/// `freeze_conv_layers`: the shared (input and message-passing) weights stop requiring gradients,
/// so the optimiser leaves them out and only the branches' heads train.
pub(super) fn freeze_shared(model: &mut Model) {
    let vars = model.var_store().variables();
    for (name, v) in vars {
        if model.parameter_branch(&name).is_none() {
            let _ = v.set_requires_grad(false);
        }
    }
}

/// The learning rate of optimiser step `step` (0-based) under a linear warm-up over `warmup`
/// steps from `lr / warmup` to `lr` (step `warmup - 1` and later: exactly `lr`).
pub fn warmup_lr(lr: f64, step: usize, warmup: usize) -> f64 {
    if step + 1 < warmup {
        lr * (step + 1) as f64 / warmup as f64
    } else {
        lr
    }
}
