//! The one model of floating-point precision: what the engine computes in (float32 or float64),
//! its names, and the aliases that configuration files, the C ABI's clients (LAMMPS, ASE) and
//! HydraGNN use for it.

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
                "precision '{s}' (bfloat16) is not supported: the engine computes in float32 or \
                 float64"
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
}
