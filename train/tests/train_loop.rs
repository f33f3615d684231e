//! The training loop as a library: a tiny run learns and writes its outputs; same seed, same
//! losses; a stopped-and-resumed run equals an uninterrupted one; two branches report per-branch
//! metrics; autograd forces match the engine's; splitting a batch over "ranks" with global
//! normalisation gives the single-rank gradient.

mod common;

use common::*;
use hydragnn_train::config::LossType;
use hydragnn_train::data::Dataset;
use hydragnn_train::graphs::{collate, GraphSpec};
use hydragnn_train::metrics::{batch_loss, predict};
use hydragnn_train::optim::AdamW;
use hydragnn_train::trainer::{load_model, new_model, plan_model, Trainer};
use hydragnn_train::{Dist, TrainConfig, TrainOptions};
use tch::{Device, Kind};

#[test]
fn tiny_run_learns_and_writes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 16, 8);
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 4}),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let out = dir.path().join("out");
    let s = run_train(&cp, &out, false);
    assert_eq!(s.epochs, 4);
    assert_eq!(s.steps, 16);
    let losses = step_losses(&out);
    assert_eq!(losses.len(), 16);
    let first: f64 = losses[..4].iter().map(|l| l.1).sum();
    let last: f64 = losses[12..].iter().map(|l| l.1).sum();
    assert!(last < first, "loss did not decrease: {first} -> {last}");
    for f in [
        "steps.csv",
        "metrics.csv",
        "metrics.json",
        "checkpoint.st",
        "best.model",
        "parity_metals_energy_per_atom.png",
        "parity_metals_forces.png",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains("metals/energy_mae_per_atom"),
        "{csv}"
    );
    assert!(
        csv.lines().next().unwrap().contains("metals/force_rmse"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 5);
    // The best model is the engine's model file, with provenance.
    let m = load_model(&out.join("best.model"), Kind::Float, Device::Cpu).unwrap();
    assert_eq!(m.branch_names(), vec!["metals".to_string()]);
    let info: serde_json::Value = serde_json::from_str(&m.metadata["info"]).unwrap();
    assert!(info["provenance"]["config"]
        .as_str()
        .unwrap()
        .contains("\"metals\""));
    assert!(info["provenance"]["validation_metrics"]
        .as_str()
        .unwrap()
        .contains("\"forces\""));
    // The final metrics are those of the best model on the whole valset.
    let best = &s.final_metrics["valset"]["metals"];
    assert_eq!(best.n_graphs, 8);
    let (be, bm) = s.best.unwrap();
    let rec = &bm["metals"];
    assert!(
        (rec.forces.unwrap().mae - best.forces.unwrap().mae).abs() < 1e-6,
        "epoch {be}: {rec:?} vs {best:?}"
    );
}

#[test]
fn same_seed_same_losses_and_resume_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 12, 4);
    let base = serde_json::json!({"num_epoch": 3, "batch_size": 3, "clip_grad_norm": 5.0});
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        base.clone(),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_train(&cp, &a, false);
    run_train(&cp, &b, false);
    let la = step_losses(&a);
    assert_eq!(la.len(), 12);
    assert_eq!(la, step_losses(&b), "two runs with one seed differ");

    // Stop after 5 steps (mid-epoch), then resume with the original config.
    let mut stop = base.clone();
    stop["max_steps"] = serde_json::json!(5);
    let cs = write_config(
        dir.path(),
        "stop.json",
        &config(&[("metals", &data, None)], &[("energy", "graph")], stop),
    );
    let r = dir.path().join("r");
    let s = run_train(&cs, &r, false);
    assert_eq!((s.steps, s.stopped.as_str()), (5, "max_steps"));
    run_train(&cp, &r, true);
    assert_eq!(
        step_losses(&r),
        la,
        "resumed run differs from the uninterrupted one"
    );
    let ma = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    let mr = std::fs::read_to_string(r.join("metrics.csv")).unwrap();
    // Identical metrics apart from the time column.
    let col = ma
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "time_s")
        .unwrap();
    let drop_time = |s: &str| {
        s.lines()
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(i, _)| *i != col)
                    .map(|(_, x)| x)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
    };
    let mb = std::fs::read_to_string(b.join("metrics.csv")).unwrap();
    assert_eq!(drop_time(&ma), drop_time(&mb), "a vs b");
    assert_eq!(drop_time(&ma), drop_time(&mr));
    // A run that already has a checkpoint refuses to start over.
    let cfg = TrainConfig::load(&cp).unwrap();
    let e = Trainer::new(
        &cfg,
        TrainOptions {
            out_dir: a.clone(),
            resume: false,
            command: String::new(),
        },
        &Dist::single(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("--resume"), "{e}");
}

#[test]
fn two_branches_report_per_branch_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 8, 4);
    let mol = molecules(dir.path(), 8, 4);
    let c = config(
        &[("metals", &m, Some(&["energy"])), ("molecules", &mol, None)],
        &[("energy", "graph"), ("gap", "graph"), ("charge", "node")],
        serde_json::json!({"num_epoch": 2}),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let out = dir.path().join("out");
    let s = run_train(&cp, &out, false);
    assert_eq!(s.steps, 2 * (2 + 2));
    let head = std::fs::read_to_string(out.join("metrics.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    for col in [
        "metals/energy_mae_per_atom",
        "metals/force_mae",
        "molecules/force_mae",
        "molecules/gap_mae",
        "molecules/charge_mae",
    ] {
        assert!(head.contains(col), "no {col} in {head}");
    }
    assert!(!head.contains("metals/gap"), "{head}");
    // Steps alternate between datasets in a seeded order; each step names its dataset.
    let text = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    assert!(text.contains(",metals,") && text.contains(",molecules,"));
    let model = load_model(&out.join("best.model"), Kind::Float, Device::Cpu).unwrap();
    assert_eq!(
        model.branch_names(),
        vec!["metals".to_string(), "molecules".to_string()]
    );
    assert!(out.join("parity_molecules_gap.png").exists());
    // The molecules branch has its own reference energies (H, C, O), the metals branch Ni and Cu.
    let e0 = &model.config().branches[1].reference_energies;
    assert_eq!(model.species(), &[1, 6, 8, 28, 29]);
    assert!(e0[0] != 0.0 && e0[3] == 0.0, "{e0:?}");
}

#[test]
fn autograd_forces_match_the_engine_and_rank_split_gradients_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 6, 2);
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"precision": "fp64"}),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let (mc, metas) = plan_model(&cfg).unwrap();
    let spec = metas[0].1.clone();
    let model = new_model(mc.clone(), Kind::Double, Device::Cpu, 3).unwrap();
    let ds = Dataset::open(&data).unwrap();
    let sr = ds.split("trainset").unwrap();
    let gs = GraphSpec::new(mc.radius, &mc.species, false);
    let graphs = gs.load(&sr, 0..6, "t").unwrap();
    let refs: Vec<_> = graphs.iter().collect();

    // Forces: trainer's autograd vs the engine's compute().
    let col = collate(&refs[..1], &[], &[], Kind::Double, Device::Cpu, true);
    let p = predict(&model, &spec, &col, false).unwrap();
    let f: Vec<f64> = Vec::try_from(p.forces.unwrap().view([-1])).unwrap();
    let b = sr.read_block(0..1).unwrap();
    let fr = b.frame(0);
    let s =
        mlip::Structure::new(fr.positions.clone(), fr.numbers.clone(), fr.cell, fr.pbc).unwrap();
    let r = model.compute(&s, mlip::Request::EFV).unwrap();
    let fe: Vec<f64> = r.forces.iter().flatten().copied().collect();
    for (x, y) in f.iter().zip(&fe) {
        assert!((x - y).abs() < 1e-9, "{x} vs {y}");
    }
    assert!((p.energy.double_value(&[0]) - r.energy).abs() < 1e-9);

    // Gradient of the whole batch == sum of the gradients of two parts normalised globally.
    let mut opt = AdamW::new(model.var_store(), &cfg.training().optimizer);
    let graphs_n = 6.0;
    let atoms_n = refs.iter().map(|g| g.n_atoms()).sum::<usize>() as f64;
    let grad_of = |opt: &mut AdamW, part: &[&hydragnn_train::graphs::Graph]| {
        opt.zero_grad();
        let c = collate(part, &[], &[], Kind::Double, Device::Cpu, true);
        let p = predict(&model, &spec, &c, true).unwrap();
        let l = batch_loss(&spec, &p, &c, LossType::Mse, graphs_n, atoms_n);
        l.backward();
        (l.double_value(&[]), opt.grads_flat())
    };
    let (l_all, g_all) = grad_of(&mut opt, &refs);
    let (l1, g1) = grad_of(&mut opt, &refs[..2]);
    let (l2, g2) = grad_of(&mut opt, &refs[2..]);
    assert!((l_all - (l1 + l2)).abs() <= 1e-12 * l_all.abs());
    let norm = g_all.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = g_all
        .iter()
        .zip(g1.iter().zip(&g2))
        .map(|(a, (b, c))| (a - b - c).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        diff <= 1e-10 * norm,
        "gradient split differs: {diff} vs norm {norm}"
    );
}

#[test]
fn per_term_loss_types_mix_mse_and_mae_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let mk = |types: serde_json::Value| {
        config(
            &[("metals", &data, None)],
            &[("energy", "graph")],
            serde_json::json!({"precision": "fp64", "num_epoch": 1,
                "loss_function_types": types}),
        )
    };
    let cp = write_config(
        dir.path(),
        "c.json",
        &mk(serde_json::json!({"forces": "mae"})),
    );
    let cfg = TrainConfig::load(&cp).unwrap();
    let (mc, metas) = plan_model(&cfg).unwrap();
    let spec = metas[0].1.clone();
    assert_eq!(spec.loss_of("forces", LossType::Mse), LossType::Mae);
    assert_eq!(spec.loss_of("energy", LossType::Mse), LossType::Mse);

    // The batch loss: energy squared, forces absolute, each with its weight and count.
    let (p, c, atoms) = predict_four(&mc, &spec, &data);
    let l = batch_loss(&spec, &p, &c, LossType::Mse, 4.0, atoms as f64).double_value(&[]);
    let de = &p.energy - &c.energy.as_ref().unwrap().value;
    let df = p.forces.as_ref().unwrap() - &c.forces.as_ref().unwrap().value;
    let want = de.square().sum(Kind::Double).double_value(&[]) * spec.w_energy / 4.0
        + df.abs().sum(Kind::Double).double_value(&[]) * spec.w_forces / (3.0 * atoms as f64);
    assert!((l - want).abs() <= 1e-12 * want.abs(), "{l} vs {want}");
    let all_mse = batch_loss(
        &spec_without_types(&spec),
        &p,
        &c,
        LossType::Mse,
        4.0,
        atoms as f64,
    )
    .double_value(&[]);
    assert!(
        (l - all_mse).abs() > 1e-6 * l.abs(),
        "the override changed nothing"
    );

    // Recorded in the model file, so that `hydragnn eval` scores with the same loss.
    let out = dir.path().join("out");
    run_train(&cp, &out, false);
    let rec = hydragnn_train::evaluate::recorded_loss(&out.join("best.model"))
        .unwrap()
        .unwrap();
    let w = &rec.branches["metals"];
    assert_eq!(w.types.get("forces"), Some(&LossType::Mae));
    assert!(w.describe().contains("forces mae"), "{}", w.describe());

    // A key that is no loss term is refused, naming it.
    let cp = write_config(
        dir.path(),
        "bad.json",
        &mk(serde_json::json!({"force": "mae"})),
    );
    let e = plan_model(&TrainConfig::load(&cp).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("loss_function_types.force") && e.contains("'force'"),
        "{e}"
    );
}

fn spec_without_types(
    spec: &hydragnn_train::metrics::BranchSpec,
) -> hydragnn_train::metrics::BranchSpec {
    let mut s = spec.clone();
    s.loss_types.clear();
    s
}

#[test]
fn start_weights_give_the_first_step_their_loss_and_move_with_the_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 8, 2);
    // ExponentialDecay x0.5 every step: the rate ratio is 1, 0.5, 0.25, ... at steps 1, 2, 3.
    let run = |name: &str, force_weight: f64, start: serde_json::Value| {
        let mut c = config(
            &[("metals", &data, None)],
            &[("energy", "graph")],
            serde_json::json!({"precision": "fp64", "num_epoch": 1, "batch_size": 4,
                "loss_weights_start": start,
                "Scheduler": {"type": "ExponentialDecay", "factor": 0.5, "decay_steps": 1}}),
        );
        c["NeuralNetwork"]["Architecture"]["force_weight"] = serde_json::json!(force_weight);
        let cp = write_config(dir.path(), &format!("{name}.json"), &c);
        let out = dir.path().join(name);
        run_train(&cp, &out, false);
        let text = std::fs::read_to_string(out.join("steps.csv")).unwrap();
        text.lines()
            .skip(1)
            .map(|l| l.split(',').nth(5).unwrap().parse::<f64>().unwrap())
            .collect::<Vec<f64>>()
    };
    let scheduled = run("scheduled", 100.0, serde_json::json!({"forces": 10.0}));
    let fixed_start = run("fixed_start", 10.0, serde_json::json!({}));
    let fixed_limit = run("fixed_limit", 100.0, serde_json::json!({}));
    assert_eq!(scheduled.len(), 2);
    // Step 1 (same weights, same model): the start weight exactly.
    assert!(
        (scheduled[0] - fixed_start[0]).abs() <= 1e-12 * fixed_start[0],
        "{scheduled:?} vs {fixed_start:?}"
    );
    assert!((scheduled[0] - fixed_limit[0]).abs() > 1e-3 * fixed_limit[0]);
    // Step 2: the weight is 100 + (10 - 100) * 0.5 = 55, neither of the fixed runs' weights.
    assert!((scheduled[1] - fixed_start[1]).abs() > 1e-6 * scheduled[1]);
    assert!((scheduled[1] - fixed_limit[1]).abs() > 1e-6 * scheduled[1]);

    let spec = {
        let cp = dir.path().join("scheduled.json");
        plan_model(&TrainConfig::load(&cp).unwrap()).unwrap().1[0]
            .1
            .clone()
    };
    let start = [("forces".to_string(), 10.0)].into_iter().collect();
    assert_eq!(spec.with_start_weights(&start, 1.0).w_forces, 10.0);
    assert_eq!(spec.with_start_weights(&start, 0.5).w_forces, 55.0);
    assert_eq!(spec.with_start_weights(&start, 0.0).w_forces, 100.0);
    assert_eq!(spec.with_start_weights(&start, 0.5).w_energy, spec.w_energy);

    // Unknown terms and negative weights are refused, naming the key.
    for (bad, want) in [
        (
            serde_json::json!({"force": 1.0}),
            "loss_weights_start.force",
        ),
        (
            serde_json::json!({"energy": -1.0}),
            "loss_weights_start.energy",
        ),
    ] {
        let c = config(
            &[("metals", &data, None)],
            &[("energy", "graph")],
            serde_json::json!({"loss_weights_start": bad}),
        );
        let cp = write_config(dir.path(), "bad.json", &c);
        let e = plan_model(&TrainConfig::load(&cp).unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn smooth_l1_is_squared_below_beta_and_absolute_above() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let mk = |beta: f64| {
        config(
            &[("metals", &data, None)],
            &[("energy", "graph")],
            serde_json::json!({"precision": "fp64", "loss_function_type": "smooth_l1",
                "smooth_l1_beta": beta}),
        )
    };
    let cp = write_config(dir.path(), "c.json", &mk(0.05));
    let (mc, metas) = plan_model(&TrainConfig::load(&cp).unwrap()).unwrap();
    let mut spec = metas[0].1.clone();
    assert_eq!(spec.smooth_l1_beta, 0.05);
    let (p, c, atoms) = predict_four(&mc, &spec, &data);
    let de = &p.energy - &c.energy.as_ref().unwrap().value;
    let df = p.forces.as_ref().unwrap() - &c.forces.as_ref().unwrap().value;
    // β at the median force error, so that both regimes are exercised.
    let mut v: Vec<f64> = Vec::try_from(df.abs().view([-1])).unwrap();
    v.sort_by(f64::total_cmp);
    let beta = v[v.len() / 2];
    spec.smooth_l1_beta = beta;
    let l = batch_loss(&spec, &p, &c, LossType::SmoothL1, 4.0, atoms as f64).double_value(&[]);
    let sl1 = |t: &tch::Tensor| -> f64 {
        Vec::<f64>::try_from(t.view([-1]))
            .unwrap()
            .iter()
            .map(|x| {
                if x.abs() < beta {
                    0.5 * x * x / beta
                } else {
                    x.abs() - 0.5 * beta
                }
            })
            .sum()
    };
    let want = sl1(&de) * spec.w_energy / 4.0 + sl1(&df) * spec.w_forces / (3.0 * atoms as f64);
    assert!((l - want).abs() <= 1e-12 * want.abs(), "{l} vs {want}");
    let mse = batch_loss(&spec, &p, &c, LossType::Mse, 4.0, atoms as f64).double_value(&[]);
    let mae = batch_loss(&spec, &p, &c, LossType::Mae, 4.0, atoms as f64).double_value(&[]);
    assert!((l - mse).abs() > 1e-9 * l && (l - mae).abs() > 1e-9 * l);

    let cp = write_config(dir.path(), "bad.json", &mk(0.0));
    let e = plan_model(&TrainConfig::load(&cp).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("smooth_l1_beta"), "{e}");
}

/// A fresh float64 model's prediction on the first 4 training graphs of `data`, with the batch and
/// its atom count.
fn predict_four(
    mc: &mlip::model::config::ModelConfig,
    spec: &hydragnn_train::metrics::BranchSpec,
    data: &std::path::Path,
) -> (
    hydragnn_train::metrics::Prediction,
    hydragnn_train::graphs::Collated,
    usize,
) {
    let model = new_model(mc.clone(), Kind::Double, Device::Cpu, 3).unwrap();
    let sr = Dataset::open(data).unwrap();
    let sr = sr.split("trainset").unwrap();
    let graphs = GraphSpec::new(mc.radius, &mc.species, false)
        .load(&sr, 0..4, "t")
        .unwrap();
    let refs: Vec<_> = graphs.iter().collect();
    let c = collate(&refs, &[], &[], Kind::Double, Device::Cpu, true);
    let p = predict(&model, spec, &c, true).unwrap();
    let atoms = refs.iter().map(|g| g.n_atoms()).sum();
    (p, c, atoms)
}
