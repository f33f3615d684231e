//! Every output head of the active branch: what they are (`hgnn_model_num_heads`,
//! `hgnn_model_head`, `hgnn_model_head_index`), their values for whole structures
//! (`hgnn_compute_head`), and in the layer-by-layer protocol: node heads on local atoms
//! (`hgnn_eval_node_head`) and graph heads pooled across ranks (`hgnn_eval_head_partials`, an
//! MPI reduction by the caller, then `hgnn_model_finish_heads`); a graph-level energy
//! (`hgnn_model_energy_is_pooled`) is reduced the same way before the backward pass
//! (`hgnn_eval_reduce`).

use std::ffi::{c_char, CStr};

use mlip::model::config::{HeadKind, Pooling};
use mlip::model::HeadPartials;
use mlip::Request;

use crate::compute::{hgnn_structure_t, structure_at};
use crate::layered::{eval_mut, eval_ref, hgnn_eval_t};
use crate::model::{hgnn_model_t, item, model_ref};
use crate::status::{arg, count, hgnn_status_t, null, out, slice, wrap, Fail};

/// `hgnn_head_t::kind` of a graph head: `dim` values per structure.
pub const HGNN_HEAD_GRAPH: i32 = 0;
/// `hgnn_head_t::kind` of a node head: `dim` values per atom.
pub const HGNN_HEAD_NODE: i32 = 1;
/// `hgnn_head_t::pooling`: sum over atoms (extensive properties; the energy).
pub const HGNN_POOL_SUM: i32 = 0;
/// `hgnn_head_t::pooling`: mean over atoms (intensive properties).
pub const HGNN_POOL_MEAN: i32 = 1;
/// `hgnn_head_t::pooling`: maximum over atoms, per component.
pub const HGNN_POOL_MAX: i32 = 2;

/// One output head of the active branch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hgnn_head_t {
    /// Its name ("energy", "gap", ...); lives as long as the model.
    pub name: *const c_char,
    /// `HGNN_HEAD_GRAPH` or `HGNN_HEAD_NODE`.
    pub kind: i32,
    /// Values per structure (graph heads) or per atom (node heads).
    pub dim: i32,
    /// Graph heads: `HGNN_POOL_SUM`, `HGNN_POOL_MEAN` or `HGNN_POOL_MAX`; node heads: 0.
    pub pooling: i32,
    /// Graph heads: 1 if the node features are pooled before the head's MLP, else 0.
    pub pool_first: i32,
}

/// The heads of the active branch, in order (the energy head included).
pub(crate) fn heads(h: &hgnn_model_t) -> &[mlip::model::config::HeadConfig] {
    let m = &h.model;
    &m.config().branches[m.active_branch()].output_heads
}

/// Index of the head named `name` (a C string).
unsafe fn head_by_name(h: &hgnn_model_t, name: *const c_char) -> Result<usize, Fail> {
    if name.is_null() {
        return Err(null("name"));
    }
    let name = CStr::from_ptr(name)
        .to_str()
        .map_err(|_| arg("head name is not valid UTF-8".into()))?;
    let hs = heads(h);
    hs.iter().position(|c| c.name == name).ok_or_else(|| {
        arg(format!(
            "branch '{}' has no head named '{name}'; its heads are: {}",
            h.model.branch_names()[h.model.active_branch()],
            hs.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Checks that the caller's buffer holds exactly `need` values.
unsafe fn buffer<'a>(p: *mut f64, n: i64, need: usize, what: &str) -> Result<&'a mut [f64], Fail> {
    if n < 0 || n as usize != need {
        return Err(arg(format!(
            "{what} holds {n} values but {need} are needed"
        )));
    }
    if need == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(null(what));
    }
    Ok(std::slice::from_raw_parts_mut(p, need))
}

/// The number of output heads of the active branch (the energy head included).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_num_heads(
    model: *const hgnn_model_t,
    num_heads: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(num_heads, "num_heads")? = heads(model_ref(model)?).len() as i32;
        Ok(())
    })
}

/// Describes head `index` (0..num_heads) of the active branch.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_head(
    model: *const hgnn_model_t,
    index: i32,
    head: *mut hgnn_head_t,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let slot = out(head, "head")?;
        let hs = heads(h);
        let k = item(index, hs.len(), "head")?;
        let c = &hs[k];
        *slot = hgnn_head_t {
            name: h.head_names[k].as_ptr(),
            kind: match c.kind {
                HeadKind::Graph => HGNN_HEAD_GRAPH,
                HeadKind::Node => HGNN_HEAD_NODE,
            },
            dim: c.dim as i32,
            pooling: match (c.kind, c.pooling) {
                (HeadKind::Node, _) | (_, Pooling::Sum) => HGNN_POOL_SUM,
                (_, Pooling::Mean) => HGNN_POOL_MEAN,
                (_, Pooling::Max) => HGNN_POOL_MAX,
            },
            pool_first: (c.kind == HeadKind::Graph && c.pool_first) as i32,
        };
        Ok(())
    })
}

/// The index of the active branch's head named `name`; an unknown name is an
/// `HGNN_ERROR_INVALID_ARGUMENT` whose message lists the heads.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_head_index(
    model: *const hgnn_model_t,
    name: *const c_char,
    index: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let slot = out(index, "index")?;
        *slot = head_by_name(h, name)? as i32;
        Ok(())
    })
}

/// The values of head `name` for `n_structures` structures evaluated as one batch, concatenated
/// in structure order: `dim` values per structure for a graph head, `n_atoms × dim` (row-major)
/// per structure for a node head. `n_values` must be exactly that total.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_compute_head(
    model: *const hgnn_model_t,
    n_structures: i64,
    structures: *const hgnn_structure_t,
    name: *const c_char,
    values: *mut f64,
    n_values: i64,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let k = head_by_name(h, name)?;
        let c = &heads(h)[k];
        let n = count(n_structures, "n_structures")?;
        let ss = slice(structures, n, "structures")?;
        let parsed = ss
            .iter()
            .enumerate()
            .map(|(i, s)| structure_at(s, (n != 1).then_some(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let dim = c.dim as usize;
        let need: usize = match c.kind {
            HeadKind::Graph => n * dim,
            HeadKind::Node => parsed.iter().map(|s| s.len() * dim).sum(),
        };
        let dst = buffer(values, n_values, need, "values")?;
        let res = h.model.compute_batch(&parsed, Request::ENERGY)?;
        let mut at = 0;
        for r in &res {
            let v: &[f64] = if c.name == "energy" {
                std::slice::from_ref(&r.energy)
            } else {
                r.properties.get(&c.name).ok_or_else(|| {
                    Fail::from(mlip::Error::Internal(format!(
                        "the evaluation returned no values for head '{}'",
                        c.name
                    )))
                })?
            };
            dst[at..at + v.len()].copy_from_slice(v);
            at += v.len();
        }
        if at != need {
            return Err(Fail::from(mlip::Error::Internal(format!(
                "head '{}' returned {at} values, expected {need}",
                c.name
            ))));
        }
        Ok(())
    })
}

/// The lengths of the two partial buffers of the layer-by-layer graph heads: `*n_sums` values
/// reduced by addition (the last one is the number of atoms), `*n_maxs` by maximum.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_head_partials_size(
    model: *const hgnn_model_t,
    n_sums: *mut i64,
    n_maxs: *mut i64,
) -> hgnn_status_t {
    wrap(|| {
        let (s, m) = model_ref(model)?.model.head_partials_len(None)?;
        *out(n_sums, "n_sums")? = s as i64;
        *out(n_maxs, "n_maxs")? = m as i64;
        Ok(())
    })
}

/// After `hgnn_eval_readout`: this evaluation's (one rank's local atoms') contribution to the
/// graph heads. Reduce `sums` by addition and `maxs` by maximum over every rank (e.g.
/// `MPI_Allreduce` with `MPI_SUM` and `MPI_MAX`), then call `hgnn_model_finish_heads`. The
/// lengths must be those of `hgnn_model_head_partials_size`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_head_partials(
    eval: *const hgnn_eval_t,
    sums: *mut f64,
    n_sums: i64,
    maxs: *mut f64,
    n_maxs: i64,
) -> hgnn_status_t {
    wrap(|| {
        let p = eval_ref(eval)?.head_partials()?;
        buffer(sums, n_sums, p.sums.len(), "sums")?.copy_from_slice(&p.sums);
        buffer(maxs, n_maxs, p.maxs.len(), "maxs")?.copy_from_slice(&p.maxs);
        Ok(())
    })
}

/// The values of every graph head of the active branch (the energy included), concatenated in
/// head order (`dim` values each), from partials reduced over every rank. `n_values` must be the
/// sum of the graph heads' `dim`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_finish_heads(
    model: *const hgnn_model_t,
    sums: *const f64,
    n_sums: i64,
    maxs: *const f64,
    n_maxs: i64,
    values: *mut f64,
    n_values: i64,
) -> hgnn_status_t {
    wrap(|| {
        let m = &model_ref(model)?.model;
        let p = HeadPartials {
            sums: slice(sums, count(n_sums, "n_sums")?, "sums")?.to_vec(),
            maxs: slice(maxs, count(n_maxs, "n_maxs")?, "maxs")?.to_vec(),
        };
        let v = m.finish_heads(None, &p)?;
        let need = v.iter().map(|(_, x)| x.len()).sum();
        let dst = buffer(values, n_values, need, "values")?;
        let flat: Vec<f64> = v.into_iter().flat_map(|(_, x)| x).collect();
        dst.copy_from_slice(&flat);
        Ok(())
    })
}

/// After `hgnn_eval_readout`: node head `name` on the local atoms, n_local × dim values
/// (row-major); `n_values` must be exactly that.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_node_head(
    eval: *const hgnn_eval_t,
    name: *const c_char,
    values: *mut f64,
    n_values: i64,
) -> hgnn_status_t {
    wrap(|| {
        if name.is_null() {
            return Err(null("name"));
        }
        let name = CStr::from_ptr(name)
            .to_str()
            .map_err(|_| arg("head name is not valid UTF-8".into()))?;
        let e = eval_ref(eval)?;
        let nh = e.node_heads()?;
        let (_, v) = nh.iter().find(|(n, _)| n == name).ok_or_else(|| {
            arg(format!(
                "the active branch has no node head named '{name}'; its node heads are: {}",
                nh.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        buffer(values, n_values, v.len(), "values")?.copy_from_slice(v);
        Ok(())
    })
}

/// Whether the active branch's energy is graph-level (1) or a sum of per-atom energies (0). A
/// graph-level energy (HydraGNN's graph heads: node features summed, then shared layers and an
/// MLP) has no per-atom energies (requesting them is an error), and layer by layer it needs
/// `hgnn_eval_reduce` between `hgnn_eval_readout` and the backward pass.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_energy_is_pooled(
    model: *const hgnn_model_t,
    pooled: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(pooled, "pooled")? = model_ref(model)?.model.energy_is_pooled(None) as i32;
        Ok(())
    })
}

/// Graph-level energy in the layer-by-layer protocol, after `hgnn_eval_readout`: `sums` and
/// `maxs` are every rank's `hgnn_eval_head_partials` reduced (MPI_SUM, MPI_MAX; ranks without
/// local atoms contribute 0 and -inf). Writes the energy of the whole structure (the same on
/// every rank; NULL skips it) and seeds the backward pass with dE/d(pooled features).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_reduce(
    eval: *mut hgnn_eval_t,
    sums: *const f64,
    n_sums: i64,
    maxs: *const f64,
    n_maxs: i64,
    energy: *mut f64,
) -> hgnn_status_t {
    wrap(|| {
        let e = eval_mut(eval)?;
        let p = HeadPartials {
            sums: slice(sums, count(n_sums, "n_sums")?, "sums")?.to_vec(),
            maxs: slice(maxs, count(n_maxs, "n_maxs")?, "maxs")?.to_vec(),
        };
        let v = e.reduce(&p)?;
        if !energy.is_null() {
            *energy = v;
        }
        Ok(())
    })
}
