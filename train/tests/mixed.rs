//! Mixed multi-dataset batches (`Training.batch_mixing: "mixed"`, `Dataset.sampling`): each
//! sampling mode draws the proportions it promises; a mixed batch routes every graph to its own
//! branch in one pass (its loss equals the per-branch losses computed separately, weighted by the
//! datasets' `loss_weight`) and updates only the branches present; a joint run over three
//! datasets with a 10x size imbalance reports per-branch metrics and plots; bad keys are named.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use hydragnn_train::config::{BatchMixing, LossType, Sampling, SamplingMode};
use hydragnn_train::graphs::collate;
use hydragnn_train::metrics::{batch_loss_counted, predict, LossCounts};
use hydragnn_train::trainer::{batch_plan, epoch_plan, epoch_quotas, Trainer};
use hydragnn_train::{Dist, TrainConfig, TrainOptions};
use mlip::model::config::HeadKind;
use tch::{Device, Kind, Tensor};

fn sampling(mode: SamplingMode, alpha: Option<f64>) -> Sampling {
    Sampling { mode, alpha }
}

/// Draws per dataset over one epoch's plan, and per (dataset, sample).
fn count(plan: &[Vec<(usize, usize)>], k: usize) -> (Vec<usize>, BTreeMap<(usize, usize), usize>) {
    let mut per = vec![0; k];
    let mut each = BTreeMap::new();
    for b in plan {
        for &(d, i) in b {
            per[d] += 1;
            *each.entry((d, i)).or_insert(0) += 1;
        }
    }
    (per, each)
}

#[test]
fn sampling_modes_draw_the_promised_proportions() {
    // Three datasets, 15x imbalance.
    let sizes = [120usize, 30, 8];
    let n: usize = sizes.iter().sum();
    let bs = 7;
    for mixing in [BatchMixing::Mixed, BatchMixing::PerDataset] {
        for (mode, alpha) in [
            (SamplingMode::Proportional, None),
            (SamplingMode::Uniform, None),
            (SamplingMode::Temperature, Some(0.5)),
            (SamplingMode::Temperature, Some(0.0)),
            (SamplingMode::Temperature, Some(1.0)),
        ] {
            let s = sampling(mode, alpha);
            // What each mode promises: p_d·N draws (to within one), N per epoch.
            let w: Vec<f64> = sizes
                .iter()
                .map(|&x| match mode {
                    SamplingMode::Proportional => x as f64,
                    SamplingMode::Uniform => 1.0,
                    SamplingMode::Temperature => (x as f64).powf(alpha.unwrap()),
                })
                .collect();
            let wsum: f64 = w.iter().sum();
            for epoch in 0..3 {
                let plan = batch_plan(5, epoch, &sizes, bs, mixing, &s);
                let (per, each) = count(&plan, sizes.len());
                assert_eq!(per.iter().sum::<usize>(), n, "{mode:?}: epoch length");
                assert_eq!(per, epoch_quotas(&sizes, &s));
                for d in 0..sizes.len() {
                    let want = w[d] / wsum * n as f64;
                    assert!(
                        (per[d] as f64 - want).abs() < 1.0,
                        "{mixing:?} {mode:?} alpha {alpha:?}: dataset {d} drawn {} times, promised {want:.2}",
                        per[d]
                    );
                    // Within a dataset every sample is drawn as evenly as possible.
                    let (lo, hi) = (per[d] / sizes[d], per[d].div_ceil(sizes[d]));
                    for i in 0..sizes[d] {
                        let c = each.get(&(d, i)).copied().unwrap_or(0);
                        assert!(
                            (lo..=hi).contains(&c),
                            "{mode:?}: sample {i} of dataset {d} drawn {c} times, not in {lo}..={hi}"
                        );
                    }
                }
                if mode == SamplingMode::Proportional {
                    assert!(each.values().all(|&c| c == 1), "every sample once");
                }
                // Batch shapes: per_dataset batches hold one dataset; mixed ones are full but the
                // last, and some hold several datasets.
                match mixing {
                    BatchMixing::PerDataset => {
                        assert!(plan.iter().all(|b| b.iter().all(|x| x.0 == b[0].0)));
                    }
                    BatchMixing::Mixed => {
                        assert!(plan[..plan.len() - 1].iter().all(|b| b.len() == bs));
                        assert!(plan.iter().any(|b| b.iter().any(|x| x.0 != b[0].0)));
                    }
                }
                // Deterministic from (seed, epoch); another epoch or seed draws another order.
                assert_eq!(plan, batch_plan(5, epoch, &sizes, bs, mixing, &s));
                assert_ne!(plan, batch_plan(5, epoch + 1, &sizes, bs, mixing, &s));
                assert_ne!(plan, batch_plan(6, epoch, &sizes, bs, mixing, &s));
            }
        }
    }
    // The default (per_dataset, proportional) is today's plan, unchanged.
    let old: Vec<Vec<(usize, usize)>> = epoch_plan(5, 2, &sizes, bs)
        .into_iter()
        .map(|(d, idx)| idx.into_iter().map(|i| (d, i)).collect())
        .collect();
    assert_eq!(
        old,
        batch_plan(
            5,
            2,
            &sizes,
            bs,
            BatchMixing::PerDataset,
            &Sampling::default()
        )
    );
    // Uniform over 3 datasets: 158 draws as 53/53/52; temperature 0.5 as sqrt(n).
    let u = epoch_quotas(&sizes, &sampling(SamplingMode::Uniform, None));
    assert_eq!(u, vec![53, 53, 52]);
    let t = epoch_quotas(&sizes, &sampling(SamplingMode::Temperature, Some(0.5)));
    assert_eq!(t, vec![90, 45, 23]);
}

/// Three datasets with a 10x imbalance: metals (40 training graphs), molecules (12, with a `gap`
/// and a per-atom `charge`), slabs (4).
fn three(dir: &Path) -> [PathBuf; 3] {
    let m = metals(dir, 40, 6);
    let mol = molecules(dir, 12, 4);
    let f = slab_frames(7, 21);
    let s = dataset(dir, "slabs", &f[..4], &f[4..], &[]);
    [m, mol, s]
}

fn mixed_config(p: &[PathBuf; 3], training: serde_json::Value) -> serde_json::Value {
    let mut c = config(
        &[
            ("metals", &p[0], Some(&["energy"])),
            ("molecules", &p[1], None),
            ("slabs", &p[2], Some(&["energy"])),
        ],
        &[("energy", "graph"), ("gap", "graph"), ("charge", "node")],
        training,
    );
    c["NeuralNetwork"]["Training"]["batch_mixing"] = "mixed".into();
    c
}

/// The loss of the global batch `batch` computed branch by branch: every dataset's graphs through
/// their own branch separately ([`predict`]), each term divided by its count over the whole batch
/// (all datasets), times the dataset's weight.
fn per_branch_loss(t: &Trainer, batch: &[(usize, usize)], weights: &[f64]) -> f64 {
    let runs = t.datasets();
    let graphs: Vec<Vec<_>> = (0..runs.len())
        .map(|d| {
            batch
                .iter()
                .filter(|x| x.0 == d)
                .map(|x| &runs[d].train[x.1])
                .collect()
        })
        .collect();
    let all: Vec<_> = graphs.iter().flatten().collect();
    let energy = all.iter().filter(|g| g.energy.is_some()).count() as f64;
    let forces: f64 = all
        .iter()
        .filter(|g| g.forces.is_some())
        .map(|g| g.n_atoms() as f64)
        .sum();
    let stress = all.iter().filter(|g| g.stress.is_some()).count() as f64;
    let mut expected = 0.0;
    for (d, gs) in graphs.iter().enumerate() {
        if gs.is_empty() {
            continue;
        }
        let spec = &runs[d].spec;
        let cb = collate(
            gs,
            &spec.graph_props(),
            &spec.node_props(),
            Kind::Double,
            Device::Cpu,
            true,
        );
        let pred = predict(&t.model, spec, &cb, true).unwrap();
        let counts = LossCounts {
            energy,
            forces,
            stress,
            props: spec
                .props
                .iter()
                .map(|p| {
                    all.iter()
                        .filter(|g| g.props.contains_key(&p.name))
                        .map(|g| match p.kind {
                            HeadKind::Graph => 1.0,
                            HeadKind::Node => g.n_atoms() as f64,
                        })
                        .sum()
                })
                .collect(),
        };
        let l = batch_loss_counted(spec, &pred, &cb, LossType::Mse, &counts).double_value(&[]);
        expected += weights[d] * l;
    }
    expected
}

#[test]
fn mixed_step_routes_each_graph_to_its_branch_and_updates_the_branches_present() {
    let dir = tempfile::tempdir().unwrap();
    let p = three(dir.path());
    let sizes = [40usize, 12, 4];
    let s = sampling(SamplingMode::Temperature, Some(0.5));
    // A seed whose first batch holds metals and molecules but no slab.
    let seed = (0..200u64)
        .find(|&seed| {
            let b = &batch_plan(seed, 0, &sizes, 5, BatchMixing::Mixed, &s)[0];
            let has = |d| b.iter().any(|x| x.0 == d);
            has(0) && has(1) && !has(2)
        })
        .unwrap();
    let mut c = mixed_config(
        &p,
        serde_json::json!({"batch_size": 5, "seed": seed, "precision": "fp64", "max_steps": 1}),
    );
    c["Dataset"]["sampling"] = serde_json::json!({"mode": "temperature", "alpha": 0.5});
    c["Dataset"]["datasets"][1]["loss_weight"] = 2.5.into();
    // Random heads, so every head's routing matters.
    c["NeuralNetwork"]["Architecture"]["zero_init_heads"] = false.into();
    let cp = write_config(dir.path(), "c.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let dist = Dist::single();
    let out = dir.path().join("out");
    let mut t = Trainer::new(
        &cfg,
        TrainOptions {
            out_dir: out.clone(),
            resume: false,
            command: "test".into(),
        },
        &dist,
    )
    .unwrap();
    let before: BTreeMap<String, Tensor> = t
        .model
        .var_store()
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect();

    let batch = &batch_plan(seed, 0, &sizes, 5, BatchMixing::Mixed, &s)[0];
    let expected = per_branch_loss(&t, batch, &[1.0, 2.5, 1.0]);
    let summary = t.run().unwrap();
    assert_eq!(summary.steps, 1);
    let got = step_losses(&out)[0].1;
    assert!(
        (got - expected).abs() <= 1e-10 * expected.abs(),
        "mixed step loss {got} vs per-branch {expected}"
    );
    let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    assert!(
        csv.lines().nth(1).unwrap().contains(",metals+molecules,"),
        "{csv}"
    );
    // Shared weights and the branches present moved; the absent branch did not.
    let after = t.model.var_store().variables();
    let mut moved = [0usize; 4];
    for (name, v) in &after {
        let changed = !before[name].equal(v);
        let slot = t.model.parameter_branch(name).unwrap_or(3);
        if slot == 2 {
            assert!(!changed, "{name} of the absent branch changed");
        }
        moved[slot] += changed as usize;
    }
    assert!(
        moved[0] > 0 && moved[1] > 0 && moved[3] > 0,
        "moved per branch/shared: {moved:?}"
    );
}

#[test]
fn joint_run_three_imbalanced_datasets_reports_per_branch_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let p = three(dir.path());
    let mut c = mixed_config(&p, serde_json::json!({"num_epoch": 3, "batch_size": 8}));
    c["Dataset"]["sampling"] = serde_json::json!({"mode": "uniform"});
    c["Visualization"] = serde_json::json!({"create_plots": true});
    let cp = write_config(dir.path(), "c.json", &c);
    let out = dir.path().join("out");
    let cfg = TrainConfig::load(&cp).unwrap();
    let s = hydragnn_train::train(
        &cfg,
        TrainOptions {
            out_dir: out.clone(),
            resume: false,
            command: "test".into(),
        },
        &Dist::single(),
    )
    .unwrap();
    // Uniform: 56 draws per epoch (the trainsets' total), 19/19/18 per dataset, in 7 batches.
    assert_eq!(s.epochs, 3);
    assert_eq!(s.steps, 3 * 7);
    let losses = step_losses(&out);
    assert!(losses.iter().all(|l| l.1.is_finite()));
    let (first, last): (f64, f64) = (
        losses[..7].iter().map(|l| l.1).sum(),
        losses[14..].iter().map(|l| l.1).sum(),
    );
    assert!(last < first, "loss did not decrease: {first} -> {last}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let header = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    for (b, val) in [("metals", 6), ("molecules", 4), ("slabs", 3)] {
        for e in 0..3 {
            let br = &m["epochs"][e]["branches"][b];
            assert_eq!(br["n_graphs"], val, "{b} epoch {e}");
            assert!(br["energy_per_atom"]["mae"].as_f64().unwrap().is_finite());
            assert!(br["forces"]["mae"].as_f64().unwrap() > 0.0);
        }
        assert!(header.contains(&format!("{b}/force_mae")), "{header}");
        assert!(out.join(format!("parity_{b}_forces.png")).exists(), "{b}");
    }
    let mol = &m["epochs"][2]["branches"]["molecules"]["props"];
    assert!(mol["gap"]["mae"].as_f64().unwrap().is_finite());
    assert!(mol["charge"]["mae"].as_f64().unwrap().is_finite());
    assert!(out.join("parity_molecules_gap.png").exists());
}

#[test]
fn bad_mixing_and_sampling_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = three(dir.path());
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "/NeuralNetwork/Training/batch_mixing",
            "interleaved".into(),
            "batch_mixing",
        ),
        (
            "/Dataset/sampling",
            serde_json::json!({"mode": "square"}),
            "sampling.mode",
        ),
        (
            "/Dataset/sampling",
            serde_json::json!({"mode": "uniform", "alpha": 0.5}),
            "Dataset.sampling.alpha",
        ),
        (
            "/Dataset/sampling",
            serde_json::json!({"mode": "temperature", "alpha": 2.0}),
            "Dataset.sampling.alpha",
        ),
        (
            "/Dataset/datasets/2/loss_weight",
            serde_json::json!(-1.0),
            "Dataset.datasets[2].loss_weight",
        ),
        (
            "/NeuralNetwork/Training/ddstore",
            serde_json::json!(true),
            "NeuralNetwork.Training.ddstore",
        ),
    ];
    for (ptr, value, key) in cases {
        let mut c = mixed_config(&p, serde_json::json!({}));
        let (parent, last) = ptr.rsplit_once('/').unwrap();
        c.pointer_mut(parent).unwrap()[last] = value.clone();
        let cp = write_config(dir.path(), "bad.json", &c);
        let e = TrainConfig::load(&cp).expect_err(ptr).to_string();
        assert!(e.contains(key), "{ptr} = {value}: {e}");
    }
}

#[test]
fn mixed_run_stopped_and_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let p = three(dir.path());
    let mut c = mixed_config(&p, serde_json::json!({"num_epoch": 2, "batch_size": 8}));
    c["Dataset"]["sampling"] = serde_json::json!({"mode": "temperature"});
    let whole = write_config(dir.path(), "whole.json", &c);
    c["NeuralNetwork"]["Training"]["max_steps"] = 9.into();
    let part = write_config(dir.path(), "part.json", &c);
    let run = |cp: &Path, out: &Path, resume: bool| {
        let cfg = TrainConfig::load(cp).unwrap();
        hydragnn_train::train(
            &cfg,
            TrainOptions {
                out_dir: out.to_path_buf(),
                resume,
                command: "test".into(),
            },
            &Dist::single(),
        )
        .unwrap()
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&whole, &a, false);
    assert_eq!(run(&part, &b, false).steps, 9);
    // max_steps may change on --resume: the rest of the run from the checkpoint.
    std::fs::copy(&whole, &part).unwrap();
    run(&part, &b, true);
    let (la, lb) = (step_losses(&a), step_losses(&b));
    assert_eq!(la.len(), 2 * 7);
    assert_eq!(la, lb, "resumed mixed run differs");
}

#[test]
fn mixed_step_with_stress_on_some_datasets_matches_the_per_branch_losses() {
    let dir = tempfile::tempdir().unwrap();
    let f = bulk_frames(12, 3);
    let bulk = dataset(dir.path(), "bulk", &f[..9], &f[9..], &[]);
    let f = slab_frames(9, 4);
    let slabs = dataset(dir.path(), "slabs", &f[..6], &f[6..], &[]);
    let mol = molecules(dir.path(), 6, 2);
    let mut c = config(
        &[
            ("bulk", &bulk, Some(&["energy"])),
            ("slabs", &slabs, Some(&["energy"])),
            ("molecules", &mol, None),
        ],
        &[("energy", "graph"), ("gap", "graph")],
        serde_json::json!({"batch_size": 12, "precision": "fp64", "max_steps": 1,
                           "batch_mixing": "mixed"}),
    );
    c["NeuralNetwork"]["Architecture"]["zero_init_heads"] = false.into();
    c["NeuralNetwork"]["Architecture"]["stress_weight"] = 50.0.into();
    c["Dataset"]["datasets"][0]["loss_weight"] = 0.5.into();
    let cp = write_config(dir.path(), "c.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let dist = Dist::single();
    let out = dir.path().join("out");
    let mut t = Trainer::new(
        &cfg,
        TrainOptions {
            out_dir: out.clone(),
            resume: false,
            command: "test".into(),
        },
        &dist,
    )
    .unwrap();
    let batch = &batch_plan(
        1,
        0,
        &[9, 6, 6],
        12,
        BatchMixing::Mixed,
        &Sampling::default(),
    )[0];
    for d in 0..3 {
        assert!(
            batch.iter().any(|x| x.0 == d),
            "dataset {d} not in {batch:?}"
        );
    }
    let expected = per_branch_loss(&t, batch, &[0.5, 1.0, 1.0]);
    t.run().unwrap();
    let got = step_losses(&out)[0].1;
    assert!(
        (got - expected).abs() <= 1e-10 * expected.abs(),
        "mixed step loss {got} vs per-branch {expected}"
    );
}
