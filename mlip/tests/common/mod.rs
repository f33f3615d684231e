//! Shared fixtures for the engine's integration tests: random models and random structures.
#![allow(dead_code)]

use mlip::model::config::{ModelConfig, MpnnType};
use mlip::model::{GraphArrays, GraphTensors};
use mlip::{Model, Structure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

pub mod gfm;

/// A reproducible tensor of `shape` (float64 on the CPU) with standard normal entries, drawn from
/// its own generator (ChaCha8 seeded with `seed`, Box–Muller) rather than libtorch's global one:
/// tests run on parallel threads and each [`Model::new`] reseeds the global generator, so a
/// `tch::manual_seed` followed by `Tensor::randn` in a test can draw another test's numbers.
pub fn randn_seeded(shape: &[i64], seed: u64) -> Tensor {
    let n: i64 = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            // u1 in (0, 1], so the logarithm is finite
            let u1 = 1.0 - rng.gen::<f64>();
            let u2 = rng.gen::<f64>();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    Tensor::from_slice(&v).reshape(shape)
}

/// Both backbones.
pub const BACKBONES: [MpnnType; 2] = [MpnnType::SchNet, MpnnType::PaiNN];

/// A backbone on one evaluation path: exact (libtorch autograd) or fast ([`mlip::fast`]).
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// The backbone.
    pub mpnn: MpnnType,
    /// Whether the fast path is enabled.
    pub fast: bool,
}

/// Every backbone on every evaluation path that it has: the physics and parity tests run on each.
pub const VARIANTS: [Variant; 4] = [
    Variant {
        mpnn: MpnnType::SchNet,
        fast: false,
    },
    Variant {
        mpnn: MpnnType::PaiNN,
        fast: false,
    },
    Variant {
        mpnn: MpnnType::SchNet,
        fast: true,
    },
    Variant {
        mpnn: MpnnType::PaiNN,
        fast: true,
    },
];

/// [`model`] on the path of `v`.
pub fn model_on(v: Variant, rc: f64, seed: i64) -> Model {
    let mut m = model(v.mpnn, rc, seed);
    if v.fast {
        m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
    }
    m
}

/// A random float64 model over Cu, Ni, O with cutoff `rc` and 3 layers, its weights halved so
/// that energies and forces have the magnitudes of a trained potential (a few eV/atom, below
/// ~1 eV/Å): libtorch's default initialisation gives a PaiNN of 3 layers energies up to 1e20
/// eV/atom in bulk, where finite differences lose their meaning.
pub fn model(mpnn: MpnnType, rc: f64, seed: i64) -> Model {
    model_with_zbl(mpnn, rc, seed, None)
}

/// [`model`] with the ZBL core repulsion `zbl` (the same weights for the same seed).
pub fn model_with_zbl(
    mpnn: MpnnType,
    rc: f64,
    seed: i64,
    zbl: Option<mlip::zbl::ZblConfig>,
) -> Model {
    let mut c = ModelConfig::small(mpnn, vec![29, 28, 8], rc);
    c.zbl = zbl;
    c.num_conv_layers = 3;
    c.branches[0].reference_energies = vec![-3.5, -4.4, -1.2];
    let mut m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, seed).unwrap();
    tch::no_grad(|| {
        for (_, mut t) in m.var_store_mut().variables() {
            let _ = t.g_mul_scalar_(0.5);
        }
    });
    m
}

/// A random triclinic periodic structure of `n` atoms with a minimum separation of ~1.6 Å.
pub fn random_periodic(n: usize, seed: u64) -> Structure {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cell = [
        [6.0 + rng.gen::<f64>(), 0.0, 0.0],
        [1.2 * rng.gen::<f64>(), 6.0 + rng.gen::<f64>(), 0.0],
        [
            rng.gen::<f64>() - 0.5,
            1.0 * rng.gen::<f64>(),
            6.5 + rng.gen::<f64>(),
        ],
    ];
    let mut pos: Vec<[f64; 3]> = Vec::new();
    while pos.len() < n {
        let f: [f64; 3] = [rng.gen(), rng.gen(), rng.gen()];
        let p = [0, 1, 2].map(|c| (0..3).map(|k| f[k] * cell[k][c]).sum::<f64>());
        let s = Structure::new(vec![p], vec![29], cell, [true; 3]).unwrap();
        let ok = pos.iter().all(|q| {
            // minimum-image distance through the neighbour list of a two-atom structure
            let two =
                Structure::new(vec![*q, s.positions[0]], vec![29, 29], cell, [true; 3]).unwrap();
            let nl = mlip::neighbors::neighbor_list(&two, 1.6).unwrap();
            !nl.centers.iter().zip(&nl.neighbors).any(|(a, b)| a != b)
        });
        if ok {
            pos.push(p);
        }
    }
    let numbers = (0..n).map(|i| [29, 28, 8][i % 3]).collect();
    Structure::new(pos, numbers, cell, [true; 3]).unwrap()
}

/// A small random molecule (no cell).
pub fn random_molecule(n: usize, seed: u64) -> Structure {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pos: Vec<[f64; 3]> = Vec::new();
    while pos.len() < n {
        let p = [
            3.0 * rng.gen::<f64>(),
            3.0 * rng.gen::<f64>(),
            3.0 * rng.gen::<f64>(),
        ];
        if pos
            .iter()
            .all(|q| mlip::structure::norm(mlip::structure::sub(*q, p)) > 1.0)
        {
            pos.push(p);
        }
    }
    let numbers = (0..n).map(|i| [8, 29, 28][i % 3]).collect();
    Structure::molecule(pos, numbers).unwrap()
}

/// fcc copper, `n`×`n`×`n` conventional cells.
pub fn fcc_cu(n: usize, a: f64) -> Structure {
    let basis = [
        [0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.5, 0.5],
    ];
    let pos = basis
        .iter()
        .map(|b| [b[0] * a, b[1] * a, b[2] * a])
        .collect();
    let s = Structure::new(
        pos,
        vec![29; 4],
        [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]],
        [true; 3],
    )
    .unwrap();
    s.supercell([n, n, n])
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| (0..3).map(move |k| (x[k] - y[k]).abs()))
        .fold(0.0, f64::max);
    let den = b
        .iter()
        .flat_map(|y| y.iter().map(|v| v.abs()))
        .fold(0.0, f64::max);
    num / den
}

/// Rattled fcc Cu with every third atom Ni, `n`×`n`×`n` conventional cells.
pub fn rattled_cuni(n: usize) -> Structure {
    let mut s = fcc_cu(n, 3.6);
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

/// A non-periodic cluster: the first 13 atoms of the cell.
pub fn cuni_cluster() -> Structure {
    let mut s = rattled_cuni(2);
    s.positions.truncate(13);
    s.numbers.truncate(13);
    s.pbc = [false; 3];
    s
}

/// The batched graph of `structures` at the model's cutoff, with the edge pairing when `paired`.
pub fn pair_graph(m: &Model, structures: &[Structure], paired: bool) -> GraphTensors {
    let mut a = GraphArrays::default();
    for s in structures {
        let nl = mlip::neighbors::neighbor_list(s, m.cutoff()).unwrap();
        let src: Vec<i64> = nl.neighbors.iter().map(|&j| j as i64).collect();
        let dst: Vec<i64> = nl.centers.iter().map(|&i| i as i64).collect();
        let vec: Vec<f64> = nl.edge_vectors(s).into_iter().flatten().collect();
        let species = m.species_indices(&s.numbers).unwrap();
        let rev = mlip::model::graphs::reverse_edges(&src, &dst, &vec)
            .expect("a full list pairs every edge");
        if paired {
            a.push_with_reverse(&species, src, dst, &vec, &rev);
        } else {
            a.push(&species, src, dst, &vec);
        }
    }
    let g = a.to_tensors(m.kind(), m.device(), true);
    assert_eq!(g.pairs.is_some(), paired);
    g
}

/// The edge gradient dE/d(edge vector) of `e` (with the graph kept for a second backward), the
/// forces from it, and the gradient of the loss Σ E² + 10 Σ F² with respect to every trainable
/// parameter (zeros where a parameter gets none); the parameters' gradients must start at zero.
pub fn force_loss_gradients(
    m: &Model,
    g: &GraphTensors,
    e: &Tensor,
) -> (Tensor, Tensor, Vec<Tensor>) {
    let de = Tensor::run_backward(&[&e.sum(Kind::Double)], &[&g.edge_vec], true, true)
        .pop()
        .unwrap();
    let n = g.species.size()[0];
    let z = Tensor::zeros([n, 3], (Kind::Double, Device::Cpu));
    let f = z.index_add(0, &g.dst, &de) - z.index_add(0, &g.src, &de);
    let loss = e.square().sum(Kind::Double) + f.square().sum(Kind::Double) * 10.0;
    loss.backward();
    let grads = m
        .var_store()
        .trainable_variables()
        .iter()
        .map(|v| {
            let g = v.grad();
            if g.defined() {
                g.copy()
            } else {
                v.zeros_like()
            }
        })
        .collect();
    (de.detach(), f.detach(), grads)
}

/// max |a - b| / max |b|.
pub fn rel_max(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).abs().max().double_value(&[]);
    d / b.abs().max().double_value(&[]).max(1e-300)
}

/// The small float64 model of `mpnn` (hidden 16, 3 layers, Ni/Cu, cutoff 4.5 Å, seed 5) after
/// `tweak`, and a paired batch graph of two rattled 1×1×1 Cu/Ni cells (3.6 Å < cutoff: every atom
/// bonds to its own images) and a cluster: the inputs of the rewrite-vs-formula tests.
pub fn rewrite_case(mpnn: MpnnType, tweak: impl Fn(&mut ModelConfig)) -> (Model, GraphTensors) {
    let mut c = ModelConfig::small(mpnn, vec![28, 29], 4.5);
    c.hidden_dim = 16;
    c.num_conv_layers = 3;
    tweak(&mut c);
    let m = Model::new(c, Kind::Double, Device::Cpu, 5).unwrap();
    let g = pair_graph(
        &m,
        &[rattled_cuni(1), cuni_cluster(), rattled_cuni(2)],
        true,
    );
    (m, g)
}

/// Energy, forces and the parameter gradients of [`force_loss_gradients`]' loss for the energy
/// that `energy` computes (the parameters' gradients are zeroed first).
pub fn energy_force_grads(
    m: &Model,
    g: &GraphTensors,
    energy: impl Fn(&Model, &GraphTensors) -> Tensor,
) -> (Tensor, Tensor, Vec<Tensor>) {
    for v in m.var_store().trainable_variables() {
        let mut gr = v.grad();
        if gr.defined() {
            let _ = gr.zero_();
        }
    }
    let e = energy(m, g);
    let (_, f, grads) = force_loss_gradients(m, g, &e);
    (e.detach(), f, grads)
}

/// The engine's forward (`m.forward`) and a reference formula `reference` give the same energy
/// (1e-13), forces and parameter gradients (1e-12, relative); the forces are not all zero, a
/// parameter without gradient in the reference has none in the engine, and some have one.
pub fn assert_matches_reference(
    label: &str,
    m: &Model,
    g: &GraphTensors,
    reference: impl Fn(&Model, &GraphTensors) -> Tensor,
) {
    let (e0, f0, p0) = energy_force_grads(m, g, reference);
    let (e1, f1, p1) = energy_force_grads(m, g, |m, g| m.forward(g, None).unwrap().energy);
    assert!(rel_max(&e1, &e0) < 1e-13, "{label}: energies differ");
    assert!(
        rel_max(&f1, &f0) < 1e-12,
        "{label}: forces differ: {}",
        rel_max(&f1, &f0)
    );
    assert!(f0.abs().max().double_value(&[]) > 0.0);
    let mut nonzero = 0;
    for (k, (a, b)) in p1.iter().zip(&p0).enumerate() {
        if b.abs().max().double_value(&[]) > 0.0 {
            nonzero += 1;
            assert!(
                rel_max(a, b) < 1e-12,
                "{label}: gradient of parameter {k} differs by {}",
                rel_max(a, b)
            );
        } else {
            assert_eq!(
                a.abs().max().double_value(&[]),
                0.0,
                "{label}: parameter {k}"
            );
        }
    }
    assert!(nonzero > 0);
}
