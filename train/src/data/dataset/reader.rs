//! Reading a dataset: its attributes on open, then any contiguous range (or any set) of a split's
//! graphs as one slice read per array.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use crate::data::adios::Reader;
use crate::data::error::{DataError, Result};
use crate::data::extxyz::Frame;

use super::{
    shard_range, DatasetMeta, FrameBlock, Layout, PropertyInfo, FIXED_UNITS, SCHEMA, SCHEMA_VERSION,
};

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
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(DataError::schema(
                &p,
                format!(
                    "schema version {version}, this build reads versions 1 to {SCHEMA_VERSION}"
                ),
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
        // Version 1 has no masks: every graph carries every label.
        let partial = if version >= 2 {
            strs("partial_labels")?
        } else {
            Vec::new()
        };
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
            partial,
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
    pub fn read_block(&self, range: Range<usize>) -> Result<FrameBlock> {
        let g = self.n_graphs();
        if range.start > range.end || range.end > g {
            return Err(DataError::Invalid(format!(
                "{}: graphs {range:?} out of 0..{g} ({})",
                self.name,
                self.ds.path().display()
            )));
        }
        let layout = &self.ds.meta.layout;
        let mut b = FrameBlock::empty(layout);
        for n in &self.ds.meta.partial {
            b.present.insert(n.clone(), Vec::new());
        }
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
        for (k, m) in &mut b.present {
            *m = r
                .read::<u8>(&self.var(&format!("present/{k}")), &[g0], &[ng])?
                .into_iter()
                .map(|x| x != 0)
                .collect();
        }
        Ok(b)
    }

    /// Reads the graphs `range` as [`Frame`]s.
    pub fn read_graphs(&self, range: Range<usize>) -> Result<Vec<Frame>> {
        Ok(self.read_block(range)?.frames())
    }

    /// Reads the graphs at `indices` (any order, repeats allowed), in that order, coalescing
    /// consecutive indices into one slice read each.
    pub fn read_indices(&self, indices: &[usize]) -> Result<FrameBlock> {
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
        let mut all = self.read_block(0..0)?;
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i + 1;
            while j < sorted.len() && sorted[j] == sorted[j - 1] + 1 {
                j += 1;
            }
            all.append(&self.read_block(sorted[i]..sorted[j - 1] + 1)?);
            i = j;
        }
        let pos: Vec<usize> = indices
            .iter()
            .map(|x| sorted.binary_search(x).expect("present"))
            .collect();
        Ok(all.select(&pos))
    }

    /// Reads the contiguous shard of `rank` among `size` ranks.
    pub fn read_shard(&self, rank: usize, size: usize) -> Result<FrameBlock> {
        self.read_block(self.shard(rank, size)?)
    }
}
