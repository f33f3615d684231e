//! Batching graphs: the per-graph index arrays of several graphs concatenated (node indices
//! offset, a graph index per node) into host arrays, then into the [`GraphTensors`] that
//! [`crate::Model::forward`] takes. [`crate::Model::compute_graphs`] and the trainer's batches
//! both go through [`GraphArrays`].

use tch::{Device, Kind, Tensor};

use super::nn::tensor_from;
use super::GraphTensors;

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
        }
    }
}
