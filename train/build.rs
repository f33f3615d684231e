//! Embeds rpaths (libtorch, MPICH from the venv, and libadios2_c found by adios2-sys) so the
//! `hydragnn` binary and the tests run without LD_LIBRARY_PATH.
include!("../scripts/build_rpath.rs");

fn main() {
    emit_rpaths();
    // adios2-sys (links = "adios2_c") exports its library directory as DEP_ADIOS2_C_RPATH:
    // link args of a dependency do not reach this crate's binaries, so re-emit the rpath here.
    println!("cargo:rerun-if-env-changed=DEP_ADIOS2_C_RPATH");
    if let Ok(dir) = std::env::var("DEP_ADIOS2_C_RPATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
