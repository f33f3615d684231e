//! HydraGNN's output heads and branches (`output_type`, `output_dim`, `output_heads.graph/node`,
//! `graph_pooling`) as engine branches and heads, and where their weights come from.

use std::collections::BTreeMap;

use serde_json::Value;

use super::weights::Source;
use super::{cfg, getv, int, ints};
use crate::error::Result;
use crate::model::config::{BranchConfig, HeadConfig, HeadKind, Pooling};

struct HeadSpec {
    name: String,
    kind: HeadKind,
    dim: i64,
    index: usize,
}

/// The engine branches of HydraGNN's `Architecture` (`voi`: `Variables_of_interest`): head
/// `energy_head` becomes the graph head "energy": a scalar node head summed over atoms, or a
/// scalar graph head (pool first, shared layers, head MLP: a graph-level energy); with
/// `var_output` (GaussianNLLLoss) the variance outputs are dropped. Adds each head weight's
/// source to `sources`.
pub(super) fn branches(
    arch: &Value,
    voi: Option<&Value>,
    energy_head: usize,
    var_output: bool,
    sources: &mut BTreeMap<String, Source>,
) -> Result<Vec<BranchConfig>> {
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
    if energy_head >= out_type.len() {
        return Err(cfg(format!(
            "energy head {} does not exist: the model has {} output heads",
            energy_head,
            out_type.len()
        )));
    }
    if !matches!(out_type[energy_head].as_str(), "node" | "graph") || out_dim[energy_head] != 1 {
        return Err(cfg(format!(
            "output head {} ('{}', dim {}) is not a scalar node or graph head, so it cannot be the energy",
            energy_head, out_type[energy_head], out_dim[energy_head]
        )));
    }
    let mut heads = Vec::new();
    for (i, (t, &d)) in out_type.iter().zip(&out_dim).enumerate() {
        let kind = match t.as_str() {
            "node" => HeadKind::Node,
            "graph" => HeadKind::Graph,
            o => return Err(cfg(format!("output_type '{o}' is unknown"))),
        };
        let name = if i == energy_head {
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
    if out_type[energy_head] == "graph" && graph_pooling != Pooling::Sum {
        return Err(cfg(format!(
            "the energy is graph head {energy_head} with graph_pooling {:?}: only 'add' pooling is supported for a \
             graph-level energy (the engine's energy heads pool by sum, which keeps the energy extensive)",
            getv(arch, "graph_pooling").and_then(Value::as_str).unwrap_or("mean")
        )));
    }

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
    Ok(branches)
}
