//! `Training.precision`: bf16 (float32 master weights, bfloat16 autocast for the forward, force
//! and backward passes) trains every backbone, its loss falls, its weights and optimiser state
//! stay float32 and differ from an fp32 run (autocast was on), and its model file loads and gives
//! finite forces; fp64 trains in float64; an unknown precision is refused naming the key.

mod common;

use std::path::Path;

use common::*;
use hydragnn_train::trainer::Trainer;
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions};
use tch::{Device, Kind};

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        out_dir: out.to_path_buf(),
        resume: false,
        command: "test".into(),
    }
}

/// Trains `precision` on `data` for `epochs`; returns (output dir, per-epoch val losses).
fn run(dir: &Path, data: &Path, precision: &str, mpnn: &str, epochs: usize) -> Vec<f64> {
    let mut c = config(
        &[("metals", data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": epochs, "precision": precision,
                           "Optimizer": {"type": "AdamW", "learning_rate": 0.01}}),
    );
    c["NeuralNetwork"]["Architecture"]["mpnn_type"] = mpnn.into();
    c["NeuralNetwork"]["Architecture"]["zero_init_heads"] = false.into();
    let name = format!("{mpnn}_{precision}");
    let cp = write_config(dir, &format!("{name}.json"), &c);
    let s = train(
        &TrainConfig::load(&cp).unwrap(),
        opts(&dir.join(&name)),
        &Dist::single(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(s.epochs, epochs, "{name}");
    let text = std::fs::read_to_string(dir.join(&name).join("metrics.csv")).unwrap();
    let head: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = head
        .iter()
        .position(|h| *h == "val_loss")
        .expect("val_loss");
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn bf16_trains_saves_float32_and_differs_from_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 16, 4);
    let bf = run(dir.path(), &m, "bf16", "SchNet", 6);
    let fp = run(dir.path(), &m, "fp32", "SchNet", 6);
    assert!(bf.iter().all(|l| l.is_finite()), "{bf:?}");
    let best = bf.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(best < 0.5 * bf[0], "bf16 val loss did not fall: {bf:?}");
    // The same seed and batches: only the compute precision differs, so the losses do too
    // (by far more than float32 rounding), but not by much.
    let rel = (bf[5] - fp[5]).abs() / fp[5];
    assert!(bf != fp && rel > 1e-6, "bf16 {bf:?} equals fp32 {fp:?}");
    assert!(rel < 0.5, "bf16 {bf:?} far from fp32 {fp:?}");

    // The written model loads (float32, as saved) and gives finite forces.
    let path = dir.path().join("SchNet_bf16").join("best.model");
    let model = mlip::Model::load(&path, Kind::Float, Device::Cpu).unwrap();
    assert!(model
        .var_store()
        .variables()
        .values()
        .all(|v| v.kind() == Kind::Float));
    let f = &metal_frames(1, 99)[0];
    let s = mlip::Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
    let r = model.compute(&s, mlip::compute::Request::ALL).unwrap();
    assert!(r.energy.is_finite());
    assert!(r.forces.iter().flatten().all(|x| x.is_finite()));
    assert!(r.forces.iter().flatten().any(|x| *x != 0.0));
}

#[test]
fn bf16_master_weights_and_optimiser_state_stay_float32() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 8, 4);
    let c = config(
        &[("metals", &m, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 1, "precision": "bf16"}),
    );
    let cp = write_config(dir.path(), "bf16.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let dist = Dist::single();
    let mut t = Trainer::new(&cfg, opts(&dir.path().join("out")), &dist).unwrap();
    t.run().unwrap();
    for (name, v) in t.model.var_store().variables() {
        assert_eq!(v.kind(), Kind::Float, "{name}");
    }
    // The checkpoint holds float32 Adam moments.
    let ck = hydragnn_train::checkpoint::load(&dir.path().join("out/checkpoint.st")).unwrap();
    let moments: Vec<_> = ck
        .tensors
        .iter()
        .filter(|(n, _)| n.starts_with("adam_m/"))
        .collect();
    assert!(!moments.is_empty());
    assert!(moments.iter().all(|(_, t)| t.kind() == Kind::Float));
}

#[test]
fn bf16_trains_every_backbone_mixed_batches_and_fp64() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 8, 4);
    for mpnn in ["PaiNN", "EGNN"] {
        let l = run(dir.path(), &m, "bf16", mpnn, 2);
        assert!(l.iter().all(|x| x.is_finite()), "{mpnn}: {l:?}");
    }
    let l = run(dir.path(), &m, "fp64", "SchNet", 1);
    assert!(l[0].is_finite());
    // Mixed batches of two datasets (the trainer's other step) under bf16, with a graph head.
    let mol = molecules(dir.path(), 8, 4);
    let c = config(
        &[("metals", &m, Some(&["energy"])), ("molecules", &mol, None)],
        &[("energy", "graph"), ("gap", "graph")],
        serde_json::json!({"num_epoch": 2, "precision": "bf16", "batch_mixing": "mixed"}),
    );
    let cp = write_config(dir.path(), "mixed.json", &c);
    let s = train(
        &TrainConfig::load(&cp).unwrap(),
        opts(&dir.path().join("mixed")),
        &Dist::single(),
    )
    .unwrap();
    assert_eq!(s.epochs, 2);
    let (_, best) = s.best.expect("a best epoch");
    assert!(best.values().all(|b| b.loss.is_finite()), "{best:?}");
}

#[test]
fn unknown_precision_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 4, 2);
    let c = config(
        &[("metals", &m, None)],
        &[("energy", "graph")],
        serde_json::json!({"precision": "fp8"}),
    );
    let cp = write_config(dir.path(), "fp8.json", &c);
    let e = TrainConfig::load(&cp).unwrap_err().to_string();
    assert!(
        e.contains("NeuralNetwork.Training.precision") && e.contains("'fp8'") && e.contains("bf16"),
        "{e}"
    );
}
