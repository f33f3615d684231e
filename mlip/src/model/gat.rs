//! GATv2 (Brody, Alon, Yahav, "How Attentive are Graph Attention Networks?", ICLR 2022) as
//! HydraGNN's `GATStack` builds it from PyTorch Geometric's `GATv2Conv` (`heads` heads,
//! `add_self_loops=True`, `share_weights=False`, evaluation mode: no dropout). Reads
//! `hidden_dim` (F), `num_conv_layers`, `post_conv_activation` and `conv` from [`ModelConfig`].
//!
//! Layer l (H heads, input width F_in): the edges j → i with j = i (an atom and its own periodic
//! image) are dropped and every atom gets one self loop, as PyG's `remove_self_loops` /
//! `add_self_loops` do; with `conv.edge_dim` = 1 the self loop's edge attribute is the mean
//! distance of the atom's other incoming edges (PyG's `fill_value="mean"`; 0 without any).
//! x_l = W_l h + b_l, x_r = W_r h + b_r, both (n, H, F); on edge j → i,
//! `a_ij = att · leaky_relu(x_r[i] + x_l[j] + W_e |r_ij|)`, α_ij = softmax over the edges into i;
//! `out_i = Σ_j α_ij x_l[j]`; every layer but the last concatenates the heads (H·F wide), the last
//! averages them (F wide); then + bias, HydraGNN's feature layer (BatchNorm in evaluation mode
//! with `conv.batch_norm`) and `post_conv_activation`. The distance enters without a cutoff
//! function: the energy jumps when a pair crosses the cutoff.
//!
//! Dropping the j = i edges needs the atom's identity: on a whole structure (periodic images are
//! edges with a shift) it is HydraGNN's graph; on a graph whose ghost atoms are separate rows
//! (LAMMPS) an atom's own image is a different row and its edge is kept. The two differ only in a
//! cell with a lattice vector shorter than the cutoff.

use tch::{nn, Tensor};

use super::config::{Activation, ModelConfig};
use super::convs::{after_conv, scatter_reduce, BatchNorm};
use super::nn::Edges;
use super::{Backbone, State};

struct Layer {
    lin_l: nn::Linear,
    lin_r: nn::Linear,
    /// (1, H, F)
    att: Tensor,
    /// (H·F, 1), no bias.
    lin_edge: Option<Tensor>,
    bias: Tensor,
    concat: bool,
    bn: Option<BatchNorm>,
}

/// The GAT backbone.
pub struct Gat {
    layers: Vec<Layer>,
    dims: Vec<i64>,
    heads: i64,
    hidden: i64,
    negative_slope: f64,
    post_act: Option<Activation>,
}

impl Gat {
    /// Layers under `vs/"layers"/l/{lin_l,lin_r,att,lin_edge,bias,bn}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let (f, h) = (c.hidden_dim, c.conv.heads);
        let nl = c.num_conv_layers;
        let mut dims = vec![c.input_dim()];
        let layers = (0..nl)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let fin = *dims.last().unwrap();
                let concat = l + 1 < nl;
                let out = if concat { h * f } else { f };
                dims.push(out);
                Layer {
                    lin_l: nn::linear(&p / "lin_l", fin, h * f, Default::default()),
                    lin_r: nn::linear(&p / "lin_r", fin, h * f, Default::default()),
                    att: p.var(
                        "att",
                        &[1, h, f],
                        nn::Init::Randn {
                            mean: 0.0,
                            stdev: 0.1,
                        },
                    ),
                    lin_edge: (c.conv.edge_dim == 1).then(|| {
                        p.var(
                            "lin_edge",
                            &[h * f, 1],
                            nn::Init::Randn {
                                mean: 0.0,
                                stdev: 0.1,
                            },
                        )
                    }),
                    bias: p.var("bias", &[out], nn::Init::Const(0.0)),
                    concat,
                    bn: c.conv.batch_norm.then(|| BatchNorm::new(&(&p / "bn"), out)),
                }
            })
            .collect();
        Gat {
            layers,
            dims,
            heads: h,
            hidden: f,
            negative_slope: c.conv.negative_slope,
            post_act: c.post_conv_activation,
        }
    }
}

impl Backbone for Gat {
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let x = &st.s;
        let (hh, f) = (self.heads, self.hidden);
        let n = e.n_nodes;
        let dev = x.device();
        let xl = x.apply(&b.lin_l).view([-1, hh, f]);
        let xr = x.apply(&b.lin_r).view([-1, hh, f]);
        // PyG's remove_self_loops, then add_self_loops(fill_value="mean")
        let keep = e.src.ne_tensor(&e.dst).nonzero().view([-1]);
        let src0 = e.src.index_select(0, &keep);
        let dst0 = e.dst.index_select(0, &keep);
        let loops = Tensor::arange(n, (tch::Kind::Int64, dev));
        let src = Tensor::cat(&[&src0, &loops], 0);
        let dst = Tensor::cat(&[&dst0, &loops], 0);
        let mut z = xr.index_select(0, &dst) + xl.index_select(0, &src);
        if let Some(w) = &b.lin_edge {
            let d0 = e.dist.index_select(0, &keep).unsqueeze(-1);
            let ones = Tensor::ones_like(&d0);
            let sum = Tensor::zeros([n, 1], (d0.kind(), dev)).index_add(0, &dst0, &d0);
            let cnt = Tensor::zeros([n, 1], (d0.kind(), dev)).index_add(0, &dst0, &ones);
            let fill = sum / cnt.clamp_min(1.0);
            let attr = Tensor::cat(&[&d0, &fill], 0);
            z += attr.matmul(&w.tr()).view([-1, hh, f]);
        }
        let z = leaky_relu(&z, self.negative_slope);
        let a = (z * &b.att).sum_dim_intlist(-1, false, x.kind());
        // PyG's softmax: exp(a - max) / (Σ exp(a - max) + 1e-16) over the edges into each node
        let amax = tch::no_grad(|| scatter_reduce(&a, &dst, n, "amax"));
        let ex = (a - amax.index_select(0, &dst)).exp();
        let den = Tensor::zeros([n, hh], (ex.kind(), dev)).index_add(0, &dst, &ex) + 1e-16;
        let alpha = ex / den.index_select(0, &dst);
        let m = xl.index_select(0, &src) * alpha.unsqueeze(-1);
        let out = Tensor::zeros([n, hh, f], (m.kind(), dev)).index_add(0, &dst, &m);
        let out = if b.concat {
            out.view([-1, hh * f])
        } else {
            out.mean_dim(1, false, out.kind())
        } + &b.bias;
        State {
            s: after_conv(out, e, b.bn.as_ref(), self.post_act),
            v: None,
        }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l]
    }
}

/// leaky_relu(x, slope) = max(x, 0) + slope · min(x, 0) (tch's `leaky_relu` has PyTorch's
/// default slope 0.01).
fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    x.clamp_min(0.0) + x.clamp_max(0.0) * slope
}
