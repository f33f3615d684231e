//! Energy use from RAPL counters (Linux powercap, `/sys/class/powercap/intel-rapl:N/energy_uj`,
//! microjoules, wrapping at `max_energy_range_uj`): the trainer's rank 0 reads the top-level
//! zones (packages; their sub-zones such as `intel-rapl:0:0` are parts of them and are not added)
//! at every epoch end and appends joules per epoch to `energy.csv`. The counters are per node, so
//! the figures are rank 0's node (every rank on it included). Without readable counters (no
//! RAPL, a VM, or counters readable by root only) the run says so once and goes on.
//!
//! On GPU nodes the GPUs' own counters are added: NVML's total energy since the driver was loaded
//! (`nvmlDeviceGetTotalEnergyConsumption`, millijoules; Volta and newer), read from
//! `libnvidia-ml.so.1` when it can be loaded, for every GPU of rank 0's node that NVML lists (the
//! node is assumed to be the job's, as on Perlmutter and Frontier, which allocate whole nodes).
//! `HYDRAGNN_NVML=0` leaves them out.
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
    gpus: Option<nvml::Gpus>,
    total_j: f64,
    since: Instant,
}

/// NVML, loaded at run time (no link-time dependency on the NVIDIA driver): the four calls the
/// meter needs.
mod nvml {
    use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void};

    type Device = *mut c_void;
    type Init = unsafe extern "C" fn() -> c_int;
    type Count = unsafe extern "C" fn(*mut c_uint) -> c_int;
    type Handle = unsafe extern "C" fn(c_uint, *mut Device) -> c_int;
    type Energy = unsafe extern "C" fn(Device, *mut c_ulonglong) -> c_int;
    type Name = unsafe extern "C" fn(Device, *mut c_char, c_uint) -> c_int;

    /// The node's GPUs whose energy counter NVML reads, with their last readings (mJ).
    pub struct Gpus {
        energy: Energy,
        devices: Vec<(Device, u64)>,
        /// `index name` of each GPU read.
        pub names: Vec<String>,
        _lib: libloading::Library,
    }

    impl std::fmt::Debug for Gpus {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Gpus").field("names", &self.names).finish()
        }
    }

    impl Gpus {
        /// The GPUs with a readable energy counter; None without NVML or without such a GPU.
        pub fn open() -> Option<Gpus> {
            // SAFETY: NVML is a C library with no initialisers beyond nvmlInit; the symbols are
            // called with the signatures of nvml.h (NVML_SUCCESS is 0).
            unsafe {
                let lib = libloading::Library::new("libnvidia-ml.so.1").ok()?;
                let init: Init = *lib.get::<Init>(b"nvmlInit_v2\0").ok()?;
                let count: Count = *lib.get::<Count>(b"nvmlDeviceGetCount_v2\0").ok()?;
                let handle: Handle = *lib.get::<Handle>(b"nvmlDeviceGetHandleByIndex_v2\0").ok()?;
                let energy: Energy = *lib
                    .get::<Energy>(b"nvmlDeviceGetTotalEnergyConsumption\0")
                    .ok()?;
                let name: Name = *lib.get::<Name>(b"nvmlDeviceGetName\0").ok()?;
                if init() != 0 {
                    return None;
                }
                let mut n: c_uint = 0;
                if count(&mut n) != 0 {
                    return None;
                }
                let mut devices = Vec::new();
                let mut names = Vec::new();
                for i in 0..n {
                    let mut d: Device = std::ptr::null_mut();
                    let mut mj: c_ulonglong = 0;
                    if handle(i, &mut d) != 0 || energy(d, &mut mj) != 0 {
                        continue;
                    }
                    let mut buf = [0 as c_char; 96];
                    let label = if name(d, buf.as_mut_ptr(), buf.len() as c_uint) == 0 {
                        std::ffi::CStr::from_ptr(buf.as_ptr())
                            .to_string_lossy()
                            .into_owned()
                    } else {
                        "GPU".to_string()
                    };
                    names.push(format!("gpu{i} {label}"));
                    devices.push((d, mj));
                }
                (!devices.is_empty()).then_some(Gpus {
                    energy,
                    devices,
                    names,
                    _lib: lib,
                })
            }
        }

        /// Joules since the last call (or since opening), summed over the GPUs; a GPU whose
        /// counter can no longer be read adds nothing.
        pub fn lap(&mut self) -> f64 {
            let mut mj = 0u64;
            for (d, last) in &mut self.devices {
                let mut now: c_ulonglong = 0;
                // SAFETY: the handle came from NVML, which stays initialised while `_lib` lives.
                if unsafe { (self.energy)(*d, &mut now) } != 0 {
                    continue;
                }
                mj += now.saturating_sub(*last);
                *last = now;
            }
            mj as f64 * 1e-3
        }
    }
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

impl EnergyMeter {
    /// The RAPL counters under `HYDRAGNN_POWERCAP_DIR` or `/sys/class/powercap`, and the GPUs'
    /// NVML counters (unless `HYDRAGNN_NVML=0`); None if none is readable.
    pub fn open() -> Option<EnergyMeter> {
        let dir = std::env::var_os("HYDRAGNN_POWERCAP_DIR")
            .map_or_else(|| PathBuf::from("/sys/class/powercap"), PathBuf::from);
        let gpus = if std::env::var("HYDRAGNN_NVML").is_ok_and(|v| v.trim() == "0") {
            None
        } else {
            nvml::Gpus::open()
        };
        EnergyMeter::with_gpus(&dir, gpus)
    }

    /// The top-level RAPL zones (`intel-rapl:N`) under `dir` whose `energy_uj` can be read (no
    /// GPUs).
    pub fn open_at(dir: &Path) -> Option<EnergyMeter> {
        EnergyMeter::with_gpus(dir, None)
    }

    /// The GPUs read through NVML (`gpu0 NVIDIA H100 ...`); empty without NVML.
    pub fn gpus(&self) -> &[String] {
        self.gpus.as_ref().map_or(&[], |g| &g.names)
    }

    fn with_gpus(dir: &Path, gpus: Option<nvml::Gpus>) -> Option<EnergyMeter> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_else(|_| Vec::new());
        entries.retain(|p: &PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("intel-rapl:"))
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
        });
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
        (!zones.is_empty() || gpus.is_some()).then(|| EnergyMeter {
            zones,
            names,
            gpus,
            total_j: 0.0,
            since: Instant::now(),
        })
    }

    /// The zones read (`package-0` ...).
    pub fn zones(&self) -> &[String] {
        &self.names
    }

    /// Joules used since the last call (or since opening), summed over the zones and the GPUs; a
    /// counter
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
        let j = uj as f64 * 1e-6 + self.gpus.as_mut().map_or(0.0, |g| g.lap());
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
            let mut counters = format!("# RAPL zones: {}", self.names.join(" "));
            if !self.gpus().is_empty() {
                counters.push_str(&format!(" | NVML GPUs: {}", self.gpus().join(", ")));
            }
            text.push_str(&format!(
                "{counters}\nepoch,joules,total_joules,seconds,watts\n"
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
