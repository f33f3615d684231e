//! Radial filters as functions of the pair distance alone, evaluated exactly in f64 with their
//! derivative (forward mode through the radial basis, the filter MLP and the envelope), and their
//! compressed form: a cubic Hermite table per channel on a uniform grid in r, whose derivative is
//! the table's own, so a tabulated model is itself an exactly conservative potential.

use crate::model::config::{Activation, Envelope, RadialType};

use super::dense::{act_scalar, madd, Real};

/// Radial basis and envelope, scalar, with derivatives (the same numbers as
/// [`crate::model::nn::Radial`] in f64).
#[derive(Debug, Clone, Copy)]
pub struct Basis {
    /// Basis family.
    pub kind: RadialType,
    /// Envelope.
    pub envelope: Envelope,
    /// Cutoff (Å).
    pub cutoff: f64,
    /// Number of basis functions.
    pub n: usize,
}

impl Basis {
    /// Fills `b` and `db` (length n) with the basis and its derivative at distance `d` (> 0).
    pub fn eval(&self, d: f64, b: &mut [f64], db: &mut [f64]) {
        let rc = self.cutoff;
        let n = self.n;
        match self.kind {
            RadialType::Gaussian => {
                let step = if n > 1 { rc / (n - 1) as f64 } else { rc };
                let gamma = -0.5 / (step * step);
                for k in 0..n {
                    // torch.linspace(0, rc, n)
                    let mu = if n > 1 {
                        rc * k as f64 / (n - 1) as f64
                    } else {
                        0.0
                    };
                    let x = d - mu;
                    let v = (gamma * x * x).exp();
                    b[k] = v;
                    db[k] = v * 2.0 * gamma * x;
                }
            }
            RadialType::Bessel | RadialType::Sinc => {
                let pref = if self.kind == RadialType::Bessel {
                    (2.0 / rc).sqrt()
                } else {
                    1.0
                };
                for k in 0..n {
                    let w = (k + 1) as f64 * std::f64::consts::PI / rc;
                    let (s, c) = (w * d).sin_cos();
                    b[k] = pref * s / d;
                    db[k] = pref * (w * c * d - s) / (d * d);
                }
            }
        }
    }

    /// Envelope and its derivative at distance `d`; (0, 0) at and beyond the cutoff.
    pub fn envelope(&self, d: f64) -> (f64, f64) {
        let rc = self.cutoff;
        if d >= rc {
            return (0.0, 0.0);
        }
        let x = d / rc;
        match self.envelope {
            Envelope::Cosine => {
                let pi = std::f64::consts::PI;
                (
                    0.5 * ((pi * x).cos() + 1.0),
                    -0.5 * pi * (pi * x).sin() / rc,
                )
            }
            Envelope::Polynomial { p } => {
                let pf = p as f64;
                let a = -(pf + 1.0) * (pf + 2.0) / 2.0;
                let b = pf * (pf + 2.0);
                let c = -pf * (pf + 1.0) / 2.0;
                let xp1 = x.powi(p - 1);
                let xp = xp1 * x;
                let u = xp * a + xp * x * b + xp * x * x * c + 1.0;
                let du = a * pf * xp1 + b * (pf + 1.0) * xp + c * (pf + 2.0) * xp * x;
                (u, du / rc)
            }
            Envelope::Hard => (1.0, 0.0),
        }
    }
}

/// One filter: `envelope(r) · MLP(basis(r))` with `channels` outputs, the MLP given as f64
/// (weight (out, in) row-major, bias) layers with an activation between them.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Radial basis and envelope.
    pub basis: Basis,
    /// Layers (weight (out × in), bias, out, in).
    pub layers: Vec<(Vec<f64>, Vec<f64>, usize, usize)>,
    /// Activation between layers.
    pub act: Activation,
}

impl Filter {
    /// Number of output channels.
    pub fn channels(&self) -> usize {
        self.layers.last().map(|l| l.2).unwrap_or(0)
    }

    /// Value and derivative (d/dr) of every channel at distance `d`; zero beyond the cutoff.
    pub fn eval(&self, d: f64, w: &mut [f64], dw: &mut [f64]) {
        let (env, denv) = self.basis.envelope(d);
        let c = self.channels();
        if env == 0.0 && denv == 0.0 {
            w[..c].iter_mut().for_each(|x| *x = 0.0);
            dw[..c].iter_mut().for_each(|x| *x = 0.0);
            return;
        }
        let mut x = vec![0.0; self.basis.n];
        let mut dx = vec![0.0; self.basis.n];
        self.basis.eval(d, &mut x, &mut dx);
        for (k, (wt, b, out, inp)) in self.layers.iter().enumerate() {
            let mut y = b.clone();
            let mut dy = vec![0.0; *out];
            for o in 0..*out {
                let row = &wt[o * inp..(o + 1) * inp];
                y[o] += row.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>();
                dy[o] = row.iter().zip(&dx).map(|(a, b)| a * b).sum::<f64>();
            }
            if k + 1 < self.layers.len() {
                for o in 0..*out {
                    let (f, fp) = act_scalar(self.act, y[o]);
                    y[o] = f;
                    dy[o] *= fp;
                }
            }
            x = y;
            dx = dy;
        }
        for o in 0..c {
            w[o] = x[o] * env;
            dw[o] = dx[o] * env + x[o] * denv;
        }
    }
}

/// A filter tabulated as cubic Hermite splines on a uniform grid of `r` in [`r_lo`, cutoff]:
/// node values and node derivatives of the exact filter, interleaved per node as
/// `[value[0..C], derivative[0..C]]`. Below `r_lo` the exact filter is evaluated.
#[derive(Debug, Clone)]
pub struct Table<T> {
    /// Lowest tabulated distance (Å).
    pub r_lo: f64,
    /// Grid spacing (Å).
    pub h: f64,
    inv_h: f64,
    n_int: usize,
    channels: usize,
    nodes: Vec<T>,
    /// Largest |table - exact| of the values over the check points, relative to max |filter|.
    pub rel_error: f64,
    /// Largest |table - exact| of the values over the check points (absolute).
    pub abs_error: f64,
    /// Largest |table' - exact'| of the derivatives over the check points (absolute, per Å).
    pub abs_error_deriv: f64,
    /// The exact filter (for r < r_lo).
    pub exact: Filter,
}

impl<T: Real> Table<T> {
    /// Tabulates `f` with the coarsest grid (doubling from 128 intervals, at most 32768) whose
    /// value error at the interval midpoints and quarter points, relative to the largest |f|, is
    /// at most `tol`.
    /// The grid is chosen by the interpolation error alone (measured in f64); the reported errors
    /// are those of the table in `T` (float32 adds its rounding, ~1e-7 relative).
    pub fn build(f: Filter, tol: f64) -> Self {
        let rc = f.basis.cutoff;
        let r_lo = (0.05 * rc).min(0.25);
        let mut n_int = 128usize;
        loop {
            let t = Table::<f64>::with_intervals(f.clone(), r_lo, n_int);
            if t.rel_error <= tol || n_int >= 32768 {
                return Self::with_intervals(f, r_lo, n_int);
            }
            // cubic Hermite: error ∝ h⁴; jump to the predicted grid (a power of two, at least
            // double) rather than doubling one step at a time
            let want = n_int as f64 * (t.rel_error / tol).powf(0.25) * 1.1;
            n_int = (want.ceil() as usize)
                .next_power_of_two()
                .clamp(2 * n_int, 32768);
        }
    }

    fn with_intervals(f: Filter, r_lo: f64, n_int: usize) -> Self {
        let rc = f.basis.cutoff;
        let c = f.channels();
        let h = (rc - r_lo) / n_int as f64;
        let mut nodes = vec![T::zero(); (n_int + 1) * 2 * c];
        let (mut w, mut dw) = (vec![0.0; c], vec![0.0; c]);
        let mut vmax = 0.0f64;
        for k in 0..=n_int {
            let r = if k == n_int { rc } else { r_lo + k as f64 * h };
            f.eval(r, &mut w, &mut dw);
            for ch in 0..c {
                nodes[k * 2 * c + ch] = T::from_f(w[ch]);
                nodes[k * 2 * c + c + ch] = T::from_f(dw[ch]);
                vmax = vmax.max(w[ch].abs());
            }
        }
        let mut t = Table {
            r_lo,
            h,
            inv_h: 1.0 / h,
            n_int,
            channels: c,
            nodes,
            rel_error: 0.0,
            abs_error: 0.0,
            abs_error_deriv: 0.0,
            exact: f,
        };
        let (mut tw, mut tdw) = (vec![T::zero(); c], vec![T::zero(); c]);
        let (mut err, mut errd) = (0.0f64, 0.0f64);
        for k in 0..n_int {
            for frac in [0.25, 0.5, 0.75] {
                let r = r_lo + (k as f64 + frac) * h;
                t.exact.eval(r, &mut w, &mut dw);
                t.eval(r, &mut tw, &mut tdw);
                for ch in 0..c {
                    err = err.max((tw[ch].to_f() - w[ch]).abs());
                    errd = errd.max((tdw[ch].to_f() - dw[ch]).abs());
                }
            }
        }
        t.abs_error = err;
        t.abs_error_deriv = errd;
        t.rel_error = if vmax > 0.0 { err / vmax } else { 0.0 };
        t
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Number of grid intervals.
    pub fn intervals(&self) -> usize {
        self.n_int
    }
    /// Bytes held by the table.
    pub fn bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<T>()
    }

    /// Filter values and derivatives at `r` (< cutoff) into `w`, `dw` (length C).
    #[inline(always)]
    pub fn eval(&self, r: f64, w: &mut [T], dw: &mut [T]) {
        self.eval_k::<false>(r, w, Some(dw))
    }

    /// Filter values and, when `dw` is given, derivatives at `r` (< cutoff); `FMA` selects fused
    /// multiply-adds (only inside code compiled with the `fma` target feature).
    #[inline(always)]
    pub fn eval_k<const FMA: bool>(&self, r: f64, w: &mut [T], dw: Option<&mut [T]>) {
        let c = self.channels;
        if r < self.r_lo {
            self.eval_exact(r, w, dw);
            return;
        }
        let x = (r - self.r_lo) * self.inv_h;
        let k = (x as usize).min(self.n_int - 1);
        let t = x - k as f64;
        // Hermite basis on [0, 1] and its derivative (per unit r).
        let t2 = t * t;
        let t3 = t2 * t;
        let h01 = -2.0 * t3 + 3.0 * t2;
        let h00 = 1.0 - h01;
        let h10 = (t3 - 2.0 * t2 + t) * self.h;
        let h11 = (t3 - t2) * self.h;
        let base = k * 2 * c;
        let n = &self.nodes[base..base + 4 * c];
        let (y0, rest) = n.split_at(c);
        let (m0, rest) = rest.split_at(c);
        let (y1, m1) = rest.split_at(c);
        let (h00, h10, h01, h11) = (
            T::from_f(h00),
            T::from_f(h10),
            T::from_f(h01),
            T::from_f(h11),
        );
        let w = &mut w[..c];
        for ch in 0..c {
            w[ch] = madd::<T, FMA>(
                y0[ch],
                h00,
                madd::<T, FMA>(m0[ch], h10, madd::<T, FMA>(y1[ch], h01, m1[ch] * h11)),
            );
        }
        if let Some(dw) = dw {
            // d/dr of the basis: h00' = -h01' = a, h10' = d10, h11' = d11
            let a = T::from_f((6.0 * t2 - 6.0 * t) * self.inv_h);
            let (d10, d11) = (
                T::from_f(3.0 * t2 - 4.0 * t + 1.0),
                T::from_f(3.0 * t2 - 2.0 * t),
            );
            let dw = &mut dw[..c];
            for ch in 0..c {
                dw[ch] = madd::<T, FMA>(
                    y0[ch] - y1[ch],
                    a,
                    madd::<T, FMA>(m0[ch], d10, m1[ch] * d11),
                );
            }
        }
    }

    /// Where `r` falls in the table and the Hermite weights there, for kernels that evaluate
    /// the filter channel by channel in registers; None below `r_lo` (use [`Table::eval`]).
    #[inline(always)]
    pub fn locate(&self, r: f64) -> Option<Interp<'_, T>> {
        if r < self.r_lo {
            return None;
        }
        let c = self.channels;
        let x = (r - self.r_lo) * self.inv_h;
        let k = (x as usize).min(self.n_int - 1);
        let t = x - k as f64;
        let t2 = t * t;
        let t3 = t2 * t;
        let h01 = -2.0 * t3 + 3.0 * t2;
        let base = k * 2 * c;
        let n = &self.nodes[base..base + 4 * c];
        let (y0, rest) = n.split_at(c);
        let (m0, rest) = rest.split_at(c);
        let (y1, m1) = rest.split_at(c);
        Some(Interp {
            y0,
            m0,
            y1,
            m1,
            h: [
                T::from_f(1.0 - h01),
                T::from_f((t3 - 2.0 * t2 + t) * self.h),
                T::from_f(h01),
                T::from_f((t3 - t2) * self.h),
            ],
            d: [
                T::from_f((6.0 * t2 - 6.0 * t) * self.inv_h),
                T::from_f(3.0 * t2 - 4.0 * t + 1.0),
                T::from_f(3.0 * t2 - 2.0 * t),
            ],
        })
    }

    #[cold]
    fn eval_exact(&self, r: f64, w: &mut [T], dw: Option<&mut [T]>) {
        let c = self.channels;
        let (mut a, mut b) = (vec![0.0; c], vec![0.0; c]);
        self.exact.eval(r, &mut a, &mut b);
        for ch in 0..c {
            w[ch] = T::from_f(a[ch]);
        }
        if let Some(dw) = dw {
            for ch in 0..c {
                dw[ch] = T::from_f(b[ch]);
            }
        }
    }
}

/// The table's interval around one distance: node values and derivatives of both ends, and the
/// Hermite weights of the value (`h`) and of its r-derivative (`d`).
pub struct Interp<'a, T> {
    /// Values at the left node.
    pub y0: &'a [T],
    /// Derivatives at the left node.
    pub m0: &'a [T],
    /// Values at the right node.
    pub y1: &'a [T],
    /// Derivatives at the right node.
    pub m1: &'a [T],
    /// Weights of y0, m0, y1, m1 in the value.
    pub h: [T; 4],
    /// Weights in the derivative: `(y0 - y1)·d[0] + m0·d[1] + m1·d[2]`.
    pub d: [T; 3],
}

impl<T: Real> Interp<'_, T> {
    /// Filter value of channel `c`.
    #[inline(always)]
    pub fn value<const FMA: bool>(&self, c: usize) -> T {
        let h = &self.h;
        madd::<T, FMA>(
            self.y0[c],
            h[0],
            madd::<T, FMA>(
                self.m0[c],
                h[1],
                madd::<T, FMA>(self.y1[c], h[2], self.m1[c] * h[3]),
            ),
        )
    }
    /// Derivative d/dr of channel `c`.
    #[inline(always)]
    pub fn deriv<const FMA: bool>(&self, c: usize) -> T {
        let d = &self.d;
        madd::<T, FMA>(
            self.y0[c] - self.y1[c],
            d[0],
            madd::<T, FMA>(self.m0[c], d[1], self.m1[c] * d[2]),
        )
    }
}
