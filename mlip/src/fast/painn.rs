//! PaiNN on the fast path. Per layer: φ(s) as node GEMMs; one pass over the edges grouped by
//! centre forms [Δs, Δv_v, Δv_s] = φ(s_j) ⊙ W(r_ij) with W from the radial table (3F channels)
//! and aggregates s_i += Σ Δs, v_i += Σ (v_j ⊙ Δv_v + Δv_s ⊗ e_ij); the update block (U, V, the
//! update MLP, HydraGNN's output maps) runs as node GEMMs. The backward pass walks the edges once
//! more, recomputing the filters from the table, and accumulates ∂E/∂(edge vector) directly.
//! Layout of the per-atom state: [s (F), v (3 × F, component-major)], as in
//! [`crate::model::painn`].

use crate::error::{Error, Result};
use crate::model::config::{Activation, ModelConfig, PainnEdgeVector, VectorNorm};

use super::dense::{act_backward, act_forward, madd, resize, zeroed, Dense, MlpK, Real};
use super::radial::Table;
use super::{Csr, Layer, Saved, Weights};

/// One PaiNN layer on the fast path.
pub struct PaiNNLayer<T> {
    f: usize,
    table: Table<T>,
    phi: MlpK<T>,
    u: Dense<T>,
    v: Dense<T>,
    upd: MlpK<T>,
    scalar_only: bool,
    out_s: Option<MlpK<T>>,
    out_v: Option<Dense<T>>,
    edge_vector: PainnEdgeVector,
    vector_norm: VectorNorm,
    post_act: Option<Activation>,
}

// Saved buffers (indices into Saved::bufs) and MLP slots (indices into Saved::zs/acts).
const S1: usize = 0; // s after messages (n × f)
const V1: usize = 1; // v after messages (n × 3f)
const PHI: usize = 2; // φ(s) (n × 3f)
const UV: usize = 3; // U v1 (n × 3f)
const VV: usize = 4; // V v1 (n × 3f)
const NORM: usize = 5; // |V v1| (n × f)
const CAT: usize = 6; // [s1, norm] (n × 2f)
const A: usize = 7; // update MLP output (n × n_upd)
const S2: usize = 8; // s after the update (n × f)
const V2: usize = 9; // v after the update (n × 3f)
const S3: usize = 10; // s after out_s, before post_act (n × fo)
const VIN: usize = 11; // v entering (n × 3f), contiguous
const G0: usize = 12; // backward scratch
const G1: usize = 13;
const G2: usize = 14;
const G3: usize = 15;
const G4: usize = 16;
const NBUF: usize = 17;
const M_PHI: usize = 0;
const M_UPD: usize = 1;
const M_OUT: usize = 2;

impl<T: Real> PaiNNLayer<T> {
    /// Reads layer `l` (weights under `p`) of a PaiNN model whose state entering it has `fin`
    /// scalars (and as many vector channels).
    pub(crate) fn build(
        w: &Weights,
        p: &str,
        c: &ModelConfig,
        l: usize,
        fin: usize,
        table: Table<T>,
    ) -> Result<Self> {
        let o = &c.painn;
        let a = c.conv_activation.unwrap_or(c.activation_function);
        let scalar_only = o.last_layer_scalar_only && l + 1 == c.num_conv_layers;
        let layer = PaiNNLayer {
            f: fin,
            phi: w.mlp(&format!("{p}.message.phi"), 2, a)?,
            u: w.dense(&format!("{p}.update.U"), false)?,
            v: w.dense(&format!("{p}.update.V"), false)?,
            upd: w.mlp(&format!("{p}.update.mlp"), 2, a)?,
            scalar_only,
            out_s: if o.output_mlp {
                Some(w.mlp(&format!("{p}.out.s"), 2, Activation::Tanh)?)
            } else {
                None
            },
            out_v: if o.output_mlp && !scalar_only {
                Some(w.dense(&format!("{p}.out.v"), false)?)
            } else {
                None
            },
            edge_vector: o.edge_vector,
            vector_norm: o.vector_norm,
            post_act: c.post_conv_activation,
            table,
        };
        if layer.table.channels() != 3 * fin || layer.phi.fout() != 3 * fin || layer.u.fin != fin {
            return Err(Error::Internal(format!(
                "fast path: PaiNN layer {l} has unexpected weight shapes"
            )));
        }
        Ok(layer)
    }

    fn fo(&self) -> usize {
        self.out_s.as_ref().map(|m| m.fout()).unwrap_or(self.f)
    }
    fn fo_v(&self) -> usize {
        if self.scalar_only {
            0
        } else {
            self.out_v.as_ref().map(|d| d.fout).unwrap_or(self.f)
        }
    }

    /// Edge direction e(vec, r) and, for the backward pass, q and q' with e = vec·q(r).
    #[inline]
    fn dir(&self, v: &[f64; 3], r: f64) -> ([f64; 3], f64, f64) {
        let (q, dq) = match self.edge_vector {
            PainnEdgeVector::Unit => (1.0 / r, -1.0 / (r * r)),
            PainnEdgeVector::UnitOverDistance => {
                let eps = 1e-9;
                let q = 1.0 / ((r + eps) * r);
                (q, -(2.0 * r + eps) * q * q)
            }
        };
        ([v[0] * q, v[1] * q, v[2] * q], q, dq)
    }
}

fn take<T: Real>(sv: &mut Saved<T>, k: usize, n: usize) -> Vec<T> {
    let mut b = std::mem::take(&mut sv.bufs[k]);
    resize(&mut b, n);
    b
}

impl<T: Real> Layer<T> for PaiNNLayer<T> {
    fn width_in(&self) -> usize {
        4 * self.f
    }
    fn width_out(&self) -> usize {
        self.fo() + 3 * self.fo_v()
    }
    fn table(&self) -> Option<&Table<T>> {
        Some(&self.table)
    }

    fn forward(
        &self,
        csr: &Csr,
        n: usize,
        nr: usize,
        input: &[T],
        out: &mut [T],
        sv: &mut Saved<T>,
    ) {
        let f = self.f;
        let (wi, wo) = (self.width_in(), self.width_out());
        sv.ensure(NBUF);
        // φ(s)
        let mut phi = take(sv, PHI, n * 3 * f);
        {
            let (z, a) = (&mut sv.zs[M_PHI], &mut sv.acts[M_PHI]);
            self.phi.forward(n, input, wi, &mut phi, z, a);
        }
        // s1 = s, v1 = v (receiving rows); then the messages
        let mut s1 = take(sv, S1, nr * f);
        let mut v1 = take(sv, V1, nr * 3 * f);
        let mut vin = take(sv, VIN, n * 3 * f);
        for i in 0..n {
            let row = &input[i * wi..(i + 1) * wi];
            if i < nr {
                s1[i * f..(i + 1) * f].copy_from_slice(&row[..f]);
            }
            vin[i * 3 * f..(i + 1) * 3 * f].copy_from_slice(&row[f..4 * f]);
        }
        v1[..nr * 3 * f].copy_from_slice(&vin[..nr * 3 * f]);
        let c3 = 3 * f;
        resize(&mut sv.w, 7 * f);
        edges_forward(
            self,
            csr,
            f,
            &phi,
            &vin,
            &mut s1,
            &mut v1,
            &mut sv.w[..7 * f],
        );
        // update block
        let mut uv = take(sv, UV, nr * c3);
        let mut vv = take(sv, VV, nr * c3);
        self.u.forward(3 * nr, &v1, f, &mut uv);
        self.v.forward(3 * nr, &v1, f, &mut vv);
        let mut norm = take(sv, NORM, nr * f);
        let mut cat = take(sv, CAT, nr * 2 * f);
        let floor = T::from_f(1e-8);
        for i in 0..nr {
            for c in 0..f {
                let q = vv[i * c3 + c] * vv[i * c3 + c]
                    + vv[i * c3 + f + c] * vv[i * c3 + f + c]
                    + vv[i * c3 + 2 * f + c] * vv[i * c3 + 2 * f + c];
                let nm = match self.vector_norm {
                    VectorNorm::Floored => (q + floor).sqrt(),
                    VectorNorm::Exact => q.sqrt(),
                };
                norm[i * f + c] = nm;
                cat[i * 2 * f + f + c] = nm;
            }
            cat[i * 2 * f..i * 2 * f + f].copy_from_slice(&s1[i * f..(i + 1) * f]);
        }
        let nu = self.upd.fout();
        let mut a = take(sv, A, nr * nu);
        {
            let (z, ac) = (&mut sv.zs[M_UPD], &mut sv.acts[M_UPD]);
            self.upd.forward(nr, &cat, 2 * f, &mut a, z, ac);
        }
        let mut s2 = take(sv, S2, nr * f);
        let mut v2 = take(sv, V2, nr * c3);
        for i in 0..nr {
            let ai = &a[i * nu..(i + 1) * nu];
            for c in 0..f {
                let o = i * c3;
                let dot = uv[o + c] * vv[o + c]
                    + uv[o + f + c] * vv[o + f + c]
                    + uv[o + 2 * f + c] * vv[o + 2 * f + c];
                if self.scalar_only {
                    s2[i * f + c] = s1[i * f + c] + ai[c] * dot + ai[f + c];
                } else {
                    s2[i * f + c] = s1[i * f + c] + ai[f + c] * dot + ai[2 * f + c];
                    for k in 0..3 {
                        v2[o + k * f + c] = v1[o + k * f + c] + ai[c] * uv[o + k * f + c];
                    }
                }
            }
        }
        // output maps into `out` rows [s (fo), v (3 fo_v)]
        let (fo, fov) = (self.fo(), self.fo_v());
        let mut s3 = take(sv, S3, nr * fo);
        match &self.out_s {
            Some(m) => {
                let (z, ac) = (&mut sv.zs[M_OUT], &mut sv.acts[M_OUT]);
                m.forward(nr, &s2, f, &mut s3, z, ac);
            }
            None => s3[..nr * f].copy_from_slice(&s2[..nr * f]),
        }
        for i in 0..nr {
            let row = &mut out[i * wo..i * wo + fo];
            match self.post_act {
                Some(pa) => act_forward(pa, &s3[i * fo..(i + 1) * fo], row),
                None => row.copy_from_slice(&s3[i * fo..(i + 1) * fo]),
            }
        }
        if fov > 0 {
            let mut g0 = take(sv, G0, nr * 3 * fov);
            let vout: &[T] = match &self.out_v {
                Some(d) => {
                    d.forward(3 * nr, &v2, f, &mut g0);
                    &g0
                }
                None => &v2,
            };
            for i in 0..nr {
                out[i * wo + fo..(i + 1) * wo]
                    .copy_from_slice(&vout[i * 3 * fov..(i + 1) * 3 * fov]);
            }
            sv.bufs[G0] = g0;
        }
        out[nr * wo..n * wo].iter_mut().for_each(|x| *x = T::zero());
        for (k, b) in [
            (S1, s1),
            (V1, v1),
            (PHI, phi),
            (UV, uv),
            (VV, vv),
            (NORM, norm),
            (CAT, cat),
            (A, a),
            (S2, s2),
            (V2, v2),
            (S3, s3),
            (VIN, vin),
        ] {
            sv.bufs[k] = b;
        }
    }

    fn backward(
        &self,
        csr: &Csr,
        n: usize,
        nr: usize,
        _input: &[T],
        sv: &mut Saved<T>,
        g_out: &mut [T],
        g_in: &mut [T],
        edge_grad: &mut [[f64; 3]],
    ) {
        let f = self.f;
        let c3 = 3 * f;
        let (wi, wo) = (self.width_in(), self.width_out());
        let (fo, fov) = (self.fo(), self.fo_v());
        let nu = self.upd.fout();
        // ∂E/∂s3 (nr × fo) and ∂E/∂v2 (nr × 3f)
        let mut gs3 = take(sv, G0, nr * fo);
        for i in 0..nr {
            gs3[i * fo..(i + 1) * fo].copy_from_slice(&g_out[i * wo..i * wo + fo]);
        }
        if let Some(pa) = self.post_act {
            act_backward(pa, &sv.bufs[S3][..nr * fo], &mut gs3[..nr * fo]);
        }
        let mut gs2 = take(sv, G1, nr * f);
        match &self.out_s {
            Some(m) => m.backward(nr, &gs3, &mut gs2, f, false, &sv.zs[M_OUT], &mut sv.scratch),
            None => gs2[..nr * f].copy_from_slice(&gs3[..nr * f]),
        }
        let mut gv2 = take(sv, G2, nr * c3);
        if fov > 0 {
            let mut gv3 = std::mem::take(&mut gs3);
            resize(&mut gv3, nr * 3 * fov);
            for i in 0..nr {
                gv3[i * 3 * fov..(i + 1) * 3 * fov]
                    .copy_from_slice(&g_out[i * wo + fo..(i + 1) * wo]);
            }
            match &self.out_v {
                Some(d) => d.backward(3 * nr, &gv3, &mut gv2, f, false),
                None => gv2[..nr * c3].copy_from_slice(&gv3[..nr * c3]),
            }
            gs3 = gv3;
        } else {
            gv2[..nr * c3].iter_mut().for_each(|x| *x = T::zero());
        }
        sv.bufs[G0] = gs3;
        // update block backward: gs1 (nr × f), gv1 (nr × 3f)
        let (uv_b, vv_b, a_b, norm_b) = (
            std::mem::take(&mut sv.bufs[UV]),
            std::mem::take(&mut sv.bufs[VV]),
            std::mem::take(&mut sv.bufs[A]),
            std::mem::take(&mut sv.bufs[NORM]),
        );
        let mut ga = take_free(&mut sv.scratch[0], nr * nu);
        let mut guv = vec_take(&mut sv.bufs, G3, nr * c3);
        let mut gvv = vec_take(&mut sv.bufs, G4, nr * c3);
        let (uv, vv, a, norm) = (&uv_b[..], &vv_b[..], &a_b[..], &norm_b[..]);
        for i in 0..nr {
            let o = i * c3;
            let ai = &a[i * nu..(i + 1) * nu];
            let gai = &mut ga[i * nu..(i + 1) * nu];
            for c in 0..f {
                let g = gs2[i * f + c];
                let dot = uv[o + c] * vv[o + c]
                    + uv[o + f + c] * vv[o + f + c]
                    + uv[o + 2 * f + c] * vv[o + 2 * f + c];
                let (asv, gdot);
                if self.scalar_only {
                    asv = ai[c];
                    gai[c] = g * dot;
                    gai[f + c] = g;
                    gdot = g * asv;
                    for k in 0..3 {
                        guv[o + k * f + c] = gdot * vv[o + k * f + c];
                    }
                } else {
                    asv = ai[f + c];
                    gai[f + c] = g * dot;
                    gai[2 * f + c] = g;
                    gdot = g * asv;
                    let avv = ai[c];
                    let mut gavv = T::zero();
                    for k in 0..3 {
                        let gv = gv2[o + k * f + c];
                        gavv += gv * uv[o + k * f + c];
                        guv[o + k * f + c] = gv * avv + gdot * vv[o + k * f + c];
                    }
                    gai[c] = gavv;
                }
                for k in 0..3 {
                    gvv[o + k * f + c] = gdot * uv[o + k * f + c];
                }
            }
        }
        // update MLP backward into gcat = [gs1 part, gnorm]
        let mut gcat = std::mem::take(&mut sv.scratch[1]);
        resize(&mut gcat, nr * 2 * f);
        {
            let mut scr = [std::mem::take(&mut sv.w), std::mem::take(&mut sv.dw)];
            self.upd
                .backward(nr, &ga, &mut gcat, 2 * f, false, &sv.zs[M_UPD], &mut scr);
            [sv.w, sv.dw] = scr;
        }
        // gs1 = gs2 + gcat[:, :f] (into gs2); gvv += gnorm · vv / norm
        for i in 0..nr {
            for c in 0..f {
                gs2[i * f + c] += gcat[i * 2 * f + c];
                let gn = gcat[i * 2 * f + f + c];
                let nm = norm[i * f + c];
                if nm > T::zero() {
                    let s = gn / nm;
                    for k in 0..3 {
                        gvv[i * c3 + k * f + c] += s * vv[i * c3 + k * f + c];
                    }
                }
            }
        }
        // gv1 = gv2 (if vectors continue) + Uᵀ guv + Vᵀ gvv   (gv2 holds gv1 from here on)
        self.u.backward(3 * nr, &guv, &mut gv2, f, true);
        self.v.backward(3 * nr, &gvv, &mut gv2, f, true);
        sv.scratch[0] = ga;
        sv.scratch[1] = gcat;
        let gs1 = gs2;
        let gv1 = gv2;
        // messages backward: g_in = [gs1 + φᵀ(gφ), gv1 + Σ ...]; gφ accumulated per neighbour
        let mut gphi = guv; // reuse (n × 3f)
        resize(&mut gphi, n * c3);
        gphi[..n * c3].iter_mut().for_each(|x| *x = T::zero());
        let mut gvin = gvv; // reuse (n × 3f)
        resize(&mut gvin, n * c3);
        gvin[..nr * c3].copy_from_slice(&gv1[..nr * c3]);
        gvin[nr * c3..n * c3]
            .iter_mut()
            .for_each(|x| *x = T::zero());
        let (phi, vin) = (&sv.bufs[PHI], &sv.bufs[VIN]);
        let (mut w, mut dw) = (std::mem::take(&mut sv.w), std::mem::take(&mut sv.dw));
        resize(&mut w, 7 * f);
        resize(&mut dw, c3);
        edges_backward(
            self, csr, f, phi, vin, &gs1, &gv1, &mut gphi, &mut gvin, &mut w, &mut dw, edge_grad,
        );
        sv.w = w;
        sv.dw = dw;
        // g_in rows: [gs1 + φ backward, gvin]
        for i in 0..n {
            if i < nr {
                g_in[i * wi..i * wi + f].copy_from_slice(&gs1[i * f..(i + 1) * f]);
            } else {
                g_in[i * wi..i * wi + f]
                    .iter_mut()
                    .for_each(|x| *x = T::zero());
            }
            g_in[i * wi + f..(i + 1) * wi].copy_from_slice(&gvin[i * c3..(i + 1) * c3]);
        }
        {
            let mut scr = [std::mem::take(&mut sv.w), std::mem::take(&mut sv.dw)];
            self.phi
                .backward(n, &gphi, g_in, wi, true, &sv.zs[M_PHI], &mut scr);
            [sv.w, sv.dw] = scr;
        }
        sv.bufs[UV] = uv_b;
        sv.bufs[VV] = vv_b;
        sv.bufs[A] = a_b;
        sv.bufs[NORM] = norm_b;
        sv.bufs[G1] = gs1;
        sv.bufs[G2] = gv1;
        sv.bufs[G3] = gphi;
        sv.bufs[G4] = gvin;
    }

    fn flops(&self) -> (usize, usize) {
        let f = self.f;
        let node = self.phi.flops()
            + 6 * self.u.flops()
            + self.upd.flops()
            + self.out_s.as_ref().map(|m| m.flops()).unwrap_or(0)
            + 3 * self.out_v.as_ref().map(|d| d.flops()).unwrap_or(0);
        // per edge, per f: forward = table values of 3f channels (12) + messages (9); backward =
        // table values and derivatives (21) + ∂Δv (6) + ∂φ (3) + ∂r (6) + ∂e (4) + ∂v (4)
        (65 * f, 2 * node)
    }
}

fn take_free<T: Real>(v: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut b = std::mem::take(v);
    zeroed(&mut b, n);
    b
}

fn vec_take<T: Real>(bufs: &mut [Vec<T>], k: usize, n: usize) -> Vec<T> {
    let mut b = std::mem::take(&mut bufs[k]);
    resize(&mut b, n);
    b
}

dispatch_fma!(edges_forward, edges_forward_fma, edges_forward_k, (l: &PaiNNLayer<T>, csr: &Csr, f: usize, phi: &[T], vin: &[T], s1: &mut [T], v1: &mut [T], w: &mut [T]));
dispatch_fma!(
    edges_backward,
    edges_backward_fma,
    edges_backward_k,
    (l: &PaiNNLayer<T>, csr: &Csr, f: usize, phi: &[T], vin: &[T], gs1: &[T], gv1: &[T], gphi: &mut [T], gvin: &mut [T], w: &mut [T], dw: &mut [T], edge_grad: &mut [[f64; 3]])
);

/// y += a ⊙ b.
#[inline(always)]
fn axpy<T: Real, const FMA: bool>(y: &mut [T], a: &[T], b: &[T]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = madd::<T, FMA>(a, b, *y);
    }
}

/// y += a ⊙ b + c·s.
#[inline(always)]
fn axpy_s<T: Real, const FMA: bool>(y: &mut [T], a: &[T], b: &[T], c: &[T], s: T) {
    for (((y, &a), &b), &c) in y.iter_mut().zip(a).zip(b).zip(c) {
        *y = madd::<T, FMA>(a, b, madd::<T, FMA>(c, s, *y));
    }
}

/// y = a ⊙ b.
#[inline(always)]
fn mul<T: Real>(y: &mut [T], a: &[T], b: &[T]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = a * b;
    }
}

/// Σ a ⊙ b ⊙ c, in eight independent partial sums (vector code).
#[inline(always)]
fn dot3<T: Real, const FMA: bool>(a: &[T], b: &[T], c: &[T]) -> f64 {
    let mut acc = [T::zero(); 8];
    let (ac, bc, cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    let (ar, br, cr) = (ac.remainder(), bc.remainder(), cc.remainder());
    for ((a, b), c) in ac.zip(bc).zip(cc) {
        for k in 0..8 {
            acc[k] = madd::<T, FMA>(a[k] * b[k], c[k], acc[k]);
        }
    }
    let mut s = acc.iter().fold(0.0, |x, &y| x + y.to_f());
    for ((a, b), c) in ar.iter().zip(br).zip(cr) {
        s += (*a * *b * *c).to_f();
    }
    s
}

/// Σ a ⊙ b, in eight independent partial sums (vector code).
#[inline(always)]
fn dot<T: Real, const FMA: bool>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [T::zero(); 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (a, b) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] = madd::<T, FMA>(a[k], b[k], acc[k]);
        }
    }
    let mut s = acc.iter().fold(0.0, |x, &y| x + y.to_f());
    for (a, b) in ar.iter().zip(br) {
        s += (*a * *b).to_f();
    }
    s
}

/// The three f-wide thirds of a 3f row.
#[inline(always)]
fn thirds<T>(v: &[T], f: usize) -> (&[T], &[T], &[T]) {
    let (a, r) = v[..3 * f].split_at(f);
    let (b, c) = r.split_at(f);
    (a, b, c)
}

#[inline(always)]
fn thirds_mut<T>(v: &mut [T], f: usize) -> (&mut [T], &mut [T], &mut [T]) {
    let (a, r) = v[..3 * f].split_at_mut(f);
    let (b, c) = r.split_at_mut(f);
    (a, b, c)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn edges_forward_k<T: Real, const FMA: bool>(
    l: &PaiNNLayer<T>,
    csr: &Csr,
    f: usize,
    phi: &[T],
    vin: &[T],
    s1: &mut [T],
    v1: &mut [T],
    w: &mut [T],
) {
    let c3 = 3 * f;
    let (w, tmp) = w.split_at_mut(c3);
    let (tvv, tvs) = tmp[..2 * f].split_at_mut(f);
    for i in 0..csr.n_centres() {
        let si = &mut s1[i * f..(i + 1) * f];
        let (vx, vy, vz) = thirds_mut(&mut v1[i * c3..(i + 1) * c3], f);
        for e in csr.edges_of(i) {
            let r = csr.r[e];
            l.table.eval_k::<FMA>(r, w, None);
            let j = csr.nbr[e] as usize;
            let (p0, p1, p2) = thirds(&phi[j * c3..(j + 1) * c3], f);
            let (ux, uy, uz) = thirds(&vin[j * c3..(j + 1) * c3], f);
            let (w0, w1, w2) = thirds(w, f);
            let (d, _, _) = l.dir(&csr.vec[e], r);
            axpy::<T, FMA>(si, p0, w0);
            mul(tvv, p1, w1);
            mul(tvs, p2, w2);
            axpy_s::<T, FMA>(vx, ux, tvv, tvs, T::from_f(d[0]));
            axpy_s::<T, FMA>(vy, uy, tvv, tvs, T::from_f(d[1]));
            axpy_s::<T, FMA>(vz, uz, tvv, tvs, T::from_f(d[2]));
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn edges_backward_k<T: Real, const FMA: bool>(
    l: &PaiNNLayer<T>,
    csr: &Csr,
    f: usize,
    phi: &[T],
    vin: &[T],
    gs1: &[T],
    gv1: &[T],
    gphi: &mut [T],
    gvin: &mut [T],
    w: &mut [T],
    dw: &mut [T],
    edge_grad: &mut [[f64; 3]],
) {
    let c3 = 3 * f;
    let (w, tmp) = w.split_at_mut(c3);
    let (t1, rest) = tmp[..4 * f].split_at_mut(f);
    let (t2, rest) = rest.split_at_mut(f);
    let (tvv, tvs) = rest.split_at_mut(f);
    let dw = &mut dw[..c3];
    for i in 0..csr.n_centres() {
        let gsi = &gs1[i * f..(i + 1) * f];
        let (gx, gy, gz) = thirds(&gv1[i * c3..(i + 1) * c3], f);
        for e in csr.edges_of(i) {
            let r = csr.r[e];
            l.table.eval_k::<FMA>(r, w, Some(&mut *dw));
            let j = csr.nbr[e] as usize;
            let (p0, p1, p2) = thirds(&phi[j * c3..(j + 1) * c3], f);
            let (ux, uy, uz) = thirds(&vin[j * c3..(j + 1) * c3], f);
            let (w0, w1, w2) = thirds(w, f);
            let (e0, e1, e2) = thirds(dw, f);
            let vec = &csr.vec[e];
            let (d, q, dq) = l.dir(vec, r);
            let dt = [T::from_f(d[0]), T::from_f(d[1]), T::from_f(d[2])];
            // ∂E/∂Δv_v (t1) and ∂E/∂Δv_s (t2)
            for (((((t1, t2), &gx), &gy), &gz), ((&ux, &uy), &uz)) in t1
                .iter_mut()
                .zip(t2.iter_mut())
                .zip(gx)
                .zip(gy)
                .zip(gz)
                .zip(ux.iter().zip(uy).zip(uz))
            {
                *t1 = madd::<T, FMA>(gx, ux, madd::<T, FMA>(gy, uy, gz * uz));
                *t2 = madd::<T, FMA>(gx, dt[0], madd::<T, FMA>(gy, dt[1], gz * dt[2]));
            }
            let (gp0, gp1, gp2) = thirds_mut(&mut gphi[j * c3..(j + 1) * c3], f);
            axpy::<T, FMA>(gp0, gsi, w0);
            axpy::<T, FMA>(gp1, t1, w1);
            axpy::<T, FMA>(gp2, t2, w2);
            let gr = dot3::<T, FMA>(gsi, p0, e0)
                + dot3::<T, FMA>(t1, p1, e1)
                + dot3::<T, FMA>(t2, p2, e2);
            mul(tvs, p2, w2);
            let gd = [
                dot::<T, FMA>(gx, tvs),
                dot::<T, FMA>(gy, tvs),
                dot::<T, FMA>(gz, tvs),
            ];
            mul(tvv, p1, w1);
            let (gvx, gvy, gvz) = thirds_mut(&mut gvin[j * c3..(j + 1) * c3], f);
            axpy::<T, FMA>(gvx, gx, tvv);
            axpy::<T, FMA>(gvy, gy, tvv);
            axpy::<T, FMA>(gvz, gz, tvv);
            // e = vec·q(r): ∂e_k/∂vec_m = q δ_km + vec_k q'(r) vec_m / r
            let gdv = gd[0] * vec[0] + gd[1] * vec[1] + gd[2] * vec[2];
            let s = gr / r + gdv * dq / r;
            let g = &mut edge_grad[e];
            for k in 0..3 {
                g[k] += s * vec[k] + q * gd[k];
            }
        }
    }
}
