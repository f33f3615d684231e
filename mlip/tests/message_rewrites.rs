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

/// Energy, forces and the gradient of an energy + force loss with respect to every parameter.
fn evaluate(m: &Model, g: &GraphTensors, reference: bool) -> (Tensor, Tensor, Vec<Tensor>) {
    for v in m.var_store().trainable_variables() {
        let mut gr = v.grad();
        if gr.defined() {
            let _ = gr.zero_();
        }
    }
    let e = if reference {
        reference_energy(m, g)
    } else {
        m.forward(g, None).unwrap().energy
    };
    let (_, f, grads) = force_loss_gradients(m, g, &e);
    (e.detach(), f, grads)
}

fn check_with(mpnn: MpnnType, tweak: impl Fn(&mut ModelConfig)) {
    let mut c = ModelConfig::small(mpnn, vec![28, 29], 4.5);
    c.hidden_dim = 16;
    c.num_conv_layers = 3;
    tweak(&mut c);
    let m = Model::new(c, Kind::Double, Device::Cpu, 5).unwrap();
    // 1×1×1 conventional cell (3.6 Å < 4.5 Å cutoff): every atom bonds to its own images.
    let g = pair_graph(
        &m,
        &[rattled_cuni(1), cuni_cluster(), rattled_cuni(2)],
        true,
    );
    let n = g.species.size()[0];
    let e = m.edges_paired(&g.src, &g.dst, &g.edge_vec, n, g.pairs.as_ref());
    assert!(e.slots().is_some(), "the padded layout is in use");
    assert!(e.pair_major().is_some(), "the pair-major order is in use");
    let (e0, f0, p0) = evaluate(&m, &g, true);
    let (e1, f1, p1) = evaluate(&m, &g, false);
    assert!(rel_max(&e1, &e0) < 1e-13, "{mpnn:?}: energies differ");
    assert!(rel_max(&f1, &f0) < 1e-12, "{mpnn:?}: forces differ");
    let mut nonzero = 0;
    for (k, (a, b)) in p1.iter().zip(&p0).enumerate() {
        if b.abs().max().double_value(&[]) > 0.0 {
            nonzero += 1;
            assert!(
                rel_max(a, b) < 1e-12,
                "{mpnn:?}: gradient of parameter {k} differs by {}",
                rel_max(a, b)
            );
        } else {
            assert_eq!(
                a.abs().max().double_value(&[]),
                0.0,
                "{mpnn:?}: parameter {k}"
            );
        }
    }
    assert!(nonzero > 0);
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
