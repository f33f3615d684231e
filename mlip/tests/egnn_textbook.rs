//! EGNN's layers (per-node products of the edge MLP's first layer gathered to the edges, the
//! distance terms once per pair of edges, the pair-major layout) give the same energies, forces
//! and parameter gradients of an energy + force loss (the trainer's double backward) as the
//! textbook per-edge E_GCL formula on the concatenation [h_i, h_j, d_e(, rbf)], in float64, to
//! rounding: with and without coordinate updates, with and without the radial basis in the edge
//! input.

mod common;
use common::*;
use mlip::model::config::{ModelConfig, MpnnType};
use mlip::model::nn::act;
use mlip::model::GraphTensors;
use mlip::Model;
use tch::{Device, Kind, Tensor};

/// The model's parameter whose name ends with `suffix` (exactly one).
fn param(m: &Model, suffix: &str) -> Tensor {
    let vars = m.var_store().variables();
    let hits: Vec<_> = vars
        .iter()
        .filter(|(k, _)| k.ends_with(&format!(".{suffix}")) || k.as_str() == suffix)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{suffix}: {:?}",
        vars.keys().collect::<Vec<_>>()
    );
    hits[0].1.shallow_clone()
}

fn linear(m: &Model, x: &Tensor, name: &str, bias: bool) -> Tensor {
    let b = bias.then(|| param(m, &format!("{name}.bias")));
    x.linear(&param(m, &format!("{name}.weight")), b.as_ref())
}

/// The energy by the textbook formula, every edge on its own (no pairing, no per-node split).
fn textbook_energy(m: &Model, g: &GraphTensors) -> Tensor {
    let c = m.config();
    assert!(c.post_conv_activation.is_none());
    let a = c.conv_activation.unwrap_or(c.activation_function);
    let n = g.species.size()[0];
    let e = m.edges(&g.src, &g.dst, &g.edge_vec, n);
    let mut h = m.input_features(&g.species);
    // Accumulated displacements of the atoms (coordinate updates).
    let mut disp = Tensor::zeros([n, 3], (Kind::Double, Device::Cpu));
    let nl = c.num_conv_layers;
    for l in 0..nl {
        let name = |s: &str| format!("layers.{l}.{s}");
        let vec = &e.vec + disp.index_select(0, &e.src) - disp.index_select(0, &e.dst);
        let dist = vec.square().sum_dim_intlist(-1, false, Kind::Double).sqrt();
        let (env, rbf) = if l == 0 || !c.egnn.coords_update {
            (e.env.shallow_clone(), e.rbf.shallow_clone())
        } else {
            // The layer's edge geometry: the envelope and basis of the moved distances, from a
            // model's own edges on the moved vectors.
            let moved = m.edges(&g.src, &g.dst, &vec, n);
            (moved.env.shallow_clone(), moved.rbf.shallow_clone())
        };
        let mut x = vec![
            h.index_select(0, &e.dst),
            h.index_select(0, &e.src),
            dist.unsqueeze(-1),
        ];
        if c.egnn.edge_rbf {
            x.push(rbf);
        }
        let z = act(
            a,
            &linear(m, &Tensor::cat(&x, -1), &name("edge_mlp.0"), true),
        );
        let msg = act(a, &linear(m, &z, &name("edge_mlp.1"), true)) * env.unsqueeze(-1);
        let hd = msg.size()[1];
        let mut agg =
            Tensor::zeros([n, hd], (Kind::Double, Device::Cpu)).index_add(0, &e.dst, &msg);
        if let Some(k) = c.avg_num_neighbors {
            agg /= k;
        }
        if c.egnn.coords_update && l + 1 < nl {
            let phi = linear(
                m,
                &act(a, &linear(m, &msg, &name("coord_mlp.0"), true)),
                &name("coord_mlp.1"),
                false,
            )
            .tanh();
            let trans =
                (&vec / (dist.unsqueeze(-1) + 1.0) * phi).clamp(-100.0, 100.0) * env.unsqueeze(-1);
            let zeros = |w: i64| Tensor::zeros([n, w], (Kind::Double, Device::Cpu));
            let count = zeros(1)
                .index_add(0, &e.dst, &env.unsqueeze(-1))
                .clamp_min(1.0);
            disp = &disp + zeros(3).index_add(0, &e.dst, &trans) / count;
        }
        let u = act(
            a,
            &linear(m, &Tensor::cat(&[&h, &agg], -1), &name("node_mlp.0"), true),
        );
        h = linear(m, &u, &name("node_mlp.1"), true);
    }
    m.heads(None, &h, g).unwrap().energy
}

fn check_with(tweak: impl Fn(&mut ModelConfig)) {
    let (m, g) = rewrite_case(MpnnType::Egnn, tweak);
    assert_matches_reference("Egnn", &m, &g, textbook_energy);
}

#[test]
fn egnn_equals_textbook_formula() {
    check_with(|c| c.avg_num_neighbors = Some(20.0));
}

#[test]
fn egnn_with_edge_rbf_equals_textbook_formula() {
    check_with(|c| {
        c.egnn.edge_rbf = true;
        c.avg_num_neighbors = Some(20.0);
    });
}

#[test]
fn egnn_with_coordinate_updates_equals_textbook_formula() {
    check_with(|c| {
        c.egnn.edge_rbf = true;
        c.egnn.coords_update = true;
    });
}
