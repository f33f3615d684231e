//! What screening writes: the table's columns, each window's rows as a chunk file committed
//! atomically (the unit of resume), and the merge of the chunks into one CSV in input order, an
//! ADIOS2 file of the per-structure values, the top-k table and a histogram PNG.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlip::model::config::HeadKind;
use mlip::{Model, Results};

use crate::data::adios::Writer;
use crate::error::{Error, Result};

/// A head of the branch that gets columns (besides the energy).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadColumn {
    /// Head name (`gap`).
    pub name: String,
    /// Components.
    pub dim: usize,
    /// A node head (its columns are the mean over the atoms).
    pub node: bool,
}

/// The table's columns: fixed ones, then the numeric ones this run computes, then `error`.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// `fmax` (forces computed).
    pub forces: bool,
    /// The six stress components (periodic structures only).
    pub stress: bool,
    /// Other heads of the branch.
    pub heads: Vec<HeadColumn>,
    /// An ensemble of more than one member: the deviation columns after the others
    /// (`energy_std`; `max_devi_f`, `avg_devi_f` with forces; `max_devi_v` with the stress).
    pub ensemble: bool,
}

/// The columns before the numeric ones.
pub const FIXED: [&str; 5] = ["index", "source", "frame", "n_atoms", "formula"];
/// Stress components, ASE's Voigt order.
pub const STRESS: [&str; 6] = [
    "stress_xx",
    "stress_yy",
    "stress_zz",
    "stress_yz",
    "stress_xz",
    "stress_xy",
];

impl Columns {
    /// The columns of branch `branch` of `model`.
    pub fn of_model(model: &Model, branch: usize, forces: bool, stress: bool) -> Columns {
        let heads = model.config().branches[branch]
            .output_heads
            .iter()
            .filter(|h| h.name != "energy")
            .map(|h| HeadColumn {
                name: h.name.clone(),
                dim: h.dim.max(1) as usize,
                node: h.kind == HeadKind::Node,
            })
            .collect();
        Columns {
            forces,
            stress,
            heads,
            ensemble: false,
        }
    }

    /// The deviation columns of an ensemble: `energy_std` (eV, population std of the members'
    /// total energies), `max_devi_f` and `avg_devi_f` (eV/Å, DeePMD's), `max_devi_v` (eV/atom).
    pub fn deviation_names(&self) -> Vec<String> {
        let mut c = Vec::new();
        if self.ensemble {
            c.push("energy_std".to_string());
            if self.forces {
                c.extend(["max_devi_f".to_string(), "avg_devi_f".to_string()]);
            }
            if self.stress {
                c.push("max_devi_v".into());
            }
        }
        c
    }

    /// The values of [`Columns::deviation_names`] for one structure.
    pub fn deviation_values(&self, d: &mlip::ensemble::Deviation) -> Vec<f64> {
        let mut v = Vec::new();
        if self.ensemble {
            v.push(d.energy_std);
            if self.forces {
                v.extend([d.max_f, d.avg_f]);
            }
            if self.stress {
                v.push(d.max_v);
            }
        }
        v
    }

    /// Names of the numeric columns, in order.
    pub fn numeric(&self) -> Vec<String> {
        let mut c = vec!["energy".to_string(), "energy_per_atom".to_string()];
        if self.forces {
            c.push("fmax".into());
        }
        if self.stress {
            c.extend(STRESS.iter().map(|s| s.to_string()));
        }
        for h in &self.heads {
            let base = if h.node {
                format!("{}_mean", h.name)
            } else {
                h.name.clone()
            };
            if h.dim == 1 {
                c.push(base);
            } else {
                c.extend((0..h.dim).map(|k| format!("{base}_{k}")));
            }
        }
        c.extend(self.deviation_names());
        c
    }

    /// Every column name, in order.
    pub fn all(&self) -> Vec<String> {
        let mut c: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
        c.extend(self.numeric());
        c.push("error".into());
        c
    }

    /// The numeric values of one evaluated structure (NaN where a value does not apply: the
    /// stress of a structure that is not periodic in 3D).
    pub fn values(&self, n_atoms: usize, volume: Option<f64>, r: &Results) -> Vec<f64> {
        let mut v = vec![r.energy, r.energy / n_atoms as f64];
        if self.forces {
            let fmax = r.forces[..n_atoms]
                .iter()
                .map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt())
                .fold(0.0, f64::max);
            v.push(fmax);
        }
        if self.stress {
            match volume {
                Some(vol) => {
                    let s = r.stress(vol);
                    v.extend([s[0][0], s[1][1], s[2][2], s[1][2], s[0][2], s[0][1]]);
                }
                None => v.extend([f64::NAN; 6]),
            }
        }
        for h in &self.heads {
            let x = r.properties.get(&h.name);
            for k in 0..h.dim {
                let val = match x {
                    None => f64::NAN,
                    Some(x) if h.node => {
                        (0..n_atoms).map(|a| x[a * h.dim + k]).sum::<f64>() / n_atoms as f64
                    }
                    Some(x) => x[k],
                };
                v.push(val);
            }
        }
        v
    }
}

/// The chemical formula in Hill order (C, H, then alphabetical; alphabetical without carbon).
pub fn formula(numbers: &[i32]) -> String {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for &z in numbers {
        *count.entry(mlip::elements::symbol(z)).or_default() += 1;
    }
    let mut out = String::new();
    let mut put = |s: &str, n: usize| {
        out.push_str(s);
        if n > 1 {
            out.push_str(&n.to_string());
        }
    };
    if let Some(c) = count.remove("C") {
        put("C", c);
        if let Some(h) = count.remove("H") {
            put("H", h);
        }
    }
    for (s, n) in count {
        put(s, n);
    }
    out
}

/// A CSV field, quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV line (fields quoted as [`csv_field`] writes them).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.is_empty() => quoted = true,
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A number as the table writes it: the shortest text that reads back to the same f64; empty
/// for NaN (a value that does not apply).
pub fn num(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        format!("{x}")
    }
}

/// One row of the table.
#[allow(clippy::too_many_arguments)]
pub fn row(
    index: usize,
    source: &str,
    frame: usize,
    numbers: Option<&[i32]>,
    values: &[f64],
    n_numeric: usize,
    error: &str,
) -> String {
    let mut f = vec![
        index.to_string(),
        csv_field(source),
        frame.to_string(),
        numbers.map_or(String::new(), |n| n.len().to_string()),
        numbers.map_or(String::new(), formula),
    ];
    for k in 0..n_numeric {
        f.push(values.get(k).map_or(String::new(), |&x| num(x)));
    }
    f.push(csv_field(error));
    f.join(",")
}

/// The directory of chunk files of the run writing `prefix`.
pub fn parts_dir(prefix: &Path) -> PathBuf {
    suffixed(prefix, ".parts")
}

/// `prefix` + `suffix` (`out` -> `out.csv`).
pub fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn chunk_name(start: usize, end: usize) -> String {
    format!("rows-{start:012}-{end:012}.csv")
}

/// Commits the rows of global structures `start..end` (in order, one line each) as one chunk
/// file: written under a temporary name and renamed, so a chunk is either whole or absent.
pub fn write_chunk(dir: &Path, start: usize, end: usize, lines: &[String]) -> Result<()> {
    let path = dir.join(chunk_name(start, end));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        chunk_name(start, end),
        std::process::id()
    ));
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// The committed chunks in `dir`: (start, end, path), sorted by start. Leftover temporary files
/// of a killed run are removed.
pub fn list_chunks(dir: &Path) -> Result<Vec<(usize, usize, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') && name.contains(".tmp") {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let Some(mid) = name
            .strip_prefix("rows-")
            .and_then(|s| s.strip_suffix(".csv"))
        else {
            continue;
        };
        let Some((a, b)) = mid.split_once('-') else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
            out.push((a, b, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The merged table, parsed back.
#[derive(Debug, Default)]
pub struct Table {
    /// Header line.
    pub header: String,
    /// Every row's text, in input order.
    pub lines: Vec<String>,
    /// Numeric columns: name and one value per row (NaN where empty).
    pub numeric: Vec<(String, Vec<f64>)>,
    /// Per row: source, frame, n_atoms (0 when unknown), error ("" when none).
    pub source: Vec<String>,
    /// Per row: the frame within its source.
    pub frame: Vec<i64>,
    /// Per row: atoms (0 when the structure could not be read).
    pub n_atoms: Vec<i64>,
    /// Per row: the error message, empty when the structure was evaluated.
    pub error: Vec<String>,
}

/// Merges the chunks of `dir` covering `0..n` into the table at `csv` (atomically) and returns
/// it. Every structure must be covered exactly once.
pub fn merge(dir: &Path, n: usize, cols: &Columns, csv: &Path) -> Result<Table> {
    let chunks = list_chunks(dir)?;
    let mut next = 0;
    let numeric = cols.numeric();
    let mut t = Table {
        header: cols.all().join(","),
        numeric: numeric.iter().map(|c| (c.clone(), Vec::new())).collect(),
        ..Default::default()
    };
    for (a, b, path) in &chunks {
        if *a != next {
            return Err(Error::Invalid(format!(
                "{}: the chunk files cover structures up to {next}, the next one starts at {a} ({})",
                dir.display(),
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut k = 0;
        for line in text.lines() {
            let f = split_csv(line);
            if f.len() != FIXED.len() + numeric.len() + 1 || f[0].parse::<usize>() != Ok(a + k) {
                return Err(Error::Invalid(format!(
                    "{}: line {}: not row {} of this run's table ({} fields)",
                    path.display(),
                    k + 1,
                    a + k,
                    f.len()
                )));
            }
            t.source.push(f[1].clone());
            t.frame.push(f[2].parse().unwrap_or(-1));
            t.n_atoms.push(f[3].parse().unwrap_or(0));
            for (c, (_, v)) in t.numeric.iter_mut().enumerate() {
                v.push(f[FIXED.len() + c].parse().unwrap_or(f64::NAN));
            }
            t.error.push(f.last().cloned().unwrap_or_default());
            t.lines.push(line.to_string());
            k += 1;
        }
        if k != b - a {
            return Err(Error::Invalid(format!(
                "{}: {k} rows for structures {a}..{b}",
                path.display()
            )));
        }
        next = *b;
    }
    if next != n {
        return Err(Error::Invalid(format!(
            "{}: the chunk files cover structures 0..{next} of {n}",
            dir.display()
        )));
    }
    let tmp = suffixed(csv, ".tmp");
    let mut text = String::with_capacity(t.lines.iter().map(|l| l.len() + 1).sum::<usize>() + 256);
    text.push_str(&t.header);
    text.push('\n');
    for l in &t.lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, csv).map_err(|e| Error::io(csv, e))?;
    Ok(t)
}

impl Table {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The values of numeric column `name`.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.numeric
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Failed rows counted by the kind of error (the error's text before its first ':').
    pub fn error_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in self.error.iter().filter(|e| !e.is_empty()) {
            let kind = e.split(':').next().unwrap_or("error").trim().to_string();
            *m.entry(kind).or_default() += 1;
        }
        m
    }

    /// Row indices of the `k` best rows by `column` (ascending, or descending), ties by index;
    /// rows without a value are left out.
    pub fn top_k(&self, column: &str, k: usize, descending: bool) -> Option<Vec<usize>> {
        let v = self.column(column)?;
        let mut idx: Vec<usize> = (0..v.len()).filter(|&i| v[i].is_finite()).collect();
        idx.sort_by(|&a, &b| {
            let o = v[a].total_cmp(&v[b]);
            (if descending { o.reverse() } else { o }).then(a.cmp(&b))
        });
        idx.truncate(k);
        Some(idx)
    }

    /// Writes the per-structure values as an ADIOS2 file (atomically: a temporary name, then a
    /// rename): `index`, `source_id` (into the attribute `sources`), `frame`, `n_atoms`, `ok`,
    /// one f64 array per numeric column (NaN where there is no value), and the attributes
    /// `schema`, `columns`, `sources`, `model`, `branch` and `errors` (`index: message`).
    pub fn write_bp(&self, path: &Path, model: &Path, branch: &str) -> Result<()> {
        let n = self.len();
        let tmp = suffixed(path, ".tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        let mut sources: Vec<String> = Vec::new();
        let mut source_id = Vec::with_capacity(n);
        for s in &self.source {
            let id = match sources.iter().position(|x| x == s) {
                Some(i) => i,
                None => {
                    sources.push(s.clone());
                    sources.len() - 1
                }
            };
            source_id.push(id as i32);
        }
        let mut w = Writer::create(&tmp)?;
        w.attr_str("schema", "hydragnn-rs.screen")?;
        w.attr("schema_version", 1i32)?;
        w.attr_str("model", &model.display().to_string())?;
        w.attr_str("branch", branch)?;
        w.attr_strs(
            "columns",
            &self
                .numeric
                .iter()
                .map(|(c, _)| c.clone())
                .collect::<Vec<_>>(),
        )?;
        w.attr("n_structures", n as i64)?;
        if !sources.is_empty() {
            w.attr_strs("sources", &sources)?;
        }
        let errors: Vec<String> = self
            .error
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
            .map(|(i, e)| format!("{i}: {e}"))
            .collect();
        if !errors.is_empty() {
            w.attr_strs("errors", &errors)?;
        }
        if n > 0 {
            w.put("index", &[n], &(0..n as i64).collect::<Vec<_>>())?;
            w.put("source_id", &[n], &source_id)?;
            w.put("frame", &[n], &self.frame)?;
            w.put("n_atoms", &[n], &self.n_atoms)?;
            let ok: Vec<u8> = self.error.iter().map(|e| u8::from(e.is_empty())).collect();
            w.put("ok", &[n], &ok)?;
            for (c, v) in &self.numeric {
                w.put(c, &[n], v)?;
            }
        }
        w.close()?;
        if path.exists() {
            std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}
