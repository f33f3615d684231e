//! The committed include/hydragnn.h must equal a fresh cbindgen generation from src/lib.rs.
//! Regenerate with `HYDRAGNN_BLESS=1 cargo test -p hydragnn-capi --test header`.

#[test]
fn committed_header_matches_generated() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let mut buf = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generation")
        .write(&mut buf);
    let fresh = String::from_utf8(buf).unwrap();
    let path = format!("{dir}/include/hydragnn.h");
    if std::env::var("HYDRAGNN_BLESS").is_ok() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == fresh, "include/hydragnn.h is out of date: run HYDRAGNN_BLESS=1 cargo test -p hydragnn-capi --test header");
}
