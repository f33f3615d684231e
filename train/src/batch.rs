//! Graphs ready for the model: every structure of a rank's shard gets its neighbour list and
//! edge vectors once, when it is loaded (positions do not change during training), and a batch is
//! the concatenation of such graphs into the engine's [`GraphTensors`] plus target tensors.
//!
//! Edge convention (the engine's): edge e carries a message from `src[e]` (the neighbour) to
//! `dst[e]` (the centre), `edge_vec[e] = x_src - x_dst + shift`; with g = dE/d edge_vec, the
//! forces are F_src -= g, F_dst += g.

use std::collections::BTreeMap;
use std::ops::Range;

use mlip::model::GraphTensors;
use mlip::neighbors::neighbor_list;
use mlip::Structure;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::data::{Batch, Frame, SplitReader};
use crate::error::{Error, Result};

/// One structure with its edges and labels.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Index of the graph in its split.
    pub index: usize,
    /// Atomic numbers.
    pub numbers: Vec<i32>,
    /// Species index (position in the model's species list) per atom.
    pub species: Vec<i64>,
    /// Message sources (neighbours), per edge.
    pub src: Vec<i64>,
    /// Message destinations (centres), per edge.
    pub dst: Vec<i64>,
    /// Edge vectors, 3 per edge (Angstrom).
    pub edge_vec: Vec<f64>,
    /// Total energy (eV).
    pub energy: Option<f64>,
    /// Forces, 3 per atom (eV/Angstrom).
    pub forces: Option<Vec<f64>>,
    /// Other properties by name: per-graph scalars (one value) and per-atom columns (`width` per atom).
    pub props: BTreeMap<String, Vec<f64>>,
}

impl Graph {
    /// Number of atoms.
    pub fn n_atoms(&self) -> usize {
        self.numbers.len()
    }
}

/// How to turn structures into graphs.
#[derive(Debug, Clone)]
pub struct GraphSpec {
    /// Cutoff radius (Angstrom).
    pub cutoff: f64,
    /// Species index of each atomic number (-1: unknown).
    pub species_index: Vec<i64>,
    /// Treat every structure as non-periodic.
    pub no_pbc: bool,
}

impl GraphSpec {
    /// For a model's species list.
    pub fn new(cutoff: f64, species: &[i32], no_pbc: bool) -> Self {
        let mut species_index = vec![-1i64; 119];
        for (k, &z) in species.iter().enumerate() {
            species_index[z as usize] = k as i64;
        }
        GraphSpec {
            cutoff,
            species_index,
            no_pbc,
        }
    }

    /// The graph of one structure; `what` names it in errors (`metals.bp trainset graph 12`).
    pub fn graph(&self, f: &Frame, index: usize, what: &dyn Fn() -> String) -> Result<Graph> {
        let species = f
            .numbers
            .iter()
            .enumerate()
            .map(|(i, &z)| {
                let k = if (0..119).contains(&z) {
                    self.species_index[z as usize]
                } else {
                    -1
                };
                if k < 0 {
                    Err(Error::Invalid(format!(
                        "{}: atom {i} has atomic number {z}, which the model does not know",
                        what()
                    )))
                } else {
                    Ok(k)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let pbc = if self.no_pbc { [false; 3] } else { f.pbc };
        let s = Structure {
            positions: f.positions.clone(),
            numbers: f.numbers.clone(),
            cell: f.cell,
            pbc,
        };
        let nl = neighbor_list(&s, self.cutoff)
            .map_err(|e| Error::Invalid(format!("{}: {e}", what())))?;
        let vecs = nl.edge_vectors(&s);
        let mut props = BTreeMap::new();
        for (k, v) in &f.scalars {
            props.insert(k.clone(), vec![*v]);
        }
        for (k, p) in &f.atom_props {
            props.insert(k.clone(), p.values.clone());
        }
        Ok(Graph {
            index,
            numbers: f.numbers.clone(),
            species,
            src: nl.neighbors.iter().map(|&j| j as i64).collect(),
            dst: nl.centers.iter().map(|&i| i as i64).collect(),
            edge_vec: vecs.iter().flatten().copied().collect(),
            energy: f.energy,
            forces: f
                .forces
                .as_ref()
                .map(|x| x.iter().flatten().copied().collect()),
            props,
        })
    }

    /// Graphs of every structure of a batch read from a dataset (neighbour lists in parallel).
    pub fn graphs_of_batch(&self, b: &Batch, label: &str) -> Result<Vec<Graph>> {
        (0..b.n_graphs())
            .into_par_iter()
            .map(|i| {
                let gi = b.graph_index[i];
                self.graph(&b.frame(i), gi, &|| format!("{label} graph {gi}"))
            })
            .collect()
    }

    /// Reads graphs `range` of a split and builds their graphs.
    pub fn load(
        &self,
        split: &SplitReader<'_>,
        range: Range<usize>,
        label: &str,
    ) -> Result<Vec<Graph>> {
        let b = split.read_batch(range)?;
        self.graphs_of_batch(&b, label)
    }
}

/// A batch of graphs as tensors, with its targets.
#[derive(Debug)]
pub struct Collated {
    /// The model input.
    pub graph: GraphTensors,
    /// Atoms per graph, in the model's float kind (n_graphs,).
    pub n_atoms: Tensor,
    /// Energies (n_graphs,), if every graph has one.
    pub energy: Option<Tensor>,
    /// Forces (n_atoms, 3), if every graph has them.
    pub forces: Option<Tensor>,
    /// Other targets: graph properties (n_graphs, width), node properties (n_atoms, width).
    pub props: BTreeMap<String, Tensor>,
    /// Number of graphs.
    pub n_graphs: usize,
    /// Number of atoms.
    pub n_atoms_total: usize,
}

/// Concatenates graphs into one batch. `edge_grad` makes the edge vectors require gradients
/// (forces); `graph_props` / `node_props` name the targets to collate with their widths.
pub fn collate(
    graphs: &[&Graph],
    graph_props: &[(String, usize)],
    node_props: &[(String, usize)],
    kind: Kind,
    device: Device,
    edge_grad: bool,
) -> Collated {
    let n_atoms_total: usize = graphs.iter().map(|g| g.n_atoms()).sum();
    let n_edges: usize = graphs.iter().map(|g| g.src.len()).sum();
    let mut species = Vec::with_capacity(n_atoms_total);
    let mut src = Vec::with_capacity(n_edges);
    let mut dst = Vec::with_capacity(n_edges);
    let mut vecs = Vec::with_capacity(3 * n_edges);
    let mut batch = Vec::with_capacity(n_atoms_total);
    let mut n_atoms = Vec::with_capacity(graphs.len());
    let mut off = 0i64;
    for (k, g) in graphs.iter().enumerate() {
        species.extend_from_slice(&g.species);
        src.extend(g.src.iter().map(|&s| s + off));
        dst.extend(g.dst.iter().map(|&d| d + off));
        vecs.extend_from_slice(&g.edge_vec);
        batch.extend(std::iter::repeat_n(k as i64, g.n_atoms()));
        n_atoms.push(g.n_atoms() as f64);
        off += g.n_atoms() as i64;
    }
    let t = |v: &[f64], shape: &[i64]| {
        Tensor::from_slice(v)
            .view(shape)
            .to_kind(kind)
            .to_device(device)
    };
    let edge_vec = t(&vecs, &[n_edges as i64, 3]);
    let edge_vec = if edge_grad {
        edge_vec.set_requires_grad(true)
    } else {
        edge_vec
    };
    let energy = graphs
        .iter()
        .map(|g| g.energy)
        .collect::<Option<Vec<f64>>>()
        .map(|e| t(&e, &[graphs.len() as i64]));
    let forces = graphs
        .iter()
        .map(|g| g.forces.as_deref())
        .collect::<Option<Vec<&[f64]>>>()
        .map(|f| t(&f.concat(), &[n_atoms_total as i64, 3]));
    let mut props = BTreeMap::new();
    for (name, w) in graph_props {
        let v: Vec<f64> = graphs
            .iter()
            .flat_map(|g| g.props[name].iter().copied())
            .collect();
        props.insert(name.clone(), t(&v, &[graphs.len() as i64, *w as i64]));
    }
    for (name, w) in node_props {
        let v: Vec<f64> = graphs
            .iter()
            .flat_map(|g| g.props[name].iter().copied())
            .collect();
        props.insert(name.clone(), t(&v, &[n_atoms_total as i64, *w as i64]));
    }
    let i64t = |v: &[i64]| Tensor::from_slice(v).to_device(device);
    Collated {
        graph: GraphTensors {
            species: i64t(&species),
            src: i64t(&src),
            dst: i64t(&dst),
            edge_vec,
            batch: i64t(&batch),
            n_graphs: graphs.len() as i64,
        },
        n_atoms: t(&n_atoms, &[graphs.len() as i64]),
        energy,
        forces,
        props,
        n_graphs: graphs.len(),
        n_atoms_total,
    }
}
