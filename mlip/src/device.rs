//! Choosing where the engine computes: the CPU or a GPU.
//!
//! libtorch's GPU backend lives in its own library (`libtorch_cuda.so`; `libtorch_hip.so` in a
//! ROCm build, whose HIP devices libtorch presents as `cuda`). `tch` names it on the link line,
//! but the linker's `--as-needed` (rustc's default) drops it because no symbol of it is called,
//! so in a binary built with `tch` `torch::cuda::is_available()` is false even on a GPU node: the
//! backend registers itself only from its library's static initialisers. [`cuda_available`]
//! therefore loads that library first (`dlopen` with `RTLD_GLOBAL`, once per process), from the
//! library search path or from the directory of the `libtorch_cpu.so` this process has mapped.
//! A CPU-only libtorch has no such library; then there is no GPU and nothing fails.
//!
//! [`DeviceChoice`] is what a user asks for (`auto`, `cpu`, `cuda`, `cuda:N`; the `--device`
//! flags and `HYDRAGNN_DEVICE`) and [`DeviceChoice::resolve`] what it gives on this process.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The libraries that hold libtorch's GPU backends (CUDA, then ROCm/HIP).
const GPU_BACKENDS: [&str; 2] = ["libtorch_cuda.so", "libtorch_hip.so"];

/// What loading the GPU backend gave: the library loaded (kept for the life of the process), or
/// why none was.
static BACKEND: OnceLock<std::result::Result<String, String>> = OnceLock::new();

/// The directory of the `libtorch_cpu.so` mapped into this process (from `/proc/self/maps`).
fn libtorch_dir() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
}

fn load_backend() -> std::result::Result<String, String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    let mut tried = Vec::new();
    let dir = libtorch_dir();
    for name in GPU_BACKENDS {
        let mut candidates = vec![name.to_string()];
        if let Some(d) = &dir {
            candidates.push(d.join(name).display().to_string());
        }
        for c in candidates {
            // SAFETY: loading libtorch's own GPU backend runs its static initialisers, which
            // register the backend with the libtorch already loaded; nothing else is called.
            match unsafe { Library::open(Some(&c), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    // Never unloaded: libtorch keeps pointers into it.
                    std::mem::forget(lib);
                    return Ok(c);
                }
                Err(e) => tried.push(format!("{c}: {e}")),
            }
        }
    }
    Err(tried.join("; "))
}

/// Loads libtorch's GPU backend if this libtorch has one (once per process). Returns the library
/// loaded, or a description of each attempt that failed (a CPU-only libtorch, or a GPU build whose
/// CUDA/ROCm libraries are missing).
pub fn load_gpu_backend() -> std::result::Result<&'static str, &'static str> {
    match BACKEND.get_or_init(load_backend) {
        Ok(s) => Ok(s.as_str()),
        Err(e) => Err(e.as_str()),
    }
}

/// The device files a GPU driver creates: NVIDIA's control device, AMD's ROCm kernel driver.
const DRIVER_NODES: [&str; 2] = ["/dev/nvidiactl", "/dev/kfd"];

/// Whether this machine has a GPU driver at all (one of its device files exists). Without one the
/// backend is not loaded: a CUDA build of libtorch is large, and loading it costs start-up time.
pub fn gpu_driver_present() -> bool {
    DRIVER_NODES
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

/// Whether a CUDA (or ROCm) device can be used: a driver is present ([`gpu_driver_present`]), the
/// backend loads ([`load_gpu_backend`]) and libtorch sees a device.
pub fn cuda_available() -> bool {
    gpu_driver_present() && load_gpu_backend().is_ok() && tch::Cuda::is_available()
}

/// The number of CUDA (or ROCm) devices this process sees (0 without a usable backend).
pub fn cuda_device_count() -> usize {
    if cuda_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// The device a user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A GPU when one is usable, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A GPU: `None` picks by local rank (`local_rank % device count`), `Some(i)` device i.
    Cuda(Option<usize>),
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<DeviceChoice> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" | "" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" | "hip" | "rocm" => Ok(DeviceChoice::Cuda(None)),
            _ => {
                let idx = t
                    .strip_prefix("cuda:")
                    .or_else(|| t.strip_prefix("gpu:"))
                    .and_then(|i| i.parse::<usize>().ok());
                idx.map(|i| DeviceChoice::Cuda(Some(i))).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "device '{s}': expected auto, cpu, cuda or cuda:N (N a device index)"
                    ))
                })
            }
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(None) => write!(f, "cuda"),
            DeviceChoice::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceChoice {
    /// The choice in the environment variable `HYDRAGNN_DEVICE` (`Auto` when unset); an
    /// unparsable value is an error naming the variable.
    pub fn from_env() -> Result<DeviceChoice> {
        match std::env::var("HYDRAGNN_DEVICE") {
            Ok(v) => v.parse().map_err(|e: Error| {
                Error::InvalidInput(format!("environment variable HYDRAGNN_DEVICE: {e}"))
            }),
            Err(_) => Ok(DeviceChoice::Auto),
        }
    }

    /// The device this choice gives a process that is `local_rank` among the processes of its
    /// node: `Auto` a GPU (`local_rank % count`) when one is usable, else the CPU; `Cuda` a GPU or
    /// an error saying why there is none; `Cuda(Some(i))` device i if it exists.
    pub fn resolve(self, local_rank: usize) -> Result<tch::Device> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Auto => {
                let n = cuda_device_count();
                Ok(if n > 0 {
                    tch::Device::Cuda(local_rank % n)
                } else {
                    tch::Device::Cpu
                })
            }
            DeviceChoice::Cuda(idx) => {
                let n = cuda_device_count();
                if n == 0 {
                    let why = match load_gpu_backend() {
                        _ if !gpu_driver_present() => format!(
                            "no GPU driver on this machine (none of {})",
                            DRIVER_NODES.join(", ")
                        ),
                        Err(e) => format!("libtorch's GPU backend could not be loaded ({e})"),
                        Ok(lib) => format!(
                            "libtorch's GPU backend ({lib}) is loaded but sees no device \
                             (driver, CUDA_VISIBLE_DEVICES/ROCR_VISIBLE_DEVICES?)"
                        ),
                    };
                    return Err(Error::InvalidInput(format!(
                        "device {self} was asked for, but no GPU is usable: {why}"
                    )));
                }
                match idx {
                    None => Ok(tch::Device::Cuda(local_rank % n)),
                    Some(i) if i < n => Ok(tch::Device::Cuda(i)),
                    Some(i) => Err(Error::InvalidInput(format!(
                        "device cuda:{i} was asked for, but this process sees {n} GPU(s) (0..{})",
                        n - 1
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_choices() {
        for (s, c) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(None)),
            ("gpu", DeviceChoice::Cuda(None)),
            ("cuda:3", DeviceChoice::Cuda(Some(3))),
        ] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), c, "{s}");
        }
        assert_eq!(DeviceChoice::Cuda(Some(2)).to_string(), "cuda:2");
        for bad in ["tpu", "cuda:x", "cuda:-1"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("auto, cpu, cuda"), "{e}");
        }
    }

    #[test]
    fn cpu_always_resolves_and_cuda_explains_its_absence() {
        assert_eq!(DeviceChoice::Cpu.resolve(5).unwrap(), tch::Device::Cpu);
        let auto = DeviceChoice::Auto.resolve(0).unwrap();
        if cuda_available() {
            assert!(matches!(auto, tch::Device::Cuda(_)));
            let n = cuda_device_count();
            let e = DeviceChoice::Cuda(Some(n)).resolve(0).unwrap_err();
            assert!(e.to_string().contains("sees"), "{e}");
        } else {
            assert_eq!(auto, tch::Device::Cpu);
            let e = DeviceChoice::Cuda(None).resolve(0).unwrap_err().to_string();
            assert!(e.contains("no GPU is usable"), "{e}");
        }
    }

    #[test]
    fn finds_the_mapped_libtorch() {
        // Touch libtorch so that it is certainly mapped, then find its directory.
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let d = libtorch_dir().expect("libtorch_cpu.so is mapped");
        assert!(d.join("libtorch_cpu.so").exists(), "{}", d.display());
    }

    #[test]
    fn a_cuda_libtorch_loads_its_backend_without_a_gpu() {
        // The project's torch wheel is the CUDA build: its backend library loads (registering
        // the CUDA hooks) on a machine without a GPU, where libtorch then reports none.
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let d = libtorch_dir().expect("libtorch_cpu.so is mapped");
        if !d.join("libtorch_cuda.so").exists() {
            eprintln!("CPU-only libtorch in {}: nothing to load", d.display());
            assert!(load_gpu_backend().is_err());
            return;
        }
        let lib = load_gpu_backend().expect("libtorch_cuda.so loads");
        assert!(lib.ends_with("libtorch_cuda.so"), "{lib}");
        if !gpu_driver_present() {
            assert!(!tch::Cuda::is_available());
            assert!(!cuda_available());
        }
    }
}
