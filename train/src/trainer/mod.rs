//! The training loop: datasets checked against the config before anything is written, a model
//! with one output branch per dataset, seeded batches drawn per dataset in an interleaved order,
//! data parallelism over MPI ranks, AdamW with reduce-on-plateau and early stopping, atomic
//! checkpoints, per-epoch metrics, the best model exported, parity plots at the end.
//!
//! Batches. Every epoch each dataset's trainset is shuffled (ChaCha8 seeded by the config's seed,
//! stream = epoch) and cut into batches of `batch_size` graphs; the batches of all datasets are
//! then shuffled together. A batch touches one dataset, so it runs through that dataset's branch.
//! That is the default; with `Training.batch_mixing: "mixed"` a batch holds samples of several
//! datasets, each through its own branch in one pass (`mixed`), and `Dataset.sampling` chooses
//! how many draws of each dataset an epoch holds (`plan::batch_plan`).
//! The plan depends only on (seed, epoch, dataset sizes, batch size), never on the number of
//! ranks: each rank owns a contiguous shard of every split (it reads only that shard) and takes
//! the graphs of each global batch that fall in it. Loss terms are normalised by the global
//! batch's counts, so summing gradients over ranks gives the single-rank gradient exactly.
//!
//! Output directory (rank 0 writes): `steps.csv` (loss per step), `metrics.csv` and
//! `metrics.json` (per epoch, per branch), `checkpoint.st`, `best.model` (the engine's model
//! file, with provenance), `parity_<branch>_<output>.png`.
//!
//! The parts: `plan` (datasets checked against the config, the model's architecture, the
//! batches of an epoch), `mixed` (the step on a batch of several datasets), `setup` (the model and this rank's shards), `resume` (checkpoints
//! and --resume), `run` (the loop: steps, validation, stopping), `outputs` (steps.csv,
//! metrics, the best model, parity plots).

pub mod ensemble;
mod finetune;
mod mixed;
mod outputs;
mod plan;
mod resume;
mod run;
mod setup;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use mlip::Model;
use tch::{Device, Kind};

use crate::checkpoint::TrainState;
use crate::config::TrainConfig;
use crate::dist::Dist;
use crate::error::Result;
use crate::metrics::BranchMetrics;
use crate::optim::{AdamW, Ema};

pub use finetune::warmup_lr;
pub use outputs::EpochRecord;
pub use plan::{batch_plan, epoch_plan, epoch_quotas, plan_model, PlannedBatch};
pub use setup::{load_model, new_model, DatasetRun};

use outputs::StepLog;

/// File names inside the output directory.
pub mod files {
    /// Per-step losses.
    pub const STEPS: &str = "steps.csv";
    /// Per-epoch metrics (CSV).
    pub const METRICS_CSV: &str = "metrics.csv";
    /// Per-epoch metrics and the best model's final metrics (JSON).
    pub const METRICS_JSON: &str = "metrics.json";
    /// The checkpoint.
    pub const CHECKPOINT: &str = "checkpoint.st";
    /// The best model.
    pub const BEST_MODEL: &str = "best.model";
}

/// How to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint.st`.
    pub resume: bool,
    /// The command line, recorded in the model's provenance.
    pub command: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Steps taken in total.
    pub steps: usize,
    /// Epochs completed.
    pub epochs: usize,
    /// Why it stopped (`num_epoch`, `early_stopping`, `energy_stopping`, `max_time`, `max_steps`).
    pub stopped: String,
    /// The best epoch and its validation metrics (None if no epoch finished).
    pub best: Option<(usize, BTreeMap<String, BranchMetrics>)>,
    /// Metrics of the best model per split and branch, when training finished.
    pub final_metrics: BTreeMap<String, BTreeMap<String, BranchMetrics>>,
}

/// A training run.
pub struct Trainer<'a> {
    cfg: &'a TrainConfig,
    opts: TrainOptions,
    dist: &'a Dist,
    /// The model being trained.
    pub model: Model,
    datasets: Vec<DatasetRun>,
    opt: AdamW,
    /// The moving average of the weights (`Training.ema_decay`).
    ema: Option<Ema>,
    state: TrainState,
    kind: Kind,
    device: Device,
    log: StepLog,
    started: Instant,
    base_elapsed: f64,
    verbose: u32,
}

impl Trainer<'_> {
    /// The datasets (branch, shards).
    pub fn datasets(&self) -> &[DatasetRun] {
        &self.datasets
    }

    /// The training state (epoch, step, history ...).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Training seconds: earlier sessions (from the checkpoint) plus this one.
    fn elapsed(&self) -> f64 {
        self.base_elapsed + self.started.elapsed().as_secs_f64()
    }
}

/// Runs a whole training (the `hydragnn train` command as a library call).
pub fn train(cfg: &TrainConfig, opts: TrainOptions, dist: &Dist) -> Result<TrainSummary> {
    let mut t = Trainer::new(cfg, opts, dist)?;
    t.run()
}
