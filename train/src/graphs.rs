//! Graphs ready for the model: every structure of a rank's shard gets its neighbour list and
//! edge vectors once, when it is loaded (positions do not change during training), and a batch is
//! the concatenation of such graphs into the engine's [`GraphTensors`] plus target tensors.
//!
//! Edge convention (the engine's): edge e carries a message from `src[e]` (the neighbour) to
//! `dst[e]` (the centre), `edge_vec[e] = x_src - x_dst + shift`; with g = dE/d edge_vec, the
//! forces are F_src -= g, F_dst += g.

use std::collections::BTreeMap;
use std::ops::Range;

use mlip::model::nn::tensor_from;
use mlip::model::{GraphArrays, GraphTensors, SpeciesIndex};
use mlip::neighbors::neighbor_list;
use mlip::Structure;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::data::{Frame, FrameBlock, SplitReader};
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
    /// The model's species index.
    pub species_index: SpeciesIndex,
    /// Treat every structure as non-periodic.
    pub no_pbc: bool,
}

impl GraphSpec {
    /// For a model's species list.
    pub fn new(cutoff: f64, species: &[i32], no_pbc: bool) -> Self {
        GraphSpec {
            cutoff,
            species_index: SpeciesIndex::new(species),
            no_pbc,
        }
    }

    /// The graph of one structure; `what` names it in errors (`metals.bp trainset graph 12`).
    pub fn graph(&self, f: &Frame, index: usize, what: &dyn Fn() -> String) -> Result<Graph> {
        let species = self.species_index.indices(&f.numbers).map_err(|(i, z)| {
            Error::Invalid(format!(
                "{}: atom {i} has atomic number {z}, which the model does not know",
                what()
            ))
        })?;
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

    /// The former name of [`GraphSpec::graphs_of_block`], kept for existing callers.
    #[doc(hidden)]
    pub fn graphs_of_batch(&self, b: &FrameBlock, label: &str) -> Result<Vec<Graph>> {
        self.graphs_of_block(b, label)
    }

    /// Graphs of every structure of a block read from a dataset (neighbour lists in parallel).
    pub fn graphs_of_block(&self, b: &FrameBlock, label: &str) -> Result<Vec<Graph>> {
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
        let b = split.read_block(range)?;
        self.graphs_of_block(&b, label)
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
    let mut arrays = GraphArrays::with_capacity(n_atoms_total, n_edges);
    for g in graphs {
        arrays.push(
            &g.species,
            g.src.iter().copied(),
            g.dst.iter().copied(),
            &g.edge_vec,
        );
    }
    let n_atoms: Vec<f64> = graphs.iter().map(|g| g.n_atoms() as f64).collect();
    let t = |v: &[f64], shape: &[i64]| tensor_from(v, shape, kind, device);
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
    Collated {
        graph: arrays.to_tensors(kind, device, edge_grad),
        n_atoms: t(&n_atoms, &[graphs.len() as i64]),
        energy,
        forces,
        props,
        n_graphs: graphs.len(),
        n_atoms_total,
    }
}
