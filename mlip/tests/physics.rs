//! Physics is the spec: forces are minus the finite-difference gradient of the energy, the virial
//! is the strain derivative, and the energy does not depend on rotation, translation, atom order,
//! periodic image or supercell; energy and forces are continuous across the cutoff.

// Index loops mirror the physics (atom i, axis c), as in the formulas.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use mlip::{Request, Structure};

fn energy(m: &mlip::Model, s: &Structure) -> f64 {
    m.compute(s, Request::ENERGY).unwrap().energy
}

#[test]
fn forces_equal_minus_finite_difference_gradient() {
    for (k, mpnn) in VARIANTS.iter().enumerate() {
        let m = model_on(*mpnn, 4.0, 11 + k as i64);
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
            let err = rel_err(&r.forces, &fd);
            assert!(
                err <= 1e-6,
                "{mpnn:?}: force vs finite difference relative error {err:e}"
            );
            // per-atom energies add up to the energy
            let sum: f64 = r.energies.iter().sum();
            assert!((sum - r.energy).abs() <= 1e-10 * r.energy.abs());
            // forces sum to zero (translation invariance)
            let fmax = r
                .forces
                .iter()
                .flatten()
                .fold(0.0f64, |a, b| a.max(b.abs()));
            for c in 0..3 {
                let tot: f64 = r.forces.iter().map(|f| f[c]).sum();
                assert!(
                    tot.abs() < 1e-12 * fmax * s.len() as f64 * 100.0,
                    "net force {tot:e}"
                );
            }
        }
    }
}

#[test]
fn virial_equals_finite_strain_derivative() {
    for (k, mpnn) in VARIANTS.iter().enumerate() {
        let m = model_on(*mpnn, 4.0, 21 + k as i64);
        let s = random_periodic(10, 30 + k as u64);
        let r = m.compute(&s, Request::ALL).unwrap();
        let h = 1e-6;
        let strained = |a: usize, b: usize, e: f64| {
            let mut t = s.clone();
            let apply = |v: [f64; 3]| {
                let mut o = v;
                o[b] += e * v[a];
                o
            };
            t.positions = t.positions.iter().map(|p| apply(*p)).collect();
            t.cell = t.cell.map(apply);
            t
        };
        for a in 0..3 {
            for b in 0..3 {
                let de =
                    (energy(&m, &strained(a, b, h)) - energy(&m, &strained(a, b, -h))) / (2.0 * h);
                let w = r.virial[a][b];
                let scale = r
                    .virial
                    .iter()
                    .flatten()
                    .fold(0.0f64, |x, y| x.max(y.abs()));
                assert!(
                    (w + de).abs() <= 1e-6 * scale,
                    "{mpnn:?} W[{a}][{b}] = {w} but -dE/de = {}",
                    -de
                );
            }
        }
        // per-atom virials add up to the virial; the virial is symmetric
        for a in 0..3 {
            for b in 0..3 {
                let scale = r
                    .virial
                    .iter()
                    .flatten()
                    .fold(0.0f64, |x, y| x.max(y.abs()));
                let sum: f64 = r.virials.iter().map(|v| v[a][b]).sum();
                assert!(
                    (sum - r.virial[a][b]).abs() < 1e-12 * scale,
                    "per-atom virials do not add up"
                );
                assert!(
                    (r.virial[a][b] - r.virial[b][a]).abs() < 1e-10 * scale,
                    "virial not symmetric"
                );
            }
        }
    }
}

fn rotation(seed: u64) -> [[f64; 3]; 3] {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let q: [f64; 4] = [
        rng.gen::<f64>() - 0.5,
        rng.gen::<f64>() - 0.5,
        rng.gen::<f64>() - 0.5,
        rng.gen::<f64>() - 0.5,
    ];
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
fn invariant_under_rotation_translation_permutation_and_rewrapping() {
    for (k, mpnn) in VARIANTS.iter().enumerate() {
        let m = model_on(*mpnn, 4.0, 31 + k as i64);
        let s = random_periodic(12, 40 + k as u64);
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
            "{mpnn:?} rotation: {} vs {}",
            r1.energy,
            r0.energy
        );
        let rotated: Vec<[f64; 3]> = r0.forces.iter().map(|f| rot(&rm, *f)).collect();
        assert!(
            rel_err(&r1.forces, &rotated) < 1e-9,
            "{mpnn:?}: forces are not equivariant"
        );
        // translation
        let mut t = s.clone();
        t.positions = t
            .positions
            .iter()
            .map(|p| [p[0] + 0.37, p[1] - 1.3, p[2] + 2.9])
            .collect();
        assert!((energy(&m, &t) - r0.energy).abs() <= tol, "translation");
        // permutation: energy invariant, forces permute
        let perm: Vec<usize> = (0..s.len()).rev().collect();
        let mut t = s.clone();
        t.positions = perm.iter().map(|&i| s.positions[i]).collect();
        t.numbers = perm.iter().map(|&i| s.numbers[i]).collect();
        let r2 = m.compute(&t, Request::ALL).unwrap();
        assert!((r2.energy - r0.energy).abs() <= tol, "permutation");
        let permuted: Vec<[f64; 3]> = perm.iter().map(|&i| r0.forces[i]).collect();
        assert!(rel_err(&r2.forces, &permuted) < 1e-10);
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
        assert!((r3.energy - r0.energy).abs() <= tol, "re-wrapping");
        assert!(rel_err(&r3.forces, &r0.forces) < 1e-10);
    }
}

#[test]
fn supercell_energy_is_extensive() {
    for (k, mpnn) in VARIANTS.iter().enumerate() {
        let m = model_on(*mpnn, 4.5, 41 + k as i64);
        // a cell smaller than the cutoff: every atom sees several images of itself
        let s = random_periodic(4, 50 + k as u64);
        let mut small = s.clone();
        small.cell = small.cell.map(|c| [c[0] * 0.55, c[1] * 0.55, c[2] * 0.55]);
        small.positions = small
            .positions
            .iter()
            .map(|p| [p[0] * 0.55, p[1] * 0.55, p[2] * 0.55])
            .collect();
        for base in [s, small] {
            let e1 = energy(&m, &base);
            for reps in [[2, 1, 1], [1, 2, 3], [2, 2, 2]] {
                let n = (reps[0] * reps[1] * reps[2]) as f64;
                let en = energy(&m, &base.supercell(reps));
                assert!(
                    (en - n * e1).abs() <= 1e-10 * (n * e1).abs(),
                    "{mpnn:?} {reps:?}: {en} vs {}",
                    n * e1
                );
            }
        }
    }
}

#[test]
fn energy_and_forces_continuous_across_the_cutoff() {
    for (k, mpnn) in VARIANTS.iter().enumerate() {
        let rc = 4.0;
        let m = model_on(*mpnn, rc, 61 + k as i64);
        let dimer = |d: f64| {
            Structure::molecule(
                vec![[0.0; 3], [d, 0.0, 0.0], [0.7, 1.9, 0.0]],
                vec![29, 28, 8],
            )
            .unwrap()
        };
        // atom 1 moves across the cutoff of atom 0 (atom 2 stays within range of both)
        let eps = 1e-9;
        let (ri, ro) = (
            m.compute(&dimer(rc - eps), Request::EFV).unwrap(),
            m.compute(&dimer(rc + eps), Request::EFV).unwrap(),
        );
        // Across the cutoff the energy changes only by the work of the force over the step: no jump.
        let expected = -ri.forces[1][0] * 2.0 * eps;
        let jump = (ro.energy - ri.energy) - expected;
        assert!(
            jump.abs() < 1e-12 * ri.energy.abs().max(1.0),
            "{mpnn:?}: energy jumps by {jump:e} at the cutoff"
        );
        // The pair's own contribution vanishes smoothly: far from the third atom, a dimer's
        // interaction energy goes to zero at rc.
        let pair = |d: f64| {
            let two = Structure::molecule(vec![[0.0; 3], [d, 0.0, 0.0]], vec![29, 28]).unwrap();
            m.compute(&two, Request::EFV).unwrap()
        };
        let (near, far) = (pair(rc - 1e-4), pair(rc + 1e-4));
        assert!(
            (near.energy - far.energy).abs() < 1e-9,
            "{mpnn:?}: pair energy at rc-1e-4 differs by {:e}",
            near.energy - far.energy
        );
        assert!(
            near.forces[0][0].abs() < 1e-6 && far.forces[0][0] == 0.0,
            "{mpnn:?}: pair force does not vanish at rc: {:e}",
            near.forces[0][0]
        );
        let fmax = ri
            .forces
            .iter()
            .flatten()
            .fold(0.0f64, |a, b| a.max(b.abs()));
        for i in 0..3 {
            for c in 0..3 {
                assert!(
                    (ri.forces[i][c] - ro.forces[i][c]).abs() < 1e-7 * fmax,
                    "{mpnn:?}: force jumps at the cutoff"
                );
            }
        }
    }
}

#[test]
fn batch_equals_one_by_one() {
    let m = model(mlip::model::config::MpnnType::PaiNN, 4.0, 71);
    let ss = vec![
        random_periodic(6, 1),
        random_molecule(5, 2),
        random_periodic(8, 3),
    ];
    let batch = m.compute_batch(&ss, Request::ALL).unwrap();
    for (s, b) in ss.iter().zip(&batch) {
        let one = m.compute(s, Request::ALL).unwrap();
        assert!((one.energy - b.energy).abs() < 1e-10 * one.energy.abs());
        assert!(rel_err(&b.forces, &one.forces) < 1e-10);
    }
}

#[test]
fn float32_agrees_with_float64() {
    let m64 = model(mlip::model::config::MpnnType::SchNet, 4.0, 81);
    let dir = std::env::temp_dir().join(format!("hgnn-f32-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.model");
    m64.save(&path, &Default::default()).unwrap();
    let m32 = mlip::Model::load(&path, tch::Kind::Float, tch::Device::Cpu).unwrap();
    let s = random_periodic(10, 9);
    let (a, b) = (
        m64.compute(&s, Request::EFV).unwrap(),
        m32.compute(&s, Request::EFV).unwrap(),
    );
    assert!(
        (a.energy - b.energy).abs() < 1e-5 * a.energy.abs(),
        "{} vs {}",
        a.energy,
        b.energy
    );
    assert!(rel_err(&b.forces, &a.forces) < 1e-4);
    std::fs::remove_dir_all(dir).ok();
}
