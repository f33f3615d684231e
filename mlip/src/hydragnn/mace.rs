//! HydraGNN's MACE (`MACEStack`) onto the engine's [`crate::model::mace`]: e3nn's flat
//! `o3.Linear` weights become per-l matrices divided by sqrt(fan-in), the radial MLP's weights
//! are divided by sqrt(fan-in), the symmetric contractions' coupling tensors U and the Bessel
//! weights come from the checkpoint's buffers, and the readouts are split into per-element
//! reference energies (readout 0), per-branch linear readouts of the middle layers (carried in
//! the state) and the branch's energy head (the last readout); the graph readouts' biases are
//! added to the energy head's last bias. Charge/spin conditioning (`concat_node`, `film`) comes
//! through [`super::conditioning`]; `fuse_pool`, which HydraGNN's MACE never applies, is
//! imported without conditioning (`mace_conditioning`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::weights::{self, Source};
use super::{activation, cfg, getv, heads, int, species, typed, ImportOptions, Imported};
use crate::error::Result;
use crate::model::config::{
    BranchConfig, GraphAttrConfig, HeadKind, InputConfig, MaceOptions, ModelConfig, MpnnType,
};
use crate::model::mace::NUM_ELEMENTS;
use crate::model::Model;

/// e3nn's `normalize2mom(silu)` constant, 1 / sqrt(mean(silu(z)^2)) over
/// `torch.randn(1_000_000)` after `torch.manual_seed(0)`, drawn in float64 (the default dtype of a
/// HydraGNN model built with `precision: fp64`) and in float32 (otherwise). Measured with torch
/// 2.13: `torch.nn.functional.silu(torch.randn(10**6, dtype=dt)).pow(2).mean().pow(-0.5)`.
const SILU_SCALE_F64: f64 = 1.679_176_792_398_941_8;
const SILU_SCALE_F32: f64 = 1.680_191_516_876_220_7;

struct Reader<'a> {
    state: &'a BTreeMap<String, Tensor>,
    used: BTreeSet<String>,
}

impl Reader<'_> {
    fn get(&mut self, key: &str) -> Result<Tensor> {
        let t = self.state.get(key).ok_or_else(|| {
            cfg(format!(
                "the MACE checkpoint has no tensor '{key}'; is the config the one it was trained with?"
            ))
        })?;
        self.used.insert(key.to_string());
        Ok(t.to_kind(Kind::Double))
    }
    /// Marks a tensor that only restates the config as read.
    fn skip(&mut self, key: &str) -> Result<()> {
        self.get(key).map(|_| ())
    }
    fn has(&self, key: &str) -> bool {
        self.state.contains_key(key)
    }
    /// An e3nn `o3.Linear` with the irreps (multiplicity per l) `ins` → `outs` and no bias:
    /// one (m_in, m_out) matrix per l present in both, divided by sqrt(m_in).
    fn linear(
        &mut self,
        prefix: &str,
        ins: &[(i64, i64)],
        outs: &[(i64, i64)],
    ) -> Result<Vec<(i64, Tensor)>> {
        let w = self.get(&format!("{prefix}.weight"))?;
        let bias = format!("{prefix}.bias");
        if self.has(&bias) && self.get(&bias)?.numel() != 0 {
            return Err(cfg(format!(
                "'{bias}' is not empty: e3nn linears with biases are not supported"
            )));
        }
        let mask = format!("{prefix}.output_mask");
        if self.has(&mask) {
            self.skip(&mask)?;
        }
        let mut off = 0;
        let mut blocks = Vec::new();
        for &(mi, li) in ins {
            for &(mo, lo) in outs {
                if li == lo {
                    let n = mi * mo;
                    if off + n > w.numel() as i64 {
                        break;
                    }
                    blocks.push((li, w.narrow(0, off, n).view([mi, mo]) / (mi as f64).sqrt()));
                    off += n;
                }
            }
        }
        if off != w.numel() as i64 {
            return Err(cfg(format!(
                "'{prefix}.weight' has {} numbers, the irreps {ins:?} -> {outs:?} (multiplicity, l) need {off}",
                w.numel()
            )));
        }
        Ok(blocks)
    }
}

/// Builds the engine model of a HydraGNN MACE config and state dict ([`super::import`]).
pub(super) fn import(
    nn: &Value,
    arch: &Value,
    voi: Option<&Value>,
    state: &BTreeMap<String, Tensor>,
    opts: &ImportOptions,
) -> Result<Imported> {
    let mut warnings = Vec::new();
    for (key, want) in [("max_ell", 1), ("node_max_ell", 1)] {
        let v = int(arch, key)?;
        if v != want {
            return Err(cfg(format!(
                "MACE with {key} = {v} cannot be imported: the engine's MACE supports max_ell = node_max_ell = 1 \
                 (irreps 0e + 1o; higher l needs Clebsch-Gordan paths it does not implement)"
            )));
        }
    }
    let corr_ok = match getv(arch, "correlation") {
        None => true,
        Some(Value::Number(n)) => n.as_i64() == Some(2),
        Some(Value::Array(a)) => a.iter().all(|x| x.as_i64() == Some(2)),
        Some(_) => false,
    };
    if !corr_ok {
        return Err(cfg(format!(
            "MACE with correlation {} cannot be imported: the engine's symmetric contraction has correlation 2 \
             (HydraGNN's default)",
            getv(arch, "correlation").cloned().unwrap_or(Value::Null)
        )));
    }
    for key in ["radial_type", "distance_transform"] {
        if let Some(v) = getv(arch, key).and_then(Value::as_str) {
            if !(key == "radial_type" && v == "bessel") {
                return Err(cfg(format!(
                    "MACE with {key} '{v}' cannot be imported: the engine's MACE uses the Bessel basis without a \
                     distance transform (HydraGNN's defaults)"
                )));
            }
        }
    }
    if let Some(g) = getv(arch, "global_attn_engine").and_then(Value::as_str) {
        if !g.is_empty() {
            return Err(cfg(format!(
                "global attention ('{g}') is not supported by the engine"
            )));
        }
    }
    let graph_attr = mace_conditioning(arch, state, &mut warnings)?;
    let edge_dim = getv(arch, "edge_dim").and_then(Value::as_i64).unwrap_or(0);
    if edge_dim > 1 {
        return Err(cfg(format!(
            "MACE with edge_dim = {edge_dim} cannot be imported: the engine supports edge_dim = 1 (edge_attr = |r_ij|)"
        )));
    }
    if edge_dim == 1 {
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
    let h = int(arch, "hidden_dim")?;
    let nl = int(arch, "num_conv_layers")? as usize;
    if nl < 2 {
        return Err(cfg(format!(
            "MACE with num_conv_layers = {nl} cannot be imported: with one layer HydraGNN's readout of the node \
             attributes is nonlinear, which the engine does not implement (2 or more layers are supported)"
        )));
    }
    let radius = typed(arch, "radius", "a number (Å)", Value::as_f64)?;
    let input_dim = int(arch, "input_dim")?;
    if input_dim != 1 {
        return Err(cfg(format!(
            "MACE needs input_dim = 1 (the atomic number, one-hot encoded); got {input_dim}"
        )));
    }
    let avg = typed(arch, "avg_num_neighbors", "a number", Value::as_f64)?;
    let act = activation(
        getv(arch, "activation_function")
            .and_then(Value::as_str)
            .unwrap_or("relu"),
    )?;
    let out_type = getv(arch, "output_type")
        .and_then(Value::as_array)
        .map(|a| a.len())
        .unwrap_or(0);
    if out_type != 1 {
        return Err(cfg(format!(
            "MACE with {out_type} output heads cannot be imported: the engine's MACE has the energy head only \
             (each head sums readouts of every layer)"
        )));
    }
    let max_neighbours = getv(arch, "max_neighbours").and_then(Value::as_i64);
    if let Some(k) = max_neighbours {
        warnings.push(format!(
            "HydraGNN built its training graphs with max_neighbours = {k}: atoms with more than {k} neighbours within {radius} Å \
             had some dropped. The engine uses the plain radius graph (every pair within the cutoff, which keeps energies \
             continuous in MD), so on dense structures its numbers differ from HydraGNN's truncated graphs."
        ));
    }
    let fp64 = nn
        .get("Training")
        .and_then(|t| getv(t, "precision"))
        .and_then(Value::as_str)
        .is_some_and(|p| matches!(p, "fp64" | "float64" | "double"));
    let silu_scale = if fp64 { SILU_SCALE_F64 } else { SILU_SCALE_F32 };
    let (species, features, species_map) =
        species::node_features(opts.species.as_deref(), input_dim, &mut warnings)?;

    let mut dummy = BTreeMap::new();
    let mut branches: Vec<BranchConfig> =
        heads::branches(arch, voi, opts.energy_head, false, &mut dummy)?;
    let graph = branches[0].output_heads[0].kind == HeadKind::Graph
        && branches[0].output_heads[0].pool_first;
    // HydraGNN's branch names (`branch-k`; the engine's replace '.' by '_')
    let bnames: Vec<String> = branches.iter().map(|b| b.name.clone()).collect();

    let mut r = Reader {
        state,
        used: BTreeSet::new(),
    };
    let mut t: BTreeMap<String, Tensor> = BTreeMap::new();
    // buffers that only restate the config
    // (integer buffers: tools/import_hydragnn.py keeps the floating-point tensors only)
    if r.has("model.atomic_numbers") {
        let an = r.get("model.atomic_numbers")?;
        let want = Tensor::arange_start(1, NUM_ELEMENTS + 1, (Kind::Double, Device::Cpu));
        if an.size() != want.size() || !an.equal(&want) {
            return Err(cfg(
                "model.atomic_numbers is not 1..=118: MACE's one-hot must cover the periodic table",
            ));
        }
    }
    let rmax = r.get("model.r_max")?.double_value(&[]);
    if (rmax - radius).abs() > 1e-9 * radius {
        return Err(cfg(format!(
            "model.r_max = {rmax} differs from radius {radius}"
        )));
    }
    if r.has("model.num_interactions") {
        r.skip("model.num_interactions")?;
    }
    let bw = r.get("model.radial_embedding.bessel_fn.bessel_weights")?;
    let num_radial = bw.numel() as i64;
    t.insert("mace.bessel_w".into(), bw);
    t.insert(
        "mace.bessel_pref".into(),
        r.get("model.radial_embedding.bessel_fn.prefactor")?
            .reshape([1]),
    );
    r.skip("model.radial_embedding.bessel_fn.r_max")?;
    let cutoff_p = r
        .get("model.radial_embedding.cutoff_fn.p")?
        .double_value(&[]);
    r.skip("model.radial_embedding.cutoff_fn.r_max")?;
    let emb = r.linear(
        "model.node_embedding.linear",
        &[(NUM_ELEMENTS, 0)],
        &[(h, 0)],
    )?;
    t.insert("mace.emb".into(), emb[0].1.shallow_clone());

    if let Some(g) = &graph_attr {
        let mut src = BTreeMap::new();
        super::conditioning_sources(g, &mut src);
        for (mine, from) in src {
            if let Source::Copy(key) = from {
                t.insert(mine, r.get(&key)?);
            }
        }
    }

    let mut bias_fold = vec![0.0; branches.len()];
    let mut readouts: Vec<Vec<Tensor>> = (0..nl).map(|_| Vec::new()).collect();
    for (l, readout) in readouts.iter_mut().enumerate() {
        let vin = l > 0;
        let vout = l + 1 < nl;
        let inp: Vec<(i64, i64)> = if vin {
            vec![(h, 0), (h, 1)]
        } else {
            vec![(h, 0)]
        };
        let hid: Vec<(i64, i64)> = if vout {
            vec![(h, 0), (h, 1)]
        } else {
            vec![(h, 0)]
        };
        let m = if vin { 2 * h } else { h };
        let mid = vec![(m, 0), (m, 1)];
        let target = vec![(h, 0), (h, 1)];
        let pre = format!("model.graph_convs.{l}.module_1");
        let q = format!("mace.layers.{l}");
        let mut put = |name: &str, blocks: Vec<(i64, Tensor)>| {
            for (li, w) in blocks {
                t.insert(format!("{q}.{name}.l{li}"), w);
            }
        };
        put("skip", r.linear(&format!("{pre}.skip_linear"), &inp, &hid)?);
        put("up", r.linear(&format!("{pre}.linear_up"), &inp, &inp)?);
        put(
            "down",
            r.linear(&format!("{pre}.linear_down"), &inp, &[(h, 0)])?,
        );
        put("lin", r.linear(&format!("{pre}.linear"), &mid, &target)?);
        for k in 0..4 {
            let w = r.get(&format!("{pre}.conv_tp_weights.layer{k}.weight"))?;
            let fan = w.size()[0] as f64;
            t.insert(format!("{q}.fc.{k}"), w / fan.sqrt());
        }
        for key in ["conv_tp.weight", "conv_tp.output_mask"] {
            let k = format!("{pre}.{key}");
            if r.has(&k) {
                if key == "conv_tp.weight" && r.get(&k)?.numel() != 0 {
                    return Err(cfg(format!(
                        "'{k}' is not empty: MACE's tensor product takes per-edge weights"
                    )));
                }
                r.skip(&k)?;
            }
        }
        let p2 = format!("model.graph_convs.{l}.module_2");
        for (c, _) in hid.iter().enumerate() {
            let cp = format!("{p2}.symmetric_contractions.contractions.{c}");
            if r.has(&format!("{cp}.U_matrix_3")) || r.has(&format!("{cp}.weights.1")) {
                return Err(cfg(
                    "MACE's symmetric contraction has correlation > 2: not supported",
                ));
            }
            t.insert(format!("{q}.sc{c}.u1"), r.get(&format!("{cp}.U_matrix_1"))?);
            t.insert(format!("{q}.sc{c}.u2"), r.get(&format!("{cp}.U_matrix_2"))?);
            t.insert(format!("{q}.sc{c}.w1"), r.get(&format!("{cp}.weights.0"))?);
            t.insert(
                format!("{q}.sc{c}.w2"),
                r.get(&format!("{cp}.weights_max"))?,
            );
        }
        let mut put = |name: &str, blocks: Vec<(i64, Tensor)>| {
            for (li, w) in blocks {
                t.insert(format!("{q}.{name}.l{li}"), w);
            }
        };
        put("prod", r.linear(&format!("{p2}.linear"), &hid, &hid)?);
        put(
            "out",
            r.linear(&format!("model.graph_convs.{l}.module_3"), &hid, &hid)?,
        );
        // the readout of this layer's output (decoder l + 1), linear unless last
        if vout {
            let mut cols = Vec::new();
            for (bi, b) in bnames.iter().enumerate() {
                let dp = format!("model.multihead_decoders.{}.heads_NN.0.{b}", l + 1);
                let col = if graph {
                    let w = r.get(&format!("{dp}.0.weight"))?; // (1, H)
                    bias_fold[bi] += r.get(&format!("{dp}.0.bias"))?.double_value(&[0]);
                    w.view([h, 1])
                } else {
                    let w = r.linear(&format!("{dp}.mlp.0.0"), &hid, &[(1, 0)])?;
                    w[0].1.shallow_clone()
                };
                cols.push(col);
            }
            *readout = cols;
        }
    }
    for (l, cols) in readouts.iter().enumerate() {
        if !cols.is_empty() {
            t.insert(format!("mace.layers.{l}.readout"), Tensor::cat(cols, 1));
        }
    }
    // readout 0: per-element reference energies; the last readout: the energy head
    for (bi, b) in bnames.iter().enumerate() {
        let d0 = format!("model.multihead_decoders.0.heads_NN.0.{b}");
        let w0 = if graph {
            bias_fold[bi] += r.get(&format!("{d0}.0.bias"))?.double_value(&[0]);
            r.get(&format!("{d0}.0.weight"))?.view([-1])
        } else {
            r.linear(&format!("{d0}.mlp.0.0"), &[(NUM_ELEMENTS, 0)], &[(1, 0)])?[0]
                .1
                .view([-1])
        };
        let w0: Vec<f64> = Vec::<f64>::try_from(&w0).map_err(|e| cfg(e.to_string()))?;
        branches[bi].reference_energies = features
            .iter()
            .map(|f| {
                let z = (f[0].round() as i64).clamp(1, NUM_ELEMENTS);
                w0[(z - 1) as usize]
            })
            .collect();
        let key = branches[bi].name.clone();
        let dl = format!("model.multihead_decoders.{nl}");
        let hp = format!("{dl}.heads_NN.0.{b}");
        let nlin = branches[bi].output_heads[0].dim_headlayers.len() + 1;
        if graph {
            for k in 0..branches[bi].shared_layers.len() {
                for p in ["weight", "bias"] {
                    t.insert(
                        format!("branches.{key}.shared.{k}.{p}"),
                        r.get(&format!("{dl}.graph_shared.{b}.{}.{p}", 2 * k))?,
                    );
                }
            }
            for k in 0..nlin {
                let w = r.get(&format!("{hp}.{}.weight", 2 * k))?;
                let mut bias = r.get(&format!("{hp}.{}.bias", 2 * k))?;
                if k + 1 == nlin {
                    bias += bias_fold[bi];
                }
                t.insert(format!("branches.{key}.energy.{k}.weight"), w);
                t.insert(format!("branches.{key}.energy.{k}.bias"), bias);
            }
        } else {
            let d1 = branches[bi].output_heads[0].dim_headlayers[0];
            let w = r.linear(&format!("{hp}.mlp.0.0"), &[(h, 0)], &[(d1, 0)])?;
            t.insert(format!("branches.{key}.energy.0.weight"), w[0].1.tr());
            t.insert(
                format!("branches.{key}.energy.0.bias"),
                Tensor::zeros([d1], (Kind::Double, Device::Cpu)),
            );
            for k in 1..nlin {
                for p in ["weight", "bias"] {
                    t.insert(
                        format!("branches.{key}.energy.{k}.{p}"),
                        r.get(&format!("{hp}.mlp.0.{}.{p}", 2 * k))?,
                    );
                }
            }
        }
    }
    let unused: Vec<&String> = state.keys().filter(|k| !r.used.contains(*k)).collect();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().take(8).map(|s| s.as_str()).collect();
        return Err(cfg(format!(
            "the MACE checkpoint has {} tensors the engine's model has no place for (a feature the importer does not \
             support?): {}",
            unused.len(),
            list.join(", ")
        )));
    }

    let mut config = ModelConfig::small(MpnnType::Mace, species.clone(), radius);
    config.hidden_dim = h;
    config.num_conv_layers = nl;
    config.num_radial = num_radial;
    config.activation_function = act;
    config.input = InputConfig::RawFeatures { features };
    config.branches = branches;
    config.mace = MaceOptions {
        cutoff_p,
        edge_dim,
        silu_scale,
    };
    config.avg_num_neighbors = Some(avg);
    config.graph_attr = graph_attr;
    config.validate()?;
    let model = Model::new(config, opts.kind, Device::Cpu, 0)?;
    let sources: BTreeMap<String, Source> = t
        .keys()
        .map(|k| (k.clone(), Source::Copy(k.clone())))
        .collect();
    weights::load_weights(&model, &t, &sources, opts.kind)?;
    Ok(Imported {
        model,
        warnings,
        max_neighbours,
        species_map,
    })
}

/// HydraGNN's `use_graph_attr_conditioning` for MACE: `concat_node` and `film` as for the other
/// backbones ([`super::conditioning`]); `MACEStack.forward` conditions the node features only
/// and never calls `_apply_graph_pool_conditioning`, so `fuse_pool` has no module and no effect
/// there: the model is imported without conditioning (the same numbers), with a warning.
fn mace_conditioning(
    arch: &Value,
    state: &BTreeMap<String, Tensor>,
    warnings: &mut Vec<String>,
) -> Result<Option<GraphAttrConfig>> {
    let on = getv(arch, "use_graph_attr_conditioning")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mode = getv(arch, "graph_attr_conditioning_mode")
        .and_then(Value::as_str)
        .unwrap_or("concat_node")
        .to_ascii_lowercase();
    if on && mode == "fuse_pool" {
        if let Some(k) = state.keys().find(|k| k.contains("graph_pool_projector")) {
            return Err(cfg(format!(
                "MACE with graph_attr_conditioning_mode fuse_pool, but the checkpoint has '{k}': HydraGNN's MACE never \
                 applies a pool projector, so this checkpoint does not come from HydraGNN's MACEStack"
            )));
        }
        warnings.push(
            "graph_attr_conditioning_mode fuse_pool with MACE: HydraGNN's MACEStack.forward never applies the pooled \
             conditioning (its readouts pool on their own), so charge and spin have no effect on this model; it is \
             imported without conditioning and takes no charge/spin at run time"
                .into(),
        );
        return Ok(None);
    }
    super::conditioning(arch, state, warnings)
}
