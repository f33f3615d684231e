//! The fine-tuning path of the learning curve (benchmarks/finetune_curve.sh) on tiny data: a base
//! model trained on bulk cells, then a downstream set it never saw (slabs) trained twice with the
//! same budget, fine-tuned from the base (`Training.init_from`, the same branch name so the
//! energy head comes along) and from scratch. The fine-tuned run starts from a lower validation
//! loss, and stays ahead after a few epochs; the base's test error drops when fine-tuned.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions};

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        out_dir: out.to_path_buf(),
        resume: false,
        command: "test".into(),
    }
}

/// Trains `c` into `dir/name`; returns the per-epoch validation losses.
fn run(dir: &Path, name: &str, c: &serde_json::Value) -> Vec<f64> {
    let cp = write_config(dir, &format!("{name}.json"), c);
    train(
        &TrainConfig::load(&cp).unwrap(),
        opts(&dir.join(name)),
        &Dist::single(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = std::fs::read_to_string(dir.join(name).join("metrics.csv")).unwrap();
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

/// The base model: 24 bulk cells, 15 epochs; returns its file.
fn base(dir: &Path) -> PathBuf {
    let f = metal_frames(30, 5);
    let d = dataset(dir, "bulk", &f[..24], &f[24..], &[]);
    let mut c = config(
        &[("metals", &d, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 15, "Optimizer": {"type": "AdamW", "learning_rate": 0.01}}),
    );
    c["NeuralNetwork"]["Architecture"]["hidden_dim"] = 16.into();
    run(dir, "base", &c);
    dir.join("base").join("best.model")
}

#[test]
fn finetuned_from_base_starts_and_stays_below_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let model = base(dir.path());
    // Downstream: 8 slabs (periodic in x, y only: surfaces the base never saw), 8 for validation.
    let f = slab_frames(16, 77);
    let d = dataset(dir.path(), "slabs", &f[..8], &f[8..], &[]);
    let training = |init: Option<&Path>| {
        let mut t = serde_json::json!({"num_epoch": 3, "warmup_steps": 2,
                                       "Optimizer": {"type": "AdamW", "learning_rate": 0.003}});
        if let Some(p) = init {
            t["init_from"] = p.to_str().unwrap().into();
        }
        // Named like the base's branch, so the energy head is copied too.
        let mut c = config(&[("metals", &d, None)], &[("energy", "graph")], t);
        c["NeuralNetwork"]["Architecture"]["hidden_dim"] = 16.into();
        c
    };
    let ft = run(dir.path(), "finetuned", &training(Some(&model)));
    let scratch = run(dir.path(), "scratch", &training(None));
    eprintln!("val loss per epoch: fine-tuned {ft:?}, scratch {scratch:?}");
    assert!(
        ft[0] < scratch[0],
        "after the first epoch: fine-tuned {ft:?} vs scratch {scratch:?}"
    );
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(
        best(&ft) < best(&scratch),
        "best: fine-tuned {ft:?} vs scratch {scratch:?}"
    );
}
