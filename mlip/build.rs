//! Embeds rpaths to libtorch (torch wheel) so tests, benches and examples run without
//! LD_LIBRARY_PATH, and compiles the C++ fused kernels (`csrc/fused_act.cpp`, `csrc/fused_edges.cpp`:
//! custom autograd functions) against the headers of the libtorch that tch links.
include!("../scripts/build_rpath.rs");

use std::path::PathBuf;
use std::process::Command;

/// The C++ ABI flag libtorch was built with: `LIBTORCH_CXX11_ABI` if set, else what the torch
/// wheel reports (with `LIBTORCH_USE_PYTORCH`, as torch-sys does), else 1 (every current build).
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if let Ok(v) = std::env::var("LIBTORCH_CXX11_ABI") {
        return v;
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".into());
        let out = Command::new(python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output();
        if let Ok(o) = out {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && (v == "0" || v == "1") {
                return v;
            }
        }
    }
    "1".into()
}

fn main() {
    emit_rpaths();
    println!("cargo:rerun-if-changed=csrc/fused_act.cpp");
    println!("cargo:rerun-if-changed=csrc/fused_edges.cpp");
    println!("cargo:rerun-if-changed=csrc/fused_common.h");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report its libtorch (DEP_TCH_LIBTORCH_LIB)"),
    );
    let root = lib.parent().expect("libtorch lib dir has a parent");
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-fopenmp")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .opt_level(3)
        .file("csrc/fused_act.cpp")
        .file("csrc/fused_edges.cpp")
        .compile("hgnn_fused");
}
