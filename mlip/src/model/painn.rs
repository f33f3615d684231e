//! PaiNN (Schütt, Unke, Gastegger, "Equivariant message passing for the prediction of tensorial
//! properties and molecular spectra", ICML 2021). Scalar features s (n, F) and vector features
//! v (n, 3, F). Reads `hidden_dim`, `num_conv_layers`, `num_radial`, `radial_type`, `envelope`,
//! `activation_function` from [`ModelConfig`](super::config::ModelConfig).
//!
//! Message: [Δs, Δv_v, Δv_s] = φ(s_j) ⊙ W(rbf(r_ij))·envelope; s_i += Σ Δs,
//! v_i += Σ (v_j ⊙ Δv_v + Δv_s ⊗ r̂_ij). Update: a = MLP([s, |V v|]);
//! v += a_vv ⊙ U v; s += a_sv ⊙ <U v, V v> + a_ss.

use tch::{nn, Tensor};

use super::config::{Activation, ModelConfig};
use super::nn::{Edges, Mlp};
use super::{Backbone, State};

struct Layer {
    phi: Mlp,
    w: nn::Linear,
    u: nn::Linear,
    v: nn::Linear,
    upd: Mlp,
}

/// The PaiNN backbone.
pub struct PaiNN {
    layers: Vec<Layer>,
    f: i64,
}

/// Norm with a small floor, so the gradient at v = 0 (the first layer) stays finite.
fn safe_norm(x: &Tensor, dim: i64) -> Tensor {
    (x.square().sum_dim_intlist(dim, false, x.kind()) + 1e-8).sqrt()
}

impl PaiNN {
    /// Layers under `vs/"layers"/l/{message,update}`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let f = c.hidden_dim;
        assert_eq!(c.input_dim(), f, "PaiNN with raw input features is added by the HydraGNN importer");
        let a: Activation = c.activation_function;
        let nobias = nn::LinearConfig { bias: false, ..Default::default() };
        let layers = (0..c.num_conv_layers)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                Layer {
                    phi: Mlp::new(&(&p / "message" / "phi"), &[f, f, 3 * f], a),
                    w: nn::linear(&p / "message" / "filter", c.num_radial, 3 * f, Default::default()),
                    u: nn::linear(&p / "update" / "U", f, f, nobias),
                    v: nn::linear(&p / "update" / "V", f, f, nobias),
                    upd: Mlp::new(&(&p / "update" / "mlp"), &[2 * f, f, 3 * f], a),
                }
            })
            .collect();
        PaiNN { layers, f }
    }
}

impl Backbone for PaiNN {
    fn init_state(&self, x0: &Tensor) -> State {
        let n = x0.size()[0];
        let v = Tensor::zeros([n, 3, self.f], (x0.kind(), x0.device()));
        State { s: x0.shallow_clone(), v: Some(v) }
    }

    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let f = self.f;
        let v = st.v.as_ref().expect("PaiNN state has vector features");
        // message
        let x = b.phi.forward(&st.s).index_select(0, &e.src) * (e.rbf.apply(&b.w) * e.env.unsqueeze(-1));
        let parts = x.split(f, -1);
        let (ds, dvv, dvs) = (&parts[0], &parts[1], &parts[2]);
        let unit = &e.vec / e.dist.unsqueeze(-1);
        let dv = v.index_select(0, &e.src) * dvv.unsqueeze(1) + dvs.unsqueeze(1) * unit.unsqueeze(-1);
        let s = &st.s + e.aggregate(ds);
        let v = v + e.aggregate(&dv);
        // update
        let uv = v.apply(&b.u);
        let vv = v.apply(&b.v);
        let a = b.upd.forward(&Tensor::cat(&[&s, &safe_norm(&vv, 1)], -1));
        let parts = a.split(f, -1);
        let (avv, asv, ass) = (&parts[0], &parts[1], &parts[2]);
        let v = &v + avv.unsqueeze(1) * &uv;
        let dot = (&uv * &vv).sum_dim_intlist(1, false, v.kind());
        let s = s + asv * dot + ass;
        State { s, v: Some(v) }
    }

    fn width(&self, _l: usize) -> i64 {
        4 * self.f
    }

    fn flatten(&self, st: &State) -> Tensor {
        let v = st.v.as_ref().expect("PaiNN state has vector features");
        let n = st.s.size()[0];
        Tensor::cat(&[&st.s, &v.reshape([n, 3 * self.f])], -1)
    }

    fn unflatten(&self, _l: usize, t: &Tensor) -> State {
        let n = t.size()[0];
        let s = t.narrow(1, 0, self.f);
        let v = t.narrow(1, self.f, 3 * self.f).reshape([n, 3, self.f]);
        State { s, v: Some(v) }
    }
}
