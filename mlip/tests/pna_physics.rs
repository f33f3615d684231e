//! Physics of the PNA backbones as `hydragnn train` builds them (issue 15): forces are minus the
//! finite-difference gradient of the energy, and the energy is invariant (the forces
//! equivariant) under rotation, translation, permutation of the atoms and re-wrapping into the
//! cell. PNA with the distance as edge feature (the trainer's default), PNAPlus (`bessel_rbf`)
//! and PNAEq, in float64.
//!
//! PNA's min/max aggregators make the energy piecewise smooth: the finite differences use a step
//! (1e-5 Å) far below the gaps between messages of random structures, so they stay on one piece.

// Index loops mirror the physics (atom i, axis c), as in the formulas.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use mlip::model::config::{Activation, ModelConfig, MpnnType, PnaOptions, RadialType};
use mlip::{Model, Request, Structure};

/// The PNA variants: (label, backbone, options).
fn variants() -> Vec<(&'static str, MpnnType, PnaOptions)> {
    let deg = PnaOptions {
        avg_deg_lin: 12.0,
        avg_deg_log: 2.5,
        ..Default::default()
    };
    vec![
        (
            "PNA edge_dim 1",
            MpnnType::Pna,
            PnaOptions {
                edge_dim: 1,
                ..deg.clone()
            },
        ),
        (
            "PNAPlus (bessel_rbf)",
            MpnnType::Pna,
            PnaOptions {
                bessel_rbf: true,
                envelope_exponent: 5,
                ..deg.clone()
            },
        ),
        ("PNAEq", MpnnType::PnaEq, deg),
    ]
}

/// A random float64 model over Cu, Ni, O (3 layers, SiLU after each as the trainer sets it),
/// weights halved as in `common::model`.
fn pna_model(mpnn: MpnnType, pna: PnaOptions, rc: f64, seed: i64) -> Model {
    let mut c = ModelConfig::small(mpnn, vec![29, 28, 8], rc).with_radial_type(RadialType::Bessel);
    c.num_conv_layers = 3;
    c.pna = pna;
    c.post_conv_activation = Some(Activation::Silu);
    c.branches[0].reference_energies = vec![-3.5, -4.4, -1.2];
    let mut m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, seed).unwrap();
    tch::no_grad(|| {
        for (_, mut t) in m.var_store_mut().variables() {
            let _ = t.g_mul_scalar_(0.5);
        }
    });
    m
}

fn energy(m: &Model, s: &Structure) -> f64 {
    m.compute(s, Request::ENERGY).unwrap().energy
}

#[test]
fn pna_forces_equal_minus_finite_difference_gradient() {
    for (k, (label, mpnn, o)) in variants().into_iter().enumerate() {
        let m = pna_model(mpnn, o, 4.0, 11 + k as i64);
        for s in [
            random_periodic(9, 3 + k as u64),
            random_molecule(7, 5 + k as u64),
        ] {
            let r = m.compute(&s, Request::ALL).unwrap();
            let h = 1e-5;
            let mut fd = vec![[0.0; 3]; s.len()];
            for i in 0..s.len() {
                for c in 0..3 {
                    let mut p = s.clone();
                    p.positions[i][c] += h;
                    let ep = energy(&m, &p);
                    p.positions[i][c] -= 2.0 * h;
                    let em = energy(&m, &p);
                    fd[i][c] = -(ep - em) / (2.0 * h);
                }
            }
            let fmax = r
                .forces
                .iter()
                .flatten()
                .fold(0.0f64, |a, b| a.max(b.abs()));
            let err = rel_err(&r.forces, &fd);
            eprintln!("{label}: max |F| {fmax:.3e}, force vs FD relative error {err:.1e}");
            assert!(fmax > 1e-6, "{label}: forces are zero");
            assert!(
                err <= 1e-6,
                "{label}: force vs finite difference relative error {err:e}"
            );
            // forces sum to zero (translation invariance)
            for c in 0..3 {
                let tot: f64 = r.forces.iter().map(|f| f[c]).sum();
                assert!(
                    tot.abs() < 1e-10 * fmax * s.len() as f64,
                    "{label}: net force {tot:e}"
                );
            }
        }
    }
}

fn rotation(seed: u64) -> [[f64; 3]; 3] {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let q: [f64; 4] = [0; 4].map(|_| rng.gen::<f64>() - 0.5);
    let n = q.iter().map(|x| x * x).sum::<f64>().sqrt();
    let [w, x, y, z] = q.map(|v| v / n);
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
        ],
        [
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
        ],
        [
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

fn rot(r: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| (0..3).map(|k| r[i][k] * v[k]).sum())
}

#[test]
fn pna_invariant_under_rotation_translation_permutation_and_rewrapping() {
    for (k, (label, mpnn, o)) in variants().into_iter().enumerate() {
        let m = pna_model(mpnn, o, 4.0, 31 + k as i64);
        for s in [
            random_periodic(12, 40 + k as u64),
            random_molecule(8, 60 + k as u64),
        ] {
            let r0 = m.compute(&s, Request::ALL).unwrap();
            let tol = 1e-10 * r0.energy.abs();
            // rotation (of positions and cell): energy invariant, forces rotate
            let rm = rotation(7 + k as u64);
            let mut t = s.clone();
            t.positions = t.positions.iter().map(|p| rot(&rm, *p)).collect();
            t.cell = t.cell.map(|c| rot(&rm, c));
            let r1 = m.compute(&t, Request::ALL).unwrap();
            assert!(
                (r1.energy - r0.energy).abs() <= tol,
                "{label} rotation: {} vs {}",
                r1.energy,
                r0.energy
            );
            let rotated: Vec<[f64; 3]> = r0.forces.iter().map(|f| rot(&rm, *f)).collect();
            assert!(
                rel_err(&r1.forces, &rotated) < 1e-9,
                "{label}: forces are not equivariant"
            );
            // translation
            let mut t = s.clone();
            t.positions = t
                .positions
                .iter()
                .map(|p| [p[0] + 0.37, p[1] - 1.3, p[2] + 2.9])
                .collect();
            assert!(
                (energy(&m, &t) - r0.energy).abs() <= tol,
                "{label}: translation"
            );
            // permutation: energy invariant, forces permute
            let perm: Vec<usize> = (0..s.len()).rev().collect();
            let mut t = s.clone();
            t.positions = perm.iter().map(|&i| s.positions[i]).collect();
            t.numbers = perm.iter().map(|&i| s.numbers[i]).collect();
            let r2 = m.compute(&t, Request::ALL).unwrap();
            assert!(
                (r2.energy - r0.energy).abs() <= tol,
                "{label}: permutation {} vs {}",
                r2.energy,
                r0.energy
            );
            let permuted: Vec<[f64; 3]> = perm.iter().map(|&i| r0.forces[i]).collect();
            assert!(
                rel_err(&r2.forces, &permuted) < 1e-10,
                "{label}: forces do not permute"
            );
            if s.pbc != [true; 3] {
                continue;
            }
            // re-wrapping: moving atoms by lattice vectors changes nothing
            let mut t = s.clone();
            for (i, p) in t.positions.iter_mut().enumerate() {
                let n = [
                    (i % 3) as f64 - 1.0,
                    (i % 2) as f64 * 2.0,
                    -((i % 4) as f64),
                ];
                for c in 0..3 {
                    p[c] += (0..3).map(|k| n[k] * s.cell[k][c]).sum::<f64>();
                }
            }
            let r3 = m.compute(&t, Request::ALL).unwrap();
            assert!((r3.energy - r0.energy).abs() <= tol, "{label}: re-wrapping");
            assert!(rel_err(&r3.forces, &r0.forces) < 1e-10, "{label}");
        }
    }
}

/// The degree averages are read: a model with other averages gives another energy (the scalers
/// multiply the aggregates), so a model file that lost them would not reproduce training.
#[test]
fn pna_energy_depends_on_the_degree_averages() {
    for (label, mpnn, o) in variants() {
        let s = random_periodic(9, 77);
        let e1 = energy(&pna_model(mpnn, o.clone(), 4.0, 5), &s);
        let o2 = PnaOptions {
            avg_deg_lin: 2.0 * o.avg_deg_lin,
            ..o
        };
        let e2 = energy(&pna_model(mpnn, o2, 4.0, 5), &s);
        assert!((e1 - e2).abs() > 1e-8 * e1.abs(), "{label}: {e1} vs {e2}");
    }
}
