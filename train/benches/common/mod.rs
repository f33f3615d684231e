//! Shared by the trainer's benches: which dataset a bench reads.

use std::path::{Path, PathBuf};

use hydragnn_train::data::{ingest, IngestOptions, SplitSpec};

/// The dataset a bench reads: `arg` when given (a relative path that does not exist from the
/// current directory is taken from the workspace root, since cargo runs benches in the crate's
/// directory), else the committed slice `train/data/metals.xyz` ingested into `tmp/metals.bp`.
pub fn dataset(arg: Option<&String>, tmp: &Path) -> PathBuf {
    match arg {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_relative() && !p.exists() {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .parent()
                    .unwrap()
                    .join(p)
            } else {
                // Absolute, as the bench writes configs into its temp dir that name this path.
                p.canonicalize().unwrap_or(p)
            }
        }
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = tmp.join("metals.bp");
            ingest(
                &[(root.join("data/metals.xyz"), SplitSpec::Random)],
                &out,
                "metals",
                &IngestOptions::default(),
            )
            .expect("ingest");
            out
        }
    }
}
