//! The ZBL core repulsion of a model (`mlip::zbl`): it makes a Cu dimer's energy rise steeply
//! as r → 0.5 Å, it is the same on every evaluation path (libtorch autograd, fast path, batches,
//! layer by layer: mlip/tests/layered.rs), forces and stress stay the derivatives of the energy,
//! and a model without it is unchanged.

// Index loops mirror the physics (atom i, axis c), as in the formulas.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use mlip::zbl::{pair, ZblConfig};
use mlip::{Request, Structure};

const ZBL: ZblConfig = ZblConfig {
    inner: 0.8,
    outer: 1.8,
};

fn energy(m: &mlip::Model, s: &Structure) -> f64 {
    m.compute(s, Request::ENERGY).unwrap().energy
}

/// A periodic structure with one pair inside the inner radius and one in the switching region.
fn compressed(seed: u64) -> Structure {
    let mut s = random_periodic(9, seed);
    let p0 = s.positions[0];
    s.positions[1] = [p0[0] + 0.6, p0[1] + 0.3, p0[2] + 0.2];
    let p2 = s.positions[2];
    s.positions[3] = [p2[0] - 0.9, p2[1] + 0.8, p2[2] + 0.5];
    s
}

#[test]
fn zbl_cu_dimer_energy_rises_steeply_as_r_goes_to_half_an_angstrom() {
    for v in VARIANTS {
        let plain = model_on(v, 4.0, 5);
        let mut with = model_with_zbl(v.mpnn, 4.0, 5, Some(ZBL));
        if v.fast {
            with.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
        }
        let dimer =
            |r: f64| Structure::molecule(vec![[0.0; 3], [r, 0.0, 0.0]], vec![29, 29]).unwrap();
        let mut last = f64::NEG_INFINITY;
        let e_far = energy(&with, &dimer(2.5));
        for r in [1.7, 1.4, 1.1, 0.9, 0.7, 0.6, 0.5] {
            let e = energy(&with, &dimer(r));
            // exactly the network plus the pair repulsion
            let added = e - energy(&plain, &dimer(r));
            let expect = pair(29, 29, r, &ZBL).0;
            assert!(
                (added - expect).abs() <= 1e-9 * expect.abs().max(1.0),
                "{v:?} r {r}: {added} vs {expect}"
            );
            assert!(
                e > last,
                "{v:?}: E({r}) = {e} does not rise (previous {last})"
            );
            last = e;
        }
        assert!(
            last - e_far > 1000.0,
            "{v:?}: E(0.5) - E(2.5) = {} eV",
            last - e_far
        );
        // beyond the outer radius nothing changes
        for r in [1.8, 2.2, 3.0] {
            assert_eq!(
                energy(&with, &dimer(r)),
                energy(&plain, &dimer(r)),
                "{v:?} r {r}"
            );
        }
    }
}

#[test]
fn zbl_forces_and_stress_are_derivatives_of_the_energy() {
    for (k, v) in VARIANTS.iter().enumerate() {
        let mut m = model_with_zbl(v.mpnn, 4.0, 11 + k as i64, Some(ZBL));
        if v.fast {
            m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
        }
        let s = compressed(3 + k as u64);
        let r = m.compute(&s, Request::ALL).unwrap();
        let h = 1e-5;
        let mut fd = vec![[0.0; 3]; s.len()];
        for i in 0..s.len() {
            for c in 0..3 {
                let mut p = s.clone();
                p.positions[i][c] += h;
                let ep = energy(&m, &p);
                p.positions[i][c] -= 2.0 * h;
                fd[i][c] = -(ep - energy(&m, &p)) / (2.0 * h);
            }
        }
        let err = rel_err(&r.forces, &fd);
        assert!(err <= 1e-6, "{v:?}: forces vs finite differences: {err:e}");
        let sum: f64 = r.energies.iter().sum();
        assert!((sum - r.energy).abs() <= 1e-10 * r.energy.abs());

        let hs = 1e-6;
        let strained = |a: usize, b: usize, e: f64| {
            let mut t = s.clone();
            let apply = |p: [f64; 3]| {
                let mut o = p;
                o[b] += e * p[a];
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
                let de = (energy(&m, &strained(a, b, hs)) - energy(&m, &strained(a, b, -hs)))
                    / (2.0 * hs);
                assert!(
                    (r.virial[a][b] + de).abs() <= 1e-6 * scale,
                    "{v:?} W[{a}][{b}] = {} but -dE/de = {}",
                    r.virial[a][b],
                    -de
                );
            }
        }
    }
}

#[test]
fn zbl_exact_fast_and_batched_paths_agree() {
    let structures = [compressed(40), compressed(41)];
    for mpnn in BACKBONES {
        let exact = model_with_zbl(mpnn, 4.0, 7, Some(ZBL));
        let mut fast = model_with_zbl(mpnn, 4.0, 7, Some(ZBL));
        fast.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
        let batch = fast.compute_batch(&structures, Request::ALL).unwrap();
        for (s, b) in structures.iter().zip(&batch) {
            let e = exact.compute(s, Request::ALL).unwrap();
            let f = fast.compute(s, Request::ALL).unwrap();
            for r in [&f, b] {
                assert!(
                    (r.energy - e.energy).abs() <= 1e-6 * e.energy.abs(),
                    "{mpnn:?}: {} vs {}",
                    r.energy,
                    e.energy
                );
                assert!(rel_err(&r.forces, &e.forces) < 1e-5, "{mpnn:?}");
            }
        }
    }
}

#[test]
fn zbl_config_is_validated_and_old_configs_have_none() {
    let mut c = mlip::ModelConfig::small(mlip::model::config::MpnnType::SchNet, vec![29], 4.0);
    assert_eq!(c.zbl, None);
    let text = serde_json::to_string(&c).unwrap();
    assert!(!text.contains("zbl"), "{text}");
    for (inner, outer) in [(1.0, 0.5), (0.0, 1.0), (1.0, 5.0), (f64::NAN, 1.0)] {
        c.zbl = Some(ZblConfig { inner, outer });
        let e = mlip::Model::new(c.clone(), tch::Kind::Double, tch::Device::Cpu, 0).unwrap_err();
        assert!(e.to_string().contains("zbl"), "{e}");
    }
}
