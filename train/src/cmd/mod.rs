//! The subcommands of `hydragnn`, one module each, the exit codes, and printing to stdout
//! without panicking on a closed pipe.

pub mod ensemble;
pub mod eval;
pub mod hpo;
pub mod import_hydragnn;
pub mod ingest;
pub mod screen;
pub mod train;

use hydragnn_train::data::DataError;
use hydragnn_train::Error;

/// `println!` that returns the write error instead of panicking, so that
/// `hydragnn eval ... | head -1` ends quietly when `head` closes the pipe ([`is_broken_pipe`]).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)
    }};
}
pub(crate) use outln;

/// Whether the error is a write to a closed pipe (the reader went away): not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses a count that must be at least 1 (`--batch-size`).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("'{s}' is not a positive integer: {e}")),
    }
}

/// Exit codes: 1 other, 2 usage (clap), 3 config, 4 data (parse, dataset, schema, an element
/// the model does not know), 5 checkpoint, 6 diverged training, 7 model file or engine, 8 I/O (a
/// file that cannot be read or written: missing, no permission, a full disk).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(t) = cause.downcast_ref::<Error>() {
            return match t {
                Error::Config { .. } => 3,
                Error::Data(DataError::Io { .. }) => 8,
                Error::Data(_) => 4,
                Error::Checkpoint { .. } => 5,
                Error::Diverged(_) => 6,
                Error::Engine(mlip::Error::Io { .. }) => 8,
                Error::Engine(_) | Error::Torch(_) => 7,
                Error::Io { .. } => 8,
                Error::Invalid(_) => 1,
            };
        }
        if let Some(d) = cause.downcast_ref::<DataError>() {
            return if matches!(d, DataError::Io { .. }) {
                8
            } else {
                4
            };
        }
        if let Some(m) = cause.downcast_ref::<mlip::Error>() {
            return if matches!(m, mlip::Error::Io { .. }) {
                8
            } else {
                7
            };
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return 8;
        }
    }
    1
}
