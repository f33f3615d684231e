//! The faster formulations of the PaiNN and EGNN layers ([`mlip::model::Edges::slots`]: sums of
//! per-edge outer products as batched matrix products in a padded destination-major layout;
//! PaiNN's layer 0 skipping the term that is zero on its zero vectors) give the same energies,
//! forces and parameter gradients of a force loss (the double backward the trainer runs) as the
//! straightforward per-edge formulas, in float64, to rounding.

mod common;
use common::*;
use mlip::model::config::{ModelConfig, MpnnType};
use mlip::model::GraphTensors;
use mlip::Model;
use tch::{Device, Kind, Tensor};

/// The energy by the straightforward formulas: the layers run on edges without the padded
/// layout and without knowing that layer 0's state is the initial one.
fn reference_energy(m: &Model, g: &GraphTensors) -> Tensor {
    let n = g.species.size()[0];
    let e = m.edges_paired(&g.src, &g.dst, &g.edge_vec, n, g.pairs.as_ref());
    e.disable_layouts();
    assert!(e.slots().is_none() && e.pair_major().is_none());
    let bb = m.backbone();
    let mut st = bb.init_state(&m.input_features(&g.species));
    for l in 0..m.num_layers() {
        st = bb.layer(l, &st, &e);
    }
    m.heads(None, &st.s, g).unwrap().energy
}

fn check_with(mpnn: MpnnType, tweak: impl Fn(&mut ModelConfig)) {
    let (m, g) = rewrite_case(mpnn, tweak);
    let n = g.species.size()[0];
    let e = m.edges_paired(&g.src, &g.dst, &g.edge_vec, n, g.pairs.as_ref());
    assert!(e.slots().is_some(), "the padded layout is in use");
    assert!(e.pair_major().is_some(), "the pair-major order is in use");
    assert_matches_reference(&format!("{mpnn:?}"), &m, &g, reference_energy);
}

#[test]
fn painn_rewrites_equal_straightforward_formulas() {
    check_with(MpnnType::PaiNN, |_| {});
}

/// HydraGNN's variant: layers at their input width, output MLPs, a scalar-only last layer,
/// vectors over distance.
#[test]
fn painn_hydragnn_variant_rewrites_equal_straightforward_formulas() {
    check_with(MpnnType::PaiNN, |c| {
        c.painn.output_mlp = true;
        c.painn.last_layer_scalar_only = true;
        c.painn.edge_filter = true;
        c.painn.edge_vector = mlip::model::config::PainnEdgeVector::UnitOverDistance;
        c.avg_num_neighbors = Some(20.0);
    });
}

#[test]
fn egnn_rewrites_equal_straightforward_formulas() {
    check_with(MpnnType::Egnn, |c| {
        c.egnn.edge_rbf = true;
        c.avg_num_neighbors = Some(20.0);
    });
}

#[test]
fn egnn_with_coordinate_updates_rewrites_equal_straightforward_formulas() {
    check_with(MpnnType::Egnn, |c| {
        c.egnn.edge_rbf = true;
        c.egnn.coords_update = true;
    });
}

/// The padded layout holds every edge once, in its destination's block, and nothing else.
#[test]
fn padded_layout_sums_like_aggregate() {
    let m = model(MpnnType::PaiNN, 4.5, 1);
    let g = pair_graph(&m, &[rattled_cuni(1), cuni_cluster()], true);
    let n = g.species.size()[0];
    let e = m.edges(&g.src, &g.dst, &g.edge_vec, n);
    let sl = e.slots().expect("a padded layout");
    let counts = g.dst.bincount::<Tensor>(None, n);
    assert_eq!(sl.k, counts.max().int64_value(&[]));
    let ne = g.dst.size()[0];
    let x = Tensor::randn([ne, 3, 5], (Kind::Double, Device::Cpu));
    let p = e.pad(sl, &x);
    assert_eq!(p.size(), vec![n, sl.k, 3, 5]);
    let by_pad = p.sum_dim_intlist(1, false, Kind::Double);
    assert!(rel_max(&by_pad, &e.aggregate(&x)) < 1e-14);
    // Every row used once: the padding is exactly zero.
    assert_eq!(p.ne(0.0).sum(Kind::Int64).int64_value(&[]), ne * 15);
}
