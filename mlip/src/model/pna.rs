//! PNA (Corso, Cavalleri, Beaini, Liò, Veličković, "Principal Neighbourhood Aggregation for Graph
//! Nets", NeurIPS 2020), and HydraGNN's PNAPlus (`pna.bessel_rbf`: messages gated by a Bessel
//! basis of the distance, see [`super::config::PnaOptions`]), as PyTorch Geometric's `PNAConv` with one tower that HydraGNN's
//! `PNAStack` uses. Reads `hidden_dim`, `num_conv_layers`, `post_conv_activation` and `pna` from
//! [`ModelConfig`].
//!
//! Layer l (input width F): on edge j → i, m_ij = pre([h_i, h_j, enc(r_ij)]) (with
//! `pna.edge_dim` = 1, enc = Linear(1 → F) of the distance; else [h_i, h_j]; PNAPlus: the third
//! part is ReLU(emb(b)), or with `edge_dim` = 1 Linear(F + 1 → F)([r_ij, ReLU(emb(b))]), PyG's
//! `edge_encoder` of HydraGNN's `PNAPlusStack`, and m_ij is gated by W b); the aggregators
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
    /// `pna.bessel_rbf`: the basis embedding (with bias, then ReLU) and projection (no bias).
    rbf_emb: Option<nn::Linear>,
    rbf_lin: Option<nn::Linear>,
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
    /// `pna.bessel_rbf`: the frequencies ω_n, the cutoff and the envelope exponent.
    bessel: Option<(Tensor, f64, i64)>,
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
                let n_in = if o.edge_dim == 1 || o.bessel_rbf {
                    3 * fin
                } else {
                    2 * fin
                };
                let nobias = nn::LinearConfig {
                    bias: false,
                    ..Default::default()
                };
                let bn = &p / "bn";
                Layer {
                    // PNAPlus encodes [|r_ij|, ReLU(rbf_emb(b))] (F + 1 inputs), PNA |r_ij| alone
                    edge_encoder: (o.edge_dim == 1).then(|| {
                        let n = if o.bessel_rbf { fin + 1 } else { 1 };
                        nn::linear(&p / "edge_encoder", n, fin, Default::default())
                    }),
                    rbf_emb: o
                        .bessel_rbf
                        .then(|| nn::linear(&p / "rbf_emb", c.num_radial, fin, Default::default())),
                    rbf_lin: o
                        .bessel_rbf
                        .then(|| nn::linear(&p / "rbf_lin", c.num_radial, fin, nobias)),
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
            bessel: o.bessel_rbf.then(|| {
                let n = c.num_radial;
                let init = (1..=n)
                    .map(|k| k as f64 * std::f64::consts::PI)
                    .collect::<Vec<_>>();
                let w = (vs / "rbf").var_copy("freq", &Tensor::from_slice(&init));
                (w, c.radius, o.envelope_exponent)
            }),
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
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let h = &st.s;
        let (kind, dev) = (h.kind(), h.device());
        let n = e.n_nodes;
        let hi = h.index_select(0, &e.dst);
        let hj = h.index_select(0, &e.src);
        let rbf = self.bessel.as_ref().map(|(freq, rc, p)| {
            // PyG's BesselBasisLayer: DimeNet's envelope (zero at and beyond rc) times sin(ω x)
            let x = (&e.dist / *rc).unsqueeze(-1);
            let p = (*p + 1) as f64;
            let (a, bb, c) = (
                -(p + 1.0) * (p + 2.0) / 2.0,
                p * (p + 2.0),
                -p * (p + 1.0) / 2.0,
            );
            let x0 = x.pow_tensor_scalar(p - 1.0);
            let x1 = &x0 * &x;
            let x2 = &x1 * &x;
            let env = (x.reciprocal() + x0 * a + x1 * bb + x2 * c) * x.lt(1.0).to_kind(kind);
            env * (&x * freq.to_kind(kind)).sin()
        });
        let x = match (&b.edge_encoder, &rbf, &b.rbf_emb) {
            (Some(enc), Some(r), Some(emb)) => {
                let d = e.dist.unsqueeze(-1);
                let enc = Tensor::cat(&[&d, &r.apply(emb).relu()], -1).apply(enc);
                Tensor::cat(&[&hi, &hj, &enc], -1)
            }
            (Some(enc), _, _) => Tensor::cat(&[&hi, &hj, &e.dist.unsqueeze(-1).apply(enc)], -1),
            (None, Some(r), Some(emb)) => Tensor::cat(&[&hi, &hj, &r.apply(emb).relu()], -1),
            _ => Tensor::cat(&[&hi, &hj], -1),
        };
        let m = match (&rbf, &b.rbf_lin) {
            (Some(r), Some(lin)) => x.apply(&b.pre) * r.apply(lin),
            _ => x.apply(&b.pre),
        };
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
}
