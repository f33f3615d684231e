//! Where upstream HydraGNN's reference outputs are (`../shared/hydragnn_golden` beside the
//! repository, or `$HYDRAGNN_GOLDEN`), for the number-for-number tests of the importer. A user's
//! clone has no `../shared`: those tests then skip with a message instead of failing.
//!
//! One file for every crate's golden tests: include it with
//! `#[macro_use] #[path = ".../mlip/tests/support/golden.rs"] mod golden;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The golden directory, if there is one: `$HYDRAGNN_GOLDEN`, else `../shared/hydragnn_golden`
/// or `shared/hydragnn_golden` from the repository root (a directory with a README.md).
pub fn find() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    [
        std::env::var_os("HYDRAGNN_GOLDEN").map(PathBuf::from),
        Some(root.join("../shared/hydragnn_golden")),
        Some(root.join("shared/hydragnn_golden")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("README.md").exists())
}

/// The golden directory; only call it in a test that started with `skip_without_golden!()`.
pub fn dir() -> PathBuf {
    find()
        .expect("golden data not found (the test should have started with skip_without_golden!())")
}

/// The repository's own upstream-HydraGNN reference outputs (`tests/hydragnn_golden_extra`),
/// made by `scripts/golden/make_goldens.py` with upstream HydraGNN for what `../shared` does not
/// cover. They are committed, so tests that read them never skip.
pub fn extra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .unwrap_or(Path::new("."))
        .join("tests/hydragnn_golden_extra")
}

/// Returns from the calling test, with a message on stderr, when the golden data is absent.
macro_rules! skip_without_golden {
    () => {
        if $crate::golden::find().is_none() {
            eprintln!(
                "skipped: upstream HydraGNN golden data not found (expected ../shared/hydragnn_golden \
                 beside the repository, or set HYDRAGNN_GOLDEN)"
            );
            return;
        }
    };
}
