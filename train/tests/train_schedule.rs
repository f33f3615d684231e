//! The weight average and the run-long learning-rate decay: `Training.ema_decay` (validation and
//! the best model use the averaged weights; a resumed run continues the average exactly) and
//! `Scheduler.stop_lr` (the rate decays from `learning_rate` to `stop_lr` over the planned run,
//! planned by epochs or by `max_time`).

mod common;

use std::path::Path;

use common::*;
use hydragnn_train::checkpoint;
use hydragnn_train::trainer::load_model;
use tch::{Device, Kind};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn stop_lr_decays_over_the_planned_epochs_and_resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 12, 4);
    let base = serde_json::json!({
        "num_epoch": 3, "batch_size": 3, "precision": "fp64", "ema_decay": 0.9,
        "Scheduler": {"type": "ExponentialDecay", "stop_lr": 5e-5, "min_lr": 0.0}
    });
    let cfg = |t: serde_json::Value| config(&[("metals", &data, None)], &[("energy", "graph")], t);
    let cp = write_config(dir.path(), "c.json", &cfg(base.clone()));
    let a = dir.path().join("a");
    run_train(&cp, &a, false);
    // 3 epochs of 4 steps: step s (1-based) runs at 0.005 * (5e-5 / 0.005)^((s - 1) / 12).
    let lrs = step_lrs(&a);
    assert_eq!(lrs.len(), 12);
    for &(s, lr) in &lrs {
        let want = 0.005 * (5e-5f64 / 0.005).powf((s - 1) as f64 / 12.0);
        assert!(rel(lr, want) < 1e-12, "step {s}: lr {lr}, want {want}");
    }
    // Stopped after 5 steps (mid-epoch) and resumed: the same losses, rates and (averaged)
    // validation metrics as the uninterrupted run.
    let mut stop = base.clone();
    stop["max_steps"] = serde_json::json!(5);
    let cs = write_config(dir.path(), "stop.json", &cfg(stop));
    let r = dir.path().join("r");
    run_train(&cs, &r, false);
    run_train(&cp, &r, true);
    assert_eq!(step_losses(&r), step_losses(&a));
    assert_eq!(step_lrs(&r), lrs);
    let val = |o: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(o.join("metrics.csv")).unwrap();
        text.lines()
            .map(|l| l.split(',').nth(4).unwrap().to_string())
            .collect()
    };
    assert_eq!(val(&r), val(&a), "validation losses after resume");
}

#[test]
fn validation_and_the_best_model_use_the_averaged_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 12, 4);
    let t = serde_json::json!({
        "num_epoch": 2, "batch_size": 3, "precision": "fp64", "ema_decay": 0.99,
        "Optimizer": {"type": "AdamW", "learning_rate": 1e-4}
    });
    let cp = write_config(
        dir.path(),
        "c.json",
        &config(&[("metals", &data, None)], &[("energy", "graph")], t),
    );
    let out = dir.path().join("o");
    let s = run_train(&cp, &out, false);
    // A small rate: the validation loss falls each epoch, so the last epoch is the best.
    assert_eq!(s.best.as_ref().map(|b| b.0), Some(2), "{:?}", s.best);
    let ck = checkpoint::load(&out.join("checkpoint.st")).unwrap();
    let best = load_model(&out.join("best.model"), Kind::Double, Device::Cpu).unwrap();
    let (mut n, mut differ) = (0, 0);
    for (name, w) in best.var_store().variables() {
        let Some(avg) = ck.tensors.get(&format!("ema/{name}")) else {
            continue;
        };
        n += 1;
        let raw = &ck.tensors[&format!("model/{name}")];
        let d = (&w - avg).abs().max().double_value(&[]);
        assert_eq!(d, 0.0, "'{name}': best.model is not the averaged weights");
        if (&w - raw).abs().max().double_value(&[]) > 0.0 {
            differ += 1;
        }
    }
    assert!(n > 5, "{n} averaged variables in the checkpoint");
    assert!(differ > 0, "the averaged weights equal the raw ones");
    // The recorded validation metrics are those of the exported (averaged) model.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let hist = m["epochs"].as_array().expect("epochs");
    let rec_val = hist.last().unwrap()["val_loss"].as_f64().unwrap();
    let fin = m["best_model_metrics"]["valset"]["metals"]["loss"]
        .as_f64()
        .expect("best_model_metrics.valset.metals.loss");
    assert!(rel(fin, rec_val) < 1e-9, "{fin} vs {rec_val}");
}

#[test]
fn stop_lr_under_max_time_ends_near_stop_lr() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 12, 4);
    let t = serde_json::json!({
        "num_epoch": 100000, "batch_size": 3, "max_time": 4.0,
        "Scheduler": {"type": "ExponentialDecay", "stop_lr": 5e-6, "min_lr": 0.0}
    });
    let cp = write_config(
        dir.path(),
        "c.json",
        &config(&[("metals", &data, None)], &[("energy", "graph")], t),
    );
    let out = dir.path().join("o");
    let s = run_train(&cp, &out, false);
    assert_eq!(s.stopped, "max_time");
    assert!(s.epochs >= 4, "{} epochs in 4 s", s.epochs);
    let lrs = step_lrs(&out);
    let last = lrs.last().unwrap().1;
    // Planned from measured epoch times: the last step runs within a factor 10 (in a decay over
    // a factor 1000) of stop_lr, not at the rate that planning by num_epoch would give (~0.005).
    assert!(
        (5e-6..=5e-5).contains(&last),
        "last rate {last} (steps {}, epochs {})",
        lrs.len(),
        s.epochs
    );
    // And it decays monotonically.
    assert!(lrs.windows(2).filter(|w| w[1].1 > w[0].1 * 1.5).count() == 0);
}
