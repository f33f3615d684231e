//! Writing a dataset: every split's graphs as global arrays, plus the attributes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::data::adios::Writer;
use crate::data::error::{DataError, Result};
use crate::data::extxyz::Frame;
use crate::data::refenergy::ReferenceEnergies;

use super::{
    default_unit, DatasetMeta, FrameBlock, Layout, PropertyInfo, FIXED_UNITS, SCHEMA,
    SCHEMA_VERSION,
};

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

/// Writes a dataset of named splits to the BP file `path` (overwriting it). The dataset carries
/// every label and property any frame carries; those that only some frames carry get a per-graph
/// presence mask (`<split>/present/<name>`, listed in the attribute `partial_labels`). Not atomic by itself: [`ingest`](mod@crate::data::ingest) writes to a temporary
/// name and renames.
pub fn write_dataset(
    path: &Path,
    info: &DatasetInfo,
    splits: &[(String, Vec<Frame>)],
) -> Result<DatasetMeta> {
    let mut layout = Layout::default();
    let mut seen = false;
    for (s, frames) in splits {
        for (i, f) in frames.iter().enumerate() {
            let l = Layout::of(f);
            layout = if seen {
                layout
                    .union(&l)
                    .map_err(|e| DataError::Invalid(format!("{s} graph {i}: {e}")))?
            } else {
                l
            };
            seen = true;
        }
    }
    let partial: Vec<String> = layout
        .names()
        .into_iter()
        .filter(|n| {
            splits
                .iter()
                .any(|(_, fs)| fs.iter().any(|f| !Layout::of(f).has(n)))
        })
        .collect();
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
    if !partial.is_empty() {
        w.attr_strs("partial_labels", &partial)?;
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
        let b = FrameBlock::from_frames_as(&layout, &partial, frames)
            .map_err(|e| DataError::Invalid(format!("{s}: {e}")))?;
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
        for (k, m) in &b.present {
            let flags: Vec<u8> = m.iter().map(|&x| u8::from(x)).collect();
            w.put(&v(&format!("present/{k}")), &[g], &flags)?;
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
        partial,
        splits: split_counts,
        sources: info.sources.clone(),
        units,
    })
}
