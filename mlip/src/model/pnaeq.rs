//! PNAEq, HydraGNN's equivariant PNA (`PNAEqStack`): PaiNN's scalar + vector features and update
//! block (Schütt, Unke, Gastegger, ICML 2021) whose scalar messages are aggregated with PNA's
//! degree-scaled aggregators (Corso et al., NeurIPS 2020). Reads `hidden_dim`,
//! `num_conv_layers`, `num_radial`, `radial_type`, `envelope`, `post_conv_activation` and the
//! degree averages `pna.avg_deg_lin`, `pna.avg_deg_log` from [`ModelConfig`].
//!
//! Layer l runs at the width F of its input (1 for a raw atom-type feature in the first layer).
//! With b = rbf(r_ij)·envelope(r_ij) (HydraGNN: `sinc`, cosine cutoff) and r̂ = r_ij / (r_ij + 1e-9),
//! on edge j → i:
//! m = pre([s_i, s_j, tanh(emb(b))]) (with `pna.edge_dim` = 1 also enc(r_ij), enc = Linear(1 → F)
//! of the distance: HydraGNN's `edge_encoder` of edge_attr = |r_ij|); [g_v, g_e, m_s] = mlp(m) ⊙ W b (mlp: Linear, tanh,
//! Linear, SiLU, Linear to 3F; W without bias);
//! s_i += post([s_i, PNA(m_s)]) with PNA's mean/min/max/std aggregators times the five scalers
//! identity, amplification, attenuation, linear and inverse linear (scaler-major, then
//! aggregator, then feature; 20F numbers), and v_i += Σ_j (v_j ⊙ g_v + g_e ⊗ r̂).
//! Update: a = MLP([|V v|, s]) (Linear, SiLU, Linear); v += a_vv ⊙ U v (not in the last
//! layer); s += a_sv ⊙ <U v, V v> + a_ss. Then s ← Linear(tanh(Linear(s))) and v ← Linear(v) to
//! `hidden_dim` (the last layer drops v), the node conditioning if any, and
//! `post_conv_activation`.
//!
//! The std is sqrt(max(var, 1e-5)), 0 where that is at most sqrt(1e-5); min and max of an atom
//! without neighbours are 0. Min and max are not smooth: the energy is only piecewise smooth.

use tch::{nn, Kind, Tensor};

use super::config::{Activation, ModelConfig};
use super::nn::{act, Edges};
use super::{Backbone, State};

struct Layer {
    /// Width of the features inside the layer (its input width).
    f: i64,
    last: bool,
    pre: nn::Linear,
    post: nn::Linear,
    rbf_emb: nn::Linear,
    /// `pna.edge_dim` = 1: Linear(1 → F) of |r_ij|, a fourth part of the message input.
    edge_encoder: Option<nn::Linear>,
    rbf_lin: nn::Linear,
    /// The scalar message MLP: Linear, tanh, Linear, SiLU, Linear.
    msg: [nn::Linear; 3],
    upd_x: nn::Linear,
    upd_v: nn::Linear,
    /// The update MLP: Linear, SiLU, Linear.
    upd: [nn::Linear; 2],
    /// Scalars to `hidden_dim`: Linear, tanh, Linear.
    out_s: [nn::Linear; 2],
    /// Vectors to `hidden_dim` (not in the last layer).
    out_v: Option<nn::Linear>,
}

/// The PNAEq backbone.
pub struct PnaEq {
    layers: Vec<Layer>,
    /// Scalar width of the state entering layer l (l = 0..=L).
    s_dims: Vec<i64>,
    /// Vector width of the state entering layer l, None when it has no vectors.
    v_dims: Vec<Option<i64>>,
    avg_deg_lin: f64,
    avg_deg_log: f64,
    post_act: Option<Activation>,
}

impl PnaEq {
    /// Layers under `vs/"layers"/l/{pre,post,rbf_emb,rbf_lin,msg,update,out}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let h = c.hidden_dim;
        let nb = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let d = nn::LinearConfig::default();
        // pre-#511 HydraGNN checkpoints: biases on the vector projections
        let vb = if c.pna.vector_bias { d } else { nb };
        let nl = c.num_conv_layers;
        let mut s_dims = vec![c.input_dim()];
        let mut v_dims = vec![Some(c.input_dim())];
        let layers = (0..nl)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let f = s_dims[l];
                let last = l + 1 == nl;
                s_dims.push(h);
                v_dims.push((!last).then_some(h));
                let m = &p / "msg";
                let u = &p / "update";
                let o = &p / "out";
                Layer {
                    f,
                    last,
                    pre: nn::linear(&p / "pre", (3 + c.pna.edge_dim) * f, f, d),
                    edge_encoder: (c.pna.edge_dim == 1)
                        .then(|| nn::linear(&p / "edge_encoder", 1, f, d)),
                    post: nn::linear(&p / "post", 21 * f, f, d),
                    rbf_emb: nn::linear(&p / "rbf_emb", c.num_radial, f, d),
                    rbf_lin: nn::linear(&p / "rbf_lin", c.num_radial, 3 * f, nb),
                    msg: [
                        nn::linear(&m / "0", f, f, d),
                        nn::linear(&m / "1", f, f, d),
                        nn::linear(&m / "2", f, 3 * f, d),
                    ],
                    upd_x: nn::linear(&u / "X", f, f, vb),
                    upd_v: nn::linear(&u / "V", f, f, vb),
                    upd: [
                        nn::linear(&u / "mlp" / "0", 2 * f, f, d),
                        nn::linear(&u / "mlp" / "1", f, if last { 2 * f } else { 3 * f }, d),
                    ],
                    out_s: [
                        nn::linear(&o / "s" / "0", f, h, d),
                        nn::linear(&o / "s" / "1", h, h, d),
                    ],
                    out_v: (!last).then(|| nn::linear(&o / "v", f, h, vb)),
                }
            })
            .collect();
        PnaEq {
            layers,
            s_dims,
            v_dims,
            avg_deg_lin: c.pna.avg_deg_lin,
            avg_deg_log: c.pna.avg_deg_log,
            post_act: c.post_conv_activation,
        }
    }
}

/// Per-node reduction `reduce` ("amin", "amax") of `m` (E, F) into `n` rows at `dst`; rows
/// without edges keep 0 (PyG's min/max aggregation).
fn scatter(m: &Tensor, dst: &Tensor, n: i64, reduce: &str) -> Tensor {
    let idx = dst.unsqueeze(-1).expand_as(m);
    Tensor::zeros([n, m.size()[1]], (m.kind(), m.device()))
        .internal_scatter_reduce(0, &idx, m, reduce, false)
}

impl Backbone for PnaEq {
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
        let s = &st.s;
        let v =
            st.v.as_ref()
                .expect("PNAEq state entering a layer has vector features");
        let (kind, dev) = (s.kind(), s.device());
        let n = e.n_nodes;
        // message
        let rbf = &e.rbf * e.env.unsqueeze(-1);
        let si = s.index_select(0, &e.dst);
        let sj = s.index_select(0, &e.src);
        let emb = rbf.apply(&b.rbf_emb).tanh();
        let m = match &b.edge_encoder {
            Some(enc) => Tensor::cat(&[&si, &sj, &emb, &e.dist.unsqueeze(-1).apply(enc)], -1),
            None => Tensor::cat(&[&si, &sj, &emb], -1),
        }
        .apply(&b.pre);
        let m = m
            .apply(&b.msg[0])
            .tanh()
            .apply(&b.msg[1])
            .silu()
            .apply(&b.msg[2]);
        let x = m * rbf.apply(&b.rbf_lin);
        let parts = x.split(f, -1);
        let (gv, ge, ms) = (&parts[0], &parts[1], &parts[2]);
        let unit = &e.vec / (e.dist.unsqueeze(-1) + 1e-9);
        let dv = v.index_select(0, &e.src) * gv.unsqueeze(1) + ge.unsqueeze(1) * unit.unsqueeze(-1);
        // PNA aggregation of the scalar messages
        let ones = Tensor::ones([ms.size()[0]], (kind, dev));
        let deg = e.aggregate(&ones).clamp_min(1.0).unsqueeze(-1);
        let mean = e.aggregate(ms) / &deg;
        let mean2 = e.aggregate(&ms.square()) / &deg;
        let std = (mean2 - mean.square()).clamp_min(1e-5).sqrt();
        let std = std.shallow_clone() * std.gt(1e-5f64.sqrt()).to_kind(kind);
        let min = scatter(ms, &e.dst, n, "amin");
        let max = scatter(ms, &e.dst, n, "amax");
        let agg = Tensor::cat(&[&mean, &min, &max, &std], -1);
        let log_deg = (&deg + 1.0).log();
        let scaled = Tensor::cat(
            &[
                agg.shallow_clone(),
                &agg * (&log_deg / self.avg_deg_log),
                &agg * (self.avg_deg_log / &log_deg),
                &agg * (&deg / self.avg_deg_lin),
                &agg * (self.avg_deg_lin / &deg),
            ],
            -1,
        );
        let s = s + Tensor::cat(&[s, &scaled], -1).apply(&b.post);
        let v = v + e.aggregate(&dv);
        // update
        let xv = v.apply(&b.upd_x);
        let vv = v.apply(&b.upd_v);
        let norm = vv.linalg_norm(2.0, [1i64].as_slice(), false, None::<Kind>);
        let a = Tensor::cat(&[&norm, &s], -1)
            .apply(&b.upd[0])
            .silu()
            .apply(&b.upd[1]);
        let parts = a.split(f, -1);
        let dot = (&xv * &vv).sum_dim_intlist(1, false, kind);
        let (s, v) = if b.last {
            (s + &parts[0] * dot + &parts[1], None)
        } else {
            let v = &v + parts[0].unsqueeze(1) * &xv;
            (s + &parts[1] * dot + &parts[2], Some(v))
        };
        let mut s = s.apply(&b.out_s[0]).tanh().apply(&b.out_s[1]);
        let v = match (&b.out_v, v) {
            (Some(lin), Some(v)) => Some(v.apply(lin)),
            _ => None,
        };
        if let Some(c) = &e.condition {
            s = c.apply(&s);
        }
        if let Some(a) = self.post_act {
            s = act(a, &s);
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
