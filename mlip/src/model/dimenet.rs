//! DimeNet++ (Gasteiger, Giri, Margraf, Günnemann, "Fast and Uncertainty-Aware Directional Message
//! Passing for Non-Equilibrium Molecules", 2020; DimeNet: Gasteiger, Groß, Günnemann, ICLR 2020)
//! as HydraGNN's `DIMEStack` stacks it: every conv layer is PyTorch Geometric's embedding,
//! `InteractionPPBlock` and `OutputPPBlock`, from node features to node features. Reads
//! `hidden_dim`, `num_conv_layers`, `radius`, `num_radial`, `post_conv_activation` and `dimenet`
//! ([`super::config::DimeNetOptions`]) from [`ModelConfig`].
//!
//! Bases: x = r/rc, u(x) DimeNet's envelope of order p = `envelope_exponent` + 1 (it contains
//! 1/x, and is 0 from x = 1 on); the radial basis rbf_n = u(x) sin(ω_n x) with trainable ω
//! (`rbf.freq`); for a triplet k → j → i, the spherical basis
//! sbf_{l,n} = u(x_kj) N_ln j_l(z_ln x_kj) · Y_l^0(α), l < `num_spherical`, n < `num_radial`,
//! with z_ln the n-th zero of the spherical Bessel function j_l and N_ln its normaliser, both
//! rounded to float32 as PyG computes them, and α the angle between r_ji and r_ji + r_kj.
//! Triplets pair every edge j → i with every edge k → j whose source atom k is not i (compared
//! by atom index, so a periodic image of i is excluded too, as in HydraGNN).
//!
//! Layer (SiLU σ throughout; F = width of the input, H = `hidden_dim` when F = 1, else F):
//! h = Linear(s); per edge j → i: m = σ(W [h_i, h_j, σ(W_r rbf)]) (with `dimenet.edge_dim` = 1
//! also σ(W_e r_ij), HydraGNN's `edge_lin` of edge_attr = |r_ij|); the interaction block
//! m ← m + … (`lin_ji`, `lin_kj`, the rbf and sbf projections, `lin_down`/`lin_up` through
//! `int_emb_size`, residual layers before and after the skip); the output block
//! s_i = W_o σ(W_l (W_u Σ_{j} (W_rbf rbf_ji) ⊙ m_ji)) to `hidden_dim`; then the node
//! conditioning if any and `post_conv_activation`. There is no skip connection from s to the
//! next layer's input. With `avg_num_neighbors` = k (set by `hydragnn train`, absent in
//! imported HydraGNN models) the triplet sum of every edge and the edge sum of every atom are
//! divided by k.
//!
//! The triplets reach two hops: a graph whose ghost atoms are separate rows (LAMMPS's spatial
//! decomposition) lacks the ghosts' own edges, so such graphs are refused
//! ([`Backbone::needs_two_hop_edges`]).

use tch::{nn, Kind, Tensor};

use super::config::{Activation, ModelConfig};
use super::nn::{act, Edges};
use super::{Backbone, State};

/// A residual layer: x + σ(lin2(σ(lin1(x)))).
struct Residual {
    lin1: nn::Linear,
    lin2: nn::Linear,
}

impl Residual {
    fn forward(&self, x: &Tensor) -> Tensor {
        x + x.apply(&self.lin1).silu().apply(&self.lin2).silu()
    }
}

struct Layer {
    lin: nn::Linear,
    // embedding block
    emb_rbf: nn::Linear,
    /// `dimenet.edge_dim` = 1: Linear(1 → H) of |r_ij| (HydraGNN's `edge_lin`).
    emb_edge: Option<nn::Linear>,
    emb_lin: nn::Linear,
    // interaction block
    rbf1: nn::Linear,
    rbf2: nn::Linear,
    sbf1: nn::Linear,
    sbf2: nn::Linear,
    kj: nn::Linear,
    ji: nn::Linear,
    down: nn::Linear,
    up: nn::Linear,
    before: Vec<Residual>,
    int_lin: nn::Linear,
    after: Vec<Residual>,
    // output block
    out_rbf: nn::Linear,
    out_up: nn::Linear,
    out_lins: Vec<nn::Linear>,
    out_lin: nn::Linear,
}

/// The DimeNet++ backbone.
pub struct DimeNet {
    layers: Vec<Layer>,
    /// Scalar width of the state entering layer l (l = 0..=L).
    dims: Vec<i64>,
    /// Trainable radial frequencies ω (`num_radial`).
    freq: Tensor,
    cutoff: f64,
    /// The envelope's p (= `envelope_exponent` + 1).
    p: f64,
    num_spherical: i64,
    num_radial: i64,
    /// z_ln and N_ln, (num_spherical × num_radial), float32 values.
    zeros: Vec<f64>,
    norms: Vec<f64>,
    post_act: Option<Activation>,
    /// 1 / `avg_num_neighbors` (1 without it): the scale of the triplet sum per edge and of the
    /// edge sum per atom.
    msg_scale: f64,
}

/// The spherical Bessel function j_l(y) of tensors (upward recurrence; y is at least a few
/// tenths here: z_l1 x with x = r/rc).
fn sph_jl(l: i64, y: &Tensor) -> Tensor {
    let j0 = y.sin() / y;
    if l == 0 {
        return j0;
    }
    let mut a = j0;
    let mut b = y.sin() / y.square() - y.cos() / y;
    for k in 1..l {
        let c = &b * ((2 * k + 1) as f64) / y - &a;
        a = b;
        b = c;
    }
    b
}

/// j_l(y) of one number.
fn sph_jl_f64(l: i64, y: f64) -> f64 {
    let j0 = y.sin() / y;
    if l == 0 {
        return j0;
    }
    let (mut a, mut b) = (j0, y.sin() / (y * y) - y.cos() / y);
    for k in 1..l {
        let c = (2 * k + 1) as f64 / y * b - a;
        a = b;
        b = c;
    }
    b
}

/// The zeros z_ln of j_l and the normalisers N_ln = 1/sqrt(j_{l+1}(z_ln)²/2) of PyG's
/// `dimenet_utils.bessel_basis` (l < `ns`, n < `nr`), as it computes them: the zeros found
/// between consecutive zeros of j_{l-1} and stored in float32, the normalisers computed in
/// float32 arithmetic (NumPy 2 keeps float32 scalars float32) from a double-precision Bessel
/// function. Row-major (l, n).
pub fn pyg_bessel_constants(ns: i64, nr: i64) -> (Vec<f64>, Vec<f64>) {
    let (ns, nr) = (ns as usize, nr as usize);
    let pi = std::f64::consts::PI;
    let mut zeros = vec![0f32; ns * nr];
    for (k, z) in zeros.iter_mut().take(nr).enumerate() {
        *z = ((k + 1) as f64 * pi) as f32;
    }
    let mut points: Vec<f64> = (1..nr + ns).map(|k| k as f64 * pi).collect();
    let mut racines = vec![0f32; nr + ns - 1];
    for i in 1..ns {
        for j in 0..(nr + ns - 1 - i) {
            // bisection to full precision: j_i changes sign once between these points
            let (mut a, mut b) = (points[j], points[j + 1]);
            let fa = sph_jl_f64(i as i64, a);
            for _ in 0..200 {
                let m = 0.5 * (a + b);
                if m <= a || m >= b {
                    break;
                }
                if (sph_jl_f64(i as i64, m) > 0.0) == (fa > 0.0) {
                    a = m;
                } else {
                    b = m;
                }
            }
            racines[j] = (0.5 * (a + b)) as f32;
        }
        points = racines.iter().map(|&x| f64::from(x)).collect();
        zeros[i * nr..(i + 1) * nr].copy_from_slice(&racines[..nr]);
    }
    let norms = (0..ns * nr)
        .map(|k| {
            let l = (k / nr) as i64;
            let r = zeros[k];
            // Jn(r, l + 1) = sqrt(pi / (2 r)) * jv(l + 1.5, r), in float32
            let s = (std::f32::consts::PI / (2f32 * r)).sqrt();
            let rf = f64::from(r);
            let jv = ((2.0 * rf / pi).sqrt() * sph_jl_f64(l + 1, rf)) as f32;
            let jn = s * jv;
            f64::from(1f32 / (0.5f32 * (jn * jn)).sqrt())
        })
        .collect();
    (zeros.into_iter().map(f64::from).collect(), norms)
}

/// The Legendre polynomial P_l of tensors.
fn legendre(l: i64, z: &Tensor) -> Tensor {
    if l == 0 {
        return z.ones_like();
    }
    let (mut a, mut b) = (z.ones_like(), z.shallow_clone());
    for j in 2..=l {
        let c = (z * &b * ((2 * j - 1) as f64) - &a * ((j - 1) as f64)) / j as f64;
        a = b;
        b = c;
    }
    b
}

impl DimeNet {
    /// Layers under `vs/"layers"/l/{lin,emb,int,out}`, frequencies `vs/"rbf"/"freq"`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let o = &c.dimenet;
        let nr = c.num_radial;
        let ns = o.num_spherical;
        let nb = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let d = nn::LinearConfig::default();
        let mut dims = vec![c.input_dim()];
        let layers = (0..c.num_conv_layers)
            .map(|l| {
                let p = vs / "layers" / l.to_string();
                let fin = dims[l];
                let h = if fin == 1 { c.hidden_dim } else { fin };
                dims.push(c.hidden_dim);
                let i = &p / "int";
                let res = |name: &str, n: usize| {
                    (0..n)
                        .map(|k| {
                            let r = &i / name / k.to_string();
                            Residual {
                                lin1: nn::linear(&r / "lin1", h, h, d),
                                lin2: nn::linear(&r / "lin2", h, h, d),
                            }
                        })
                        .collect::<Vec<_>>()
                };
                let out = &p / "out";
                Layer {
                    lin: nn::linear(&p / "lin", fin, h, d),
                    emb_rbf: nn::linear(&p / "emb" / "lin_rbf", nr, h, d),
                    emb_edge: (o.edge_dim == 1)
                        .then(|| nn::linear(&p / "emb" / "edge_lin", 1, h, d)),
                    emb_lin: nn::linear(&p / "emb" / "lin", (3 + o.edge_dim) * h, h, d),
                    rbf1: nn::linear(&i / "lin_rbf1", nr, o.basis_emb_size, nb),
                    rbf2: nn::linear(&i / "lin_rbf2", o.basis_emb_size, h, nb),
                    sbf1: nn::linear(&i / "lin_sbf1", ns * nr, o.basis_emb_size, nb),
                    sbf2: nn::linear(&i / "lin_sbf2", o.basis_emb_size, o.int_emb_size, nb),
                    kj: nn::linear(&i / "lin_kj", h, h, d),
                    ji: nn::linear(&i / "lin_ji", h, h, d),
                    down: nn::linear(&i / "lin_down", h, o.int_emb_size, nb),
                    up: nn::linear(&i / "lin_up", o.int_emb_size, h, nb),
                    before: res("before", o.num_before_skip),
                    int_lin: nn::linear(&i / "lin", h, h, d),
                    after: res("after", o.num_after_skip),
                    out_rbf: nn::linear(&out / "lin_rbf", nr, h, nb),
                    out_up: nn::linear(&out / "lin_up", h, o.out_emb_size, nb),
                    out_lins: (0..1)
                        .map(|k| {
                            nn::linear(
                                &out / "lins" / k.to_string(),
                                o.out_emb_size,
                                o.out_emb_size,
                                d,
                            )
                        })
                        .collect(),
                    out_lin: nn::linear(&out / "lin", o.out_emb_size, c.hidden_dim, nb),
                }
            })
            .collect();
        let init: Vec<f64> = (1..=nr).map(|k| k as f64 * std::f64::consts::PI).collect();
        let freq = (vs / "rbf").var_copy("freq", &Tensor::from_slice(&init));
        let (zeros, norms) = pyg_bessel_constants(ns, nr);
        DimeNet {
            layers,
            dims,
            freq,
            cutoff: c.radius,
            p: (o.envelope_exponent + 1) as f64,
            num_spherical: ns,
            num_radial: nr,
            zeros,
            norms,
            post_act: c.post_conv_activation,
            msg_scale: c.avg_num_neighbors.map_or(1.0, |k| 1.0 / k),
        }
    }

    /// PyG's `Envelope` of x = r/rc: (1/x + a x^(p-1) + b x^p + c x^(p+1)) for x < 1, else 0.
    fn envelope(&self, x: &Tensor) -> Tensor {
        let p = self.p;
        let (a, b, c) = (
            -(p + 1.0) * (p + 2.0) / 2.0,
            p * (p + 2.0),
            -p * (p + 1.0) / 2.0,
        );
        let x0 = x.pow_tensor_scalar(p - 1.0);
        let x1 = &x0 * x;
        let x2 = &x1 * x;
        (x.reciprocal() + x0 * a + x1 * b + x2 * c) * x.lt(1.0).to_kind(x.kind())
    }

    /// Triplets (kj, ji) of the edges: every edge k → j for every edge j → i, k ≠ i.
    fn triplets(src: &Tensor, dst: &Tensor, n: i64) -> (Tensor, Tensor) {
        let s = Vec::<i64>::try_from(src.to_device(tch::Device::Cpu)).unwrap_or_default();
        let t = Vec::<i64>::try_from(dst.to_device(tch::Device::Cpu)).unwrap_or_default();
        // edges grouped by destination
        let mut into: Vec<Vec<i64>> = vec![Vec::new(); n as usize];
        for (e, &d) in t.iter().enumerate() {
            into[d as usize].push(e as i64);
        }
        let (mut kj, mut ji) = (Vec::new(), Vec::new());
        for (e, (&j, &i)) in s.iter().zip(&t).enumerate() {
            for &f in &into[j as usize] {
                if s[f as usize] != i {
                    kj.push(f);
                    ji.push(e as i64);
                }
            }
        }
        let dev = src.device();
        (
            Tensor::from_slice(&kj).to_device(dev),
            Tensor::from_slice(&ji).to_device(dev),
        )
    }
}

impl Backbone for DimeNet {
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let b = &self.layers[l];
        let kind = st.s.kind();
        let (ns, nr) = (self.num_spherical, self.num_radial);
        // bases
        let x = (&e.dist / self.cutoff).unsqueeze(-1);
        let env = self.envelope(&x);
        let rbf = &env * (&x * self.freq.to_kind(kind)).sin();
        let (idx_kj, idx_ji) = Self::triplets(&e.src, &e.dst, e.n_nodes);
        let v_ji = e.vec.index_select(0, &idx_ji);
        let v_ki = &v_ji + e.vec.index_select(0, &idx_kj);
        let a = (&v_ji * &v_ki).sum_dim_intlist(-1, false, kind);
        let bb =
            v_ji.linalg_cross(&v_ki, -1)
                .linalg_norm(2.0, [-1i64].as_slice(), false, None::<Kind>);
        let cos = bb.atan2(&a).cos();
        let dev = e.dist.device();
        let z = Tensor::from_slice(&self.zeros).to_kind(kind).to_device(dev);
        let nrm = Tensor::from_slice(&self.norms).to_kind(kind).to_device(dev);
        // (E, ns·nr): u(x) N_ln j_l(z_ln x), l-major
        let radial: Vec<Tensor> = (0..ns)
            .map(|li| {
                let zl = z.narrow(0, li * nr, nr);
                let nl = nrm.narrow(0, li * nr, nr);
                sph_jl(li, &(&x * zl)) * nl
            })
            .collect();
        let radial = Tensor::cat(&radial, -1) * &env;
        let radial = radial.index_select(0, &idx_kj).view([-1, ns, nr]);
        let four_pi = 4.0 * std::f64::consts::PI;
        let cbf: Vec<Tensor> = (0..ns)
            .map(|li| legendre(li, &cos) * ((2 * li + 1) as f64 / four_pi).sqrt())
            .collect();
        let cbf = Tensor::stack(&cbf, 1).unsqueeze(-1);
        let sbf = (radial * cbf).view([-1, ns * nr]);
        // embedding block: per edge j -> i, [h_i, h_j, rbf]
        let h = st.s.apply(&b.lin);
        let hi = h.index_select(0, &e.dst);
        let hj = h.index_select(0, &e.src);
        let r = rbf.apply(&b.emb_rbf).silu();
        let m = match &b.emb_edge {
            Some(lin) => {
                let d = e.dist.unsqueeze(-1).apply(lin).silu();
                Tensor::cat(&[&hi, &hj, &r, &d], -1)
            }
            None => Tensor::cat(&[&hi, &hj, &r], -1),
        }
        .apply(&b.emb_lin)
        .silu();
        // interaction block
        let x_ji = m.apply(&b.ji).silu();
        let x_kj = m.apply(&b.kj).silu() * rbf.apply(&b.rbf1).apply(&b.rbf2);
        let x_kj = x_kj.apply(&b.down).silu();
        let t = x_kj.index_select(0, &idx_kj) * sbf.apply(&b.sbf1).apply(&b.sbf2);
        let mut agg =
            Tensor::zeros([m.size()[0], t.size()[1]], (kind, dev)).index_add(0, &idx_ji, &t);
        if self.msg_scale != 1.0 {
            agg *= self.msg_scale;
        }
        let mut hh = x_ji + agg.apply(&b.up).silu();
        for r in &b.before {
            hh = r.forward(&hh);
        }
        hh = hh.apply(&b.int_lin).silu() + &m;
        for r in &b.after {
            hh = r.forward(&hh);
        }
        // output block
        let y = rbf.apply(&b.out_rbf) * hh;
        let mut s = e.aggregate(&y);
        if self.msg_scale != 1.0 {
            s *= self.msg_scale;
        }
        let mut s = s.apply(&b.out_up);
        for lin in &b.out_lins {
            s = s.apply(lin).silu();
        }
        let mut s = s.apply(&b.out_lin);
        if let Some(c) = &e.condition {
            s = c.apply(&s);
        }
        if let Some(a) = self.post_act {
            s = act(a, &s);
        }
        State { s, v: None }
    }

    fn width(&self, l: usize) -> i64 {
        self.dims[l]
    }

    fn needs_two_hop_edges(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::pyg_bessel_constants;

    /// PyG's float32 zeros and normalisers for num_spherical 2, num_radial 5, as NumPy 2 prints
    /// them (`Jn_zeros(2, 5)` and `1 / (0.5 Jn(z, l + 1)²)^½` with torch_geometric 2.8's
    /// `dimenet_utils`): equal as float32 numbers.
    #[test]
    // NumPy's printout of float32(π) is the first value, on purpose
    #[allow(clippy::approx_constant)]
    fn bessel_constants_equal_pygs_float32_values() {
        let zeros: [f32; 10] = [
            3.1415927, 6.2831855, 9.424778, 12.566371, 15.707963, 4.4934096, 7.7252517, 10.904121,
            14.066194, 17.220755,
        ];
        let norms: [f32; 10] = [
            4.442883, 8.885766, 13.328649, 17.771532, 22.214415, 6.510105, 11.016307, 15.485469,
            19.942808, 24.39485,
        ];
        let (z, n) = pyg_bessel_constants(2, 5);
        for k in 0..10 {
            assert_eq!(z[k] as f32, zeros[k], "zero {k}");
            assert_eq!(n[k] as f32, norms[k], "normaliser {k}");
        }
    }
}
