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
        }

        Ok(())
    }
}
