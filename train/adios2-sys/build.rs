//! Locates libadios2_c (ADIOS2_DIR, else the adios2 wheel in .venv) and links it with an rpath.
//!
//! Search order:
//! 1. `ADIOS2_DIR`: a directory holding `libadios2_c*.so*`, or an install prefix whose `lib/`,
//!    `lib64/` or `lib/x86_64-linux-gnu/` holds it (an HPC site's own build, serial or MPI).
//! 2. The adios2 wheel in the project venv (`HYDRAGNN_VENV`, set by .cargo/config.toml):
//!    `<venv>/lib/python3*/site-packages/adios2/` (the wheel keeps libadios2_c.so there and its
//!    vendored dependencies in `../adios2.libs`, found through the library's own `$ORIGIN` RPATH).
//!
//! Emits the link search path, the library, `-Wl,-rpath` for this crate's own tests, and
//! `cargo:rpath=<dir>` (seen by dependents' build scripts as `DEP_ADIOS2_C_RPATH`), because
//! `rustc-link-arg` does not propagate from a dependency to the final binary.
use std::path::{Path, PathBuf};

/// The file name of the C library in `dir`: the unversioned `libadios2_c.so` when present, else
/// a versioned `libadios2_c.so.X[.Y...]` (linked by exact name with `-l:`).
fn lib_in(dir: &Path) -> Option<String> {
    if dir.join("libadios2_c.so").is_file() {
        return Some("libadios2_c.so".into());
    }
    let mut versioned: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("libadios2_c.so."))
        .collect();
    versioned.sort_by_key(|n| n.len());
    versioned.into_iter().next()
}

fn candidates_from_prefix(p: &Path) -> Vec<PathBuf> {
    vec![
        p.to_path_buf(),
        p.join("lib"),
        p.join("lib64"),
        p.join("lib").join("x86_64-linux-gnu"),
    ]
}

fn find() -> Result<(PathBuf, String), String> {
    println!("cargo:rerun-if-env-changed=ADIOS2_DIR");
    println!("cargo:rerun-if-env-changed=HYDRAGNN_VENV");
    if let Ok(d) = std::env::var("ADIOS2_DIR") {
        for c in candidates_from_prefix(Path::new(&d)) {
            if let Some(l) = lib_in(&c) {
                return Ok((c, l));
            }
        }
        return Err(format!(
            "ADIOS2_DIR={d}: no libadios2_c*.so in it or its lib/, lib64/"
        ));
    }
    let venv = std::env::var("HYDRAGNN_VENV").unwrap_or_else(|_| ".venv".into());
    let lib = Path::new(&venv).join("lib");
    let mut tried = vec![];
    if let Ok(entries) = std::fs::read_dir(&lib) {
        let mut pys: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3"))
            })
            .collect();
        pys.sort();
        for py in pys {
            let c = py.join("site-packages").join("adios2");
            if let Some(l) = lib_in(&c) {
                return Ok((c, l));
            }
            tried.push(c);
        }
    }
    Err(format!(
        "libadios2_c not found: set ADIOS2_DIR to its lib dir or prefix, or run scripts/bootstrap.sh \
         to install the adios2 wheel into {venv} (looked in {tried:?})"
    ))
}

fn main() {
    let (dir, lib) = match find() {
        Ok(x) => x,
        Err(e) => panic!("adios2-sys: {e}"),
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:rustc-link-search=native={}", dir.display());
    if lib == "libadios2_c.so" {
        println!("cargo:rustc-link-lib=dylib=adios2_c");
    } else {
        println!("cargo:rustc-link-lib=dylib=:{lib}");
    }
    // This crate's own tests; dependents re-emit it from DEP_ADIOS2_C_RPATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:rpath={}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
    // The header next to the library, for the test that checks the constants against it.
    for inc in [dir.join("include"), dir.join("..").join("include")] {
        let h = inc.join("adios2").join("c").join("adios2_c_types.h");
        if h.is_file() {
            println!("cargo:rustc-env=ADIOS2_C_TYPES_H={}", h.display());
            break;
        }
    }
}
