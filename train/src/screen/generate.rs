//! Structures generated from a template for the "enumerate and rank" case: `substitute:A,B:N`
//! (variant k replaces a random subset of the template's A atoms by B, the subset's size drawn
//! uniformly from 0 to the number of A atoms) and `rattle:SIGMA:N` (every atom displaced by a
//! Gaussian of standard deviation SIGMA Å per component). Variant k is a pure function of the
//! template, the spec, the seed and k (its own ChaCha stream), so any rank can make any variant
//! and a resumed run makes the same ones.

use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Frame;
use crate::error::{Error, Result};

/// What to do to the template.
#[derive(Clone, Debug, PartialEq)]
pub enum Variation {
    /// Replace a random subset of the atoms of element `from` by element `to`.
    Substitute {
        /// Atomic number replaced.
        from: i32,
        /// Atomic number put in its place.
        to: i32,
    },
    /// Displace every atom by a Gaussian of this standard deviation (Å) per component.
    Rattle {
        /// Standard deviation, Å.
        sigma: f64,
    },
}

/// A template and how its variants are made.
#[derive(Clone, Debug)]
pub struct Generator {
    /// The template's file.
    pub template_path: PathBuf,
    /// The template (first frame of the file).
    pub template: Frame,
    /// The variation.
    pub variation: Variation,
    /// Number of variants.
    pub count: usize,
    /// Seed of the variants' random streams.
    pub seed: u64,
    spec: String,
}

fn element(sym: &str, spec: &str) -> Result<i32> {
    (1..=118)
        .find(|&z| mlip::elements::symbol(z) == sym)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "--generate '{spec}': '{sym}' is not an element symbol"
            ))
        })
}

impl Generator {
    /// Parses `substitute:A,B:N` or `rattle:SIGMA:N` for `template` (read from `template_path`).
    pub fn parse(
        spec: &str,
        template_path: PathBuf,
        template: Frame,
        seed: u64,
    ) -> Result<Generator> {
        let bad = |m: &str| {
            Error::Invalid(format!(
                "--generate '{spec}': {m} (expected substitute:A,B:N or rattle:SIGMA:N)"
            ))
        };
        let parts: Vec<&str> = spec.split(':').collect();
        if parts.len() != 3 {
            return Err(bad("three fields separated by ':'"));
        }
        let count: usize = parts[2].parse().map_err(|_| {
            bad(&format!(
                "count '{}' is not a non-negative integer",
                parts[2]
            ))
        })?;
        let variation = match parts[0] {
            "substitute" => {
                let (a, b) = parts[1]
                    .split_once(',')
                    .ok_or_else(|| bad("substitute needs two elements, A,B"))?;
                let (from, to) = (element(a.trim(), spec)?, element(b.trim(), spec)?);
                if !template.numbers.contains(&from) {
                    return Err(bad(&format!(
                        "the template {} has no {a} atom",
                        template_path.display()
                    )));
                }
                Variation::Substitute { from, to }
            }
            "rattle" => {
                let sigma: f64 = parts[1]
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| bad(&format!("SIGMA '{}' is not a length >= 0", parts[1])))?;
                Variation::Rattle { sigma }
            }
            k => return Err(bad(&format!("unknown variation '{k}'"))),
        };
        Ok(Generator {
            template_path,
            template,
            variation,
            count,
            seed,
            spec: spec.to_string(),
        })
    }

    /// What the `source` column says for the variants.
    pub fn label(&self) -> String {
        format!("{}:{}", self.template_path.display(), self.spec)
    }

    /// Variant `k` (labels of the template are dropped: they belong to the template).
    pub fn variant(&self, k: usize) -> Frame {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(k as u64);
        let t = &self.template;
        let mut f = Frame {
            numbers: t.numbers.clone(),
            positions: t.positions.clone(),
            cell: t.cell,
            pbc: t.pbc,
            ..Default::default()
        };
        match self.variation {
            Variation::Substitute { from, to } => {
                let mut sites: Vec<usize> = (0..f.numbers.len())
                    .filter(|&i| f.numbers[i] == from)
                    .collect();
                let m = rng.gen_range(0..=sites.len());
                sites.shuffle(&mut rng);
                for &i in &sites[..m] {
                    f.numbers[i] = to;
                }
            }
            Variation::Rattle { sigma } => {
                for p in &mut f.positions {
                    for x in p.iter_mut() {
                        // Box-Muller.
                        let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-300), rng.gen());
                        *x += sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    }
                }
            }
        }
        f
    }
}
