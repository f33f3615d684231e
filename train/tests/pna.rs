//! PNA as a trainable backbone (issue 15): the trainer computes PNA's degree averages from the
//! training graphs (or takes them from the config's `pna_deg` histogram), stores them in the model
//! file, and PNA trains from scratch on the committed metals slice with energies and forces;
//! PNAEq trains too; HydraGNN's PNAPlus (PNA with Bessel-gated messages) trains, its forces are
//! the finite-difference gradient of its energy; DimeNet++ trains with HydraGNN's keys; bad keys
//! are refused naming the key.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hydragnn_train::data::{ingest, Dataset, IngestOptions, SplitSpec};
use hydragnn_train::trainer::plan_model;
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions};
use mlip::model::config::MpnnType;
use mlip::{Request, Structure};

/// The committed metals slice (train/data/metals.xyz, EMT Cu/Al/Ni, 240 frames) ingested into `dir`.
fn metals_slice(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = dir.join("metals.bp");
    ingest(
        &[(root.join("data/metals.xyz"), SplitSpec::Random)],
        &p,
        "metals",
        &IngestOptions::default(),
    )
    .unwrap();
    p
}

/// A PNA config on `data` with the given Architecture and Training overrides.
fn pna_config(
    data: &Path,
    arch: serde_json::Value,
    training: serde_json::Value,
) -> serde_json::Value {
    let mut c = config(&[("metals", data, None)], &[("energy", "graph")], training);
    let a = &mut c["NeuralNetwork"]["Architecture"];
    a["mpnn_type"] = "PNA".into();
    a["radius"] = 5.0.into();
    a["hidden_dim"] = 16.into();
    a["num_conv_layers"] = 2.into();
    for (k, v) in arch.as_object().unwrap() {
        a[k] = v.clone();
    }
    c
}

/// (mean degree, mean log(degree + 1)) of the first 64 training graphs, from the engine's
/// neighbour list (independent of the trainer's graphs).
fn degree_averages(data: &Path, rc: f64) -> (f64, f64) {
    let ds = Dataset::open(data).unwrap();
    let tr = ds.split("trainset").unwrap();
    let block = tr.read_block(0..tr.n_graphs().min(64)).unwrap();
    let (mut n, mut lin, mut log) = (0.0, 0.0, 0.0);
    for f in block.frames() {
        let s = Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
        let nl = mlip::neighbors::neighbor_list(&s, rc).unwrap();
        for i in 0..s.len() {
            let d = nl.centers.iter().filter(|&&c| c == i).count() as f64;
            n += 1.0;
            lin += d;
            log += (d + 1.0).ln();
        }
    }
    (lin / n, log / n)
}

/// Trains `cfg` (which stops at `steps` by max_steps, after at least one epoch) into `out`,
/// checks that the loss fell (last 10 steps below 0.9 x the first 10), and returns the best
/// model in float64 after checking on the first validation frame that its forces are not zero
/// and equal -dE/dx by central differences (3 components, 1e-6 of the largest force).
fn train_and_check_forces(cfg: &TrainConfig, data: &Path, out: &Path, steps: usize) -> mlip::Model {
    let opts = TrainOptions {
        out_dir: out.to_path_buf(),
        resume: false,
        command: "test".into(),
    };
    let name = format!("{:?}", cfg.arch().mpnn_type);
    let s = train(cfg, opts, &Dist::single()).unwrap();
    assert_eq!(s.steps, steps);
    let losses: Vec<f64> = step_losses(out).into_iter().map(|(_, l)| l).collect();
    let head: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let tail: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    eprintln!("{name} loss: first 10 steps {head:.4}, last 10 {tail:.4}");
    assert!(
        tail < 0.9 * head,
        "{name}: loss did not decrease: {head} -> {tail}"
    );
    let m = mlip::Model::load(out.join("best.model"), tch::Kind::Double, tch::Device::Cpu).unwrap();
    let ds = Dataset::open(data).unwrap();
    let fr = &ds
        .split("valset")
        .unwrap()
        .read_block(0..1)
        .unwrap()
        .frames()[0];
    let s0 = Structure::new(fr.positions.clone(), fr.numbers.clone(), fr.cell, fr.pbc).unwrap();
    let r = m.compute(&s0, Request::ALL).unwrap();
    let fmax = r
        .forces
        .iter()
        .flatten()
        .fold(0.0f64, |a, b| a.max(b.abs()));
    assert!(fmax > 1e-4, "{name} forces: max {fmax:e}");
    let h = 1e-5;
    for (i, c) in [(0usize, 0usize), (5, 1), (17, 2)] {
        let e_at = |d: f64| {
            let mut p = fr.positions.clone();
            p[i][c] += d;
            let s = Structure::new(p, fr.numbers.clone(), fr.cell, fr.pbc).unwrap();
            m.compute(&s, Request::ALL).unwrap().energy
        };
        let fd = -(e_at(h) - e_at(-h)) / (2.0 * h);
        let f = r.forces[i][c];
        assert!(
            (fd - f).abs() <= 1e-6 * fmax.max(1.0),
            "{name} atom {i} component {c}: force {f:e}, -dE/dx by differences {fd:e}"
        );
    }
    m
}

#[test]
fn pna_trains_from_scratch_on_the_metals_slice() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals_slice(dir.path());
    let c = pna_config(
        &data,
        serde_json::json!({}),
        serde_json::json!({"num_epoch": 100, "max_steps": 60, "batch_size": 8, "precision": "fp32",
            "Optimizer": {"type": "AdamW", "learning_rate": 0.003}}),
    );
    let cp = write_config(dir.path(), "pna.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let (mc, _) = plan_model(&cfg).unwrap();
    assert_eq!(mc.mpnn_type, MpnnType::Pna);
    assert_eq!(mc.pna.edge_dim, 1, "edge_dim defaults to the pair distance");
    let (lin, log) = degree_averages(&data, 5.0);
    eprintln!(
        "PNA degree averages: lin {} log {} (neighbour list: {lin} {log})",
        mc.pna.avg_deg_lin, mc.pna.avg_deg_log
    );
    assert!(
        (mc.pna.avg_deg_lin - lin).abs() < 1e-9 && (mc.pna.avg_deg_log - log).abs() < 1e-9,
        "trainer {} {} vs neighbour list {lin} {log}",
        mc.pna.avg_deg_lin,
        mc.pna.avg_deg_log
    );
    assert!(lin > 20.0, "a dense metal at 5 A: mean degree {lin}");

    let out = dir.path().join("pna");
    let opts = TrainOptions {
        out_dir: out.clone(),
        resume: false,
        command: "test".into(),
    };
    let s = train(&cfg, opts, &Dist::single()).unwrap();
    assert_eq!(s.steps, 60);
    let losses: Vec<f64> = step_losses(&out).into_iter().map(|(_, l)| l).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let head: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let tail: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    eprintln!("PNA loss: first 10 steps {head:.4}, last 10 {tail:.4}");
    assert!(tail < 0.9 * head, "loss did not decrease: {head} -> {tail}");

    // The model file holds the degree averages and computes non-zero forces.
    let m = mlip::Model::load(out.join("best.model"), tch::Kind::Float, tch::Device::Cpu).unwrap();
    assert_eq!(m.config().mpnn_type, MpnnType::Pna);
    assert_eq!(m.config().pna.avg_deg_lin, mc.pna.avg_deg_lin);
    assert_eq!(m.config().pna.avg_deg_log, mc.pna.avg_deg_log);
    let ds = Dataset::open(&data).unwrap();
    let val = ds.split("valset").unwrap();
    let f = val.read_block(0..4).unwrap().frames();
    let mut fmax = 0.0f64;
    for fr in &f {
        let s = Structure::new(fr.positions.clone(), fr.numbers.clone(), fr.cell, fr.pbc).unwrap();
        let r = m.compute(&s, Request::ALL).unwrap();
        assert!(r.energy.is_finite());
        fmax = r.forces.iter().flatten().fold(fmax, |a, b| a.max(b.abs()));
    }
    assert!(fmax > 1e-4 && fmax.is_finite(), "PNA forces: max {fmax:e}");
}

#[test]
fn pna_deg_from_the_config_and_pnaeq() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 8, 4);
    // HydraGNN's pna_deg: 2 atoms of degree 1, 1 of degree 3.
    let c = pna_config(
        &data,
        serde_json::json!({"pna_deg": [0, 2, 0, 1]}),
        serde_json::json!({}),
    );
    let cfg = TrainConfig::load(write_config(dir.path(), "deg.json", &c)).unwrap();
    let (mc, _) = plan_model(&cfg).unwrap();
    assert!((mc.pna.avg_deg_lin - 5.0 / 3.0).abs() < 1e-12);
    let log = (2.0 * 2f64.ln() + 4f64.ln()) / 3.0;
    assert!((mc.pna.avg_deg_log - log).abs() < 1e-12);

    // PNAEq gets the same statistics and trains (a few steps, finite losses).
    let c = pna_config(
        &data,
        serde_json::json!({"mpnn_type": "PNAEq", "radius": 3.5}),
        serde_json::json!({"max_steps": 4}),
    );
    let cfg = TrainConfig::load(write_config(dir.path(), "eq.json", &c)).unwrap();
    let (mc, _) = plan_model(&cfg).unwrap();
    let (lin, log) = degree_averages(&data, 3.5);
    assert!((mc.pna.avg_deg_lin - lin).abs() < 1e-9 && (mc.pna.avg_deg_log - log).abs() < 1e-9);
    let out = dir.path().join("eq");
    let opts = TrainOptions {
        out_dir: out.clone(),
        resume: false,
        command: "test".into(),
    };
    train(&cfg, opts, &Dist::single()).unwrap();
    let losses = step_losses(&out);
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|(_, l)| l.is_finite()), "{losses:?}");

    // Fine-tuning keeps the model file's averages (its weights were trained with them), over
    // the config's pna_deg.
    let c = pna_config(
        &data,
        serde_json::json!({"mpnn_type": "PNAEq", "radius": 3.5, "pna_deg": [0, 2, 0, 1]}),
        serde_json::json!({"init_from": out.join("best.model")}),
    );
    let cfg = TrainConfig::load(write_config(dir.path(), "ft.json", &c)).unwrap();
    let (ft, _) = plan_model(&cfg).unwrap();
    assert_eq!(ft.pna.avg_deg_lin, mc.pna.avg_deg_lin);
    assert_eq!(ft.pna.avg_deg_log, mc.pna.avg_deg_log);
}

#[test]
fn bad_pna_keys_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let err = |arch: serde_json::Value, training: serde_json::Value| {
        let c = pna_config(&data, arch, training);
        let p = write_config(dir.path(), "bad.json", &c);
        TrainConfig::load(&p).unwrap_err().to_string()
    };
    let e = err(serde_json::json!({"edge_dim": 2}), serde_json::json!({}));
    assert!(e.contains("edge_dim") && e.contains('2'), "{e}");
    let e = err(serde_json::json!({"edge_dim": 0}), serde_json::json!({}));
    assert!(
        e.contains("edge_dim") && e.contains("compute_grad_energy"),
        "{e}"
    );
    let e = err(
        serde_json::json!({"mpnn_type": "SchNet", "edge_dim": 1}),
        serde_json::json!({}),
    );
    assert!(e.contains("edge_dim") && e.contains("PNA"), "{e}");
    let e = err(
        serde_json::json!({"mpnn_type": "SchNet", "pna_deg": [0, 1]}),
        serde_json::json!({}),
    );
    assert!(e.contains("pna_deg"), "{e}");
    let e = err(
        serde_json::json!({"pna_deg": [0, -1]}),
        serde_json::json!({}),
    );
    assert!(e.contains("pna_deg[1]") && e.contains("-1"), "{e}");
    let e = err(serde_json::json!({"pna_deg": [5]}), serde_json::json!({}));
    assert!(e.contains("pna_deg"), "{e}");
    let e = err(
        serde_json::json!({"mpnn_type": "DimeNet", "num_spherical": 9}),
        serde_json::json!({}),
    );
    assert!(e.contains("num_spherical") && e.contains('9'), "{e}");
    let e = err(
        serde_json::json!({"int_emb_size": 8}),
        serde_json::json!({}),
    );
    assert!(e.contains("int_emb_size") && e.contains("DimeNet"), "{e}");
    // Without forces a PNA without edge features is a valid graph model.
    let c = pna_config(
        &data,
        serde_json::json!({"edge_dim": 0}),
        serde_json::json!({"compute_grad_energy": false}),
    );
    let cfg = TrainConfig::load(write_config(dir.path(), "e0.json", &c)).unwrap();
    assert_eq!(plan_model(&cfg).unwrap().0.pna.edge_dim, 0);
}

#[test]
fn pnaplus_trains_and_its_forces_are_the_energy_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals_slice(dir.path());
    let c = pna_config(
        &data,
        serde_json::json!({"mpnn_type": "PNAPlus", "num_radial": 6}),
        serde_json::json!({"num_epoch": 100, "max_steps": 40, "batch_size": 8, "precision": "fp64",
            "Optimizer": {"type": "AdamW", "learning_rate": 0.003}}),
    );
    let cp = write_config(dir.path(), "pnaplus.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    assert!(cfg.arch().pna_plus);
    let (mc, _) = plan_model(&cfg).unwrap();
    assert_eq!(mc.mpnn_type, MpnnType::Pna);
    assert!(mc.pna.bessel_rbf && mc.pna.edge_dim == 0 && mc.pna.envelope_exponent == 5);
    assert_eq!(mc.num_radial, 6);
    let m = train_and_check_forces(&cfg, &data, &dir.path().join("pnaplus"), 40);
    assert!(m.config().pna.bessel_rbf);
}

#[test]
fn pnaplus_refuses_edge_dim() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let c = pna_config(
        &data,
        serde_json::json!({"mpnn_type": "PNAPlus", "edge_dim": 1}),
        serde_json::json!({}),
    );
    let e = TrainConfig::load(write_config(dir.path(), "bad.json", &c))
        .unwrap_err()
        .to_string();
    assert!(e.contains("edge_dim") && e.contains("PNAPlus"), "{e}");
}

#[test]
fn dimenet_trains_and_its_forces_are_the_energy_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals_slice(dir.path());
    let c = pna_config(
        &data,
        serde_json::json!({"mpnn_type": "DimeNet", "radius": 4.0, "num_radial": 6,
            "basis_emb_size": 4, "int_emb_size": 8, "out_emb_size": 16, "num_spherical": 3,
            "num_before_skip": 1, "num_after_skip": 1}),
        serde_json::json!({"num_epoch": 100, "max_steps": 30, "batch_size": 8, "precision": "fp64",
            "Optimizer": {"type": "AdamW", "learning_rate": 0.003}}),
    );
    let cp = write_config(dir.path(), "dimenet.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let (mc, _) = plan_model(&cfg).unwrap();
    assert_eq!(mc.mpnn_type, MpnnType::DimeNet);
    assert_eq!(
        (
            mc.dimenet.int_emb_size,
            mc.dimenet.num_spherical,
            mc.dimenet.envelope_exponent
        ),
        (8, 3, 5)
    );
    // Sums normalised by the training graphs' mean degree (as for PaiNN and EGNN).
    assert!(
        mc.avg_num_neighbors.is_some_and(|k| k > 10.0),
        "{:?}",
        mc.avg_num_neighbors
    );
    let m = train_and_check_forces(&cfg, &data, &dir.path().join("dimenet"), 30);
    assert_eq!(m.config().mpnn_type, MpnnType::DimeNet);
}
