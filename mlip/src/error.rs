//! The engine's one error type. Every message names what was wrong (file, atom index, element, key).

use std::path::PathBuf;

/// Errors returned by the engine. The C ABI maps each variant to a status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument or input structure is invalid (NaN position, zero-volume cell, bad shapes ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An atomic number that the model does not know.
    #[error("unknown species: atom {index} has atomic number {z} ({symbol}), which is not in the model (model species: {known})")]
    UnknownSpecies {
        /// Index of the offending atom.
        index: usize,
        /// Its atomic number.
        z: i32,
        /// Its chemical symbol (or "?").
        symbol: String,
        /// The model's species, as symbols.
        known: String,
    },
    /// A file could not be read or written.
    #[error("I/O error on '{path}': {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A model file is truncated, corrupted, of a wrong version or not a model file at all.
    #[error("invalid model file '{path}': {msg}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A model configuration is invalid (names the key).
    #[error("invalid model config: {0}")]
    Config(String),
    /// A failure inside the engine that is not the caller's fault (a libtorch panic caught at the
    /// engine's boundary, a NaN produced by the model ...).
    #[error("internal error: {0}")]
    Internal(String),
    /// An error about one structure of a batch: which one, and what.
    #[error("structure {index}: {source}")]
    InStructure {
        /// Index of the structure in the batch.
        index: usize,
        /// The error.
        source: Box<Error>,
    },
    /// An error raised inside libtorch.
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

impl Error {
    /// The error itself, without the batch position of [`Error::InStructure`].
    pub fn root(&self) -> &Error {
        match self {
            Error::InStructure { source, .. } => source.root(),
            e => e,
        }
    }

    /// Tags the error with the index of a structure in a batch (only when the batch has several).
    pub fn in_structure(self, index: usize, batch: usize) -> Error {
        if batch > 1 {
            Error::InStructure {
                index,
                source: Box::new(self),
            }
        } else {
            self
        }
    }
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for an [`Error::InvalidInput`].
pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::InvalidInput(msg.into()))
}
