//! PNA (Corso, Cavalleri, Beaini, Liò, Veličković, "Principal Neighbourhood Aggregation for Graph
//! Nets", NeurIPS 2020), as PyTorch Geometric's `PNAConv` with one tower that HydraGNN's
//! `PNAStack` uses. Reads `hidden_dim`, `num_conv_layers`, `post_conv_activation` and `pna` from
//! [`ModelConfig`].
//!
//! Layer l (input width F): on edge j → i, m_ij = pre([h_i, h_j, enc(r_ij)]) (with
//! `pna.edge_dim` = 1, enc = Linear(1 → F) of the distance; else [h_i, h_j]); the aggregators
//! mean, min, max and std of m_ij over j, each times the scalers identity, log(d+1)/δ_log,
//! δ_log/log(d+1) and d/δ_lin (d the number of neighbours, at least 1; δ from the training
//! set's degree histogram), laid out scaler-major, then aggregator, then feature;
//! h_i ← lin(post([h_i, ·])); then
//! with `pna.batch_norm` a BatchNorm in evaluation mode (running statistics, ε = 1e-5), then
//! `post_conv_activation`. The std is sqrt(max(var, 1e-5)), set to 0 where that is at most
//! sqrt(1e-5); min and max of an atom without neighbours are 0. The messages see the distance
//! without a cutoff function, and min/max are not smooth: the energy is only piecewise smooth.

use tch::{nn, Tensor};

use super::config::{Activation, ModelConfig};
use super::nn::{act, Edges};
use super::{Backbone, State};

struct Layer {
    edge_encoder: Option<nn::Linear>,
    pre: nn::Linear,
    post: nn::Linear,
    lin: nn::Linear,
    /// BatchNorm (eval): weight, bias, running mean, running variance.
    bn: Option<[Tensor; 4]>,
}

/// The PNA backbone.
pub struct Pna {
    layers: Vec<Layer>,
    dims: Vec<i64>,
    avg_deg_lin: f64,
    avg_deg_log: f64,
    post_act: Option<Activation>,
}

impl Pna {
    /// Layers under `vs/"layers"/l/{edge_encoder,pre,post,lin,bn}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let f = c.hidden_dim;
        let o = &c.pna;
        let mut dims = vec![c.input_dim()];
        let layers = (0..c.num_conv_layers)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let fin = *dims.last().unwrap();
                dims.push(f);
                let n_in = if o.edge_dim == 1 { 3 * fin } else { 2 * fin };
                let bn = &p / "bn";
                Layer {
                    edge_encoder: (o.edge_dim == 1)
                        .then(|| nn::linear(&p / "edge_encoder", 1, fin, Default::default())),
                    pre: nn::linear(&p / "pre", n_in, fin, Default::default()),
                    post: nn::linear(&p / "post", 17 * fin, f, Default::default()),
                    lin: nn::linear(&p / "lin", f, f, Default::default()),
                    bn: o.batch_norm.then(|| {
                        [
                            bn.var("weight", &[f], nn::Init::Const(1.0)),
                            bn.var("bias", &[f], nn::Init::Const(0.0)),
                            bn.zeros_no_train("running_mean", &[f]),
                            bn.ones_no_train("running_var", &[f]),
                        ]
                    }),
                }
            })
            .collect();
        Pna {
            layers,
            dims,
            avg_deg_lin: o.avg_deg_lin,
            avg_deg_log: o.avg_deg_log,
            post_act: c.post_conv_activation,
        }
    }
}

/// Per-node reduction `reduce` ("amin", "amax") of `m` (E, F) into `n` rows at `dst`; rows
/// without edges keep 0. (torch's `scatter_reduce` with `include_self = false`; tch names it
/// `internal_scatter_reduce`, and `index_reduce` would warn that it is in beta.)
fn scatter(m: &Tensor, dst: &Tensor, n: i64, reduce: &str) -> Tensor {
    let idx = dst.unsqueeze(-1).expand_as(m);
    Tensor::zeros([n, m.size()[1]], (m.kind(), m.device()))
        .internal_scatter_reduce(0, &idx, m, reduce, false)
}

impl Backbone for Pna {
    fn init_state(&self, x0: &Tensor) -> State {
        State {
            s: x0.shallow_clone(),
            v: None,
        }
    }

    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let h = &st.s;
        let (kind, dev) = (h.kind(), h.device());
        let n = e.n_nodes;
        let hi = h.index_select(0, &e.dst);
        let hj = h.index_select(0, &e.src);
        let x = match &b.edge_encoder {
            Some(enc) => Tensor::cat(&[&hi, &hj, &e.dist.unsqueeze(-1).apply(enc)], -1),
            None => Tensor::cat(&[&hi, &hj], -1),
        };
        let m = x.apply(&b.pre);
        let ones = Tensor::ones([m.size()[0]], (kind, dev));
        let deg = e.aggregate(&ones).clamp_min(1.0).unsqueeze(-1);
        let mean = e.aggregate(&m) / &deg;
        let mean2 = e.aggregate(&m.square()) / &deg;
        let std = (mean2 - mean.square()).clamp_min(1e-5).sqrt();
        let std = std.shallow_clone() * std.gt(1e-5f64.sqrt()).to_kind(kind);
        let min = scatter(&m, &e.dst, n, "amin");
        let max = scatter(&m, &e.dst, n, "amax");
        let agg = Tensor::cat(&[&mean, &min, &max, &std], -1);
        let log_deg = (&deg + 1.0).log();
        let scaled = Tensor::cat(
            &[
                agg.shallow_clone(),
                &agg * (&log_deg / self.avg_deg_log),
                &agg * (self.avg_deg_log / &log_deg),
                &agg * (&deg / self.avg_deg_lin),
            ],
            -1,
        );
        let mut s = Tensor::cat(&[h, &scaled], -1).apply(&b.post).apply(&b.lin);
        if let Some(c) = &e.condition {
            s = c.apply(&s);
        }
        if let Some([w, bias, rm, rv]) = &b.bn {
            s = (s - rm) / (rv + 1e-5).sqrt() * w + bias;
        }
        if let Some(a) = self.post_act {
            s = act(a, &s);
        }
        State { s, v: None }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l]
    }

    fn flatten(&self, st: &State) -> Tensor {
        st.s.shallow_clone()
    }

    fn unflatten(&self, _l: usize, t: &Tensor) -> State {
        State {
            s: t.shallow_clone(),
            v: None,
        }
    }
}
