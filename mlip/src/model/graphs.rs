//! Batching graphs: the per-graph index arrays of several graphs concatenated (node indices
//! offset, a graph index per node) into host arrays, then into the [`GraphTensors`] that
//! [`crate::Model::forward`] takes. [`crate::Model::compute_graphs`] and the trainer's batches
//! both go through [`GraphArrays`].

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::nn::tensor_from;
use super::GraphTensors;

/// The two directions of each pair of a full edge list, for computing what depends only on the
/// distance (radial filters) once per pair: `half` (H,) lists one edge of every pair (the lower
/// index), `expand` (E,) gives each edge's position in `half`. Edge e and its reverse share
/// `expand[e]`. int64 tensors.
#[derive(Debug)]
pub struct EdgePairs {
    /// One edge per pair (the lower index of the two), int64 (H,).
    pub half: Tensor,
    /// Each edge's pair: its position in `half`, int64 (E,).
    pub expand: Tensor,
}

/// For a full edge list (edge e from `src[e]` to `dst[e]` with vector r_e, and its reverse from
/// `dst[e]` to `src[e]` with vector −r_e, as [`crate::neighbors::neighbor_list`] gives with
/// `r = x_j − x_i + S·cell` computed in one floating-point order, so the reverse is the exact
/// negation), the index of each edge's reverse; None when some edge has none (e.g. a half list
/// or a list cut at a subdomain boundary).
pub fn reverse_edges(src: &[i64], dst: &[i64], edge_vec: &[f64]) -> Option<Vec<i64>> {
    let n = src.len();
    if dst.len() != n || edge_vec.len() != 3 * n {
        return None;
    }
    // `+ 0.0` turns -0.0 into 0.0: the key of a component and of its negation then match.
    let key = |s: i64, d: i64, v: [f64; 3]| (s, d, v.map(|x| (x + 0.0).to_bits()));
    let vec = |e: usize| [edge_vec[3 * e], edge_vec[3 * e + 1], edge_vec[3 * e + 2]];
    let mut index = HashMap::with_capacity(n);
    for e in 0..n {
        if index.insert(key(src[e], dst[e], vec(e)), e).is_some() {
            return None; // a duplicate edge: no one-to-one pairing
        }
    }
    (0..n)
        .map(|e| {
            let r = index.get(&key(dst[e], src[e], vec(e).map(|x| -x)))?;
            (*r != e).then_some(*r as i64)
        })
        .collect()
}

/// [`EdgePairs`] of a reverse-edge map ([`reverse_edges`], batch-wide indices).
fn edge_pairs(reverse: &[i64], device: Device) -> EdgePairs {
    let mut half = Vec::with_capacity(reverse.len() / 2);
    let mut slot = vec![0i64; reverse.len()];
    for (e, &r) in reverse.iter().enumerate() {
        if (e as i64) < r {
            slot[e] = half.len() as i64;
            slot[r as usize] = half.len() as i64;
            half.push(e as i64);
        }
    }
    EdgePairs {
        half: Tensor::from_slice(&half).to_device(device),
        expand: Tensor::from_slice(&slot).to_device(device),
    }
}

/// Several graphs' nodes and edges concatenated on the host. Graph `k` owns nodes
/// `node_offsets[k]..node_offsets[k + 1]` and edges `edge_offsets[k]..edge_offsets[k + 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphArrays {
    /// Species index per node.
    pub species: Vec<i64>,
    /// Message source (batch node index) per edge.
    pub src: Vec<i64>,
    /// Message destination (batch node index) per edge.
    pub dst: Vec<i64>,
    /// Edge vectors, 3 per edge (x_src - x_dst + shift, Å).
    pub edge_vec: Vec<f64>,
    /// Graph index per node.
    pub batch: Vec<i64>,
    /// Where each graph's nodes start, and the total at the end (n_graphs + 1 entries).
    pub node_offsets: Vec<usize>,
    /// Where each graph's edges start, and the total at the end (n_graphs + 1 entries).
    pub edge_offsets: Vec<usize>,
    /// Each edge's reverse edge (batch index), when every graph was pushed with one
    /// ([`GraphArrays::push_with_reverse`]); the model then computes radial filters once per
    /// pair ([`EdgePairs`]).
    pub reverse: Option<Vec<i64>>,
}

impl Default for GraphArrays {
    /// An empty batch.
    fn default() -> Self {
        GraphArrays::with_capacity(0, 0)
    }
}

impl GraphArrays {
    /// An empty batch with room for `nodes` nodes and `edges` edges.
    pub fn with_capacity(nodes: usize, edges: usize) -> Self {
        GraphArrays {
            species: Vec::with_capacity(nodes),
            src: Vec::with_capacity(edges),
            dst: Vec::with_capacity(edges),
            edge_vec: Vec::with_capacity(3 * edges),
            batch: Vec::with_capacity(nodes),
            node_offsets: vec![0],
            edge_offsets: vec![0],
            reverse: Some(Vec::with_capacity(edges)),
        }
    }

    /// Number of graphs.
    pub fn n_graphs(&self) -> usize {
        self.node_offsets.len() - 1
    }

    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.species.len()
    }

    /// Number of edges.
    pub fn n_edges(&self) -> usize {
        self.src.len()
    }

    /// Appends a graph: its nodes' species indices, and per edge the source and destination
    /// (node indices within the graph) and the edge vector (3 numbers).
    pub fn push(
        &mut self,
        species: &[i64],
        src: impl IntoIterator<Item = i64>,
        dst: impl IntoIterator<Item = i64>,
        edge_vec: &[f64],
    ) {
        let off = self.n_nodes() as i64;
        let k = self.n_graphs() as i64;
        self.species.extend_from_slice(species);
        self.src.extend(src.into_iter().map(|s| s + off));
        self.dst.extend(dst.into_iter().map(|d| d + off));
        self.edge_vec.extend_from_slice(edge_vec);
        self.batch.extend(std::iter::repeat_n(k, species.len()));
        self.node_offsets.push(self.n_nodes());
        self.edge_offsets.push(self.n_edges());
        self.reverse = None;
    }

    /// [`GraphArrays::push`] with each edge's reverse (an edge index within the graph,
    /// [`reverse_edges`]): while every graph of the batch comes with one, the batch's tensors
    /// carry [`EdgePairs`]. `reverse` must pair the graph's edges (each edge's reverse runs the
    /// other way with the negated vector); the caller guarantees it.
    pub fn push_with_reverse(
        &mut self,
        species: &[i64],
        src: impl IntoIterator<Item = i64>,
        dst: impl IntoIterator<Item = i64>,
        edge_vec: &[f64],
        reverse: &[i64],
    ) {
        let e0 = self.n_edges() as i64;
        let keep = self.reverse.take();
        self.push(species, src, dst, edge_vec);
        self.reverse = keep.filter(|_| reverse.len() == self.n_edges() - e0 as usize);
        if let Some(r) = &mut self.reverse {
            r.extend(reverse.iter().map(|&x| x + e0));
        }
    }

    /// The batch as the model's input: edge vectors in `kind` on `device`, requiring gradients
    /// when `edge_grad` (forces and virials are energy gradients with respect to them).
    pub fn to_tensors(&self, kind: Kind, device: Device, edge_grad: bool) -> GraphTensors {
        let edge_vec = tensor_from(&self.edge_vec, &[self.n_edges() as i64, 3], kind, device);
        let i64t = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        GraphTensors {
            species: i64t(&self.species),
            src: i64t(&self.src),
            dst: i64t(&self.dst),
            edge_vec: if edge_grad {
                edge_vec.set_requires_grad(true)
            } else {
                edge_vec
            },
            batch: i64t(&self.batch),
            n_graphs: self.n_graphs() as i64,
            pairs: self
                .reverse
                .as_ref()
                .filter(|r| !r.is_empty())
                .map(|r| edge_pairs(r, device)),
        }
    }
}
