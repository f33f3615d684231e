//! Fine-tuning start: `Training.init_from` copies a model file's shared weights and its branches
//! of the same name (a new dataset's branch starts fresh), `Architecture.freeze_conv_layers`
//! keeps the shared weights fixed, `Training.warmup_steps` ramps the learning rate up linearly;
//! a file of another architecture, or without one of the datasets' elements, is a config error
//! naming the key.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use hydragnn_train::trainer::{warmup_lr, Trainer};
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions};
use tch::Tensor;

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        out_dir: out.to_path_buf(),
        resume: false,
        command: "test".into(),
    }
}

/// A base model trained briefly on the metals set; returns its file.
fn base(dir: &Path, metals: &Path) -> PathBuf {
    let mut c = config(
        &[("metals", metals, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 2}),
    );
    c["NeuralNetwork"]["Architecture"]["zero_init_heads"] = false.into();
    let cp = write_config(dir, "base.json", &c);
    let out = dir.join("base");
    train(
        &TrainConfig::load(&cp).unwrap(),
        opts(&out),
        &Dist::single(),
    )
    .unwrap();
    out.join("best.model")
}

fn weights(vs: &tch::nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect()
}

#[test]
fn init_from_freeze_and_warmup() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 12, 4);
    let model = base(dir.path(), &m);
    let base_w = weights(
        mlip::Model::load(&model, tch::Kind::Float, tch::Device::Cpu)
            .unwrap()
            .var_store(),
    );
    // A downstream set of the same elements as a new branch next to the old one.
    let f = slab_frames(9, 33);
    let s = dataset(dir.path(), "slabs", &f[..6], &f[6..], &[]);
    let mut c = config(
        &[("metals", &m, None), ("slabs", &s, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 1, "max_steps": 4, "warmup_steps": 3,
                           "init_from": model, "Optimizer": {"type": "AdamW", "learning_rate": 0.006}}),
    );
    c["NeuralNetwork"]["Architecture"]["freeze_conv_layers"] = true.into();
    let cp = write_config(dir.path(), "ft.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let out = dir.path().join("ft");
    let dist = Dist::single();
    let mut t = Trainer::new(&cfg, opts(&out), &dist).unwrap();
    let start = weights(t.model.var_store());
    let slabs = t
        .model
        .branch_names()
        .iter()
        .position(|b| b == "slabs")
        .unwrap();
    for (name, v) in &start {
        match t.model.parameter_branch(name) {
            Some(b) if b == slabs => {
                assert!(!base_w.contains_key(name), "{name}: a new branch");
            }
            _ => assert!(
                v.equal(&base_w[name]),
                "{name} not copied from the model file"
            ),
        }
    }
    let sum = t.run().unwrap();
    assert_eq!(sum.steps, 4);
    // Frozen: the shared weights stayed, the heads trained.
    let end = weights(t.model.var_store());
    let mut heads_moved = 0;
    for (name, v) in &end {
        if t.model.parameter_branch(name).is_none() {
            assert!(v.equal(&start[name]), "{name} moved although frozen");
        } else {
            heads_moved += !v.equal(&start[name]) as usize;
        }
    }
    assert!(heads_moved > 0);
    // Warm-up: 0.002, 0.004, 0.006, then 0.006.
    let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let lrs: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let want: Vec<f64> = (0..4).map(|s| warmup_lr(0.006, s, 3)).collect();
    assert_eq!(want, vec![0.002, 0.004, 0.006, 0.006]);
    for (a, b) in lrs.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "lr {lrs:?} vs {want:?}");
    }
}

#[test]
fn init_from_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 8, 3);
    let model = base(dir.path(), &m);
    let mol = molecules(dir.path(), 6, 3);
    let cases: Vec<(serde_json::Value, Option<&Path>, &str)> = vec![
        // Elements the model does not know.
        (serde_json::json!({}), Some(&mol), "Z=1"),
        // Another architecture.
        (serde_json::json!({"hidden_dim": 16}), None, "shape"),
        // No such file.
        (serde_json::json!({}), None, "missing.model"),
    ];
    for (k, (arch, data, what)) in cases.into_iter().enumerate() {
        let path = data.unwrap_or(&m);
        let mut c = config(
            &[("d", path, None)],
            &[("energy", "graph")],
            serde_json::json!({"init_from": if what == "missing.model" { dir.path().join("missing.model") } else { model.clone() }}),
        );
        for (key, v) in arch.as_object().unwrap() {
            c["NeuralNetwork"]["Architecture"][key] = v.clone();
        }
        let cp = write_config(dir.path(), "bad.json", &c);
        let cfg = TrainConfig::load(&cp).unwrap();
        let e = match Trainer::new(
            &cfg,
            opts(&dir.path().join(format!("o{k}"))),
            &Dist::single(),
        ) {
            Ok(_) => panic!("case {k}: no error"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("NeuralNetwork.Training.init_from") && e.contains(what),
            "case {k}: {e}"
        );
    }
}
