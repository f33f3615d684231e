//! CGCNN (Xie and Grossman, "Crystal Graph Convolutional Neural Networks", PRL 2018) as
//! HydraGNN's `CGCNNStack` builds it from PyTorch Geometric's `CGConv` (`aggr="add"`, no
//! batch norm inside the conv). Reads `num_conv_layers`, `post_conv_activation` and `conv` from
//! [`ModelConfig`]; the features keep the input width throughout (HydraGNN sets `hidden_dim` to
//! `input_dim`).
//!
//! Layer l: on edge j → i, z = [h_i, h_j, |r_ij|] (the distance only with `conv.edge_dim` = 1),
//! h_i ← h_i + Σ_j σ(W_f z + b_f) ⊙ softplus(W_s z + b_s); then HydraGNN's feature layer
//! (BatchNorm in evaluation mode with `conv.batch_norm`) and `post_conv_activation`. The
//! distance enters without a cutoff function: the energy jumps when a pair crosses the cutoff.

use tch::{nn, Tensor};

use super::config::{Activation, ModelConfig};
use super::convs::{after_conv, BatchNorm};
use super::nn::Edges;
use super::{Backbone, State};

struct Layer {
    lin_f: nn::Linear,
    lin_s: nn::Linear,
    bn: Option<BatchNorm>,
}

/// The CGCNN backbone.
pub struct Cgcnn {
    layers: Vec<Layer>,
    width: i64,
    edge_dim: bool,
    post_act: Option<Activation>,
}

impl Cgcnn {
    /// Layers under `vs/"layers"/l/{lin_f,lin_s,bn}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let f = c.input_dim();
        let n_in = 2 * f + c.conv.edge_dim;
        let layers = (0..c.num_conv_layers)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                Layer {
                    lin_f: nn::linear(&p / "lin_f", n_in, f, Default::default()),
                    lin_s: nn::linear(&p / "lin_s", n_in, f, Default::default()),
                    bn: c.conv.batch_norm.then(|| BatchNorm::new(&(&p / "bn"), f)),
                }
            })
            .collect();
        Cgcnn {
            layers,
            width: f,
            edge_dim: c.conv.edge_dim == 1,
            post_act: c.post_conv_activation,
        }
    }
}

impl Backbone for Cgcnn {
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let h = &st.s;
        let hi = h.index_select(0, &e.dst);
        let hj = h.index_select(0, &e.src);
        let z = if self.edge_dim {
            Tensor::cat(&[&hi, &hj, &e.dist.unsqueeze(-1)], -1)
        } else {
            Tensor::cat(&[&hi, &hj], -1)
        };
        let m = z.apply(&b.lin_f).sigmoid() * z.apply(&b.lin_s).softplus();
        let s = e.aggregate(&m) + h;
        State {
            s: after_conv(s, e, b.bn.as_ref(), self.post_act),
            v: None,
        }
    }

    fn width(&self, _l: usize) -> i64 {
        self.width
    }
}
