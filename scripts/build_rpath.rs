// Shared by the build scripts of every crate that links libtorch or MPI (included with `include!`):
// embeds rpaths to the torch wheel's lib/ and the venv's lib/ (MPICH) so binaries, tests and the
// C-ABI library run without LD_LIBRARY_PATH.

/// Emit `-Wl,-rpath` link arguments for the project-local environment found via `HYDRAGNN_VENV`.
fn emit_rpaths() {
    println!("cargo:rerun-if-env-changed=HYDRAGNN_VENV");
    let venv = std::env::var("HYDRAGNN_VENV").unwrap_or_else(|_| ".venv".to_string());
    let venv = std::path::PathBuf::from(venv);
    let mut dirs = vec![venv.join("lib")];
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        for e in entries.flatten() {
            let torch = e.path().join("site-packages").join("torch").join("lib");
            if torch.is_dir() {
                dirs.push(torch);
            }
        }
    }
    for d in dirs {
        if d.is_dir() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", d.display());
        }
    }
}
