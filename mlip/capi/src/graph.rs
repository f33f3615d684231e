//! Caller-supplied graphs of local + ghost atoms, evaluated in one pass (`hgnn_compute_graph`).

use mlip::GraphInput;

use crate::compute::{hgnn_results_t, request, write_results};
use crate::model::{hgnn_model_t, model_ref};
use crate::status::{arg, as_vec3, count, hgnn_status_t, null, out, slice, wrap, Fail};

/// A caller-supplied graph: atoms `0..n_local` are local, the rest ghosts. Edge e carries a
/// message from `neighbors[e]` to `centers[e]`, with vector
/// `positions[neighbors[e]] - positions[centers[e]] + shifts[e]`. Pairs beyond the cutoff are
/// allowed (they contribute exactly zero).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hgnn_graph_t {
    /// Number of local atoms.
    pub n_local: i64,
    /// Number of local + ghost atoms.
    pub n_total: i64,
    /// Positions, n_total × 3 (Å).
    pub positions: *const f64,
    /// Atomic numbers, n_total.
    pub atomic_numbers: *const i32,
    /// Number of edges.
    pub n_edges: i64,
    /// Edge centres, n_edges (for `hgnn_eval_*`: local atoms only).
    pub centers: *const i64,
    /// Edge neighbours, n_edges.
    pub neighbors: *const i64,
    /// Cartesian shifts, n_edges × 3, or NULL for none.
    pub shifts: *const f64,
}

pub(crate) unsafe fn graph_input(
    g: &hgnn_graph_t,
) -> Result<
    (
        GraphInput<'static>,
        Vec<[f64; 3]>,
        Vec<usize>,
        Vec<usize>,
        Option<Vec<[f64; 3]>>,
    ),
    Fail,
> {
    let n = count(g.n_total, "n_total")?;
    let nl = count(g.n_local, "n_local")?;
    if nl > n {
        return Err(arg(format!("n_local = {nl} exceeds n_total = {n}")));
    }
    let ne = count(g.n_edges, "n_edges")?;
    let pos = as_vec3(slice(g.positions, 3 * n, "positions")?);
    let z: &'static [i32] = slice(g.atomic_numbers, n, "atomic_numbers")?;
    let idx = |p: *const i64, what: &str| -> Result<Vec<usize>, Fail> {
        slice(p, ne, what)?
            .iter()
            .enumerate()
            .map(|(e, &i)| {
                usize::try_from(i).map_err(|_| arg(format!("{what}[{e}] = {i} is negative")))
            })
            .collect()
    };
    let centers = idx(g.centers, "centers")?;
    let neighbors = idx(g.neighbors, "neighbors")?;
    let shifts = if g.shifts.is_null() {
        None
    } else {
        Some(as_vec3(slice(g.shifts, 3 * ne, "shifts")?))
    };
    // The GraphInput borrows the vectors returned alongside it; callers keep them alive.
    let gi = GraphInput {
        n_local: nl,
        positions: std::mem::transmute::<&[[f64; 3]], &'static [[f64; 3]]>(pos.as_slice()),
        numbers: z,
        centers: std::mem::transmute::<&[usize], &'static [usize]>(centers.as_slice()),
        neighbors: std::mem::transmute::<&[usize], &'static [usize]>(neighbors.as_slice()),
        shifts: shifts
            .as_ref()
            .map(|s| std::mem::transmute::<&[[f64; 3]], &'static [[f64; 3]]>(s.as_slice())),
    };
    Ok((gi, pos, centers, neighbors, shifts))
}

/// Energy etc. of a caller-supplied graph in one pass (no exchange between layers).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_compute_graph(
    model: *const hgnn_model_t,
    graph: *const hgnn_graph_t,
    results: *mut hgnn_results_t,
) -> hgnn_status_t {
    wrap(|| {
        let m = &model_ref(model)?.model;
        let g = graph.as_ref().ok_or_else(|| null("graph"))?;
        let r = out(results, "results")?;
        let (gi, _keep_pos, _keep_c, _keep_n, _keep_s) = graph_input(g)?;
        let res = m.compute_graph(&gi, request(r))?;
        write_results(&res, r, gi.positions.len(), gi.n_local);
        Ok(())
    })
}
