//! The ADIOS2 BP dataset (schema: docs/dataset-schema.md): per split, every graph concatenated
//! into global arrays with per-graph atom counts and offsets, plus attributes describing the
//! dataset. [`write_dataset`] writes one; [`Dataset`] opens one, and a [`SplitReader`] reads any
//! contiguous range of graphs as one slice read per array ([`Batch`]), never a file per graph.
//! [`shard_range`] and [`shard_strided`] split graphs among MPI ranks.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::adios::{Reader, Writer};
use super::error::{DataError, Result};
use super::extxyz::{AtomProp, Frame};
use super::refenergy::ReferenceEnergies;

/// Value of the `schema` attribute.
pub const SCHEMA: &str = "hydragnn-rs.dataset";
/// Value of the `schema_version` attribute this code writes and reads.
pub const SCHEMA_VERSION: i32 = 1;
/// The split names, in HydraGNN's spelling.
pub const SPLITS: [&str; 3] = ["trainset", "valset", "testset"];

/// Units of the fixed arrays.
pub const FIXED_UNITS: [(&str, &str); 5] = [
    ("positions", "Angstrom"),
    ("cell", "Angstrom"),
    ("energy", "eV"),
    ("forces", "eV/Angstrom"),
    ("stress", "eV/Angstrom^3"),
];

/// Units assumed for well-known property names when the caller gives none.
pub fn default_unit(name: &str) -> &'static str {
    match name {
        "gap" | "homo" | "lumo" | "free_energy" | "energy" | "energies" | "homo_lumo_gap" => "eV",
        "charge" | "charges" | "initial_charges" => "e",
        "dipole" => "e*Angstrom",
        "forces" => "eV/Angstrom",
        "stress" => "eV/Angstrom^3",
        "magmom" | "magmoms" | "initial_magmoms" => "mu_B",
        "masses" => "amu",
        _ => "",
    }
}

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

/// Graphs as concatenated arrays, the unit the trainer batches (and what a slice read returns).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
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
}

impl Batch {
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

    /// An empty batch with the arrays of `layout` present.
    fn empty(layout: &Layout) -> Batch {
        Batch {
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

    /// Concatenates frames that share one [`Layout`] (graph indices 0..n).
    pub fn from_frames(frames: &[Frame]) -> Result<Batch> {
        let layout = frames.first().map(Layout::of).unwrap_or_default();
        let mut b = Batch::empty(&layout);
        for (i, f) in frames.iter().enumerate() {
            if let Some(d) = layout.diff(&Layout::of(f)) {
                return Err(DataError::Invalid(format!(
                    "graph {i} {d}, which graph 0 does not"
                )));
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
            if let (Some(v), Some(e)) = (&mut b.energy, f.energy) {
                v.push(e);
            }
            if let (Some(v), Some(x)) = (&mut b.forces, &f.forces) {
                v.extend(x.iter().flatten());
            }
            if let (Some(v), Some(s)) = (&mut b.stress, &f.stress) {
                v.extend_from_slice(s);
            }
            for (k, v) in &mut b.scalars {
                v.push(f.scalars[k]);
            }
            for (k, p) in &mut b.atom_props {
                let q = &f.atom_props[k];
                if q.values.len() != n * q.width {
                    return Err(DataError::Invalid(format!(
                        "graph {i}: per-atom '{k}' has {} values for {n} atoms",
                        q.values.len()
                    )));
                }
                p.values.extend_from_slice(&q.values);
            }
        }
        Ok(b)
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
            energy: self.energy.as_ref().map(|e| e[i]),
            forces: self.forces.as_ref().map(|f| v3(f)),
            stress: self
                .stress
                .as_ref()
                .map(|s| s[9 * i..9 * i + 9].try_into().expect("9 values")),
            scalars: self
                .scalars
                .iter()
                .map(|(k, v)| (k.clone(), v[i]))
                .collect(),
            atom_props: self
                .atom_props
                .iter()
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

    /// The graphs at `positions` (indices into this batch, any order, repeats allowed).
    pub fn select(&self, positions: &[usize]) -> Batch {
        let mut b = Batch {
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
            ..Default::default()
        };
        for &i in positions {
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
    pub fn append(&mut self, other: &Batch) {
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
    }
}

/// Graphs `rank` owns when `n` graphs are split into `size` contiguous, balanced shards (the first
/// `n % size` ranks get one more).
///
/// # Panics
/// When `size == 0` or `rank >= size`.
pub fn shard_range(n: usize, rank: usize, size: usize) -> Range<usize> {
    assert!(
        size > 0 && rank < size,
        "shard_range: rank {rank} of size {size}"
    );
    let (q, r) = (n / size, n % size);
    let start = rank * q + rank.min(r);
    start..start + q + usize::from(rank < r)
}

/// Graphs `rank` owns when `n` graphs are dealt round-robin to `size` ranks: `rank, rank + size, ...`.
///
/// # Panics
/// When `size == 0` or `rank >= size`.
pub fn shard_strided(n: usize, rank: usize, size: usize) -> Vec<usize> {
    assert!(
        size > 0 && rank < size,
        "shard_strided: rank {rank} of size {size}"
    );
    (rank..n).step_by(size).collect()
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
    /// Which fixed labels every graph has.
    pub layout: Layout,
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
    /// scalar or a per-atom property).
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

    /// Number of graphs of `split` (0 when absent).
    pub fn n_graphs(&self, split: &str) -> usize {
        self.splits
            .iter()
            .find(|(s, _)| s == split)
            .map_or(0, |(_, n)| *n)
    }
}

/// What [`write_dataset`] writes besides the graphs.
#[derive(Clone, Debug, Default)]
pub struct DatasetInfo {
    /// Dataset name.
    pub name: String,
    /// Reference energies (normally fitted on the trainset).
    pub reference: Option<ReferenceEnergies>,
    /// Units of properties by name; [`default_unit`] fills the rest.
    pub units: BTreeMap<String, String>,
    /// Source file names.
    pub sources: Vec<String>,
}

/// Writes a dataset of named splits to the BP file `path` (overwriting it). Every frame of every
/// split must share one [`Layout`]. Not atomic by itself: [`super::ingest`] writes to a temporary
/// name and renames.
pub fn write_dataset(
    path: &Path,
    info: &DatasetInfo,
    splits: &[(String, Vec<Frame>)],
) -> Result<DatasetMeta> {
    let first = splits.iter().flat_map(|(_, f)| f.first()).next();
    let layout = first.map(Layout::of).unwrap_or_default();
    for (s, frames) in splits {
        for (i, f) in frames.iter().enumerate() {
            if let Some(d) = layout.diff(&Layout::of(f)) {
                return Err(DataError::Invalid(format!(
                    "{s} graph {i} {d}, unlike the first graph"
                )));
            }
        }
    }
    let mut elements: Vec<i32> = splits
        .iter()
        .flat_map(|(_, f)| f.iter().flat_map(|f| f.numbers.iter().copied()))
        .collect();
    elements.sort_unstable();
    elements.dedup();
    let reference_energies: Vec<f64> = elements
        .iter()
        .map(|&z| info.reference.as_ref().map_or(0.0, |r| r.of(z)))
        .collect();

    let mut units: BTreeMap<String, String> = FIXED_UNITS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let unit = |n: &str| {
        info.units
            .get(n)
            .cloned()
            .unwrap_or_else(|| default_unit(n).to_string())
    };
    for s in &layout.scalars {
        units.insert(format!("graph/{s}"), unit(s));
    }
    for (a, _) in &layout.atom_props {
        units.insert(format!("atom/{a}"), unit(a));
    }

    let mut w = Writer::create(path)?;
    w.attr_str("schema", SCHEMA)?;
    w.attr("schema_version", SCHEMA_VERSION)?;
    w.attr_str("dataset_name", &info.name)?;
    let split_names: Vec<String> = splits.iter().map(|(s, _)| s.clone()).collect();
    if !split_names.is_empty() {
        w.attr_strs("splits", &split_names)?;
    }
    if !elements.is_empty() {
        w.attr_array("elements", &elements)?;
        w.attr_array("reference_energies", &reference_energies)?;
    }
    if let Some(r) = &info.reference {
        w.attr("reference_energies/rmse", r.rmse)?;
        w.attr("reference_energies/rank", r.rank as i32)?;
        w.attr_str(
            "reference_energies/fit",
            "least squares E_g = sum_Z n_gZ e_Z over the trainset (SVD)",
        )?;
    }
    let labels: Vec<String> = [
        ("energy", layout.energy),
        ("forces", layout.forces),
        ("stress", layout.stress),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| n.to_string())
    .collect();
    if !labels.is_empty() {
        w.attr_strs("labels", &labels)?;
    }
    if !layout.scalars.is_empty() {
        w.attr_strs("graph_properties", &layout.scalars)?;
    }
    if !layout.atom_props.is_empty() {
        w.attr_strs(
            "atom_properties",
            &layout
                .atom_props
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
        )?;
        w.attr_array(
            "atom_property_widths",
            &layout
                .atom_props
                .iter()
                .map(|(_, w)| *w as i32)
                .collect::<Vec<_>>(),
        )?;
    }
    for (k, u) in &units {
        w.attr_str(&format!("units/{k}"), u)?;
    }
    w.attr_str(
        "stress_convention",
        "ASE: (1/V) dE/d(strain), 3x3 row-major, = -virial/V",
    )?;
    if !info.sources.is_empty() {
        w.attr_strs("sources", &info.sources)?;
    }

    let mut split_counts = Vec::new();
    for (s, frames) in splits {
        let b = Batch::from_frames(frames)?;
        let (g, n) = (b.n_graphs(), b.total_atoms());
        w.attr(&format!("{s}/n_graphs"), g as i64)?;
        w.attr(&format!("{s}/n_atoms_total"), n as i64)?;
        split_counts.push((s.clone(), g));
        if g == 0 {
            continue;
        }
        let v = |name: &str| format!("{s}/{name}");
        w.put(
            &v("n_atoms"),
            &[g],
            &b.n_atoms.iter().map(|&x| x as i64).collect::<Vec<_>>(),
        )?;
        w.put(
            &v("atom_offset"),
            &[g],
            &b.atom_offset.iter().map(|&x| x as i64).collect::<Vec<_>>(),
        )?;
        w.put(&v("numbers"), &[n], &b.numbers)?;
        w.put(&v("positions"), &[n, 3], &b.positions)?;
        w.put(&v("cell"), &[g, 9], &b.cell)?;
        w.put(
            &v("pbc"),
            &[g, 3],
            &b.pbc.iter().map(|&p| u8::from(p)).collect::<Vec<_>>(),
        )?;
        if let Some(e) = &b.energy {
            w.put(&v("energy"), &[g], e)?;
        }
        if let Some(f) = &b.forces {
            w.put(&v("forces"), &[n, 3], f)?;
        }
        if let Some(st) = &b.stress {
            w.put(&v("stress"), &[g, 9], st)?;
        }
        for (k, x) in &b.scalars {
            w.put(&v(&format!("graph/{k}")), &[g], x)?;
        }
        for (k, p) in &b.atom_props {
            w.put(&v(&format!("atom/{k}")), &[n, p.width], &p.values)?;
        }
    }
    w.close()?;
    let unit_of = |k: String| units.get(&k).cloned().unwrap_or_default();
    Ok(DatasetMeta {
        name: info.name.clone(),
        schema_version: SCHEMA_VERSION,
        elements,
        reference_energies,
        scalars: layout
            .scalars
            .iter()
            .map(|n| PropertyInfo {
                name: n.clone(),
                width: 1,
                unit: unit_of(format!("graph/{n}")),
            })
            .collect(),
        atom_props: layout
            .atom_props
            .iter()
            .map(|(n, w)| PropertyInfo {
                name: n.clone(),
                width: *w,
                unit: unit_of(format!("atom/{n}")),
            })
            .collect(),
        layout,
        splits: split_counts,
        sources: info.sources.clone(),
        units,
    })
}

/// An open dataset. Reading is not thread-safe: a `Dataset` may move between threads but is not
/// shared by them; open it once per thread or rank.
pub struct Dataset {
    reader: Reader,
    meta: DatasetMeta,
}

impl Dataset {
    /// Opens the dataset at `path` and reads its attributes.
    pub fn open(path: impl AsRef<Path>) -> Result<Dataset> {
        let reader = Reader::open(path)?;
        let p = reader.path().to_path_buf();
        let schema = reader.attr_str("schema")?;
        if schema.as_deref() != Some(SCHEMA) {
            return Err(DataError::schema(&p, format!("not a hydragnn-rs dataset (attribute 'schema' is {schema:?}, expected \"{SCHEMA}\")")));
        }
        let version = reader
            .attr::<i32>("schema_version")?
            .and_then(|v| v.first().copied())
            .unwrap_or(-1);
        if version != SCHEMA_VERSION {
            return Err(DataError::schema(
                &p,
                format!("schema version {version}, this build reads version {SCHEMA_VERSION}"),
            ));
        }
        let strs =
            |name: &str| -> Result<Vec<String>> { Ok(reader.attr_strs(name)?.unwrap_or_default()) };
        let name = reader.attr_str("dataset_name")?.unwrap_or_default();
        let elements = reader.attr::<i32>("elements")?.unwrap_or_default();
        let reference_energies = reader
            .attr::<f64>("reference_energies")?
            .unwrap_or_else(|| vec![0.0; elements.len()]);
        if reference_energies.len() != elements.len() {
            return Err(DataError::schema(
                &p,
                format!(
                    "{} reference energies for {} elements",
                    reference_energies.len(),
                    elements.len()
                ),
            ));
        }
        let labels = strs("labels")?;
        let scalar_names = strs("graph_properties")?;
        let atom_names = strs("atom_properties")?;
        let widths = reader
            .attr::<i32>("atom_property_widths")?
            .unwrap_or_default();
        if widths.len() != atom_names.len() {
            return Err(DataError::schema(
                &p,
                "attributes 'atom_properties' and 'atom_property_widths' differ in length",
            ));
        }
        let mut units = BTreeMap::new();
        let mut unit = |k: String| -> Result<String> {
            let u = reader.attr_str(&format!("units/{k}"))?.unwrap_or_default();
            units.insert(k, u.clone());
            Ok(u)
        };
        for (k, _) in FIXED_UNITS {
            unit(k.to_string())?;
        }
        let scalars = scalar_names
            .iter()
            .map(|n| {
                Ok(PropertyInfo {
                    name: n.clone(),
                    width: 1,
                    unit: unit(format!("graph/{n}"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let atom_props = atom_names
            .iter()
            .zip(&widths)
            .map(|(n, &w)| {
                Ok(PropertyInfo {
                    name: n.clone(),
                    width: w.max(1) as usize,
                    unit: unit(format!("atom/{n}"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let layout = Layout {
            energy: labels.iter().any(|l| l == "energy"),
            forces: labels.iter().any(|l| l == "forces"),
            stress: labels.iter().any(|l| l == "stress"),
            scalars: scalar_names.clone(),
            atom_props: atom_props
                .iter()
                .map(|p| (p.name.clone(), p.width))
                .collect(),
        };
        let mut splits = Vec::new();
        for s in strs("splits")? {
            let g = reader
                .attr::<i64>(&format!("{s}/n_graphs"))?
                .and_then(|v| v.first().copied())
                .unwrap_or(0);
            splits.push((s, g.max(0) as usize));
        }
        let sources = strs("sources")?;
        let meta = DatasetMeta {
            name,
            schema_version: version,
            elements,
            reference_energies,
            layout,
            scalars,
            atom_props,
            splits,
            sources,
            units,
        };
        Ok(Dataset { reader, meta })
    }

    /// The dataset's description.
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }

    /// The BP file.
    pub fn path(&self) -> &Path {
        self.reader.path()
    }

    /// Opens split `name` (`trainset`, `valset`, `testset`): reads its per-graph atom counts and
    /// offsets and checks them against the atom arrays.
    pub fn split(&self, name: &str) -> Result<SplitReader<'_>> {
        let Some(&(_, g)) = self.meta.splits.iter().find(|(s, _)| s == name) else {
            let have: Vec<&str> = self.meta.splits.iter().map(|(s, _)| s.as_str()).collect();
            return Err(DataError::schema(
                self.path(),
                format!("no split '{name}' (splits: {have:?})"),
            ));
        };
        let mut sr = SplitReader {
            ds: self,
            name: name.to_string(),
            n_atoms: vec![],
            offsets: vec![],
            total: 0,
        };
        if g == 0 {
            return Ok(sr);
        }
        let n_atoms = self.reader.read::<i64>(&sr.var("n_atoms"), &[0], &[g])?;
        let offsets = self
            .reader
            .read::<i64>(&sr.var("atom_offset"), &[0], &[g])?;
        let total = self
            .reader
            .shape(&sr.var("numbers"))?
            .and_then(|s| s.first().copied())
            .unwrap_or(0);
        let mut acc = 0i64;
        for (i, (&n, &o)) in n_atoms.iter().zip(&offsets).enumerate() {
            if n <= 0 || o != acc {
                return Err(DataError::schema(self.path(), format!("{name}: graph {i} has n_atoms {n} and atom_offset {o} (expected offset {acc})")));
            }
            acc += n;
        }
        if acc as usize != total {
            return Err(DataError::schema(
                self.path(),
                format!("{name}: n_atoms add up to {acc}, '{name}/numbers' holds {total}"),
            ));
        }
        sr.n_atoms = n_atoms.iter().map(|&n| n as usize).collect();
        sr.offsets = offsets.iter().map(|&o| o as usize).collect();
        sr.total = total;
        Ok(sr)
    }
}

/// Reads graphs of one split.
pub struct SplitReader<'a> {
    ds: &'a Dataset,
    name: String,
    n_atoms: Vec<usize>,
    offsets: Vec<usize>,
    total: usize,
}

impl SplitReader<'_> {
    fn var(&self, v: &str) -> String {
        format!("{}/{v}", self.name)
    }

    /// The split's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of graphs.
    pub fn n_graphs(&self) -> usize {
        self.n_atoms.len()
    }

    /// Atoms per graph.
    pub fn n_atoms(&self) -> &[usize] {
        &self.n_atoms
    }

    /// Atoms over all graphs.
    pub fn total_atoms(&self) -> usize {
        self.total
    }

    /// The contiguous shard of `rank` among `size` ranks ([`shard_range`]).
    pub fn shard(&self, rank: usize, size: usize) -> Result<Range<usize>> {
        if size == 0 || rank >= size {
            return Err(DataError::Invalid(format!(
                "shard: rank {rank} is not in 0..{size}"
            )));
        }
        Ok(shard_range(self.n_graphs(), rank, size))
    }

    /// Reads the graphs `range` as one slice read per array.
    pub fn read_batch(&self, range: Range<usize>) -> Result<Batch> {
        let g = self.n_graphs();
        if range.start > range.end || range.end > g {
            return Err(DataError::Invalid(format!(
                "{}: graphs {range:?} out of 0..{g} ({})",
                self.name,
                self.ds.path().display()
            )));
        }
        let layout = &self.ds.meta.layout;
        let mut b = Batch::empty(layout);
        if range.is_empty() {
            return Ok(b);
        }
        let (g0, ng) = (range.start, range.len());
        let a0 = self.offsets[g0];
        let na = self.offsets[range.end - 1] + self.n_atoms[range.end - 1] - a0;
        let r = &self.ds.reader;
        b.graph_index = range.clone().collect();
        b.n_atoms = self.n_atoms[range.clone()].to_vec();
        b.atom_offset = self.offsets[range.clone()].iter().map(|o| o - a0).collect();
        b.numbers = r.read(&self.var("numbers"), &[a0], &[na])?;
        b.positions = r.read(&self.var("positions"), &[a0, 0], &[na, 3])?;
        b.cell = r.read(&self.var("cell"), &[g0, 0], &[ng, 9])?;
        b.pbc = r
            .read::<u8>(&self.var("pbc"), &[g0, 0], &[ng, 3])?
            .into_iter()
            .map(|p| p != 0)
            .collect();
        if layout.energy {
            b.energy = Some(r.read(&self.var("energy"), &[g0], &[ng])?);
        }
        if layout.forces {
            b.forces = Some(r.read(&self.var("forces"), &[a0, 0], &[na, 3])?);
        }
        if layout.stress {
            b.stress = Some(r.read(&self.var("stress"), &[g0, 0], &[ng, 9])?);
        }
        for (k, v) in &mut b.scalars {
            *v = r.read(&self.var(&format!("graph/{k}")), &[g0], &[ng])?;
        }
        for (k, p) in &mut b.atom_props {
            p.values = r.read(&self.var(&format!("atom/{k}")), &[a0, 0], &[na, p.width])?;
        }
        Ok(b)
    }

    /// Reads the graphs `range` as [`Frame`]s.
    pub fn read_graphs(&self, range: Range<usize>) -> Result<Vec<Frame>> {
        Ok(self.read_batch(range)?.frames())
    }

    /// Reads the graphs at `indices` (any order, repeats allowed), in that order, coalescing
    /// consecutive indices into one slice read each.
    pub fn read_indices(&self, indices: &[usize]) -> Result<Batch> {
        let mut sorted: Vec<usize> = indices.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if let Some(&last) = sorted.last() {
            if last >= self.n_graphs() {
                return Err(DataError::Invalid(format!(
                    "{}: graph {last} out of 0..{}",
                    self.name,
                    self.n_graphs()
                )));
            }
        }
        let mut all = self.read_batch(0..0)?;
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i + 1;
            while j < sorted.len() && sorted[j] == sorted[j - 1] + 1 {
                j += 1;
            }
            all.append(&self.read_batch(sorted[i]..sorted[j - 1] + 1)?);
            i = j;
        }
        let pos: Vec<usize> = indices
            .iter()
            .map(|x| sorted.binary_search(x).expect("present"))
            .collect();
        Ok(all.select(&pos))
    }

    /// Reads the contiguous shard of `rank` among `size` ranks.
    pub fn read_shard(&self, rank: usize, size: usize) -> Result<Batch> {
        self.read_batch(self.shard(rank, size)?)
    }
}

/// The path `<path>.tmp` next to `path` (where datasets are written before the rename).
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}
