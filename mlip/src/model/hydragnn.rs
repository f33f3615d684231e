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
//! | PaiNN `last_layer` | `painn.last_layer_scalar_only` |
//! | EGNN `equivariance` (coordinate updates) | `egnn.coords_update` |
//! | node head `mlp` (MLPNode), energy = Σ node head | head "energy" (graph, sum of per-node MLP) |
//! | graph heads: pool, `graph_shared`, head MLP | `pool_first`, branch `shared_layers` |
//!
//! Orderings differ and are fixed here by permuting weights: HydraGNN's PaiNN splits messages as
//! (vector gate, edge gate, scalar) where the engine splits (scalar, vector gate, edge gate), and
//! feeds [|Vv|, s] to the update MLP where the engine feeds [s, |Vv|]. The message direction is the
//! same in both: HydraGNN gathers from `edge_index[1]` and sums into `edge_index[0]`, with edge
//! vector `pos[edge_index[1]] - pos[edge_index[0]] + shift`; the engine's edge goes from its
//! neighbour (`edge_index[1]`) to its centre (`edge_index[0]`) with the same vector.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::config::{
    Activation, BranchConfig, EgnnOptions, Envelope, HeadConfig, HeadKind, InputConfig,
    ModelConfig, MpnnType, PainnEdgeVector, PainnOptions, Pooling, RadialType, VectorNorm,
};
use super::Model;
use crate::error::{Error, Result};

/// `format` metadata of the state-dict export written by `tools/import_hydragnn.py`.
pub const EXPORT_FORMAT: &str = "hydragnn-state-dict";

/// The node-feature vector HydraGNN saw for one element.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeciesFeatures {
    /// Atomic number.
    pub z: i32,
    /// Feature values (`input_dim` of them); None: the atomic number itself (`x = [Z]`).
    pub features: Option<Vec<f64>>,
}

/// Parses `--species` text: comma-separated `Symbol` or `Symbol=v1[:v2...]`, e.g. `Ar=1` or
/// `H,C,N,O` (bare symbols stand for x = [Z], HydraGNN's usual atomic-number feature).
pub fn parse_species(spec: &str) -> Result<Vec<SpeciesFeatures>> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (sym, vals) = match item.split_once('=') {
            Some((s, v)) => (s.trim(), Some(v)),
            None => (item, None),
        };
        let z = crate::elements::atomic_number(sym).ok_or_else(|| {
            Error::InvalidInput(format!(
                "species '{item}': '{sym}' is not a chemical symbol (e.g. Ar, Cu)"
            ))
        })?;
        let features = match vals {
            None => None,
            Some(v) => Some(
                v.split(':')
                    .map(|x| {
                        x.trim().parse::<f64>().map_err(|_| {
                            Error::InvalidInput(format!("species '{item}': '{x}' is not a number"))
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?,
            ),
        };
        if out.iter().any(|s: &SpeciesFeatures| s.z == z) {
            return Err(Error::InvalidInput(format!(
                "species '{sym}' is given twice"
            )));
        }
        out.push(SpeciesFeatures { z, features });
    }
    if out.is_empty() {
        return Err(Error::InvalidInput("--species lists no element".into()));
    }
    Ok(out)
}

/// Options of [`import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Elements and their node features. None: every element H..Og with x = [Z] (HydraGNN's
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

fn cfg(msg: impl Into<String>) -> Error {
    Error::Config(format!("HydraGNN config: {}", msg.into()))
}

/// Reads a state dict (keys without the `module.` prefix) as f64 CPU tensors: the safetensors
/// export of `tools/import_hydragnn.py`, or an uncompressed `.npz` of float arrays
/// (`np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})`), which needs no torch.
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let bad = |m: String| Error::ModelFile {
        path: path.to_path_buf(),
        msg: m,
    };
    if is_npz(&bytes) {
        let arrays = parse_npz(&bytes).map_err(bad)?;
        let mut out = BTreeMap::new();
        for (k, t) in arrays {
            let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
            out.insert(k, t.f_to_kind(Kind::Double)?);
        }
        return Ok(out);
    }
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors state-dict export: {e:?}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("unreadable header: {e:?}")))?;
    match header.metadata().as_ref().and_then(|m| m.get("format")) {
        Some(f) if f == EXPORT_FORMAT => {}
        _ => {
            return Err(bad(format!(
                "not written by tools/import_hydragnn.py (no format '{EXPORT_FORMAT}')"
            )))
        }
    }
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            safetensors::Dtype::F64 => Kind::Double,
            safetensors::Dtype::F32 => Kind::Float,
            safetensors::Dtype::F16 => Kind::Half,
            safetensors::Dtype::BF16 => Kind::BFloat16,
            d => {
                return Err(bad(format!(
                    "tensor '{name}' has dtype {d:?}, expected a float"
                )))
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?.f_to_kind(Kind::Double)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// True when `head` (the first bytes of a file, 512 are plenty) starts an `.npz` archive: a zip
/// whose first entry is an `.npy` array (a torch checkpoint is a zip too, of `data.pkl` ...).
pub fn is_npz(head: &[u8]) -> bool {
    if !head.starts_with(b"PK\x03\x04") || head.len() < 30 {
        return false;
    }
    let n = u16::from_le_bytes([head[26], head[27]]) as usize;
    head.get(30..30 + n)
        .is_some_and(|name| name.ends_with(b".npy"))
}

/// Reads an `.npz` archive written by `np.savez` (stored, not compressed) of float64, float32,
/// int64 or int32 arrays in C order, as CPU tensors of those kinds.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_npz(&bytes).map_err(|m| Error::InvalidInput(format!("'{}': {m}", path.display())))
}

fn parse_npz(b: &[u8]) -> std::result::Result<BTreeMap<String, Tensor>, String> {
    let u16_at = |p: usize| {
        b.get(p..p + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
            .ok_or("truncated archive")
    };
    let mut out = BTreeMap::new();
    let mut pos = 0;
    while b.get(pos..pos + 4) == Some(b"PK\x03\x04") {
        if u16_at(pos + 8)? != 0 {
            return Err(
                "compressed .npz (np.savez_compressed) is not supported: write it with np.savez"
                    .into(),
            );
        }
        let (name_len, extra_len) = (u16_at(pos + 26)?, u16_at(pos + 28)?);
        let name = String::from_utf8_lossy(
            b.get(pos + 30..pos + 30 + name_len)
                .ok_or("truncated archive")?,
        )
        .to_string();
        let start = pos + 30 + name_len + extra_len;
        let (t, len) = parse_npy(b.get(start..).ok_or("truncated archive")?)
            .map_err(|e| format!("array '{name}': {e}"))?;
        out.insert(name.strip_suffix(".npy").unwrap_or(&name).to_string(), t);
        // The next entry (after an optional data descriptor), or the central directory.
        pos = start + len;
        match (pos..b.len().saturating_sub(4))
            .find(|&p| &b[p..p + 4] == b"PK\x03\x04" || &b[p..p + 4] == b"PK\x01\x02")
        {
            Some(p) => pos = p,
            None => break,
        }
    }
    if out.is_empty() {
        return Err("not an .npz archive".into());
    }
    Ok(out)
}

/// One `.npy` array at the start of `b`: the tensor and the number of bytes it took.
fn parse_npy(b: &[u8]) -> std::result::Result<(Tensor, usize), String> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err("not an .npy array".into());
    }
    let (hlen, hstart) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(b.get(8..12).ok_or("truncated")?.try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(b.get(hstart..hstart + hlen).ok_or("truncated header")?)
        .map_err(|_| "bad header")?;
    let field = |key: &str| {
        header
            .split(&format!("'{key}':"))
            .nth(1)
            .map(str::trim)
            .ok_or(format!("no '{key}' in header"))
    };
    let descr = field("descr")?
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("");
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_txt = field("shape")?;
    let inner = shape_txt
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let shape: Vec<i64> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| format!("bad shape '{shape_txt}'"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let (kind, size) = match descr {
        "<f8" => (Kind::Double, 8),
        "<f4" => (Kind::Float, 4),
        "<i8" => (Kind::Int64, 8),
        "<i4" => (Kind::Int, 4),
        d => {
            return Err(format!(
                "dtype '{d}' is not supported (little-endian f8, f4, i8, i4 are)"
            ))
        }
    };
    let n: i64 = shape.iter().product();
    let start = hstart + hlen;
    let data = b
        .get(start..start + n as usize * size)
        .ok_or("truncated data")?;
    let t = Tensor::f_from_data_size(data, &shape, kind).map_err(|e| e.to_string())?;
    Ok((t, start + data.len()))
}

fn activation(name: &str) -> Result<Activation> {
    match name.to_ascii_lowercase().as_str() {
        "relu" => Ok(Activation::Relu),
        "silu" | "swish" => Ok(Activation::Silu),
        "tanh" => Ok(Activation::Tanh),
        other => Err(cfg(format!("activation_function '{other}' is not supported by the engine yet (relu, silu, tanh are)"))),
    }
}

/// One engine variable and where its values come from.
enum Source {
    /// The HydraGNN tensor as it is.
    Copy(String),
    /// Rows in three chunks of `f`, reordered (HydraGNN chunk k goes to engine chunk `order[k]`).
    PermuteRows(String, i64, [i64; 3]),
    /// Columns in two halves of `f`, swapped.
    SwapCols(String, i64),
    /// The first `n` rows (drops HydraGNN's variance outputs).
    FirstRows(String, i64),
}

fn getv<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn int(v: &Value, key: &str) -> Result<i64> {
    getv(v, key)
        .and_then(Value::as_i64)
        .ok_or_else(|| cfg(format!("Architecture.{key} is missing or not an integer")))
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| cfg(format!("{what} must be a list of integers")))
}

struct HeadSpec {
    name: String,
    kind: HeadKind,
    dim: i64,
    index: usize,
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

    let mpnn = getv(arch, "mpnn_type")
        .and_then(Value::as_str)
        .ok_or_else(|| cfg("Architecture.mpnn_type is missing"))?;
    let mpnn_type = match mpnn {
        "PAINN" => MpnnType::PaiNN,
        "EGNN" => MpnnType::Egnn,
        other => return Err(cfg(format!("mpnn_type '{other}' cannot be imported yet (PAINN and EGNN can; SchNet and PNA are next)"))),
    };
    if let Some(g) = getv(arch, "global_attn_engine").and_then(Value::as_str) {
        if !g.is_empty() {
            return Err(cfg(format!(
                "global attention ('{g}') is not supported by the engine"
            )));
        }
    }
    if getv(arch, "edge_dim").and_then(Value::as_i64).unwrap_or(0) > 0 {
        return Err(cfg(
            "edge features (edge_dim) are not supported by the engine",
        ));
    }
    if voi
        .and_then(|v| getv(v, "denormalize_output"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(cfg("denormalize_output is true: outputs were min-max scaled; the engine cannot undo that yet"));
    }
    let hidden_dim = int(arch, "hidden_dim")?;
    let num_conv_layers = int(arch, "num_conv_layers")? as usize;
    let radius = getv(arch, "radius")
        .and_then(Value::as_f64)
        .ok_or_else(|| cfg("Architecture.radius is missing"))?;
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

    // Species and their raw node features.
    let (species, features, species_map) = match &opts.species {
        None => {
            if input_dim != 1 {
                return Err(cfg(format!(
                    "input_dim is {input_dim}: give every element's {input_dim} feature values with --species (e.g. Cu=29:0.5)"
                )));
            }
            warnings.push(
                "no --species given: every element H..Og maps to x = [Z] (HydraGNN's atomic-number convention); \
                 if the model was trained on other node features (e.g. the Lennard-Jones example's x = 1.0), give --species Ar=1.0"
                    .into(),
            );
            let z: Vec<i32> = (1..=118).collect();
            let f = z.iter().map(|&z| vec![z as f64]).collect();
            (z, f, vec!["every element: x = [Z]".to_string()])
        }
        Some(list) => {
            let mut z = Vec::new();
            let mut f = Vec::new();
            let mut map = Vec::new();
            for s in list {
                let v = s.features.clone().unwrap_or_else(|| vec![s.z as f64]);
                if v.len() as i64 != input_dim {
                    return Err(cfg(format!(
                        "species {} has {} feature values but the model's input_dim is {input_dim}",
                        crate::elements::symbol(s.z),
                        v.len()
                    )));
                }
                map.push(format!("{} -> x = {:?}", crate::elements::symbol(s.z), v));
                z.push(s.z);
                f.push(v);
            }
            (z, f, map)
        }
    };

    // Heads.
    let out_type: Vec<String> = getv(arch, "output_type")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .ok_or_else(|| cfg("Architecture.output_type is missing"))?;
    let out_dim = ints(
        getv(arch, "output_dim").ok_or_else(|| cfg("Architecture.output_dim is missing"))?,
        "output_dim",
    )?;
    if out_dim.len() != out_type.len() {
        return Err(cfg("output_dim and output_type have different lengths"));
    }
    let names: Vec<String> = voi
        .and_then(|v| getv(v, "output_names"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if opts.energy_head >= out_type.len() {
        return Err(cfg(format!(
            "energy head {} does not exist: the model has {} output heads",
            opts.energy_head,
            out_type.len()
        )));
    }
    if out_type[opts.energy_head] != "node" || out_dim[opts.energy_head] != 1 {
        return Err(cfg(format!(
            "output head {} ('{}', dim {}) is not a scalar node head: the engine's energy is the sum of per-atom values \
             (HydraGNN's enable_interatomic_potential models)",
            opts.energy_head, out_type[opts.energy_head], out_dim[opts.energy_head]
        )));
    }
    let mut heads = Vec::new();
    for (i, (t, &d)) in out_type.iter().zip(&out_dim).enumerate() {
        let kind = match t.as_str() {
            "node" => HeadKind::Node,
            "graph" => HeadKind::Graph,
            o => return Err(cfg(format!("output_type '{o}' is unknown"))),
        };
        let name = if i == opts.energy_head {
            "energy".to_string()
        } else {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("head{i}"))
                .replace('.', "_")
        };
        if heads.iter().any(|h: &HeadSpec| h.name == name) {
            return Err(cfg(format!("two output heads are named '{name}'")));
        }
        heads.push(HeadSpec {
            name,
            kind,
            dim: d,
            index: i,
        });
    }
    let heads_cfg =
        getv(arch, "output_heads").ok_or_else(|| cfg("Architecture.output_heads is missing"))?;
    let branch_list = |kind: &str| -> Result<Vec<Value>> {
        match getv(heads_cfg, kind) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(cfg(format!(
                "output_heads.{kind} is not a list of branches (configs older than HydraGNN's multi-branch heads are not supported)"
            ))),
        }
    };
    let graph_branches = branch_list("graph")?;
    let node_branches = branch_list("node")?;
    let mut branch_names: Vec<String> = Vec::new();
    for b in graph_branches.iter().chain(&node_branches) {
        let n = b
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| cfg("an output_heads branch has no 'type' (its name)"))?;
        if !branch_names.iter().any(|x| x == n) {
            branch_names.push(n.to_string());
        }
    }
    let graph_pooling = match getv(arch, "graph_pooling")
        .and_then(Value::as_str)
        .unwrap_or("mean")
    {
        "mean" => Pooling::Mean,
        "add" | "sum" => Pooling::Sum,
        "max" => Pooling::Max,
        o => return Err(cfg(format!("graph_pooling '{o}' is unknown"))),
    };

    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    let mut branches = Vec::new();
    for bname in &branch_names {
        let bkey = bname.replace('.', "_");
        let find = |list: &[Value]| {
            list.iter()
                .find(|b| b.get("type").and_then(Value::as_str) == Some(bname))
                .cloned()
        };
        let gb = find(&graph_branches);
        let nb = find(&node_branches);
        let mut shared_layers = Vec::new();
        if let Some(g) = &gb {
            let a = g
                .get("architecture")
                .ok_or_else(|| cfg(format!("graph branch '{bname}' has no architecture")))?;
            let n = int(a, "num_sharedlayers")?;
            let w = int(a, "dim_sharedlayers")?;
            shared_layers = vec![w; n as usize];
            for k in 0..n {
                for p in ["weight", "bias"] {
                    sources.insert(
                        format!("branches.{bkey}.shared.{k}.{p}"),
                        Source::Copy(format!("model.graph_shared.{bname}.{}.{p}", 2 * k)),
                    );
                }
            }
        }
        let mut output_heads = Vec::new();
        for h in &heads {
            let (spec, prefix) = match h.kind {
                HeadKind::Node => {
                    let b = nb.as_ref().ok_or_else(|| {
                        cfg(format!(
                            "node head {} has no node branch '{bname}'",
                            h.index
                        ))
                    })?;
                    let a = b
                        .get("architecture")
                        .ok_or_else(|| cfg(format!("node branch '{bname}' has no architecture")))?;
                    match a.get("type").and_then(Value::as_str).unwrap_or("mlp") {
                        "mlp" => {}
                        o => {
                            return Err(cfg(format!(
                                "node head type '{o}' is not supported (only 'mlp' is)"
                            )))
                        }
                    }
                    (
                        ints(
                            a.get("dim_headlayers").unwrap_or(&Value::Null),
                            "dim_headlayers",
                        )?,
                        format!("model.heads_NN.{}.{bname}.mlp.0", h.index),
                    )
                }
                HeadKind::Graph => {
                    let b = gb.as_ref().ok_or_else(|| {
                        cfg(format!(
                            "graph head {} has no graph branch '{bname}'",
                            h.index
                        ))
                    })?;
                    let a = b.get("architecture").ok_or_else(|| {
                        cfg(format!("graph branch '{bname}' has no architecture"))
                    })?;
                    let n = int(a, "num_headlayers")? as usize;
                    let dims = ints(
                        a.get("dim_headlayers").unwrap_or(&Value::Null),
                        "dim_headlayers",
                    )?;
                    (
                        dims.into_iter().take(n).collect(),
                        format!("model.heads_NN.{}.{bname}", h.index),
                    )
                }
            };
            let nlin = spec.len() + 1;
            for k in 0..nlin {
                for p in ["weight", "bias"] {
                    let src = format!("{prefix}.{}.{p}", 2 * k);
                    let s = if k + 1 == nlin && var_output {
                        Source::FirstRows(src, h.dim)
                    } else {
                        Source::Copy(src)
                    };
                    sources.insert(format!("branches.{bkey}.{}.{k}.{p}", h.name), s);
                }
            }
            let graph = h.kind == HeadKind::Graph;
            output_heads.push(HeadConfig {
                name: h.name.clone(),
                kind: if h.name == "energy" {
                    HeadKind::Graph
                } else {
                    h.kind
                },
                dim: h.dim,
                dim_headlayers: spec,
                pooling: if graph { graph_pooling } else { Pooling::Sum },
                pool_first: graph,
            });
        }
        branches.push(BranchConfig {
            name: bkey,
            output_heads,
            reference_energies: Vec::new(),
            shared_layers,
        });
    }
    if branches.is_empty() {
        return Err(cfg("output_heads defines no branch"));
    }

    // Backbone.
    let conv = |l: usize, rest: &str| format!("model.graph_convs.{l}.{rest}");
    let (num_radial, radial_type, envelope, conv_activation, painn, egnn) = match mpnn_type {
        MpnnType::PaiNN => {
            let num_radial = int(arch, "num_radial")?;
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
                }
                f = hidden_dim;
            }
            let p = PainnOptions {
                edge_vector: PainnEdgeVector::UnitOverDistance,
                vector_norm: VectorNorm::Exact,
                output_mlp: true,
                last_layer_scalar_only: true,
            };
            (
                num_radial,
                RadialType::Sinc,
                Envelope::Cosine,
                Activation::Silu,
                p,
                EgnnOptions::default(),
            )
        }
        MpnnType::Egnn => {
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
            (
                1,
                RadialType::Gaussian,
                Envelope::Hard,
                Activation::Relu,
                PainnOptions::default(),
                EgnnOptions {
                    coords_update: equivariance,
                    edge_rbf: false,
                },
            )
        }
        MpnnType::SchNet => unreachable!("rejected above"),
    };

    let config = ModelConfig {
        mpnn_type,
        hidden_dim,
        num_conv_layers,
        radius,
        num_radial,
        radial_type,
        envelope,
        activation_function: act,
        species,
        input: InputConfig::RawFeatures { features },
        branches,
        conv_activation: Some(conv_activation),
        post_conv_activation: Some(act),
        painn,
        egnn,
        // HydraGNN sums messages unscaled.
        avg_num_neighbors: None,
    };
    config.validate()?;
    let model = Model::new(config, opts.kind, Device::Cpu, 0)?;
    load_weights(&model, state, &sources, opts.kind)?;
    Ok(Imported {
        model,
        warnings,
        max_neighbours,
        species_map,
    })
}

fn load_weights(
    model: &Model,
    state: &BTreeMap<String, Tensor>,
    sources: &BTreeMap<String, Source>,
    kind: Kind,
) -> Result<()> {
    let vars = model.var_store().variables();
    let mut used = BTreeSet::new();
    for (name, var) in &vars {
        let src = sources.get(name).ok_or_else(|| {
            Error::Internal(format!("no HydraGNN source for engine weight '{name}'"))
        })?;
        let key = match src {
            Source::Copy(k)
            | Source::PermuteRows(k, ..)
            | Source::SwapCols(k, _)
            | Source::FirstRows(k, _) => k,
        };
        let t = state.get(key).ok_or_else(|| {
            cfg(format!("the checkpoint has no tensor '{key}' (needed for '{name}'); is the config the one it was trained with?"))
        })?;
        used.insert(key.clone());
        let t = match src {
            Source::Copy(_) => t.shallow_clone(),
            Source::PermuteRows(_, f, order) => {
                if t.size()[0] != 3 * f {
                    return Err(cfg(format!(
                        "'{key}' has {} rows, expected 3 x {f}",
                        t.size()[0]
                    )));
                }
                let chunks = t.split(*f, 0);
                let mut out: Vec<&Tensor> = vec![&chunks[0]; 3];
                for (k, &o) in order.iter().enumerate() {
                    out[o as usize] = &chunks[k];
                }
                Tensor::cat(&out, 0)
            }
            Source::SwapCols(_, f) => {
                if t.dim() != 2 || t.size()[1] != 2 * f {
                    return Err(cfg(format!(
                        "'{key}' has shape {:?}, expected (_, 2 x {f})",
                        t.size()
                    )));
                }
                Tensor::cat(&[t.narrow(1, *f, *f), t.narrow(1, 0, *f)], 1)
            }
            Source::FirstRows(_, n) => t.narrow(0, 0, *n),
        };
        if t.size() != var.size() {
            return Err(cfg(format!(
                "'{key}' has shape {:?}, the engine's '{name}' needs {:?}",
                t.size(),
                var.size()
            )));
        }
        let mut var = var.shallow_clone();
        tch::no_grad(|| var.f_copy_(&t.to_kind(kind)))?;
    }
    let unused: Vec<&String> = state.keys().filter(|k| !used.contains(*k)).collect();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().take(8).map(|s| s.as_str()).collect();
        return Err(cfg(format!(
            "the checkpoint has {} tensors the engine's model has no place for (a feature the importer does not support?): {}",
            unused.len(),
            list.join(", ")
        )));
    }
    Ok(())
}
