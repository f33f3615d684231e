//! `hydragnn train CONFIG.json [--resume] [--out DIR]`: validates the config and datasets, then
//! trains (data-parallel when launched by mpirun/srun; one rank otherwise).

use std::path::PathBuf;

use anyhow::Context;
use hydragnn_train::{Dist, TrainConfig, TrainOptions};

use super::outln;

/// Arguments of `hydragnn train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The JSON config (HydraGNN layout; see docs/training.md).
    config: PathBuf,
    /// Continue from the checkpoint in the output directory.
    #[arg(long)]
    resume: bool,
    /// Output directory (default: logs/<Dataset.name>).
    #[arg(short, long)]
    out: Option<PathBuf>,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    // Validate before MPI starts: a bad config fails fast, with the key named, on every rank.
    let cfg = TrainConfig::load(&a.config)?;
    let dist = if std::env::var_os("HYDRAGNN_NO_MPI").is_some() {
        Dist::single()
    } else {
        Dist::init()
    };
    dist.set_threads()?;
    let out_dir = a
        .out
        .unwrap_or_else(|| PathBuf::from("logs").join(&cfg.config.dataset.name));
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if dist.is_root() && cfg.config.verbosity.level >= 1 {
        eprintln!(
            "hydragnn train: {} rank(s), {} libtorch thread(s) per rank, output {}",
            dist.size(),
            tch::get_num_threads(),
            out_dir.display()
        );
    }
    let opts = TrainOptions {
        out_dir: out_dir.clone(),
        resume: a.resume,
        command,
    };
    let s = hydragnn_train::train(&cfg, opts, &dist)
        .with_context(|| format!("training {}", a.config.display()))?;
    if dist.is_root() {
        let best = s
            .best
            .as_ref()
            .map_or("none".to_string(), |(e, _)| format!("epoch {e}"));
        outln!(
            "stopped: {} after {} epochs, {} steps; best: {best}",
            s.stopped,
            s.epochs,
            s.steps
        )?;
        for (split, per) in &s.final_metrics {
            for (branch, m) in per {
                outln!("best model, {split} {branch}: {}", m.summary())?;
            }
        }
        outln!("outputs in {}", s.out_dir.display())?;
    }
    Ok(())
}
