//! The `NeuralNetwork.Variables_of_interest` section: the outputs (heads) and their weights.

use mlip::model::config::HeadKind;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::error::Result;

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

impl TrainConfig {
    /// `NeuralNetwork.Variables_of_interest` (and `Architecture.task_weights`, one per output): names, types, widths.
    pub(super) fn validate_outputs(&self) -> Result<()> {
        let a = self.arch();
        let v = self.variables();
        let t = self.training();
        let arch = "NeuralNetwork.Architecture";
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

        Ok(())
    }
}
