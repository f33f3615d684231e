//! The subcommands of `hydragnn`, one module each, and the exit codes.

pub mod eval;
pub mod hpo;
pub mod import_hydragnn;
pub mod ingest;
pub mod screen;
pub mod train;

use hydragnn_train::data::DataError;
use hydragnn_train::Error;

/// Exit codes: 1 other, 2 usage (clap), 3 config, 4 data (parse, dataset, schema), 5 checkpoint,
/// 6 diverged training, 7 model file or engine.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(t) = cause.downcast_ref::<Error>() {
            return match t {
                Error::Config { .. } => 3,
                Error::Data(_) => 4,
                Error::Checkpoint { .. } => 5,
                Error::Diverged(_) => 6,
                Error::Engine(_) | Error::Torch(_) => 7,
                Error::Io { .. } | Error::Invalid(_) => 1,
            };
        }
        if cause.downcast_ref::<DataError>().is_some() {
            return 4;
        }
        if cause.downcast_ref::<mlip::Error>().is_some() {
            return 7;
        }
    }
    1
}
