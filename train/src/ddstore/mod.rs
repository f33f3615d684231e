//! The distributed in-memory data store (HydraGNN's DDStore): every rank keeps a contiguous shard
//! of a trainset in memory as serialised graph records (one byte buffer plus offsets), exposes the
//! buffer in an MPI window, and each step fetches the graphs of its part of the global batch from
//! their owners with one-sided `MPI_Get` (passive target, shared lock; see [`window`]).
//!
//! Switched on by `"Training": {"ddstore": true}` (docs/training.md). The batches are the same as
//! without the store (the trainer's seeded global plan, independent of the number of ranks); what
//! changes is which rank computes which graph: rank r takes positions r, r+P, r+2P ... of each
//! global batch, so the graphs of a batch are spread evenly over the ranks wherever they are
//! stored, and memory per rank is about the trainset's size / P. Losses are normalised by the
//! global batch, so the summed gradient is the same as one rank's up to rounding.

pub mod codec;
pub mod window;

use std::cell::Cell;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use crate::data::shard_range;
use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::graphs::Graph;

use window::Window;

/// File (in the output directory) with one line per epoch: bytes and graphs fetched remotely.
pub const STATS_FILE: &str = "ddstore.csv";

/// One trainset held across the ranks.
pub struct DdStore {
    rank: usize,
    size: usize,
    /// Shard (global index range) of every rank.
    shards: Vec<Range<usize>>,
    /// Offset of every global record in its owner's buffer, and its length.
    offsets: Vec<(usize, usize)>,
    /// The window over this rank's records (None with one rank: everything is local).
    window: Option<Window>,
    /// Records of this rank when there is no window.
    local: Vec<u8>,
    /// This epoch: bytes and graphs fetched from other ranks, graphs decoded locally, seconds.
    remote_bytes: Cell<u64>,
    remote_graphs: Cell<u64>,
    local_graphs: Cell<u64>,
    fetch_secs: Cell<f64>,
    /// `HYDRAGNN_DDSTORE_TRACE`: a directory where each rank appends the ids of every fetch
    /// (`trace.<rank>.txt`, one line per call), for the tests that compare batches.
    trace: Option<std::path::PathBuf>,
}

impl DdStore {
    /// Builds the store from this rank's shard (`shard` of `n` graphs, the graphs in order);
    /// collective over `dist`.
    pub fn new(graphs: &[Graph], shard: Range<usize>, n: usize, dist: &Dist) -> Result<DdStore> {
        let (rank, size) = (dist.rank(), dist.size());
        let shards: Vec<_> = (0..size).map(|r| shard_range(n, r, size)).collect();
        if shards[rank] != shard || graphs.len() != shard.len() {
            return Err(Error::Invalid(format!(
                "ddstore: rank {rank} holds {} graphs of shard {shard:?}, expected {:?}",
                graphs.len(),
                shards[rank]
            )));
        }
        let mut buf = Vec::new();
        let mut lens = vec![0.0f64; n];
        for (g, l) in graphs.iter().zip(&mut lens[shard.clone()]) {
            let start = buf.len();
            codec::encode(g, &mut buf);
            *l = (buf.len() - start) as f64;
        }
        // Every rank learns every record's length (exact in f64 below 2^53 bytes).
        dist.allreduce_sum(&mut lens);
        let mut offsets = vec![(0usize, 0usize); n];
        for s in &shards {
            let mut off = 0;
            for i in s.clone() {
                let len = lens[i] as usize;
                offsets[i] = (off, len);
                off += len;
            }
        }
        let (window, local) = match dist.comm() {
            Some(comm) if size > 1 => (Some(Window::create(&buf, comm)?), Vec::new()),
            _ => (None, buf),
        };
        Ok(DdStore {
            rank,
            size,
            shards,
            offsets,
            window,
            local,
            remote_bytes: Cell::new(0),
            remote_graphs: Cell::new(0),
            local_graphs: Cell::new(0),
            fetch_secs: Cell::new(0.0),
            trace: std::env::var_os("HYDRAGNN_DDSTORE_TRACE").map(Into::into),
        })
    }

    /// Bytes of records this rank holds.
    pub fn local_bytes(&self) -> usize {
        self.window
            .as_ref()
            .map_or(self.local.len(), |w| w.local().len())
    }

    /// The rank that stores global graph `i`.
    pub fn owner(&self, i: usize) -> usize {
        self.shards.partition_point(|s| s.end <= i)
    }

    /// This rank's part of a global batch: positions rank, rank + P, ... of `idx`.
    pub fn my_part(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter()
            .skip(self.rank)
            .step_by(self.size)
            .copied()
            .collect()
    }

    /// The graphs `ids` (global trainset indices), fetched from their owners: local records are
    /// decoded from this rank's buffer, the others read with one lock epoch per owner.
    pub fn fetch(&self, ids: &[usize]) -> Result<Vec<Graph>> {
        let t = Instant::now();
        let n = self.offsets.len();
        if let Some(&bad) = ids.iter().find(|&&i| i >= n) {
            return Err(Error::Invalid(format!(
                "ddstore: graph {bad} requested, the store holds {n}"
            )));
        }
        if let Some(dir) = &self.trace {
            let path = dir.join(format!("trace.{}.txt", self.rank));
            let line: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{}", line.join(" ")))
                .map_err(|e| Error::io(&path, e))?;
        }
        let mut out: Vec<Option<Graph>> = vec![None; ids.len()];
        let mut by_owner: Vec<Vec<usize>> = vec![Vec::new(); self.size];
        for (k, &i) in ids.iter().enumerate() {
            by_owner[self.owner(i)].push(k);
        }
        for (owner, ks) in by_owner.iter().enumerate() {
            if ks.is_empty() {
                continue;
            }
            let ranges: Vec<(usize, usize)> = ks.iter().map(|&k| self.offsets[ids[k]]).collect();
            if owner == self.rank {
                let buf = self.window.as_ref().map_or(&self.local[..], |w| w.local());
                for (&k, &(off, len)) in ks.iter().zip(&ranges) {
                    out[k] = Some(codec::decode(&buf[off..off + len])?);
                }
                self.local_graphs
                    .set(self.local_graphs.get() + ks.len() as u64);
            } else {
                let w = self.window.as_ref().expect("several ranks have a window");
                let mut bufs = vec![Vec::new(); ks.len()];
                w.get(owner, &ranges, &mut bufs)?;
                let bytes: usize = ranges.iter().map(|r| r.1).sum();
                self.remote_bytes
                    .set(self.remote_bytes.get() + bytes as u64);
                self.remote_graphs
                    .set(self.remote_graphs.get() + ks.len() as u64);
                for (&k, b) in ks.iter().zip(&bufs) {
                    out[k] = Some(codec::decode(b)?);
                }
            }
        }
        for (g, &i) in out.iter().zip(ids) {
            if g.as_ref().is_some_and(|g| g.index != i) {
                return Err(Error::Invalid(format!(
                    "ddstore: record {i} decodes to graph {}",
                    g.as_ref().map_or(0, |g| g.index)
                )));
            }
        }
        self.fetch_secs
            .set(self.fetch_secs.get() + t.elapsed().as_secs_f64());
        Ok(out
            .into_iter()
            .map(|g| g.expect("every id fetched"))
            .collect())
    }

    /// Ends an epoch (collective): sums this epoch's counters over the ranks, appends them to
    /// `out_dir/ddstore.csv` and logs them (rank 0), and resets them. Returns the sums
    /// `[remote bytes, remote graphs, local graphs, max fetch seconds, stored bytes]`.
    pub fn end_epoch(
        &self,
        name: &str,
        epoch: usize,
        dist: &Dist,
        out_dir: &Path,
        log: bool,
    ) -> Result<[f64; 5]> {
        let mut s = [
            self.remote_bytes.get() as f64,
            self.remote_graphs.get() as f64,
            self.local_graphs.get() as f64,
            0.0,
            self.local_bytes() as f64,
        ];
        dist.allreduce_sum(&mut s);
        // The slowest rank's fetch time (sum of one non-zero entry per rank, then max).
        let mut secs = vec![0.0; dist.size()];
        secs[dist.rank()] = self.fetch_secs.get();
        dist.allreduce_sum(&mut secs);
        s[3] = secs.iter().cloned().fold(0.0, f64::max);
        self.remote_bytes.set(0);
        self.remote_graphs.set(0);
        self.local_graphs.set(0);
        self.fetch_secs.set(0.0);
        if dist.is_root() {
            let path = out_dir.join(STATS_FILE);
            let new = !path.exists();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            let mut text = String::new();
            if new {
                text.push_str("epoch,dataset,ranks,remote_bytes,remote_graphs,local_graphs,fetch_s,stored_bytes_per_rank\n");
            }
            text.push_str(&format!(
                "{epoch},{name},{},{},{},{},{:.6},{}\n",
                dist.size(),
                s[0],
                s[1],
                s[2],
                s[3],
                (s[4] / dist.size() as f64).round()
            ));
            f.write_all(text.as_bytes())
                .map_err(|e| Error::io(&path, e))?;
            if log {
                eprintln!(
                    "    ddstore {name}: {:.0} bytes ({} graphs) fetched remotely, {} local, fetch {:.3} s, {:.0} bytes stored per rank",
                    s[0], s[1], s[2], s[3], s[4] / dist.size() as f64
                );
            }
        }
        Ok(s)
    }
}
