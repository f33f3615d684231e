//! The `Dataset` section: the run's name and its datasets, one output branch each.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::error::Result;

/// `Dataset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// Name of the run (HydraGNN's `Dataset.name`; the default output directory is `logs/<name>`).
    pub name: String,
    /// Storage format; only `adios` (the project's ADIOS2 BP schema).
    #[serde(default = "default_format")]
    pub format: String,
    /// Extension: the datasets, one output branch each, in this order.
    pub datasets: Vec<DatasetEntry>,
    /// Extension: how the training samples of an epoch are drawn from the datasets (default:
    /// proportional, every sample once).
    #[serde(default)]
    pub sampling: Sampling,
}

/// `Dataset.sampling.mode`: how many of an epoch's draws each dataset gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SamplingMode {
    /// Every training sample of every dataset exactly once per epoch (today's behaviour).
    #[default]
    Proportional,
    /// The same number of draws from every dataset (`p_d = 1/K`).
    Uniform,
    /// `p_d ∝ n_d^alpha` (alpha 1: proportional, alpha 0: uniform).
    Temperature,
}

/// `Dataset.sampling`: the draws of an epoch over imbalanced datasets. An epoch is always
/// `N = Σ_d n_d` draws (the trainsets' total); dataset d gets `round(p_d·N)` of them (largest
/// remainders), taken from its shuffled trainset and reshuffled each time it is used up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// `proportional` (default), `uniform` or `temperature`.
    #[serde(default)]
    pub mode: SamplingMode,
    /// The exponent of `temperature` (`p_d ∝ n_d^alpha`); default 0.5.
    #[serde(default)]
    pub alpha: Option<f64>,
}

impl Sampling {
    /// The exponent in effect for `temperature`.
    pub fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(0.5)
    }

    /// Every dataset's share of an epoch's draws, from the trainset sizes `sizes`.
    pub fn probabilities(&self, sizes: &[usize]) -> Vec<f64> {
        let w: Vec<f64> = sizes
            .iter()
            .map(|&n| match self.mode {
                SamplingMode::Proportional => n as f64,
                SamplingMode::Uniform => 1.0,
                SamplingMode::Temperature => (n as f64).powf(self.alpha()),
            })
            .collect();
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total.max(f64::MIN_POSITIVE)).collect()
    }
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
    /// Extension: weight of this dataset's loss in the total (default 1).
    #[serde(default = "default_loss_weight")]
    pub loss_weight: f64,
}

/// `Dataset.datasets[].loss_weight`.
fn default_loss_weight() -> f64 {
    1.0
}

/// `Dataset.format`: the project's ADIOS2 BP schema.
fn default_format() -> String {
    "adios".into()
}

impl TrainConfig {
    /// `Dataset`: the format, the run name, and every dataset's branch name and outputs.
    pub(super) fn validate_dataset(&self) -> Result<()> {
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
        let v = self.variables();
        let t = self.training();
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
            if !(d.loss_weight.is_finite() && d.loss_weight >= 0.0) {
                return self.err(
                    &format!("Dataset.datasets[{i}].loss_weight"),
                    format!("must be a finite number >= 0, got {}", d.loss_weight),
                );
            }
        }
        if let Some(a) = ds.sampling.alpha {
            if ds.sampling.mode != SamplingMode::Temperature {
                return self.err(
                    "Dataset.sampling.alpha",
                    format!(
                        "is {a} but only \"mode\": \"temperature\" uses it (mode is {:?})",
                        ds.sampling.mode
                    ),
                );
            }
            if !(a.is_finite() && (0.0..=1.0).contains(&a)) {
                return self.err(
                    "Dataset.sampling.alpha",
                    format!("must be in [0, 1] (0: uniform, 1: proportional), got {a}"),
                );
            }
        }

        Ok(())
    }
}
