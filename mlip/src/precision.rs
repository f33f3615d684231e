//! The one model of floating-point precision: what the engine computes in (float32 or float64),
//! its names, and the aliases that configuration files, the C ABI's clients (LAMMPS, ASE) and
//! HydraGNN use for it; the precision a training run computes in ([`TrainingPrecision`]: also
//! bfloat16, as autocast over float32 master weights) and the autocast region itself
//! ([`Autocast`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Floating-point precision of weights and computations.
///
/// Names: [`Precision::name`] gives "float32"/"float64"; [`FromStr`] accepts those and the
/// aliases fp32/f32/single and fp64/f64/double (case-insensitive), and rejects bfloat16 (bf16)
/// with a message saying that the engine computes in float32 or float64. Serde writes HydraGNN's
/// "fp32"/"fp64" and reads every alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Single precision (libtorch `Kind::Float`).
    #[default]
    Float32,
    /// Double precision (libtorch `Kind::Double`).
    Float64,
}

impl Precision {
    /// The libtorch kind of tensors in this precision.
    pub fn kind(self) -> tch::Kind {
        match self {
            Precision::Float32 => tch::Kind::Float,
            Precision::Float64 => tch::Kind::Double,
        }
    }

    /// The precision of a libtorch kind (`None` for kinds the engine does not compute in).
    pub fn from_kind(kind: tch::Kind) -> Option<Precision> {
        match kind {
            tch::Kind::Float => Some(Precision::Float32),
            tch::Kind::Double => Some(Precision::Float64),
            _ => None,
        }
    }

    /// The canonical name: "float32" or "float64".
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Float64 => "float64",
        }
    }

    /// HydraGNN's name (its `Training.precision`): "fp32" or "fp64".
    pub fn hydragnn_name(self) -> &'static str {
        match self {
            Precision::Float32 => "fp32",
            Precision::Float64 => "fp64",
        }
    }

    /// Bits per value: 32 or 64.
    pub fn bits(self) -> u32 {
        match self {
            Precision::Float32 => 32,
            Precision::Float64 => 64,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    /// Parses a name or alias; the error ([`Error::InvalidInput`]) says what is accepted.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "float32" | "fp32" | "f32" | "single" => Ok(Precision::Float32),
            "float64" | "fp64" | "f64" | "double" => Ok(Precision::Float64),
            "bf16" | "bfloat16" => Err(Error::InvalidInput(format!(
                "precision '{s}' (bfloat16) is not supported here: model files and evaluation are \
                 float32 or float64 (bf16 is a training compute precision, Training.precision)"
            ))),
            _ => Err(Error::InvalidInput(format!(
                "precision must be float32 or float64 (also fp32, f32, single / fp64, f64, \
                 double), got '{s}'"
            ))),
        }
    }
}

impl Serialize for Precision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hydragnn_name())
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e: Error| match e {
            Error::InvalidInput(msg) => serde::de::Error::custom(msg),
            e => serde::de::Error::custom(e),
        })
    }
}

/// The precision a training run computes in (`NeuralNetwork.Training.precision`).
///
/// `fp32` and `fp64` train in that precision throughout. `bf16` is mixed precision in the
/// manner of PyTorch's automatic mixed precision: the master weights, their gradients, the
/// optimiser state and the saved model stay float32, while the forward pass, the forces and the
/// backward pass run under libtorch's autocast ([`Autocast`]), which casts the inputs of matrix
/// products (every Linear layer) to bfloat16 and leaves the rest in the precision of its inputs:
/// positions, edge vectors, distances and radial bases stay float32, and so do the per-atom
/// reference energies, the energy sums, the forces and the loss. Names: "fp32"/"float32"/"f32"/
/// "single", "fp64"/"float64"/"f64"/"double", "bf16"/"bfloat16" (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrainingPrecision {
    /// Float32 throughout.
    #[default]
    Fp32,
    /// Float64 throughout.
    Fp64,
    /// Float32 master weights, bfloat16 autocast for the forward, force and backward passes.
    Bf16,
}

impl TrainingPrecision {
    /// The precision of the weights, the optimiser state and the saved model (float32 for bf16).
    pub fn master(self) -> Precision {
        match self {
            TrainingPrecision::Fp32 | TrainingPrecision::Bf16 => Precision::Float32,
            TrainingPrecision::Fp64 => Precision::Float64,
        }
    }

    /// The reduced kind autocast computes matrix products in (None: no autocast).
    pub fn autocast(self) -> Option<tch::Kind> {
        match self {
            TrainingPrecision::Bf16 => Some(tch::Kind::BFloat16),
            _ => None,
        }
    }

    /// The config name: "fp32", "fp64" or "bf16".
    pub fn name(self) -> &'static str {
        match self {
            TrainingPrecision::Fp32 => "fp32",
            TrainingPrecision::Fp64 => "fp64",
            TrainingPrecision::Bf16 => "bf16",
        }
    }
}

impl From<Precision> for TrainingPrecision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Float32 => TrainingPrecision::Fp32,
            Precision::Float64 => TrainingPrecision::Fp64,
        }
    }
}

impl fmt::Display for TrainingPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TrainingPrecision {
    type Err = Error;

    /// Parses a name or alias; the error ([`Error::InvalidInput`]) quotes the value and lists
    /// what is accepted.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" => Ok(TrainingPrecision::Bf16),
            _ => s.parse::<Precision>().map(Into::into).map_err(|_| {
                Error::InvalidInput(format!(
                    "precision must be fp32, fp64 or bf16 (also float32, f32, single / float64, \
                     f64, double / bfloat16), got '{s}'"
                ))
            }),
        }
    }
}

impl Serialize for TrainingPrecision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TrainingPrecision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e: Error| match e {
            Error::InvalidInput(msg) => serde::de::Error::custom(msg),
            e => serde::de::Error::custom(e),
        })
    }
}

/// libtorch's device-generic autocast switches (`at::autocast::*`, ATen/autocast_mode.h).
///
/// tch 0.26 binds only the CUDA-only `at::autocast::set_enabled`, so these are declared by their
/// C++ (Itanium ABI) symbols in libtorch_cpu, which torch-sys links. Their arguments are
/// `c10::DeviceType` and `c10::ScalarType`, both `enum class : int8_t`, and `bool`: passed as
/// the C types `i8` and `bool`. They do not throw. The test `autocast_casts_matmuls_only` fails
/// if a libtorch changes them.
mod ffi {
    extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device_type: i8) -> i8;
        #[link_name = "_ZN2at8autocast17increment_nestingEv"]
        pub fn increment_nesting() -> i32;
        #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
        pub fn decrement_nesting() -> i32;
        #[link_name = "_ZN2at8autocast11clear_cacheEv"]
        pub fn clear_cache();
    }
    /// `c10::DeviceType::CPU`.
    pub const CPU: i8 = 0;
    /// `c10::DeviceType::CUDA`.
    pub const CUDA: i8 = 1;
    /// `c10::ScalarType::Half`.
    pub const HALF: i8 = 5;
    /// `c10::ScalarType::BFloat16`.
    pub const BFLOAT16: i8 = 15;
}

/// An autocast region (PyTorch's `torch.autocast(device, dtype)`), for the thread that creates
/// it, until it is dropped: matrix products (Linear layers, matmul) on `device` run in the
/// reduced kind, with their float32 inputs cast to it (the casts are recorded by autograd, so
/// gradients reach float32 weights in float32); other operations keep the precision of their
/// inputs. Dropping it restores the previous state and, when it closes the outermost region,
/// clears libtorch's cache of cast weights (stale once the optimiser changes them).
#[derive(Debug)]
pub struct Autocast {
    device_type: i8,
    was_enabled: bool,
    was_dtype: i8,
}

impl Autocast {
    /// Opens a region computing matrix products in `kind` (BFloat16 on the CPU or CUDA, Half on
    /// CUDA) on `device`; other devices and kinds are an error naming them.
    pub fn new(device: tch::Device, kind: tch::Kind) -> Result<Autocast, Error> {
        let device_type = match device {
            tch::Device::Cpu => ffi::CPU,
            tch::Device::Cuda(_) => ffi::CUDA,
            d => {
                return Err(Error::InvalidInput(format!(
                    "autocast is available on the CPU and CUDA devices, not {d:?}"
                )))
            }
        };
        let dtype = match (kind, device_type) {
            (tch::Kind::BFloat16, _) => ffi::BFLOAT16,
            (tch::Kind::Half, ffi::CUDA) => ffi::HALF,
            (k, _) => {
                return Err(Error::InvalidInput(format!(
                    "autocast computes in bfloat16 (or float16 on CUDA), not {k:?} on {device:?}"
                )))
            }
        };
        // SAFETY: plain setters of libtorch's thread-local autocast state (see `ffi`).
        unsafe {
            let was_enabled = ffi::is_autocast_enabled(device_type);
            let was_dtype = ffi::get_autocast_dtype(device_type);
            ffi::set_autocast_dtype(device_type, dtype);
            ffi::set_autocast_enabled(device_type, true);
            ffi::increment_nesting();
            Ok(Autocast {
                device_type,
                was_enabled,
                was_dtype,
            })
        }
    }

    /// Whether autocast is on for `device` in this thread.
    pub fn is_enabled(device: tch::Device) -> bool {
        let t = match device {
            tch::Device::Cpu => ffi::CPU,
            tch::Device::Cuda(_) => ffi::CUDA,
            _ => return false,
        };
        // SAFETY: a getter of libtorch's thread-local autocast state.
        unsafe { ffi::is_autocast_enabled(t) }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: restores the state read in `new` (see `ffi`).
        unsafe {
            if ffi::decrement_nesting() == 0 {
                ffi::clear_cache();
            }
            ffi::set_autocast_enabled(self.device_type, self.was_enabled);
            ffi::set_autocast_dtype(self.device_type, self.was_dtype);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;

    #[test]
    fn names_and_aliases() {
        for (s, p) in [
            ("float32", Precision::Float32),
            ("FP32", Precision::Float32),
            ("f32", Precision::Float32),
            ("single", Precision::Float32),
            ("float64", Precision::Float64),
            ("fp64", Precision::Float64),
            (" f64 ", Precision::Float64),
            ("double", Precision::Float64),
        ] {
            assert_eq!(s.parse::<Precision>().unwrap(), p, "{s}");
        }
        assert_eq!(Precision::Float32.to_string(), "float32");
        assert_eq!(Precision::Float64.kind(), tch::Kind::Double);
        assert_eq!(
            Precision::from_kind(tch::Kind::Float),
            Some(Precision::Float32)
        );
        let e = "bf16".parse::<Precision>().unwrap_err().to_string();
        assert!(
            e.contains("float32 or float64") && e.contains("bf16"),
            "{e}"
        );
        let e = "half".parse::<Precision>().unwrap_err().to_string();
        assert!(
            e.contains("must be float32 or float64") && e.contains("'half'"),
            "{e}"
        );
    }

    #[test]
    fn serde_writes_hydragnn_names_and_reads_aliases() {
        assert_eq!(
            serde_json::to_string(&Precision::Float64).unwrap(),
            "\"fp64\""
        );
        assert_eq!(
            serde_json::to_string(&Precision::Float32).unwrap(),
            "\"fp32\""
        );
        for s in ["\"fp32\"", "\"float32\"", "\"single\""] {
            assert_eq!(
                serde_json::from_str::<Precision>(s).unwrap(),
                Precision::Float32
            );
        }
        let e = serde_json::from_str::<Precision>("\"bfloat16\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("float32 or float64"), "{e}");
    }

    #[test]
    fn training_precision_names() {
        use super::TrainingPrecision as T;
        for (s, p) in [
            ("fp32", T::Fp32),
            ("single", T::Fp32),
            ("FP64", T::Fp64),
            ("double", T::Fp64),
            ("bf16", T::Bf16),
            (" BFloat16 ", T::Bf16),
        ] {
            assert_eq!(s.parse::<T>().unwrap(), p, "{s}");
        }
        assert_eq!(T::Bf16.master(), Precision::Float32);
        assert_eq!(T::Fp64.master(), Precision::Float64);
        assert_eq!(T::Bf16.autocast(), Some(tch::Kind::BFloat16));
        assert_eq!(T::Fp32.autocast(), None);
        assert_eq!(serde_json::to_string(&T::Bf16).unwrap(), "\"bf16\"");
        let e = serde_json::from_str::<T>("\"fp8\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'fp8'") && e.contains("fp32, fp64 or bf16"),
            "{e}"
        );
    }

    #[test]
    fn autocast_casts_matmuls_only() {
        use super::Autocast;
        use tch::{Device, Kind, Tensor};
        let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([5, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert!(!Autocast::is_enabled(Device::Cpu));
        let (y, d) = {
            let _ac = Autocast::new(Device::Cpu, Kind::BFloat16).unwrap();
            assert!(Autocast::is_enabled(Device::Cpu));
            (x.linear::<Tensor>(&w, None), x.square().sum(Kind::Float))
        };
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert_eq!(y.kind(), Kind::BFloat16, "a Linear under autocast");
        assert_eq!(d.kind(), Kind::Float, "elementwise ops keep float32");
        // Gradients reach the float32 leaves in float32.
        y.to_kind(Kind::Float).sum(Kind::Float).backward();
        assert_eq!(w.grad().kind(), Kind::Float);
        assert_eq!(x.grad().kind(), Kind::Float);
        // Outside the region: float32 again.
        assert_eq!(x.linear::<Tensor>(&w, None).kind(), Kind::Float);
        let e = Autocast::new(Device::Cpu, Kind::Double).unwrap_err();
        assert!(e.to_string().contains("Double"), "{e}");
    }
}
