//! The `hydragnn` binary: clear errors naming file, line or key, with nothing written half-way
//! (malformed extxyz, unknown config key, a dataset lacking a requested property), distinct exit
//! codes, and `hydragnn eval` printing the metrics the trainer reported.

mod common;

use std::process::Command;

use common::*;

fn hydragnn(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin())
        .args(args)
        .env("HYDRAGNN_NO_MPI", "1")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn malformed_extxyz_names_file_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = "2\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc=\"T T T\"\nCu 0 0 0 0.1 0 0\nCu 1.5 1.5 1.5 -0.1 0 0\n";
    let cases = [
        // (name, text, line the error must name)
        (
            "nan.xyz",
            good.to_string() + &good.replace("1.5 1.5 1.5", "1.5 nan 1.5"),
            8,
        ),
        (
            "columns.xyz",
            good.to_string() + &good.replace("-0.1 0 0", "-0.1 0"),
            8,
        ),
        (
            "noforces.xyz",
            good.replace(":forces:R:3", "")
                .replace(" 0.1 0 0", "")
                .replace(" -0.1 0 0", ""),
            2,
        ),
    ];
    for (name, text, line) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = dir.path().join(format!("{name}.bp"));
        let (code, _, err) = hydragnn(&[
            "ingest",
            "-o",
            out.to_str().unwrap(),
            "-n",
            "x",
            p.to_str().unwrap(),
        ]);
        assert_eq!(code, 4, "{name}: {err}");
        assert!(
            err.contains(&format!("{name}:{line}")),
            "{name}: the error does not name line {line}: {err}"
        );
        assert!(!out.exists(), "{name}: a dataset was written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".bp"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: left {leftovers:?}");
    }
}

#[test]
fn config_errors_name_the_key_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let out = dir.path().join("out");

    // Unknown key.
    let mut c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({}),
    );
    c["NeuralNetwork"]["Architecture"]["hiden_dim"] = serde_json::json!(8);
    let cp = write_config(dir.path(), "typo.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("typo.json")
            && err.contains("NeuralNetwork.Architecture")
            && err.contains("hiden_dim"),
        "{err}"
    );
    assert!(!out.exists());

    // A property the dataset does not have.
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph"), ("gap", "graph")],
        serde_json::json!({}),
    );
    let cp = write_config(dir.path(), "gap.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("Variables_of_interest.output_names[1]")
            && err.contains("'gap'")
            && err.contains("metals.bp"),
        "{err}"
    );
    assert!(!out.exists());

    // A bad value.
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"batch_size": 0}),
    );
    let cp = write_config(dir.path(), "zero.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("NeuralNetwork.Training.batch_size"), "{err}");
    assert!(!out.exists());
}

#[test]
fn eval_prints_the_trainers_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = molecules(dir.path(), 8, 4);
    let c = config(
        &[("molecules", &data, None)],
        &[("energy", "graph"), ("gap", "graph")],
        serde_json::json!({"num_epoch": 2}),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let out = dir.path().join("out");
    let (code, stdout, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let best = &m["best_model_metrics"]["valset"]["molecules"];
    let model = out.join("best.model");
    let (code, stdout, err) = hydragnn(&[
        "eval",
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        "--split",
        "valset",
        "--batch-size",
        "4",
    ]);
    assert_eq!(code, 0, "{err}");
    let value = |key: &str| -> f64 {
        let tok = stdout
            .split_whitespace()
            .find(|t| t.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"));
        tok.split('=').nth(1).unwrap().parse().unwrap()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-8);
    assert!(
        close(value("force_mae"), best["forces"]["mae"].as_f64().unwrap()),
        "{stdout} vs {best}"
    );
    assert!(
        close(
            value("gap_mae"),
            best["props"]["gap"]["mae"].as_f64().unwrap()
        ),
        "{stdout} vs {best}"
    );
    assert!(
        close(
            value("energy_mae_per_atom"),
            best["energy_per_atom"]["mae"].as_f64().unwrap()
        ),
        "{stdout}"
    );

    // The same frames as extxyz.
    let xyz = dir.path().join("molecules_val.xyz");
    let (code, stdout2, err) = hydragnn(&["eval", model.to_str().unwrap(), xyz.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout2.contains("force_mae="), "{stdout2}");

    // A corrupted model file is a clear error.
    let bad = dir.path().join("bad.model");
    std::fs::write(&bad, b"not a model").unwrap();
    let (code, _, err) = hydragnn(&["eval", bad.to_str().unwrap(), data.to_str().unwrap()]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("bad.model"), "{err}");
}
