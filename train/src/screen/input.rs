//! The structures to screen, as one global sequence: every input (an extended XYZ file, a split
//! of an ADIOS2 dataset, a template's generated variants) in the order given, each structure
//! with a global index. Nothing is loaded whole: an extended XYZ file is indexed once (the byte
//! offset and atom count of every frame, without parsing numbers) and then read frame by frame
//! from any offset; a dataset is read as slice reads of contiguous graph ranges.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::data::{parse_frame_at, Dataset, Frame, ParseOptions, SPLITS};
use crate::error::{Error, Result};

use super::generate::Generator;

/// Where one input's structures come from.
#[derive(Debug)]
pub enum SourceKind {
    /// An extended XYZ file: per frame, its byte offset, 1-based line and atom count.
    Extxyz {
        /// (byte offset, line, atoms) of every frame.
        frames: Vec<(u64, usize, usize)>,
    },
    /// One split of an ADIOS2 dataset.
    Dataset {
        /// The split's name.
        split: String,
    },
    /// Variants of a template structure.
    Generated(Box<Generator>),
}

/// One input: a file (or a dataset split, or a generator) and its number of structures.
#[derive(Debug)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// What the `source` column says: the path, `path:split` for a dataset, or the generator.
    pub label: String,
    /// How it is read.
    pub kind: SourceKind,
    /// Number of structures.
    pub len: usize,
}

/// Every input, in order, with the global index of its first structure.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The inputs.
    pub sources: Vec<Source>,
    starts: Vec<usize>,
}

/// A structure read from an input, or why it could not be read (the run goes on).
#[derive(Debug)]
pub struct Item {
    /// Global index.
    pub index: usize,
    /// Which input ([`Inputs::sources`]).
    pub source: usize,
    /// Position in that input (frame of the file, graph of the split, variant of the template).
    pub frame: usize,
    /// The structure, or an error message naming the problem (file and line for extxyz).
    pub data: std::result::Result<Frame, String>,
}

/// Whether `p` is an ADIOS2 dataset (a `.bp` name or a directory).
pub fn is_dataset(p: &Path) -> bool {
    p.is_dir() || p.extension().is_some_and(|e| e == "bp")
}

/// Indexes an extended XYZ file: the byte offset, line and atom count of every frame, reading
/// only the atom-count lines' numbers. A bad atom count (which leaves the rest of the file
/// unreadable) is an error naming the line.
pub fn index_extxyz(path: &Path) -> Result<Vec<(u64, usize, usize)>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut line = String::new();
    let (mut offset, mut line_no) = (0u64, 0usize);
    let mut frames = Vec::new();
    let bad = |n: usize, msg: String| Error::Invalid(format!("{}:{n}: {msg}", path.display()));
    loop {
        line.clear();
        let k = r.read_line(&mut line).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            return Ok(frames);
        }
        line_no += 1;
        let start = offset;
        offset += k as u64;
        if line.trim().is_empty() {
            continue;
        }
        let n: usize = match line.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(bad(
                    line_no,
                    format!(
                        "bad atom count '{}': expected a positive integer (frame {} starts here)",
                        line.trim(),
                        frames.len()
                    ),
                ))
            }
        };
        frames.push((start, line_no, n));
        let count_line = line_no;
        // The comment line and n atom lines.
        for i in 0..=n {
            let mut buf = Vec::new();
            let k = r
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io(path, e))?;
            if k == 0 {
                return Err(bad(
                    count_line,
                    format!(
                        "bad atom count: the frame declares {n} atoms, the file ends after {}",
                        i.saturating_sub(1)
                    ),
                ));
            }
            offset += k as u64;
            line_no += 1;
        }
    }
}

impl Inputs {
    /// Opens every input: extxyz files are indexed, datasets contribute their non-empty splits
    /// (or only `split`), then the generated variants, if any.
    pub fn open(
        paths: &[PathBuf],
        split: Option<&str>,
        generated: Option<Generator>,
    ) -> Result<Inputs> {
        let mut sources = Vec::new();
        for p in paths {
            if is_dataset(p) {
                let ds = Dataset::open(p)?;
                let meta = ds.meta();
                let names: Vec<String> = match split {
                    Some(s) => {
                        ds.split(s)?;
                        vec![s.to_string()]
                    }
                    None => SPLITS
                        .iter()
                        .filter(|s| meta.n_graphs(s) > 0)
                        .map(|s| s.to_string())
                        .collect(),
                };
                for s in names {
                    sources.push(Source {
                        path: p.clone(),
                        label: format!("{}:{s}", p.display()),
                        len: meta.n_graphs(&s),
                        kind: SourceKind::Dataset { split: s },
                    });
                }
            } else {
                let frames = index_extxyz(p)?;
                sources.push(Source {
                    path: p.clone(),
                    label: p.display().to_string(),
                    len: frames.len(),
                    kind: SourceKind::Extxyz { frames },
                });
            }
        }
        if let Some(g) = generated {
            sources.push(Source {
                path: g.template_path.clone(),
                label: g.label(),
                len: g.count,
                kind: SourceKind::Generated(Box::new(g)),
            });
        }
        let mut starts = Vec::with_capacity(sources.len() + 1);
        let mut acc = 0;
        for s in &sources {
            starts.push(acc);
            acc += s.len;
        }
        starts.push(acc);
        Ok(Inputs { sources, starts })
    }

    /// Number of structures over all inputs.
    pub fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Whether there is nothing to screen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The global range `r` as (input, range within that input) pieces, in order.
    pub fn pieces(&self, r: Range<usize>) -> Vec<(usize, Range<usize>)> {
        let mut out = Vec::new();
        for (s, w) in self.starts.windows(2).enumerate() {
            let (a, b) = (r.start.max(w[0]), r.end.min(w[1]));
            if a < b {
                out.push((s, a - w[0]..b - w[0]));
            }
        }
        out
    }

    /// Reads the global ranges `windows` (ascending, disjoint) and hands each window's items,
    /// in index order, to `sink`. Inputs are opened once per run of consecutive pieces; a
    /// structure that cannot be parsed becomes an [`Item`] with an error, a file that cannot be
    /// read at all is an error.
    pub fn read_windows(
        &self,
        windows: &[Range<usize>],
        mut sink: impl FnMut(Range<usize>, Vec<Item>) -> bool,
    ) -> Result<()> {
        // (window number, input, range in the input), in order.
        let pieces: Vec<(usize, usize, Range<usize>)> = windows
            .iter()
            .enumerate()
            .flat_map(|(w, r)| {
                self.pieces(r.clone())
                    .into_iter()
                    .map(move |(s, lr)| (w, s, lr))
            })
            .collect();
        let mut pending: Vec<Item> = Vec::new();
        let mut current = 0usize;
        // Called after every piece: sends the window once its items are all there.
        let mut flush = |pending: &mut Vec<Item>, current: &mut usize| -> bool {
            while *current < windows.len() && pending.len() == windows[*current].len() {
                let items = std::mem::take(pending);
                if !sink(windows[*current].clone(), items) {
                    return false;
                }
                *current += 1;
            }
            true
        };
        let opts = ParseOptions::default();
        let mut i = 0;
        while i < pieces.len() {
            let s = pieces[i].1;
            let mut j = i;
            while j < pieces.len() && pieces[j].1 == s {
                j += 1;
            }
            let src = &self.sources[s];
            let base = self.starts[s];
            match &src.kind {
                SourceKind::Dataset { split } => {
                    let ds = Dataset::open(&src.path)?;
                    let sr = ds.split(split)?;
                    for (_, _, lr) in &pieces[i..j] {
                        let b = sr.read_block(lr.clone())?;
                        for (k, f) in lr.clone().enumerate() {
                            pending.push(Item {
                                index: base + f,
                                source: s,
                                frame: f,
                                data: Ok(b.frame(k)),
                            });
                        }
                        if !flush(&mut pending, &mut current) {
                            return Ok(());
                        }
                    }
                }
                SourceKind::Extxyz { frames } => {
                    let file = File::open(&src.path).map_err(|e| Error::io(&src.path, e))?;
                    let mut r = BufReader::with_capacity(1 << 20, file);
                    let mut pos: Option<u64> = None;
                    let mut text = String::new();
                    for (_, _, lr) in &pieces[i..j] {
                        for f in lr.clone() {
                            let (off, line, n) = frames[f];
                            if pos != Some(off) {
                                r.seek(SeekFrom::Start(off))
                                    .map_err(|e| Error::io(&src.path, e))?;
                            }
                            text.clear();
                            let mut got = 0u64;
                            let mut lines = 0;
                            // Blank lines before the count line were skipped by the index.
                            while lines < n + 2 {
                                let k = r
                                    .read_line(&mut text)
                                    .map_err(|e| Error::io(&src.path, e))?;
                                if k == 0 {
                                    break;
                                }
                                got += k as u64;
                                lines += 1;
                            }
                            pos = Some(off + got);
                            let data = parse_frame_at(&text, &src.path, line, &opts)
                                .map_err(|e| format!("parse: {e}"));
                            pending.push(Item {
                                index: base + f,
                                source: s,
                                frame: f,
                                data,
                            });
                        }
                        if !flush(&mut pending, &mut current) {
                            return Ok(());
                        }
                    }
                }
                SourceKind::Generated(g) => {
                    for (_, _, lr) in &pieces[i..j] {
                        for f in lr.clone() {
                            pending.push(Item {
                                index: base + f,
                                source: s,
                                frame: f,
                                data: Ok(g.variant(f)),
                            });
                        }
                        if !flush(&mut pending, &mut current) {
                            return Ok(());
                        }
                    }
                }
            }
            i = j;
        }
        Ok(())
    }
}

/// Reads the first frame of an extended XYZ file (a template).
pub fn read_first_frame(path: &Path) -> Result<Frame> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| Error::io(path, e))?;
    let frames = crate::data::parse_extxyz(&text, path, &ParseOptions::default())?;
    frames
        .into_iter()
        .next()
        .ok_or_else(|| Error::Invalid(format!("{}: no frame in the template", path.display())))
}
