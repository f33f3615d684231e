//! Energy use from RAPL counters (Linux powercap, `/sys/class/powercap/intel-rapl:N/energy_uj`,
//! microjoules, wrapping at `max_energy_range_uj`): the trainer's rank 0 reads the top-level
//! zones (packages; their sub-zones such as `intel-rapl:0:0` are parts of them and are not added)
//! at every epoch end and appends joules per epoch to `energy.csv`. The counters are per node, so
//! the figures are rank 0's node (every rank on it included). Without readable counters (no
//! RAPL, a VM, or counters readable by root only) the run says so once and goes on.
//!
//! `HYDRAGNN_POWERCAP_DIR` replaces `/sys/class/powercap` (for tests with a fixture directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};

/// File (in the output directory) with joules per epoch.
pub const ENERGY_FILE: &str = "energy.csv";

#[derive(Debug)]
struct Zone {
    counter: PathBuf,
    max_uj: u64,
    last_uj: u64,
}

/// A set of RAPL counters and their last readings.
#[derive(Debug)]
pub struct EnergyMeter {
    zones: Vec<Zone>,
    names: Vec<String>,
    total_j: f64,
    since: Instant,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

impl EnergyMeter {
    /// The counters under `HYDRAGNN_POWERCAP_DIR` or `/sys/class/powercap`; None if none is readable.
    pub fn open() -> Option<EnergyMeter> {
        let dir = std::env::var_os("HYDRAGNN_POWERCAP_DIR")
            .map_or_else(|| PathBuf::from("/sys/class/powercap"), PathBuf::from);
        EnergyMeter::open_at(&dir)
    }

    /// The top-level RAPL zones (`intel-rapl:N`) under `dir` whose `energy_uj` can be read.
    pub fn open_at(dir: &Path) -> Option<EnergyMeter> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("intel-rapl:"))
                    .is_some_and(|rest| {
                        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
                    })
            })
            .collect();
        entries.sort();
        let mut zones = Vec::new();
        let mut names = Vec::new();
        for p in entries {
            let counter = p.join("energy_uj");
            let Some(now) = read_u64(&counter) else {
                continue;
            };
            let max_uj = read_u64(&p.join("max_energy_range_uj")).unwrap_or(u64::MAX);
            let name = std::fs::read_to_string(p.join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| p.display().to_string());
            names.push(name);
            zones.push(Zone {
                counter,
                max_uj,
                last_uj: now,
            });
        }
        (!zones.is_empty()).then(|| EnergyMeter {
            zones,
            names,
            total_j: 0.0,
            since: Instant::now(),
        })
    }

    /// The zones read (`package-0` ...).
    pub fn zones(&self) -> &[String] {
        &self.names
    }

    /// Joules used since the last call (or since opening), summed over the zones; a counter
    /// that wrapped around adds `max_energy_range_uj - last + now`. A zone that can no longer be
    /// read adds nothing.
    pub fn lap(&mut self) -> f64 {
        let mut uj = 0u64;
        for z in &mut self.zones {
            let Some(now) = read_u64(&z.counter) else {
                continue;
            };
            uj += if now >= z.last_uj {
                now - z.last_uj
            } else {
                z.max_uj.saturating_sub(z.last_uj) + now
            };
            z.last_uj = now;
        }
        let j = uj as f64 * 1e-6;
        self.total_j += j;
        j
    }

    /// Ends an epoch: appends `epoch, joules, total joules, seconds, watts` to
    /// `out_dir/energy.csv` and returns the epoch's joules.
    pub fn epoch_end(&mut self, epoch: usize, out_dir: &Path) -> Result<f64> {
        let j = self.lap();
        let secs = self.since.elapsed().as_secs_f64();
        self.since = Instant::now();
        let path = out_dir.join(ENERGY_FILE);
        let new = !path.exists();
        let mut text = String::new();
        if new {
            text.push_str(&format!(
                "# RAPL zones: {}\nepoch,joules,total_joules,seconds,watts\n",
                self.names.join(" ")
            ));
        }
        text.push_str(&format!(
            "{epoch},{j:.3},{:.3},{secs:.3},{:.2}\n",
            self.total_j,
            if secs > 0.0 { j / secs } else { 0.0 }
        ));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(j)
    }
}

/// The energy-aware stop (`Training.EnergyStopping`): `val` holds the validation loss of every
/// epoch so far and `joules` the energy of each (same length). Returns the relative gain of the
/// best validation loss over the last `window` epochs and the kilojoules they used, once there
/// are more than `window` epochs and they used energy; the run stops when gain / kJ falls below
/// its `min_gain_per_kj`.
pub fn gain_per_window(val: &[f64], joules: &[f64], window: usize) -> Option<(f64, f64)> {
    let n = val.len();
    if window == 0 || n <= window || joules.len() != n {
        return None;
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (before, now) = (best(&val[..n - window]), best(val));
    let kj = joules[n - window..].iter().sum::<f64>() / 1000.0;
    (kj > 0.0 && before.is_finite() && before > 0.0).then(|| ((before - now) / before, kj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_per_window_measures_the_best_loss_over_the_last_epochs() {
        let val = [1.0, 0.5, 0.45, 0.6, 0.44];
        let j = [500.0; 5];
        // Too few epochs, or no energy: no decision.
        assert_eq!(gain_per_window(&val[..3], &j[..3], 3), None);
        assert_eq!(gain_per_window(&val, &[0.0; 5], 3), None);
        // Best before the last 3 epochs: 0.5; now 0.44: gain 0.12 over 1.5 kJ.
        let (g, kj) = gain_per_window(&val, &j, 3).unwrap();
        assert!(
            (g - 0.12).abs() < 1e-12 && (kj - 1.5).abs() < 1e-12,
            "{g} {kj}"
        );
        // A loss that rose: no gain.
        let (g, _) = gain_per_window(&[0.5, 0.7, 0.8], &[1.0; 3], 2).unwrap();
        assert_eq!(g, 0.0);
    }

    fn zone(dir: &Path, name: &str, label: &str, uj: u64, max: u64) {
        let z = dir.join(name);
        std::fs::create_dir_all(&z).unwrap();
        std::fs::write(z.join("energy_uj"), format!("{uj}\n")).unwrap();
        std::fs::write(z.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
        std::fs::write(z.join("name"), format!("{label}\n")).unwrap();
    }

    #[test]
    fn absent_counters_give_none() {
        let d = tempfile::tempdir().unwrap();
        assert!(EnergyMeter::open_at(&d.path().join("missing")).is_none());
        assert!(EnergyMeter::open_at(d.path()).is_none());
    }

    #[test]
    fn packages_summed_subzones_skipped_wraparound_handled() {
        let d = tempfile::tempdir().unwrap();
        zone(d.path(), "intel-rapl:0", "package-0", 1_000_000, 10_000_000);
        zone(d.path(), "intel-rapl:1", "package-1", 9_000_000, 10_000_000);
        zone(d.path(), "intel-rapl:0:0", "core", 5, 10_000_000);
        let mut m = EnergyMeter::open_at(d.path()).unwrap();
        assert_eq!(m.zones(), ["package-0", "package-1"]);
        // +2.5 J on package 0; package 1 wraps: 9 J -> 10 J (max) -> 0.5 J, i.e. +1.5 J.
        zone(d.path(), "intel-rapl:0", "package-0", 3_500_000, 10_000_000);
        zone(d.path(), "intel-rapl:1", "package-1", 500_000, 10_000_000);
        zone(d.path(), "intel-rapl:0:0", "core", 9_000_000, 10_000_000);
        let out = d.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let j = m.epoch_end(1, &out).unwrap();
        assert!((j - 4.0).abs() < 1e-9, "{j}");
        let text = std::fs::read_to_string(out.join(ENERGY_FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# RAPL zones: package-0 package-1");
        assert!(lines[2].starts_with("1,4.000,4.000,"), "{text}");
    }
}
