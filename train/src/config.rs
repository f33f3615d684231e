//! The training configuration: JSON in HydraGNN's layout and key names where HydraGNN has them
//! (`NeuralNetwork.Architecture` / `Variables_of_interest` / `Training`), read once and validated
//! up front. Unknown keys are rejected and every error names the dotted key path
//! (`NeuralNetwork.Training.Optimizer.learning_rate`). The format is documented in
//! docs/training.md; examples/train/ has runnable configs.
//!
//! Keys that HydraGNN does not have (marked "extension" below) are the ones it hard-codes or
//! takes from its command line: the dataset list, the scheduler parameters, checkpoint cadence,
//! gradient clipping, the seed and wall-time limits.

use std::path::{Path, PathBuf};

use mlip::model::config::{Activation, HeadKind, MpnnType, RadialType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Logging verbosity.
    #[serde(rename = "Verbosity", default)]
    pub verbosity: Verbosity,
    /// The datasets (one output branch each).
    #[serde(rename = "Dataset")]
    pub dataset: DatasetSection,
    /// Model, outputs and training.
    #[serde(rename = "NeuralNetwork")]
    pub neural_network: NeuralNetwork,
    /// Plots at the end of training.
    #[serde(rename = "Visualization", default)]
    pub visualization: Visualization,
}

/// `Verbosity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verbosity {
    /// 0: errors only; 1: per-epoch lines; 2 (default): also the progress bar on a terminal.
    #[serde(default = "two")]
    pub level: u32,
}

impl Default for Verbosity {
    fn default() -> Self {
        Verbosity { level: 2 }
    }
}

/// `Dataset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// Name of the run (HydraGNN's `Dataset.name`; the default output directory is `logs/<name>`).
    pub name: String,
    /// Storage format; only `adios` (the project's ADIOS2 BP schema).
    #[serde(default = "adios")]
    pub format: String,
    /// Extension: the datasets, one output branch each, in this order.
    pub datasets: Vec<DatasetEntry>,
}

/// One dataset of `Dataset.datasets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    /// Branch name (also names the per-branch metrics and plots).
    pub name: String,
    /// The BP dataset; relative paths are relative to the config file's directory.
    pub path: PathBuf,
    /// The outputs trained on this dataset (a subset of `Variables_of_interest.output_names`);
    /// default: all of them.
    #[serde(default)]
    pub output_names: Option<Vec<String>>,
}

/// `NeuralNetwork`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuralNetwork {
    /// The model.
    #[serde(rename = "Architecture")]
    pub architecture: Architecture,
    /// The outputs.
    #[serde(rename = "Variables_of_interest")]
    pub variables_of_interest: VariablesOfInterest,
    /// The optimisation.
    #[serde(rename = "Training")]
    pub training: Training,
}

/// `NeuralNetwork.Architecture`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Message-passing backbone: `SchNet` or `PAINN`.
    pub mpnn_type: MpnnType,
    /// Cutoff radius (Angstrom).
    pub radius: f64,
    /// Width of node features.
    pub hidden_dim: i64,
    /// Number of message-passing layers.
    pub num_conv_layers: usize,
    /// Number of radial basis functions (HydraGNN's SchNet calls it `num_gaussians`).
    #[serde(default = "twenty", alias = "num_gaussians")]
    pub num_radial: i64,
    /// Extension: radial basis, `gaussian` or `bessel` (default: gaussian for SchNet, bessel for PaiNN).
    #[serde(default)]
    pub radial_type: Option<RadialType>,
    /// Order p of the polynomial cutoff envelope (default 6).
    #[serde(default)]
    pub envelope_exponent: Option<i32>,
    /// Non-linearity: `silu` (default), `ssp`, `tanh`, `relu`.
    #[serde(default)]
    pub activation_function: Activation,
    /// When false, every structure is treated as non-periodic.
    #[serde(default = "yes")]
    pub periodic_boundary_conditions: bool,
    /// Hidden layers of the output heads, by head type.
    #[serde(default)]
    pub output_heads: OutputHeads,
    /// Pooling of graph outputs other than the energy (always summed): `mean` (default) or `sum`.
    #[serde(default = "mean")]
    pub graph_pooling: String,
    /// Loss weight of each output of `Variables_of_interest.output_names` (default 1 each). With
    /// `compute_grad_energy` the energy's terms are weighted by the three weights below instead.
    #[serde(default)]
    pub task_weights: Option<Vec<f64>>,
    /// Extension: start every output head's last layer at zero (default true), so that training
    /// starts from the reference energies (E = Σ e_Z, F = 0) instead of the large random
    /// energies of a fresh message-passing stack; the first steps then fit the residual.
    #[serde(default = "yes")]
    pub zero_init_heads: bool,
    /// Weight of the total-energy term (default 1).
    #[serde(default = "one_f")]
    pub energy_weight: f64,
    /// Weight of the energy-per-atom term (default 0).
    #[serde(default)]
    pub energy_peratom_weight: f64,
    /// Weight of the force term (default 100; used with `compute_grad_energy`).
    #[serde(default = "hundred")]
    pub force_weight: f64,
}

/// `NeuralNetwork.Architecture.output_heads`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputHeads {
    /// Hidden layers of graph-level heads.
    #[serde(default)]
    pub graph: Option<HeadLayers>,
    /// Hidden layers of node-level heads.
    #[serde(default)]
    pub node: Option<HeadLayers>,
}

/// Hidden layers of one head type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadLayers {
    /// Number of hidden layers (must equal the length of `dim_headlayers`).
    pub num_headlayers: usize,
    /// Their widths.
    pub dim_headlayers: Vec<i64>,
}

/// `NeuralNetwork.Variables_of_interest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariablesOfInterest {
    /// Output names: `energy` (the potential energy, a graph output), and dataset properties
    /// (per-frame scalars such as `gap`, per-atom columns such as `charge`).
    pub output_names: Vec<String>,
    /// `graph` or `node`, one per output.
    #[serde(rename = "type")]
    pub types: Vec<HeadKind>,
    /// Width of each output (default: 1 for graph outputs, the dataset's column width for node outputs).
    #[serde(default)]
    pub output_dim: Option<Vec<i64>>,
    /// Only `false`: targets are trained in their own units (energies relative to the fitted
    /// per-element reference energies).
    #[serde(default)]
    pub denormalize_output: bool,
}

/// Loss function of every term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossType {
    /// Mean squared error.
    #[default]
    Mse,
    /// Mean absolute error.
    Mae,
}

/// Floating-point precision of weights and computations: the engine's one model of it
/// ("fp32"/"fp64", also "float32"/"float64" ...; bf16 is rejected when the file is read, with a
/// message saying that the engine computes in float32 or float64).
pub use mlip::Precision;

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
    /// Forces as -dE/dx by autograd, in the loss with `force_weight` (needs `energy` and forces in every dataset).
    #[serde(default)]
    pub compute_grad_energy: bool,
    /// Stop when the validation loss has not improved for `patience` epochs.
    #[serde(rename = "EarlyStopping", default)]
    pub early_stopping: bool,
    /// Early-stopping patience in epochs (default 10).
    #[serde(default = "ten")]
    pub patience: usize,
    /// Extension: the learning-rate schedule (HydraGNN hard-codes ReduceLROnPlateau(0.5, 5, 1e-5)).
    #[serde(rename = "Scheduler", default)]
    pub scheduler: Scheduler,
    /// Write checkpoints (default true).
    #[serde(rename = "Checkpoint", default = "yes")]
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
    /// `fp32` (default) or `fp64`.
    #[serde(default)]
    pub precision: Precision,
    /// Extension: stop (with a checkpoint and the best model written) after this many seconds.
    #[serde(default)]
    pub max_time: Option<f64>,
    /// Extension: stop after this many optimiser steps in total.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Extension: graphs per evaluation batch (default: `batch_size`).
    #[serde(default)]
    pub val_batch_size: Option<usize>,
}

/// `NeuralNetwork.Training.Optimizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    /// `AdamW` (default) or `Adam` (L2 penalty added to the gradient instead of decoupled decay).
    #[serde(rename = "type", default = "adamw")]
    pub kind: String,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// Weight decay (default 0.01 for AdamW, 0 for Adam, as in PyTorch).
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// (beta1, beta2), default (0.9, 0.999).
    #[serde(default = "betas")]
    pub betas: [f64; 2],
    /// Denominator epsilon, default 1e-8.
    #[serde(default = "adam_eps")]
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

/// `NeuralNetwork.Training.Scheduler` (PyTorch's ReduceLROnPlateau, mode min, relative threshold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduler {
    /// Only `ReduceLROnPlateau`.
    #[serde(rename = "type", default = "plateau")]
    pub kind: String,
    /// Multiplier of the learning rate on a plateau.
    #[serde(default = "half")]
    pub factor: f64,
    /// Epochs without improvement before reducing.
    #[serde(default = "five")]
    pub patience: usize,
    /// Lower bound of the learning rate.
    #[serde(default = "min_lr")]
    pub min_lr: f64,
    /// Relative improvement that counts.
    #[serde(default = "threshold")]
    pub threshold: f64,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            kind: plateau(),
            factor: 0.5,
            patience: 5,
            min_lr: 1e-5,
            threshold: 1e-4,
        }
    }
}

/// `Visualization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Visualization {
    /// Parity-plot PNGs per branch and property at the end (default true).
    #[serde(default = "yes")]
    pub create_plots: bool,
}

impl Default for Visualization {
    fn default() -> Self {
        Visualization { create_plots: true }
    }
}

fn two() -> u32 {
    2
}
fn five() -> usize {
    5
}
fn ten() -> usize {
    10
}
fn twenty() -> i64 {
    20
}
fn yes() -> bool {
    true
}
fn one_f() -> f64 {
    1.0
}
fn hundred() -> f64 {
    100.0
}
fn half() -> f64 {
    0.5
}
fn min_lr() -> f64 {
    1e-5
}
fn threshold() -> f64 {
    1e-4
}
fn adam_eps() -> f64 {
    1e-8
}
fn betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn adios() -> String {
    "adios".into()
}
fn mean() -> String {
    "mean".into()
}
fn adamw() -> String {
    "AdamW".into()
}
fn plateau() -> String {
    "ReduceLROnPlateau".into()
}

/// One output (head) as the trainer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Name (`energy` or a dataset property).
    pub name: String,
    /// Graph or node level.
    pub kind: HeadKind,
    /// Width, if the config gives one.
    pub dim: Option<i64>,
    /// Loss weight.
    pub weight: f64,
}

/// A validated config with its file path (relative dataset paths resolve against its directory).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// The parsed config.
    pub config: Config,
    /// The file it came from.
    pub path: PathBuf,
    /// The file's text (stored with checkpoints and in the model's provenance).
    pub text: String,
}

impl TrainConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text (`path` is used for messages and relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let key = if key.is_empty() || key == "." {
                ".".to_string()
            } else {
                key
            };
            Error::config(path, key, format!("{inner}"))
        })?;
        let tc = TrainConfig {
            config,
            path: path.to_path_buf(),
            text: text.to_string(),
        };
        tc.validate()?;
        Ok(tc)
    }

    fn err<T>(&self, key: &str, msg: impl Into<String>) -> Result<T> {
        Err(Error::config(&self.path, key, msg))
    }

    /// Checks what serde cannot: sizes, lengths, names, weights, supported options.
    pub fn validate(&self) -> Result<()> {
        let c = &self.config;
        let ds = &c.dataset;
        if ds.format != "adios" {
            return self.err(
                "Dataset.format",
                format!(
                    "'{}' is not supported; ingest extxyz with `hydragnn ingest` and use \"adios\"",
                    ds.format
                ),
            );
        }
        if ds.datasets.is_empty() {
            return self.err("Dataset.datasets", "list at least one dataset");
        }
        if ds.name.is_empty() || ds.name.contains('/') {
            return self.err("Dataset.name", "must be a non-empty name without '/'");
        }
        let a = &c.neural_network.architecture;
        let v = &c.neural_network.variables_of_interest;
        let t = &c.neural_network.training;
        for (i, d) in ds.datasets.iter().enumerate() {
            let key = format!("Dataset.datasets[{i}].name");
            if d.name.is_empty()
                || !d
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
            {
                return self.err(&key, format!("'{}': use letters, digits, '_' and '-' only (it names the branch, its weights and files)", d.name));
            }
            if ds.datasets[..i].iter().any(|o| o.name == d.name) {
                return self.err(&key, format!("'{}' is used twice", d.name));
            }
            if let Some(names) = &d.output_names {
                for (k, n) in names.iter().enumerate() {
                    if !v.output_names.contains(n) {
                        return self.err(
                            &format!("Dataset.datasets[{i}].output_names[{k}]"),
                            format!("'{n}' is not one of NeuralNetwork.Variables_of_interest.output_names {:?}", v.output_names),
                        );
                    }
                }
                if t.compute_grad_energy && !names.iter().any(|n| n == "energy") {
                    return self.err(
                        &format!("Dataset.datasets[{i}].output_names"),
                        "compute_grad_energy needs 'energy' in every dataset",
                    );
                }
            }
        }

        let arch = "NeuralNetwork.Architecture";
        if !(a.radius.is_finite() && a.radius > 0.0) {
            return self.err(
                &format!("{arch}.radius"),
                format!("must be a positive number, got {}", a.radius),
            );
        }
        if a.hidden_dim < 1 {
            return self.err(
                &format!("{arch}.hidden_dim"),
                format!("must be >= 1, got {}", a.hidden_dim),
            );
        }
        if a.num_conv_layers < 1 {
            return self.err(&format!("{arch}.num_conv_layers"), "must be >= 1");
        }
        if a.num_radial < 1 {
            return self.err(
                &format!("{arch}.num_radial"),
                format!("must be >= 1, got {}", a.num_radial),
            );
        }
        if let Some(p) = a.envelope_exponent {
            if p < 2 {
                return self.err(
                    &format!("{arch}.envelope_exponent"),
                    format!("must be >= 2, got {p}"),
                );
            }
        }
        if a.graph_pooling != "mean" && a.graph_pooling != "sum" {
            return self.err(
                &format!("{arch}.graph_pooling"),
                format!("'{}': use \"mean\" or \"sum\"", a.graph_pooling),
            );
        }
        for (name, h) in [
            ("graph", &a.output_heads.graph),
            ("node", &a.output_heads.node),
        ] {
            if let Some(h) = h {
                if h.num_headlayers != h.dim_headlayers.len() {
                    return self.err(
                        &format!("{arch}.output_heads.{name}.num_headlayers"),
                        format!(
                            "is {} but dim_headlayers lists {} widths",
                            h.num_headlayers,
                            h.dim_headlayers.len()
                        ),
                    );
                }
                if let Some(k) = h.dim_headlayers.iter().position(|&d| d < 1) {
                    return self.err(
                        &format!("{arch}.output_heads.{name}.dim_headlayers[{k}]"),
                        "must be >= 1",
                    );
                }
            }
        }
        for (key, w) in [
            ("energy_weight", a.energy_weight),
            ("energy_peratom_weight", a.energy_peratom_weight),
            ("force_weight", a.force_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return self.err(
                    &format!("{arch}.{key}"),
                    format!("must be a finite number >= 0, got {w}"),
                );
            }
        }

        let voi = "NeuralNetwork.Variables_of_interest";
        if v.output_names.is_empty() {
            return self.err(&format!("{voi}.output_names"), "list at least one output");
        }
        if v.types.len() != v.output_names.len() {
            return self.err(
                &format!("{voi}.type"),
                format!(
                    "has {} entries for {} output_names",
                    v.types.len(),
                    v.output_names.len()
                ),
            );
        }
        if let Some(d) = &v.output_dim {
            if d.len() != v.output_names.len() {
                return self.err(
                    &format!("{voi}.output_dim"),
                    format!(
                        "has {} entries for {} output_names",
                        d.len(),
                        v.output_names.len()
                    ),
                );
            }
            if let Some(k) = d.iter().position(|&x| x < 1) {
                return self.err(&format!("{voi}.output_dim[{k}]"), "must be >= 1");
            }
        }
        if let Some(w) = &a.task_weights {
            if w.len() != v.output_names.len() {
                return self.err(
                    &format!("{arch}.task_weights"),
                    format!(
                        "has {} entries for {} output_names",
                        w.len(),
                        v.output_names.len()
                    ),
                );
            }
            if let Some(k) = w.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
                return self.err(
                    &format!("{arch}.task_weights[{k}]"),
                    "must be a finite number >= 0",
                );
            }
        }
        if v.denormalize_output {
            return self.err(
                &format!("{voi}.denormalize_output"),
                "only false is supported (targets are trained in their own units)",
            );
        }
        for (k, n) in v.output_names.iter().enumerate() {
            let key = format!("{voi}.output_names[{k}]");
            if v.output_names[..k].contains(n) {
                return self.err(&key, format!("'{n}' is listed twice"));
            }
            match n.as_str() {
                "forces" => {
                    return self.err(
                        &key,
                        "'forces' are not a head: they are -dE/dx of the energy; set NeuralNetwork.Training.compute_grad_energy = true",
                    )
                }
                "stress" => return self.err(&key, "training on stress is not supported yet"),
                "" => return self.err(&key, "empty name"),
                _ => {}
            }
            if n == "energy" {
                if v.types[k] != HeadKind::Graph {
                    return self.err(
                        &format!("{voi}.type[{k}]"),
                        "the 'energy' output must be of type \"graph\"",
                    );
                }
                if v.output_dim.as_ref().is_some_and(|d| d[k] != 1) {
                    return self.err(
                        &format!("{voi}.output_dim[{k}]"),
                        "the 'energy' output has dimension 1",
                    );
                }
            }
        }
        if t.compute_grad_energy && !v.output_names.iter().any(|n| n == "energy") {
            return self.err(
                "NeuralNetwork.Training.compute_grad_energy",
                "needs an 'energy' output in Variables_of_interest.output_names",
            );
        }

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
        if s.kind != "ReduceLROnPlateau" {
            return self.err(
                &format!("{tr}.Scheduler.type"),
                format!("'{}': only \"ReduceLROnPlateau\"", s.kind),
            );
        }
        if !(s.factor > 0.0 && s.factor < 1.0) {
            return self.err(
                &format!("{tr}.Scheduler.factor"),
                format!("must be in (0, 1), got {}", s.factor),
            );
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

    /// The section shortcuts.
    pub fn arch(&self) -> &Architecture {
        &self.config.neural_network.architecture
    }
    /// `NeuralNetwork.Training`.
    pub fn training(&self) -> &Training {
        &self.config.neural_network.training
    }
    /// `NeuralNetwork.Variables_of_interest`.
    pub fn variables(&self) -> &VariablesOfInterest {
        &self.config.neural_network.variables_of_interest
    }

    /// The path of dataset `i`, resolved against the config file's directory.
    pub fn dataset_path(&self, i: usize) -> PathBuf {
        let p = &self.config.dataset.datasets[i].path;
        if p.is_absolute() {
            p.clone()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// The outputs trained on dataset `i`, in `output_names` order.
    pub fn outputs_of(&self, i: usize) -> Vec<Output> {
        let v = self.variables();
        let a = self.arch();
        let only = self.config.dataset.datasets[i].output_names.as_ref();
        v.output_names
            .iter()
            .enumerate()
            .filter(|(_, n)| only.is_none_or(|o| o.contains(n)))
            .map(|(k, n)| Output {
                name: n.clone(),
                kind: v.types[k],
                dim: v.output_dim.as_ref().map(|d| d[k]),
                weight: a.task_weights.as_ref().map_or(1.0, |w| w[k]),
            })
            .collect()
    }

    /// Hidden layer widths of heads of `kind` (default: one layer of `hidden_dim`).
    pub fn head_layers(&self, kind: HeadKind) -> Vec<i64> {
        let a = self.arch();
        let h = match kind {
            HeadKind::Graph => &a.output_heads.graph,
            HeadKind::Node => &a.output_heads.node,
        };
        h.as_ref()
            .map_or(vec![a.hidden_dim], |h| h.dim_headlayers.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"{
        "Dataset": {"name": "t", "datasets": [{"name": "a", "path": "a.bp"}]},
        "NeuralNetwork": {
            "Architecture": {"mpnn_type": "SchNet", "radius": 4.0, "hidden_dim": 8, "num_conv_layers": 1},
            "Variables_of_interest": {"output_names": ["energy"], "type": ["graph"]},
            "Training": {"num_epoch": 1, "batch_size": 2, "Optimizer": {"learning_rate": 0.001}, "compute_grad_energy": true}
        }
    }"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = TrainConfig::parse(MIN, Path::new("x/cfg.json")).unwrap();
        assert_eq!(c.training().optimizer.kind, "AdamW");
        assert_eq!(c.training().optimizer.weight_decay(), 0.01);
        assert_eq!(c.arch().force_weight, 100.0);
        assert_eq!(c.dataset_path(0), Path::new("x/a.bp"));
    }

    #[test]
    fn unknown_key_names_its_path() {
        let text = MIN.replace("\"batch_size\": 2", "\"batch_size\": 2, \"bogus\": 1");
        let e = TrainConfig::parse(&text, Path::new("cfg.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NeuralNetwork.Training") && e.contains("bogus"),
            "{e}"
        );
    }

    #[test]
    fn forces_output_is_explained() {
        let text = MIN.replace(
            r#"["energy"], "type": ["graph"]"#,
            r#"["energy", "forces"], "type": ["graph", "node"]"#,
        );
        let e = TrainConfig::parse(&text, Path::new("cfg.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("output_names[1]") && e.contains("compute_grad_energy"),
            "{e}"
        );
    }
}
