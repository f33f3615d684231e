//! HydraGNN's message-passing layers (PaiNN's `PainnMessage`/`PainnUpdate`, EGNN's `E_GCL`) as
//! the engine's layers with HydraGNN's options, and where their weights come from (the orderings
//! that differ are fixed by permuting rows or columns).

use std::collections::BTreeMap;

use serde_json::Value;
use tch::Tensor;

use super::weights::Source;
use super::{getv, int};
use crate::error::Result;
use crate::model::config::{
    Activation, DimeNetOptions, EgnnOptions, Envelope, PainnEdgeVector, PainnOptions, PnaOptions,
    RadialType, SchnetOptions, VectorNorm,
};

/// The backbone options an import sets.
pub(super) struct Backbone {
    pub num_radial: i64,
    pub radial_type: RadialType,
    pub envelope: Envelope,
    pub conv_activation: Activation,
    pub painn: PainnOptions,
    pub egnn: EgnnOptions,
    pub schnet: SchnetOptions,
    pub pna: PnaOptions,
    pub dimenet: DimeNetOptions,
}

/// HydraGNN's name of a weight of conv layer `l`.
fn conv(l: usize, rest: &str) -> String {
    format!("model.graph_convs.{l}.{rest}")
}

/// HydraGNN PaiNN: sinc radial basis, cosine cutoff, SiLU inside the blocks, output MLPs; with
/// `edge_dim` = 1 the distance MLP (`edge_filter`) on the filter. Checkpoints from before
/// upstream dropped the biases of `update_U`/`update_V` carry `.bias` keys in `state`: those load
/// into `painn.update_bias` (and a warning says they break rotation equivariance).
pub(super) fn painn(
    arch: &Value,
    input_dim: i64,
    hidden_dim: i64,
    num_conv_layers: usize,
    state: &BTreeMap<String, Tensor>,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> Result<Backbone> {
    let num_radial = int(arch, "num_radial")?;
    // edge_dim = 1 (checked by the caller): edge_attr = |r_ij| through `edge_filter`
    let edge_filter = getv(arch, "edge_dim").and_then(Value::as_i64) == Some(1);
    let update_bias = state.contains_key(&conv(0, "module_1.update_U.bias"));
    if update_bias {
        warnings.push(
            "this PaiNN checkpoint predates upstream's removal (HydraGNN #511) of the update_U/update_V and \
             vec_embed_out biases: they are loaded as they are (painn.update_bias), and like in HydraGNN then, they \
             add a constant to every vector component, so energies are not exactly rotation invariant"
                .into(),
        );
    }
    let mut f = input_dim;
    for l in 0..num_conv_layers {
        let last = l + 1 == num_conv_layers;
        let e = |rest: &str| format!("layers.{l}.{rest}");
        sources.insert(
            e("message.phi.0.weight"),
            Source::Copy(conv(l, "module_0.scalar_message_mlp.0.weight")),
        );
        sources.insert(
            e("message.phi.0.bias"),
            Source::Copy(conv(l, "module_0.scalar_message_mlp.0.bias")),
        );
        // HydraGNN chunks (vector gate, edge gate, scalar) -> engine (scalar, vector gate, edge gate).
        for (dst, src) in [
            ("message.phi.1", "module_0.scalar_message_mlp.2"),
            ("message.filter", "module_0.filter_layer"),
        ] {
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("{dst}.{p}")),
                    Source::PermuteRows(conv(l, &format!("{src}.{p}")), f, [1, 2, 0]),
                );
            }
        }
        sources.insert(
            e("update.U.weight"),
            Source::Copy(conv(l, "module_1.update_U.weight")),
        );
        sources.insert(
            e("update.V.weight"),
            Source::Copy(conv(l, "module_1.update_V.weight")),
        );
        if update_bias {
            for m in ["U", "V"] {
                sources.insert(
                    e(&format!("update.{m}.bias")),
                    Source::Copy(conv(l, &format!("module_1.update_{m}.bias"))),
                );
            }
        }
        if edge_filter {
            sources.insert(
                e("message.edge_filter.0.weight"),
                Source::Copy(conv(l, "module_0.edge_filter.0.weight")),
            );
            sources.insert(
                e("message.edge_filter.0.bias"),
                Source::Copy(conv(l, "module_0.edge_filter.0.bias")),
            );
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("message.edge_filter.1.{p}")),
                    Source::PermuteRows(
                        conv(l, &format!("module_0.edge_filter.2.{p}")),
                        f,
                        [1, 2, 0],
                    ),
                );
            }
        }
        sources.insert(
            e("update.mlp.0.weight"),
            Source::SwapCols(conv(l, "module_1.update_mlp.0.weight"), f),
        );
        sources.insert(
            e("update.mlp.0.bias"),
            Source::Copy(conv(l, "module_1.update_mlp.0.bias")),
        );
        sources.insert(
            e("update.mlp.1.weight"),
            Source::Copy(conv(l, "module_1.update_mlp.2.weight")),
        );
        sources.insert(
            e("update.mlp.1.bias"),
            Source::Copy(conv(l, "module_1.update_mlp.2.bias")),
        );
        for (k, hk) in [(0, 0), (1, 2)] {
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("out.s.{k}.{p}")),
                    Source::Copy(conv(l, &format!("module_2.{hk}.{p}"))),
                );
            }
        }
        if !last {
            sources.insert(e("out.v.weight"), Source::Copy(conv(l, "module_3.weight")));
            if update_bias {
                sources.insert(e("out.v.bias"), Source::Copy(conv(l, "module_3.bias")));
            }
        }
        f = hidden_dim;
    }
    let p = PainnOptions {
        edge_vector: PainnEdgeVector::UnitOverDistance,
        vector_norm: VectorNorm::Exact,
        output_mlp: true,
        last_layer_scalar_only: true,
        edge_filter,
        update_bias,
    };
    Ok(Backbone {
        num_radial,
        radial_type: RadialType::Sinc,
        envelope: Envelope::Cosine,
        conv_activation: Activation::Silu,
        painn: p,
        egnn: EgnnOptions::default(),
        schnet: SchnetOptions::default(),
        pna: PnaOptions::default(),
        dimenet: DimeNetOptions::default(),
    })
}

/// HydraGNN EGNN (`E_GCL`): the plain distance, no cutoff function, ReLU inside the blocks; with
/// `equivariance` the coordinate updates.
pub(super) fn egnn(
    num_conv_layers: usize,
    equivariance: bool,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> Backbone {
    for l in 0..num_conv_layers {
        let e = |rest: &str| format!("layers.{l}.{rest}");
        for (mlp, ks) in [
            ("edge_mlp", [(0, 0), (1, 2)]),
            ("node_mlp", [(0, 0), (1, 2)]),
        ] {
            for (k, hk) in ks {
                for p in ["weight", "bias"] {
                    sources.insert(
                        e(&format!("{mlp}.{k}.{p}")),
                        Source::Copy(conv(l, &format!("module_0.{mlp}.{hk}.{p}"))),
                    );
                }
            }
        }
        if equivariance && l + 1 < num_conv_layers {
            sources.insert(
                e("coord_mlp.0.weight"),
                Source::Copy(conv(l, "module_0.coord_mlp.0.weight")),
            );
            sources.insert(
                e("coord_mlp.0.bias"),
                Source::Copy(conv(l, "module_0.coord_mlp.0.bias")),
            );
            sources.insert(
                e("coord_mlp.1.weight"),
                Source::Copy(conv(l, "module_0.coord_mlp.2.weight")),
            );
        }
    }
    if equivariance {
        warnings.push(
            "EGNN with equivariance = true: the engine reproduces E_GCL's coordinate updates as per-atom displacements; \
             this variant is not covered by a golden test against HydraGNN"
                .into(),
        );
    }
    Backbone {
        num_radial: 1,
        radial_type: RadialType::Gaussian,
        envelope: Envelope::Hard,
        conv_activation: Activation::Relu,
        painn: PainnOptions::default(),
        egnn: EgnnOptions {
            coords_update: equivariance,
            edge_rbf: false,
        },
        schnet: SchnetOptions::default(),
        pna: PnaOptions::default(),
        dimenet: DimeNetOptions::default(),
    }
}

/// HydraGNN SchNet (`SCFStack`): every layer a PyG `CFConv` (filter MLP Linear → shifted softplus
/// → Linear of width `num_filters`, `lin1` without bias, `lin2`), cosine cutoff, PyG's
/// `GaussianSmearing` centres read from the checkpoint's `offset` buffers (their names go into
/// `used`: they configure the basis and are not weights).
pub(super) fn schnet(
    arch: &Value,
    num_conv_layers: usize,
    state: &BTreeMap<String, Tensor>,
    used: &mut std::collections::BTreeSet<String>,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> Result<Backbone> {
    let num_gaussians = int(arch, "num_gaussians")?;
    let num_filters = int(arch, "num_filters")?;
    let mut offsets: Option<Vec<f64>> = None;
    let keys: Vec<String> = (0..num_conv_layers)
        .map(|l| conv(l, "module_1.offset"))
        .chain(["model.distance_expansion.offset".to_string()])
        .collect();
    for k in keys {
        let Some(t) = state.get(&k) else { continue };
        let v = Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).contiguous().view([-1]))
            .map_err(|e| super::cfg(format!("'{k}': {e}")))?;
        match &offsets {
            None => offsets = Some(v),
            Some(o) if *o != v => {
                return Err(super::cfg(format!(
                    "'{k}' differs from the other GaussianSmearing offsets: the engine uses one radial basis for every layer"
                )))
            }
            Some(_) => {}
        }
        used.insert(k);
    }
    let offsets = offsets.ok_or_else(|| {
        super::cfg("a SchNet checkpoint without GaussianSmearing 'offset' buffers (model.graph_convs.<l>.module_1.offset)")
    })?;
    if offsets.len() as i64 != num_gaussians {
        return Err(super::cfg(format!(
            "num_gaussians is {num_gaussians} but the checkpoint's GaussianSmearing has {} offsets",
            offsets.len()
        )));
    }
    for l in 0..num_conv_layers {
        let e = |rest: &str| format!("layers.{l}.{rest}");
        for (dst, src) in [
            ("filter1", "module_2.nn.0"),
            ("filter2", "module_2.nn.2"),
            ("lin2", "module_2.lin2"),
        ] {
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("{dst}.{p}")),
                    Source::Copy(conv(l, &format!("{src}.{p}"))),
                );
            }
        }
        sources.insert(
            e("lin1.weight"),
            Source::Copy(conv(l, "module_2.lin1.weight")),
        );
    }
    if getv(arch, "periodic_boundary_conditions")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        warnings.push(
            "HydraGNN's SchNet builds its own radius graph without periodic images (and with edge_attr zeroes the \
             shifts), so it is only meaningful for non-periodic structures; the engine uses every periodic image, \
             so on periodic structures its numbers differ from HydraGNN's"
                .into(),
        );
    }
    Ok(Backbone {
        num_radial: num_gaussians,
        radial_type: RadialType::Gaussian,
        envelope: Envelope::Cosine,
        conv_activation: Activation::Ssp,
        painn: PainnOptions::default(),
        egnn: EgnnOptions::default(),
        schnet: SchnetOptions {
            cfconv_only: true,
            num_filters: Some(num_filters),
            gaussian_offsets: offsets,
            // PyG's ShiftedSoftplus: softplus(x) - log(2) with log(2) taken as a float32 tensor
            ssp_shift: Some(f64::from(std::f32::consts::LN_2)),
        },
        pna: PnaOptions::default(),
        dimenet: DimeNetOptions::default(),
    })
}

/// The one value of the per-layer buffers `model.graph_convs.<l>.<rest>` (noted in `used`).
fn layer_scalar(
    state: &BTreeMap<String, Tensor>,
    num_conv_layers: usize,
    rest: &str,
    used: &mut std::collections::BTreeSet<String>,
) -> Result<f64> {
    let mut value = None;
    for l in 0..num_conv_layers {
        let k = conv(l, rest);
        let t = state
            .get(&k)
            .ok_or_else(|| super::cfg(format!("the checkpoint has no '{k}'")))?;
        let v = t
            .to_kind(tch::Kind::Double)
            .f_double_value(&[0])
            .map_err(|e| super::cfg(format!("'{k}': {e}")))?;
        if value.is_some_and(|x| x != v) {
            return Err(super::cfg(format!("'{k}' differs between layers")));
        }
        value = Some(v);
        used.insert(k);
    }
    value.ok_or_else(|| super::cfg("a PNA model without conv layers"))
}

/// HydraGNN PNA (`PNAStack`: PyG `PNAConv` with one tower, one pre and one post layer,
/// aggregators mean/min/max/std, scalers identity/amplification/attenuation/linear), its
/// BatchNorm feature layers in evaluation mode, and the degree averages from the checkpoint's
/// `avg_deg_lin`/`avg_deg_log` buffers (computed by PyG in float32: the buffers are used as they are).
#[allow(clippy::too_many_arguments)]
pub(super) fn pna(
    arch: &Value,
    plus: bool,
    num_conv_layers: usize,
    edge_dim: i64,
    state: &BTreeMap<String, Tensor>,
    used: &mut std::collections::BTreeSet<String>,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> Result<Backbone> {
    let avg_deg_lin = layer_scalar(
        state,
        num_conv_layers,
        "module_0.aggr_module.avg_deg_lin",
        used,
    )?;
    let avg_deg_log = layer_scalar(
        state,
        num_conv_layers,
        "module_0.aggr_module.avg_deg_log",
        used,
    )?;
    let batch_norm = state.contains_key("model.feature_layers.0.module.weight");
    for l in 0..num_conv_layers {
        let e = |rest: &str| format!("layers.{l}.{rest}");
        let mut pairs = vec![
            ("pre", "module_0.pre_nns.0.0"),
            ("post", "module_0.post_nns.0.0"),
            ("lin", "module_0.lin"),
        ];
        if edge_dim == 1 {
            pairs.push(("edge_encoder", "module_0.edge_encoder"));
        }
        for (dst, src) in pairs {
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("{dst}.{p}")),
                    Source::Copy(conv(l, &format!("{src}.{p}"))),
                );
            }
        }
        if plus {
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("rbf_emb.{p}")),
                    Source::Copy(conv(l, &format!("module_0.rbf_emb.0.{p}"))),
                );
            }
            sources.insert(
                e("rbf_lin.weight"),
                Source::Copy(conv(l, "module_0.rbf_lin.weight")),
            );
        }
        if batch_norm {
            for p in ["weight", "bias", "running_mean", "running_var"] {
                sources.insert(
                    e(&format!("bn.{p}")),
                    Source::Copy(format!("model.feature_layers.{l}.module.{p}")),
                );
            }
            // PyG's counter of training batches: not used in evaluation mode
            used.insert(format!(
                "model.feature_layers.{l}.module.num_batches_tracked"
            ));
        }
    }
    warnings.push(
        "PNA sees the pair distance without a cutoff function and aggregates by min and max: its energy jumps when \
         a pair crosses the cutoff and is only piecewise smooth, so energy is not conserved exactly in MD"
            .into(),
    );
    let (num_radial, envelope_exponent) = if plus {
        sources.insert("rbf.freq".into(), Source::Copy("model.rbf.freq".into()));
        (int(arch, "num_radial")?, int(arch, "envelope_exponent")?)
    } else {
        (1, 0)
    };
    Ok(Backbone {
        num_radial,
        radial_type: RadialType::Gaussian,
        envelope: Envelope::Hard,
        conv_activation: Activation::Relu,
        painn: PainnOptions::default(),
        egnn: EgnnOptions::default(),
        schnet: SchnetOptions::default(),
        pna: PnaOptions {
            edge_dim,
            avg_deg_lin,
            avg_deg_log,
            batch_norm,
            bessel_rbf: plus,
            envelope_exponent,
            vector_bias: false,
        },
        dimenet: DimeNetOptions::default(),
    })
}

/// HydraGNN PNAEq (`PNAEqStack`: `PainnMessage` with PyG's `DegreeScalerAggregation` of the
/// scalar messages, `PainnUpdate`, the output embeddings): the engine's PNAEq in HydraGNN's own
/// weight layout (no reordering), sinc basis times cosine cutoff, and the degree averages from
/// the checkpoint's `avg_deg_lin`/`avg_deg_log` buffers.
pub(super) fn pnaeq(
    arch: &Value,
    num_conv_layers: usize,
    edge_dim: i64,
    state: &BTreeMap<String, Tensor>,
    used: &mut std::collections::BTreeSet<String>,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> Result<Backbone> {
    let avg_deg_lin = layer_scalar(
        state,
        num_conv_layers,
        "module_0.aggr_module.avg_deg_lin",
        used,
    )?;
    let avg_deg_log = layer_scalar(
        state,
        num_conv_layers,
        "module_0.aggr_module.avg_deg_log",
        used,
    )?;
    // checkpoints from before HydraGNN #511 have biases on the vector projections
    let vector_bias = state.contains_key(&conv(0, "module_1.update_X.bias"));
    for l in 0..num_conv_layers {
        let e = |rest: &str| format!("layers.{l}.{rest}");
        let mut pairs = vec![
            ("pre", "module_0.pre_nns.0.0"),
            ("post", "module_0.post_nns.0.0"),
            ("rbf_emb", "module_0.rbf_emb.0"),
            ("msg.0", "module_0.scalar_message_mlp.0"),
            ("msg.1", "module_0.scalar_message_mlp.2"),
            ("msg.2", "module_0.scalar_message_mlp.4"),
            ("update.mlp.0", "module_1.update_mlp.0"),
            ("update.mlp.1", "module_1.update_mlp.2"),
            ("out.s.0", "module_2.0"),
            ("out.s.1", "module_2.2"),
        ];
        if edge_dim == 1 {
            pairs.push(("edge_encoder", "module_0.edge_encoder"));
        }
        for (dst, src) in pairs {
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("{dst}.{p}")),
                    Source::Copy(conv(l, &format!("{src}.{p}"))),
                );
            }
        }
        for (dst, src) in [
            ("rbf_lin", "module_0.rbf_lin"),
            ("update.X", "module_1.update_X"),
            ("update.V", "module_1.update_V"),
        ] {
            sources.insert(
                e(&format!("{dst}.weight")),
                Source::Copy(conv(l, &format!("{src}.weight"))),
            );
        }
        if vector_bias {
            for (dst, src) in [
                ("update.X", "module_1.update_X"),
                ("update.V", "module_1.update_V"),
            ] {
                sources.insert(
                    e(&format!("{dst}.bias")),
                    Source::Copy(conv(l, &format!("{src}.bias"))),
                );
            }
        }
        if l + 1 < num_conv_layers {
            sources.insert(e("out.v.weight"), Source::Copy(conv(l, "module_3.weight")));
            if vector_bias {
                sources.insert(e("out.v.bias"), Source::Copy(conv(l, "module_3.bias")));
            }
        }
    }
    if vector_bias {
        warnings.push(
            "this PNAEq checkpoint predates upstream's removal (HydraGNN #511) of the update_X/update_V and \
             vec_embed_out biases: they are loaded as they are (pna.vector_bias), and like in HydraGNN then, they \
             add a constant to every vector component, so energies are not exactly rotation invariant"
                .into(),
        );
    }
    warnings.push(
        "PNAEq aggregates its scalar messages by min and max: its energy is only piecewise smooth, so energy is \
         not conserved exactly in MD when two messages swap order"
            .into(),
    );
    Ok(Backbone {
        num_radial: int(arch, "num_radial")?,
        radial_type: RadialType::Sinc,
        envelope: Envelope::Cosine,
        conv_activation: Activation::Silu,
        painn: PainnOptions::default(),
        egnn: EgnnOptions::default(),
        schnet: SchnetOptions::default(),
        pna: PnaOptions {
            edge_dim,
            avg_deg_lin,
            avg_deg_log,
            vector_bias,
            ..Default::default()
        },
        dimenet: DimeNetOptions::default(),
    })
}

/// HydraGNN DimeNet (`DIMEStack`: per conv layer a Linear, `HydraEmbeddingBlock`, PyG's
/// `InteractionPPBlock` and `OutputPPBlock` with one output layer): the engine's DimeNet in the
/// same weight layout, the trainable frequencies from `model.rbf.freq`.
pub(super) fn dimenet(
    arch: &Value,
    num_conv_layers: usize,
    edge_dim: i64,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> Result<Backbone> {
    let o = DimeNetOptions {
        basis_emb_size: int(arch, "basis_emb_size")?,
        int_emb_size: int(arch, "int_emb_size")?,
        out_emb_size: int(arch, "out_emb_size")?,
        num_spherical: int(arch, "num_spherical")?,
        num_before_skip: int(arch, "num_before_skip")? as usize,
        num_after_skip: int(arch, "num_after_skip")? as usize,
        envelope_exponent: int(arch, "envelope_exponent")?,
        edge_dim,
    };
    for l in 0..num_conv_layers {
        let e = |rest: &str| format!("layers.{l}.{rest}");
        let mut with_bias = vec![
            ("lin".to_string(), "module_0".to_string()),
            ("emb.lin_rbf".into(), "module_1.lin_rbf".into()),
            ("emb.lin".into(), "module_1.lin".into()),
            ("int.lin_kj".into(), "module_2.lin_kj".into()),
            ("int.lin_ji".into(), "module_2.lin_ji".into()),
            ("int.lin".into(), "module_2.lin".into()),
            ("out.lins.0".into(), "module_3.lins.0".into()),
        ];
        if edge_dim == 1 {
            with_bias.push(("emb.edge_lin".into(), "module_1.edge_lin".into()));
        }
        for (mine, theirs, n) in [
            ("before", "layers_before_skip", o.num_before_skip),
            ("after", "layers_after_skip", o.num_after_skip),
        ] {
            for k in 0..n {
                for lin in ["lin1", "lin2"] {
                    with_bias.push((
                        format!("int.{mine}.{k}.{lin}"),
                        format!("module_2.{theirs}.{k}.{lin}"),
                    ));
                }
            }
        }
        for (dst, src) in with_bias {
            for p in ["weight", "bias"] {
                sources.insert(
                    e(&format!("{dst}.{p}")),
                    Source::Copy(conv(l, &format!("{src}.{p}"))),
                );
            }
        }
        for (dst, src) in [
            ("int.lin_rbf1", "module_2.lin_rbf1"),
            ("int.lin_rbf2", "module_2.lin_rbf2"),
            ("int.lin_sbf1", "module_2.lin_sbf1"),
            ("int.lin_sbf2", "module_2.lin_sbf2"),
            ("int.lin_down", "module_2.lin_down"),
            ("int.lin_up", "module_2.lin_up"),
            ("out.lin_rbf", "module_3.lin_rbf"),
            ("out.lin_up", "module_3.lin_up"),
            ("out.lin", "module_3.lin"),
        ] {
            sources.insert(
                e(&format!("{dst}.weight")),
                Source::Copy(conv(l, &format!("{src}.weight"))),
            );
        }
    }
    sources.insert("rbf.freq".into(), Source::Copy("model.rbf.freq".into()));
    warnings.push(
        "DimeNet's triplet messages reach two cutoffs: the model runs on whole structures (C ABI hgnn_compute, \
         ASE); graphs with ghost atoms (LAMMPS's spatial decomposition) are refused"
            .into(),
    );
    Ok(Backbone {
        num_radial: int(arch, "num_radial")?,
        radial_type: RadialType::Bessel,
        envelope: Envelope::Polynomial {
            p: o.envelope_exponent as i32 + 1,
        },
        conv_activation: Activation::Silu,
        painn: PainnOptions::default(),
        egnn: EgnnOptions::default(),
        schnet: SchnetOptions::default(),
        pna: PnaOptions::default(),
        dimenet: o,
    })
}
