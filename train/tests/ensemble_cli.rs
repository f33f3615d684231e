//! `hydragnn ensemble`: K model files → one ensemble file whose members evaluate exactly as the
//! files do; members that do not fit together are refused naming the file, with nothing written.

mod common;

use std::process::Command;

use common::*;
use mlip::model::config::{ModelConfig, MpnnType};
use mlip::{Model, Request, Structure};

fn member(dir: &std::path::Path, name: &str, rc: f64, seed: i64) -> std::path::PathBuf {
    let c = ModelConfig::small(MpnnType::SchNet, vec![29, 13], rc);
    let m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, seed).unwrap();
    let p = dir.join(name);
    m.save(&p, &Default::default()).unwrap();
    p
}

#[test]
fn ensemble_command_writes_a_file_whose_members_are_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let a = member(dir.path(), "a.model", 4.0, 1);
    let b = member(dir.path(), "b.model", 4.0, 2);
    let out = dir.path().join("ens.model");
    let o = Command::new(bin())
        .args(["ensemble", a.to_str().unwrap(), b.to_str().unwrap(), "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("2 members") && stdout.contains("Cu Al"),
        "{stdout}"
    );
    let e = mlip::ensemble::Ensemble::load(&out, tch::Kind::Double, tch::Device::Cpu).unwrap();
    let s = Structure::new(
        vec![[0.0, 0.0, 0.0], [1.8, 1.8, 0.0], [1.8, 0.0, 1.8]],
        vec![29, 13, 29],
        [[3.6, 0.0, 0.0], [0.0, 3.6, 0.0], [0.0, 0.0, 3.6]],
        [true; 3],
    )
    .unwrap();
    let r = e.compute(&s, Request::EFV).unwrap();
    for (k, p) in [&a, &b].iter().enumerate() {
        let m = Model::load(p, tch::Kind::Double, tch::Device::Cpu).unwrap();
        assert_eq!(
            r.members[k].energy,
            m.compute(&s, Request::EFV).unwrap().energy
        );
    }

    // a member with another cutoff: exit code 7 (model), the file named, nothing written
    let c = member(dir.path(), "c.model", 5.0, 3);
    let bad = dir.path().join("bad.model");
    let o = Command::new(bin())
        .args(["ensemble", a.to_str().unwrap(), c.to_str().unwrap(), "-o"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("c.model") && stderr.contains("cutoff"),
        "{stderr}"
    );
    assert!(!bad.exists());
}
