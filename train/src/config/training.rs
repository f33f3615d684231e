//! The `NeuralNetwork.Training` section: epochs, batches, the loss, the optimiser and its
//! schedule, checkpoints, the seed, the precision and the limits of a run.

use serde::{Deserialize, Serialize};

use super::{enabled, TrainConfig};
use crate::error::Result;

/// Loss function of every term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossType {
    /// Mean squared error.
    #[default]
    Mse,
    /// Mean absolute error.
    Mae,
    /// HydraGNN's `smooth_l1` (PyTorch's `SmoothL1Loss`): `0.5 x²/β` where `|x| < β`, else
    /// `|x| - 0.5 β`, with β = `Training.smooth_l1_beta` (default 1, PyTorch's): squared for
    /// small errors, absolute for large ones.
    #[serde(rename = "smooth_l1")]
    SmoothL1,
}

impl LossType {
    /// The config's name of the loss (`mse`, `mae`).
    pub fn name(self) -> &'static str {
        match self {
            LossType::Mse => "mse",
            LossType::Mae => "mae",
            LossType::SmoothL1 => "smooth_l1",
        }
    }
}

/// Floating-point precision of weights and computations: the engine's one model of it
/// ("fp32"/"fp64", also "float32"/"float64" ...): that of model files and evaluation.
pub use mlip::Precision;

/// The precision a training run computes in: fp32, fp64, or bf16 (float32 master weights and
/// optimiser state, bfloat16 autocast for the forward, force and backward passes; the model
/// file stays float32). An unknown name is refused when the file is read, naming the value.
pub use mlip::precision::TrainingPrecision;

/// `NeuralNetwork.Training`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Number of epochs.
    pub num_epoch: usize,
    /// Global batch size (graphs per optimiser step, summed over MPI ranks).
    pub batch_size: usize,
    /// The optimiser.
    #[serde(rename = "Optimizer")]
    pub optimizer: Optimizer,
    /// `mse` (default) or `mae`.
    #[serde(default)]
    pub loss_function_type: LossType,
    /// Extension: the loss of single terms, overriding `loss_function_type` for them: keys
    /// `energy`, `energy_peratom`, `forces`, `stress` or an output's name, values `mse`/`mae`
    /// (e.g. `{"energy": "mse", "forces": "mae"}`). An unknown key is refused when the run is
    /// planned, naming it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub loss_function_types: std::collections::BTreeMap<String, LossType>,
    /// β of the `smooth_l1` loss, in the units of each term it applies to (default 1, PyTorch's).
    #[serde(default = "default_smooth_l1_beta")]
    pub smooth_l1_beta: f64,
    /// Extension, DeePMD-kit's `start_pref_*`: the weight of a term at the first step (keys as
    /// in `loss_function_types`). The weight moves with the learning rate from this value to
    /// the configured one (DeePMD-kit's `limit_pref_*`):
    /// `w(step) = w + (w_start - w) · lr(step) / learning_rate`. Validation (and so the best
    /// model) always uses the configured weights.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub loss_weights_start: std::collections::BTreeMap<String, f64>,
    /// Forces as -dE/dx by autograd, in the loss with `force_weight` (needs `energy` and forces in every dataset).
    #[serde(default)]
    pub compute_grad_energy: bool,
    /// Stop when the validation loss has not improved for `patience` epochs.
    #[serde(rename = "EarlyStopping", default)]
    pub early_stopping: bool,
    /// Early-stopping patience in epochs (default 10).
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Extension: the learning-rate schedule (HydraGNN hard-codes ReduceLROnPlateau(0.5, 5, 1e-5)).
    #[serde(rename = "Scheduler", default)]
    pub scheduler: Scheduler,
    /// Write checkpoints (default true).
    #[serde(rename = "Checkpoint", default = "enabled")]
    pub checkpoint: bool,
    /// Extension: also checkpoint every this many optimiser steps (0: at the end of each epoch only).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Extension: clip the global gradient norm to this value.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Extension: seed of the weights and of the shuffles (default 0).
    #[serde(default)]
    pub seed: u64,
    /// `fp32` (default), `fp64`, or the extension `bf16` (mixed precision: float32 master
    /// weights, bfloat16 autocast; see [`TrainingPrecision`]).
    #[serde(default)]
    pub precision: TrainingPrecision,
    /// Extension: stop (with a checkpoint and the best model written) after this many seconds.
    #[serde(default)]
    pub max_time: Option<f64>,
    /// Extension: stop after this many optimiser steps in total.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Extension: graphs per evaluation batch (default: `batch_size`).
    #[serde(default)]
    pub val_batch_size: Option<usize>,
    /// Extension: `per_dataset` (default: every batch holds one dataset) or `mixed` (a batch
    /// holds samples of several datasets, each run through its own branch).
    #[serde(default)]
    pub batch_mixing: BatchMixing,
    /// Extension: start from the weights of this model file (fine-tuning; relative to the config
    /// file's directory): the shared weights and the branches of datasets with the same name.
    #[serde(default)]
    pub init_from: Option<std::path::PathBuf>,
    /// Extension: ramp the learning rate up linearly over the first this many optimiser steps.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Extension: keep the trainsets in the distributed in-memory store (HydraGNN's DDStore,
    /// `crate::ddstore`): each rank holds a shard, batches are fetched with one-sided MPI.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ddstore: bool,
    /// Extension: train an ensemble (`{"size": K, "bootstrap": false}` or the integer K; the
    /// same as `hydragnn train --ensemble K`, which overrides the size; docs/ensembles.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleSpec>,
    /// Extension: keep an exponential moving average of the weights with this decay per
    /// optimiser step (e.g. 0.999, as MACE and NequIP do); validation, early stopping, the best
    /// model and the final metrics use the averaged weights. The decay in effect at step t is
    /// min(decay, (1 + t) / (10 + t)), so that the first steps are not averaged with the
    /// initial weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
    /// Extension: the energy-aware early stop (needs RAPL counters; without them the run says
    /// so once and trains on).
    #[serde(
        rename = "EnergyStopping",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub energy_stopping: Option<EnergyStopping>,
}

/// `NeuralNetwork.Training.EnergyStopping`: stop when the validation loss has flattened per
/// joule: at the end of epoch e > `window`, with g = the relative fall of the best validation
/// loss over the last `window` epochs ((best before them − best now) / best before them) and
/// J the kilojoules those epochs used (RAPL, rank 0's node), the run stops when
/// g / J < `min_gain_per_kj`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyStopping {
    /// Epochs over which the gain is measured (default 3).
    #[serde(default = "default_energy_window")]
    pub window: usize,
    /// The smallest relative gain of the best validation loss per kilojoule worth paying for.
    pub min_gain_per_kj: f64,
}

/// `EnergyStopping.window`.
fn default_energy_window() -> usize {
    3
}

/// `NeuralNetwork.Training.ensemble`: K ≥ 2 members that differ by seed (member k trains with
/// `seed + k`); with `bootstrap`, members k ≥ 1 train on a bootstrap resample of each trainset
/// (n draws with replacement, seeded by the member's seed) and member 0 on the plain split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct EnsembleSpec {
    /// Number of members (at least 2).
    pub size: usize,
    /// Members k ≥ 1 train on a bootstrap resample of the trainsets.
    pub bootstrap: bool,
    /// Set by the trainer in a member's own config (which member it is); refused as input.
    pub member: Option<usize>,
}

impl TryFrom<serde_json::Value> for EnsembleSpec {
    type Error = String;
    fn try_from(v: serde_json::Value) -> std::result::Result<Self, String> {
        let size_of = |x: &serde_json::Value, key: &str| -> std::result::Result<usize, String> {
            match x.as_u64() {
                Some(k @ (0 | 1)) => Err(format!(
                    "{key} {k}: an ensemble needs at least 2 members (one member is a single model: leave the key out)"
                )),
                Some(k) => Ok(k as usize),
                None => Err(format!("{key} {x}: expected an integer >= 2")),
            }
        };
        match &v {
            serde_json::Value::Object(m) => {
                if let Some(k) = m
                    .keys()
                    .find(|k| !["size", "bootstrap", "member"].contains(&k.as_str()))
                {
                    return Err(format!(
                        "unknown key '{k}' in {v}: expected {{\"size\": K, \"bootstrap\": false}}"
                    ));
                }
                let size = size_of(
                    m.get("size").ok_or_else(|| {
                        format!("{v}: \"size\" (the number of members) is missing")
                    })?,
                    "size",
                )?;
                let bootstrap = match m.get("bootstrap") {
                    None => false,
                    Some(b) => b
                        .as_bool()
                        .ok_or_else(|| format!("bootstrap {b}: expected true or false"))?,
                };
                let member = match m.get("member") {
                    None => None,
                    Some(x) => match x.as_u64() {
                        Some(i) if (i as usize) < size => Some(i as usize),
                        _ => {
                            return Err(format!(
                                "member {x}: expected an integer below size {size}"
                            ))
                        }
                    },
                };
                Ok(EnsembleSpec {
                    size,
                    bootstrap,
                    member,
                })
            }
            x => Ok(EnsembleSpec {
                size: size_of(x, "size")?,
                bootstrap: false,
                member: None,
            }),
        }
    }
}

impl From<EnsembleSpec> for serde_json::Value {
    fn from(e: EnsembleSpec) -> Self {
        let mut v = serde_json::json!({"size": e.size, "bootstrap": e.bootstrap});
        if let Some(m) = e.member {
            v["member"] = m.into();
        }
        v
    }
}

/// `NeuralNetwork.Training.batch_mixing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BatchMixing {
    /// Each batch holds the samples of one dataset.
    #[default]
    PerDataset,
    /// A batch holds samples of several datasets; the backbone runs once over the batch and every
    /// graph goes through its dataset's heads.
    Mixed,
}

/// `NeuralNetwork.Training.Optimizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    /// `AdamW` (default) or `Adam` (L2 penalty added to the gradient instead of decoupled decay).
    #[serde(rename = "type", default = "default_optimizer")]
    pub kind: String,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// Weight decay (default 0.01 for AdamW, 0 for Adam, as in PyTorch).
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// (beta1, beta2), default (0.9, 0.999).
    #[serde(default = "default_adam_betas")]
    pub betas: [f64; 2],
    /// Denominator epsilon, default 1e-8.
    #[serde(default = "default_adam_eps")]
    pub eps: f64,
}

impl Optimizer {
    /// Whether the weight decay is decoupled (AdamW).
    pub fn decoupled(&self) -> bool {
        self.kind == "AdamW"
    }
    /// The weight decay in effect.
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
            .unwrap_or(if self.decoupled() { 0.01 } else { 0.0 })
    }
}

/// `NeuralNetwork.Training.Scheduler`: `ReduceLROnPlateau` (PyTorch's, mode min, relative
/// threshold; HydraGNN's default) or `ExponentialDecay` (DeePMD-kit's schedule: the learning rate
/// is multiplied by `factor` every `decay_steps` optimiser steps, down to `min_lr`; a function of
/// the step count, so runs on any number of ranks and resumed runs follow the same rates).
///
/// `ExponentialDecay` with `stop_lr` (DeePMD-kit's `stop_lr`) instead decays from the
/// optimiser's `learning_rate` to `stop_lr` over the whole run: at step s of a run planned to
/// take H steps the rate is lr0 · (stop_lr / lr0)^(s / H) (held for `decay_steps` steps when
/// that is given). H is `num_epoch` epochs of steps, and with `max_time` the steps that fit in
/// the time left, re-estimated at the end of every epoch from the measured epoch time (the same
/// estimate on every rank), so a time-limited run ends near `stop_lr` whatever the machine's
/// speed; `factor` is not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduler {
    /// `ReduceLROnPlateau` (default) or `ExponentialDecay`.
    #[serde(rename = "type", default = "default_scheduler")]
    pub kind: String,
    /// Multiplier of the learning rate on a plateau, or every `decay_steps` steps.
    #[serde(default = "default_plateau_factor")]
    pub factor: f64,
    /// `ExponentialDecay`: optimiser steps between two multiplications by `factor` (with
    /// `stop_lr`: between two changes of the rate, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_steps: Option<usize>,
    /// `ExponentialDecay`: the rate at the planned end of the run (see above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_lr: Option<f64>,
    /// Epochs without improvement before reducing.
    #[serde(default = "default_scheduler_patience")]
    pub patience: usize,
    /// Lower bound of the learning rate.
    #[serde(default = "default_min_lr")]
    pub min_lr: f64,
    /// Relative improvement that counts.
    #[serde(default = "default_plateau_threshold")]
    pub threshold: f64,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            kind: default_scheduler(),
            factor: default_plateau_factor(),
            decay_steps: None,
            stop_lr: None,
            patience: default_scheduler_patience(),
            min_lr: default_min_lr(),
            threshold: default_plateau_threshold(),
        }
    }
}

impl Scheduler {
    /// Whether the rate is a function of the step count (`ExponentialDecay`), not of the
    /// validation losses (`ReduceLROnPlateau`).
    pub fn by_step(&self) -> bool {
        self.kind == "ExponentialDecay"
    }

    /// The `ExponentialDecay` learning rate after `step` optimiser steps from `lr0`, in a run
    /// planned to take `horizon` steps (used with `stop_lr` only); None for `ReduceLROnPlateau`
    /// (which changes the rate at the end of epochs instead).
    pub fn lr_at_step(&self, lr0: f64, step: usize, horizon: usize) -> Option<f64> {
        if !self.by_step() {
            return None;
        }
        let every = self.decay_steps.unwrap_or(1).max(1);
        let held = step / every * every;
        match self.stop_lr {
            Some(stop) => {
                let frac = (held as f64 / horizon.max(1) as f64).min(1.0);
                Some((lr0 * (stop / lr0).powf(frac)).max(self.min_lr))
            }
            None => {
                let k = (held / every) as i32;
                Some((lr0 * self.factor.powi(k)).max(self.min_lr))
            }
        }
    }
}

/// `smooth_l1_beta`: PyTorch's default.
pub(crate) fn default_smooth_l1_beta() -> f64 {
    1.0
}

/// `patience`: epochs without improvement before early stopping.
fn default_patience() -> usize {
    10
}
/// `Optimizer.type`.
fn default_optimizer() -> String {
    "AdamW".into()
}
/// `Optimizer.betas`: PyTorch's.
fn default_adam_betas() -> [f64; 2] {
    [0.9, 0.999]
}
/// `Optimizer.eps`: PyTorch's.
fn default_adam_eps() -> f64 {
    1e-8
}
/// `Scheduler.type`.
fn default_scheduler() -> String {
    "ReduceLROnPlateau".into()
}
/// `Scheduler.factor`: halve the learning rate on a plateau.
fn default_plateau_factor() -> f64 {
    0.5
}
/// `Scheduler.patience`: epochs without improvement before reducing.
fn default_scheduler_patience() -> usize {
    5
}
/// `Scheduler.min_lr`.
fn default_min_lr() -> f64 {
    1e-5
}
/// `Scheduler.threshold`: relative improvement that counts.
fn default_plateau_threshold() -> f64 {
    1e-4
}

impl TrainConfig {
    /// `NeuralNetwork.Training`: sizes, optimiser, scheduler, clipping, precision, limits.
    pub(super) fn validate_training(&self) -> Result<()> {
        let t = self.training();
        let tr = "NeuralNetwork.Training";
        if t.num_epoch < 1 {
            return self.err(&format!("{tr}.num_epoch"), "must be >= 1");
        }
        if t.batch_size < 1 {
            return self.err(&format!("{tr}.batch_size"), "must be >= 1");
        }
        if t.val_batch_size == Some(0) {
            return self.err(&format!("{tr}.val_batch_size"), "must be >= 1");
        }
        if t.ddstore && t.batch_mixing == BatchMixing::Mixed {
            // The mixed step collates its batch from the ranks' own shards.
            return self.err(
                &format!("{tr}.ddstore"),
                "is not supported with batch_mixing \"mixed\" yet: use one or the other",
            );
        }
        if let Some(e) = t.ensemble.as_ref().filter(|e| e.bootstrap) {
            let other = if t.ddstore {
                Some("ddstore")
            } else if t.batch_mixing == BatchMixing::Mixed {
                Some("batch_mixing \"mixed\"")
            } else {
                None
            };
            if let Some(other) = other {
                return self.err(
                    &format!("{tr}.ensemble"),
                    format!(
                        "bootstrap true (size {}) is not supported with {tr}.{other} yet: use one or the other",
                        e.size
                    ),
                );
            }
        }
        let o = &t.optimizer;
        if o.kind != "AdamW" && o.kind != "Adam" {
            return self.err(
                &format!("{tr}.Optimizer.type"),
                format!("'{}': use \"AdamW\" or \"Adam\"", o.kind),
            );
        }
        if !(o.learning_rate.is_finite() && o.learning_rate > 0.0) {
            return self.err(
                &format!("{tr}.Optimizer.learning_rate"),
                format!("must be a positive number, got {}", o.learning_rate),
            );
        }
        if !(o.weight_decay() >= 0.0 && o.weight_decay().is_finite()) {
            return self.err(
                &format!("{tr}.Optimizer.weight_decay"),
                "must be a finite number >= 0",
            );
        }
        if !o.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            return self.err(&format!("{tr}.Optimizer.betas"), "each must be in [0, 1)");
        }
        if !(o.eps > 0.0 && o.eps.is_finite()) {
            return self.err(&format!("{tr}.Optimizer.eps"), "must be a positive number");
        }
        let s = &t.scheduler;
        match (s.kind.as_str(), s.decay_steps) {
            ("ReduceLROnPlateau", None) if s.stop_lr.is_none() => {}
            ("ReduceLROnPlateau", d) => {
                let key = if d.is_some() {
                    "decay_steps"
                } else {
                    "stop_lr"
                };
                return self.err(
                    &format!("{tr}.Scheduler.{key}"),
                    "only for \"type\": \"ExponentialDecay\"",
                );
            }
            ("ExponentialDecay", Some(n)) if n >= 1 => {}
            ("ExponentialDecay", None) if s.stop_lr.is_some() => {}
            ("ExponentialDecay", _) => {
                return self.err(
                    &format!("{tr}.Scheduler.decay_steps"),
                    "ExponentialDecay needs decay_steps >= 1 (optimiser steps between two multiplications by factor) or stop_lr (the rate at the end of the run)",
                );
            }
            (k, _) => {
                return self.err(
                    &format!("{tr}.Scheduler.type"),
                    format!("'{k}': \"ReduceLROnPlateau\" or \"ExponentialDecay\""),
                );
            }
        }
        if !(s.factor > 0.0 && s.factor < 1.0) {
            return self.err(
                &format!("{tr}.Scheduler.factor"),
                format!("must be in (0, 1), got {}", s.factor),
            );
        }
        if let Some(stop) = s.stop_lr {
            if !(stop > 0.0 && stop < o.learning_rate) {
                return self.err(
                    &format!("{tr}.Scheduler.stop_lr"),
                    format!(
                        "must be a positive number below Optimizer.learning_rate ({}), got {stop}",
                        o.learning_rate
                    ),
                );
            }
        }
        if let Some(e) = &t.energy_stopping {
            if e.window < 1 {
                return self.err(&format!("{tr}.EnergyStopping.window"), "must be >= 1");
            }
            if !(e.min_gain_per_kj.is_finite() && e.min_gain_per_kj > 0.0) {
                return self.err(
                    &format!("{tr}.EnergyStopping.min_gain_per_kj"),
                    format!("must be a positive number, got {}", e.min_gain_per_kj),
                );
            }
        }
        if let Some(d) = t.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return self.err(
                    &format!("{tr}.ema_decay"),
                    format!("must be in [0, 1) (e.g. 0.999), got {d}"),
                );
            }
        }
        if !(s.min_lr >= 0.0 && s.min_lr.is_finite()) {
            return self.err(
                &format!("{tr}.Scheduler.min_lr"),
                "must be a finite number >= 0",
            );
        }
        if !(s.threshold >= 0.0 && s.threshold.is_finite()) {
            return self.err(
                &format!("{tr}.Scheduler.threshold"),
                "must be a finite number >= 0",
            );
        }
        if let Some(c) = t.clip_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                return self.err(
                    &format!("{tr}.clip_grad_norm"),
                    format!("must be a positive number, got {c}"),
                );
            }
        }
        if let Some(m) = t.max_time {
            if !(m.is_finite() && m > 0.0) {
                return self.err(
                    &format!("{tr}.max_time"),
                    "must be a positive number of seconds",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_decay_multiplies_every_decay_steps_down_to_min_lr() {
        let s = Scheduler {
            kind: "ExponentialDecay".into(),
            factor: 0.5,
            decay_steps: Some(10),
            min_lr: 0.1,
            ..Scheduler::default()
        };
        assert_eq!(s.lr_at_step(1.0, 0, 0), Some(1.0));
        assert_eq!(s.lr_at_step(1.0, 9, 0), Some(1.0));
        assert_eq!(s.lr_at_step(1.0, 10, 0), Some(0.5));
        assert_eq!(s.lr_at_step(1.0, 25, 0), Some(0.25));
        assert_eq!(s.lr_at_step(1.0, 1000, 0), Some(0.1));
        assert_eq!(Scheduler::default().lr_at_step(1.0, 100, 0), None);
    }

    #[test]
    fn stop_lr_decays_to_stop_lr_at_the_horizon() {
        let s = Scheduler {
            kind: "ExponentialDecay".into(),
            stop_lr: Some(1e-5),
            min_lr: 0.0,
            ..Scheduler::default()
        };
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() <= 1e-12 * b;
        assert!(close(s.lr_at_step(1e-3, 0, 1000), 1e-3));
        assert!(close(s.lr_at_step(1e-3, 500, 1000), 1e-4));
        assert!(close(s.lr_at_step(1e-3, 1000, 1000), 1e-5));
        // Past the horizon the rate stays at stop_lr; a staircase holds it for decay_steps.
        assert!(close(s.lr_at_step(1e-3, 5000, 1000), 1e-5));
        let stair = Scheduler {
            decay_steps: Some(100),
            ..s.clone()
        };
        assert_eq!(
            stair.lr_at_step(1e-3, 599, 1000),
            stair.lr_at_step(1e-3, 500, 1000)
        );
        // min_lr still bounds it from below.
        let floor = Scheduler {
            min_lr: 1e-4,
            ..s.clone()
        };
        assert!(close(floor.lr_at_step(1e-3, 1000, 1000), 1e-4));
    }
}
