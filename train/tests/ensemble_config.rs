//! The config key `NeuralNetwork.Training.ensemble` and bootstrap members: the key trains an
//! ensemble like `--ensemble K` (the flag overrides its size); with `bootstrap: true` member
//! k ≥ 1 trains on a seeded resample (repeats and misses, listed in `bootstrap.json`) and member
//! 0 trains exactly as without it; bad values, bootstrap with the ddstore or mixed batches, and a
//! changed key on `--resume` are refused naming the key.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use hydragnn_train::trainer::ensemble::bootstrap_indices;
use hydragnn_train::TrainConfig;

fn hydragnn(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("HYDRAGNN_NO_MPI", "1")
        .env("HYDRAGNN_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn cfg_with(dir: &Path, data: &Path, name: &str, ensemble: serde_json::Value) -> PathBuf {
    let c = config(
        &[("metals", data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 1, "batch_size": 4, "precision": "fp64", "ensemble": ensemble}),
    );
    write_config(dir, name, &c)
}

#[test]
fn config_key_trains_an_ensemble_and_bootstrap_resamples_members_after_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let n = 12;
    let data = metals(dir.path(), n, 4);
    let boot = cfg_with(
        dir.path(),
        &data,
        "boot.json",
        serde_json::json!({"size": 2, "bootstrap": true}),
    );
    let a = dir.path().join("boot");
    // No --ensemble: the key alone trains 2 members.
    let s = ok(&hydragnn(&[
        "train",
        boot.to_str().unwrap(),
        "--out",
        a.to_str().unwrap(),
    ]));
    assert!(s.contains("ensemble of 2"), "{s}");
    assert_eq!(json(&a.join("ensemble.json"))["bootstrap"], true);
    assert!(
        !a.join("member_0/bootstrap.json").exists(),
        "member 0 keeps the plain split"
    );
    let b1 = json(&a.join("member_1/bootstrap.json"));
    assert_eq!(b1["seed"], 2);
    assert_eq!(b1["member"], 1);
    let counts: Vec<usize> = b1["datasets"][0]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(counts.len(), n);
    assert_eq!(counts.iter().sum::<usize>(), n, "{counts:?}");
    assert!(counts.iter().any(|&c| c >= 2), "no repeats: {counts:?}");
    assert!(counts.contains(&0), "nothing missed: {counts:?}");
    // Deterministic for the seed: the counts of the library's draws for member 1's seed.
    let mut expect = vec![0usize; n];
    for i in bootstrap_indices(2, 0, n) {
        expect[i] += 1;
    }
    assert_eq!(counts, expect);

    // The flag overrides the key's size (3 -> 2); without bootstrap, the plain members.
    let plain = cfg_with(
        dir.path(),
        &data,
        "plain.json",
        serde_json::json!({"size": 3, "bootstrap": false}),
    );
    let b = dir.path().join("plain");
    let s = ok(&hydragnn(&[
        "train",
        plain.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
        "--ensemble",
        "2",
    ]));
    assert!(s.contains("ensemble of 2"), "{s}");
    assert!(!b.join("member_2").exists());
    assert!(!b.join("member_1/bootstrap.json").exists());
    // Member 0 is unchanged by bootstrap; member 1 trained on other data.
    assert_eq!(
        step_losses(&a.join("member_0")),
        step_losses(&b.join("member_0"))
    );
    assert_ne!(
        step_losses(&a.join("member_1")),
        step_losses(&b.join("member_1"))
    );

    // --resume with the key changed (bootstrap off): refused, naming the checkpoint's config.
    let changed = cfg_with(
        dir.path(),
        &data,
        "changed.json",
        serde_json::json!({"size": 2, "bootstrap": false}),
    );
    let o = hydragnn(&[
        "train",
        changed.to_str().unwrap(),
        "--out",
        a.to_str().unwrap(),
        "--resume",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("different config"), "{err}");
    // The same key resumes (the members have finished: nothing left to train).
    ok(&hydragnn(&[
        "train",
        boot.to_str().unwrap(),
        "--out",
        a.to_str().unwrap(),
        "--resume",
    ]));
}

#[test]
fn bad_ensemble_values_are_refused_naming_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let parse = |v: serde_json::Value, extra: serde_json::Value| {
        let mut t = serde_json::json!({"num_epoch": 1, "batch_size": 4, "ensemble": v});
        for (k, x) in extra.as_object().unwrap() {
            t[k] = x.clone();
        }
        let c = config(&[("metals", &data, None)], &[("energy", "graph")], t);
        TrainConfig::parse(&c.to_string(), Path::new("c.json"))
            .unwrap_err()
            .to_string()
    };
    let none = serde_json::json!({});
    for (v, want) in [
        (serde_json::json!(0), "size 0"),
        (serde_json::json!(1), "size 1"),
        (serde_json::json!(2.5), "2.5"),
        (serde_json::json!("two"), "\"two\""),
        (serde_json::json!({"size": 1}), "size 1"),
        (serde_json::json!({"bootstrap": true}), "size"),
        (
            serde_json::json!({"size": 2, "bootstrap": "yes"}),
            "bootstrap \"yes\"",
        ),
        (
            serde_json::json!({"size": 2, "boot": true}),
            "unknown key 'boot'",
        ),
    ] {
        let e = parse(v.clone(), none.clone());
        assert!(
            e.contains("NeuralNetwork.Training.ensemble") && e.contains(want),
            "{v}: {e}"
        );
    }
    for (extra, other) in [
        (serde_json::json!({"ddstore": true}), "Training.ddstore"),
        (
            serde_json::json!({"batch_mixing": "mixed"}),
            "Training.batch_mixing",
        ),
    ] {
        let e = parse(serde_json::json!({"size": 2, "bootstrap": true}), extra);
        assert!(
            e.contains("NeuralNetwork.Training.ensemble")
                && e.contains("bootstrap")
                && e.contains(other),
            "{e}"
        );
    }
    // `member` is the trainer's: refused as input, before anything is written.
    let cfg = cfg_with(
        dir.path(),
        &data,
        "m.json",
        serde_json::json!({"size": 2, "bootstrap": true, "member": 1}),
    );
    let out = dir.path().join("m");
    let o = hydragnn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("NeuralNetwork.Training.ensemble.member"),
        "{err}"
    );
    assert!(!out.exists());
}
