//! GIN (Xu, Hu, Leskovec, Jegelka, "How Powerful are Graph Neural Networks?", ICLR 2019) as
//! HydraGNN's `GINStack` builds it from PyTorch Geometric's `GINConv` (trainable ε, sum
//! aggregation). Reads `hidden_dim` (F), `num_conv_layers`, `post_conv_activation` and `conv`
//! from [`ModelConfig`].
//!
//! Layer l: h_i ← W_2 ReLU(W_1 ((1 + ε) h_i + Σ_j h_j) + b_1) + b_2, then HydraGNN's feature
//! layer (BatchNorm in evaluation mode with `conv.batch_norm`) and `post_conv_activation`. The
//! layer reads only which atoms are within the cutoff, not where they are: the energy is
//! piecewise constant and the forces and virial are exactly zero (as in HydraGNN, where GIN
//! takes no edge attributes).

use tch::{nn, Tensor};

use super::config::{Activation, ModelConfig};
use super::convs::{after_conv, unit_edge_factor, BatchNorm};
use super::nn::Edges;
use super::{Backbone, State};

struct Layer {
    eps: Tensor,
    lin1: nn::Linear,
    lin2: nn::Linear,
    bn: Option<BatchNorm>,
}

/// The GIN backbone.
pub struct Gin {
    layers: Vec<Layer>,
    dims: Vec<i64>,
    post_act: Option<Activation>,
}

impl Gin {
    /// Layers under `vs/"layers"/l/{eps,lin1,lin2,bn}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let f = c.hidden_dim;
        let mut dims = vec![c.input_dim()];
        let layers = (0..c.num_conv_layers)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let fin = *dims.last().unwrap();
                dims.push(f);
                Layer {
                    eps: p.var("eps", &[1], nn::Init::Const(0.0)),
                    lin1: nn::linear(&p / "lin1", fin, f, Default::default()),
                    lin2: nn::linear(&p / "lin2", f, f, Default::default()),
                    bn: c.conv.batch_norm.then(|| BatchNorm::new(&(&p / "bn"), f)),
                }
            })
            .collect();
        Gin {
            layers,
            dims,
            post_act: c.post_conv_activation,
        }
    }
}

impl Backbone for Gin {
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let h = &st.s;
        let m = h.index_select(0, &e.src) * unit_edge_factor(e);
        let s = (e.aggregate(&m) + h * (&b.eps + 1.0))
            .apply(&b.lin1)
            .relu()
            .apply(&b.lin2);
        State {
            s: after_conv(s, e, b.bn.as_ref(), self.post_act),
            v: None,
        }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l]
    }
}
