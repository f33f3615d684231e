//! The trainer's data pipeline: extended XYZ (as ASE writes it) -> an ADIOS2 BP dataset with
//! every split's graphs concatenated into global arrays (schema: docs/dataset-schema.md) ->
//! slice reads of graph ranges for batches, sharded over MPI ranks.
//!
//! - [`extxyz`]: the reader (every error names file and line) and a round-trip writer.
//! - [`adios`]: safe RAII wrapper over the project's `adios2-sys` binding.
//! - [`dataset`]: the schema, [`write_dataset`], and the reader [`Dataset`] / [`SplitReader`].
//! - [`refenergy`]: per-element reference energies by least squares (trainset only).
//! - [`ingest()`]: extxyz files -> dataset, atomically.

pub mod adios;
pub mod dataset;
pub mod error;
pub mod extxyz;
pub mod ingest;
pub mod refenergy;

pub use dataset::{
    shard_range, shard_strided, write_dataset, Dataset, DatasetInfo, DatasetMeta, FrameBlock,
    Layout, PropertyInfo, SplitReader, SCHEMA, SCHEMA_VERSION, SPLITS,
};
pub use error::{DataError, Result};
pub use extxyz::{
    parse_extxyz, parse_frame_at, read_extxyz, write_extxyz, AtomProp, Frame, ParseOptions,
};
pub use ingest::{ingest, IngestOptions, IngestSummary, SplitSpec};
pub use refenergy::{fit_reference_energies, ReferenceEnergies};
