//! Builds tests/c/test_capi.c with gcc against include/hydragnn.h and libhydragnn.so, and runs it:
//! the C ABI as a C client sees it, bad inputs included.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn c_program_uses_the_abi() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // target/<profile>/deps/<test> -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    let libdir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        libdir.join("libhydragnn.so").exists(),
        "libhydragnn.so not found in {}",
        libdir.display()
    );
    let tmp = std::env::temp_dir().join(format!("hgnn-capi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bin = tmp.join("test_capi");
    let out = Command::new("gcc")
        .arg(dir.join("tests/c/test_capi.c"))
        .arg(format!("-I{}", dir.join("include").display()))
        .arg(format!("-L{}", libdir.display()))
        .arg("-lhydragnn")
        .arg("-lm")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .args(["-Wall", "-Werror", "-o"])
        .arg(&bin)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut c =
        mlip::ModelConfig::small(mlip::model::config::MpnnType::SchNet, vec![29, 28, 8], 4.0);
    c.num_conv_layers = 3;
    let m = mlip::Model::new(c, tch::Kind::Double, tch::Device::Cpu, 3).unwrap();
    let model = tmp.join("m.model");
    m.save(&model, &Default::default()).unwrap();
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0xff;
    let corrupt = tmp.join("corrupt.model");
    std::fs::write(&corrupt, bytes).unwrap();

    let out = Command::new(&bin)
        .arg(&model)
        .arg(&corrupt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "C test failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 failure(s)"));
    std::fs::remove_dir_all(tmp).ok();
}

/// Builds tests/c/test_hpp.cpp with g++ against include/hydragnn.hpp (the C++ wrapper, linked with
/// -lhydragnn) and runs it.
#[test]
fn cpp_wrapper_uses_the_abi() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().unwrap();
    let libdir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let tmp = std::env::temp_dir().join(format!("hgnn-hpp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bin = tmp.join("test_hpp");
    let out = Command::new("g++")
        .arg("-std=c++17")
        .arg(dir.join("tests/c/test_hpp.cpp"))
        .arg(format!("-I{}", dir.join("include").display()))
        .arg(format!("-L{}", libdir.display()))
        .arg("-lhydragnn")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&bin)
        .output()
        .expect("g++ runs");
    assert!(
        out.status.success(),
        "g++ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c =
        mlip::ModelConfig::small(mlip::model::config::MpnnType::SchNet, vec![29, 28, 8], 4.0);
    c.num_conv_layers = 3;
    let m = mlip::Model::new(c, tch::Kind::Double, tch::Device::Cpu, 3).unwrap();
    let model = tmp.join("m.model");
    m.save(&model, &Default::default()).unwrap();
    let out = Command::new(&bin).arg(&model).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "C++ test failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 failure(s)"));
    std::fs::remove_dir_all(tmp).ok();
}
