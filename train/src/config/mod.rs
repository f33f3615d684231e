//! The training configuration: JSON in HydraGNN's layout and key names where HydraGNN has them
//! (`NeuralNetwork.Architecture` / `Variables_of_interest` / `Training`), read once and validated
//! up front. Unknown keys are rejected and every error names the dotted key path
//! (`NeuralNetwork.Training.Optimizer.learning_rate`). The format is documented in
//! docs/training.md; examples/train/ has runnable configs.
//!
//! Keys that HydraGNN does not have (marked "extension" below) are the ones it hard-codes or
//! takes from its command line: the dataset list, the scheduler parameters, checkpoint cadence,
//! gradient clipping, the seed and wall-time limits.
//!
//! One file per section: `dataset` (`Dataset`), `architecture` (`NeuralNetwork.Architecture`),
//! `outputs` (`NeuralNetwork.Variables_of_interest`), `training` (`NeuralNetwork.Training`,
//! with the optimiser, scheduler and precision); each has its section's validation. This file
//! has the whole file, the small sections, and [`TrainConfig`].

mod architecture;
mod dataset;
mod outputs;
mod training;

use std::path::{Path, PathBuf};

use mlip::model::config::HeadKind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use architecture::{Architecture, HeadLayers, OutputHeads};
pub use dataset::{DatasetEntry, DatasetSection};
pub use dataset::{Sampling, SamplingMode};
pub use outputs::VariablesOfInterest;
pub(crate) use training::default_smooth_l1_beta;
pub use training::BatchMixing;
pub use training::EnsembleSpec;
pub use training::{EnergyStopping, LossType, Optimizer, Precision, Scheduler, Training};

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
    #[serde(default = "default_verbosity_level")]
    pub level: u32,
}

impl Default for Verbosity {
    fn default() -> Self {
        Verbosity {
            level: default_verbosity_level(),
        }
    }
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

/// `Visualization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Visualization {
    /// Parity-plot PNGs per branch and property at the end (default true).
    #[serde(default = "enabled")]
    pub create_plots: bool,
}

impl Default for Visualization {
    fn default() -> Self {
        Visualization {
            create_plots: enabled(),
        }
    }
}

/// `Verbosity.level`: per-epoch lines and the progress bar.
fn default_verbosity_level() -> u32 {
    2
}
/// Default of the switches that are on unless turned off.
fn enabled() -> bool {
    true
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
        fn keyed<E: std::fmt::Display>(path: &Path, e: serde_path_to_error::Error<E>) -> Error {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let key = if key.is_empty() || key == "." {
                ".".to_string()
            } else {
                key
            };
            Error::config(path, key, format!("{inner}"))
        }
        // HydraGNN's `mpnn_type: "PNAPlus"` is the engine's PNA with the Bessel-basis option:
        // read it as "PNA" and remember the variant (a file without it takes the direct path,
        // whose errors carry line numbers).
        const ARCH_TYPE: &str = "/NeuralNetwork/Architecture/mpnn_type";
        let mut pna_plus = false;
        let mut config: Config = if text.contains("PNAPlus") {
            let mut v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| Error::config(path, ".", e.to_string()))?;
            if let Some(t) = v.pointer_mut(ARCH_TYPE).filter(|t| *t == "PNAPlus") {
                *t = "PNA".into();
                pna_plus = true;
            }
            serde_path_to_error::deserialize(v).map_err(|e| keyed(path, e))?
        } else {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| keyed(path, e))?
        };
        config.neural_network.architecture.pna_plus = pna_plus;
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

    /// Checks what serde cannot: sizes, lengths, names, weights, supported options (section by
    /// section, in file order).
    pub fn validate(&self) -> Result<()> {
        self.validate_dataset()?;
        self.validate_architecture()?;
        self.validate_outputs()?;
        self.validate_training()
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
    fn exponential_decay_needs_decay_steps() {
        let with = |sched: &str| {
            MIN.replace(
                r#""Optimizer": {"learning_rate": 0.001}"#,
                &format!(r#""Optimizer": {{"learning_rate": 0.001}}, "Scheduler": {sched}"#),
            )
        };
        let ok = with(r#"{"type": "ExponentialDecay", "factor": 0.9, "decay_steps": 100}"#);
        let c = TrainConfig::parse(&ok, Path::new("cfg.json")).unwrap();
        assert_eq!(
            c.training().scheduler.lr_at_step(0.001, 250, 0),
            Some(0.001 * 0.81)
        );
        let e = TrainConfig::parse(
            &with(r#"{"type": "ExponentialDecay", "factor": 0.9}"#),
            Path::new("cfg.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Scheduler.decay_steps"), "{e}");
        // stop_lr alone is enough; it must lie below the initial rate; and only for this type.
        let c = TrainConfig::parse(
            &with(r#"{"type": "ExponentialDecay", "stop_lr": 1e-6}"#),
            Path::new("cfg.json"),
        )
        .unwrap();
        assert_eq!(c.training().scheduler.stop_lr, Some(1e-6));
        for (sched, key) in [
            (
                r#"{"type": "ExponentialDecay", "stop_lr": 0.01}"#,
                "Scheduler.stop_lr",
            ),
            (
                r#"{"type": "ReduceLROnPlateau", "stop_lr": 1e-6}"#,
                "Scheduler.stop_lr",
            ),
        ] {
            let e = TrainConfig::parse(&with(sched), Path::new("cfg.json"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{sched}: {e}");
        }
        let e = TrainConfig::parse(&with(r#"{"type": "Cosine"}"#), Path::new("cfg.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Scheduler.type") && e.contains("ExponentialDecay"),
            "{e}"
        );
    }

    #[test]
    fn ema_decay_must_be_below_one() {
        let with = |d: &str| {
            MIN.replace(
                "\"batch_size\": 2",
                &format!("\"batch_size\": 2, \"ema_decay\": {d}"),
            )
        };
        let c = TrainConfig::parse(&with("0.999"), Path::new("cfg.json")).unwrap();
        assert_eq!(c.training().ema_decay, Some(0.999));
        for bad in ["1.0", "-0.1"] {
            let e = TrainConfig::parse(&with(bad), Path::new("cfg.json"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("Training.ema_decay"), "{bad}: {e}");
        }
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
