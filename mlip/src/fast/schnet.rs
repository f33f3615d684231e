//! SchNet on the fast path. Per layer: x = lin1(h) (GEMM); one pass over the edges grouped by
//! centre computes m_i = Σ_j x_j ⊙ W(r_ij) with W from the radial table; then
//! h ← h + lin3(act(lin2(m))) (GEMMs). The backward pass walks the same edges once:
//! ∂E/∂x_j += ∂E/∂m_i ⊙ W(r_ij) and ∂E/∂r_ij = Σ_c ∂E/∂m_ic · x_jc · W'_c(r_ij).

use crate::model::config::Activation;

use super::dense::{act_backward, act_forward, madd, resize, zeroed, Dense, Real};
use super::radial::Table;
use super::{Csr, Layer, Saved};

/// One SchNet interaction on the fast path.
pub struct SchNetLayer<T> {
    pub(crate) table: Table<T>,
    pub(crate) lin1: Dense<T>,
    pub(crate) lin2: Dense<T>,
    pub(crate) lin3: Dense<T>,
    pub(crate) residual: bool,
    pub(crate) act: Activation,
    pub(crate) post_act: Option<Activation>,
}

// Saved buffers: 0 x = lin1(h), 1 m, 2 z2 = lin2(m), 3 a2 = act(z2), 4 s before post_act.
const X: usize = 0;
const M: usize = 1;
const Z2: usize = 2;
const A2: usize = 3;
const PRE: usize = 4;

impl<T: Real> Layer<T> for SchNetLayer<T> {
    fn width_in(&self) -> usize {
        self.lin1.fin
    }
    fn width_out(&self) -> usize {
        self.lin3.fout
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
        let f = self.lin1.fout;
        let fin = self.lin1.fin;
        sv.ensure(5);
        // x for every row (messages are gathered from ghosts too)
        let mut x = std::mem::take(&mut sv.bufs[X]);
        resize(&mut x, n * f);
        self.lin1.forward(n, input, fin, &mut x);
        // messages and the update for the receiving rows only
        let mut m = std::mem::take(&mut sv.bufs[M]);
        zeroed(&mut m, nr * f);
        let (w, _) = sv.edge_scratch(f);
        edges_forward(self, csr, f, &x, &mut m, w);
        let mut z2 = std::mem::take(&mut sv.bufs[Z2]);
        resize(&mut z2, nr * f);
        self.lin2.forward(nr, &m, f, &mut z2);
        let mut a2 = std::mem::take(&mut sv.bufs[A2]);
        resize(&mut a2, nr * f);
        act_forward(self.act, &z2[..nr * f], &mut a2[..nr * f]);
        let fo = self.lin3.fout;
        self.lin3.forward(nr, &a2, f, out);
        if self.residual {
            for (o, &h) in out[..nr * fo].iter_mut().zip(&input[..nr * fin]) {
                *o += h;
            }
        }
        if let Some(pa) = self.post_act {
            let mut pre = std::mem::take(&mut sv.bufs[PRE]);
            resize(&mut pre, nr * fo);
            pre[..nr * fo].copy_from_slice(&out[..nr * fo]);
            act_forward(pa, &pre[..nr * fo], &mut out[..nr * fo]);
            sv.bufs[PRE] = pre;
        }
        out[nr * fo..n * fo].iter_mut().for_each(|v| *v = T::zero());
        sv.bufs[X] = x;
        sv.bufs[M] = m;
        sv.bufs[Z2] = z2;
        sv.bufs[A2] = a2;
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
        let f = self.lin1.fout;
        let fin = self.lin1.fin;
        let fo = self.lin3.fout;
        if let Some(pa) = self.post_act {
            act_backward(pa, &sv.bufs[PRE][..nr * fo], &mut g_out[..nr * fo]);
        }
        // residual (receiving rows); the other rows only get the message gradient
        if self.residual {
            g_in[..nr * fin].copy_from_slice(&g_out[..nr * fin]);
        } else {
            g_in[..nr * fin].iter_mut().for_each(|x| *x = T::zero());
        }
        g_in[nr * fin..n * fin]
            .iter_mut()
            .for_each(|x| *x = T::zero());
        let [s0, s1] = &mut sv.scratch;
        // g_a2 = g_out · W3 ; g_z2 = g_a2 ⊙ act'(z2) ; g_m = g_z2 · W2
        resize(s0, nr * f);
        self.lin3.backward(nr, g_out, s0, f, false);
        act_backward(self.act, &sv.bufs[Z2][..nr * f], &mut s0[..nr * f]);
        resize(s1, nr * f);
        self.lin2.backward(nr, s0, s1, f, false);
        let gm = &s1[..nr * f];
        // edges: g_x (into s0, reused) and the edge gradients
        zeroed(s0, n * f);
        let gx = &mut s0[..n * f];
        let x = &sv.bufs[X];
        let (w, dw) = (&mut sv.w, &mut sv.dw);
        resize(w, f);
        resize(dw, f);
        edges_backward(self, csr, f, x, gm, gx, w, dw, edge_grad);
        self.lin1.backward(n, gx, g_in, fin, true);
    }

    fn flops(&self) -> (usize, usize) {
        let f = self.lin1.fout;
        // per edge and channel: forward = table value (4) + message (1); backward = table value
        // and derivative (7) + ∂x_j (1) + ∂r (2)
        (
            15 * f,
            2 * (self.lin1.flops() + self.lin2.flops() + self.lin3.flops()),
        )
    }
}

// m_i = Σ_j x_j ⊙ W(r_ij), on the best vector code this CPU has.
dispatch_fma!(edges_forward, edges_forward_fma, edges_forward_k, (l: &SchNetLayer<T>, csr: &Csr, f: usize, x: &[T], m: &mut [T], w: &mut [T]));

#[inline(always)]
fn edges_forward_k<T: Real, const FMA: bool>(
    l: &SchNetLayer<T>,
    csr: &Csr,
    f: usize,
    x: &[T],
    m: &mut [T],
    w: &mut [T],
) {
    for i in 0..csr.n_centres() {
        let mi = &mut m[i * f..(i + 1) * f];
        for e in csr.edges_of(i) {
            let j = csr.nbr[e] as usize;
            let xj = &x[j * f..(j + 1) * f];
            match l.table.locate(csr.r[e]) {
                Some(ip) => {
                    let (y0, m0, y1, m1) = (&ip.y0[..f], &ip.m0[..f], &ip.y1[..f], &ip.m1[..f]);
                    let h = ip.h;
                    let f8 = f / 8 * 8;
                    for o in (0..f8).step_by(8) {
                        let (y0b, m0b, y1b, m1b, xb) =
                            (blk(y0, o), blk(m0, o), blk(y1, o), blk(m1, o), blk(xj, o));
                        let mb: &mut [T; 8] = (&mut mi[o..o + 8]).try_into().unwrap();
                        for k in 0..8 {
                            let wc = madd::<T, FMA>(
                                y0b[k],
                                h[0],
                                madd::<T, FMA>(
                                    m0b[k],
                                    h[1],
                                    madd::<T, FMA>(y1b[k], h[2], m1b[k] * h[3]),
                                ),
                            );
                            mb[k] = madd::<T, FMA>(xb[k], wc, mb[k]);
                        }
                    }
                    for c in f8..f {
                        let wc = madd::<T, FMA>(
                            y0[c],
                            h[0],
                            madd::<T, FMA>(m0[c], h[1], madd::<T, FMA>(y1[c], h[2], m1[c] * h[3])),
                        );
                        mi[c] = madd::<T, FMA>(xj[c], wc, mi[c]);
                    }
                }
                None => {
                    l.table.eval_k::<FMA>(csr.r[e], w, None);
                    for c in 0..f {
                        mi[c] += xj[c] * w[c];
                    }
                }
            }
        }
    }
}

// ∂E/∂x_j += ∂E/∂m_i ⊙ W(r_ij) and ∂E/∂(edge vector), on the best vector code this CPU has.
dispatch_fma!(
    edges_backward,
    edges_backward_fma,
    edges_backward_k,
    (l: &SchNetLayer<T>, csr: &Csr, f: usize, x: &[T], gm: &[T], gx: &mut [T], w: &mut [T], dw: &mut [T], edge_grad: &mut [[f64; 3]])
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn edges_backward_k<T: Real, const FMA: bool>(
    l: &SchNetLayer<T>,
    csr: &Csr,
    f: usize,
    x: &[T],
    gm: &[T],
    gx: &mut [T],
    w: &mut [T],
    dw: &mut [T],
    edge_grad: &mut [[f64; 3]],
) {
    for i in 0..csr.n_centres() {
        let gmi = &gm[i * f..(i + 1) * f];
        for e in csr.edges_of(i) {
            let r = csr.r[e];
            let j = csr.nbr[e] as usize;
            let xj = &x[j * f..(j + 1) * f];
            let gxj = &mut gx[j * f..(j + 1) * f];
            let mut s = T::zero();
            match l.table.locate(r) {
                Some(ip) => {
                    let (y0, m0, y1, m1) = (&ip.y0[..f], &ip.m0[..f], &ip.y1[..f], &ip.m1[..f]);
                    let (h, d) = (ip.h, ip.d);
                    // blocks of eight channels with independent partial sums: vector code
                    let mut acc = [T::zero(); 8];
                    let f8 = f / 8 * 8;
                    for o in (0..f8).step_by(8) {
                        let (y0b, m0b) = (blk(y0, o), blk(m0, o));
                        let (y1b, m1b) = (blk(y1, o), blk(m1, o));
                        let (gb, xb) = (blk(gmi, o), blk(xj, o));
                        let gxb: &mut [T; 8] = (&mut gxj[o..o + 8]).try_into().unwrap();
                        for k in 0..8 {
                            let wc = madd::<T, FMA>(
                                y0b[k],
                                h[0],
                                madd::<T, FMA>(
                                    m0b[k],
                                    h[1],
                                    madd::<T, FMA>(y1b[k], h[2], m1b[k] * h[3]),
                                ),
                            );
                            let dc = madd::<T, FMA>(
                                y0b[k] - y1b[k],
                                d[0],
                                madd::<T, FMA>(m0b[k], d[1], m1b[k] * d[2]),
                            );
                            gxb[k] = madd::<T, FMA>(gb[k], wc, gxb[k]);
                            acc[k] = madd::<T, FMA>(gb[k] * xb[k], dc, acc[k]);
                        }
                    }
                    for c in f8..f {
                        let wc = madd::<T, FMA>(
                            y0[c],
                            h[0],
                            madd::<T, FMA>(m0[c], h[1], madd::<T, FMA>(y1[c], h[2], m1[c] * h[3])),
                        );
                        let dc = madd::<T, FMA>(
                            y0[c] - y1[c],
                            d[0],
                            madd::<T, FMA>(m0[c], d[1], m1[c] * d[2]),
                        );
                        gxj[c] = madd::<T, FMA>(gmi[c], wc, gxj[c]);
                        acc[0] = madd::<T, FMA>(gmi[c] * xj[c], dc, acc[0]);
                    }
                    s = acc.iter().fold(T::zero(), |a, &b| a + b);
                }
                None => {
                    l.table.eval_k::<FMA>(r, w, Some(dw));
                    for c in 0..f {
                        gxj[c] += gmi[c] * w[c];
                        s += gmi[c] * xj[c] * dw[c];
                    }
                }
            }
            let s = s.to_f() / r;
            let v = &csr.vec[e];
            let g = &mut edge_grad[e];
            g[0] += s * v[0];
            g[1] += s * v[1];
            g[2] += s * v[2];
        }
    }
}

/// Eight values of `v` from `o` as an array (one bounds check, then vector code).
#[inline(always)]
fn blk<T: Real>(v: &[T], o: usize) -> &[T; 8] {
    v[o..o + 8].try_into().unwrap()
}
