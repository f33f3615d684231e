//! Mixed multi-dataset batches under real MPI: `mpirun -np 2 hydragnn train` with
//! `batch_mixing: "mixed"` over three datasets (10x imbalance, temperature sampling, a loss
//! weight) takes the same steps as one rank (losses within 1e-5 relative in float64), with
//! shards of unequal size and batches in which a rank holds no graph of some dataset.

mod common;

use std::process::Command;

use common::*;

#[test]
fn mixed_batches_two_ranks_equal_one_rank() {
    let Some(mpirun) = mpirun() else {
        eprintln!("skipped: no mpirun in the project's venv (run scripts/bootstrap.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 41, 5);
    let mol = molecules(dir.path(), 13, 3);
    let f = slab_frames(7, 21);
    let s = dataset(dir.path(), "slabs", &f[..4], &f[4..], &[]);
    let mut c = config(
        &[
            ("metals", &m, Some(&["energy"])),
            ("molecules", &mol, None),
            ("slabs", &s, Some(&["energy"])),
        ],
        &[("energy", "graph"), ("gap", "graph")],
        serde_json::json!({"num_epoch": 2, "batch_size": 5, "precision": "fp64",
                           "clip_grad_norm": 10.0, "batch_mixing": "mixed"}),
    );
    c["Dataset"]["sampling"] = serde_json::json!({"mode": "temperature", "alpha": 0.5});
    c["Dataset"]["datasets"][2]["loss_weight"] = 3.0.into();
    let cfg = write_config(dir.path(), "c.json", &c);
    let (one, two) = (dir.path().join("np1"), dir.path().join("np2"));
    let o = Command::new(bin())
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--out",
            one.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "np 1: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(&mpirun)
        .args([
            "-np",
            "2",
            bin().to_str().unwrap(),
            "train",
            cfg.to_str().unwrap(),
            "--out",
            two.to_str().unwrap(),
        ])
        .env("HYDRAGNN_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "np 2: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let (a, b) = (step_losses(&one), step_losses(&two));
    // 58 draws per epoch in batches of 5: 12 steps per epoch.
    assert_eq!(a.len(), 2 * 12);
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f64;
    for ((st, x), (_, y)) in a.iter().zip(&b) {
        worst = worst.max((x - y).abs() / x.abs());
        assert!(
            (x - y).abs() <= 1e-5 * x.abs(),
            "step {st}: np1 {x} vs np2 {y}"
        );
    }
    eprintln!("largest relative difference of the step losses: {worst:e}");
    // Mixed batches did happen.
    let csv = std::fs::read_to_string(one.join("steps.csv")).unwrap();
    assert!(csv.lines().any(|l| l.contains('+')), "{csv}");
    let ma: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("metrics.json")).unwrap()).unwrap();
    let mb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("metrics.json")).unwrap()).unwrap();
    for branch in ["metals", "molecules", "slabs"] {
        let fa = ma["epochs"][1]["branches"][branch]["forces"]["mae"]
            .as_f64()
            .unwrap();
        let fb = mb["epochs"][1]["branches"][branch]["forces"]["mae"]
            .as_f64()
            .unwrap();
        assert!(
            (fa - fb).abs() <= 1e-5 * fa,
            "{branch}: validation force MAE {fa} vs {fb}"
        );
    }
}
