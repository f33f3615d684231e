//! `hydragnn train --ensemble K`, `hydragnn eval` and `hydragnn screen` on the ensemble it writes:
//! members that differ, an ensemble file of K members, the mean's and members' metrics, Spearman
//! values, the calibration plot, the deviation columns; bad sizes refused; members spread over
//! MPI ranks train exactly as on one rank.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use mlip::{Request, Structure};

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

fn small_config(dir: &Path, data: &Path) -> std::path::PathBuf {
    let c = config(
        &[("metals", data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 2, "batch_size": 4, "precision": "fp64"}),
    );
    write_config(dir, "c.json", &c)
}

#[test]
fn ensemble_of_two_trains_evaluates_and_screens() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 12, 6);
    let cfg = small_config(dir.path(), &data);
    let out = dir.path().join("ens");
    let s = ok(&hydragnn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--ensemble",
        "2",
    ]));
    assert!(
        s.contains("member 0 (seed 1") && s.contains("member 1 (seed 2"),
        "{s}"
    );
    for k in 0..2 {
        let m = out.join(format!("member_{k}"));
        for f in ["best.model", "metrics.json", "checkpoint.st"] {
            assert!(m.join(f).exists(), "{}", m.join(f).display());
        }
    }
    let summary = json(&out.join("ensemble.json"));
    assert_eq!(summary["num_members"], 2);
    assert_eq!(summary["seeds"], serde_json::json!([1, 2]));
    // best.model is a copy of the member with the lowest validation loss
    let best = summary["best_member"].as_u64().unwrap() as usize;
    let losses: Vec<f64> = (0..2)
        .map(|k| summary["members"][k]["val_loss"].as_f64().unwrap())
        .collect();
    assert!(losses[best] <= losses[1 - best], "{losses:?} best {best}");
    assert_eq!(
        std::fs::read(out.join("best.model")).unwrap(),
        std::fs::read(out.join(format!("member_{best}/best.model"))).unwrap()
    );

    // The ensemble file: 2 members whose predictions differ (different initial weights).
    let ens_path = out.join("ensemble.model");
    let e = mlip::ensemble::Ensemble::load(&ens_path, tch::Kind::Double, tch::Device::Cpu).unwrap();
    assert_eq!(e.len(), 2);
    let st = Structure::new(
        vec![
            [0.0, 0.0, 0.0],
            [1.8, 1.8, 0.0],
            [1.8, 0.0, 1.8],
            [0.0, 1.8, 1.8],
        ],
        vec![29, 29, 29, 29],
        [[3.6, 0.0, 0.0], [0.0, 3.6, 0.0], [0.0, 0.0, 3.6]],
        [true; 3],
    )
    .unwrap();
    let r = e.compute(&st, Request::EFV).unwrap();
    assert!(
        (r.members[0].energy - r.members[1].energy).abs() > 1e-8,
        "members predict the same energy {}",
        r.members[0].energy
    );

    // eval on the ensemble: the mean's and each member's metrics, Spearman values, the plot.
    let plots = dir.path().join("plots");
    let js = dir.path().join("eval.json");
    let s = ok(&hydragnn(&[
        "eval",
        ens_path.to_str().unwrap(),
        data.to_str().unwrap(),
        "--split",
        "valset",
        "--fp64",
        "--json",
        js.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]));
    assert!(
        s.contains("ensemble of 2 members")
            && s.contains("valset mean metals")
            && s.contains("valset member 1 metals")
            && s.contains("spearman(max_devi_f, max force error)="),
        "{s}"
    );
    let j = json(&js);
    assert_eq!(j["ensemble"]["num_members"], 2);
    let v = &j["ensemble"]["splits"]["valset"];
    for key in [
        "structure_max_devi_f_vs_max_force_error",
        "structure_avg_devi_f_vs_rms_force_error",
        "atom_devi_f_vs_force_error",
    ] {
        let rho = v["spearman"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {v}"));
        assert!((-1.0..=1.0).contains(&rho), "{key} = {rho}");
    }
    assert_eq!(v["structures"].as_array().unwrap().len(), 6);
    let bins = v["calibration_forces"].as_array().unwrap();
    assert!(!bins.is_empty());
    let counted: u64 = bins.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, j["metrics"]["valset"]["n_atoms"].as_u64().unwrap());
    let png = plots.join("ensemble_calibration_forces_valset.png");
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    assert_eq!(
        v["calibration_plot"].as_str().unwrap(),
        png.to_str().unwrap()
    );
    // The mean is at least as good as the members on average (|mean error| <= mean |error|,
    // per component): MAE of the mean <= mean of the members' MAE.
    for (out_key, err) in [("forces", "mae"), ("energy_per_atom", "mae")] {
        let mean = v["mean"][out_key][err].as_f64().unwrap();
        let members: Vec<f64> = (0..2)
            .map(|k| v["members"][k][out_key][err].as_f64().unwrap())
            .collect();
        let avg = members.iter().sum::<f64>() / 2.0;
        assert!(
            mean <= avg * (1.0 + 1e-12),
            "{out_key}: mean {mean} vs members {members:?}"
        );
        assert_eq!(j["metrics"]["valset"][out_key][err].as_f64().unwrap(), mean);
    }
    // Member k's metrics are those of eval on its own model file.
    for k in 0..2 {
        let mj = dir.path().join(format!("m{k}.json"));
        let mpath = out.join(format!("member_{k}/best.model"));
        ok(&hydragnn(&[
            "eval",
            mpath.to_str().unwrap(),
            data.to_str().unwrap(),
            "--split",
            "valset",
            "--fp64",
            "--json",
            mj.to_str().unwrap(),
        ]));
        let single = json(&mj)["metrics"]["valset"]["forces"]["mae"]
            .as_f64()
            .unwrap();
        let in_ens = v["members"][k]["forces"]["mae"].as_f64().unwrap();
        assert!(
            (single - in_ens).abs() <= 1e-10 * single,
            "member {k}: {single} vs {in_ens}"
        );
    }

    // screen on the ensemble: the deviation columns, non-negative, the members disagree.
    let prefix = dir.path().join("scr");
    ok(&hydragnn(&[
        "screen",
        ens_path.to_str().unwrap(),
        data.to_str().unwrap(),
        "-o",
        prefix.to_str().unwrap(),
        "--stress",
        "--quiet",
        "--threads",
        "1",
    ]));
    let csv = std::fs::read_to_string(dir.path().join("scr.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| *h == n)
            .unwrap_or_else(|| panic!("{n}: {header:?}"))
    };
    let (es, mf, af, mv) = (
        col("energy_std"),
        col("max_devi_f"),
        col("avg_devi_f"),
        col("max_devi_v"),
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 18);
    for r in &rows {
        let x = |i: usize| r[i].parse::<f64>().unwrap();
        assert!(x(es) >= 0.0 && x(af) >= 0.0 && x(mv) >= 0.0);
        assert!(x(mf) >= x(af) && x(mf) > 0.0, "{r:?}");
    }
    // A plain model file screens without the deviation columns.
    let prefix1 = dir.path().join("scr1");
    ok(&hydragnn(&[
        "screen",
        out.join("best.model").to_str().unwrap(),
        data.to_str().unwrap(),
        "-o",
        prefix1.to_str().unwrap(),
        "--quiet",
        "--threads",
        "1",
    ]));
    let csv1 = std::fs::read_to_string(dir.path().join("scr1.csv")).unwrap();
    assert!(!csv1.lines().next().unwrap().contains("devi"), "{csv1}");

    // --resume with one more epoch: every member continues from its checkpoint, and the
    // ensemble file is rebuilt from the new best models.
    let mut c3 = json(&cfg);
    c3["NeuralNetwork"]["Training"]["num_epoch"] = 3.into();
    let cfg3 = write_config(dir.path(), "c3.json", &c3);
    std::fs::remove_file(&ens_path).unwrap();
    ok(&hydragnn(&[
        "train",
        cfg3.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--ensemble",
        "2",
        "--resume",
    ]));
    for k in 0..2 {
        let m = json(&out.join(format!("member_{k}/metrics.json")));
        assert_eq!(m["epochs"].as_array().unwrap().len(), 3, "member {k}");
    }
    let e2 =
        mlip::ensemble::Ensemble::load(&ens_path, tch::Kind::Double, tch::Device::Cpu).unwrap();
    let r2 = e2.compute(&st, Request::EFV).unwrap();
    for k in 0..2 {
        let m = mlip::Model::load(
            out.join(format!("member_{k}/best.model")),
            tch::Kind::Double,
            tch::Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            r2.members[k].energy,
            m.compute(&st, Request::EFV).unwrap().energy
        );
    }
}

#[test]
fn ensemble_sizes_below_two_and_resume_without_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let cfg = small_config(dir.path(), &data);
    let out = dir.path().join("ens");
    for (k, msg) in [("0", "at least 2 members"), ("1", "single model")] {
        let o = hydragnn(&[
            "train",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--ensemble",
            k,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("--ensemble {k}")) && err.contains(msg),
            "{err}"
        );
        assert!(!out.exists(), "nothing written for --ensemble {k}");
    }
    let o = hydragnn(&["train", cfg.to_str().unwrap(), "--ensemble", "x"]);
    assert_eq!(o.status.code(), Some(2));
    // --resume with no member checkpoint: the checkpoint error (exit 5) naming member_0's.
    let o = hydragnn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--ensemble",
        "2",
        "--resume",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(
        err.contains("member_0") && err.contains("checkpoint"),
        "{err}"
    );
}

#[test]
fn ensemble_members_spread_over_two_ranks_train_as_on_one() {
    let Some(mpirun) = mpirun() else {
        eprintln!("skipped: no mpirun in the project's venv (run scripts/bootstrap.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 8, 4);
    let cfg = small_config(dir.path(), &data);
    let (one, two) = (dir.path().join("np1"), dir.path().join("np2"));
    ok(&hydragnn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        one.to_str().unwrap(),
        "--ensemble",
        "3",
    ]));
    // Member 0 is the run without --ensemble.
    let single = dir.path().join("single");
    ok(&hydragnn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        single.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(single.join("steps.csv")).unwrap(),
        std::fs::read_to_string(one.join("member_0/steps.csv")).unwrap()
    );
    // np 2, K 3: two single-rank groups; group 0 trains members 0 and 2, group 1 member 1.
    let mpi = |np: &str, k: &str, out: &Path| {
        let o = Command::new(&mpirun)
            .args(["-np", np, bin().to_str().unwrap(), "train"])
            .arg(&cfg)
            .arg("--out")
            .arg(out)
            .args(["--ensemble", k])
            .env("HYDRAGNN_NUM_THREADS", "1")
            .output()
            .unwrap();
        ok(&o)
    };
    let s = mpi("2", "3", &two);
    assert!(s.contains("ensemble of 3: 2 group(s) of 1 rank(s)"), "{s}");
    let (a, b) = (
        json(&one.join("ensemble.json")),
        json(&two.join("ensemble.json")),
    );
    for k in 0..3 {
        let (x, y) = (
            a["members"][k]["val_loss"].as_f64().unwrap(),
            b["members"][k]["val_loss"].as_f64().unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-9 * x.abs(),
            "member {k}: np1 {x} vs np2 {y}"
        );
    }
    assert_eq!(a["best_member"], b["best_member"]);
    let e = mlip::ensemble::Ensemble::load(
        two.join("ensemble.model"),
        tch::Kind::Double,
        tch::Device::Cpu,
    )
    .unwrap();
    assert_eq!(e.len(), 3);
    // np 3, K 2: ranks {0, 1} train member 0 data-parallel on their sub-communicator, rank 2
    // member 1; the members are those of the K = 3 run (same seeds), up to the rounding of the
    // gradient sum over 2 ranks.
    let three = dir.path().join("np3");
    let s = mpi("3", "2", &three);
    assert!(
        s.contains("ensemble of 2: 2 group(s) of 2, 1 rank(s)"),
        "{s}"
    );
    let c = json(&three.join("ensemble.json"));
    assert_eq!(c["ranks_per_group"], serde_json::json!([2, 1]));
    for k in 0..2 {
        let (x, y) = (
            a["members"][k]["val_loss"].as_f64().unwrap(),
            c["members"][k]["val_loss"].as_f64().unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-6 * x.abs(),
            "member {k}: np1 {x} vs np3 {y}"
        );
    }
    let steps0 = std::fs::read_to_string(three.join("member_0/steps.csv")).unwrap();
    assert!(steps0.lines().count() > 1);
}
