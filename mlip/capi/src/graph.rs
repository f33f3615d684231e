//! Caller-supplied graphs of local + ghost atoms, evaluated in one pass (`hgnn_compute_graph`).

use mlip::GraphInput;

use crate::compute::{hgnn_results_t, request, write_results};
use crate::model::{hgnn_model_t, model_ref};
use crate::status::{arg, as_vec3, count, hgnn_status_t, null, out, slice, wrap, Fail};

/// A caller-supplied graph: atoms `0..n_local` are local, the rest ghosts. Edge e carries a
/// message from `neighbors[e]` to `centers[e]`, with vector
/// `positions[neighbors[e]] - positions[centers[e]] + shifts[e]`. Pairs beyond the cutoff are
/// allowed (they contribute exactly zero). Every edge must appear once: a graph with the same
/// (centre, neighbour, shift) twice is refused with `HGNN_ERROR_INVALID_ARGUMENT` naming both
/// edges (a duplicate would count its pair twice).
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

/// A graph read from an [`hgnn_graph_t`]: the index and vector arrays converted into owned
/// vectors, the atomic numbers borrowed from the caller. [`Graph::view`] lends it to the engine.
pub(crate) struct Graph<'a> {
    n_local: usize,
    positions: Vec<[f64; 3]>,
    numbers: &'a [i32],
    centers: Vec<usize>,
    neighbors: Vec<usize>,
    shifts: Option<Vec<[f64; 3]>>,
}

impl<'a> Graph<'a> {
    /// Checks the sizes and indices of `g` and copies its arrays.
    pub(crate) unsafe fn read(g: &'a hgnn_graph_t) -> Result<Self, Fail> {
        let n = count(g.n_total, "n_total")?;
        let nl = count(g.n_local, "n_local")?;
        if nl > n {
            return Err(arg(format!("n_local = {nl} exceeds n_total = {n}")));
        }
        let ne = count(g.n_edges, "n_edges")?;
        let positions = as_vec3(slice(g.positions, 3 * n, "positions")?);
        let numbers = slice(g.atomic_numbers, n, "atomic_numbers")?;
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
        for (e, (&i, &j)) in centers.iter().zip(&neighbors).enumerate() {
            if i >= n || j >= n {
                return Err(arg(format!(
                    "edge {e} ({i} -> {j}) refers to an atom index >= n_total = {n}"
                )));
            }
        }
        mlip::neighbors::check_unique_edges(n, &centers, &neighbors, shifts.as_deref())?;
        Ok(Graph {
            n_local: nl,
            positions,
            numbers,
            centers,
            neighbors,
            shifts,
        })
    }

    /// The engine's borrowing view of this graph.
    pub(crate) fn view(&self) -> GraphInput<'_> {
        GraphInput {
            n_local: self.n_local,
            positions: &self.positions,
            numbers: self.numbers,
            centers: &self.centers,
            neighbors: &self.neighbors,
            shifts: self.shifts.as_deref(),
        }
    }
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
        let m = &crate::ensemble::single(model_ref(model)?, "hgnn_compute_graph")?.model;
        let g = graph.as_ref().ok_or_else(|| null("graph"))?;
        let r = out(results, "results")?;
        let graph = Graph::read(g)?;
        let gi = graph.view();
        let res = m.compute_graph(&gi, request(r))?;
        write_results(&res, r, gi.positions.len(), gi.n_local);
        Ok(())
    })
}
