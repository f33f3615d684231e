//! Trainability of the models `hydragnn train` builds: from a fresh initialisation in float32,
//! optimiser steps give finite losses and gradients in a dense metal (~43 neighbours within
//! 5 Å), and the energy depends on the positions (forces are nonzero and equal minus the
//! finite-difference gradient of the energy).

mod common;
use common::*;
use mlip::model::config::{Activation, ModelConfig, MpnnType, RadialType};
use mlip::model::GraphTensors;
use mlip::{Model, Request, Structure};
use tch::{nn::OptimizerConfig, Kind, Tensor};

/// fcc Cu with every third atom Ni, 2×2×2 conventional cells (32 atoms), rattled.
fn cu_ni() -> Structure {
    let mut s = fcc_cu(2, 3.6);
    for (i, p) in s.positions.iter_mut().enumerate() {
        p[0] += 0.05 * ((i * 7 % 5) as f64 - 2.0);
        p[1] += 0.04 * ((i * 3 % 7) as f64 - 3.0);
        p[2] += 0.03 * ((i * 5 % 3) as f64 - 1.0);
    }
    for z in s.numbers.iter_mut().step_by(3) {
        *z = 28;
    }
    s
}

/// Edges per atom of `s` within `rc`.
fn neighbours(s: &Structure, rc: f64) -> f64 {
    mlip::neighbors::neighbor_list(s, rc).unwrap().len() as f64 / s.len() as f64
}

/// The model config `hydragnn train` builds for `mpnn` on Al, Ni, Cu (hidden 64, 3 layers,
/// 5 Å, 32 radial functions, silu), with `avg_num_neighbors` = `avg`.
fn trainer_config(mpnn: MpnnType, avg: Option<f64>) -> ModelConfig {
    let mut c = ModelConfig::small(mpnn, vec![13, 28, 29], 5.0);
    c.hidden_dim = 64;
    c.num_conv_layers = 3;
    c.num_radial = 32;
    c.radial_type = if mpnn == MpnnType::SchNet {
        RadialType::Gaussian
    } else {
        RadialType::Bessel
    };
    c.activation_function = Activation::Silu;
    c.avg_num_neighbors = avg;
    c.egnn.edge_rbf = mpnn == MpnnType::Egnn;
    c
}

fn graph(m: &Model, s: &Structure) -> GraphTensors {
    let nl = mlip::neighbors::neighbor_list(s, m.cutoff()).unwrap();
    let vecs: Vec<f64> = nl.edge_vectors(s).into_iter().flatten().collect();
    let idx = |v: &[usize]| Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>());
    GraphTensors {
        species: Tensor::from_slice(&m.species_indices(&s.numbers).unwrap()),
        src: idx(&nl.neighbors),
        dst: idx(&nl.centers),
        edge_vec: mlip::model::nn::tensor_from(&vecs, &[nl.len() as i64, 3], m.kind(), m.device())
            .set_requires_grad(true),
        batch: Tensor::zeros([s.len() as i64], (Kind::Int64, tch::Device::Cpu)),
        n_graphs: 1,
        pairs: None,
    }
}

/// Runs `steps` Adam steps (lr 1e-3) on the trainer's loss, energy + 10 × force MSE (forces by
/// autograd with `create_graph`), from heads whose last layer is zero (as the trainer starts).
/// Returns, per step, whether the loss and every gradient were finite.
fn adam_steps(mpnn: MpnnType, avg: Option<f64>, steps: usize) -> Vec<bool> {
    let s = cu_ni();
    let mut m = Model::new(trainer_config(mpnn, avg), Kind::Float, tch::Device::Cpu, 0).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in m.var_store_mut().variables() {
            if name.starts_with("branches.default.energy.1.") {
                let _ = t.zero_();
            }
        }
    });
    let g = graph(&m, &s);
    let n = s.len() as i64;
    let f_ref = (Tensor::arange(3 * n, (Kind::Float, tch::Device::Cpu)).sin() * 0.3).view([n, 3]);
    let e_ref = -3.5 * n as f64;
    let mut opt = tch::nn::Adam::default().build(m.var_store(), 1e-3).unwrap();
    (0..steps)
        .map(|_| {
            opt.zero_grad();
            let e = m.forward(&g, None).unwrap().energy.sum(Kind::Float);
            let de = Tensor::run_backward(&[&e], &[&g.edge_vec], true, true)
                .pop()
                .unwrap();
            let z = Tensor::zeros([n, 3], (Kind::Float, tch::Device::Cpu));
            let f = z.index_add(0, &g.dst, &de) - z.index_add(0, &g.src, &de);
            let loss = (e - e_ref).square() / (n * n) as f64
                + (f - &f_ref).square().mean(Kind::Float) * 10.0;
            loss.backward();
            let finite = loss.isfinite().all().int64_value(&[]) == 1
                && m.var_store().trainable_variables().iter().all(|v| {
                    let gr = v.grad();
                    !gr.defined() || gr.isfinite().all().int64_value(&[]) == 1
                });
            opt.step();
            finite
        })
        .collect()
}

#[test]
fn painn_fp32_steps_from_scratch_are_finite() {
    let s = cu_ni();
    let k = neighbours(&s, 5.0);
    assert!(
        k > 40.0,
        "the test needs a dense structure, got {k} neighbours"
    );
    let ok = adam_steps(MpnnType::PaiNN, Some(k), 5);
    assert!(ok.iter().all(|&x| x), "non-finite loss or gradient: {ok:?}");
    // The same with libtorch's own operations instead of the fused kernels, and the bug there:
    // with plain sums the features of the fresh model reach ~1e17 after 3 layers and the float32
    // force-loss gradient overflows at the first step. (The fused kernels form fewer
    // intermediates and happen to stay finite on this case, so the control runs without them;
    // the switch is process-wide, and both paths give the same numbers to rounding for the other
    // tests of this file.)
    let was = mlip::model::fused::enabled();
    mlip::model::fused::set_enabled(false);
    let ok_unfused = adam_steps(MpnnType::PaiNN, Some(k), 5);
    let plain = adam_steps(MpnnType::PaiNN, None, 1);
    mlip::model::fused::set_enabled(was);
    assert!(
        ok_unfused.iter().all(|&x| x),
        "non-finite loss or gradient without the fused kernels: {ok_unfused:?}"
    );
    assert!(
        !plain[0],
        "plain sums no longer overflow: is the test still sharp?"
    );
}

#[test]
fn egnn_fp32_steps_from_scratch_are_finite() {
    let k = neighbours(&cu_ni(), 5.0);
    let ok = adam_steps(MpnnType::Egnn, Some(k), 5);
    assert!(ok.iter().all(|&x| x), "non-finite loss or gradient: {ok:?}");
}

/// The trainer's EGNN has position-dependent energies: forces of a fresh model are of the size
/// of SchNet's (not ~1e-3 eV/Å) and are minus the finite-difference gradient of the energy.
#[test]
fn egnn_as_trained_has_forces_equal_to_minus_energy_gradient() {
    let s = cu_ni();
    let k = neighbours(&s, 5.0);
    let fmax = |m: &Model| {
        let r = m.compute(&s, Request::ALL).unwrap();
        let f = r
            .forces
            .iter()
            .flatten()
            .fold(0.0f64, |a, b| a.max(b.abs()));
        (r, f)
    };
    let schnet = Model::new(
        trainer_config(MpnnType::SchNet, Some(k)),
        Kind::Double,
        tch::Device::Cpu,
        0,
    )
    .unwrap();
    let m = Model::new(
        trainer_config(MpnnType::Egnn, Some(k)),
        Kind::Double,
        tch::Device::Cpu,
        0,
    )
    .unwrap();
    let (r, f) = fmax(&m);
    let (_, f_schnet) = fmax(&schnet);
    assert!(
        f > 0.1 * f_schnet,
        "EGNN max |F| {f:e} vs SchNet's {f_schnet:e}"
    );
    let energy = |p: &Structure| m.compute(p, Request::ENERGY).unwrap().energy;
    let h = 1e-5;
    let atoms: Vec<usize> = (0..s.len()).step_by(5).collect();
    let fd: Vec<[f64; 3]> = atoms
        .iter()
        .map(|&i| {
            [0, 1, 2].map(|c| {
                let mut p = s.clone();
                p.positions[i][c] += h;
                let ep = energy(&p);
                p.positions[i][c] -= 2.0 * h;
                -(ep - energy(&p)) / (2.0 * h)
            })
        })
        .collect();
    let sub: Vec<[f64; 3]> = atoms.iter().map(|&i| r.forces[i]).collect();
    let err = rel_err(&sub, &fd);
    assert!(
        err < 1e-6,
        "EGNN forces vs finite differences: relative error {err:e}"
    );
}

/// Coordinate updates and the radial edge input together keep forces exact.
#[test]
fn egnn_edge_rbf_with_coordinate_updates_is_conservative() {
    let s = cu_ni();
    let mut c = trainer_config(MpnnType::Egnn, Some(neighbours(&s, 5.0)));
    c.egnn.coords_update = true;
    let m = Model::new(c, Kind::Double, tch::Device::Cpu, 1).unwrap();
    let r = m.compute(&s, Request::ALL).unwrap();
    let h = 1e-5;
    let i = 7;
    for d in 0..3 {
        let mut p = s.clone();
        p.positions[i][d] += h;
        let ep = m.compute(&p, Request::ENERGY).unwrap().energy;
        p.positions[i][d] -= 2.0 * h;
        let em = m.compute(&p, Request::ENERGY).unwrap().energy;
        let fd = -(ep - em) / (2.0 * h);
        assert!(
            (fd - r.forces[i][d]).abs() < 1e-6 * (1.0 + fd.abs()),
            "{fd} vs {}",
            r.forces[i][d]
        );
    }
}

/// `avg_num_neighbors` on the fast path (the last filter layer divided by it) equals the exact
/// path (the message sums divided by it), for both backbones that have one.
#[test]
fn fast_path_equals_exact_with_avg_num_neighbors() {
    let s = cu_ni();
    let k = neighbours(&s, 5.0);
    for mpnn in [MpnnType::SchNet, MpnnType::PaiNN] {
        let mut c = trainer_config(mpnn, Some(k));
        c.hidden_dim = 16;
        let exact = Model::new(c.clone(), Kind::Double, tch::Device::Cpu, 3).unwrap();
        let mut fast = Model::new(c, Kind::Double, tch::Device::Cpu, 3).unwrap();
        fast.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
        let (a, b) = (
            exact.compute(&s, Request::ALL).unwrap(),
            fast.compute(&s, Request::ALL).unwrap(),
        );
        let de = (a.energy - b.energy).abs() / s.len() as f64;
        assert!(de < 1e-6, "{mpnn:?}: energies differ by {de:e} eV/atom");
        let df = a
            .forces
            .iter()
            .flatten()
            .zip(b.forces.iter().flatten())
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(df < 1e-5, "{mpnn:?}: forces differ by {df:e} eV/A");
        // and the option changes the model (it is not silently ignored)
        let mut plain = exact.config().clone();
        plain.avg_num_neighbors = None;
        let p = Model::new(plain, Kind::Double, tch::Device::Cpu, 3).unwrap();
        let ep = p.compute(&s, Request::ENERGY).unwrap().energy;
        assert!(
            (ep - a.energy).abs() > 1e-3,
            "{mpnn:?}: avg_num_neighbors has no effect"
        );
    }
}
