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
    /// Stress, 3x3 row-major (eV/Angstrom^3, ASE's sign), of a periodic structure that has one.
    pub stress: Option<[f64; 9]>,
    /// Cell volume (Angstrom^3) of a structure periodic in all three directions.
    pub volume: Option<f64>,
    /// Other properties by name (only those this structure carries): per-graph scalars (one value) and per-atom columns (`width` per atom).
    pub props: BTreeMap<String, Vec<f64>>,
    /// Each edge's reverse edge ([`mlip::model::graphs::reverse_edges`]): batches of such graphs
    /// compute radial filters once per pair. Derived from the edges, never stored.
    pub reverse: Option<Vec<i64>>,
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
            // A data error (exit code 4): the data holds an element outside the model's species.
            Error::Data(crate::data::DataError::Invalid(format!(
                "{}: atom {i} has atomic number {z} ({}), which the model does not know",
                what(),
                mlip::elements::symbol(z)
            )))
        })?;
        let pbc = if self.no_pbc { [false; 3] } else { f.pbc };
        let s = Structure {
            positions: f.positions.clone(),
            numbers: f.numbers.clone(),
            cell: f.cell,
            pbc,
        };
        let c = &f.cell;
        let det = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1])
            - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
            + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
        let volume = (pbc == [true; 3] && det.abs() > 1e-12).then_some(det.abs());
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
        let src: Vec<i64> = nl.neighbors.iter().map(|&j| j as i64).collect();
        let dst: Vec<i64> = nl.centers.iter().map(|&i| i as i64).collect();
        let edge_vec: Vec<f64> = vecs.iter().flatten().copied().collect();
        let reverse = mlip::model::graphs::reverse_edges(&src, &dst, &edge_vec);
        Ok(Graph {
            index,
            numbers: f.numbers.clone(),
            species,
            src,
            dst,
            edge_vec,
            reverse,
            energy: f.energy,
            forces: f
                .forces
                .as_ref()
                .map(|x| x.iter().flatten().copied().collect()),
            stress: f.stress.filter(|_| volume.is_some()),
            volume,
            props,
        })
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

/// One target of a batch: values, zeros where a graph (or atom) lacks it, and the presence mask.
#[derive(Debug)]
pub struct Target {
    /// Values, (rows, ...) in the model's float kind; zeros where absent.
    pub value: Tensor,
    /// 1 where present, 0 where absent, shaped to broadcast against `value`.
    pub mask: Tensor,
    /// Rows present (graphs, or atoms for per-atom targets).
    pub rows: usize,
}

/// A batch of graphs as tensors, with its targets.
#[derive(Debug)]
pub struct Collated {
    /// The model input.
    pub graph: GraphTensors,
    /// Atoms per graph, in the model's float kind (n_graphs,).
    pub n_atoms: Tensor,
    /// Cell volume per graph (n_graphs,), Angstrom^3; 1 for a structure not periodic in 3D.
    pub volume: Tensor,
    /// Energies (n_graphs,), if any graph has one.
    pub energy: Option<Target>,
    /// Forces (n_atoms, 3), if any graph has them (mask (n_atoms, 1)).
    pub forces: Option<Target>,
    /// Stress (n_graphs, 3, 3) of periodic graphs, if any has one (mask (n_graphs, 1, 1)).
    pub stress: Option<Target>,
    /// Other targets: graph properties (n_graphs, width), node properties (n_atoms, width), each
    /// with its mask (rows, 1).
    pub props: BTreeMap<String, Target>,
    /// Number of graphs.
    pub n_graphs: usize,
    /// Number of atoms.
    pub n_atoms_total: usize,
}

/// A target over `rows` rows of `width` values: `parts` gives each graph's values (or `None`)
/// and its number of rows.
fn target(
    parts: &[(Option<&[f64]>, usize)],
    width: usize,
    shape: &[i64],
    mask_shape: &[i64],
    kind: Kind,
    device: Device,
) -> Option<Target> {
    if parts.iter().all(|(v, _)| v.is_none()) {
        return None;
    }
    let (mut value, mut mask, mut rows) = (Vec::new(), Vec::new(), 0);
    for (v, n) in parts {
        match v {
            Some(v) => {
                value.extend_from_slice(v);
                mask.extend(std::iter::repeat_n(1.0, *n));
                rows += n;
            }
            None => {
                value.extend(std::iter::repeat_n(0.0, n * width));
                mask.extend(std::iter::repeat_n(0.0, *n));
            }
        }
    }
    Some(Target {
        value: tensor_from(&value, shape, kind, device),
        mask: tensor_from(&mask, mask_shape, kind, device),
        rows,
    })
}

/// Concatenates graphs into one batch. `edge_grad` makes the edge vectors require gradients
/// (forces, stress); `graph_props` / `node_props` name the targets to collate with their widths.
/// A target is collated when any graph has it, with a mask of the graphs (atoms) that do.
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
        match &g.reverse {
            Some(r) => arrays.push_with_reverse(
                &g.species,
                g.src.iter().copied(),
                g.dst.iter().copied(),
                &g.edge_vec,
                r,
            ),
            None => arrays.push(
                &g.species,
                g.src.iter().copied(),
                g.dst.iter().copied(),
                &g.edge_vec,
            ),
        }
    }
    let ng = graphs.len() as i64;
    let na = n_atoms_total as i64;
    let n_atoms: Vec<f64> = graphs.iter().map(|g| g.n_atoms() as f64).collect();
    let volume: Vec<f64> = graphs.iter().map(|g| g.volume.unwrap_or(1.0)).collect();
    let t = |v: &[f64], shape: &[i64]| tensor_from(v, shape, kind, device);
    let energies: Vec<Option<[f64; 1]>> = graphs.iter().map(|g| g.energy.map(|e| [e])).collect();
    let energy = target(
        &energies
            .iter()
            .map(|e| (e.as_ref().map(|x| &x[..]), 1))
            .collect::<Vec<_>>(),
        1,
        &[ng],
        &[ng],
        kind,
        device,
    );
    let forces = target(
        &graphs
            .iter()
            .map(|g| (g.forces.as_deref(), g.n_atoms()))
            .collect::<Vec<_>>(),
        3,
        &[na, 3],
        &[na, 1],
        kind,
        device,
    );
    let stress = target(
        &graphs
            .iter()
            .map(|g| (g.stress.as_ref().map(|s| &s[..]), 1))
            .collect::<Vec<_>>(),
        9,
        &[ng, 3, 3],
        &[ng, 1, 1],
        kind,
        device,
    );
    let mut props = BTreeMap::new();
    for (name, w, rows_of_graph, rows) in graph_props
        .iter()
        .map(|(n, w)| (n, *w, false, ng))
        .chain(node_props.iter().map(|(n, w)| (n, *w, true, na)))
    {
        let parts: Vec<(Option<&[f64]>, usize)> = graphs
            .iter()
            .map(|g| {
                let r = if rows_of_graph { g.n_atoms() } else { 1 };
                (g.props.get(name).map(|v| v.as_slice()), r)
            })
            .collect();
        let tg =
            target(&parts, w, &[rows, w as i64], &[rows, 1], kind, device).unwrap_or_else(|| {
                Target {
                    value: Tensor::zeros([rows, w as i64], (kind, device)),
                    mask: Tensor::zeros([rows, 1], (kind, device)),
                    rows: 0,
                }
            });
        props.insert(name.clone(), tg);
    }
    Collated {
        graph: arrays.to_tensors(kind, device, edge_grad),
        n_atoms: t(&n_atoms, &[ng]),
        volume: t(&volume, &[ng]),
        energy,
        forces,
        stress,
        props,
        n_graphs: graphs.len(),
        n_atoms_total,
    }
}
