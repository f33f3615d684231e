//! The optimiser and schedules, with state that checkpoints exactly.
//!
//! [`AdamW`] is written here over the model's trainable variables (sorted by name) instead of
//! using `tch::nn::Optimizer`, whose moments live inside libtorch and cannot be saved: here the
//! first and second moments are ordinary tensors that [`crate::checkpoint`] stores bit for bit,
//! so `--resume` continues with exactly the update an uninterrupted run makes. The update is
//! PyTorch's `torch.optim.AdamW` (and `Adam` with an L2 penalty when `decoupled` is false).
//!
//! [`Plateau`] is PyTorch's `ReduceLROnPlateau` (mode min, relative threshold, no cooldown) and
//! [`EarlyStopping`] HydraGNN's (stop after `patience` epochs without a lower validation loss).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::config::{Optimizer as OptConfig, Scheduler as SchedConfig};

/// One optimised variable.
#[derive(Debug)]
pub struct Param {
    /// Variable-store name (`layers.0.filter1.weight`).
    pub name: String,
    /// The variable.
    pub var: Tensor,
    /// First moment (a view into the optimiser's flat first-moment buffer: update it in place).
    pub m: Tensor,
    /// Second moment (a view into the flat second-moment buffer: update it in place).
    pub v: Tensor,
}

/// AdamW with explicit, saveable state.
#[derive(Debug)]
pub struct AdamW {
    /// Variables with their moments, sorted by name.
    pub params: Vec<Param>,
    /// Learning rate (set by the scheduler).
    pub lr: f64,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    /// Number of steps taken.
    pub t: i64,
    /// All first moments, in parameter order (each [`Param::m`] is a view of its part).
    flat_m: Tensor,
    /// All second moments, likewise.
    flat_v: Tensor,
}

impl AdamW {
    /// For the trainable variables of `vs`; makes every gradient defined (zero), so that
    /// gradients can be read and written as one flat buffer from the first step on.
    pub fn new(vs: &tch::nn::VarStore, cfg: &OptConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(total) = vars
            .iter()
            .map(|(_, v)| (v * 0.0).sum(v.kind()))
            .reduce(|a, b| a + b)
        {
            total.backward();
        }
        let n: i64 = vars.iter().map(|(_, v)| v.numel() as i64).sum();
        let opts = vars
            .first()
            .map_or((Kind::Float, tch::Device::Cpu), |(_, v)| {
                (v.kind(), v.device())
            });
        let flat_m = Tensor::zeros([n], opts);
        let flat_v = Tensor::zeros([n], opts);
        let mut off = 0i64;
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let k = var.numel() as i64;
                let shape = var.size();
                let m = flat_m.narrow(0, off, k).view(shape.as_slice());
                let v = flat_v.narrow(0, off, k).view(shape.as_slice());
                off += k;
                Param { name, var, m, v }
            })
            .collect();
        AdamW {
            params,
            lr: cfg.learning_rate,
            betas: cfg.betas,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay(),
            decoupled: cfg.decoupled(),
            t: 0,
            flat_m,
            flat_v,
        }
    }

    /// Zeroes every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.var.zero_grad();
        }
    }

    /// Total number of scalars over all variables.
    pub fn numel(&self) -> usize {
        self.params.iter().map(|p| p.var.numel()).sum()
    }

    /// All gradients, concatenated in parameter order, as f64. The gradients are joined on their
    /// device and cross to the host in one copy (on a GPU, one transfer and one synchronisation
    /// per step instead of one per parameter tensor).
    pub fn grads_flat(&self) -> Vec<f64> {
        let n = self.numel();
        if self.params.is_empty() {
            return Vec::new();
        }
        let parts: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| {
                let g = p.var.grad();
                if g.defined() {
                    g.detach().reshape([-1]).to_kind(Kind::Double)
                } else {
                    Tensor::zeros([p.var.numel() as i64], (Kind::Double, p.var.device()))
                }
            })
            .collect();
        let flat = Tensor::cat(&parts, 0).to_device(tch::Device::Cpu);
        let mut out = vec![0.0; n];
        flat.copy_data(&mut out, n);
        out
    }

    /// Overwrites every gradient from a flat buffer laid out as [`AdamW::grads_flat`]: one copy to
    /// the parameters' device, then a slice of it per gradient.
    pub fn set_grads_flat(&mut self, flat: &[f64]) {
        let Some(first) = self.params.first() else {
            return;
        };
        let (kind, device) = (first.var.kind(), first.var.device());
        tch::no_grad(|| {
            let all = Tensor::from_slice(flat).to_device(device).to_kind(kind);
            let mut off = 0i64;
            for p in &mut self.params {
                let n = p.var.numel() as i64;
                let mut g = p.var.grad();
                let src = all.narrow(0, off, n).view(p.var.size().as_slice());
                g.copy_(&src);
                off += n;
            }
        });
    }

    /// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the
    /// norm before clipping (computed from the flat buffer, identical on every rank).
    pub fn clip_flat(flat: &mut [f64], max_norm: f64) -> f64 {
        let norm = flat.iter().map(|g| g * g).sum::<f64>().sqrt();
        if norm > max_norm {
            let s = max_norm / (norm + 1e-6);
            flat.iter_mut().for_each(|g| *g *= s);
        }
        norm
    }

    /// One update of the parameters for which `active(name)` holds (the others, e.g. the heads
    /// of branches that this batch does not touch, keep their weights and moments, as PyTorch
    /// skips parameters whose gradient is None).
    ///
    /// The update runs on all parameters at once, as flat tensors (weights and gradients joined,
    /// the moments kept flat): a few kernels per step instead of a dozen per parameter tensor,
    /// which on a GPU is what the step waits for. Element by element it is the same arithmetic,
    /// in the same order, as the per-tensor form of PyTorch's AdamW.
    pub fn step(&mut self, active: impl Fn(&str) -> bool) {
        self.t += 1;
        let [b1, b2] = self.betas;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        let (lr, wd, eps, decoupled) = (self.lr, self.weight_decay, self.eps, self.decoupled);
        let on: Vec<bool> = self.params.iter().map(|p| active(&p.name)).collect();
        if !on.iter().any(|&a| a) {
            return;
        }
        tch::no_grad(|| {
            let flat = |f: &dyn Fn(&Param) -> Tensor| -> Tensor {
                let parts: Vec<Tensor> = self.params.iter().map(|p| f(p).reshape([-1])).collect();
                Tensor::cat(&parts, 0)
            };
            let w = flat(&|p: &Param| p.var.detach());
            let mut g = flat(&|p: &Param| p.var.grad().detach());
            let mut w_new = w.shallow_clone();
            if wd > 0.0 {
                if decoupled {
                    w_new = &w * (1.0 - lr * wd);
                } else {
                    g += &w * wd;
                }
            }
            let m = &self.flat_m * b1 + &g * (1.0 - b1);
            let v = &self.flat_v * b2 + &g * &g * (1.0 - b2);
            let denom = v.sqrt() / bc2.sqrt() + eps;
            let upd = &m / denom * (-lr / bc1);
            let w_new = w_new + upd;
            // Inactive parameters keep weights and moments: select per element.
            let (w_new, m, v) = if on.iter().all(|&a| a) {
                (w_new, m, v)
            } else {
                let mask = Tensor::cat(
                    &self
                        .params
                        .iter()
                        .zip(&on)
                        .map(|(p, &a)| {
                            Tensor::full(
                                [p.var.numel() as i64],
                                i64::from(a),
                                (Kind::Bool, p.var.device()),
                            )
                        })
                        .collect::<Vec<_>>(),
                    0,
                );
                (
                    w_new.where_self(&mask, &w),
                    m.where_self(&mask, &self.flat_m),
                    v.where_self(&mask, &self.flat_v),
                )
            };
            self.flat_m.copy_(&m);
            self.flat_v.copy_(&v);
            let mut off = 0i64;
            for (p, &a) in self.params.iter_mut().zip(&on) {
                let k = p.var.numel() as i64;
                if a {
                    p.var
                        .copy_(&w_new.narrow(0, off, k).view(p.var.size().as_slice()));
                }
                off += k;
            }
        });
    }
}

/// An exponential moving average of the optimised variables (`Training.ema_decay`), in the
/// order of [`AdamW::params`]. After each optimiser step t (counted from 1) every average moves
/// towards its variable: avg ← d·avg + (1 − d)·var with d = min(decay, (1 + t) / (10 + t)), the
/// warm-up of TensorFlow's `ExponentialMovingAverage` that NequIP also uses.
#[derive(Debug)]
pub struct Ema {
    /// The configured decay.
    pub decay: f64,
    /// One average per optimised variable.
    pub avg: Vec<Tensor>,
}

impl Ema {
    /// Averages starting at the current values of `opt`'s variables.
    pub fn new(opt: &AdamW, decay: f64) -> Self {
        let avg = tch::no_grad(|| opt.params.iter().map(|p| p.var.detach().copy()).collect());
        Ema { decay, avg }
    }

    /// The decay in effect after optimiser step `t`.
    pub fn decay_at(&self, t: i64) -> f64 {
        self.decay.min((1.0 + t as f64) / (10.0 + t as f64))
    }

    /// Moves the averages towards the variables after `opt`'s latest step.
    pub fn update(&mut self, opt: &AdamW) {
        let d = self.decay_at(opt.t);
        tch::no_grad(|| {
            for (a, p) in self.avg.iter_mut().zip(&opt.params) {
                let _ = a.g_mul_scalar_(d);
                let _ = a.g_add_(&(&p.var * (1.0 - d)));
            }
        });
    }

    /// Exchanges the variables' values with the averages (twice restores both).
    pub fn swap(&mut self, opt: &mut AdamW) {
        tch::no_grad(|| {
            for (a, p) in self.avg.iter_mut().zip(&mut opt.params) {
                let tmp = p.var.detach().copy();
                p.var.copy_(a);
                a.copy_(&tmp);
            }
        });
    }
}

/// ReduceLROnPlateau state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    /// Best validation loss so far.
    pub best: f64,
    /// Epochs since it improved.
    pub bad_epochs: usize,
}

impl Default for Plateau {
    fn default() -> Self {
        Plateau {
            best: f64::MAX,
            bad_epochs: 0,
        }
    }
}

impl Plateau {
    /// Records an epoch's validation loss; returns the new learning rate.
    pub fn step(&mut self, val: f64, lr: f64, cfg: &SchedConfig) -> f64 {
        if val < self.best * (1.0 - cfg.threshold) {
            self.best = val;
            self.bad_epochs = 0;
            lr
        } else {
            self.bad_epochs += 1;
            if self.bad_epochs > cfg.patience {
                self.bad_epochs = 0;
                (lr * cfg.factor).max(cfg.min_lr)
            } else {
                lr
            }
        }
    }
}

/// Early-stopping state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Best validation loss so far.
    pub best: f64,
    /// Epochs since it improved.
    pub counter: usize,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            best: f64::MAX,
            counter: 0,
        }
    }
}

impl EarlyStopping {
    /// Records an epoch's validation loss; true when training should stop.
    pub fn step(&mut self, val: f64, patience: usize) -> bool {
        if val < self.best {
            self.best = val;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        self.counter >= patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_averages_with_warm_up_and_swaps_back() {
        let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[1], tch::nn::Init::Const(0.0));
        vs.double();
        let cfg = OptConfig {
            kind: "AdamW".into(),
            learning_rate: 0.1,
            weight_decay: Some(0.0),
            betas: [0.9, 0.999],
            eps: 1e-8,
        };
        let mut opt = AdamW::new(&vs, &cfg);
        let mut ema = Ema::new(&opt, 0.9);
        let mut want = 0.0;
        for t in 1..=30i64 {
            // Set the variable to t and take the average by hand.
            tch::no_grad(|| {
                let _ = opt.params[0].var.fill_(t as f64);
            });
            opt.t = t;
            ema.update(&opt);
            let d = 0.9f64.min((1.0 + t as f64) / (10.0 + t as f64));
            want = d * want + (1.0 - d) * t as f64;
        }
        assert!((ema.avg[0].double_value(&[0]) - want).abs() < 1e-12);
        ema.swap(&mut opt);
        assert!((w.double_value(&[0]) - want).abs() < 1e-12);
        assert_eq!(ema.avg[0].double_value(&[0]), 30.0);
        ema.swap(&mut opt);
        assert_eq!(w.double_value(&[0]), 30.0);
    }

    #[test]
    fn adamw_matches_reference_update() {
        // One scalar parameter, two steps, checked against the AdamW formulas by hand.
        let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[1], tch::nn::Init::Const(1.0));
        vs.double();
        let cfg = OptConfig {
            kind: "AdamW".into(),
            learning_rate: 0.1,
            weight_decay: Some(0.01),
            betas: [0.9, 0.999],
            eps: 1e-8,
        };
        let mut opt = AdamW::new(&vs, &cfg);
        let (mut p, mut m, mut v) = (1.0f64, 0.0, 0.0);
        for t in 1..=2 {
            opt.zero_grad();
            let loss = (&opt.params[0].var * &opt.params[0].var).sum(Kind::Double);
            loss.backward();
            opt.step(|_| true);
            let g = 2.0 * p;
            p *= 1.0 - 0.1 * 0.01;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let mh = m / (1.0 - 0.9f64.powi(t));
            let vh = v / (1.0 - 0.999f64.powi(t));
            p -= 0.1 * mh / (vh.sqrt() + 1e-8);
        }
        let _ = w;
        let got = opt.params[0].var.double_value(&[0]);
        assert!((got - p).abs() < 1e-12, "{got} vs {p}");
    }

    #[test]
    fn flat_update_is_the_per_tensor_update_and_skips_inactive_parameters() {
        // Three tensors of different shapes, float32 (rounding visible), the middle one inactive
        // at every other step: weights and moments equal, bit for bit, the per-tensor AdamW/Adam
        // update written out tensor by tensor, and the inactive tensor keeps its state.
        for kind in ["AdamW", "Adam"] {
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let shapes: [&[i64]; 3] = [&[3, 4], &[5], &[2, 2, 2]];
            for (i, sh) in shapes.iter().enumerate() {
                let _ = vs.root().var(
                    &format!("p{i}"),
                    sh,
                    tch::nn::Init::Uniform { lo: -1.0, up: 1.0 },
                );
            }
            let cfg = OptConfig {
                kind: kind.into(),
                learning_rate: 0.05,
                weight_decay: Some(0.02),
                betas: [0.9, 0.99],
                eps: 1e-8,
            };
            let mut opt = AdamW::new(&vs, &cfg);
            let (b1, b2, lr, wd, eps) = (0.9f64, 0.99f64, 0.05, 0.02, 1e-8);
            let mut w: Vec<Tensor> = opt.params.iter().map(|p| p.var.detach().copy()).collect();
            let mut m: Vec<Tensor> = w.iter().map(|t| t.zeros_like()).collect();
            let mut v: Vec<Tensor> = w.iter().map(|t| t.zeros_like()).collect();
            for t in 1..=4 {
                opt.zero_grad();
                let loss = opt
                    .params
                    .iter()
                    .map(|p| (&p.var * &p.var * &p.var).sum(Kind::Float))
                    .reduce(|a, b| a + b)
                    .unwrap();
                loss.backward();
                let skip = if t % 2 == 0 { "p1" } else { "none" };
                let grads: Vec<Tensor> = opt.params.iter().map(|p| p.var.grad().copy()).collect();
                opt.step(|n| n != skip);
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                for (i, g) in grads.into_iter().enumerate() {
                    if format!("p{i}") == skip {
                        continue;
                    }
                    let mut g = g;
                    if kind == "AdamW" {
                        w[i] = &w[i] * (1.0 - lr * wd);
                    } else {
                        g += &w[i] * wd;
                    }
                    m[i] = &m[i] * b1 + &g * (1.0 - b1);
                    v[i] = &v[i] * b2 + &g * &g * (1.0 - b2);
                    let denom = v[i].sqrt() / bc2.sqrt() + eps;
                    w[i] = &w[i] + &m[i] / denom * (-lr / bc1);
                }
                for (i, p) in opt.params.iter().enumerate() {
                    for (a, b, what) in [
                        (&p.var, &w[i], "weight"),
                        (&p.m, &m[i], "m"),
                        (&p.v, &v[i], "v"),
                    ] {
                        let d = (a - b).abs().max().double_value(&[]);
                        assert_eq!(d, 0.0, "{kind} step {t} {} {what}", p.name);
                    }
                }
            }
        }
    }

    #[test]
    fn plateau_reduces_after_patience() {
        let cfg = SchedConfig {
            patience: 1,
            ..Default::default()
        };
        let mut s = Plateau::default();
        let mut lr = 1.0;
        for v in [1.0, 1.0, 1.0] {
            lr = s.step(v, lr, &cfg);
        }
        assert_eq!(lr, 0.5);
    }
}
