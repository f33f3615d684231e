//! The data pipeline's one error type: every message names the file, and the line, variable or
//! attribute where it applies.

use std::path::{Path, PathBuf};

/// Errors of the data pipeline (extxyz parsing, ADIOS2 I/O, dataset schema, ingestion).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read, written, renamed or removed.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A malformed extended XYZ file (missing forces, wrong column count, NaN, unknown element ...).
    #[error("{}:{line}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A call into the ADIOS2 library failed (ADIOS2 also prints its own message to stderr).
    #[error("{}: ADIOS2 {op} of '{name}' failed{}", path.display(), code_text(*code))]
    Adios {
        /// The BP file (directory).
        path: PathBuf,
        /// The variable, attribute or engine concerned.
        name: String,
        /// The operation (define, put, get, open ...).
        op: &'static str,
        /// The adios2_error code, or -1 when the call returned a NULL handle.
        code: i32,
    },
    /// A dataset does not follow the schema (docs/dataset-schema.md), or lacks what is asked of it.
    #[error("{}: {msg}", path.display())]
    Schema {
        /// The dataset.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An invalid argument (split fractions, shard rank, graph range ...).
    #[error("{0}")]
    Invalid(String),
}

fn code_text(code: i32) -> String {
    match code {
        -1 => String::new(),
        1 => " (invalid argument)".into(),
        2 => " (system error)".into(),
        3 => " (runtime error)".into(),
        c => format!(" (adios2_error {c})"),
    }
}

/// Result of the data pipeline.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, err: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            err,
        }
    }
    /// A parse error at `path:line`.
    pub fn parse(path: impl AsRef<Path>, line: usize, msg: impl Into<String>) -> Self {
        DataError::Parse {
            path: path.as_ref().to_path_buf(),
            line,
            msg: msg.into(),
        }
    }
    /// A schema error in the dataset at `path`.
    pub fn schema(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        DataError::Schema {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}
