//! Layer-by-layer evaluation with ghost-feature exchange (what LAMMPS does across ranks) equals
//! the one-pass evaluation of the whole periodic structure. Here the "ranks" are simulated: the
//! local atoms are the cell's atoms, the ghosts are their periodic images within one cutoff, and
//! the exchange copies owner rows to ghost rows (forward) and adds ghost rows to owners (reverse).

// Index loops mirror the physics (atom i, axis c), as in the formulas.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use mlip::{GraphInput, LayeredEval, Request, Structure};

/// Local atoms + one-cutoff shell of image ghosts, with edges centred on local atoms only.
struct Decomposed {
    positions: Vec<[f64; 3]>,
    numbers: Vec<i32>,
    owner: Vec<usize>,
    centers: Vec<usize>,
    neighbors: Vec<usize>,
}

fn decompose(s: &Structure, rc: f64) -> Decomposed {
    let nl = mlip::neighbors::neighbor_list(s, rc).unwrap();
    let n = s.len();
    let mut positions = s.positions.clone();
    let mut numbers = s.numbers.clone();
    let mut owner: Vec<usize> = (0..n).collect();
    let mut index = std::collections::HashMap::new();
    let (mut centers, mut neighbors) = (Vec::new(), Vec::new());
    for e in 0..nl.len() {
        let (i, j, sh) = (nl.centers[e], nl.neighbors[e], nl.shifts[e]);
        let k = if sh == [0, 0, 0] {
            j
        } else {
            *index.entry((j, sh)).or_insert_with(|| {
                let p = [0, 1, 2].map(|c| {
                    s.positions[j][c] + (0..3).map(|a| sh[a] as f64 * s.cell[a][c]).sum::<f64>()
                });
                positions.push(p);
                numbers.push(s.numbers[j]);
                owner.push(j);
                positions.len() - 1
            })
        };
        centers.push(i);
        neighbors.push(k);
    }
    Decomposed {
        positions,
        numbers,
        owner,
        centers,
        neighbors,
    }
}

fn run_layered(m: &mlip::Model, d: &Decomposed, n_local: usize) -> mlip::Results {
    let g = GraphInput {
        n_local,
        positions: &d.positions,
        numbers: &d.numbers,
        centers: &d.centers,
        neighbors: &d.neighbors,
        shifts: None,
    };
    let mut ev = LayeredEval::new(m, &g).unwrap();
    let layers = m.num_layers();
    for l in 0..layers {
        if l > 0 {
            let w = ev.width(l);
            let f = ev.features_mut(l);
            for (gh, &o) in d.owner.iter().enumerate().skip(n_local) {
                let row: Vec<f64> = f[o * w..(o + 1) * w].to_vec();
                f[gh * w..(gh + 1) * w].copy_from_slice(&row);
            }
        }
        ev.forward_layer(l).unwrap();
    }
    ev.readout().unwrap();
    for l in (0..layers).rev() {
        ev.backward_layer(l).unwrap();
        if l > 0 {
            let w = ev.width(l);
            let g = ev.grads_mut(l);
            for (gh, &o) in d.owner.iter().enumerate().skip(n_local) {
                for k in 0..w {
                    g[o * w + k] += g[gh * w + k];
                }
            }
        }
    }
    ev.results(Request::ALL).unwrap()
}

#[test]
fn layered_with_ghost_exchange_equals_one_pass() {
    for (k, mpnn) in VARIANTS.iter().enumerate() {
        let rc = 4.0;
        let m = model_on(*mpnn, rc, 91 + k as i64);
        // a normal cell and one smaller than the cutoff (ghosts are images of local atoms)
        let mut small = fcc_cu(1, 3.61);
        small.positions[1][0] += 0.05;
        small.positions[2][2] -= 0.03;
        for s in [random_periodic(10, 100 + k as u64), small] {
            let reference = m.compute(&s, Request::ALL).unwrap();
            let d = decompose(&s, rc);
            let r = run_layered(&m, &d, s.len());
            assert!(
                (r.energy - reference.energy).abs() <= 1e-12 * reference.energy.abs(),
                "{mpnn:?}: {} vs {}",
                r.energy,
                reference.energy
            );
            // ghost forces belong to their owners
            let mut f = vec![[0.0; 3]; s.len()];
            let mut w = vec![[[0.0; 3]; 3]; s.len()];
            for (a, &o) in d.owner.iter().enumerate() {
                for c in 0..3 {
                    f[o][c] += r.forces[a][c];
                    for b in 0..3 {
                        w[o][c][b] += r.virials[a][c][b];
                    }
                }
            }
            assert!(
                rel_err(&f, &reference.forces) < 1e-11,
                "{mpnn:?}: forces differ: {:e} {:?} {:?}",
                rel_err(&f, &reference.forces),
                &f[..2],
                &reference.forces[..2]
            );
            let wmax = reference
                .virial
                .iter()
                .flatten()
                .fold(1.0f64, |a, b| a.max(b.abs()));
            for a in 0..3 {
                for b in 0..3 {
                    assert!(
                        (r.virial[a][b] - reference.virial[a][b]).abs() < 1e-11 * wmax,
                        "{mpnn:?} virial {:?} vs {:?}",
                        r.virial,
                        reference.virial
                    );
                }
            }
            for i in 0..s.len() {
                assert!(
                    (r.energies[i] - reference.energies[i]).abs()
                        < 1e-11 * reference.energies[i].abs()
                );
                for a in 0..3 {
                    for b in 0..3 {
                        assert!((w[i][a][b] - reference.virials[i][a][b]).abs() < 1e-11 * wmax);
                    }
                }
            }
        }
    }
}

#[test]
fn layered_without_exchange_is_wrong_for_multilayer_models() {
    // Guards the test above: skipping the exchange must change the answer.
    let m = model(mlip::model::config::MpnnType::SchNet, 4.0, 93);
    let s = random_periodic(8, 7);
    let d = decompose(&s, 4.0);
    let g = GraphInput {
        n_local: s.len(),
        positions: &d.positions,
        numbers: &d.numbers,
        centers: &d.centers,
        neighbors: &d.neighbors,
        shifts: None,
    };
    let mut ev = LayeredEval::new(&m, &g).unwrap();
    for l in 0..m.num_layers() {
        ev.forward_layer(l).unwrap();
    }
    let e = ev.readout().unwrap();
    let reference = m.compute(&s, Request::ENERGY).unwrap().energy;
    assert!((e - reference).abs() > 1e-6 * reference.abs());
}

#[test]
fn calls_out_of_order_are_errors() {
    let m = model(mlip::model::config::MpnnType::SchNet, 4.0, 95);
    let s = random_molecule(4, 1);
    let nl = mlip::neighbors::neighbor_list(&s, 4.0).unwrap();
    let g = GraphInput {
        n_local: 4,
        positions: &s.positions,
        numbers: &s.numbers,
        centers: &nl.centers,
        neighbors: &nl.neighbors,
        shifts: None,
    };
    let mut ev = LayeredEval::new(&m, &g).unwrap();
    assert!(ev.forward_layer(1).is_err());
    assert!(ev.readout().is_err());
    assert!(ev.results(Request::ALL).is_err());
    let ghost_centre = GraphInput { n_local: 2, ..g };
    assert!(LayeredEval::new(&m, &ghost_centre).is_err());
}

#[test]
fn layered_with_zbl_equals_one_pass() {
    // A pair inside the ZBL inner radius and one in its switching region, across the periodic
    // boundary too (ghost neighbours), on the exact and the fast path.
    let zbl = mlip::zbl::ZblConfig {
        inner: 0.8,
        outer: 1.8,
    };
    for (k, v) in VARIANTS.iter().enumerate() {
        let rc = 4.0;
        let mut m = model_with_zbl(v.mpnn, rc, 61 + k as i64, Some(zbl));
        if v.fast {
            m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
        }
        let mut s = random_periodic(10, 70 + k as u64);
        let p0 = s.positions[0];
        s.positions[1] = [p0[0] + 0.6, p0[1] - 0.3, p0[2] + 0.2];
        s.positions[3] = [s.cell[0][0] - 0.5, 0.1, 0.2];
        s.positions[4] = [0.6, 0.3, 0.1];
        let reference = m.compute(&s, Request::ALL).unwrap();
        let d = decompose(&s, rc);
        let r = run_layered(&m, &d, s.len());
        assert!(
            (r.energy - reference.energy).abs() <= 1e-12 * reference.energy.abs(),
            "{v:?}: {} vs {}",
            r.energy,
            reference.energy
        );
        let mut f = vec![[0.0; 3]; s.len()];
        for (a, &o) in d.owner.iter().enumerate() {
            for c in 0..3 {
                f[o][c] += r.forces[a][c];
            }
        }
        assert!(rel_err(&f, &reference.forces) < 1e-11, "{v:?}");
        let scale = reference
            .virial
            .iter()
            .flatten()
            .fold(1.0f64, |a, b| a.max(b.abs()));
        for a in 0..3 {
            for b in 0..3 {
                assert!((r.virial[a][b] - reference.virial[a][b]).abs() < 1e-11 * scale);
            }
        }
        for i in 0..s.len() {
            assert!((r.energies[i] - reference.energies[i]).abs() < 1e-11 * scale);
        }
    }
}

#[test]
fn layered_head_partials_energy_includes_zbl() {
    // A branch with a second graph head (gap): its head partials carry the energy too, which
    // must hold the ZBL repulsion as the whole-structure heads do (LAMMPS's `compute pair`).
    use mlip::model::config::{HeadConfig, HeadKind, ModelConfig, MpnnType, Pooling};
    let rc = 4.0;
    let mut c = ModelConfig::small(MpnnType::SchNet, vec![29, 28, 8], rc);
    c.zbl = Some(mlip::zbl::ZblConfig {
        inner: 0.8,
        outer: 1.8,
    });
    c.branches[0].output_heads.push(HeadConfig::new(
        "gap",
        HeadKind::Graph,
        1,
        vec![8],
        Pooling::Mean,
    ));
    let m = mlip::Model::new(c, tch::Kind::Double, tch::Device::Cpu, 5).unwrap();
    let mut s = random_periodic(10, 91);
    let p0 = s.positions[0];
    s.positions[1] = [p0[0] + 0.6, p0[1] - 0.3, p0[2] + 0.2];
    let reference = m.compute(&s, Request::ENERGY).unwrap();
    let zbl_free = {
        let mut c = m.config().clone();
        c.zbl = None;
        let mut m2 = mlip::Model::new(c, tch::Kind::Double, tch::Device::Cpu, 5).unwrap();
        m2.var_store_mut().copy(m.var_store()).unwrap();
        m2.compute(&s, Request::ENERGY).unwrap().energy
    };
    assert!(
        (reference.energy - zbl_free).abs() > 1.0,
        "the test pair must feel the repulsion: {} vs {zbl_free}",
        reference.energy
    );
    let d = decompose(&s, rc);
    let g = GraphInput {
        n_local: s.len(),
        positions: &d.positions,
        numbers: &d.numbers,
        centers: &d.centers,
        neighbors: &d.neighbors,
        shifts: None,
    };
    let mut ev = LayeredEval::new(&m, &g).unwrap();
    for l in 0..m.num_layers() {
        if l > 0 {
            let w = ev.width(l);
            let f = ev.features_mut(l);
            for (gh, &o) in d.owner.iter().enumerate().skip(s.len()) {
                let row: Vec<f64> = f[o * w..(o + 1) * w].to_vec();
                f[gh * w..(gh + 1) * w].copy_from_slice(&row);
            }
        }
        ev.forward_layer(l).unwrap();
    }
    let local = ev.readout().unwrap();
    let heads = m.finish_heads(None, ev.head_partials().unwrap()).unwrap();
    let energy = heads.iter().find(|(n, _)| n == "energy").unwrap().1[0];
    for e in [local, energy] {
        assert!(
            (e - reference.energy).abs() <= 1e-10 * reference.energy.abs(),
            "{e} vs {}",
            reference.energy
        );
    }
}
