//! SchNet on the fast path. Per layer: x = lin1(h) (GEMM); one pass over the edges grouped by
//! centre computes m_i = Σ_j x_j ⊙ W(r_ij) with W from the radial table; then
//! h ← h + lin3(act(lin2(m))) (GEMMs). The backward pass walks the same edges once:
//! ∂E/∂x_j += ∂E/∂m_i ⊙ W(r_ij) and ∂E/∂r_ij = Σ_c ∂E/∂m_ic · x_jc · W'_c(r_ij).

use crate::model::config::Activation;

use super::dense::{act_backward, act_forward, resize, zeroed, Dense, Real};
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

    fn forward(&self, csr: &Csr, n: usize, input: &[T], out: &mut [T], sv: &mut Saved<T>) {
        let f = self.lin1.fout;
        let fin = self.lin1.fin;
        sv.ensure(5);
        let mut x = std::mem::take(&mut sv.bufs[X]);
        resize(&mut x, n * f);
        self.lin1.forward(n, input, fin, &mut x);
        let mut m = std::mem::take(&mut sv.bufs[M]);
        zeroed(&mut m, n * f);
        let (w, dw) = sv.edge_scratch(f);
        for i in 0..csr.n_centres() {
            let mi = &mut m[i * f..(i + 1) * f];
            for e in csr.edges_of(i) {
                self.table.eval(csr.r[e], w, dw);
                let j = csr.nbr[e] as usize;
                let xj = &x[j * f..(j + 1) * f];
                for c in 0..f {
                    mi[c] += xj[c] * w[c];
                }
            }
        }
        let mut z2 = std::mem::take(&mut sv.bufs[Z2]);
        resize(&mut z2, n * f);
        self.lin2.forward(n, &m, f, &mut z2);
        let mut a2 = std::mem::take(&mut sv.bufs[A2]);
        resize(&mut a2, n * f);
        act_forward(self.act, &z2[..n * f], &mut a2[..n * f]);
        let fo = self.lin3.fout;
        self.lin3.forward(n, &a2, f, out);
        if self.residual {
            for (o, &h) in out[..n * fo].iter_mut().zip(&input[..n * fin]) {
                *o += h;
            }
        }
        if let Some(pa) = self.post_act {
            let mut pre = std::mem::take(&mut sv.bufs[PRE]);
            resize(&mut pre, n * fo);
            pre[..n * fo].copy_from_slice(&out[..n * fo]);
            act_forward(pa, &pre[..n * fo], &mut out[..n * fo]);
            sv.bufs[PRE] = pre;
        }
        sv.bufs[X] = x;
        sv.bufs[M] = m;
        sv.bufs[Z2] = z2;
        sv.bufs[A2] = a2;
    }

    fn backward(
        &self,
        csr: &Csr,
        n: usize,
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
            act_backward(pa, &sv.bufs[PRE][..n * fo], &mut g_out[..n * fo]);
        }
        // residual
        if self.residual {
            g_in[..n * fin].copy_from_slice(&g_out[..n * fin]);
        } else {
            g_in[..n * fin].iter_mut().for_each(|x| *x = T::zero());
        }
        let [s0, s1] = &mut sv.scratch;
        // g_a2 = g_out · W3 ; g_z2 = g_a2 ⊙ act'(z2) ; g_m = g_z2 · W2
        resize(s0, n * f);
        self.lin3.backward(n, g_out, s0, f, false);
        act_backward(self.act, &sv.bufs[Z2][..n * f], &mut s0[..n * f]);
        resize(s1, n * f);
        self.lin2.backward(n, s0, s1, f, false);
        let gm = &s1[..n * f];
        // edges: g_x (into s0, reused) and the edge gradients
        zeroed(s0, n * f);
        let gx = &mut s0[..n * f];
        let x = &sv.bufs[X];
        let (w, dw) = (&mut sv.w, &mut sv.dw);
        resize(w, f);
        resize(dw, f);
        for i in 0..csr.n_centres() {
            let gmi = &gm[i * f..(i + 1) * f];
            for e in csr.edges_of(i) {
                let r = csr.r[e];
                self.table.eval(r, w, dw);
                let j = csr.nbr[e] as usize;
                let xj = &x[j * f..(j + 1) * f];
                let gxj = &mut gx[j * f..(j + 1) * f];
                let mut s = T::zero();
                for c in 0..f {
                    gxj[c] += gmi[c] * w[c];
                    s += gmi[c] * xj[c] * dw[c];
                }
                let s = s.to_f() / r;
                let v = &csr.vec[e];
                let g = &mut edge_grad[e];
                g[0] += s * v[0];
                g[1] += s * v[1];
                g[2] += s * v[2];
            }
        }
        self.lin1.backward(n, gx, g_in, fin, true);
    }

    fn flops(&self) -> (usize, usize) {
        let f = self.lin1.fout;
        // per edge: table value + derivative (8 per channel), message (1), backward (3)
        (
            12 * f,
            2 * (self.lin1.flops() + self.lin2.flops() + self.lin3.flops()),
        )
    }
}
