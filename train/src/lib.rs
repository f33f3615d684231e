//! The GFM trainer as a library (the `hydragnn` binary is its command line).
#![warn(missing_docs)]

pub mod data;

// The training half (config, graphs and batches, loss and metrics, optimiser, checkpoints, MPI,
// plots).
pub mod checkpoint;
pub mod config;
pub mod ddstore;
pub mod dist;
pub mod energy;
pub mod error;
pub mod evaluate;
pub mod graphs;
pub mod hpo;
pub mod malloc;
pub mod metrics;
pub mod optim;
pub mod plots;
pub mod screen;
pub mod trainer;

pub use config::TrainConfig;
pub use dist::Dist;
pub use error::{Error, Result};
pub use trainer::{train, TrainOptions, TrainSummary};

pub mod import;
