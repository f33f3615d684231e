//! What every graph of a dataset carries besides its structure ([`Layout`]), and what a dataset
//! holds according to its attributes ([`DatasetMeta`]).

use std::collections::BTreeMap;

use crate::data::extxyz::Frame;

/// What every graph of a dataset carries besides its structure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    /// Total energy.
    pub energy: bool,
    /// Forces.
    pub forces: bool,
    /// Stress.
    pub stress: bool,
    /// Per-graph scalars, by name (sorted).
    pub scalars: Vec<String>,
    /// Per-atom properties with their widths (sorted by name).
    pub atom_props: Vec<(String, usize)>,
}

impl Layout {
    /// The layout of one frame.
    pub fn of(f: &Frame) -> Layout {
        Layout {
            energy: f.energy.is_some(),
            forces: f.forces.is_some(),
            stress: f.stress.is_some(),
            scalars: f.scalars.keys().cloned().collect(),
            atom_props: f
                .atom_props
                .iter()
                .map(|(k, p)| (k.clone(), p.width))
                .collect(),
        }
    }

    /// The names of everything this layout carries: `energy`, `forces`, `stress`, the per-graph
    /// scalars, the per-atom properties (the keys of [`FrameBlock::present`](super::FrameBlock::present)).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            ("energy", self.energy),
            ("forces", self.forces),
            ("stress", self.stress),
        ]
        .iter()
        .filter(|(_, b)| *b)
        .map(|(n, _)| n.to_string())
        .collect();
        v.extend(self.scalars.iter().cloned());
        v.extend(self.atom_props.iter().map(|(n, _)| n.clone()));
        v
    }

    /// What either layout carries; `Err` names a per-atom property the two give different widths.
    pub fn union(&self, o: &Layout) -> std::result::Result<Layout, String> {
        let mut scalars = self.scalars.clone();
        for s in &o.scalars {
            if !scalars.contains(s) {
                scalars.push(s.clone());
            }
        }
        scalars.sort();
        let mut atom_props = self.atom_props.clone();
        for (n, w) in &o.atom_props {
            match atom_props.iter().find(|(m, _)| m == n) {
                Some((_, v)) if v != w => {
                    return Err(format!(
                        "the per-atom property '{n}' has {w} columns here and {v} elsewhere"
                    ))
                }
                Some(_) => {}
                None => atom_props.push((n.clone(), *w)),
            }
        }
        atom_props.sort();
        Ok(Layout {
            energy: self.energy || o.energy,
            forces: self.forces || o.forces,
            stress: self.stress || o.stress,
            scalars,
            atom_props,
        })
    }

    /// Whether this layout carries the label or property `name` (see [`Layout::names`]).
    pub fn has(&self, name: &str) -> bool {
        match name {
            "energy" => self.energy,
            "forces" => self.forces,
            "stress" => self.stress,
            n => self.scalars.iter().any(|s| s == n) || self.atom_props.iter().any(|(m, _)| m == n),
        }
    }

    /// What both layouts carry (a per-atom property of different widths is in neither).
    pub fn intersect(&self, o: &Layout) -> Layout {
        Layout {
            energy: self.energy && o.energy,
            forces: self.forces && o.forces,
            stress: self.stress && o.stress,
            scalars: self
                .scalars
                .iter()
                .filter(|s| o.scalars.contains(s))
                .cloned()
                .collect(),
            atom_props: self
                .atom_props
                .iter()
                .filter(|p| o.atom_props.contains(p))
                .cloned()
                .collect(),
        }
    }

    /// The first difference of `other` from `self`, as a sentence about `other`, or `None`.
    pub fn diff(&self, other: &Layout) -> Option<String> {
        for (name, a, b) in [
            ("energy", self.energy, other.energy),
            ("forces", self.forces, other.forces),
            ("stress", self.stress, other.stress),
        ] {
            if a != b {
                return Some(if a {
                    format!("lacks '{name}'")
                } else {
                    format!("has '{name}'")
                });
            }
        }
        if let Some(s) = self.scalars.iter().find(|s| !other.scalars.contains(s)) {
            return Some(format!("lacks the per-frame property '{s}'"));
        }
        if let Some(s) = other.scalars.iter().find(|s| !self.scalars.contains(s)) {
            return Some(format!("has the per-frame property '{s}'"));
        }
        for (n, w) in &self.atom_props {
            match other.atom_props.iter().find(|(m, _)| m == n) {
                None => return Some(format!("lacks the per-atom property '{n}'")),
                Some((_, v)) if v != w => {
                    return Some(format!(
                        "has the per-atom property '{n}' with {v} columns, not {w}"
                    ))
                }
                _ => {}
            }
        }
        if let Some((n, _)) = other
            .atom_props
            .iter()
            .find(|(n, _)| !self.atom_props.iter().any(|(m, _)| m == n))
        {
            return Some(format!("has the per-atom property '{n}'"));
        }
        None
    }

    /// Removes from `f` whatever this layout does not carry.
    pub fn restrict(&self, f: &mut Frame) {
        if !self.energy {
            f.energy = None;
        }
        if !self.forces {
            f.forces = None;
        }
        if !self.stress {
            f.stress = None;
        }
        f.scalars.retain(|k, _| self.scalars.contains(k));
        f.atom_props
            .retain(|k, p| self.atom_props.iter().any(|(n, w)| n == k && *w == p.width));
    }
}

/// A property stored in a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyInfo {
    /// Name (the extxyz key or column name).
    pub name: String,
    /// Components per graph or per atom.
    pub width: usize,
    /// Unit ("" when unknown).
    pub unit: String,
}

/// What a dataset holds, from its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetMeta {
    /// The `dataset_name` attribute.
    pub name: String,
    /// The `schema_version` attribute.
    pub schema_version: i32,
    /// Atomic numbers present in any split, ascending.
    pub elements: Vec<i32>,
    /// Per-element reference energies (eV) aligned with `elements`, fitted on the trainset.
    pub reference_energies: Vec<f64>,
    /// Which labels and properties the graphs carry (every graph, or some: see `partial`).
    pub layout: Layout,
    /// Labels and properties that only some graphs carry (schema version 2; each has a per-graph
    /// presence mask `<split>/present/<name>`); empty for a version 1 dataset.
    pub partial: Vec<String>,
    /// Per-graph scalar properties besides the fixed labels.
    pub scalars: Vec<PropertyInfo>,
    /// Per-atom properties besides forces.
    pub atom_props: Vec<PropertyInfo>,
    /// Split names with their graph counts.
    pub splits: Vec<(String, usize)>,
    /// The files the dataset was ingested from.
    pub sources: Vec<String>,
    /// Units by array name (`positions`, `energy`, `graph/<name>`, `atom/<name>` ...).
    pub units: BTreeMap<String, String>,
}

impl DatasetMeta {
    /// The reference energy of element `z` (0 when the dataset has none for it).
    pub fn reference_energy(&self, z: i32) -> f64 {
        self.elements
            .binary_search(&z)
            .ok()
            .and_then(|i| self.reference_energies.get(i).copied())
            .unwrap_or(0.0)
    }

    /// Whether graphs carry the named label or property (`energy`, `forces`, `stress`, a per-graph
    /// scalar or a per-atom property): all of them, or some (see [`DatasetMeta::is_partial`]).
    pub fn has(&self, name: &str) -> bool {
        match name {
            "energy" => self.layout.energy,
            "forces" => self.layout.forces,
            "stress" => self.layout.stress,
            n => {
                self.scalars.iter().any(|p| p.name == n)
                    || self.atom_props.iter().any(|p| p.name == n)
            }
        }
    }

    /// Whether only some graphs carry the label or property `name`.
    pub fn is_partial(&self, name: &str) -> bool {
        self.partial.iter().any(|p| p == name)
    }

    /// Number of graphs of `split` (0 when absent).
    pub fn n_graphs(&self, split: &str) -> usize {
        self.splits
            .iter()
            .find(|(s, _)| s == split)
            .map_or(0, |(_, n)| *n)
    }
}
