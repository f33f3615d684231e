//! HydraGNN's PyTorch Geometric convolution stacks (`CGCNNStack`, `GATStack`, `GINStack`,
//! `SAGEStack`, `MFCStack`) as the engine's CGCNN, GAT, GIN, SAGE and MFC backbones
//! ([`crate::model::cgcnn`], [`crate::model::gat`], ...), and where their weights come from.
//! The layouts are the same in both codes (no reordering): conv layer l is
//! `model.graph_convs.<l>.module_0` (PyG's `Sequential`), its feature layer
//! `model.feature_layers.<l>.module` (PyG's `BatchNorm` around `torch.nn.BatchNorm1d`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tch::Tensor;

use super::backbone::Backbone;
use super::weights::Source;
use super::{cfg, getv};
use crate::error::Result;
use crate::model::config::{
    Activation, ConvOptions, DimeNetOptions, EgnnOptions, Envelope, MpnnType, PainnOptions,
    PnaOptions, RadialType, SchnetOptions,
};

/// HydraGNN's name of a weight of conv layer `l`.
fn conv(l: usize, rest: &str) -> String {
    format!("model.graph_convs.{l}.module_0.{rest}")
}

/// What the import of one of the five needs from the config.
pub(super) struct Arch<'a> {
    /// HydraGNN's `mpnn_type` string.
    pub name: &'a str,
    pub mpnn_type: MpnnType,
    pub arch: &'a Value,
    pub num_conv_layers: usize,
    pub input_dim: i64,
    pub hidden_dim: i64,
    pub has_graph_attr: bool,
}

/// The config's `edge_dim` for the generic checks of [`super::import`]: for these five backbones
/// it is checked here and read again by [`import`], so the generic code sees 0. HydraGNN's
/// `create_model` does not pass `edge_dim` to GIN, SAGE and MFC (they take no edge attributes, and
/// the checkpoint is the same): ignored, with a warning. CGCNN and GAT take 0 or 1.
pub(super) fn edge_dim_elsewhere(
    t: MpnnType,
    edge_dim: i64,
    warnings: &mut Vec<String>,
) -> Result<i64> {
    match t {
        MpnnType::Gin | MpnnType::Sage | MpnnType::Mfc => {
            if edge_dim > 0 {
                warnings.push(format!(
                    "edge_dim = {edge_dim} is ignored for {t:?}, as HydraGNN ignores it (GINStack, SAGEStack and \
                     MFCStack take no edge attributes)"
                ));
            }
            Ok(0)
        }
        MpnnType::Cgcnn | MpnnType::Gat => {
            if !(0..=1).contains(&edge_dim) {
                return Err(cfg(format!(
                    "edge_dim = {edge_dim} with mpnn_type {t:?} cannot be imported: the engine supports edge_dim 0 or \
                     1 (edge_attr = |r_ij|, HydraGNN's PBCDistance)"
                )));
            }
            if edge_dim == 1 {
                warnings.push(
                    "edge_dim = 1: HydraGNN precomputes edge_attr = |r_ij| as data, so its own autograd forces hold it \
                     constant; the engine recomputes it from the positions, giving the true -dE/dpos"
                        .into(),
                );
            }
            Ok(0)
        }
        _ => Ok(edge_dim),
    }
}

/// The engine options and weight sources of a CGCNN, GAT, GIN, SAGE or MFC checkpoint.
pub(super) fn import(
    a: &Arch,
    state: &BTreeMap<String, Tensor>,
    used: &mut BTreeSet<String>,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> Result<(Backbone, ConvOptions)> {
    let name = a.name;
    if a.has_graph_attr {
        return Err(cfg(format!(
            "use_graph_attr_conditioning with mpnn_type '{name}' cannot be imported yet (no reference outputs to \
             check it against)"
        )));
    }
    let nl = a.num_conv_layers;
    // (checked by edge_dim_elsewhere; GIN, SAGE and MFC ignore it as HydraGNN does)
    let edge_dim = match a.mpnn_type {
        MpnnType::Cgcnn | MpnnType::Gat => getv(a.arch, "edge_dim")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        _ => 0,
    };
    let mut o = ConvOptions {
        edge_dim,
        batch_norm: state.contains_key("model.feature_layers.0.module.weight"),
        ..Default::default()
    };
    let copy = |sources: &mut BTreeMap<String, Source>, l: usize, mine: &str, theirs: &str| {
        sources.insert(format!("layers.{l}.{mine}"), Source::Copy(conv(l, theirs)));
    };
    match a.mpnn_type {
        MpnnType::Cgcnn => {
            if a.hidden_dim != a.input_dim {
                return Err(cfg(format!(
                    "CGCNN keeps the width of its input features, but the config has hidden_dim {} and input_dim {} \
                     (HydraGNN sets hidden_dim to input_dim for CGCNN without global attention)",
                    a.hidden_dim, a.input_dim
                )));
            }
            for l in 0..nl {
                for lin in ["lin_f", "lin_s"] {
                    for p in ["weight", "bias"] {
                        copy(sources, l, &format!("{lin}.{p}"), &format!("{lin}.{p}"));
                    }
                }
            }
            warnings.push(
                "CGCNN: every layer adds sigmoid(...) * softplus(...) messages of the pair distance without a cutoff \
                 function: the energy jumps when a pair crosses the cutoff, so energy is not conserved exactly in MD"
                    .into(),
            );
        }
        MpnnType::Gat => {
            if nl < 2 {
                return Err(cfg(format!(
                    "GAT with num_conv_layers = {nl} cannot be imported: HydraGNN's GATStack builds at least two \
                     conv layers (heads concatenated, then averaged)"
                )));
            }
            let att = state
                .get(&conv(0, "att"))
                .ok_or_else(|| cfg(format!("the checkpoint has no '{}'", conv(0, "att"))))?;
            let s = att.size();
            if s.len() != 3 || s[2] != a.hidden_dim {
                return Err(cfg(format!(
                    "'{}' has shape {s:?}, expected (1, heads, hidden_dim = {})",
                    conv(0, "att"),
                    a.hidden_dim
                )));
            }
            o.heads = s[1];
            // HydraGNN's create.py hard-codes heads = 6 and negative_slope = 0.05
            o.negative_slope = 0.05;
            for l in 0..nl {
                for lin in ["lin_l", "lin_r"] {
                    for p in ["weight", "bias"] {
                        copy(sources, l, &format!("{lin}.{p}"), &format!("{lin}.{p}"));
                    }
                }
                copy(sources, l, "att", "att");
                copy(sources, l, "bias", "bias");
                if edge_dim == 1 {
                    copy(sources, l, "lin_edge", "lin_edge.weight");
                }
            }
            warnings.push(
                "GAT (PyG GATv2Conv) drops the edges from an atom to its own periodic images (remove_self_loops) and \
                 adds one self loop per atom: on whole structures (ASE, C ABI hgnn_compute) as in HydraGNN; in LAMMPS \
                 an atom's image is a ghost atom and that edge is kept, which differs only in cells with a lattice \
                 vector shorter than the cutoff. The distance enters without a cutoff function: the energy jumps when \
                 a pair crosses the cutoff"
                    .into(),
            );
        }
        MpnnType::Gin => {
            for l in 0..nl {
                copy(sources, l, "eps", "eps");
                for (mine, theirs) in [("lin1", "nn.0"), ("lin2", "nn.2")] {
                    for p in ["weight", "bias"] {
                        copy(sources, l, &format!("{mine}.{p}"), &format!("{theirs}.{p}"));
                    }
                }
            }
        }
        MpnnType::Sage => {
            for l in 0..nl {
                for p in ["weight", "bias"] {
                    copy(sources, l, &format!("lin_l.{p}"), &format!("lin_l.{p}"));
                }
                copy(sources, l, "lin_r.weight", "lin_r.weight");
            }
        }
        MpnnType::Mfc => {
            let n = (0..)
                .take_while(|d| state.contains_key(&conv(0, &format!("lins_l.{d}.weight"))))
                .count() as i64;
            if n == 0 {
                return Err(cfg(format!(
                    "the checkpoint has no '{}'",
                    conv(0, "lins_l.0.weight")
                )));
            }
            o.max_degree = n - 1;
            if let Some(k) = getv(a.arch, "max_neighbours").and_then(Value::as_i64) {
                if k != o.max_degree {
                    return Err(cfg(format!(
                        "MFC: the checkpoint has weights for degrees 0..={} but the config's max_neighbours (MFConv's \
                         max_degree) is {k}",
                        o.max_degree
                    )));
                }
            }
            for l in 0..nl {
                for d in 0..=o.max_degree {
                    for p in ["weight", "bias"] {
                        copy(
                            sources,
                            l,
                            &format!("lins_l.{d}.{p}"),
                            &format!("lins_l.{d}.{p}"),
                        );
                    }
                    copy(
                        sources,
                        l,
                        &format!("lins_r.{d}.weight"),
                        &format!("lins_r.{d}.weight"),
                    );
                }
            }
        }
        _ => unreachable!("convs::import is for CGCNN, GAT, GIN, SAGE and MFC"),
    }
    if matches!(a.mpnn_type, MpnnType::Gin | MpnnType::Sage | MpnnType::Mfc) {
        warnings.push(format!(
            "{name} is not an edge model in HydraGNN: its energy depends only on which atoms are within the cutoff, \
             not on where they are. The forces and the virial are identically zero, and the energy jumps when a pair \
             crosses the cutoff: the model cannot drive MD or relaxations"
        ));
    }
    if o.batch_norm {
        for l in 0..nl {
            for p in ["weight", "bias", "running_mean", "running_var"] {
                sources.insert(
                    format!("layers.{l}.bn.{p}"),
                    Source::Copy(format!("model.feature_layers.{l}.module.{p}")),
                );
            }
            // PyG's counter of training batches: not used in evaluation mode
            used.insert(format!(
                "model.feature_layers.{l}.module.num_batches_tracked"
            ));
        }
    }
    Ok((
        Backbone {
            num_radial: 1,
            radial_type: RadialType::Gaussian,
            envelope: Envelope::Hard,
            conv_activation: Activation::Relu,
            painn: PainnOptions::default(),
            egnn: EgnnOptions::default(),
            schnet: SchnetOptions::default(),
            pna: PnaOptions::default(),
            dimenet: DimeNetOptions::default(),
        },
        o,
    ))
}
