//! Embeds rpaths to libtorch (torch wheel) so tests, benches and examples run without LD_LIBRARY_PATH.
include!("../scripts/build_rpath.rs");
fn main() {
    emit_rpaths();
}
