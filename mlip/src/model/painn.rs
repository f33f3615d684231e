//! PaiNN (Schütt, Unke, Gastegger, "Equivariant message passing for the prediction of tensorial
//! properties and molecular spectra", ICML 2021). Scalar features s (n, F) and vector features
//! v (n, 3, F). Reads `hidden_dim`, `num_conv_layers`, `num_radial`, `radial_type`, `envelope`,
//! `activation_function`, `conv_activation`, `post_conv_activation`, `avg_num_neighbors` and
//! `painn` from [`ModelConfig`].
//!
//! Message: [Δs, Δv_v, Δv_s] = φ(s_j) ⊙ W(rbf(r_ij))·envelope; s_i += Σ Δs,
//! v_i += Σ (v_j ⊙ Δv_v + Δv_s ⊗ e_ij) with e_ij = r̂_ij (or r̂_ij / r_ij, `painn.edge_vector`);
//! with `avg_num_neighbors` = k both sums are divided by k (W is scaled by 1/k).
//! With `painn.edge_filter` the filter W(rbf)·envelope is multiplied by MLP(r_ij) (1 → F → 3F).
//! Update: a = MLP([s, |V v|]); v += a_vv ⊙ U v; s += a_sv ⊙ <U v, V v> + a_ss.
//!
//! HydraGNN's variant (`painn.output_mlp`, `painn.last_layer_scalar_only`): each layer runs at the
//! width of its input (1 for a raw atom-type feature in the first layer) and ends with
//! s ← Linear(tanh(Linear(s))), v ← Linear(v) to `hidden_dim`; the last layer's update outputs
//! only [a_sv, a_ss] and drops the vectors.

use tch::{nn, Kind, Tensor};

use super::config::{Activation, ModelConfig, PainnEdgeVector, VectorNorm};
use super::nn::{act, Edges, Mlp};
use super::{Backbone, State};

struct Layer {
    /// Width of the features inside the layer (its input width).
    f: i64,
    phi: Mlp,
    w: nn::Linear,
    /// `painn.edge_filter`: an MLP of the distance multiplying the filter.
    edge_filter: Option<Mlp>,
    u: nn::Linear,
    v: nn::Linear,
    upd: Mlp,
    scalar_only: bool,
    out_s: Option<Mlp>,
    out_v: Option<nn::Linear>,
}

/// The PaiNN backbone.
pub struct PaiNN {
    layers: Vec<Layer>,
    /// Scalar width of the state entering layer l (l = 0..=L).
    s_dims: Vec<i64>,
    /// Vector width of the state entering layer l, None when it has no vectors.
    v_dims: Vec<Option<i64>>,
    edge_vector: PainnEdgeVector,
    vector_norm: VectorNorm,
    post_act: Option<Activation>,
    /// 1 / `avg_num_neighbors` (1 without it): the scale of the summed messages.
    msg_scale: f64,
}

/// Norm with a small floor, so the gradient at v = 0 (the first layer) stays finite.
fn safe_norm(x: &Tensor, dim: i64) -> Tensor {
    (x.square().sum_dim_intlist(dim, false, x.kind()) + 1e-8).sqrt()
}

impl PaiNN {
    /// Layers under `vs/"layers"/l/{message,update,out}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let h = c.hidden_dim;
        let o = &c.painn;
        assert!(
            o.output_mlp || c.input_dim() == h,
            "validated: PaiNN input width != hidden_dim needs painn.output_mlp"
        );
        let a: Activation = c.conv_activation.unwrap_or(c.activation_function);
        let upd_cfg = nn::LinearConfig {
            bias: o.update_bias,
            ..Default::default()
        };
        let mut s_dims = vec![c.input_dim()];
        let mut v_dims = vec![Some(c.input_dim())];
        let nl = c.num_conv_layers;
        let layers = (0..nl)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let f = s_dims[l];
                let scalar_only = o.last_layer_scalar_only && l + 1 == nl;
                let n_upd = if scalar_only { 2 * f } else { 3 * f };
                let out_s = o
                    .output_mlp
                    .then(|| Mlp::new(&(&p / "out" / "s"), &[f, h, h], Activation::Tanh));
                let out_v = (o.output_mlp && !scalar_only)
                    .then(|| nn::linear(&p / "out" / "v", f, h, upd_cfg));
                let f_out = if o.output_mlp { h } else { f };
                s_dims.push(f_out);
                v_dims.push((!scalar_only).then_some(f_out));
                Layer {
                    f,
                    phi: Mlp::new(&(&p / "message" / "phi"), &[f, f, 3 * f], a),
                    w: nn::linear(
                        &p / "message" / "filter",
                        c.num_radial,
                        3 * f,
                        Default::default(),
                    ),
                    edge_filter: o
                        .edge_filter
                        .then(|| Mlp::new(&(&p / "message" / "edge_filter"), &[1, f, 3 * f], a)),
                    u: nn::linear(&p / "update" / "U", f, f, upd_cfg),
                    v: nn::linear(&p / "update" / "V", f, f, upd_cfg),
                    upd: Mlp::new(&(&p / "update" / "mlp"), &[2 * f, f, n_upd], a),
                    scalar_only,
                    out_s,
                    out_v,
                }
            })
            .collect();
        PaiNN {
            layers,
            s_dims,
            v_dims,
            edge_vector: o.edge_vector,
            vector_norm: o.vector_norm,
            post_act: c.post_conv_activation,
            msg_scale: c.avg_num_neighbors.map_or(1.0, |k| 1.0 / k),
        }
    }
}

/// The inputs of a PaiNN message step: φ(s) (N, 3F), the state, its vectors, the edges, the
/// radial filter (of rbf, envelope, distance), the unit edge vectors, and whether Σ_j v_j ⊙ dvv_ij
/// is skipped (layer 0, zero vectors).
#[derive(Clone, Copy)]
struct Msg<'a> {
    phi: &'a Tensor,
    st: &'a State,
    v: &'a Tensor,
    e: &'a Edges,
    radial: &'a dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    dir: &'a Tensor,
    skip_vv: bool,
}

impl PaiNN {
    /// The message step with libtorch's operations: (s + Σ_j ds_ij, v + Σ_j v_j ⊙ dvv_ij +
    /// Σ_j dvs_ij ⊗ e_ij), x_ij = φ(s_j) ⊙ W(r_ij) split into (ds, dvv, dvs).
    fn message(m: &Msg) -> (Tensor, Tensor) {
        let Msg {
            phi,
            st,
            v,
            e,
            radial,
            dir,
            skip_vv,
        } = *m;
        let f = phi.size()[1] / 3;
        // With the pairing known, the edges are taken pair-major ([`Edges::pair_major`]): the
        // filter, once per pair, multiplies both edges of its pair by broadcasting instead of
        // being expanded to every edge (and its gradient summed back per pair).
        let (src, dst, dir, x, row) = match (&e.half, e.pair_major()) {
            (Some(h), Some(pm)) => {
                let filter = radial(&h.rbf, &h.env, &h.dist);
                let x = (phi.index_select(0, &pm.src).view([2, -1, 3 * f]) * filter.unsqueeze(0))
                    .view([-1, 3 * f]);
                let dir = dir.index_select(0, &pm.perm);
                (&pm.src, &pm.dst, dir, x, pm.row.as_ref())
            }
            _ => {
                let x = phi.index_select(0, &e.src) * e.filter(radial);
                let row = e.slots().map(|sl| &sl.row);
                (&e.src, &e.dst, dir.shallow_clone(), x, row)
            }
        };
        let parts = x.split(f, -1);
        let (ds, dvv, dvs) = (&parts[0], &parts[1], &parts[2]);
        // Σ_j dvs_ij ⊗ e_ij: a (3 × k) by (k × F) product per node in the padded layout, with no
        // (E, 3, F) intermediate in the forward pass or in either backward pass.
        let vs_sum = Self::vs_sum(e, row, &dir, dvs, dst);
        let s = &st.s + e.aggregate_to(dst, ds);
        let v = if skip_vv {
            v + vs_sum
        } else {
            v + e.aggregate_to(dst, &(v.index_select(0, src) * dvv.unsqueeze(1))) + vs_sum
        };
        (s, v)
    }

    /// [`Self::message`] with the fused gather-multiply-scatter ([`super::fused`]): Σ_j ds_ij =
    /// Σ_j φ_s(s_j) ⊙ W_s(r_ij) and Σ_j v_j ⊙ dvv_ij = Σ_j (v_j ⊙ φ_v(s_j)) ⊙ W_v(r_ij) are
    /// one pass over the edges each, so only the (E, F) block dvs is formed per edge.
    fn message_fused(m: &Msg) -> (Tensor, Tensor) {
        let Msg {
            phi,
            st,
            v,
            e,
            radial,
            dir,
            skip_vv,
        } = *m;
        let f = phi.size()[1] / 3;
        let n = e.n_nodes;
        let (phi_s, phi_v, phi_vs) = (
            phi.narrow(1, 0, f),
            phi.narrow(1, f, f),
            phi.narrow(1, 2 * f, f),
        );
        let (src, dst, dir, ws, wv, dvs, row) = match (&e.half, e.pair_major()) {
            (Some(h), Some(pm)) => {
                let filter = radial(&h.rbf, &h.env, &h.dist);
                let parts = filter.split(f, -1);
                // the pair's filter for both of its edges (pair-major: edge p and p + P)
                let both = |t: &Tensor| t.unsqueeze(0).expand([2, -1, -1], false).reshape([-1, f]);
                let dvs = (phi_vs.index_select(0, &pm.src).view([2, -1, f])
                    * parts[2].unsqueeze(0))
                .view([-1, f]);
                let dir = dir.index_select(0, &pm.perm);
                (
                    &pm.src,
                    &pm.dst,
                    dir,
                    both(&parts[0]),
                    both(&parts[1]),
                    dvs,
                    pm.row.as_ref(),
                )
            }
            _ => {
                let filter = e.filter(radial);
                let parts = filter.split(f, -1);
                let dvs = phi_vs.index_select(0, &e.src) * &parts[2];
                let row = e.slots().map(|sl| &sl.row);
                let dir = dir.shallow_clone();
                (
                    &e.src,
                    &e.dst,
                    dir,
                    parts[0].shallow_clone(),
                    parts[1].shallow_clone(),
                    dvs,
                    row,
                )
            }
        };
        let gms = |a: &Tensor, w: &Tensor| {
            super::fused::gather_mul_scatter(a, w, src, dst, n)
                .unwrap_or_else(|| e.aggregate_to(dst, &(a.index_select(0, src) * w.unsqueeze(1))))
        };
        let vs_sum = Self::vs_sum(e, row, &dir, &dvs, dst);
        let s = &st.s + gms(&phi_s.unsqueeze(1), &ws).squeeze_dim(1);
        let v = if skip_vv {
            v + vs_sum
        } else {
            v + gms(&(v * phi_v.unsqueeze(1)), &wv) + vs_sum
        };
        (s, v)
    }

    /// Σ_j dvs_ij ⊗ e_ij: a (3 × k) by (k × F) product per node in the padded layout, with no
    /// (E, 3, F) intermediate in the forward pass or in either backward pass.
    fn vs_sum(e: &Edges, row: Option<&Tensor>, dir: &Tensor, dvs: &Tensor, dst: &Tensor) -> Tensor {
        match (row, e.slots()) {
            (Some(row), Some(sl)) => e
                .pad_rows(row, sl.k, dir)
                .transpose(1, 2)
                .bmm(&e.pad_rows(row, sl.k, dvs)),
            _ => e.aggregate_to(dst, &(dvs.unsqueeze(1) * dir.unsqueeze(-1))),
        }
    }
}

impl Backbone for PaiNN {
    fn init_state(&self, x0: &Tensor) -> State {
        let n = x0.size()[0];
        let v = Tensor::zeros([n, 3, x0.size()[1]], (x0.kind(), x0.device()));
        State {
            s: x0.shallow_clone(),
            v: Some(v),
        }
    }

    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let f = b.f;
        let v =
            st.v.as_ref()
                .expect("PaiNN state entering a layer has vector features");
        // message (every term is linear in the filter, so scaling it scales the sums)
        let radial = |rbf: &Tensor, env: &Tensor, dist: &Tensor| {
            let env = if self.msg_scale == 1.0 {
                env.shallow_clone()
            } else {
                env * self.msg_scale
            };
            let filter = rbf.apply(&b.w) * env.unsqueeze(-1);
            match &b.edge_filter {
                Some(ef) => filter * ef.forward(&dist.unsqueeze(-1)),
                None => filter,
            }
        };
        let dir = match self.edge_vector {
            PainnEdgeVector::Unit => &e.vec / e.dist.unsqueeze(-1),
            PainnEdgeVector::UnitOverDistance => {
                &e.vec / (e.dist.unsqueeze(-1) + 1e-9) / e.dist.unsqueeze(-1)
            }
        };
        let phi = b.phi.forward(&st.s);
        let skip_vv = l == 0 && e.initial_state;
        // Layer 0's vectors are zero by construction (`init_state`), so Σ_j v_j ⊙ dvv_ij is zero
        // there, and so are its derivatives w.r.t. everything but those vectors: skipped.
        let m = Msg {
            phi: &phi,
            st,
            v,
            e,
            radial: &radial,
            dir: &dir,
            skip_vv,
        };
        let (s, v) = if super::fused::applies(&phi) {
            Self::message_fused(&m)
        } else {
            Self::message(&m)
        };
        // update
        let uv = v.apply(&b.u);
        let vv = v.apply(&b.v);
        let norm = match self.vector_norm {
            VectorNorm::Floored => safe_norm(&vv, 1),
            VectorNorm::Exact => vv.linalg_norm(2.0, [1i64].as_slice(), false, None::<Kind>),
        };
        let a = b.upd.forward(&Tensor::cat(&[&s, &norm], -1));
        let parts = a.split(f, -1);
        let dot = (&uv * &vv).sum_dim_intlist(1, false, v.kind());
        let (mut s, mut v) = if b.scalar_only {
            (s + &parts[0] * dot + &parts[1], None)
        } else {
            let (avv, asv, ass) = (&parts[0], &parts[1], &parts[2]);
            let v = &v + avv.unsqueeze(1) * &uv;
            (s + asv * dot + ass, Some(v))
        };
        if let Some(m) = &b.out_s {
            s = m.forward(&s);
        }
        if let (Some(lin), Some(vt)) = (&b.out_v, &v) {
            v = Some(vt.apply(lin));
        }
        if let Some(c) = &e.condition {
            s = c.apply(&s);
        }
        if let Some(pa) = self.post_act {
            s = act(pa, &s);
        }
        State { s, v }
    }

    fn width(&self, l: usize) -> i64 {
        self.s_dims[l] + 3 * self.v_dims[l].unwrap_or(0)
    }

    fn flatten(&self, st: &State) -> Tensor {
        let n = st.s.size()[0];
        match &st.v {
            Some(v) => Tensor::cat(&[&st.s, &v.reshape([n, -1])], -1),
            None => st.s.shallow_clone(),
        }
    }

    fn unflatten(&self, l: usize, t: &Tensor) -> State {
        let n = t.size()[0];
        let fs = self.s_dims[l];
        let s = t.narrow(1, 0, fs);
        let v = self.v_dims[l].map(|fv| t.narrow(1, fs, 3 * fv).reshape([n, 3, fv]));
        State { s, v }
    }
}
