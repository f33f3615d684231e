//! Multi-fidelity training: the same chemistry at two levels of theory as two datasets (two
//! branches over one backbone). A plentiful low-fidelity set and a scarce high-fidelity one
//! (here the high level is a smooth transformation of the low one: energies and forces scaled
//! by 1.15 and other reference energies, on new geometries, like GFN2-xTB against GFN1-xTB)
//! trained jointly give the scarce branch a lower validation error than the scarce set trained
//! alone for the same number of epochs over it; and the gain shrinks as the scarce set grows
//! (a learning curve in two points).

mod common;

use std::path::Path;

use common::*;
use hydragnn_train::data::Frame;
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions};

/// `metal_frames` relabelled at the "high" level: E_high = 1.15 E_LJ - 3.2 eV per atom,
/// F_high = 1.15 F_LJ.
fn high_frames(n: usize, seed: u64) -> Vec<Frame> {
    metal_frames(n, seed)
        .into_iter()
        .map(|mut f| {
            let natoms = f.numbers.len() as f64;
            let e_lj = f.energy.unwrap() + 3.5 * natoms;
            f.energy = Some(1.15 * e_lj - 3.2 * natoms);
            for v in f.forces.as_mut().unwrap() {
                v.iter_mut().for_each(|x| *x *= 1.15);
            }
            f
        })
        .collect()
}

/// Trains `c` in `dir/name`; returns the best validation loss of branch `branch`.
fn best_val(dir: &Path, name: &str, c: &serde_json::Value, branch: &str) -> f64 {
    let cp = write_config(dir, &format!("{name}.json"), c);
    train(
        &TrainConfig::load(&cp).unwrap(),
        TrainOptions {
            out_dir: dir.join(name),
            resume: false,
            command: "test".into(),
        },
        &Dist::single(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = std::fs::read_to_string(dir.join(name).join("metrics.csv")).unwrap();
    let head: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let key = format!("{branch}/loss");
    let col = head.iter().position(|h| *h == key).expect("branch loss");
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse::<f64>().unwrap())
        .fold(f64::INFINITY, f64::min)
}

fn cfg(datasets: &[(&str, &Path, Option<&[&str]>)], epochs: usize) -> serde_json::Value {
    let mut c = config(
        datasets,
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": epochs, "batch_size": 4,
                           "Optimizer": {"type": "AdamW", "learning_rate": 0.005}}),
    );
    c["NeuralNetwork"]["Architecture"]["hidden_dim"] = 16.into();
    c
}

#[test]
fn the_shared_backbone_helps_the_scarce_fidelity() {
    let dir = tempfile::tempdir().unwrap();
    let low = metal_frames(60, 31);
    let low_ds = dataset(dir.path(), "low", &low[..56], &low[56..], &[]);
    let high = high_frames(36, 32);
    let val = &high[20..];
    let mut gains = Vec::new();
    for n in [4usize, 20] {
        let high_ds = dataset(dir.path(), &format!("high{n}"), &high[..n], val, &[]);
        let branch = format!("high{n}");
        // The same number of epochs over the scarce set, so the same passes over its frames.
        let epochs = 12;
        let joint = best_val(
            dir.path(),
            &format!("joint{n}"),
            &cfg(
                &[("low", &low_ds, None), (branch.as_str(), &high_ds, None)],
                epochs,
            ),
            &branch,
        );
        let alone = best_val(
            dir.path(),
            &format!("alone{n}"),
            &cfg(&[(branch.as_str(), &high_ds, None)], epochs),
            &branch,
        );
        eprintln!("N_high = {n}: best validation loss joint {joint:.4e}, alone {alone:.4e}");
        gains.push(alone / joint);
    }
    assert!(
        gains[0] > 1.0,
        "with 4 high-fidelity frames the joint model is not better: alone/joint = {}",
        gains[0]
    );
    assert!(
        gains[1] < gains[0],
        "the gain should shrink as the scarce set grows: alone/joint {gains:?} at N = 4, 20"
    );
}
