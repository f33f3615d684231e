//! Graphs as concatenated arrays ([`FrameBlock`]): built from [`Frame`]s for writing, returned
//! by a slice read, and turned back into frames.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::data::error::{DataError, Result};
use crate::data::extxyz::{AtomProp, Frame};

use super::Layout;

/// A block of graphs as concatenated arrays: what a slice read returns, and what a dataset is written from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameBlock {
    /// Index of each graph within its split.
    pub graph_index: Vec<usize>,
    /// Atoms per graph.
    pub n_atoms: Vec<usize>,
    /// First atom of each graph in the atom arrays below.
    pub atom_offset: Vec<usize>,
    /// Atomic numbers, one per atom.
    pub numbers: Vec<i32>,
    /// Positions, 3 per atom, Angstrom.
    pub positions: Vec<f64>,
    /// Lattice vectors as rows, 9 per graph, Angstrom.
    pub cell: Vec<f64>,
    /// Periodicity, 3 per graph.
    pub pbc: Vec<bool>,
    /// Energy per graph, eV.
    pub energy: Option<Vec<f64>>,
    /// Forces, 3 per atom, eV/Angstrom.
    pub forces: Option<Vec<f64>>,
    /// Stress, 9 per graph (3x3 row-major), eV/Angstrom^3.
    pub stress: Option<Vec<f64>>,
    /// Per-graph scalars, one per graph.
    pub scalars: BTreeMap<String, Vec<f64>>,
    /// Per-atom properties, `width` per atom.
    pub atom_props: BTreeMap<String, AtomProp>,
    /// Which graphs carry a label or property that only some graphs carry, by name (`energy`,
    /// `forces`, `stress`, a per-graph scalar or a per-atom property), one flag per graph; the
    /// arrays above hold zeros for the graphs without it. A name absent here: every graph has it.
    pub present: BTreeMap<String, Vec<bool>>,
}

impl FrameBlock {
    /// Number of graphs.
    pub fn n_graphs(&self) -> usize {
        self.n_atoms.len()
    }

    /// Number of atoms over all graphs.
    pub fn total_atoms(&self) -> usize {
        self.numbers.len()
    }

    /// The atom range of graph `i` in the atom arrays.
    pub fn atoms_of(&self, i: usize) -> Range<usize> {
        self.atom_offset[i]..self.atom_offset[i] + self.n_atoms[i]
    }

    /// An empty block with the arrays of `layout` present.
    pub(super) fn empty(layout: &Layout) -> FrameBlock {
        FrameBlock {
            energy: layout.energy.then(Vec::new),
            forces: layout.forces.then(Vec::new),
            stress: layout.stress.then(Vec::new),
            scalars: layout
                .scalars
                .iter()
                .map(|k| (k.clone(), Vec::new()))
                .collect(),
            atom_props: layout
                .atom_props
                .iter()
                .map(|(k, w)| {
                    (
                        k.clone(),
                        AtomProp {
                            width: *w,
                            values: Vec::new(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Concatenates frames (graph indices 0..n). A label or property that only some frames carry
    /// is kept, with zeros and a presence flag for the others ([`FrameBlock::present`]).
    pub fn from_frames(frames: &[Frame]) -> Result<FrameBlock> {
        let mut layout = frames.first().map(Layout::of).unwrap_or_default();
        for (i, f) in frames.iter().enumerate() {
            layout = layout
                .union(&Layout::of(f))
                .map_err(|e| DataError::Invalid(format!("graph {i}: {e}")))?;
        }
        let partial: Vec<String> = layout
            .names()
            .into_iter()
            .filter(|n| frames.iter().any(|f| !Layout::of(f).has(n)))
            .collect();
        Self::from_frames_as(&layout, &partial, frames)
    }

    /// Concatenates frames into the arrays of `layout`, with presence flags for the names in
    /// `partial` (every other name must be in every frame).
    pub(super) fn from_frames_as(
        layout: &Layout,
        partial: &[String],
        frames: &[Frame],
    ) -> Result<FrameBlock> {
        let mut b = FrameBlock::empty(layout);
        for n in partial {
            b.present
                .insert(n.clone(), Vec::with_capacity(frames.len()));
        }
        for (i, f) in frames.iter().enumerate() {
            let fl = Layout::of(f);
            for n in layout.names() {
                let has = fl.has(&n);
                match b.present.get_mut(&n) {
                    Some(m) => m.push(has),
                    None if !has => {
                        return Err(DataError::Invalid(format!(
                            "graph {i} lacks '{n}', which is not marked partial"
                        )))
                    }
                    None => {}
                }
            }
            let n = f.n_atoms();
            if f.positions.len() != n || f.forces.as_ref().is_some_and(|x| x.len() != n) {
                return Err(DataError::Invalid(format!(
                    "graph {i}: arrays of different lengths"
                )));
            }
            b.graph_index.push(i);
            b.atom_offset.push(b.numbers.len());
            b.n_atoms.push(n);
            b.numbers.extend_from_slice(&f.numbers);
            b.positions.extend(f.positions.iter().flatten());
            b.cell.extend(f.cell.iter().flatten());
            b.pbc.extend_from_slice(&f.pbc);
            if let Some(v) = &mut b.energy {
                v.push(f.energy.unwrap_or(0.0));
            }
            if let Some(v) = &mut b.forces {
                match &f.forces {
                    Some(x) => v.extend(x.iter().flatten()),
                    None => v.extend(std::iter::repeat_n(0.0, 3 * n)),
                }
            }
            if let Some(v) = &mut b.stress {
                v.extend_from_slice(&f.stress.unwrap_or([0.0; 9]));
            }
            for (k, v) in &mut b.scalars {
                v.push(f.scalars.get(k).copied().unwrap_or(0.0));
            }
            for (k, p) in &mut b.atom_props {
                let Some(q) = f.atom_props.get(k) else {
                    p.values.extend(std::iter::repeat_n(0.0, n * p.width));
                    continue;
                };
                if q.values.len() != n * q.width || q.width != p.width {
                    return Err(DataError::Invalid(format!(
                        "graph {i}: per-atom '{k}' has {} values for {n} atoms of width {}",
                        q.values.len(),
                        p.width
                    )));
                }
                p.values.extend_from_slice(&q.values);
            }
        }
        Ok(b)
    }

    /// Whether graph `i` carries the label or property `name` (that the block has).
    pub fn has(&self, name: &str, i: usize) -> bool {
        self.present.get(name).is_none_or(|m| m[i])
    }

    /// Graph `i` as a [`Frame`].
    pub fn frame(&self, i: usize) -> Frame {
        let a = self.atoms_of(i);
        let v3 = |v: &[f64]| -> Vec<[f64; 3]> {
            v[3 * a.start..3 * a.end]
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect()
        };
        let c = &self.cell[9 * i..9 * i + 9];
        Frame {
            numbers: self.numbers[a.clone()].to_vec(),
            positions: v3(&self.positions),
            cell: [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], c[8]]],
            pbc: [self.pbc[3 * i], self.pbc[3 * i + 1], self.pbc[3 * i + 2]],
            energy: self
                .energy
                .as_ref()
                .filter(|_| self.has("energy", i))
                .map(|e| e[i]),
            forces: self
                .forces
                .as_ref()
                .filter(|_| self.has("forces", i))
                .map(|f| v3(f)),
            stress: self
                .stress
                .as_ref()
                .filter(|_| self.has("stress", i))
                .map(|s| s[9 * i..9 * i + 9].try_into().expect("9 values")),
            scalars: self
                .scalars
                .iter()
                .filter(|(k, _)| self.has(k, i))
                .map(|(k, v)| (k.clone(), v[i]))
                .collect(),
            atom_props: self
                .atom_props
                .iter()
                .filter(|(k, _)| self.has(k, i))
                .map(|(k, p)| {
                    (
                        k.clone(),
                        AtomProp {
                            width: p.width,
                            values: p.values[p.width * a.start..p.width * a.end].to_vec(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Every graph as a [`Frame`].
    pub fn frames(&self) -> Vec<Frame> {
        (0..self.n_graphs()).map(|i| self.frame(i)).collect()
    }

    /// The graphs at `positions` (indices into this block, any order, repeats allowed).
    pub fn select(&self, positions: &[usize]) -> FrameBlock {
        let mut b = FrameBlock {
            energy: self.energy.as_ref().map(|_| Vec::new()),
            forces: self.forces.as_ref().map(|_| Vec::new()),
            stress: self.stress.as_ref().map(|_| Vec::new()),
            scalars: self
                .scalars
                .keys()
                .map(|k| (k.clone(), Vec::new()))
                .collect(),
            atom_props: self
                .atom_props
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        AtomProp {
                            width: p.width,
                            values: Vec::new(),
                        },
                    )
                })
                .collect(),
            present: self
                .present
                .keys()
                .map(|k| (k.clone(), Vec::new()))
                .collect(),
            ..Default::default()
        };
        for &i in positions {
            for (k, m) in &mut b.present {
                m.push(self.present[k][i]);
            }
            let a = self.atoms_of(i);
            b.graph_index.push(self.graph_index[i]);
            b.atom_offset.push(b.numbers.len());
            b.n_atoms.push(self.n_atoms[i]);
            b.numbers.extend_from_slice(&self.numbers[a.clone()]);
            b.positions
                .extend_from_slice(&self.positions[3 * a.start..3 * a.end]);
            b.cell.extend_from_slice(&self.cell[9 * i..9 * i + 9]);
            b.pbc.extend_from_slice(&self.pbc[3 * i..3 * i + 3]);
            if let (Some(v), Some(s)) = (&mut b.energy, &self.energy) {
                v.push(s[i]);
            }
            if let (Some(v), Some(s)) = (&mut b.forces, &self.forces) {
                v.extend_from_slice(&s[3 * a.start..3 * a.end]);
            }
            if let (Some(v), Some(s)) = (&mut b.stress, &self.stress) {
                v.extend_from_slice(&s[9 * i..9 * i + 9]);
            }
            for (k, v) in &mut b.scalars {
                v.push(self.scalars[k][i]);
            }
            for (k, p) in &mut b.atom_props {
                let w = p.width;
                p.values
                    .extend_from_slice(&self.atom_props[k].values[w * a.start..w * a.end]);
            }
        }
        b
    }

    /// Appends the graphs of `other` (same layout).
    pub fn append(&mut self, other: &FrameBlock) {
        let base = self.numbers.len();
        self.graph_index.extend_from_slice(&other.graph_index);
        self.atom_offset
            .extend(other.atom_offset.iter().map(|o| o + base));
        self.n_atoms.extend_from_slice(&other.n_atoms);
        self.numbers.extend_from_slice(&other.numbers);
        self.positions.extend_from_slice(&other.positions);
        self.cell.extend_from_slice(&other.cell);
        self.pbc.extend_from_slice(&other.pbc);
        for (a, b) in [
            (&mut self.energy, &other.energy),
            (&mut self.forces, &other.forces),
            (&mut self.stress, &other.stress),
        ] {
            if let (Some(a), Some(b)) = (a, b) {
                a.extend_from_slice(b);
            }
        }
        for (k, v) in &mut self.scalars {
            v.extend_from_slice(&other.scalars[k]);
        }
        for (k, p) in &mut self.atom_props {
            p.values.extend_from_slice(&other.atom_props[k].values);
        }
        for (k, m) in &mut self.present {
            m.extend_from_slice(&other.present[k]);
        }
    }
}
