//! `hydragnn hpo CONFIG SPACE.json [--trials N] [--parallel P] [--out DIR]`: asynchronous
//! model-based hyperparameter search over real `hydragnn train` trials (see `hydragnn_train::hpo`).

use std::path::PathBuf;

use hydragnn_train::hpo::{search, HpoOptions};

/// Arguments of `hydragnn hpo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The base training config (JSON, HydraGNN layout).
    config: PathBuf,
    /// The search space: dotted config paths to {"choices": [...]} or {"low", "high", "log", "int"}.
    space: PathBuf,
    /// Number of trials.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Trials run at once.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// MPI ranks per trial (mpirun locally, srun job steps under Slurm).
    #[arg(long, default_value_t = 1)]
    ranks: usize,
    /// Output directory.
    #[arg(short, long, default_value = "hpo")]
    out: PathBuf,
    /// Random trials before the model-based sampler (default: a third of the trials, at least 2).
    #[arg(long)]
    startup: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs before the median rule may stop a trial (0: never stop a trial early).
    #[arg(long, default_value_t = 1)]
    grace: usize,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    let o = HpoOptions {
        config: a.config,
        space: a.space,
        trials: a.trials,
        parallel: a.parallel,
        ranks: a.ranks,
        out: a.out,
        startup: a.startup.unwrap_or((a.trials / 3).max(2)),
        seed: a.seed,
        grace: a.grace,
        bin: std::env::current_exe()?,
    };
    let mut r = search(&o)?;
    r.sort_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    println!("trial  status  val_loss     epochs  seconds");
    for t in &r {
        println!(
            "{:5}  {:6}  {:11.4e}  {:6}  {:7.1}",
            t.id, t.status, t.val_loss, t.epochs, t.seconds
        );
    }
    if let Some(b) = r.first() {
        println!(
            "best: trial {} (val loss {:.4e}), config {}",
            b.id,
            b.val_loss,
            b.dir.join("config.json").display()
        );
    }
    println!("results in {}", o.out.display());
    Ok(())
}
