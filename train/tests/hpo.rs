//! `hydragnn hpo`: a tiny search end to end (3 real `hydragnn train` trials, 2 at a time): every
//! trial's config carries the sampled values that hpo.csv reports, its loss in hpo.csv is the best
//! of its own metrics.csv, and the plot is written; bad spaces fail with the key named.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn hydragnn(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin())
        .args(args)
        .env("HYDRAGNN_NO_MPI", "1")
        .env("HYDRAGNN_NUM_THREADS", "1")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn setup(dir: &Path) -> std::path::PathBuf {
    let m = metals(dir, 11, 5);
    let c = config(
        &[("metals", &m, Some(&["energy"]))],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 3, "batch_size": 4}),
    );
    write_config(dir, "c.json", &c)
}

#[test]
fn tiny_search_runs_real_trials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let space = dir.path().join("space.json");
    std::fs::write(
        &space,
        r#"{"NeuralNetwork.Training.Optimizer.learning_rate": {"low": 1e-3, "high": 1e-2, "log": true},
            "NeuralNetwork.Architecture.hidden_dim": {"choices": [4, 8]},
            "NeuralNetwork.Architecture.num_conv_layers": {"low": 1, "high": 2, "int": true}}"#,
    )
    .unwrap();
    let out = dir.path().join("search");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (code, stdout, stderr) = hydragnn(&[
        "hpo",
        &s(&cfg),
        &s(&space),
        "--trials",
        "3",
        "--parallel",
        "2",
        "--startup",
        "2",
        "--out",
        &s(&out),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("best: trial"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("hpo.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "trial,status,val_loss,epochs,seconds,NeuralNetwork.Architecture.hidden_dim,\
         NeuralNetwork.Architecture.num_conv_layers,NeuralNetwork.Training.Optimizer.learning_rate"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    for (k, l) in lines[1..].iter().enumerate() {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[0], k.to_string());
        assert!(f[1] == "done" || f[1] == "pruned", "{l}");
        let loss: f64 = f[2].parse().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{l}");
        let trial = out.join(format!("trial_{k:03}"));
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(trial.join("config.json")).unwrap())
                .unwrap();
        let a = &c["NeuralNetwork"]["Architecture"];
        assert_eq!(a["hidden_dim"].to_string(), f[5]);
        assert_eq!(a["num_conv_layers"].to_string(), f[6]);
        let lr = c["NeuralNetwork"]["Training"]["Optimizer"]["learning_rate"]
            .as_f64()
            .unwrap();
        assert!((1e-3..=1e-2).contains(&lr));
        assert_eq!(lr.to_string(), f[7]);
        // The reported loss is the best epoch of the trial's own metrics.
        let m = std::fs::read_to_string(trial.join("run/metrics.csv")).unwrap();
        let best = m
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(4).unwrap().parse::<f64>().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(best, loss, "trial {k}");
        if f[1] == "done" {
            assert_eq!(f[3], "3", "{l}");
        }
    }
    let png = std::fs::read(out.join("hpo.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    // A second search into the same directory is refused.
    let (code, _, stderr) = hydragnn(&[
        "hpo",
        &s(&cfg),
        &s(&space),
        "--trials",
        "1",
        "--out",
        &s(&out),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("hpo.csv: exists"), "{stderr}");
}

#[test]
fn bad_space_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for (text, want) in [
        (
            r#"{"NeuralNetwork.Architectur.hidden_dim": {"choices": [4]}}"#,
            "NeuralNetwork.Architectur.hidden_dim: the config has no object NeuralNetwork.Architectur",
        ),
        (
            r#"{"NeuralNetwork.Architecture.hidden_dim": {"low": 8, "high": 4}}"#,
            "NeuralNetwork.Architecture.hidden_dim: low (8) must be less than high (4)",
        ),
        (
            r#"{"NeuralNetwork.Architecture.hidden_dim": {"choices": ["big"]}}"#,
            "hidden_dim",
        ),
    ] {
        let space = dir.path().join("space.json");
        std::fs::write(&space, text).unwrap();
        let out = dir.path().join("o");
        let (code, _, stderr) = hydragnn(&["hpo", &s(&cfg), &s(&space), "--trials", "1", "--out", &s(&out)]);
        assert_eq!(code, 3, "{text}: {stderr}");
        assert!(stderr.contains(want), "{text}: {stderr}");
        assert!(!out.join("trial_000/run").exists(), "{text}: a trial started");
    }
}

#[test]
fn every_trial_failing_is_an_error() {
    // A config that parses but whose dataset is missing: each trial starts and fails.
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    std::fs::remove_dir_all(dir.path().join("metals.bp")).unwrap();
    let space = dir.path().join("space.json");
    std::fs::write(
        &space,
        r#"{"NeuralNetwork.Architecture.hidden_dim": {"choices": [4, 8]}}"#,
    )
    .unwrap();
    let out = dir.path().join("o");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (code, _, stderr) = hydragnn(&[
        "hpo",
        &s(&cfg),
        &s(&space),
        "--trials",
        "2",
        "--parallel",
        "2",
        "--out",
        &s(&out),
    ]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("every trial failed"), "{stderr}");
    let csv = std::fs::read_to_string(out.join("hpo.csv")).unwrap();
    assert_eq!(csv.matches(",failed,").count(), 2, "{csv}");
}
