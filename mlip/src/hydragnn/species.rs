//! Which elements an imported model knows and the node features HydraGNN gave each (`--species`).

use super::cfg;
use crate::elements;
use crate::error::{Error, Result};

/// Species (atomic numbers), their node-feature rows, and the mapping as text.
pub(super) type NodeFeatures = (Vec<i32>, Vec<Vec<f64>>, Vec<String>);

/// The node-feature vector HydraGNN saw for one element.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeciesFeatures {
    /// Atomic number.
    pub z: i32,
    /// Feature values (`input_dim` of them); None: the atomic number itself (`x = [Z]`).
    pub features: Option<Vec<f64>>,
}

/// Parses `--species` text: comma-separated `Symbol` or `Symbol=v1[:v2...]`, e.g. `Ar=1` or
/// `H,C,N,O` (bare symbols stand for `x = [Z]`, HydraGNN's usual atomic-number feature).
pub fn parse_species(spec: &str) -> Result<Vec<SpeciesFeatures>> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (sym, vals) = match item.split_once('=') {
            Some((s, v)) => (s.trim(), Some(v)),
            None => (item, None),
        };
        let z = elements::atomic_number(sym).ok_or_else(|| {
            Error::InvalidInput(format!(
                "species '{item}': '{sym}' is not a chemical symbol (e.g. Ar, Cu)"
            ))
        })?;
        let features = match vals {
            None => None,
            Some(v) => Some(
                v.split(':')
                    .map(|x| {
                        x.trim().parse::<f64>().map_err(|_| {
                            Error::InvalidInput(format!("species '{item}': '{x}' is not a number"))
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?,
            ),
        };
        if out.iter().any(|s: &SpeciesFeatures| s.z == z) {
            return Err(Error::InvalidInput(format!(
                "species '{sym}' is given twice"
            )));
        }
        out.push(SpeciesFeatures { z, features });
    }
    if out.is_empty() {
        return Err(Error::InvalidInput("--species lists no element".into()));
    }
    Ok(out)
}

/// The engine's species, each one's raw node features and a readable map, from the user's
/// `--species` list (None: every element H..Og with x = [Z], which needs `input_dim` 1).
pub(super) fn node_features(
    species: Option<&[SpeciesFeatures]>,
    input_dim: i64,
    warnings: &mut Vec<String>,
) -> Result<NodeFeatures> {
    Ok(match species {
        None => {
            if input_dim != 1 {
                return Err(cfg(format!(
                    "input_dim is {input_dim}: give every element's {input_dim} feature values with --species (e.g. Cu=29:0.5)"
                )));
            }
            warnings.push(
                "no --species given: every element H..Og maps to x = [Z] (HydraGNN's atomic-number convention); \
                 if the model was trained on other node features (e.g. the Lennard-Jones example's x = 1.0), give --species Ar=1.0"
                    .into(),
            );
            let z: Vec<i32> = (1..=118).collect();
            let f = z.iter().map(|&z| vec![z as f64]).collect();
            (z, f, vec!["every element: x = [Z]".to_string()])
        }
        Some(list) => {
            let mut z = Vec::new();
            let mut f = Vec::new();
            let mut map = Vec::new();
            for s in list {
                let v = s.features.clone().unwrap_or_else(|| vec![s.z as f64]);
                if v.len() as i64 != input_dim {
                    return Err(cfg(format!(
                        "species {} has {} feature values but the model's input_dim is {input_dim}",
                        elements::symbol(s.z),
                        v.len()
                    )));
                }
                map.push(format!("{} -> x = {:?}", elements::symbol(s.z), v));
                z.push(s.z);
                f.push(v);
            }
            (z, f, map)
        }
    })
}
