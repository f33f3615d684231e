//! Node-side building blocks of the fast path: the float trait, dense layers as GEMMs
//! (matrixmultiply), activations with their derivatives, and reusable scratch buffers.

use crate::model::config::Activation;

/// The float types of the fast path (f32, f64).
pub trait Real:
    num_traits::Float
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + std::ops::AddAssign
    + std::ops::SubAssign
    + 'static
{
    /// From f64 (rounding).
    fn from_f(x: f64) -> Self;
    /// To f64.
    fn to_f(self) -> f64;
    /// e^x, branch-free so that loops over it vectorise (range reduction by ln 2, a Taylor
    /// polynomial, the exponent set from the bits): within 2 ulp of the library's exp on the
    /// range the activations use, 0 below about -87 (f32) / -708 (f64).
    fn exp_v(self) -> Self;
    /// Number of terms of the atanh series that [`ln_1p_unit`] needs for full precision.
    const LN_TERMS: usize;
    /// C = alpha·A·B + beta·C with strides (matrixmultiply's convention).
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping (for C) matrices.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Real for f32 {
    const LN_TERMS: usize = 8;
    #[inline(always)]
    fn from_f(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn exp_v(self) -> f32 {
        let x = self.clamp(-87.0, 88.0);
        // k = round(x / ln 2) by the 1.5·2^23 trick (no library call, vectorises on SSE2)
        let k = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
        let r = (x - k * 0.693_145_75) - k * 1.428_606_8e-6;
        let mut p = 1.0 / 5040.0;
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = p * r + c;
        }
        p * f32::from_bits(((k as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    fn to_f(self) -> f64 {
        self as f64
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Real for f64 {
    const LN_TERMS: usize = 18;
    #[inline(always)]
    fn from_f(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn exp_v(self) -> f64 {
        let x = self.clamp(-708.0, 709.0);
        let k = (x * std::f64::consts::LOG2_E + 6_755_399_441_055_744.0) - 6_755_399_441_055_744.0;
        let r = (x - k * 6.931_471_803_691_238e-1) - k * 1.908_214_929_270_587_8e-10;
        let mut p = 1.0 / 6_227_020_800.0;
        for c in [
            1.0 / 479_001_600.0,
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
            1.0 / 362_880.0,
            1.0 / 40_320.0,
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = p * r + c;
        }
        p * f64::from_bits(((k as i64 + 1023) as u64) << 52)
    }
    #[inline(always)]
    fn to_f(self) -> f64 {
        self
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// a·b + c, fused when `FMA` (use `FMA = true` only in code compiled with the `fma` target
/// feature, where it is one instruction; elsewhere it would be a slow library call).
#[inline(always)]
pub fn madd<T: Real, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Whether this CPU has AVX2 and FMA (the fast kernels' vector code path); checked once.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Activation value and derivative at `z`, in f64 (libtorch's formulas: softplus switches to the
/// identity above 20).
pub fn act_scalar(a: Activation, z: f64) -> (f64, f64) {
    match a {
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-z).exp());
            (z * s, s * (1.0 + z * (1.0 - s)))
        }
        Activation::Ssp => {
            if z > 20.0 {
                (z - std::f64::consts::LN_2, 1.0)
            } else {
                (
                    (z.exp()).ln_1p() - std::f64::consts::LN_2,
                    1.0 / (1.0 + (-z).exp()),
                )
            }
        }
        Activation::Tanh => {
            let t = z.tanh();
            (t, 1.0 - t * t)
        }
        Activation::Relu => {
            if z > 0.0 {
                (z, 1.0)
            } else {
                (0.0, 0.0)
            }
        }
    }
}

/// ln(1 + e) for e in [0, 1], branch-free: 2·atanh(e / (2 + e)) by its series (u ≤ 1/3).
#[inline(always)]
pub fn ln_1p_unit<T: Real>(e: T) -> T {
    let two = T::one() + T::one();
    let u = e / (two + e);
    let u2 = u * u;
    let mut p = T::zero();
    for k in (0..T::LN_TERMS).rev() {
        p = p * u2 + T::one() / T::from_f((2 * k + 1) as f64);
    }
    two * u * p
}

/// Activation of `z` into `y` (same length).
pub fn act_forward<T: Real>(a: Activation, z: &[T], y: &mut [T]) {
    let one = T::one();
    match a {
        Activation::Silu => {
            for (y, &z) in y.iter_mut().zip(z) {
                *y = z / (one + (-z).exp_v());
            }
        }
        Activation::Ssp => {
            // softplus(z) - ln 2 = max(z, 0) + ln(1 + e^-|z|) - ln 2; the identity above 20 as in
            // libtorch
            let ln2 = T::from_f(std::f64::consts::LN_2);
            let th = T::from_f(20.0);
            for (y, &z) in y.iter_mut().zip(z) {
                let sp = z.max(T::zero()) + ln_1p_unit((-z.abs()).exp_v());
                *y = if z > th { z } else { sp } - ln2;
            }
        }
        Activation::Tanh => {
            let two = one + one;
            for (y, &z) in y.iter_mut().zip(z) {
                // 1 - 2 / (e^{2z} + 1), exact at both ends
                *y = one - two / ((two * z).exp_v() + one);
            }
        }
        Activation::Relu => {
            for (y, &z) in y.iter_mut().zip(z) {
                *y = z.max(T::zero());
            }
        }
    }
}

/// `g *= act'(z)` elementwise.
pub fn act_backward<T: Real>(a: Activation, z: &[T], g: &mut [T]) {
    let one = T::one();
    match a {
        Activation::Silu => {
            for (g, &z) in g.iter_mut().zip(z) {
                let s = one / (one + (-z).exp_v());
                *g = *g * s * (one + z * (one - s));
            }
        }
        Activation::Ssp => {
            let th = T::from_f(20.0);
            for (g, &z) in g.iter_mut().zip(z) {
                let s = one / (one + (-z).exp_v());
                *g = if z > th { *g } else { *g * s };
            }
        }
        Activation::Tanh => {
            let two = one + one;
            for (g, &z) in g.iter_mut().zip(z) {
                let t = one - two / ((two * z).exp_v() + one);
                *g = *g * (one - t * t);
            }
        }
        Activation::Relu => {
            for (g, &z) in g.iter_mut().zip(z) {
                if z <= T::zero() {
                    *g = T::zero();
                }
            }
        }
    }
}

/// A dense layer y = x·Wᵀ + b with W (out × in) row-major, as in libtorch.
#[derive(Debug, Clone)]
pub struct Dense<T> {
    /// Weight, out × in, row-major.
    pub w: Vec<T>,
    /// Bias (out), if any.
    pub b: Option<Vec<T>>,
    /// Input width.
    pub fin: usize,
    /// Output width.
    pub fout: usize,
}

impl<T: Real> Dense<T> {
    /// From f64 weights (out × in) and an optional bias.
    pub fn new(w: &[f64], b: Option<&[f64]>, fin: usize, fout: usize) -> Self {
        assert_eq!(w.len(), fin * fout, "dense weight shape");
        Dense {
            w: w.iter().map(|&x| T::from_f(x)).collect(),
            b: b.map(|b| b.iter().map(|&x| T::from_f(x)).collect()),
            fin,
            fout,
        }
    }

    /// y (n × out) = x (n × in; row stride `ldx`) · Wᵀ + b.
    pub fn forward(&self, n: usize, x: &[T], ldx: usize, y: &mut [T]) {
        if n == 0 {
            return;
        }
        assert!(x.len() >= (n - 1) * ldx + self.fin && y.len() >= n * self.fout);
        if let Some(b) = &self.b {
            for row in y[..n * self.fout].chunks_exact_mut(self.fout) {
                row.copy_from_slice(b);
            }
        }
        let beta = if self.b.is_some() {
            T::one()
        } else {
            T::zero()
        };
        // SAFETY: sizes checked above; y does not alias x or w.
        unsafe {
            T::gemm(
                n,
                self.fin,
                self.fout,
                T::one(),
                x.as_ptr(),
                ldx as isize,
                1,
                self.w.as_ptr(),
                1,
                self.fin as isize,
                beta,
                y.as_mut_ptr(),
                self.fout as isize,
                1,
            );
        }
    }

    /// gx (n × in; row stride `ldgx`) = gy (n × out) · W, added to gx when `accumulate`.
    pub fn backward(&self, n: usize, gy: &[T], gx: &mut [T], ldgx: usize, accumulate: bool) {
        if n == 0 {
            return;
        }
        assert!(gy.len() >= n * self.fout && gx.len() >= (n - 1) * ldgx + self.fin);
        let beta = if accumulate { T::one() } else { T::zero() };
        // SAFETY: sizes checked above; gx does not alias gy or w.
        unsafe {
            T::gemm(
                n,
                self.fout,
                self.fin,
                T::one(),
                gy.as_ptr(),
                self.fout as isize,
                1,
                self.w.as_ptr(),
                self.fin as isize,
                1,
                beta,
                gx.as_mut_ptr(),
                ldgx as isize,
                1,
            );
        }
    }

    /// Multiply-adds per row, forward.
    pub fn flops(&self) -> usize {
        self.fin * self.fout
    }
}

/// An MLP (Dense, act, Dense, act, ..., Dense) on node rows, with the pre-activations kept for
/// the backward pass.
#[derive(Debug, Clone)]
pub struct MlpK<T> {
    /// The layers.
    pub layers: Vec<Dense<T>>,
    /// Activation between layers.
    pub act: Activation,
}

impl<T: Real> MlpK<T> {
    /// Output width.
    pub fn fout(&self) -> usize {
        self.layers.last().map(|l| l.fout).unwrap_or(0)
    }

    /// Forward pass of n rows of x (row stride `ldx`) into `y` (n × out). `z` keeps the
    /// pre-activations of the hidden layers (grown as needed).
    pub fn forward(
        &self,
        n: usize,
        x: &[T],
        ldx: usize,
        y: &mut [T],
        z: &mut Vec<Vec<T>>,
        a: &mut Vec<Vec<T>>,
    ) {
        let nl = self.layers.len();
        z.resize_with(nl.saturating_sub(1), Vec::new);
        a.resize_with(nl.saturating_sub(1), Vec::new);
        for (k, l) in self.layers.iter().enumerate() {
            if k + 1 == nl {
                let (inp, ld) = if k == 0 {
                    (x, ldx)
                } else {
                    (&a[k - 1][..], self.layers[k - 1].fout)
                };
                l.forward(n, inp, ld, y);
            } else {
                let mut zk = std::mem::take(&mut z[k]);
                resize(&mut zk, n * l.fout);
                {
                    let (inp, ld) = if k == 0 {
                        (x, ldx)
                    } else {
                        (&a[k - 1][..], self.layers[k - 1].fout)
                    };
                    l.forward(n, inp, ld, &mut zk);
                }
                let mut ak = std::mem::take(&mut a[k]);
                resize(&mut ak, n * l.fout);
                act_forward(self.act, &zk[..n * l.fout], &mut ak[..n * l.fout]);
                z[k] = zk;
                a[k] = ak;
            }
        }
    }

    /// Backward: gx (n × in, row stride `ldgx`) from gy (n × out, consumed as scratch), using the
    /// pre-activations `z` of the forward pass; added to gx when `accumulate`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        n: usize,
        gy: &[T],
        gx: &mut [T],
        ldgx: usize,
        accumulate: bool,
        z: &[Vec<T>],
        scratch: &mut [Vec<T>; 2],
    ) {
        let nl = self.layers.len();
        if nl == 1 {
            self.layers[0].backward(n, gy, gx, ldgx, accumulate);
            return;
        }
        let [s0, s1] = scratch;
        // gradient w.r.t. the activations of the last hidden layer
        let last = &self.layers[nl - 1];
        resize(s0, n * last.fin);
        last.backward(n, gy, s0, last.fin, false);
        for k in (0..nl - 1).rev() {
            act_backward(
                self.act,
                &z[k][..n * self.layers[k].fout],
                &mut s0[..n * self.layers[k].fout],
            );
            let l = &self.layers[k];
            if k == 0 {
                l.backward(n, s0, gx, ldgx, accumulate);
            } else {
                resize(s1, n * l.fin);
                l.backward(n, s0, s1, l.fin, false);
                std::mem::swap(s0, s1);
            }
        }
    }

    /// Multiply-adds per row, forward.
    pub fn flops(&self) -> usize {
        self.layers.iter().map(|l| l.flops()).sum()
    }
}

/// Grows `v` to at least `n` elements (never shrinks, never reallocates once large enough).
#[inline]
pub fn resize<T: Real>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::zero());
    }
}

/// Sets the first `n` elements of `v` to zero, growing it if needed.
#[inline]
pub fn zeroed<T: Real>(v: &mut Vec<T>, n: usize) {
    resize(v, n);
    v[..n].iter_mut().for_each(|x| *x = T::zero());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Real>(tol: f64) {
        let mut worst = 0.0f64;
        for i in 0..20001 {
            let x = -60.0 + 120.0 * i as f64 / 20000.0;
            let got = T::from_f(x).exp_v().to_f();
            let want = T::from_f(x).exp().to_f();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < tol, "exp_v relative error {worst:e}");
        let mut worst = 0.0f64;
        for i in 0..=1000 {
            let e = i as f64 / 1000.0;
            worst = worst.max((ln_1p_unit(T::from_f(e)).to_f() - e.ln_1p()).abs());
        }
        assert!(worst < tol, "ln_1p_unit error {worst:e}");
    }

    #[test]
    fn vector_exp_and_log_are_accurate() {
        check::<f64>(1e-15);
        check::<f32>(5e-7);
    }

    #[test]
    fn mlp_work_follows_the_rows_of_the_call_not_the_grown_buffers() {
        // a large call grows the buffers; a later small call must not run over their whole
        // length (that made every call after a large batch several times slower)
        let mlp = MlpK::<f64> {
            layers: vec![
                Dense::new(&[0.5; 6], Some(&[0.1; 3]), 2, 3),
                Dense::new(&[0.3; 3], None, 3, 1),
            ],
            act: Activation::Silu,
        };
        let (mut z, mut a) = (Vec::new(), Vec::new());
        let mut y = vec![0.0; 100];
        mlp.forward(100, &vec![1.0; 200], 2, &mut y, &mut z, &mut a);
        assert_eq!(a[0].len(), 300);
        a[0][6..].iter_mut().for_each(|v| *v = -7.0);
        mlp.forward(2, &[0.2, 0.4, 0.6, 0.8], 2, &mut y, &mut z, &mut a);
        assert!(
            a[0][6..].iter().all(|&v| v == -7.0),
            "rows beyond the call were recomputed"
        );
        let (z0, a0) = act_scalar(Activation::Silu, 0.5 * 0.6 + 0.1);
        assert!(
            (a[0][0] - z0).abs() < 1e-15 && (y[0] - 0.9 * z0).abs() < 1e-15,
            "{} {} {a0}",
            a[0][0],
            y[0]
        );
    }

    #[test]
    fn activations_match_their_scalar_definitions() {
        let z: Vec<f64> = (0..401).map(|i| -25.0 + 0.125 * i as f64).collect();
        for a in [
            Activation::Silu,
            Activation::Ssp,
            Activation::Tanh,
            Activation::Relu,
        ] {
            let mut y = vec![0.0; z.len()];
            act_forward(a, &z, &mut y);
            let mut g = vec![1.0; z.len()];
            act_backward(a, &z, &mut g);
            for i in 0..z.len() {
                let (f, fp) = act_scalar(a, z[i]);
                assert!(
                    (y[i] - f).abs() < 1e-14 * (1.0 + f.abs()),
                    "{a:?}({}) = {} vs {f}",
                    z[i],
                    y[i]
                );
                assert!(
                    (g[i] - fp).abs() < 1e-14,
                    "{a:?}'({}) = {} vs {fp}",
                    z[i],
                    g[i]
                );
            }
        }
    }
}
