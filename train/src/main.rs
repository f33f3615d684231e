//! `hydragnn`: the trainer's command line (clap). One module per subcommand under `cmd/`:
//! `ingest` (extxyz -> ADIOS2 dataset), `train` (a JSON config; `--resume`), `eval` (metrics of a
//! model file on a dataset). Errors are printed once, as a chain, and map to distinct exit codes
//! ([`cmd::exit_code`]).

mod cmd;

use clap::{Parser, Subcommand};

/// HydraGNN in Rust: multi-headed graph foundation models for atomistic materials.
#[derive(Parser, Debug)]
#[command(name = "hydragnn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingest extended XYZ files into an ADIOS2 BP dataset.
    Ingest(cmd::ingest::Args),
    /// Train a model from a JSON config (HydraGNN layout); run under mpirun for data parallelism.
    Train(cmd::train::Args),
    /// Print the metrics of a model file on a dataset (ADIOS2 BP or extxyz).
    Eval(cmd::eval::Args),
    /// Convert a model trained by HydraGNN (config.json + checkpoint .pk) into a model file.
    ImportHydragnn(cmd::import_hydragnn::Args),
    /// Combine K model files into one ensemble file (mean and model deviation in every client).
    Ensemble(cmd::ensemble::Args),
    /// Screen many structures with a model (streamed, batched, MPI, resumable): a ranked table.
    Screen(cmd::screen::Args),
    /// Hyperparameter search: trials as `hydragnn train` processes, median-rule early stopping.
    Hpo(cmd::hpo::Args),
}

fn main() {
    hydragnn_train::malloc::retain_freed_memory();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ingest(a) => cmd::ingest::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::ImportHydragnn(a) => cmd::import_hydragnn::run(a),
        Command::Screen(a) => cmd::screen::run(a),
        Command::Ensemble(a) => cmd::ensemble::run(a),
        Command::Hpo(a) => cmd::hpo::run(a),
    };
    if let Err(e) = result {
        if cmd::is_broken_pipe(&e) {
            // The reader of stdout went away (`hydragnn eval ... | head -1`): nothing to report.
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        // exit() skips destructors: under mpirun a failed rank ends without MPI_Finalize, and
        // the launcher stops the other ranks instead of leaving them waiting in a collective.
        std::process::exit(cmd::exit_code(&e));
    }
}
