//! EGNN (Satorras, Hoogeboom, Welling, "E(n) Equivariant Graph Neural Networks", ICML 2021), in
//! the E_GCL form HydraGNN uses (no residual, no attention, the plain distance as the edge
//! input). Reads `hidden_dim`, `num_conv_layers`, `envelope`, `radius`, `activation_function`,
//! `conv_activation`, `post_conv_activation`, `avg_num_neighbors` and `egnn` from
//! [`ModelConfig`]; `num_radial` and `radial_type` only with
//! `egnn.edge_rbf`.
//!
//! Layer l, for edge e from j = src to i = dst with vector r_e and length d_e:
//! m_e = act(W2 act(W1 [h_i, h_j, d_e])) · envelope(d_e); h_i ← W4 act(W3 [h_i, Σ_e m_e / k]),
//! with k = `avg_num_neighbors` (1 when unset); with `egnn.edge_rbf` the edge MLP reads
//! [h_i, h_j, d_e, rbf(d_e)].
//! With `egnn.coords_update`, every layer but the last also moves the atoms:
//! x_i ← x_i + Σ_e clamp(r_e / (d_e + 1) · tanh(w·act(W5 m_e)), ±100) / max(Σ_e envelope, 1).
//! The engine carries these moves as per-atom displacements D in the state (n, 3, 1), and a layer
//! sees the edge vectors r_e + D_j - D_i, so the energy stays a function of the edge vectors
//! (forces, virials and ghost atoms work unchanged).

use tch::{nn, Tensor};

use super::config::{Activation, ModelConfig};
use super::nn::{act, Edges, Mlp, Radial};
use super::{Backbone, State};

struct Layer {
    edge_mlp: Mlp,
    node_mlp: Mlp,
    coord: Option<(nn::Linear, nn::Linear)>,
}

/// The EGNN backbone.
pub struct Egnn {
    layers: Vec<Layer>,
    /// Scalar width of the state entering layer l (l = 0..=L).
    dims: Vec<i64>,
    coords: bool,
    radial: Radial,
    act: Activation,
    post_act: Option<Activation>,
    avg_num_neighbors: Option<f64>,
    /// `egnn.edge_rbf`: the edge MLP also reads the radial basis.
    edge_rbf: bool,
}

impl Egnn {
    /// Layers under `vs/"layers"/l/{edge_mlp,node_mlp,coord_mlp}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let h = c.hidden_dim;
        let a = c.conv_activation.unwrap_or(c.activation_function);
        let coords = c.egnn.coords_update;
        let n_rbf = if c.egnn.edge_rbf { c.num_radial } else { 0 };
        let nl = c.num_conv_layers;
        let mut dims = vec![c.input_dim()];
        let layers = (0..nl)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let f = dims[l];
                dims.push(h);
                let coord = (coords && l + 1 < nl).then(|| {
                    let nobias = nn::LinearConfig {
                        bias: false,
                        ..Default::default()
                    };
                    (
                        nn::linear(&p / "coord_mlp" / "0", h, h, Default::default()),
                        nn::linear(&p / "coord_mlp" / "1", h, 1, nobias),
                    )
                });
                Layer {
                    edge_mlp: Mlp::new(&(&p / "edge_mlp"), &[2 * f + 1 + n_rbf, h, h], a),
                    node_mlp: Mlp::new(&(&p / "node_mlp"), &[h + f, h, h], a),
                    coord,
                }
            })
            .collect();
        let radial = Radial::new(c.radial_type, c.envelope, c.radius, c.num_radial);
        Egnn {
            layers,
            dims,
            coords,
            radial,
            act: a,
            post_act: c.post_conv_activation,
            avg_num_neighbors: c.avg_num_neighbors,
            edge_rbf: c.egnn.edge_rbf,
        }
    }
}

impl Backbone for Egnn {
    fn init_state(&self, x0: &Tensor) -> State {
        let n = x0.size()[0];
        let v = self
            .coords
            .then(|| Tensor::zeros([n, 3, 1], (x0.kind(), x0.device())));
        State {
            s: x0.shallow_clone(),
            v,
        }
    }

    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let h = &st.s;
        // Edge geometry of this layer: the input edges, moved by the atoms' displacements so far.
        let (vec, dist, env, rbf) = match &st.v {
            Some(d) => {
                let d = d.squeeze_dim(-1);
                let vec = &e.vec + d.index_select(0, &e.src) - d.index_select(0, &e.dst);
                let dist = vec.square().sum_dim_intlist(-1, false, vec.kind()).sqrt();
                let env = self.radial.envelope(&dist);
                let rbf = self.edge_rbf.then(|| self.radial.expand(&dist));
                (vec, dist, env, rbf)
            }
            None => (
                e.vec.shallow_clone(),
                e.dist.shallow_clone(),
                e.env.shallow_clone(),
                self.edge_rbf.then(|| e.rbf.shallow_clone()),
            ),
        };
        // The edge MLP's first layer on [h_i, h_j, d] is A·h_i + B·h_j + c·d + b: A·h and B·h are
        // computed once per node and gathered, instead of a (2F+1)-wide product on every edge.
        let first = b.edge_mlp.first();
        let f = h.size()[1];
        let (wa, wb, wc) = (
            first.ws.narrow(1, 0, f),
            first.ws.narrow(1, f, f),
            first.ws.narrow(1, 2 * f, 1),
        );
        // The distance terms c·d (+ the radial basis, + b) depend on the distance alone: once per
        // pair of edges while the atoms have not moved (no coordinate updates, or layer 0, whose
        // displacements are zero by construction): the input geometry, `Edges::filter`.
        let radial = |dist: &Tensor, rbf: Option<&Tensor>| {
            // d · c as a (P, 1)·(1, H) product: its derivatives are matrix-vector products,
            // where the broadcast product's are an element-wise pass and a reduction each
            let mut z = dist.unsqueeze(-1).matmul(&wc.tr());
            if let Some(rbf) = rbf {
                let n = rbf.size()[1];
                z += rbf.matmul(&first.ws.narrow(1, 2 * f + 1, n).tr());
            }
            if let Some(bias) = &first.bs {
                z += bias;
            }
            z
        };
        let (ha, hb) = (h.matmul(&wa.tr()), h.matmul(&wb.tr()));
        let (m, mut agg) = match (&e.half, e.pair_major()) {
            // Without coordinate updates, pair-major ([`Edges::pair_major`]): the per-pair radial
            // term and envelope broadcast over both edges of a pair instead of being expanded.
            (Some(hf), Some(pm)) if st.v.is_none() => {
                let hd = ha.size()[1];
                let r = radial(&hf.dist, self.edge_rbf.then_some(&hf.rbf));
                let z0 = match super::fused::gather_add(&ha, &hb, &r, &pm.dst, &pm.src) {
                    Some(z0) => z0.view([2, -1, hd]),
                    None => {
                        (ha.index_select(0, &pm.dst) + hb.index_select(0, &pm.src))
                            .view([2, -1, hd])
                            + r.unsqueeze(0)
                    }
                };
                // Σ_j a_ij · env_ij in one pass where the fused kernel applies.
                let a = act(self.act, &b.edge_mlp.forward_after_first(&z0));
                let agg =
                    super::fused::scale_scatter(&a.view([-1, hd]), &hf.env, &pm.dst, e.n_nodes)
                        .unwrap_or_else(|| {
                            e.aggregate_to(&pm.dst, &(a * hf.env.view([1, -1, 1])).view([-1, hd]))
                        });
                // no coordinate updates on this path, so the messages are not needed again
                (None, agg)
            }
            _ => {
                let radial = if st.v.is_none() || (l == 0 && e.half.is_some()) {
                    e.filter(|rbf, _env, dist| radial(dist, self.edge_rbf.then_some(rbf)))
                } else {
                    radial(&dist, rbf.as_ref())
                };
                let z0 = super::fused::gather_add(&ha, &hb, &radial, &e.dst, &e.src)
                    .unwrap_or_else(|| {
                        ha.index_select(0, &e.dst) + hb.index_select(0, &e.src) + &radial
                    });
                let m = act(self.act, &b.edge_mlp.forward_after_first(&z0)) * env.unsqueeze(-1);
                let agg = e.aggregate(&m);
                (Some(m), agg)
            }
        };
        if let Some(k) = self.avg_num_neighbors {
            agg /= k;
        }
        let s = b.node_mlp.forward(&Tensor::cat(&[h, &agg], -1));
        let v = match (&st.v, &b.coord, &m) {
            (Some(d), Some((w1, w2)), Some(m)) => {
                let phi = act(self.act, &m.apply(w1)).apply(w2).tanh();
                let trans = (&vec / (dist.unsqueeze(-1) + 1.0) * phi).clamp(-100.0, 100.0)
                    * env.unsqueeze(-1);
                let count = e.aggregate(&env).clamp_min(1.0);
                Some(d + (e.aggregate(&trans) / count.unsqueeze(-1)).unsqueeze(-1))
            }
            (d, _, _) => d.as_ref().map(|d| d.shallow_clone()),
        };
        let s = match &e.condition {
            Some(c) => c.apply(&s),
            None => s,
        };
        let s = match self.post_act {
            Some(a) => act(a, &s),
            None => s,
        };
        State { s, v }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l] + if self.coords { 3 } else { 0 }
    }

    fn flatten(&self, st: &State) -> Tensor {
        match &st.v {
            Some(d) => Tensor::cat(&[&st.s, &d.reshape([-1, 3])], -1),
            None => st.s.shallow_clone(),
        }
    }

    fn unflatten(&self, l: usize, t: &Tensor) -> State {
        let f = self.dims[l];
        let s = t.narrow(1, 0, f);
        let v = self.coords.then(|| t.narrow(1, f, 3).reshape([-1, 3, 1]));
        State { s, v }
    }
}
