//! `hydragnn train CONFIG.json [--resume] [--out DIR]`: validates the config and datasets, then
//! trains (data-parallel when launched by mpirun/srun; one rank otherwise). `--ensemble K`
//! (or the config key `Training.ensemble`, whose size the flag overrides) trains K members that
//! differ by seed and writes the ensemble file ([`hydragnn_train::trainer::ensemble`],
//! docs/ensembles.md).

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
    /// Train an ensemble of K (at least 2) members differing by seed (`Training.seed + k`:
    /// initial weights and data order), in DIR/member_k/, then DIR/ensemble.model; the members
    /// are spread over the MPI ranks (docs/ensembles.md). Overrides the size of the config key
    /// `Training.ensemble`, which does the same.
    #[arg(long, value_name = "K")]
    ensemble: Option<usize>,
    /// Where each rank computes: `auto` (a GPU when libtorch can use one, else the CPU), `cpu`,
    /// `cuda` (one GPU per rank: node-local rank modulo the GPUs it sees; an error if there is
    /// none) or `cuda:N`. Default: the environment variable `HYDRAGNN_DEVICE`, else `auto`.
    #[arg(long, value_name = "DEVICE")]
    device: Option<mlip::device::DeviceChoice>,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    // Validate before MPI starts: a bad config fails fast, with the key named, on every rank.
    let cfg = TrainConfig::load(&a.config)?;
    let ensemble = hydragnn_train::trainer::ensemble::ensemble_size(&cfg, a.ensemble)?;
    let dist = if std::env::var_os("HYDRAGNN_NO_MPI").is_some() {
        Dist::single()
    } else {
        Dist::init()
    };
    let choice = match a.device {
        Some(c) => c,
        None => mlip::device::DeviceChoice::from_env()?,
    };
    let dist = dist.with_device(choice);
    dist.set_threads()?;
    let device = dist.device()?;
    let out_dir = a
        .out
        .unwrap_or_else(|| PathBuf::from("logs").join(&cfg.config.dataset.name));
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if dist.is_root() && cfg.config.verbosity.level >= 1 {
        eprintln!(
            "hydragnn train: {} rank(s), {} libtorch thread(s) per rank, device {} (rank 0: {device:?}), output {}",
            dist.size(),
            tch::get_num_threads(),
            choice,
            out_dir.display()
        );
    }
    let opts = TrainOptions {
        out_dir: out_dir.clone(),
        resume: a.resume,
        command,
    };
    if let Some(k) = ensemble {
        return run_ensemble(&a.config, &cfg, k, opts, &dist);
    }
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

/// `--ensemble K`: trains the members and prints one line per member and the files written.
fn run_ensemble(
    path: &std::path::Path,
    cfg: &TrainConfig,
    k: usize,
    opts: TrainOptions,
    dist: &Dist,
) -> anyhow::Result<()> {
    use hydragnn_train::trainer::ensemble::{ensemble_files, train_ensemble};
    let s = train_ensemble(cfg, k, opts, dist)
        .with_context(|| format!("training an ensemble of {k} from {}", path.display()))?;
    if dist.is_root() {
        // "2 group(s) of 1 rank(s)", or "of 2, 1 rank(s)" when they differ.
        let sizes = if s.groups.iter().all(|&n| n == s.groups[0]) {
            s.groups[0].to_string()
        } else {
            s.groups
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!(
            "ensemble of {k}: {} group(s) of {sizes} rank(s)",
            s.groups.len()
        )?;
        for m in &s.members {
            let val = m
                .metrics
                .get("valset")
                .map(|per| {
                    per.iter()
                        .map(|(b, m)| format!("{b}: {}", m.summary()))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| "no valset".into());
            outln!(
                "member {} (seed {}, {}): valset {val}",
                m.index,
                m.seed,
                m.dir.display()
            )?;
        }
        outln!(
            "wrote {}; best.model is member {} (lowest validation loss)",
            s.out_dir.join(ensemble_files::ENSEMBLE_MODEL).display(),
            s.best_member
        )?;
    }
    Ok(())
}
