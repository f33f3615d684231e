//! SchNet (Schütt et al., "SchNet: A continuous-filter convolutional neural network for modeling
//! quantum interactions", NeurIPS 2017), in the interaction-block form of PyTorch Geometric that
//! HydraGNN wraps. Reads `hidden_dim`, `num_conv_layers`, `num_radial`, `radial_type`, `envelope`,
//! `activation_function`, `conv_activation`, `post_conv_activation`, `avg_num_neighbors` from
//! [`ModelConfig`].
//!
//! Layer l: W_ij = lin(act(lin(rbf(r_ij)))) · envelope(r_ij); m_i = Σ_j lin1(h_j) ⊙ W_ij (divided
//! by `avg_num_neighbors` when set);
//! h_i ← h_i + lin3(act(lin2(m_i))) (no residual when the input width differs).
//!
//! HydraGNN's SchNet (`SCFStack`, options in `schnet`): each layer is PyG's `CFConv` alone,
//! h_i ← lin2(m_i) with filters of width `num_filters`, PyG's float32 Gaussian centres and its
//! float32-rounded shifted softplus; `post_conv_activation` follows.

use tch::nn;

use super::config::{Activation, ModelConfig};
use super::nn::{act, Edges};
use super::{Backbone, State};

struct Interaction {
    filter1: nn::Linear,
    filter2: nn::Linear,
    lin1: nn::Linear,
    lin2: nn::Linear,
    lin3: Option<nn::Linear>,
    residual: bool,
    cfconv_only: bool,
}

/// The SchNet backbone.
pub struct SchNet {
    layers: Vec<Interaction>,
    act: Activation,
    post_act: Option<Activation>,
    dims: Vec<i64>,
    avg_num_neighbors: Option<f64>,
    /// PyG's Gaussian centres and γ, when `schnet.gaussian_offsets` is set.
    gaussians: Option<(Vec<f64>, f64)>,
    ssp_shift: Option<f64>,
}

impl SchNet {
    /// Layers under `vs/"layers"/l`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let f = c.hidden_dim;
        let o = &c.schnet;
        let nf = o.num_filters.unwrap_or(f);
        let mut dims = vec![c.input_dim()];
        let layers = (0..c.num_conv_layers)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let fin = *dims.last().unwrap();
                dims.push(f);
                let nobias = nn::LinearConfig {
                    bias: false,
                    ..Default::default()
                };
                Interaction {
                    filter1: nn::linear(&p / "filter1", c.num_radial, nf, Default::default()),
                    filter2: nn::linear(&p / "filter2", nf, nf, Default::default()),
                    lin1: nn::linear(&p / "lin1", fin, nf, nobias),
                    lin2: nn::linear(&p / "lin2", nf, f, Default::default()),
                    lin3: (!o.cfconv_only)
                        .then(|| nn::linear(&p / "lin3", f, f, Default::default())),
                    residual: fin == f && !o.cfconv_only,
                    cfconv_only: o.cfconv_only,
                }
            })
            .collect();
        SchNet {
            layers,
            act: c.conv_activation.unwrap_or(c.activation_function),
            post_act: c.post_conv_activation,
            avg_num_neighbors: c.avg_num_neighbors,
            dims,
            gaussians: (!o.gaussian_offsets.is_empty()).then(|| {
                let g = &o.gaussian_offsets;
                (g.clone(), -0.5 / (g[1] - g[0]).powi(2))
            }),
            ssp_shift: o.ssp_shift,
        }
    }
}

impl Backbone for SchNet {
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let w = e.filter(|rbf, env, dist| {
            let rbf = match &self.gaussians {
                Some((mu, gamma)) => {
                    let (kind, dev) = (dist.kind(), dist.device());
                    let mu = super::nn::tensor_from(mu, &[1, mu.len() as i64], kind, dev);
                    ((dist.unsqueeze(-1) - mu).square() * *gamma).exp()
                }
                None => rbf.shallow_clone(),
            };
            let z = rbf.apply(&b.filter1);
            let z = match self.ssp_shift {
                Some(shift) => z.softplus() - shift,
                None => act(self.act, &z),
            };
            z.apply(&b.filter2) * env.unsqueeze(-1)
        });
        let x = st.s.apply(&b.lin1);
        let m = e.aggregate(&(x.index_select(0, &e.src) * w));
        let m = match self.avg_num_neighbors {
            Some(k) => m / k,
            None => m,
        };
        let v = match (&b.lin3, b.cfconv_only) {
            (Some(lin3), false) => act(self.act, &m.apply(&b.lin2)).apply(lin3),
            _ => m.apply(&b.lin2),
        };
        let s = if b.residual { &st.s + v } else { v };
        let s = match &e.condition {
            Some(c) => c.apply(&s),
            None => s,
        };
        let s = match self.post_act {
            Some(a) => act(a, &s),
            None => s,
        };
        State { s, v: None }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l]
    }
}
