//! GraphSAGE (Hamilton, Ying, Leskovec, "Inductive Representation Learning on Large Graphs",
//! NeurIPS 2017) as HydraGNN's `SAGEStack` builds it from PyTorch Geometric's `SAGEConv` (mean
//! aggregation, root weight, no normalisation). Reads `hidden_dim` (F), `num_conv_layers`,
//! `post_conv_activation` and `conv` from [`ModelConfig`].
//!
//! Layer l: h_i ← W_l mean_j h_j + b_l + W_r h_i (the mean is 0 for an atom without neighbours),
//! then HydraGNN's feature layer (BatchNorm in evaluation mode with `conv.batch_norm`) and
//! `post_conv_activation`. The layer reads only which atoms are within the cutoff: the energy is
//! piecewise constant and the forces and virial are exactly zero (as in HydraGNN, where SAGE
//! takes no edge attributes).

use tch::nn;

use super::config::{Activation, ModelConfig};
use super::convs::{after_conv, in_degree, unit_edge_factor, BatchNorm};
use super::nn::Edges;
use super::{Backbone, State};

struct Layer {
    lin_l: nn::Linear,
    lin_r: nn::Linear,
    bn: Option<BatchNorm>,
}

/// The SAGE backbone.
pub struct Sage {
    layers: Vec<Layer>,
    dims: Vec<i64>,
    post_act: Option<Activation>,
}

impl Sage {
    /// Layers under `vs/"layers"/l/{lin_l,lin_r,bn}` (`lin_r` without bias).
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let f = c.hidden_dim;
        let mut dims = vec![c.input_dim()];
        let nobias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let layers = (0..c.num_conv_layers)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let fin = *dims.last().unwrap();
                dims.push(f);
                Layer {
                    lin_l: nn::linear(&p / "lin_l", fin, f, Default::default()),
                    lin_r: nn::linear(&p / "lin_r", fin, f, nobias),
                    bn: c.conv.batch_norm.then(|| BatchNorm::new(&(&p / "bn"), f)),
                }
            })
            .collect();
        Sage {
            layers,
            dims,
            post_act: c.post_conv_activation,
        }
    }
}

impl Backbone for Sage {
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let h = &st.s;
        let m = h.index_select(0, &e.src) * unit_edge_factor(e);
        let mean = e.aggregate(&m) / in_degree(e, h).clamp_min(1.0);
        let s = mean.apply(&b.lin_l) + h.apply(&b.lin_r);
        State {
            s: after_conv(s, e, b.bn.as_ref(), self.post_act),
            v: None,
        }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l]
    }
}
