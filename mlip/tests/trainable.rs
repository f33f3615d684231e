//! Trainability: the models the trainer builds give finite losses and gradients from a fresh
//! initialisation, and their forces depend on the positions.

mod common;
use common::*;
use mlip::model::config::{Activation, ModelConfig, MpnnType, RadialType};
use mlip::model::GraphTensors;
use mlip::{Model, Structure};
use tch::{Kind, Tensor};

/// The model config `hydragnn train` builds for `mpnn` (Al, Ni, Cu; hidden 64, 3 layers, 5 Å).
fn trainer_config(mpnn: MpnnType) -> ModelConfig {
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
    c
}

fn graph(m: &Model, s: &Structure) -> GraphTensors {
    let nl = mlip::neighbors::neighbor_list(s, m.cutoff()).unwrap();
    let vecs: Vec<f64> = nl.edge_vectors(s).into_iter().flatten().collect();
    let ne = nl.len() as i64;
    let sp = m.species_indices(&s.numbers).unwrap();
    GraphTensors {
        species: Tensor::from_slice(&sp),
        src: Tensor::from_slice(&nl.neighbors.iter().map(|&j| j as i64).collect::<Vec<_>>()),
        dst: Tensor::from_slice(&nl.centers.iter().map(|&i| i as i64).collect::<Vec<_>>()),
        edge_vec: mlip::model::nn::tensor_from(&vecs, &[ne, 3], m.kind(), m.device())
            .set_requires_grad(true),
        batch: Tensor::zeros([s.len() as i64], (Kind::Int64, tch::Device::Cpu)),
        n_graphs: 1,
    }
}

fn absmax(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

#[test]
fn diag_painn_magnitudes() {
    let c = trainer_config(MpnnType::PaiNN);
    let m = Model::new(c, Kind::Float, tch::Device::Cpu, 0).unwrap();
    let mut s = fcc_cu(2, 3.61);
    for (i, p) in s.positions.iter_mut().enumerate() {
        p[0] += 0.05 * ((i * 7 % 5) as f64 - 2.0);
        p[1] += 0.04 * ((i * 3 % 7) as f64 - 3.0);
    }
    let g = graph(&m, &s);
    eprintln!("edges per atom {}", g.src.size()[0] as f64 / s.len() as f64);
    let n = s.len() as i64;
    let e = m.edges(&g.src, &g.dst, &g.edge_vec, n);
    let mut st = m.backbone().init_state(&m.input_features(&g.species));
    eprintln!("in: s {:e}", absmax(&st.s));
    for l in 0..m.num_layers() {
        st = m.backbone().layer(l, &st, &e);
        eprintln!(
            "layer {l}: s {:e} v {:e}",
            absmax(&st.s),
            st.v.as_ref().map_or(0.0, absmax)
        );
    }
    let out = m.forward(&g, None).unwrap();
    let en = out.energy.sum(Kind::Float);
    eprintln!("energy {:e}", en.double_value(&[]));
    let gr = Tensor::run_backward(&[&en], &[&g.edge_vec], true, true).pop().unwrap();
    eprintln!("dE/dvec {:e}", absmax(&gr));
    let loss = gr.square().sum(Kind::Float) + en.square();
    loss.backward();
    for (name, t) in m.var_store().variables() {
        let gr = t.grad();
        if gr.defined() {
            eprintln!("{name}: |g| {:e}", absmax(&gr));
        }
    }
}

#[test]
fn diag_egnn() {
  for mp in [MpnnType::SchNet, MpnnType::Egnn, MpnnType::PaiNN] {
    let mut c = trainer_config(mp);
    c.avg_num_neighbors = Some(41.0);
    c.egnn.edge_rbf = mp == MpnnType::Egnn;
    let m = Model::new(c, Kind::Double, tch::Device::Cpu, 0).unwrap();
    eprintln!("{mp:?}");
    let mut s = fcc_cu(2, 3.61);
    for (i, p) in s.positions.iter_mut().enumerate() {
        p[0] += 0.05 * ((i * 7 % 5) as f64 - 2.0);
        p[1] += 0.04 * ((i * 3 % 7) as f64 - 3.0);
    }
    let g = graph(&m, &s);
    let n = s.len() as i64;
    let e = m.edges(&g.src, &g.dst, &g.edge_vec, n);
    let mut st = m.backbone().init_state(&m.input_features(&g.species));
    for l in 0..m.num_layers() {
        st = m.backbone().layer(l, &st, &e);
        let gr = Tensor::run_backward(&[&st.s.sum(Kind::Double)], &[&g.edge_vec], true, true).pop().unwrap();
        eprintln!("layer {l}: s {:e} ds/dvec {:e}", absmax(&st.s), absmax(&gr));
    }
    eprintln!("env max {:e} dist min {:e} max {:e}", absmax(&e.env), e.dist.min().double_value(&[]), absmax(&e.dist));
    let r = m.compute(&s, mlip::Request::ALL).unwrap();
    let fmax = r.forces.iter().flatten().fold(0.0f64, |a, b| a.max(b.abs()));
    eprintln!("energy {} fmax {:e}", r.energy, fmax);
  }
}

#[test]
fn diag_egnn_trained() {
    let Ok(path) = std::env::var("DIAG_MODEL") else { return };
    let m = Model::load(&path, Kind::Double, tch::Device::Cpu).unwrap();
    eprintln!("{}", serde_json::to_string(m.config()).unwrap());
    let mut s = fcc_cu(2, 3.61);
    for (i, p) in s.positions.iter_mut().enumerate() {
        p[0] += 0.05 * ((i * 7 % 5) as f64 - 2.0);
        p[1] += 0.04 * ((i * 3 % 7) as f64 - 3.0);
    }
    let g = graph(&m, &s);
    let n = s.len() as i64;
    let e = m.edges(&g.src, &g.dst, &g.edge_vec, n);
    let mut st = m.backbone().init_state(&m.input_features(&g.species));
    for l in 0..m.num_layers() {
        st = m.backbone().layer(l, &st, &e);
        let gr = Tensor::run_backward(&[&st.s.sum(Kind::Double)], &[&g.edge_vec], true, true).pop().unwrap();
        eprintln!("layer {l}: s {:e} ds/dvec {:e}", absmax(&st.s), absmax(&gr));
    }
    for (name, t) in m.var_store().variables() {
        eprintln!("{name}: {:?} max {:e}", t.size(), absmax(&t));
    }
    let r = m.compute(&s, mlip::Request::ALL).unwrap();
    let fmax = r.forces.iter().flatten().fold(0.0f64, |a, b| a.max(b.abs()));
    eprintln!("energy {} fmax {:e}", r.energy, fmax);
}
