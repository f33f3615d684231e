//! The search space of `hydragnn hpo` and its sampler.
//!
//! The space is a JSON object from dotted config paths to ranges or choices:
//!
//! ```json
//! {"NeuralNetwork.Architecture.mpnn_type": {"choices": ["SchNet", "EGNN"]},
//!  "NeuralNetwork.Architecture.hidden_dim": {"choices": [32, 64, 128]},
//!  "NeuralNetwork.Architecture.num_conv_layers": {"low": 2, "high": 4, "int": true},
//!  "NeuralNetwork.Training.Optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": true}}
//! ```
//!
//! Sampler (TPE-like, after Bergstra et al. 2011): the first `startup` trials are uniform random;
//! after that the finished trials are split into the best quarter ("good", at least one) and the
//! rest ("bad"), 32 candidates are drawn around good trials (numeric coordinates, in [0, 1] of
//! the range, on a log scale where asked, perturbed by a Gaussian of width 0.2; choices kept with
//! probability 0.8, else redrawn), and the candidate with the largest l(x)/g(x) is taken, where l
//! and g are product-kernel densities of the good and the bad trials (Gaussian kernels of width
//! 0.2; categorical frequencies with a +1 prior), each mixed with the uniform prior.

use std::path::Path;

use rand::Rng;
use serde_json::Value;

use crate::error::{Error, Result};

/// One dimension of the space.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// One of these values.
    Choices(Vec<Value>),
    /// A number in [low, high], on a log scale if `log`, rounded if `int`.
    Range {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
        /// Sample the logarithm uniformly.
        log: bool,
        /// Round to an integer.
        int: bool,
    },
}

/// A parameter: where it goes in the config, and its domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Dotted path in the config (`NeuralNetwork.Architecture.hidden_dim`).
    pub path: String,
    /// Its values.
    pub domain: Domain,
}

/// A point of the space in sampler coordinates: per parameter, a position in [0, 1] (ranges) or
/// a choice index.
pub type Point = Vec<f64>;

/// The search space.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    /// The parameters, in the file's order.
    pub params: Vec<Param>,
}

const BW: f64 = 0.2;

impl Space {
    /// Parses a space file; errors name the file, the parameter and the bad value.
    pub fn load(path: &Path) -> Result<Space> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Space::parse(&text, path)
    }

    /// Parses the JSON text of a space (`file` names it in errors).
    pub fn parse(text: &str, file: &Path) -> Result<Space> {
        let bad = |key: &str, msg: String| Error::Config {
            path: file.to_path_buf(),
            key: key.to_string(),
            msg,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(".", e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| {
            bad(".", "must be an object from config paths to {\"choices\": [...]} or {\"low\", \"high\"}".into())
        })?;
        if obj.is_empty() {
            return Err(bad(".", "has no parameters".into()));
        }
        let mut params = Vec::new();
        for (k, spec) in obj {
            if k.split('.').any(str::is_empty) {
                return Err(bad(k, "is not a dotted config path".into()));
            }
            let s = spec
                .as_object()
                .ok_or_else(|| bad(k, format!("must be an object, not {spec}")))?;
            for key in s.keys() {
                if !["choices", "low", "high", "log", "int"].contains(&key.as_str()) {
                    return Err(bad(
                        &format!("{k}.{key}"),
                        "unknown key (expected choices, or low, high, log, int)".into(),
                    ));
                }
            }
            let domain = if let Some(c) = s.get("choices") {
                let c = c.as_array().filter(|c| !c.is_empty()).ok_or_else(|| {
                    bad(
                        &format!("{k}.choices"),
                        format!("must be a non-empty array, not {c}"),
                    )
                })?;
                Domain::Choices(c.clone())
            } else {
                let num = |n: &str| -> Result<f64> {
                    let x = s.get(n).ok_or_else(|| {
                        bad(k, format!("needs `choices` or `low` and `high` (no `{n}`)"))
                    })?;
                    x.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                        bad(&format!("{k}.{n}"), format!("must be a number, not {x}"))
                    })
                };
                let flag = |n: &str| -> Result<bool> {
                    match s.get(n) {
                        None => Ok(false),
                        Some(Value::Bool(b)) => Ok(*b),
                        Some(x) => Err(bad(
                            &format!("{k}.{n}"),
                            format!("must be true or false, not {x}"),
                        )),
                    }
                };
                let (low, high, log, int) = (num("low")?, num("high")?, flag("log")?, flag("int")?);
                if low >= high {
                    return Err(bad(
                        k,
                        format!("low ({low}) must be less than high ({high})"),
                    ));
                }
                if log && low <= 0.0 {
                    return Err(bad(
                        &format!("{k}.low"),
                        format!("must be > 0 with \"log\": true, not {low}"),
                    ));
                }
                Domain::Range {
                    low,
                    high,
                    log,
                    int,
                }
            };
            params.push(Param {
                path: k.clone(),
                domain,
            });
        }
        // Sorted by path whatever the JSON map's order: the sampler's draws depend on it.
        params.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Space { params })
    }

    /// The config value of coordinate `x` of parameter `p`.
    pub fn value(&self, p: usize, x: f64) -> Value {
        match &self.params[p].domain {
            Domain::Choices(c) => c[(x as usize).min(c.len() - 1)].clone(),
            Domain::Range {
                low,
                high,
                log,
                int,
            } => {
                let v = if *log {
                    (low.ln() + x * (high.ln() - low.ln())).exp()
                } else {
                    low + x * (high - low)
                };
                let v = v.clamp(*low, *high);
                if *int {
                    Value::from(v.round() as i64)
                } else {
                    Value::from(v)
                }
            }
        }
    }

    /// The config values of a point.
    pub fn values(&self, x: &Point) -> Vec<Value> {
        (0..self.params.len())
            .map(|p| self.value(p, x[p]))
            .collect()
    }

    fn random_coord(&self, p: usize, rng: &mut impl Rng) -> f64 {
        match &self.params[p].domain {
            Domain::Choices(c) => rng.gen_range(0..c.len()) as f64,
            Domain::Range { .. } => rng.gen::<f64>(),
        }
    }

    /// A uniformly random point.
    pub fn random(&self, rng: &mut impl Rng) -> Point {
        (0..self.params.len())
            .map(|p| self.random_coord(p, rng))
            .collect()
    }

    /// Log density of coordinate `x` of parameter `p` under the kernel mixture of `pts`
    /// (weight 1 for the uniform prior).
    fn log_density(&self, p: usize, x: f64, pts: &[&Point]) -> f64 {
        let n = pts.len() as f64;
        match &self.params[p].domain {
            Domain::Choices(c) => {
                let k = pts.iter().filter(|q| q[p] == x).count() as f64;
                ((k + 1.0 / c.len() as f64 * 1.0) / (n + 1.0)).ln()
            }
            Domain::Range { .. } => {
                let norm = 1.0 / (BW * (2.0 * std::f64::consts::PI).sqrt());
                let k: f64 = pts
                    .iter()
                    .map(|q| norm * (-0.5 * ((x - q[p]) / BW).powi(2)).exp())
                    .sum();
                ((k + 1.0) / (n + 1.0)).ln()
            }
        }
    }

    /// The next point to try given the finished trials `(point, loss)` (a failed trial has an
    /// infinite loss): random for the first `startup`, then the TPE-like rule of the module docs.
    pub fn suggest(&self, done: &[(Point, f64)], startup: usize, rng: &mut impl Rng) -> Point {
        if done.len() < startup.max(2) {
            return self.random(rng);
        }
        let mut sorted: Vec<&(Point, f64)> = done.iter().collect();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        let n_good = (sorted.len() / 4).max(1);
        let good: Vec<&Point> = sorted[..n_good].iter().map(|t| &t.0).collect();
        let bad: Vec<&Point> = sorted[n_good..].iter().map(|t| &t.0).collect();
        let mut best: Option<(f64, Point)> = None;
        for _ in 0..32 {
            let g = good[rng.gen_range(0..good.len())];
            let x: Point = (0..self.params.len())
                .map(|p| match &self.params[p].domain {
                    Domain::Choices(_) => {
                        if rng.gen::<f64>() < 0.8 {
                            g[p]
                        } else {
                            self.random_coord(p, rng)
                        }
                    }
                    Domain::Range { .. } => {
                        let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-300), rng.gen());
                        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                        (g[p] + BW * z).clamp(0.0, 1.0)
                    }
                })
                .collect();
            let score: f64 = (0..self.params.len())
                .map(|p| self.log_density(p, x[p], &good) - self.log_density(p, x[p], &bad))
                .sum();
            if best.as_ref().is_none_or(|b| score > b.0) {
                best = Some((score, x));
            }
        }
        best.map(|b| b.1).unwrap_or_else(|| self.random(rng))
    }
}

/// Sets the dotted `path` of a JSON config to `v`; the parent objects must exist (so a typo in
/// a path is an error naming it, not a silently ignored key).
pub fn set_path(config: &mut Value, path: &str, v: Value) -> std::result::Result<(), String> {
    let keys: Vec<&str> = path.split('.').collect();
    let (last, parents) = keys.split_last().expect("a non-empty path");
    let mut cur = config;
    for (i, k) in parents.iter().enumerate() {
        cur = cur
            .get_mut(*k)
            .filter(|c| c.is_object())
            .ok_or_else(|| format!("the config has no object {}", keys[..=i].join(".")))?;
    }
    cur.as_object_mut()
        .expect("an object")
        .insert(last.to_string(), v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn space() -> Space {
        Space::parse(
            r#"{"a.x": {"low": 0.0, "high": 1.0}, "a.c": {"choices": ["p", "q", "r"]},
                "a.lr": {"low": 1e-4, "high": 1e-2, "log": true}, "a.n": {"low": 2, "high": 4, "int": true}}"#,
            Path::new("s.json"),
        )
        .unwrap()
    }

    #[test]
    fn values_stay_in_their_domains() {
        let s = space();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let v = s.values(&s.random(&mut rng));
            // Keys are sorted: a.c, a.lr, a.n, a.x.
            assert!(["p", "q", "r"].contains(&v[0].as_str().unwrap()));
            let lr = v[1].as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr));
            assert!((2..=4).contains(&v[2].as_i64().unwrap()));
        }
    }

    #[test]
    fn model_based_suggestions_move_towards_good_trials() {
        // Loss = distance of a.x from 0.9: after random start-up, suggestions concentrate there.
        let s = space();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut done = Vec::new();
        for _ in 0..30 {
            let x = s.suggest(&done, 5, &mut rng);
            let loss = (x[3] - 0.9).abs();
            done.push((x, loss));
        }
        let late: f64 = done[20..].iter().map(|d| d.1).sum::<f64>() / 10.0;
        // Uniform sampling gives a mean distance of 0.41.
        assert!(late < 0.2, "mean late loss {late}");
    }

    #[test]
    fn bad_spaces_name_the_key() {
        for (text, key) in [
            (r#"{"a.b": {"low": 2, "high": 1}}"#, "a.b"),
            (r#"{"a.b": {"choices": []}}"#, "a.b.choices"),
            (r#"{"a.b": {"low": 0, "high": 1, "log": true}}"#, "a.b.low"),
            (r#"{"a.b": {"lo": 0}}"#, "a.b.lo"),
            (r#"{"a..b": {"choices": [1]}}"#, "a..b"),
        ] {
            let e = Space::parse(text, Path::new("s.json"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!(": {key}:")), "{text}: {e}");
        }
        let mut c = serde_json::json!({"a": {"b": 1}});
        set_path(&mut c, "a.c", Value::from(2)).unwrap();
        assert_eq!(c["a"]["c"], 2);
        assert!(set_path(&mut c, "x.y", Value::from(2))
            .unwrap_err()
            .contains("x"));
    }
}
