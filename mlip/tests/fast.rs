//! The fast path (compressed radial filters, fused edge kernels) against the exact autograd path:
//! energies within 1e-6 eV/atom and forces within 1e-5 eV/Å in float64 on bulk, a surface, a
//! molecule and a box smaller than twice the cutoff; float32 within the bounds stated below; its
//! forces and virial are the exact derivatives of its own energy; its tables state their error.

#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use mlip::model::config::MpnnType;
use mlip::{Model, Request, Structure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The backbones that have a fast path.
const FAST: [MpnnType; 2] = [MpnnType::SchNet, MpnnType::PaiNN];

fn rattle(mut s: Structure, amp: f64, seed: u64) -> Structure {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for p in &mut s.positions {
        for x in p.iter_mut() {
            *x += amp * (2.0 * rng.gen::<f64>() - 1.0);
        }
    }
    s
}

/// Bulk, surface (periodic in x, y only), molecule, and a box smaller than twice the cutoff.
fn structures() -> Vec<(&'static str, Structure)> {
    let mut bulk = rattle(fcc_cu(3, 3.61), 0.1, 1);
    for (i, z) in bulk.numbers.iter_mut().enumerate() {
        *z = [29, 28, 29, 8][i % 4];
    }
    let mut slab = rattle(fcc_cu(2, 3.61), 0.1, 2);
    slab.pbc = [true, true, false];
    let small = rattle(fcc_cu(1, 3.61), 0.08, 3);
    let mut mol = random_molecule(12, 4);
    for p in &mut mol.positions {
        for x in p.iter_mut() {
            *x *= 1.6;
        }
    }
    vec![
        ("bulk", bulk),
        ("surface", slab),
        ("molecule", mol),
        ("small box", small),
    ]
}

/// A random model of realistic magnitudes ([`model`]) with cutoff 5 Å.
fn realistic(mpnn: MpnnType, seed: i64) -> Model {
    model(mpnn, 5.0, seed)
}

/// `m` saved and loaded twice in `kind`, the second copy on the fast path.
fn pair_of(m: &Model, kind: tch::Kind, tag: &str) -> (Model, Model) {
    let path = std::env::temp_dir().join(format!("hgnn-fast-{}-{tag}.model", std::process::id()));
    m.save(&path, &Default::default()).unwrap();
    let e = Model::load(&path, kind, tch::Device::Cpu).unwrap();
    let mut f = Model::load(&path, kind, tch::Device::Cpu).unwrap();
    let _ = std::fs::remove_file(&path);
    let info = f.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
    println!("{tag} {kind:?}: {}", info.describe());
    (e, f)
}

/// The same random model twice (same weights), the second on the fast path.
fn fast_copy(mpnn: MpnnType, kind: tch::Kind, seed: i64) -> (Model, Model) {
    pair_of(&realistic(mpnn, seed), kind, &format!("{mpnn:?}-{seed}"))
}

fn trained() -> Model {
    Model::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../potentials/metals_schnet.model"
        ),
        tch::Kind::Double,
        tch::Device::Cpu,
    )
    .unwrap()
}

/// Bulk alloy, surface, cluster and a box smaller than twice the cutoff, of Cu/Ni/Al.
fn metal_structures() -> Vec<(&'static str, Structure)> {
    structures()
        .into_iter()
        .map(|(n, mut s)| {
            for (i, z) in s.numbers.iter_mut().enumerate() {
                *z = [29, 28, 13][i % 3];
            }
            (n, s)
        })
        .collect()
}

#[test]
fn compressed_trained_schnet_equals_exact() {
    let (exact, fast) = pair_of(&trained(), tch::Kind::Double, "metals_schnet");
    for (name, s) in metal_structures() {
        let a = exact.compute(&s, Request::ALL).unwrap();
        let b = fast.compute(&s, Request::ALL).unwrap();
        let de = (a.energy - b.energy).abs() / s.len() as f64;
        let df = max_abs_diff(&a.forces, &b.forces);
        println!("metals_schnet f64 {name}: |dE| {de:.2e} eV/atom, |dF| {df:.2e} eV/A");
        assert!(
            de <= 1e-6 && df <= 1e-5,
            "{name}: {de:e} eV/atom, {df:e} eV/A"
        );
    }
}

fn max_abs_diff(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| (0..3).map(move |k| (x[k] - y[k]).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn compressed_equals_exact_float64() {
    for (k, mpnn) in FAST.iter().enumerate() {
        let (exact, fast) = fast_copy(*mpnn, tch::Kind::Double, 200 + k as i64);
        let info = fast.fast().unwrap().info();
        assert!(
            info.rel_error <= mlip::fast::DEFAULT_TOLERANCE,
            "{mpnn:?}: table error {:e}",
            info.rel_error
        );
        for (name, s) in structures() {
            let a = exact.compute(&s, Request::ALL).unwrap();
            let b = fast.compute(&s, Request::ALL).unwrap();
            let de = (a.energy - b.energy).abs() / s.len() as f64;
            let df = max_abs_diff(&a.forces, &b.forces);
            let dw = (0..9)
                .map(|i| (a.virial[i / 3][i % 3] - b.virial[i / 3][i % 3]).abs())
                .fold(0.0, f64::max);
            println!("{mpnn:?} f64 {name}: |dE| {de:.2e} eV/atom, |dF| {df:.2e} eV/A, |dW| {dw:.2e} eV (E = {:.4} eV)", a.energy);
            assert!(
                de <= 1e-6,
                "{mpnn:?} {name}: energy differs by {de:e} eV/atom"
            );
            assert!(df <= 1e-5, "{mpnn:?} {name}: forces differ by {df:e} eV/A");
            assert!(
                dw <= 1e-5 * s.len() as f64,
                "{mpnn:?} {name}: virial differs by {dw:e} eV"
            );
            for i in 0..s.len() {
                assert!(
                    (a.energies[i] - b.energies[i]).abs() <= 1e-6,
                    "{mpnn:?} {name}: per-atom energy {i}"
                );
            }
        }
    }
}

#[test]
fn compressed_float32_is_close_to_exact_float64() {
    // measured: fast float32 within 2e-8 eV/atom and 1.4e-6 eV/A of exact float64 (exact float32:
    // 4e-7 eV/atom, 6e-7 eV/A); asserted: the float64 bounds, 1e-6 eV/atom and 1e-5 eV/A
    for (k, mpnn) in FAST.iter().enumerate() {
        let m = realistic(*mpnn, 210 + k as i64);
        let (exact, _) = pair_of(&m, tch::Kind::Double, &format!("{mpnn:?}-f64"));
        let (exact32, fast32) = pair_of(&m, tch::Kind::Float, &format!("{mpnn:?}-f32"));
        for (name, s) in structures() {
            let a = exact.compute(&s, Request::EFV).unwrap();
            let b = fast32.compute(&s, Request::EFV).unwrap();
            let c = exact32.compute(&s, Request::EFV).unwrap();
            let de = (a.energy - b.energy).abs() / s.len() as f64;
            let df = max_abs_diff(&a.forces, &b.forces);
            let de32 = (a.energy - c.energy).abs() / s.len() as f64;
            let df32 = max_abs_diff(&a.forces, &c.forces);
            println!("{mpnn:?} {name}: fast f32 vs exact f64 |dE| {de:.2e} eV/atom |dF| {df:.2e} eV/A; exact f32: {de32:.2e}, {df32:.2e}");
            assert!(
                de <= 1e-6,
                "{mpnn:?} {name}: float32 energy differs by {de:e} eV/atom"
            );
            assert!(
                df <= 1e-5,
                "{mpnn:?} {name}: float32 forces differ by {df:e} eV/A"
            );
        }
    }
}

#[test]
fn compressed_forces_and_virial_are_exact_derivatives_of_its_energy() {
    for (k, mpnn) in FAST.iter().enumerate() {
        let (_, m) = fast_copy(*mpnn, tch::Kind::Double, 220 + k as i64);
        let energy = |s: &Structure| m.compute(s, Request::ENERGY).unwrap().energy;
        for (name, s) in structures().into_iter().skip(1) {
            let r = m.compute(&s, Request::ALL).unwrap();
            let h = 1e-5;
            let mut fd = vec![[0.0; 3]; s.len()];
            for i in 0..s.len() {
                for c in 0..3 {
                    let mut p = s.clone();
                    p.positions[i][c] += h;
                    let ep = energy(&p);
                    p.positions[i][c] -= 2.0 * h;
                    fd[i][c] = -(ep - energy(&p)) / (2.0 * h);
                }
            }
            let err = rel_err(&r.forces, &fd);
            println!("{mpnn:?} {name}: fast forces vs finite differences, relative {err:.2e}");
            assert!(
                err <= 1e-6,
                "{mpnn:?} {name}: force vs finite difference relative error {err:e}"
            );
            if s.pbc == [true; 3] {
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
                let scale = r
                    .virial
                    .iter()
                    .flatten()
                    .fold(0.0f64, |x, y| x.max(y.abs()));
                for a in 0..3 {
                    for b in 0..3 {
                        let de =
                            (energy(&strained(a, b, 1e-6)) - energy(&strained(a, b, -1e-6))) / 2e-6;
                        assert!(
                            (r.virial[a][b] + de).abs() <= 1e-6 * scale,
                            "{mpnn:?} {name}: W[{a}][{b}] = {} but -dE/de = {}",
                            r.virial[a][b],
                            -de
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn tables_meet_their_tolerance_and_refine_with_it() {
    let (_, mut m) = fast_copy(MpnnType::SchNet, tch::Kind::Double, 230);
    let coarse = m.enable_fast(1e-5).unwrap();
    let fine = m.enable_fast(1e-10).unwrap();
    assert!(
        coarse.rel_error <= 1e-5 && fine.rel_error <= 1e-10,
        "{coarse:?} {fine:?}"
    );
    assert!(fine.spacing < coarse.spacing && fine.table_bytes > coarse.table_bytes);
    assert!(m.enable_fast(0.0).is_err() && m.enable_fast(f64::NAN).is_err());
    // the fast path is a snapshot of the weights: touching them returns to the exact path
    let _ = m.var_store_mut();
    assert!(m.fast().is_none());
}

#[test]
fn egnn_has_no_fast_path_and_says_why() {
    let mut m = model(MpnnType::Egnn, 4.0, 240);
    let err = m.enable_fast(1e-9).unwrap_err().to_string();
    assert!(err.contains("EGNN"), "{err}");
    assert!(m.fast().is_none());
}

#[test]
fn repeated_calls_reuse_buffers_and_give_identical_results() {
    let (_, m) = fast_copy(MpnnType::SchNet, tch::Kind::Double, 250);
    let s = structures().remove(0).1;
    let a = m.compute(&s, Request::ALL).unwrap();
    let small = random_molecule(5, 9);
    let _ = m.compute(&small, Request::ALL).unwrap();
    let b = m.compute(&s, Request::ALL).unwrap();
    assert_eq!(a, b);
    // batches equal one-by-one on the fast path
    let batch = m
        .compute_batch(&[s.clone(), small.clone()], Request::ALL)
        .unwrap();
    assert_eq!(batch[0].energy, a.energy);
    assert!(max_abs_diff(&batch[0].forces, &a.forces) < 1e-12);
}

/// Velocity Verlet NVE of a 108-atom Cu crystal at ~600 K with the trained model: the largest
/// deviation of the total energy from its start, per atom.
fn nve_drift(m: &Model, steps: usize) -> f64 {
    let mut s = rattle(fcc_cu(3, 3.61), 0.05, 7);
    let n = s.len();
    let mass: f64 = 63.546 * 1.036_427e-4 * 1e6; // amu -> eV fs²/Å²
    let dt = 1.0;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let sigma = (8.617e-5 * 600.0 / mass).sqrt();
    let mut v: Vec<[f64; 3]> = (0..n)
        .map(|_| {
            [0, 1, 2].map(|_| {
                sigma * (rng.gen::<f64>() + rng.gen::<f64>() + rng.gen::<f64>() - 1.5) * 2.0
            })
        })
        .collect();
    let mut r = m.compute(&s, Request::EFV).unwrap();
    let total = |r: &mlip::Results, v: &[[f64; 3]]| {
        r.energy + 0.5 * mass * v.iter().flatten().map(|x| x * x).sum::<f64>()
    };
    let e0 = total(&r, &v);
    let mut worst = 0.0f64;
    for _ in 0..steps {
        for i in 0..n {
            for c in 0..3 {
                v[i][c] += 0.5 * dt * r.forces[i][c] / mass;
                s.positions[i][c] += dt * v[i][c];
            }
        }
        r = m.compute(&s, Request::EFV).unwrap();
        for i in 0..n {
            for c in 0..3 {
                v[i][c] += 0.5 * dt * r.forces[i][c] / mass;
            }
        }
        worst = worst.max((total(&r, &v) - e0).abs() / n as f64);
    }
    worst
}

#[test]
fn nve_drift_on_the_fast_path_is_no_worse_than_on_the_exact_one() {
    let (exact, fast) = pair_of(&trained(), tch::Kind::Double, "metals_schnet-nve");
    let (de, df) = (nve_drift(&exact, 200), nve_drift(&fast, 200));
    println!("NVE 200 x 1 fs, 108 Cu: max |E - E0| exact {de:.3e}, fast {df:.3e} eV/atom");
    // the two trajectories differ by the tables' error; allow 10% and 1e-6 eV/atom of noise
    assert!(
        df <= 1.1 * de + 1e-6,
        "fast-path drift {df:e} eV/atom vs exact {de:e}"
    );
}

#[test]
fn large_batches_run_in_chunks_with_the_same_numbers_and_error_positions() {
    for fast in [false, true] {
        let mut m = model(MpnnType::SchNet, 4.0, 260);
        if fast {
            m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
        }
        // 250 molecules of 12 atoms: ~30,000 edges, more than one libtorch chunk
        let mols: Vec<Structure> = (0..250).map(|k| random_molecule(12, 1000 + k)).collect();
        let batch = m.compute_batch(&mols, Request::EFV).unwrap();
        for k in [0, 120, 249] {
            let one = m.compute(&mols[k], Request::EFV).unwrap();
            assert!(
                (batch[k].energy - one.energy).abs() <= 1e-12 * one.energy.abs(),
                "fast={fast} structure {k}"
            );
            assert!(
                max_abs_diff(&batch[k].forces, &one.forces) <= 1e-12,
                "fast={fast} structure {k}"
            );
        }
        let mut bad = mols.clone();
        bad[230].numbers[3] = 79;
        let err = m.compute_batch(&bad, Request::EFV).unwrap_err().to_string();
        assert!(
            err.contains("230") && err.contains("Au"),
            "fast={fast}: {err}"
        );
    }
}
