//! Models trained by HydraGNN (ORNL/HydraGNN, PyTorch) as engine models: the `config.json`
//! HydraGNN wrote and the checkpoint's state dict (exported to safetensors by
//! `tools/import_hydragnn.py`) become a [`ModelConfig`] with HydraGNN's options and the engine's
//! weight names. The forward pass is the engine's own code; the options reproduce HydraGNN's:
//!
//! | HydraGNN | engine option |
//! | --- | --- |
//! | raw `data.x` into the first conv layer | `input: raw_features` (from `--species`) |
//! | `activation_function` after every conv block | `post_conv_activation` |
//! | SiLU inside PaiNN's blocks, ReLU inside EGNN's | `conv_activation` |
//! | PaiNN `sinc_expansion`, `cosine_cutoff` | `radial_type: sinc`, `envelope: cosine` |
//! | EGNN: the plain distance, no cutoff function | `envelope: hard` |
//! | PaiNN edge term `diff / dist` | `painn.edge_vector: unit_over_distance` |
//! | `torch.linalg.norm` in `PainnUpdate` | `painn.vector_norm: exact` |
//! | `node_embed_out`, `vec_embed_out` | `painn.output_mlp` |
//! | PaiNN `edge_filter` (`edge_dim` 1, edge_attr = \|r_ij\|) | `painn.edge_filter` |
//! | PaiNN update layers with or without biases (both checkpoint layouts) | biases copied, or zero |
//! | PaiNN `last_layer` | `painn.last_layer_scalar_only` |
//! | EGNN `equivariance` (coordinate updates) | `egnn.coords_update` |
//! | node head `mlp` (MLPNode), energy = Σ node head | head "energy" (graph, sum of per-node MLP) |
//! | graph heads: pool, `graph_shared`, head MLP | `pool_first`, branch `shared_layers` |
//! | graph-level energy head (`output_type` graph, `graph_pooling` add) | "energy" head with `pool_first` |
//! | `use_graph_attr_conditioning`, `concat_node` on [charge, spin] | `graph_attr` (`concat_node`) |
//! | `film` (`graph_conditioner`), `fuse_pool` (`graph_pool_projector`) on [charge, spin] | `graph_attr` (`film`, `fuse_pool`) |
//! | SchNet (`SCFStack`: PyG `CFConv` layers, `num_filters`, `GaussianSmearing`) | `schnet` options |
//! | PNA (`PNAConv`, one tower, `avg_deg` buffers, BatchNorm feature layers) | `mpnn_type: PNA`, `pna` options |
//! | DimeNet (`DIMEStack`: PyG's DimeNet++ blocks, float32 Bessel zeros) | `mpnn_type: DimeNet`, `dimenet` options |
//! | PNAEq (`PNAEqStack`: PaiNN messages and update, PNA aggregation with five scalers) | `mpnn_type: PNAEq` (`pna.avg_deg_*`) |
//! | MACE (`MACEStack`: irreps 0e + 1o, correlation 2, a readout per layer; see `mace`) | `mpnn_type: MACE`, `mace` options |
//! | CGCNN, GAT, GIN, SAGE, MFC (PyG's `CGConv`, `GATv2Conv`, `GINConv`, `SAGEConv`, `MFConv`; see `convs`) | `mpnn_type` of the same name, `conv` options |
//!
//! Orderings differ and are fixed here by permuting weights: HydraGNN's PaiNN splits messages as
//! (vector gate, edge gate, scalar) where the engine splits (scalar, vector gate, edge gate), and
//! feeds [|Vv|, s] to the update MLP where the engine feeds [s, |Vv|]. The message direction is the
//! same in both: HydraGNN gathers from `edge_index[1]` and sums into `edge_index[0]`, with edge
//! vector `pos[edge_index[1]] - pos[edge_index[0]] + shift`; the engine's edge goes from its
//! neighbour (`edge_index[1]`) to its centre (`edge_index[0]`) with the same vector.
//!
//! The pieces: [`npz`] and [`state_dict`] read the checkpoint's tensors, [`species`] the node
//! features of each element, `heads` and `backbone` translate the config and name each engine
//! weight's source, `weights` copies them in.

mod backbone;
mod convs;
mod heads;
mod mace;
pub mod npz;
pub mod species;
pub mod state_dict;
mod weights;

use std::collections::BTreeMap;

use serde_json::Value;
use tch::{Device, Kind, Tensor};

pub use npz::{is_npz, read_npz};
pub use species::{parse_species, SpeciesFeatures};
pub use state_dict::{read_state_dict, EXPORT_FORMAT};

use crate::error::{Error, Result};
use crate::model::config::{
    Activation, ConditioningMode, GraphAttrConfig, InputConfig, ModelConfig, MpnnType,
};
use crate::model::Model;

/// Options of [`import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Elements and their node features. None: every element H..Og with `x = [Z]` (HydraGNN's
    /// atomic-number convention; needs `input_dim` = 1).
    pub species: Option<Vec<SpeciesFeatures>>,
    /// Index (in HydraGNN's `output_type` order) of the node head whose per-atom values sum to
    /// the energy.
    pub energy_head: usize,
    /// Precision of the model (its weights are stored in it).
    pub kind: Kind,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            species: None,
            energy_head: 0,
            kind: Kind::Double,
        }
    }
}

/// An imported model and what the user should know about it.
#[derive(Debug)]
pub struct Imported {
    /// The model, weights loaded.
    pub model: Model,
    /// Things that may make the engine's numbers differ from HydraGNN's in use.
    pub warnings: Vec<String>,
    /// HydraGNN's `max_neighbours` (None when unset).
    pub max_neighbours: Option<i64>,
    /// Element → node-feature mapping used, as text.
    pub species_map: Vec<String>,
}

/// An error in the HydraGNN config.
fn cfg(msg: impl Into<String>) -> Error {
    Error::Config(format!("HydraGNN config: {}", msg.into()))
}

fn activation(name: &str) -> Result<Activation> {
    match name.to_ascii_lowercase().as_str() {
        "relu" => Ok(Activation::Relu),
        "silu" | "swish" => Ok(Activation::Silu),
        "tanh" => Ok(Activation::Tanh),
        other => Err(cfg(format!("activation_function '{other}' is not supported by the engine yet (relu, silu, tanh are)"))),
    }
}

fn getv<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// A required key of `Architecture`, or an error naming the key, the expected type and the value.
fn typed<'a, T>(
    v: &'a Value,
    key: &str,
    expected: &str,
    get: impl Fn(&'a Value) -> Option<T>,
) -> Result<T> {
    let x = getv(v, key).ok_or_else(|| cfg(format!("Architecture.{key} is missing")))?;
    get(x).ok_or_else(|| cfg(format!("Architecture.{key} must be {expected}, got {x}")))
}

fn int(v: &Value, key: &str) -> Result<i64> {
    typed(v, key, "an integer", Value::as_i64)
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| cfg(format!("{what} must be a list of integers")))
}

/// HydraGNN's `use_graph_attr_conditioning` on [charge, spin] (the foundation-model recipe's
/// attributes): `concat_node` (`graph_concat_projector`), `film` (`graph_conditioner`) and
/// `fuse_pool` (`graph_pool_projector`) become the engine's `graph_attr` with the same mode;
/// any other mode is refused by name.
fn conditioning(
    arch: &Value,
    state: &BTreeMap<String, Tensor>,
    warnings: &mut Vec<String>,
) -> Result<Option<GraphAttrConfig>> {
    if !getv(arch, "use_graph_attr_conditioning")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let mode_name = getv(arch, "graph_attr_conditioning_mode")
        .and_then(Value::as_str)
        .unwrap_or("concat_node")
        .to_ascii_lowercase();
    let hidden_dim = int(arch, "hidden_dim")?;
    // the checkpoint tensor whose column count tells the number of attributes, and how many of
    // its columns are not attributes
    let (mode, key, other_cols) = match mode_name.as_str() {
        "concat_node" => (
            ConditioningMode::ConcatNode,
            "model.graph_concat_projector.weight",
            hidden_dim,
        ),
        "film" => (ConditioningMode::Film, "model.graph_conditioner.0.weight", 0),
        "fuse_pool" => (
            ConditioningMode::FusePool,
            "model.graph_pool_projector.0.weight",
            hidden_dim,
        ),
        other => {
            return Err(cfg(format!(
                "graph_attr_conditioning_mode '{other}' cannot be imported: the engine supports 'concat_node', 'film' \
                 and 'fuse_pool' (HydraGNN's modes)"
            )))
        }
    };
    let w = state.get(key).ok_or_else(|| {
        cfg(format!(
            "use_graph_attr_conditioning with {mode_name}, but the checkpoint has no '{key}'"
        ))
    })?;
    let d = w.size().get(1).copied().unwrap_or(0) - other_cols;
    if d != 2 {
        return Err(cfg(format!(
            "graph_attr has {d} columns ('{key}' is {:?}): the engine imports the foundation-model recipe's \
             [charge, spin] (2)",
            w.size()
        )));
    }
    warnings.push(format!(
        "conditioned on the structure's [charge, spin] ({mode_name}): give them at run time (ASE atoms.info \
         [\"charge\"] and [\"spin\"], LAMMPS pair_style hydragnn charge Q spin S, C ABI hgnn_model_set_graph_attr), \
         in the units and convention of the training data"
    ));
    Ok(Some(GraphAttrConfig {
        names: vec!["charge".into(), "spin".into()],
        mode,
    }))
}

/// Where the conditioning weights of `g` come from (engine weight → HydraGNN tensor).
fn conditioning_sources(g: &GraphAttrConfig, sources: &mut BTreeMap<String, weights::Source>) {
    let pairs: &[(&str, &str)] = match g.mode {
        ConditioningMode::ConcatNode => &[("graph_attr.concat", "model.graph_concat_projector")],
        ConditioningMode::Film => &[
            ("graph_attr.film.0", "model.graph_conditioner.0"),
            ("graph_attr.film.2", "model.graph_conditioner.2"),
        ],
        ConditioningMode::FusePool => &[
            ("graph_attr.pool.0", "model.graph_pool_projector.0"),
            ("graph_attr.pool.2", "model.graph_pool_projector.2"),
        ],
    };
    for (mine, theirs) in pairs {
        for p in ["weight", "bias"] {
            sources.insert(
                format!("{mine}.{p}"),
                weights::Source::Copy(format!("{theirs}.{p}")),
            );
        }
    }
}

/// Builds the engine model of a HydraGNN `config.json` (text) and its state dict (keys without
/// the `module.` prefix).
pub fn import(
    config_json: &str,
    state: &BTreeMap<String, Tensor>,
    opts: &ImportOptions,
) -> Result<Imported> {
    let root: Value =
        serde_json::from_str(config_json).map_err(|e| cfg(format!("not JSON: {e}")))?;
    let nn = getv(&root, "NeuralNetwork").unwrap_or(&root);
    let arch =
        getv(nn, "Architecture").ok_or_else(|| cfg("no NeuralNetwork.Architecture section"))?;
    let voi = getv(nn, "Variables_of_interest");
    let mut warnings = Vec::new();

    let mpnn = typed(arch, "mpnn_type", "a string", Value::as_str)?;
    let mpnn_type = match mpnn {
        "PAINN" => MpnnType::PaiNN,
        "EGNN" => MpnnType::Egnn,
        "SchNet" => MpnnType::SchNet,
        "PNA" | "PNAPlus" => MpnnType::Pna,
        "PNAEq" => MpnnType::PnaEq,
        "DimeNet" => MpnnType::DimeNet,
        "CGCNN" => MpnnType::Cgcnn,
        "GAT" => MpnnType::Gat,
        "GIN" => MpnnType::Gin,
        "SAGE" => MpnnType::Sage,
        "MFC" => MpnnType::Mfc,
        "MACE" => return mace::import(nn, arch, voi, state, opts),
        other => {
            return Err(cfg(format!(
                "mpnn_type '{other}' cannot be imported yet (PAINN, EGNN, SchNet, PNA, PNAPlus, PNAEq, DimeNet, MACE, CGCNN, GAT, GIN, SAGE, MFC can)"
            )))
        }
    };
    if let Some(g) = getv(arch, "global_attn_engine").and_then(Value::as_str) {
        if !g.is_empty() {
            return Err(cfg(format!(
                "global attention ('{g}') is not supported by the engine"
            )));
        }
    }
    let edge_dim = getv(arch, "edge_dim").and_then(Value::as_i64).unwrap_or(0);
    // CGCNN, GAT, GIN, SAGE, MFC: their edge_dim is checked and read by convs (0 from here on)
    let edge_dim = convs::edge_dim_elsewhere(mpnn_type, edge_dim, &mut warnings)?;
    if edge_dim > 0 {
        if edge_dim != 1
            || !matches!(
                mpnn_type,
                MpnnType::PaiNN | MpnnType::Pna | MpnnType::PnaEq | MpnnType::DimeNet
            )
        {
            return Err(cfg(format!(
                "edge_dim = {edge_dim} with mpnn_type '{mpnn}' cannot be imported: the engine supports edge_dim = 1 \
                 (edge_attr = |r_ij|, HydraGNN's PBCDistance) for PAINN, PNA, PNAPlus, PNAEq, DimeNet and MACE"
            )));
        }
        warnings.push(
            "edge_dim = 1: HydraGNN precomputes edge_attr = |r_ij| as data, so its own autograd forces hold it \
             constant; the engine recomputes it from the positions, giving the true -dE/dpos"
                .into(),
        );
    }
    if voi
        .and_then(|v| getv(v, "denormalize_output"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(cfg("denormalize_output is true: outputs were min-max scaled; the engine cannot undo that yet"));
    }
    let hidden_dim = int(arch, "hidden_dim")?;
    let graph_attr = conditioning(arch, state, &mut warnings)?;
    let num_conv_layers = int(arch, "num_conv_layers")? as usize;
    let radius = typed(arch, "radius", "a number (Å)", Value::as_f64)?;
    let input_dim = int(arch, "input_dim")?;
    let act_name = getv(arch, "activation_function")
        .and_then(Value::as_str)
        .unwrap_or("relu");
    let act = activation(act_name)?;
    let equivariance = getv(arch, "equivariance")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_neighbours = getv(arch, "max_neighbours").and_then(Value::as_i64);
    if let Some(k) = max_neighbours {
        warnings.push(format!(
            "HydraGNN built its training graphs with max_neighbours = {k}: atoms with more than {k} neighbours within {radius} Å \
             had some dropped. The engine uses the plain radius graph (every pair within the cutoff, which keeps energies \
             continuous in MD), so on dense structures its numbers differ from HydraGNN's truncated graphs."
        ));
    }
    let var_output = nn
        .get("Training")
        .and_then(|t| getv(t, "loss_function_type"))
        .and_then(Value::as_str)
        .map(|s| s == "GaussianNLLLoss")
        .unwrap_or(false);

    let (species, features, species_map) =
        species::node_features(opts.species.as_deref(), input_dim, &mut warnings)?;
    let mut sources = BTreeMap::new();
    let mut state_used = std::collections::BTreeSet::new();
    if let Some(g) = &graph_attr {
        conditioning_sources(g, &mut sources);
    }
    let branches = heads::branches(arch, voi, opts.energy_head, var_output, &mut sources)?;
    let mut conv_options = Default::default();
    let bb = match mpnn_type {
        MpnnType::PaiNN => backbone::painn(
            arch,
            input_dim,
            hidden_dim,
            num_conv_layers,
            state,
            &mut sources,
            &mut warnings,
        )?,
        MpnnType::Egnn => {
            backbone::egnn(num_conv_layers, equivariance, &mut sources, &mut warnings)
        }
        MpnnType::Pna => backbone::pna(
            arch,
            mpnn == "PNAPlus",
            num_conv_layers,
            edge_dim,
            state,
            &mut state_used,
            &mut sources,
            &mut warnings,
        )?,
        MpnnType::PnaEq => backbone::pnaeq(
            arch,
            num_conv_layers,
            edge_dim,
            state,
            &mut state_used,
            &mut sources,
            &mut warnings,
        )?,
        MpnnType::DimeNet => {
            backbone::dimenet(arch, num_conv_layers, edge_dim, &mut sources, &mut warnings)?
        }
        MpnnType::Mace => unreachable!("MACE is imported by mace::import"),
        MpnnType::Cgcnn | MpnnType::Gat | MpnnType::Gin | MpnnType::Sage | MpnnType::Mfc => {
            let (bb, o) = convs::import(
                &convs::Arch {
                    name: mpnn,
                    mpnn_type,
                    arch,
                    num_conv_layers,
                    input_dim,
                    hidden_dim,
                    has_graph_attr: graph_attr.is_some(),
                },
                state,
                &mut state_used,
                &mut sources,
                &mut warnings,
            )?;
            conv_options = o;
            bb
        }
        MpnnType::SchNet => backbone::schnet(
            arch,
            num_conv_layers,
            state,
            &mut state_used,
            &mut sources,
            &mut warnings,
        )?,
    };

    let config = ModelConfig {
        mpnn_type,
        hidden_dim,
        num_conv_layers,
        radius,
        num_radial: bb.num_radial,
        radial_type: bb.radial_type,
        envelope: bb.envelope,
        activation_function: act,
        species,
        input: InputConfig::RawFeatures { features },
        branches,
        conv_activation: Some(bb.conv_activation),
        post_conv_activation: Some(act),
        painn: bb.painn,
        egnn: bb.egnn,
        schnet: bb.schnet,
        pna: bb.pna,
        dimenet: bb.dimenet,
        mace: Default::default(),
        // HydraGNN sums messages unscaled.
        avg_num_neighbors: None,
        zbl: None,
        min_training_distance: None,
        graph_attr,
        conv: conv_options,
    };
    config.validate()?;
    let model = Model::new(config, opts.kind, Device::Cpu, 0)?;
    // tensors the config took (SchNet's Gaussian centres) are not weights
    let weights: BTreeMap<String, Tensor> = state
        .iter()
        .filter(|(k, _)| !state_used.contains(k.as_str()))
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    weights::load_weights(&model, &weights, &sources, opts.kind)?;
    Ok(Imported {
        model,
        warnings,
        max_neighbours,
        species_map,
    })
}
