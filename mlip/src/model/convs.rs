//! Pieces shared by the PyTorch Geometric convolution backbones that HydraGNN stacks (CGCNN,
//! GAT, GIN, SAGE, MFC: [`super::cgcnn`], [`super::gat`], [`super::gin`], [`super::sage`],
//! [`super::mfc`]): HydraGNN's BatchNorm feature layer in evaluation mode, and what follows every
//! conv in HydraGNN's `Base.forward` (conditioning, BatchNorm, activation).

use tch::{nn, Tensor};

use super::config::Activation;
use super::nn::{act, Edges};

/// PyTorch Geometric's `BatchNorm` in evaluation mode (running statistics, ε = 1e-5): weight,
/// bias, running mean, running variance, under `p`.
pub struct BatchNorm([Tensor; 4]);

impl BatchNorm {
    /// The four tensors of width `f` under `p` (`weight`, `bias`, `running_mean`, `running_var`).
    pub fn new(p: &nn::Path, f: i64) -> Self {
        BatchNorm([
            p.var("weight", &[f], nn::Init::Const(1.0)),
            p.var("bias", &[f], nn::Init::Const(0.0)),
            p.zeros_no_train("running_mean", &[f]),
            p.ones_no_train("running_var", &[f]),
        ])
    }

    /// (x - mean) / sqrt(var + 1e-5) · weight + bias.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let [w, b, rm, rv] = &self.0;
        (x - rm) / (rv + 1e-5).sqrt() * w + b
    }
}

/// HydraGNN's `Base.forward` after a conv: the structure conditioning (if any), the feature
/// layer (BatchNorm or identity), then the activation.
pub fn after_conv(s: Tensor, e: &Edges, bn: Option<&BatchNorm>, a: Option<Activation>) -> Tensor {
    let mut s = s;
    if let Some(c) = &e.condition {
        s = c.apply(&s);
    }
    if let Some(bn) = bn {
        s = bn.apply(&s);
    }
    if let Some(a) = a {
        s = act(a, &s);
    }
    s
}

/// A per-edge factor (E, 1) that is exactly 1 with a zero derivative with respect to the edge
/// vectors. GIN, SAGE and MFC read only which atoms are neighbours, not where they are; this
/// keeps their energy a (constant) function of the edge vectors, so forces and virials come out
/// as exact zeros from the same backward pass as every other model's.
pub fn unit_edge_factor(e: &Edges) -> Tensor {
    (e.vec.sum_dim_intlist(-1, true, e.vec.kind()) * 0.0) + 1.0
}

/// The number of edges into every node (n, 1), as a float of `like`'s kind.
pub fn in_degree(e: &Edges, like: &Tensor) -> Tensor {
    let ones = Tensor::ones([e.dst.size()[0], 1], (like.kind(), like.device()));
    e.aggregate(&ones)
}

/// Per-node reduction `reduce` ("amax", "amin") of `m` (E, ...) into `n` rows at `dst`; rows
/// without edges keep 0.
pub fn scatter_reduce(m: &Tensor, dst: &Tensor, n: i64, reduce: &str) -> Tensor {
    let mut shape = m.size();
    let mut view = vec![-1i64];
    view.extend(std::iter::repeat_n(1, shape.len() - 1));
    let idx = dst.view(view.as_slice()).expand_as(m);
    shape[0] = n;
    Tensor::zeros(shape.as_slice(), (m.kind(), m.device()))
        .internal_scatter_reduce(0, &idx, m, reduce, false)
}
