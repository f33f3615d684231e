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
    #[inline(always)]
    fn from_f(x: f64) -> Self {
        x as f32
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
    #[inline(always)]
    fn from_f(x: f64) -> Self {
        x
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

/// Activation of `z` into `y` (same length).
pub fn act_forward<T: Real>(a: Activation, z: &[T], y: &mut [T]) {
    let one = T::one();
    match a {
        Activation::Silu => {
            for (y, &z) in y.iter_mut().zip(z) {
                *y = z / (one + (-z).exp());
            }
        }
        Activation::Ssp => {
            let ln2 = T::from_f(std::f64::consts::LN_2);
            let th = T::from_f(20.0);
            for (y, &z) in y.iter_mut().zip(z) {
                *y = if z > th {
                    z - ln2
                } else {
                    z.exp().ln_1p() - ln2
                };
            }
        }
        Activation::Tanh => {
            for (y, &z) in y.iter_mut().zip(z) {
                *y = z.tanh();
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
                let s = one / (one + (-z).exp());
                *g = *g * s * (one + z * (one - s));
            }
        }
        Activation::Ssp => {
            let th = T::from_f(20.0);
            for (g, &z) in g.iter_mut().zip(z) {
                if z <= th {
                    *g = *g / (one + (-z).exp());
                }
            }
        }
        Activation::Tanh => {
            for (g, &z) in g.iter_mut().zip(z) {
                let t = z.tanh();
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
                act_forward(self.act, &zk, &mut ak);
                z[k] = zk;
                a[k] = ak;
            }
        }
    }

    /// Backward: gx (n × in, row stride `ldgx`) from gy (n × out, consumed as scratch), using the
    /// pre-activations `z` of the forward pass; added to gx when `accumulate`.
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
