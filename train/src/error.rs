//! The trainer's error type. Every message names what was wrong: the config key (as a dotted
//! path such as `NeuralNetwork.Training.batch_size`), the file and line, or the dataset and
//! property. Data-pipeline and engine errors are wrapped unchanged.

use std::path::{Path, PathBuf};

use crate::data::DataError;

/// Errors of the trainer library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An invalid training configuration; `key` is the dotted path of the offending key.
    #[error("{}: {key}: {msg}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// Dotted key path (`NeuralNetwork.Architecture.hidden_dim`), or `.` for the whole file.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// The data pipeline failed (extxyz parse error, ADIOS2 error, schema mismatch).
    #[error(transparent)]
    Data(#[from] DataError),
    /// The engine failed (invalid model config, unknown species, model file error).
    #[error(transparent)]
    Engine(#[from] mlip::Error),
    /// libtorch raised an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file could not be read or written.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A checkpoint is missing, corrupted or does not belong to this run.
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Training produced a non-finite loss or gradient.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Any other invalid argument.
    #[error("{0}")]
    Invalid(String),
}

/// Result of the trainer library.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            err,
        }
    }
    /// A config error at `key` of the file `path`.
    pub fn config(path: impl AsRef<Path>, key: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            path: path.as_ref().to_path_buf(),
            key: key.into(),
            msg: msg.into(),
        }
    }
    /// A checkpoint error.
    pub fn checkpoint(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}
