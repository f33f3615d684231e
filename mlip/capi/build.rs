//! Embeds rpaths to libtorch so libhydragnn.so loads without LD_LIBRARY_PATH, and sets its soname.
include!("../../scripts/build_rpath.rs");
fn main() {
    emit_rpaths();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhydragnn.so");
}
