//! Radial filters once per pair of edges ([`mlip::model::EdgePairs`], what the trainer's batches
//! carry): energies, edge gradients (forces, virial) and parameter gradients of the force loss
//! equal those of the per-edge computation, for every backbone, in a small periodic cell (an
//! atom bonded to its own images) and in a molecule.

mod common;
use common::*;
use mlip::model::config::{ModelConfig, MpnnType};
use mlip::model::graphs::reverse_edges;
use mlip::model::{GraphArrays, GraphTensors};
use mlip::Model;
use tch::{Device, Kind, Tensor};

/// Energy, edge gradient and the gradient of a force-like loss with respect to every parameter.
fn evaluate(m: &Model, g: &GraphTensors) -> (Tensor, Tensor, Vec<Tensor>) {
    for v in m.var_store().trainable_variables() {
        let mut gr = v.grad();
        if gr.defined() {
            let _ = gr.zero_();
        }
    }
    let e = m.forward(g, None).unwrap().energy;
    // The trainer's loss is on forces (the per-edge split of a pair's gradient is not physical).
    let (de, _, grads) = force_loss_gradients(m, g, &e);
    (e.detach(), de, grads)
}

fn check(mpnn: MpnnType) {
    check_with(mpnn, |_| {});
}

fn check_with(mpnn: MpnnType, tweak: impl Fn(&mut ModelConfig)) {
    let mut c = ModelConfig::small(mpnn, vec![28, 29], 4.5);
    c.hidden_dim = 16;
    c.num_conv_layers = 2;
    if mpnn == MpnnType::Pna {
        c.pna.avg_deg_lin = 30.0;
        c.pna.avg_deg_log = 3.4;
        c.pna.edge_dim = 1; // the messages see the distance
    }
    tweak(&mut c);
    let m = Model::new(c, Kind::Double, Device::Cpu, 3).unwrap();
    // 1×1×1 conventional cell (3.6 Å < 4.5 Å cutoff): every atom bonds to its own images.
    let batch = [rattled_cuni(1), cuni_cluster(), rattled_cuni(2)];
    let (e0, g0, p0) = evaluate(&m, &pair_graph(&m, &batch, false));
    let (e1, g1, p1) = evaluate(&m, &pair_graph(&m, &batch, true));
    assert!(
        rel_max(&e1, &e0) < 1e-12,
        "{mpnn:?}: energies differ by {}",
        rel_max(&e1, &e0)
    );
    // Per edge the split of a pair's distance gradient between its two edges differs (the pair
    // is computed from its first edge), so compare what is physical: forces and virial.
    let forces = |g: &GraphTensors, de: &Tensor| {
        let n = g.species.size()[0];
        let z = Tensor::zeros([n, 3], (Kind::Double, Device::Cpu));
        z.index_add(0, &g.dst, de) - z.index_add(0, &g.src, de)
    };
    let virial = |g: &GraphTensors, de: &Tensor| {
        (g.edge_vec.detach().unsqueeze(2) * de.unsqueeze(1)).sum_dim_intlist(0, false, Kind::Double)
    };
    let (ga, gb) = (pair_graph(&m, &batch, false), pair_graph(&m, &batch, true));
    assert!(
        rel_max(&forces(&gb, &g1), &forces(&ga, &g0)) < 1e-11,
        "{mpnn:?}: forces differ"
    );
    assert!(
        rel_max(&virial(&gb, &g1), &virial(&ga, &g0)) < 1e-11,
        "{mpnn:?}: virials differ"
    );
    for (k, (a, b)) in p1.iter().zip(&p0).enumerate() {
        if b.abs().max().double_value(&[]) > 0.0 {
            assert!(
                rel_max(a, b) < 1e-9,
                "{mpnn:?}: gradient of parameter {k} differs by {}",
                rel_max(a, b)
            );
        }
    }
}

#[test]
fn schnet_paired_filters_equal_per_edge() {
    check(MpnnType::SchNet);
}

#[test]
fn painn_paired_filters_equal_per_edge() {
    check(MpnnType::PaiNN);
}

#[test]
fn egnn_paired_filters_equal_per_edge() {
    check(MpnnType::Egnn);
}

/// EGNN as the trainer builds it (radial basis in the edge MLP) and with coordinate updates (the
/// pairing is used in layer 0 only, where the atoms have not moved).
#[test]
fn egnn_with_rbf_and_coordinate_updates_paired_equals_per_edge() {
    check_with(MpnnType::Egnn, |c| {
        c.egnn.edge_rbf = true;
        c.egnn.coords_update = true;
        c.num_conv_layers = 3;
    });
}

#[test]
fn pna_paired_filters_equal_per_edge() {
    check(MpnnType::Pna);
}

#[test]
fn reverse_edges_pairs_a_full_list_and_refuses_a_half_one() {
    let s = rattled_cuni(1);
    let nl = mlip::neighbors::neighbor_list(&s, 4.5).unwrap();
    let src: Vec<i64> = nl.neighbors.iter().map(|&j| j as i64).collect();
    let dst: Vec<i64> = nl.centers.iter().map(|&i| i as i64).collect();
    let vec: Vec<f64> = nl.edge_vectors(&s).into_iter().flatten().collect();
    let rev = reverse_edges(&src, &dst, &vec).unwrap();
    for (e, &r) in rev.iter().enumerate() {
        let r = r as usize;
        assert_ne!(r, e);
        assert_eq!(rev[r] as usize, e);
        assert_eq!((src[r], dst[r]), (dst[e], src[e]));
        for k in 0..3 {
            assert_eq!(vec[3 * r + k], -vec[3 * e + k]);
        }
    }
    // Self-images exist in this cell: an atom paired with itself through opposite shifts.
    assert!((0..src.len()).any(|e| src[e] == dst[e]));
    // Drop one edge: its reverse has no partner left.
    let n = src.len() - 1;
    assert!(reverse_edges(&src[..n], &dst[..n], &vec[..3 * n]).is_none());
    // A batch mixing a paired and an unpaired graph carries no pairing.
    let mut a = GraphArrays::default();
    a.push_with_reverse(
        &[0],
        src.iter().map(|_| 0),
        dst.iter().map(|_| 0),
        &vec,
        &rev,
    );
    a.push(&[0], [0i64], [0i64], &[1.0, 0.0, 0.0]);
    assert!(a.reverse.is_none());
}
