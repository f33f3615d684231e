//! The two compute stages of screening: a structure's graph (validation, species, neighbour
//! list, overlap check) and a window's evaluation in size-sorted batches through the engine's
//! batched call ([`mlip::Model::compute_graphs`], the same one `hgnn_compute_batch` uses). A
//! structure that fails either stage gets an error message; the others go on. An ensemble runs
//! every member on each batch ([`evaluate_window_members`]).

use mlip::compute::{GraphInput, Request, Results};
use mlip::ensemble::EnsembleResults;
use mlip::model::SpeciesIndex;
use mlip::neighbors::neighbor_list;
use mlip::{Model, Structure};

use crate::data::Frame;

/// A structure ready for the model: atoms and edges as the engine takes them.
#[derive(Debug)]
pub struct Prepared {
    /// Atomic numbers.
    pub numbers: Vec<i32>,
    /// Positions, Å.
    pub positions: Vec<[f64; 3]>,
    /// Centre of each edge.
    pub centers: Vec<usize>,
    /// Neighbour of each edge.
    pub neighbors: Vec<usize>,
    /// Cartesian shift of each edge.
    pub shifts: Vec<[f64; 3]>,
    /// Cell volume when the structure is periodic in all three directions (for the stress).
    pub volume: Option<f64>,
}

/// What the graph stage needs from the model.
#[derive(Debug, Clone)]
pub struct GraphRules {
    /// The model's cutoff, Å.
    pub cutoff: f64,
    /// The model's elements.
    pub species: Vec<i32>,
    /// Atoms closer than this (Å) are refused as overlapping.
    pub min_distance: f64,
}

/// Element symbol and number, as errors name them.
fn elem(z: i32) -> String {
    format!("{} (Z={z})", mlip::elements::symbol(z))
}

impl GraphRules {
    /// The graph of `f`, or an error message whose first word says what kind of problem it is
    /// (`invalid structure`, `unknown element`, `overlapping atoms`).
    pub fn prepare(&self, index: &SpeciesIndex, f: &Frame) -> Result<Prepared, String> {
        let s = Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc)
            .map_err(|e| format!("invalid structure: {e}"))?;
        if let Err((i, z)) = index.indices(&s.numbers) {
            let known: Vec<&str> = self
                .species
                .iter()
                .map(|&z| mlip::elements::symbol(z))
                .collect();
            return Err(format!(
                "unknown element: atom {i} is {}, which the model does not know (it knows {})",
                elem(z),
                known.join(", ")
            ));
        }
        // Coincident atoms make no edge (the neighbour list skips r = 0): find them by sorting.
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&a, &b| {
            s.positions[a]
                .partial_cmp(&s.positions[b])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for w in order.windows(2) {
            if s.positions[w[0]] == s.positions[w[1]] {
                let (i, j) = (w[0].min(w[1]), w[0].max(w[1]));
                return Err(format!(
                    "overlapping atoms: atoms {i} and {j} are at the same position {:?}",
                    s.positions[i]
                ));
            }
        }
        let nl = neighbor_list(&s, self.cutoff).map_err(|e| format!("invalid structure: {e}"))?;
        let shifts: Vec<[f64; 3]> = nl
            .shifts
            .iter()
            .map(|sh| [0, 1, 2].map(|c| (0..3).map(|k| sh[k] as f64 * s.cell[k][c]).sum()))
            .collect();
        let md2 = self.min_distance * self.min_distance;
        for ((&i, &j), sh) in nl.centers.iter().zip(&nl.neighbors).zip(&shifts) {
            let r: [f64; 3] = [0, 1, 2].map(|c| s.positions[j][c] - s.positions[i][c] + sh[c]);
            let d2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
            if d2 < md2 {
                return Err(format!(
                    "overlapping atoms: atoms {} and {} are {:.4} Å apart (--min-distance {} Å)",
                    i.min(j),
                    i.max(j),
                    d2.sqrt(),
                    self.min_distance
                ));
            }
        }
        let volume = (s.pbc == [true; 3]).then(|| s.volume());
        Ok(Prepared {
            numbers: s.numbers,
            positions: s.positions,
            centers: nl.centers,
            neighbors: nl.neighbors,
            shifts,
            volume,
        })
    }
}

/// Evaluates the prepared structures of one window: sorted by atom count (then index), cut into
/// batches of at most `batch_atoms` atoms (at least one structure each), each batch one call of
/// the engine. A structure the engine refuses (it names it within the batch) gets the error and
/// the rest of its batch is evaluated again without it. Returns one result per input, in order.
pub fn evaluate_window(
    model: &Model,
    req: Request,
    batch_atoms: usize,
    prepared: &[Result<Prepared, String>],
) -> Vec<Result<Results, String>> {
    evaluate_window_with(
        |g| model.compute_graphs(g, req),
        |g| {
            model
                .compute_graph(g, req)
                .map_err(|e| format!("engine: {e}"))
        },
        batch_atoms,
        prepared,
    )
}

/// [`evaluate_window`] for an ensemble: every member on each batch, sharing its graph arrays
/// ([`mlip::ensemble::compute_graphs_members`]): the mean, the members and the deviations.
pub fn evaluate_window_members(
    members: &[&Model],
    req: Request,
    batch_atoms: usize,
    prepared: &[Result<Prepared, String>],
) -> Vec<Result<EnsembleResults, String>> {
    let all = |g: &[GraphInput]| mlip::ensemble::compute_graphs_members(members, g, req);
    evaluate_window_with(
        all,
        |g| {
            all(std::slice::from_ref(g))
                .map_err(|e| format!("engine: {e}"))
                .and_then(|mut v| v.pop().ok_or_else(|| "engine: no result".to_string()))
        },
        batch_atoms,
        prepared,
    )
}

fn graph_input(p: &Prepared) -> GraphInput<'_> {
    GraphInput {
        n_local: p.numbers.len(),
        positions: &p.positions,
        numbers: &p.numbers,
        centers: &p.centers,
        neighbors: &p.neighbors,
        shifts: Some(&p.shifts),
    }
}

/// The batching of [`evaluate_window`] around `compute` (one engine call on a batch of graphs)
/// and `one` (one graph, when a batch fails without naming a structure).
fn evaluate_window_with<T>(
    compute: impl Fn(&[GraphInput]) -> mlip::Result<Vec<T>>,
    one: impl Fn(&GraphInput) -> Result<T, String>,
    batch_atoms: usize,
    prepared: &[Result<Prepared, String>],
) -> Vec<Result<T, String>> {
    let mut out: Vec<Option<Result<T, String>>> = prepared
        .iter()
        .map(|p| p.as_ref().err().map(|e| Err(e.clone())))
        .collect();
    let mut order: Vec<usize> = (0..prepared.len())
        .filter(|&i| prepared[i].is_ok())
        .collect();
    let size = |i: usize| prepared[i].as_ref().map_or(0, |p| p.numbers.len());
    order.sort_by_key(|&i| (size(i), i));
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        let mut atoms = size(order[start]);
        while end < order.len() && atoms + size(order[end]) <= batch_atoms {
            atoms += size(order[end]);
            end += 1;
        }
        let mut batch: Vec<usize> = order[start..end].to_vec();
        while !batch.is_empty() {
            let inputs: Vec<GraphInput> = batch
                .iter()
                .map(|&i| graph_input(prepared[i].as_ref().expect("prepared")))
                .collect();
            match compute(&inputs) {
                Ok(rs) => {
                    for (&i, r) in batch.iter().zip(rs) {
                        out[i] = Some(Ok(r));
                    }
                    batch.clear();
                }
                Err(mlip::Error::InStructure { index, source }) if index < batch.len() => {
                    out[batch[index]] = Some(Err(format!("engine: {source}")));
                    batch.remove(index);
                }
                Err(e) if batch.len() == 1 => {
                    out[batch[0]] = Some(Err(format!("engine: {e}")));
                    batch.clear();
                }
                Err(_) => {
                    // Not attributed to one structure: evaluate them one by one.
                    for &i in &batch {
                        let g = graph_input(prepared[i].as_ref().expect("prepared"));
                        out[i] = Some(one(&g));
                    }
                    batch.clear();
                }
            }
        }
        start = end;
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("engine: not evaluated".into())))
        .collect()
}
