//! Extended XYZ, as ASE writes it (`ase.io.write(..., format="extxyz")`): a reader that checks
//! everything and names `file:line` in every error, and a writer with full (round-trip) precision.
//!
//! A frame is an atom-count line, a comment line of `key=value` pairs, and one line per atom:
//!
//! ```text
//! 2
//! Lattice="4 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3:forces:R:3 energy=-7.1 stress="..." gap=1.5 pbc="T T T"
//! Cu 0.0 0.0 0.0 0.1 0.0 0.0
//! Cu 1.8 1.8 0.0 -0.1 0.0 0.0
//! ```
//!
//! What ASE 3.29 writes (checked with a `SinglePointCalculator`): calculator results go to the
//! comment line as `energy=` (and `free_energy=`), `stress="..."` with 9 components (a 6-component
//! Voigt `xx yy zz yz xz xy` is accepted too), and to per-atom columns `forces:R:3`, `charge:R:1`
//! (results `charges`); `atoms.info` entries become further `key=value` pairs (numbers, booleans
//! `T`/`F`, quoted strings, quoted space-separated arrays); `atoms.arrays` become further columns.
//! Values may be quoted with `"..."` (backslash escapes), or legacy `{...}`/`[...]` arrays.
//!
//! Read into a [`Frame`]: numbers (from `species`, or an integer `Z` column), positions (`pos`),
//! cell (`Lattice`; zero without one), pbc (`pbc`; `T T T` when only a Lattice is given, as ASE
//! does), energy, forces, stress (3x3; from `virial` as `-virial / volume` when only that is
//! given), every other finite numeric scalar of the comment line as a per-frame property, and
//! every other real or integer column as a per-atom property. Strings, booleans and non-scalar
//! comment values (`config_type="..."`) are skipped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::error::{DataError, Result};

/// A per-atom property: `values` holds `n_atoms * width` numbers, atom-major.
#[derive(Clone, Debug, PartialEq)]
pub struct AtomProp {
    /// Components per atom (3 for a vector, 1 for a scalar).
    pub width: usize,
    /// The values, `n_atoms * width`, atom-major.
    pub values: Vec<f64>,
}

/// One structure with its labels, as read from an extxyz frame or from a dataset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    /// Atomic numbers.
    pub numbers: Vec<i32>,
    /// Cartesian positions, Angstrom.
    pub positions: Vec<[f64; 3]>,
    /// Lattice vectors as rows, Angstrom (all zero when the frame has no cell).
    pub cell: [[f64; 3]; 3],
    /// Periodicity along each lattice vector.
    pub pbc: [bool; 3],
    /// Total energy, eV.
    pub energy: Option<f64>,
    /// Forces, eV/Angstrom.
    pub forces: Option<Vec<[f64; 3]>>,
    /// Stress tensor (3x3, row-major), eV/Angstrom^3, ASE's sign convention
    /// (`(1/V) dE/d(strain)`, positive under tension).
    pub stress: Option<[f64; 9]>,
    /// Other per-frame numeric scalars (e.g. `gap`), by name.
    pub scalars: BTreeMap<String, f64>,
    /// Other per-atom numeric columns (e.g. `charge`), by name.
    pub atom_props: BTreeMap<String, AtomProp>,
}

impl Frame {
    /// Number of atoms.
    pub fn n_atoms(&self) -> usize {
        self.numbers.len()
    }

    /// Cell volume (|det|), Angstrom^3.
    pub fn volume(&self) -> f64 {
        let [a, b, c] = self.cell;
        let det = a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0]);
        det.abs()
    }
}

/// What the reader requires and where it finds the labels.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// Error when a frame has no energy.
    pub require_energy: bool,
    /// Error when a frame has no forces column.
    pub require_forces: bool,
    /// Comment-line key of the energy (default `energy`).
    pub energy_key: String,
    /// Column name of the forces (default `forces`).
    pub forces_key: String,
    /// Comment-line key of the stress (default `stress`).
    pub stress_key: String,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            require_energy: false,
            require_forces: false,
            energy_key: "energy".into(),
            forces_key: "forces".into(),
            stress_key: "stress".into(),
        }
    }
}

/// Reads every frame of an extxyz file.
pub fn read_extxyz(path: impl AsRef<Path>, opts: &ParseOptions) -> Result<Vec<Frame>> {
    Ok(read_extxyz_lines(path, opts)?
        .into_iter()
        .map(|(_, f)| f)
        .collect())
}

/// Reads every frame of an extxyz file, each with the 1-based line number of its atom-count line.
pub fn read_extxyz_lines(
    path: impl AsRef<Path>,
    opts: &ParseOptions,
) -> Result<Vec<(usize, Frame)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    parse(BufReader::new(file), path, 0, opts)
}

/// Parses extxyz text; `path` is only used in error messages.
pub fn parse_extxyz(text: &str, path: impl AsRef<Path>, opts: &ParseOptions) -> Result<Vec<Frame>> {
    Ok(parse(text.as_bytes(), path.as_ref(), 0, opts)?
        .into_iter()
        .map(|(_, f)| f)
        .collect())
}

/// Parses the text of one frame that starts at 1-based line `first_line` of `path` (errors name
/// that file and line): what a streaming reader that has already found the frame's extent reads.
pub fn parse_frame_at(
    text: &str,
    path: impl AsRef<Path>,
    first_line: usize,
    opts: &ParseOptions,
) -> Result<Frame> {
    let path = path.as_ref();
    let mut frames = parse(text.as_bytes(), path, first_line.saturating_sub(1), opts)?;
    match frames.len() {
        1 => Ok(frames.pop().expect("one frame").1),
        n => Err(DataError::parse(
            path,
            first_line,
            format!("expected one frame here, found {n}"),
        )),
    }
}

fn parse(
    reader: impl BufRead,
    path: &Path,
    line_offset: usize,
    opts: &ParseOptions,
) -> Result<Vec<(usize, Frame)>> {
    let mut lines = reader
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1 + line_offset, l));
    let mut next = |what: &str| -> Result<Option<(usize, String)>> {
        match lines.next() {
            None => Ok(None),
            Some((n, Ok(l))) => Ok(Some((n, l))),
            Some((n, Err(e))) => Err(DataError::parse(
                path,
                n,
                format!("cannot read {what}: {e}"),
            )),
        }
    };
    let mut frames = Vec::new();
    loop {
        // Atom count (blank lines between frames are skipped).
        let (count_line, count_text) = loop {
            match next("the atom count")? {
                None => return Ok(frames),
                Some((_, l)) if l.trim().is_empty() => {}
                Some(x) => break x,
            }
        };
        let n_atoms: usize = match count_text.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                return Err(DataError::parse(
                    path,
                    count_line,
                    "bad atom count 0 (a frame needs atoms)",
                ))
            }
            Err(_) => {
                return Err(DataError::parse(
                    path,
                    count_line,
                    format!(
                        "bad atom count '{}': expected a positive integer",
                        count_text.trim()
                    ),
                ))
            }
        };
        let Some((header_line, header)) = next("the comment line")? else {
            return Err(DataError::parse(
                path,
                count_line,
                format!("bad atom count: frame of {n_atoms} atoms ends at the atom-count line (no comment line)"),
            ));
        };
        let mut builder = FrameBuilder::new(path, header_line, &header, n_atoms, opts)?;
        for i in 0..n_atoms {
            let Some((ln, l)) = next("an atom line")? else {
                return Err(DataError::parse(
                    path,
                    header_line + i,
                    format!("bad atom count: the frame at line {count_line} declares {n_atoms} atoms, the file ends after {i}"),
                ));
            };
            builder.atom(ln, &l)?;
        }
        frames.push((count_line, builder.finish()?));
    }
}

/// A parsed comment-line value.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
    Str(String),
}

impl Value {
    fn parse(raw: &str) -> Value {
        let t = raw.trim();
        if let Ok(i) = t.parse::<i64>() {
            return Value::Int(i);
        }
        if let Some(f) = parse_float(t) {
            return Value::Float(f);
        }
        if let Some(b) = parse_bool(t) {
            return Value::Bool(b);
        }
        let parts: Vec<&str> = t
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .collect();
        if parts.len() > 1 {
            if let Ok(v) = parts
                .iter()
                .map(|p| p.parse::<i64>())
                .collect::<std::result::Result<Vec<_>, _>>()
            {
                return Value::Ints(v);
            }
            if let Some(v) = parts
                .iter()
                .map(|p| parse_float(p))
                .collect::<Option<Vec<_>>>()
            {
                return Value::Floats(v);
            }
            if let Some(v) = parts
                .iter()
                .map(|p| parse_bool(p))
                .collect::<Option<Vec<_>>>()
            {
                return Value::Bools(v);
            }
        }
        Value::Str(raw.to_string())
    }

    /// The value as a list of numbers, if it is numeric.
    fn numbers(&self) -> Option<Vec<f64>> {
        match self {
            Value::Int(i) => Some(vec![*i as f64]),
            Value::Float(f) => Some(vec![*f]),
            Value::Ints(v) => Some(v.iter().map(|&i| i as f64).collect()),
            Value::Floats(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// A float as Python's `float()` reads it (including `nan`, `inf`; the caller rejects those).
fn parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "T" | "True" | "true" | "TRUE" => Some(true),
        "F" | "False" | "false" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Splits a comment line into `key=value` pairs (a bare `key` means `key=T`), honouring quotes,
/// backslash escapes and `{...}`/`[...]` arrays.
fn key_values(line: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let read_quoted = |i: &mut usize| -> std::result::Result<String, String> {
        // chars[*i] is the opening quote.
        let mut s = String::new();
        *i += 1;
        while *i < chars.len() {
            match chars[*i] {
                '\\' if *i + 1 < chars.len() => {
                    *i += 1;
                    s.push(match chars[*i] {
                        'n' => '\n',
                        c => c,
                    });
                }
                '"' => {
                    *i += 1;
                    return Ok(s);
                }
                c => s.push(c),
            }
            *i += 1;
        }
        Err("unterminated quoted value".into())
    };
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let key = if chars[i] == '"' {
            read_quoted(&mut i)?
        } else {
            let s = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
                i += 1;
            }
            chars[s..i].iter().collect()
        };
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        if j < chars.len() && chars[j] == '=' {
            i = j + 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("key '{key}' has no value after '='"));
            }
            let value = match chars[i] {
                '"' => read_quoted(&mut i)?,
                open @ ('{' | '[') => {
                    let close = if open == '{' { '}' } else { ']' };
                    let s = i + 1;
                    while i < chars.len() && chars[i] != close {
                        i += 1;
                    }
                    if i >= chars.len() {
                        return Err(format!("key '{key}': unterminated '{open}'"));
                    }
                    i += 1;
                    chars[s..i - 1].iter().collect()
                }
                _ => {
                    let s = i;
                    while i < chars.len() && !chars[i].is_whitespace() {
                        i += 1;
                    }
                    chars[s..i].iter().collect()
                }
            };
            out.push((key, value));
        } else {
            if key.is_empty() {
                return Err("'=' without a key".into());
            }
            out.push((key, "T".into()));
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ColKind {
    Str,
    Real,
    Int,
    Logical,
}

#[derive(Clone, Debug)]
struct Column {
    name: String,
    kind: ColKind,
    width: usize,
    first: usize,
}

fn parse_properties(spec: &str) -> std::result::Result<Vec<Column>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.is_empty() || !parts.chunks_exact(3).remainder().is_empty() {
        return Err(format!(
            "Properties='{spec}' is not a list of name:type:columns triples"
        ));
    }
    let mut cols = Vec::new();
    let mut first = 0;
    for t in parts.chunks(3) {
        let kind = match t[1] {
            "S" => ColKind::Str,
            "R" => ColKind::Real,
            "I" => ColKind::Int,
            "L" => ColKind::Logical,
            k => {
                return Err(format!(
                    "Properties: column '{}' has unknown type '{k}' (S, R, I or L)",
                    t[0]
                ))
            }
        };
        let width: usize = match t[2].parse() {
            Ok(w) if w > 0 => w,
            _ => {
                return Err(format!(
                    "Properties: column '{}' has a bad column count '{}'",
                    t[0], t[2]
                ))
            }
        };
        if cols.iter().any(|c: &Column| c.name == t[0]) {
            return Err(format!("Properties: column '{}' appears twice", t[0]));
        }
        cols.push(Column {
            name: t[0].to_string(),
            kind,
            width,
            first,
        });
        first += width;
    }
    Ok(cols)
}

/// Accumulates one frame: the parsed comment line, then the atom lines.
struct FrameBuilder<'a> {
    path: &'a Path,
    header_line: usize,
    opts: &'a ParseOptions,
    n_atoms: usize,
    n_cols: usize,
    properties: String,
    cols: Vec<Column>,
    species: Option<usize>,
    z_col: Option<usize>,
    pos: usize,
    numeric: Vec<(usize, Vec<f64>)>,
    frame: Frame,
    last_symbol: (String, i32),
}

impl<'a> FrameBuilder<'a> {
    fn new(
        path: &'a Path,
        line: usize,
        header: &str,
        n_atoms: usize,
        opts: &'a ParseOptions,
    ) -> Result<Self> {
        let err = |msg: String| DataError::parse(path, line, msg);
        let mut kv: Vec<(String, Value)> = Vec::new();
        let mut properties = None;
        for (k, v) in key_values(header).map_err(&err)? {
            if k == "Properties" {
                properties = Some(v);
                continue;
            }
            let value = Value::parse(&v);
            match kv.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = value,
                None => kv.push((k, value)),
            }
        }
        let properties = properties.unwrap_or_else(|| "species:S:1:pos:R:3".to_string());
        let cols = parse_properties(&properties).map_err(err)?;
        let find = |name: &str| cols.iter().position(|c| c.name == name);
        let species = find("species");
        let z_col = find("Z");
        if let Some(s) = species {
            if cols[s].kind != ColKind::Str || cols[s].width != 1 {
                return Err(err(format!(
                    "column 'species' must be S:1 (Properties={properties})"
                )));
            }
        } else if !matches!(z_col, Some(z) if cols[z].kind == ColKind::Int && cols[z].width == 1) {
            return Err(err(format!(
                "no 'species:S:1' (or 'Z:I:1') column (Properties={properties})"
            )));
        }
        let pos = find("pos").or_else(|| find("positions"));
        let pos = match pos {
            Some(p) if cols[p].kind == ColKind::Real && cols[p].width == 3 => p,
            Some(_) => {
                return Err(err(format!(
                    "column 'pos' must be R:3 (Properties={properties})"
                )))
            }
            None => {
                return Err(err(format!(
                    "no 'pos:R:3' column (Properties={properties})"
                )))
            }
        };
        match find(&opts.forces_key) {
            Some(f) if cols[f].kind != ColKind::Real || cols[f].width != 3 => {
                return Err(err(format!(
                    "column '{}' must be R:3 (Properties={properties})",
                    opts.forces_key
                )))
            }
            None if opts.require_forces => {
                return Err(err(format!(
                    "missing forces: no per-atom '{}:R:3' column (Properties={properties})",
                    opts.forces_key
                )))
            }
            _ => {}
        }
        let n_cols = cols.iter().map(|c| c.width).sum();
        let numeric = cols
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                *i != pos
                    && matches!(c.kind, ColKind::Real | ColKind::Int)
                    && Some(*i) != z_col.filter(|_| species.is_none())
            })
            .map(|(i, c)| (i, Vec::with_capacity(n_atoms * c.width)))
            .collect();

        let mut frame = Frame {
            numbers: Vec::with_capacity(n_atoms),
            positions: Vec::with_capacity(n_atoms),
            ..Default::default()
        };
        let numbers_of = |key: &str, v: &Value| -> Result<Vec<f64>> {
            let xs = v
                .numbers()
                .ok_or_else(|| err(format!("'{key}' is not numeric")))?;
            if let Some(x) = xs.iter().find(|x| !x.is_finite()) {
                return Err(err(format!("non-finite value {x} in '{key}'")));
            }
            Ok(xs)
        };
        let mut has_lattice = false;
        let mut pbc = None;
        let mut virial = None;
        for (k, v) in &kv {
            if k == "Lattice" {
                let xs = numbers_of(k, v)?;
                if xs.len() != 9 {
                    return Err(err(format!("Lattice has {} numbers, expected 9", xs.len())));
                }
                for r in 0..3 {
                    frame.cell[r] = [xs[3 * r], xs[3 * r + 1], xs[3 * r + 2]];
                }
                has_lattice = true;
            } else if k == "pbc" {
                pbc = Some(match v {
                    Value::Bools(b) if b.len() == 3 => [b[0], b[1], b[2]],
                    Value::Bool(b) => [*b; 3],
                    _ => return Err(err(format!("pbc={v:?} is not three booleans (\"T T T\")"))),
                });
            } else if *k == opts.energy_key {
                let xs = numbers_of(k, v)?;
                if xs.len() != 1 {
                    return Err(err(format!(
                        "'{k}' has {} values, expected one number",
                        xs.len()
                    )));
                }
                frame.energy = Some(xs[0]);
            } else if *k == opts.stress_key || k == "virial" {
                let xs = numbers_of(k, v)?;
                let full = match xs.len() {
                    9 => [
                        xs[0], xs[1], xs[2], xs[3], xs[4], xs[5], xs[6], xs[7], xs[8],
                    ],
                    // Voigt order xx yy zz yz xz xy.
                    6 => [
                        xs[0], xs[5], xs[4], xs[5], xs[1], xs[3], xs[4], xs[3], xs[2],
                    ],
                    n => return Err(err(format!("'{k}' has {n} components, expected 9 or 6"))),
                };
                if *k == opts.stress_key {
                    frame.stress = Some(full);
                } else {
                    virial = Some(full);
                }
            } else if let Value::Int(_) | Value::Float(_) = v {
                let x = numbers_of(k, v)?[0];
                frame.scalars.insert(k.clone(), x);
            }
        }
        frame.pbc = pbc.unwrap_or([has_lattice; 3]);
        if frame.stress.is_none() {
            if let Some(w) = virial {
                let vol = frame.volume();
                if vol <= 0.0 {
                    return Err(err("virial given for a frame without a cell volume".into()));
                }
                frame.stress = Some(w.map(|x| -x / vol));
            }
        }
        if opts.require_energy && frame.energy.is_none() {
            return Err(err(format!(
                "missing energy: no '{}=' on the comment line",
                opts.energy_key
            )));
        }
        Ok(FrameBuilder {
            path,
            header_line: line,
            opts,
            n_atoms,
            n_cols,
            properties,
            cols,
            species,
            z_col,
            pos,
            numeric,
            frame,
            last_symbol: (String::new(), 0),
        })
    }

    fn atom(&mut self, line: usize, text: &str) -> Result<()> {
        let err = |msg: String| DataError::parse(self.path, line, msg);
        let tokens: Vec<&str> = text.split_whitespace().collect();
        if tokens.len() != self.n_cols {
            let hint =
                if tokens.is_empty() || (tokens.len() == 1 && tokens[0].parse::<usize>().is_ok()) {
                    format!(
                        " (bad atom count? the frame at line {} declares {} atoms)",
                        self.header_line - 1,
                        self.n_atoms
                    )
                } else {
                    String::new()
                };
            return Err(err(format!(
                "wrong column count: expected {} columns (Properties={}), found {}{hint}",
                self.n_cols,
                self.properties,
                tokens.len()
            )));
        }
        let z = if let Some(s) = self.species {
            let sym = tokens[self.cols[s].first];
            if sym == self.last_symbol.0 {
                self.last_symbol.1
            } else {
                let z = mlip::elements::atomic_number(sym)
                    .ok_or_else(|| err(format!("unknown element '{sym}'")))?;
                self.last_symbol = (sym.to_string(), z);
                z
            }
        } else {
            let c = &self.cols[self.z_col.expect("checked in new")];
            let t = tokens[c.first];
            match t.parse::<i32>() {
                Ok(z) if (1..=118).contains(&z) => z,
                _ => {
                    return Err(err(format!(
                        "unknown element: atomic number '{t}' in column 'Z'"
                    )))
                }
            }
        };
        self.frame.numbers.push(z);
        let num = |c: &Column, t: &str| -> Result<f64> {
            let x = match c.kind {
                ColKind::Int => t.parse::<i64>().map(|i| i as f64).ok(),
                _ => parse_float(t),
            };
            match x {
                Some(x) if x.is_finite() => Ok(x),
                Some(_) => Err(err(format!(
                    "non-finite value '{t}' in column '{}'",
                    c.name
                ))),
                None => Err(err(format!(
                    "cannot parse '{t}' in column '{}' as a number",
                    c.name
                ))),
            }
        };
        let pc = &self.cols[self.pos];
        let p = [
            num(pc, tokens[pc.first])?,
            num(pc, tokens[pc.first + 1])?,
            num(pc, tokens[pc.first + 2])?,
        ];
        self.frame.positions.push(p);
        for (ci, buf) in &mut self.numeric {
            let c = &self.cols[*ci];
            for k in 0..c.width {
                buf.push(num(c, tokens[c.first + k])?);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Frame> {
        for (ci, values) in std::mem::take(&mut self.numeric) {
            let c = &self.cols[ci];
            if c.name == self.opts.forces_key {
                self.frame.forces =
                    Some(values.chunks_exact(3).map(|f| [f[0], f[1], f[2]]).collect());
            } else {
                self.frame.atom_props.insert(
                    c.name.clone(),
                    AtomProp {
                        width: c.width,
                        values,
                    },
                );
            }
        }
        Ok(self.frame)
    }
}

/// Writes frames as extxyz that ASE reads back (`ase.io.read(path, ":")`), every float with
/// round-trip precision, so `read_extxyz(write_extxyz(frames)) == frames`.
pub fn write_extxyz(path: impl AsRef<Path>, frames: &[Frame]) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, to_extxyz_string(frames)).map_err(|e| DataError::io(path, e))
}

/// A comment-line key, quoted (with backslash escapes) unless it is a plain word.
fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c))
    {
        k.to_string()
    } else {
        format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The extxyz text of `frames` (see [`write_extxyz`]). Per-atom property names must not contain
/// `:` (the Properties separator).
pub fn to_extxyz_string(frames: &[Frame]) -> String {
    let mut s = String::new();
    for f in frames {
        let _ = writeln!(s, "{}", f.n_atoms());
        let has_cell = f.cell.iter().flatten().any(|&x| x != 0.0);
        if has_cell {
            let l: Vec<String> = f.cell.iter().flatten().map(|x| format!("{x:?}")).collect();
            let _ = write!(s, "Lattice=\"{}\" ", l.join(" "));
        }
        let mut props = String::from("species:S:1:pos:R:3");
        if f.forces.is_some() {
            props.push_str(":forces:R:3");
        }
        for (k, p) in &f.atom_props {
            let _ = write!(props, ":{k}:R:{}", p.width);
        }
        let _ = write!(s, "Properties={props}");
        if let Some(e) = f.energy {
            let _ = write!(s, " energy={e:?}");
        }
        if let Some(st) = f.stress {
            let v: Vec<String> = st.iter().map(|x| format!("{x:?}")).collect();
            let _ = write!(s, " stress=\"{}\"", v.join(" "));
        }
        for (k, v) in &f.scalars {
            let _ = write!(s, " {}={v:?}", quote_key(k));
        }
        let b = |x: bool| if x { "T" } else { "F" };
        let _ = writeln!(
            s,
            " pbc=\"{} {} {}\"",
            b(f.pbc[0]),
            b(f.pbc[1]),
            b(f.pbc[2])
        );
        for i in 0..f.n_atoms() {
            let p = f.positions[i];
            let _ = write!(
                s,
                "{} {:?} {:?} {:?}",
                mlip::elements::symbol(f.numbers[i]),
                p[0],
                p[1],
                p[2]
            );
            if let Some(fr) = &f.forces {
                let _ = write!(s, " {:?} {:?} {:?}", fr[i][0], fr[i][1], fr[i][2]);
            }
            for p in f.atom_props.values() {
                for x in &p.values[i * p.width..(i + 1) * p.width] {
                    let _ = write!(s, " {x:?}");
                }
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_quotes_flags_and_arrays() {
        let kv = key_values(r#"a=1 b="x \"y\"" flag c = 2.5 d={1 2 3} e=[1, 2] "q k"=T"#).unwrap();
        let want: Vec<(String, String)> = [
            ("a", "1"),
            ("b", "x \"y\""),
            ("flag", "T"),
            ("c", "2.5"),
            ("d", "1 2 3"),
            ("e", "1, 2"),
            ("q k", "T"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(kv, want);
        assert!(key_values(r#"a="open"#).is_err());
        assert_eq!(Value::parse("1 2, 3"), Value::Ints(vec![1, 2, 3]));
        assert_eq!(Value::parse("1 2.5"), Value::Floats(vec![1.0, 2.5]));
        assert_eq!(Value::parse("T F T"), Value::Bools(vec![true, false, true]));
        assert_eq!(Value::parse("Cu_300K"), Value::Str("Cu_300K".into()));
    }

    #[test]
    fn voigt_stress_and_virial() {
        let text = "1\nLattice=\"2 0 0 0 2 0 0 0 2\" stress=\"1 2 3 4 5 6\" virial=\"8 0 0 0 8 0 0 0 8\" Properties=species:S:1:pos:R:3\nH 0 0 0\n";
        let f = &parse_extxyz(text, "t.xyz", &ParseOptions::default()).unwrap()[0];
        assert_eq!(
            f.stress,
            Some([1.0, 6.0, 5.0, 6.0, 2.0, 4.0, 5.0, 4.0, 3.0])
        );
        assert_eq!(f.pbc, [true; 3]);
        let text = "1\nLattice=\"2 0 0 0 2 0 0 0 2\" virial=\"8 0 0 0 8 0 0 0 8\" Properties=species:S:1:pos:R:3\nH 0 0 0\n";
        let f = &parse_extxyz(text, "t.xyz", &ParseOptions::default()).unwrap()[0];
        assert_eq!(
            f.stress,
            Some([-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0])
        );
    }

    #[test]
    fn writer_round_trips() {
        let mut f = Frame {
            numbers: vec![29, 8],
            positions: vec![[0.1, 1e-9, -3.3333333333333335], [1.0, 2.0, 3.0]],
            cell: [[3.6, 0.0, 0.0], [0.0, 3.6, 0.0], [0.1, 0.0, 3.6]],
            pbc: [true, true, false],
            energy: Some(-1.0 / 3.0),
            forces: Some(vec![[0.5, -0.25, 1e-300], [0.0, 0.0, 0.0]]),
            stress: Some([1.0, 2.0, 3.0, 2.0, 5.0, 6.0, 3.0, 6.0, 9.0]),
            ..Default::default()
        };
        f.scalars.insert("gap".into(), 2.0f64.sqrt());
        f.scalars.insert("odd key \"x\"=1".into(), -0.5);
        f.atom_props.insert(
            "charge".into(),
            AtomProp {
                width: 1,
                values: vec![0.1, -0.1],
            },
        );
        f.atom_props.insert(
            "dipole".into(),
            AtomProp {
                width: 3,
                values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            },
        );
        let text = to_extxyz_string(&[f.clone(), f.clone()]);
        let back = parse_extxyz(&text, "t.xyz", &ParseOptions::default()).unwrap();
        assert_eq!(back, vec![f.clone(), f]);
    }
}
