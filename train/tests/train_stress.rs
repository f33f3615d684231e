//! Every label counts: a dataset mixing bulk frames (with stress) and slabs (without) ingests
//! without dropping the stress, trains on every frame with the stress term over the bulk frames
//! only; a batch without any stress gives a finite loss with a zero stress term; the trainer's
//! stress equals the engine's; training on stress lowers the validation stress error; two
//! datasets, one with stress and one without, train together.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hydragnn_train::config::LossType;
use hydragnn_train::data::{ingest, write_extxyz, Dataset, IngestOptions, SplitSpec};
use hydragnn_train::graphs::{collate, Graph, GraphSpec};
use hydragnn_train::metrics::{batch_loss_counted, predict, LossCounts};
use hydragnn_train::trainer::{new_model, plan_model};
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions, TrainSummary};
use tch::{Device, Kind};

/// Bulk frames (stress) and slabs (no stress) in one train file and one val file, ingested
/// without `drop_partial`: `dir/mixed.bp`.
fn mixed(
    dir: &Path,
    n_bulk: usize,
    n_slab: usize,
    n_val_bulk: usize,
    n_val_slab: usize,
) -> PathBuf {
    let bulk = bulk_frames(n_bulk + n_val_bulk, 3);
    let slab = slab_frames(n_slab + n_val_slab, 5);
    // Interleave so that batches mix both kinds.
    let mut train = Vec::new();
    for i in 0..n_bulk.max(n_slab) {
        train.extend(bulk[..n_bulk].get(i).cloned());
        train.extend(slab[..n_slab].get(i).cloned());
    }
    let mut val = bulk[n_bulk..].to_vec();
    val.extend_from_slice(&slab[n_slab..]);
    let (t, v) = (dir.join("mixed_train.xyz"), dir.join("mixed_val.xyz"));
    write_extxyz(&t, &train).unwrap();
    write_extxyz(&v, &val).unwrap();
    let out = dir.join("mixed.bp");
    ingest(
        &[(t, SplitSpec::Train), (v, SplitSpec::Val)],
        &out,
        "mixed",
        &IngestOptions::default(),
    )
    .unwrap();
    out
}

fn run(cfg: &serde_json::Value, dir: &Path, name: &str) -> TrainSummary {
    let cp = write_config(dir, &format!("{name}.json"), cfg);
    let cfg = TrainConfig::load(&cp).unwrap();
    train(
        &cfg,
        TrainOptions {
            out_dir: dir.join(name),
            resume: false,
            command: "test".into(),
        },
        &Dist::single(),
    )
    .unwrap()
}

fn with_stress_weight(mut c: serde_json::Value, w: f64) -> serde_json::Value {
    c["NeuralNetwork"]["Architecture"]["stress_weight"] = serde_json::json!(w);
    c
}

#[test]
fn mixed_bulk_and_slab_frames_keep_stress_and_train_on_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed(dir.path(), 6, 6, 3, 2);
    let ds = Dataset::open(&data).unwrap();
    let meta = ds.meta();
    assert_eq!(meta.schema_version, 2);
    assert!(meta.has("stress") && meta.is_partial("stress"), "{meta:?}");
    assert!(!meta.is_partial("energy") && !meta.is_partial("forces"));
    assert_eq!(meta.n_graphs("trainset"), 12);
    let frames = ds.split("trainset").unwrap().read_graphs(0..12).unwrap();
    let with: Vec<bool> = frames.iter().map(|f| f.stress.is_some()).collect();
    assert_eq!(with, (0..12).map(|i| i % 2 == 0).collect::<Vec<_>>());
    // Masks follow any selection of graphs (shuffled, repeated, over several slice reads).
    let picked = ds
        .split("trainset")
        .unwrap()
        .read_indices(&[5, 0, 1, 11, 10, 0])
        .unwrap();
    let with: Vec<bool> = picked.frames().iter().map(|f| f.stress.is_some()).collect();
    assert_eq!(with, vec![false, true, false, false, true, true]);
    // --drop-partial still drops it.
    let t = dir.path().join("mixed_train.xyz");
    let s = ingest(
        &[(t, SplitSpec::Train)],
        &dir.path().join("dropped.bp"),
        "d",
        &IngestOptions {
            drop_partial: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.dropped, vec!["stress".to_string()]);

    let c = with_stress_weight(
        config(
            &[("mixed", &data, None)],
            &[("energy", "graph")],
            serde_json::json!({"num_epoch": 2, "batch_size": 4}),
        ),
        10.0,
    );
    let s = run(&c, dir.path(), "out");
    // Every frame is trained on: 12 graphs per epoch in steps.csv.
    let text = std::fs::read_to_string(dir.path().join("out/steps.csv")).unwrap();
    let graphs: usize = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!((s.steps, graphs), (6, 24));
    // Validation counts the stress of the 3 bulk frames only, energy and forces of all 5.
    let m = &s.final_metrics["valset"]["mixed"];
    assert_eq!(m.n_graphs, 5);
    assert_eq!(m.counted["stress"], 3);
    assert_eq!(m.counted["energy"], 5);
    assert_eq!(m.counted["forces"], 5 * 8);
    let st = m.stress.expect("stress metrics");
    assert!(st.mae.is_finite() && st.mae > 0.0, "{st:?}");
    let csv = std::fs::read_to_string(dir.path().join("out/metrics.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().contains("mixed/stress_mae"),
        "{csv}"
    );

    // `hydragnn eval` counts the same entries.
    let json = dir.path().join("eval.json");
    let o = std::process::Command::new(bin())
        .arg("eval")
        .arg(dir.path().join("out/best.model"))
        .arg(&data)
        .args(["--split", "valset", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("stress_mae=") && stdout.contains("GPa"),
        "{stdout}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["metrics"]["valset"]["counted"]["stress"], 3);
}

/// The planned spec (fp64) with the stress term on, a fresh model, and the graphs of `data`'s
/// trainset.
fn setup(
    dir: &Path,
    data: &Path,
    w: f64,
) -> (mlip::Model, hydragnn_train::metrics::BranchSpec, Vec<Graph>) {
    let c = with_stress_weight(
        config(
            &[("mixed", data, None)],
            &[("energy", "graph")],
            serde_json::json!({"precision": "fp64"}),
        ),
        w,
    );
    let cp = write_config(dir, "s.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let (mc, metas) = plan_model(&cfg).unwrap();
    let spec = metas[0].1.clone();
    let model = new_model(mc.clone(), Kind::Double, Device::Cpu, 3).unwrap();
    let ds = Dataset::open(data).unwrap();
    let sr = ds.split("trainset").unwrap();
    let gs = GraphSpec::new(mc.radius, &mc.species, false);
    let graphs = gs.load(&sr, 0..sr.n_graphs(), "t").unwrap();
    (model, spec, graphs)
}

#[test]
fn a_batch_without_stress_has_a_zero_stress_term_and_the_stress_term_counts_only_bulk_frames() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed(dir.path(), 4, 4, 1, 1);
    let (model, spec, graphs) = setup(dir.path(), &data, 1000.0);
    assert!(spec.stress && spec.w_stress == 1000.0);
    let mut off = spec.clone();
    off.w_stress = 0.0;
    let loss = |spec: &hydragnn_train::metrics::BranchSpec, part: &[&Graph]| -> f64 {
        let c = collate(part, &[], &[], Kind::Double, Device::Cpu, true);
        let p = predict(&model, spec, &c, true).unwrap();
        let n = LossCounts::of(spec, &c);
        batch_loss_counted(spec, &p, &c, LossType::Mse, &n).double_value(&[])
    };
    let slabs: Vec<&Graph> = graphs.iter().filter(|g| g.stress.is_none()).collect();
    let bulk: Vec<&Graph> = graphs.iter().filter(|g| g.stress.is_some()).collect();
    assert_eq!((slabs.len(), bulk.len()), (4, 4));
    // No stress in the batch: finite, and exactly the loss without the stress term.
    let (l_on, l_off) = (loss(&spec, &slabs), loss(&off, &slabs));
    assert!(l_on.is_finite() && l_on == l_off, "{l_on} vs {l_off}");
    // With stress in the batch the term is there ...
    let all: Vec<&Graph> = graphs.iter().collect();
    let (a_on, a_off) = (loss(&spec, &all), loss(&off, &all));
    assert!(a_on > a_off, "{a_on} vs {a_off}");
    // ... and averaged over the bulk frames only: the mixed batch's stress term equals the bulk
    // batch's (its slabs add nothing to it and do not dilute it).
    let (b_on, b_off) = (loss(&spec, &bulk), loss(&off, &bulk));
    let (t_all, t_bulk) = (a_on - a_off, b_on - b_off);
    assert!(
        (t_all - t_bulk).abs() <= 1e-9 * t_bulk.abs(),
        "stress term {t_all} (mixed) vs {t_bulk} (bulk only)"
    );
    // A batch with no label of any kind: a zero loss, not NaN.
    let mut bare = slabs[0].clone();
    bare.energy = None;
    bare.forces = None;
    let l = loss(&spec, &[&bare]);
    assert_eq!(l, 0.0);
}

#[test]
fn trainer_stress_equals_engine_stress() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed(dir.path(), 2, 1, 1, 1);
    let (model, spec, graphs) = setup(dir.path(), &data, 1.0);
    let ds = Dataset::open(&data).unwrap();
    let b = ds.split("trainset").unwrap().read_block(0..3).unwrap();
    let refs: Vec<&Graph> = graphs.iter().collect();
    let c = collate(&refs, &[], &[], Kind::Double, Device::Cpu, true);
    let p = predict(&model, &spec, &c, false).unwrap();
    let st: Vec<f64> = Vec::try_from(p.stress.unwrap().view([-1])).unwrap();
    let mut checked = 0;
    for (i, g) in graphs.iter().enumerate() {
        let Some(v) = g.volume else { continue };
        let fr = b.frame(i);
        let s = mlip::Structure::new(fr.positions.clone(), fr.numbers.clone(), fr.cell, fr.pbc)
            .unwrap();
        let r = model.compute(&s, mlip::Request::EFV).unwrap();
        let se: Vec<f64> = r.stress(v).iter().flatten().copied().collect();
        let scale = se.iter().map(|x| x.abs()).fold(0.0, f64::max);
        assert!(scale > 0.0);
        for (x, y) in st[9 * i..9 * i + 9].iter().zip(&se) {
            assert!((x - y).abs() <= 1e-9 * scale, "graph {i}: {x} vs {y}");
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "the two bulk frames");
    // The labels follow the same convention, ASE's (1/V) dE/d(strain): a finite difference of
    // the LJ energy under a uniaxial strain of the test data's cell gives its sigma_xx.
    let f = &bulk_frames(1, 3)[0];
    let strained = |e: f64| {
        let k = |p: [f64; 3]| [p[0] * (1.0 + e), p[1], p[2]];
        let pos: Vec<[f64; 3]> = f.positions.iter().map(|&p| k(p)).collect();
        let cell = [k(f.cell[0]), k(f.cell[1]), k(f.cell[2])];
        let s = mlip::Structure::new(pos, f.numbers.clone(), cell, f.pbc).unwrap();
        label(&s).0
    };
    let h = 1e-5;
    let v = f.cell[0][0] * f.cell[1][1] * f.cell[2][2];
    let fd = (strained(h) - strained(-h)) / (2.0 * h) / v;
    let sxx = f.stress.unwrap()[0];
    assert!(
        (fd - sxx).abs() <= 1e-6 * sxx.abs().max(1e-3),
        "{fd} vs {sxx}"
    );
}

#[test]
fn stress_training_lowers_the_validation_stress_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed(dir.path(), 12, 4, 6, 2);
    let base = config(
        &[("mixed", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 6, "batch_size": 4, "precision": "fp64"}),
    );
    let s0 = run(&with_stress_weight(base.clone(), 0.0), dir.path(), "w0");
    let s1 = run(&with_stress_weight(base, 10000.0), dir.path(), "w1");
    assert_eq!((s0.steps, s1.steps), (24, 24));
    let e0 = s0.final_metrics["valset"]["mixed"].stress.unwrap();
    let e1 = s1.final_metrics["valset"]["mixed"].stress.unwrap();
    eprintln!(
        "val stress MAE: stress_weight 0 {:.3e}, 10000 {:.3e} eV/A^3",
        e0.mae, e1.mae
    );
    assert!(
        e1.mae < 0.7 * e0.mae,
        "stress_weight 1000: {e1:?}, 0: {e0:?}"
    );
}

#[test]
fn two_datasets_one_with_stress_train_together() {
    let dir = tempfile::tempdir().unwrap();
    let bulk = bulk_frames(8, 9);
    let with = dataset(dir.path(), "bulk", &bulk[..6], &bulk[6..], &[]);
    let without = metals(dir.path(), 6, 2);
    assert!(!Dataset::open(&without).unwrap().meta().has("stress"));
    let c = with_stress_weight(
        config(
            &[("bulk", &with, None), ("metals", &without, None)],
            &[("energy", "graph")],
            serde_json::json!({"num_epoch": 2}),
        ),
        10.0,
    );
    let s = run(&c, dir.path(), "out");
    let v = &s.final_metrics["valset"];
    assert_eq!(v["bulk"].counted["stress"], 2);
    assert!(v["bulk"].stress.is_some() && v["metals"].stress.is_none());
    assert!(v["metals"].forces.unwrap().mae.is_finite());
}
