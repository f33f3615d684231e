//! The ADIOS2 BP dataset (schema: docs/dataset-schema.md): per split, every graph concatenated
//! into global arrays with per-graph atom counts and offsets, plus attributes describing the
//! dataset. [`write_dataset`] writes one; [`Dataset`] opens one, and a [`SplitReader`] reads any
//! contiguous range of graphs as one slice read per array ([`FrameBlock`]), never a file per graph.
//! [`shard_range`] and [`shard_strided`] split graphs among MPI ranks.
//!
//! - `layout`: what the graphs carry ([`Layout`]) and what a dataset holds ([`DatasetMeta`]).
//! - `frames`: graphs as concatenated arrays ([`FrameBlock`]), to and from `Frame`s.
//! - `writer`: the writer, [`write_dataset`].
//! - `reader`: [`Dataset`] and [`SplitReader`].

mod frames;
mod layout;
mod reader;
mod writer;

use std::ops::Range;
use std::path::{Path, PathBuf};

pub use frames::FrameBlock;
pub use layout::{DatasetMeta, Layout, PropertyInfo};
pub use reader::{Dataset, SplitReader};
pub use writer::{write_dataset, DatasetInfo};

/// Value of the `schema` attribute.
pub const SCHEMA: &str = "hydragnn-rs.dataset";
/// Value of the `schema_version` attribute this code writes (it reads version 1 too, as a
/// dataset whose graphs carry every label).
pub const SCHEMA_VERSION: i32 = 2;
/// The split names, in HydraGNN's spelling.
pub const SPLITS: [&str; 3] = ["trainset", "valset", "testset"];

/// Units of the fixed arrays.
pub const FIXED_UNITS: [(&str, &str); 5] = [
    ("positions", "Angstrom"),
    ("cell", "Angstrom"),
    ("energy", "eV"),
    ("forces", "eV/Angstrom"),
    ("stress", "eV/Angstrom^3"),
];

/// Units assumed for well-known property names when the caller gives none.
pub fn default_unit(name: &str) -> &'static str {
    match name {
        "gap" | "homo" | "lumo" | "free_energy" | "energy" | "energies" | "homo_lumo_gap" => "eV",
        "charge" | "charges" | "initial_charges" => "e",
        "dipole" => "e*Angstrom",
        "forces" => "eV/Angstrom",
        "stress" => "eV/Angstrom^3",
        "magmom" | "magmoms" | "initial_magmoms" => "mu_B",
        "masses" => "amu",
        _ => "",
    }
}

/// Graphs `rank` owns when `n` graphs are split into `size` contiguous, balanced shards (the first
/// `n % size` ranks get one more).
///
/// # Panics
/// When `size == 0` or `rank >= size`.
pub fn shard_range(n: usize, rank: usize, size: usize) -> Range<usize> {
    assert!(
        size > 0 && rank < size,
        "shard_range: rank {rank} of size {size}"
    );
    let (q, r) = (n / size, n % size);
    let start = rank * q + rank.min(r);
    start..start + q + usize::from(rank < r)
}

/// Graphs `rank` owns when `n` graphs are dealt round-robin to `size` ranks: `rank, rank + size, ...`.
///
/// # Panics
/// When `size == 0` or `rank >= size`.
pub fn shard_strided(n: usize, rank: usize, size: usize) -> Vec<usize> {
    assert!(
        size > 0 && rank < size,
        "shard_strided: rank {rank} of size {size}"
    );
    (rank..n).step_by(size).collect()
}

/// The path `<path>.tmp` next to `path` (where datasets are written before the rename).
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}
