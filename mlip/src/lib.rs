//! hydragnn-rs engine: structure → neighbour list → graph → model → energy → forces/stress.
//!
//! - [`structure`]: positions, species, cell, periodicity.
//! - [`neighbors`]: O(N) cell-list neighbour lists with integer cell shifts.
//! - [`model`]: the message-passing models (SchNet, PaiNN) and their heads, in libtorch (tch).
//! - [`compute`]: energy, forces, virial and per-atom quantities through autograd.
//! - [`layered`]: layer-by-layer evaluation with ghost-feature exchange (spatial decomposition).
//! - [`file`](mod@file): the self-describing model file.
//! - [`ensemble`]: committees of K models, their mean and model deviation, the ensemble file.
//! - [`fork`]: fork safety (a forked child runs single-threaded instead of hanging).
//! - [`hydragnn`]: models trained by upstream HydraGNN (config + state dict) as engine models.
//! - [`precision`]: float32 / float64, their names and aliases.
//! - [`fast`]: the fast evaluation path (compressed radial filters, fused edge kernels, hand-written backward).
//! - [`zbl`]: the optional ZBL core repulsion added to a model's energy.
//!
//! Panics inside libtorch are caught at the engine's entry points ([`compute::guarded`]) and
//! returned as [`Error::Internal`]; the model code itself uses tch's plain operators on tensors
//! whose shapes the engine has already checked.

pub mod compute;
pub mod device;
pub mod elements;
pub mod ensemble;
pub mod error;
pub mod fast;
pub mod file;
pub mod fork;
pub mod hydragnn;
pub mod layered;
pub mod model;
pub mod neighbors;
pub mod precision;
pub mod structure;
pub mod zbl;

pub use compute::{GraphInput, Request, Results};
pub use error::{Error, Result};
pub use layered::LayeredEval;
pub use model::config::ModelConfig;
pub use model::Model;
pub use precision::Precision;
pub use structure::Structure;
