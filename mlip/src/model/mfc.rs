//! Molecular fingerprint convolutions (Duvenaud et al., "Convolutional Networks on Graphs for
//! Learning Molecular Fingerprints", NeurIPS 2015) as HydraGNN's `MFCStack` builds them from
//! PyTorch Geometric's `MFConv` (sum aggregation, `max_degree` = HydraGNN's `max_neighbours`).
//! Reads `hidden_dim` (F), `num_conv_layers`, `post_conv_activation` and `conv` from
//! [`ModelConfig`].
//!
//! Layer l: with d = min(number of neighbours of i, `conv.max_degree`),
//! `h_i ← W_l[d] Σ_j h_j + b_l[d] + W_r[d] h_i`, then HydraGNN's feature layer (BatchNorm in
//! evaluation mode with `conv.batch_norm`) and `post_conv_activation`. The layer reads only
//! which atoms are within the cutoff: the energy is piecewise constant and the forces and virial
//! are exactly zero (as in HydraGNN, where MFC takes no edge attributes).

use tch::{nn, Kind, Tensor};

use super::config::{Activation, ModelConfig};
use super::convs::{after_conv, in_degree, unit_edge_factor, BatchNorm};
use super::nn::Edges;
use super::{Backbone, State};

struct Layer {
    /// Per degree 0..=max_degree: W_l (with bias) and W_r (without).
    lins_l: Vec<nn::Linear>,
    lins_r: Vec<nn::Linear>,
    bn: Option<BatchNorm>,
}

/// The MFC backbone.
pub struct Mfc {
    layers: Vec<Layer>,
    dims: Vec<i64>,
    max_degree: i64,
    post_act: Option<Activation>,
}

impl Mfc {
    /// Layers under `vs/"layers"/l/{lins_l,lins_r}/d` and `vs/"layers"/l/bn`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let f = c.hidden_dim;
        let md = c.conv.max_degree;
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
                    lins_l: (0..=md)
                        .map(|d| {
                            nn::linear(&p / "lins_l" / d.to_string(), fin, f, Default::default())
                        })
                        .collect(),
                    lins_r: (0..=md)
                        .map(|d| nn::linear(&p / "lins_r" / d.to_string(), fin, f, nobias))
                        .collect(),
                    bn: c.conv.batch_norm.then(|| BatchNorm::new(&(&p / "bn"), f)),
                }
            })
            .collect();
        Mfc {
            layers,
            dims,
            max_degree: md,
            post_act: c.post_conv_activation,
        }
    }
}

impl Backbone for Mfc {
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let h = &st.s;
        let m = h.index_select(0, &e.src) * unit_edge_factor(e);
        let agg = e.aggregate(&m);
        let deg = in_degree(e, h)
            .squeeze_dim(-1)
            .clamp_max(self.max_degree as f64)
            .to_kind(Kind::Int64);
        // one weight matrix per node, chosen by its degree: stack, gather, batched product
        let wl = Tensor::stack(&b.lins_l.iter().map(|x| &x.ws).collect::<Vec<_>>(), 0);
        let bl = Tensor::stack(
            &b.lins_l
                .iter()
                .map(|x| x.bs.as_ref().expect("Linear with bias"))
                .collect::<Vec<_>>(),
            0,
        );
        let wr = Tensor::stack(&b.lins_r.iter().map(|x| &x.ws).collect::<Vec<_>>(), 0);
        let per = |w: &Tensor, x: &Tensor| {
            w.index_select(0, &deg)
                .bmm(&x.unsqueeze(-1))
                .squeeze_dim(-1)
        };
        let s = per(&wl, &agg) + bl.index_select(0, &deg) + per(&wr, h);
        State {
            s: after_conv(s, e, b.bn.as_ref(), self.post_act),
            v: None,
        }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l]
    }
}
