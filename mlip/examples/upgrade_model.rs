//! Rewrites model files in the current format version (`mlip::file::upgrade`: same weights,
//! config and info; the checksum then also covers the header):
//! `cargo run --release -p mlip --example upgrade_model -- FILE...` (in place).

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!(
            "usage: upgrade_model FILE... (rewritten in place in format version {})",
            mlip::file::FORMAT_VERSION
        );
        std::process::exit(2);
    }
    for f in &files {
        if let Err(e) = mlip::file::upgrade(f, f) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        println!("{f}: format version {}", mlip::file::FORMAT_VERSION);
    }
}
