//! MACE (Batatia, Kovács, Simm, Ortner, Csányi, NeurIPS 2022) as HydraGNN builds it
//! (`MACEStack` with `RealAgnosticAttResidualInteractionBlock`): e3nn features of irreps
//! `H x 0e + H x 1o` (`max_ell` = `node_max_ell` = 1), correlation-2 symmetric contractions, and a
//! readout after every layer. Reads `hidden_dim`, `num_conv_layers`, `radius`, `num_radial`,
//! `avg_num_neighbors` and `mace` from [`ModelConfig`].
//!
//! Conventions (e3nn's): an irreps block `m x l` is laid out channel-major (u, then the 2l+1
//! components); the engine keeps the 1o features as (n, 3, H) in [`State::v`]. Every e3nn `o3.Linear` is stored per l as
//! one (m_in, m_out) matrix already divided by sqrt(fan-in). On edge j → i (sender j = `src`,
//! receiver i = `dst`), with r = x_i − x_j, d = |r|, r̂ = r / d:
//! * edge features b = sqrt(2/r_c) sin(w_k d)/d · u(d/r_c) (Bessel weights w_k from the checkpoint;
//!   u = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2), 0 beyond r_c);
//! * edge attributes Y = [d (edge_dim 1 only), 1, sqrt(3) r̂] (spherical harmonics, "component");
//! * per layer: sc = skip(h), up = linear_up(h), w_e = FCN([b, down(h)_j, down(h)_i]) (e3nn's
//!   FullyConnectedNet: x W / sqrt(fan-in), SiLU scaled by `mace.silu_scale`, no biases);
//!   m_i = Σ_j TP(up_j, Y_ij; w_e) with e3nn's `uvu` paths 0×0→0, 0×1→1, 1×0→1, 1×1→0, each
//!   sqrt((2l_out+1)/m_2) times the normalised Clebsch–Gordan coefficients;
//!   A = linear(m) / avg_num_neighbors; B = the symmetric contraction of A (weights per element,
//!   coupling tensors U from the checkpoint); h ← linear_out(linear(B) + sc);
//! * the last layer keeps the scalars only.
//!
//! The readouts: readout 0 (on the one-hot element) is a per-element reference energy of the
//! branch; the readouts of layers 0..L−1 are linear in that layer's scalars, one column per
//! branch, accumulated in the state; the last layer's is the branch's energy head. The state's
//! scalars are [h (H) | accumulated readouts (one per branch) | Z (1)].
//!
//! `graph_attr` conditioning ([`Edges::condition`], `concat_node` or `film`) acts on the scalars
//! h as HydraGNN's `MACEStack.forward` applies it: once on the embedding (at the start of layer
//! 0) and after every layer, after that layer's readout has read h. After the last layer it
//! would act on features nothing reads, so it is skipped there.

use tch::{nn, Kind, Tensor};

use super::config::ModelConfig;
use super::nn::Edges;
use super::{Backbone, State};

/// Number of elements of MACE's one-hot node attributes (H to Og).
pub const NUM_ELEMENTS: i64 = 118;

/// Per-l matrices of one e3nn `o3.Linear` (pre-scaled): index 0 for 0e, 1 for 1o.
struct IrrepLinear {
    w0: Option<Tensor>,
    w1: Option<Tensor>,
}

impl IrrepLinear {
    fn new(p: &nn::Path, dims0: Option<(i64, i64)>, dims1: Option<(i64, i64)>) -> Self {
        let mk = |n: &str, d: Option<(i64, i64)>| {
            d.map(|(a, b)| {
                p.var(
                    n,
                    &[a, b],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0 / (a as f64).sqrt(),
                    },
                )
            })
        };
        IrrepLinear {
            w0: mk("l0", dims0),
            w1: mk("l1", dims1),
        }
    }
    /// Scalars (n, m) to (n, m_out); None when there is no 0e path.
    fn s(&self, x: &Tensor) -> Option<Tensor> {
        self.w0.as_ref().map(|w| x.matmul(w))
    }
    /// Vectors (n, m, 3) to (n, m_out, 3); None when there is no 1o path or input.
    fn v(&self, x: Option<&Tensor>) -> Option<Tensor> {
        match (self.w1.as_ref(), x) {
            (Some(w), Some(x)) => Some(x.transpose(1, 2).matmul(w).transpose(1, 2)),
            _ => None,
        }
    }
}

/// The symmetric contraction of correlation 2 for one output irrep.
struct Contraction {
    /// U_1 (0e: (4, 1); 1o: (3, 4, 1)), not trained.
    u1: Tensor,
    /// U_2 (0e: (4, 4, 2); 1o: (3, 4, 4, 2)), not trained.
    u2: Tensor,
    /// Weights per element (118, 1, H) and (118, 2, H).
    w1: Tensor,
    w2: Tensor,
}

struct Layer {
    /// Whether the layer's input carries 1o features.
    vin: bool,
    skip: IrrepLinear,
    up: IrrepLinear,
    down: IrrepLinear,
    fc: Vec<Tensor>,
    lin: IrrepLinear,
    c0: Contraction,
    c1: Option<Contraction>,
    prod: IrrepLinear,
    out: IrrepLinear,
    /// (H, branches): this layer's linear readouts (None in the last layer).
    readout: Option<Tensor>,
}

/// The MACE backbone.
pub struct Mace {
    h: i64,
    nb: i64,
    layers: Vec<Layer>,
    emb: Tensor,
    bessel_w: Tensor,
    bessel_pref: Tensor,
    cutoff: f64,
    p: f64,
    edge_dim: i64,
    silu_scale: f64,
    avg: f64,
}

fn contraction(p: &nn::Path, l: i64, h: i64) -> Contraction {
    let (u1, u2): (Vec<i64>, Vec<i64>) = if l == 0 {
        (vec![4, 1], vec![4, 4, 2])
    } else {
        (vec![3, 4, 1], vec![3, 4, 4, 2])
    };
    let init = nn::Init::Randn {
        mean: 0.0,
        stdev: 0.5,
    };
    Contraction {
        u1: p.zeros_no_train("u1", &u1),
        u2: p.zeros_no_train("u2", &u2),
        w1: p.var("w1", &[NUM_ELEMENTS, 1, h], init),
        w2: p.var("w2", &[NUM_ELEMENTS, 2, h], init),
    }
}

impl Contraction {
    /// x (n, H, 4) = [0e | 1o]; element index z (n,). 0e: (n, H); 1o: (n, H, 3).
    fn apply(&self, x: &Tensor, z: &Tensor, vector: bool) -> Tensor {
        let w1 = self.w1.index_select(0, z);
        let w2 = self.w2.index_select(0, z);
        if !vector {
            let o = Tensor::einsum("wik,nkc,nci->ncw", &[&self.u2, &w2, x], None::<i64>);
            let c = Tensor::einsum("wk,nkc->ncw", &[&self.u1, &w1], None::<i64>) + o;
            (c * x).sum_dim_intlist(-1, false, None)
        } else {
            let o = Tensor::einsum("mxik,nkc,nci->ncmx", &[&self.u2, &w2, x], None::<i64>);
            let c = Tensor::einsum("mxk,nkc->ncmx", &[&self.u1, &w1], None::<i64>) + o;
            Tensor::einsum("ncmx,ncx->ncm", &[&c, x], None::<i64>)
        }
    }
}

impl Mace {
    /// Weights under `vs/"mace"`: `emb` (118, H), `bessel_w`, `bessel_pref` and per layer
    /// `layers/l/{skip,up,down,lin,prod,out}/{l0,l1}`, `fc/k`, `sc0`, `sc1`, `readout`.
    pub fn new(vs: &nn::Path, c: &ModelConfig) -> Self {
        let h = c.hidden_dim;
        let nb = c.branches.len() as i64;
        let p = vs / "mace";
        let nl = c.num_conv_layers;
        let m2s = 1 + c.mace.edge_dim;
        let layers = (0..nl)
            .map(|l| {
                let q = &p / "layers" / l.to_string();
                let vin = l > 0;
                let vout = l + 1 < nl;
                // tensor-product paths: 0x0->0 (H), 0x1->1 (H), [1x0->1 (H), 1x1->0 (H)]
                let wnum = if vin {
                    2 * h * m2s + 2 * h
                } else {
                    h * m2s + h
                };
                let (m0, m1) = if vin { (2 * h, 2 * h) } else { (h, h) };
                let fdims = [c.num_radial + 2 * h, h, h, h, wnum];
                let fc = (0..4)
                    .map(|k| {
                        (&q / "fc").var(
                            &k.to_string(),
                            &[fdims[k], fdims[k + 1]],
                            nn::Init::Randn {
                                mean: 0.0,
                                stdev: 1.0 / (fdims[k] as f64).sqrt(),
                            },
                        )
                    })
                    .collect();
                Layer {
                    vin,
                    skip: IrrepLinear::new(
                        &(&q / "skip"),
                        Some((h, h)),
                        (vin && vout).then_some((h, h)),
                    ),
                    up: IrrepLinear::new(&(&q / "up"), Some((h, h)), vin.then_some((h, h))),
                    down: IrrepLinear::new(&(&q / "down"), Some((h, h)), None),
                    fc,
                    lin: IrrepLinear::new(&(&q / "lin"), Some((m0, h)), Some((m1, h))),
                    c0: contraction(&(&q / "sc0"), 0, h),
                    c1: vout.then(|| contraction(&(&q / "sc1"), 1, h)),
                    prod: IrrepLinear::new(&(&q / "prod"), Some((h, h)), vout.then_some((h, h))),
                    out: IrrepLinear::new(&(&q / "out"), Some((h, h)), vout.then_some((h, h))),
                    readout: vout.then(|| {
                        q.var(
                            "readout",
                            &[h, nb],
                            nn::Init::Randn {
                                mean: 0.0,
                                stdev: 1.0 / (h as f64).sqrt(),
                            },
                        )
                    }),
                }
            })
            .collect();
        let n = c.num_radial;
        let w: Vec<f64> = (1..=n)
            .map(|k| std::f64::consts::PI * k as f64 / c.radius)
            .collect();
        let bessel_w = p.zeros_no_train("bessel_w", &[n]);
        let bessel_pref = p.zeros_no_train("bessel_pref", &[1]);
        tch::no_grad(|| {
            bessel_w
                .shallow_clone()
                .copy_(&Tensor::from_slice(&w).to_kind(bessel_w.kind()));
            let _ = bessel_pref.shallow_clone().fill_((2.0 / c.radius).sqrt());
        });
        Mace {
            h,
            nb,
            layers,
            emb: p.var(
                "emb",
                &[NUM_ELEMENTS, h],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0 / (NUM_ELEMENTS as f64).sqrt(),
                },
            ),
            bessel_w,
            bessel_pref,
            cutoff: c.radius,
            p: c.mace.cutoff_p,
            edge_dim: c.mace.edge_dim,
            silu_scale: c.mace.silu_scale,
            avg: c.avg_num_neighbors.unwrap_or(1.0),
        }
    }

    /// Width of the state's scalars: features, one accumulated readout per branch, Z.
    fn s_width(&self) -> i64 {
        self.h + self.nb + 1
    }

    /// Element index (n,) (Z − 1, clamped to 0..=117 as HydraGNN clamps) of a state.
    fn element(&self, s: &Tensor) -> Tensor {
        (s.narrow(1, self.h + self.nb, 1).squeeze_dim(-1).round() - 1.0)
            .clamp(0.0, (NUM_ELEMENTS - 1) as f64)
            .to_kind(Kind::Int64)
    }

    /// The per-node sum of this state's linear readouts of branch `b` (n,).
    pub fn readout_sum(&self, s: &Tensor, b: usize) -> Tensor {
        s.select(1, self.h + b as i64)
    }

    /// The features the energy head reads (n, H).
    pub fn features(&self, s: &Tensor) -> Tensor {
        s.narrow(1, 0, self.h)
    }
}

impl Backbone for Mace {
    fn init_state(&self, x0: &Tensor) -> State {
        let n = x0.size()[0];
        let z = x0.narrow(1, 0, 1);
        let idx = (z.squeeze_dim(-1).round() - 1.0)
            .clamp(0.0, (NUM_ELEMENTS - 1) as f64)
            .to_kind(Kind::Int64);
        let h = self.emb.index_select(0, &idx);
        let acc = Tensor::zeros([n, self.nb], (h.kind(), h.device()));
        State {
            s: Tensor::cat(&[h, acc, z.to_kind(self.emb.kind())], 1),
            v: None,
        }
    }

    fn layer(&self, l: usize, st: &State, e: &Edges) -> State {
        let ly = &self.layers[l];
        let hd = self.h;
        let s = &st.s;
        let zcol = s.narrow(1, hd + self.nb, 1);
        let acc = s.narrow(1, hd, self.nb);
        let z = self.element(s);
        let h0 = s.narrow(1, 0, hd);
        // graph_attr conditioning of the embedding (HydraGNN's MACEStack.forward conditions it
        // once before conv 1); layer 0's input is always the embedding ([`Backbone::init_state`])
        let h0 = match (&e.condition, l) {
            (Some(c), 0) => c.apply(&h0),
            _ => h0,
        };
        // (n, H, 3)
        let h1 = if ly.vin {
            st.v.as_ref().map(|v| v.transpose(1, 2))
        } else {
            None
        };
        let sc0 = ly.skip.s(&h0).unwrap();
        let sc1 = ly.skip.v(h1.as_ref());
        let up0 = ly.up.s(&h0).unwrap();
        let up1 = ly.up.v(h1.as_ref());
        let down = ly.down.s(&h0).unwrap();

        // edge geometry: MACE's vector is x_receiver - x_sender = -(x_src - x_dst)
        let d = e.dist.unsqueeze(-1);
        let rhat = -&e.vec / &d;
        let rb = (&self.bessel_w * &d).sin() / &d * &self.bessel_pref;
        let x = &d / self.cutoff;
        let p = self.p;
        let env = 1.0 - x.pow_tensor_scalar(p) * ((p + 1.0) * (p + 2.0) / 2.0)
            + x.pow_tensor_scalar(p + 1.0) * (p * (p + 2.0))
            - x.pow_tensor_scalar(p + 2.0) * (p * (p + 1.0) / 2.0);
        let env = env * d.lt(self.cutoff).to_kind(d.kind());
        let ef = rb * env;
        let y1 = rhat * 3f64.sqrt(); // (E, 3)
        let ys = if self.edge_dim == 1 {
            Tensor::cat(&[d.shallow_clone(), d.ones_like()], 1)
        } else {
            d.ones_like()
        }; // (E, m2)
        let m2 = 1 + self.edge_dim;

        let aug = Tensor::cat(
            &[
                ef,
                down.index_select(0, &e.src),
                down.index_select(0, &e.dst),
            ],
            1,
        );
        let mut w = aug;
        for (k, wk) in ly.fc.iter().enumerate() {
            w = w.matmul(wk);
            if k + 1 < ly.fc.len() {
                w = w.silu() * self.silu_scale;
            }
        }
        let ne = w.size()[0];
        let a0 = up0.index_select(0, &e.src); // (E, H)
        let a1 = up1.as_ref().map(|u| u.index_select(0, &e.src)); // (E, H, 3)
        let mut off = 0;
        let mut take = |k: i64| {
            let t = w.narrow(1, off, hd * k).view([ne, hd, k]);
            off += hd * k;
            t
        };
        let inv_m2 = 1.0 / (m2 as f64).sqrt();
        // sorted paths: scalars (0x0 [, 1x1]) then vectors (0x1 [, 1x0])
        let w00 = take(m2);
        let w11 = ly.vin.then(|| take(1));
        let w01 = take(1);
        let w10 = ly.vin.then(|| take(m2));
        let p00 = &a0 * (w00 * ys.unsqueeze(1)).sum_dim_intlist(-1, false, None) * inv_m2;
        let p01 = (&a0 * w01.squeeze_dim(-1)).unsqueeze(-1) * y1.unsqueeze(1);
        let mut sc_paths = vec![p00];
        let mut v_paths = vec![p01];
        if let (Some(a1), Some(w11), Some(w10)) = (a1.as_ref(), w11, w10) {
            let dot = (a1 * y1.unsqueeze(1)).sum_dim_intlist(-1, false, None);
            sc_paths.push(dot * w11.squeeze_dim(-1) / 3f64.sqrt());
            let g = (w10 * ys.unsqueeze(1)).sum_dim_intlist(-1, false, None) * inv_m2;
            v_paths.push(a1 * g.unsqueeze(-1));
        }
        let ms = Tensor::cat(&sc_paths, 1);
        let mv = Tensor::cat(&v_paths, 1);
        let n = s.size()[0];
        let ms =
            Tensor::zeros([n, ms.size()[1]], (ms.kind(), ms.device())).index_add(0, &e.dst, &ms);
        let mv =
            Tensor::zeros([n, mv.size()[1], 3], (mv.kind(), mv.device())).index_add(0, &e.dst, &mv);
        let a0 = ly.lin.s(&ms).unwrap() / self.avg;
        let a1 = ly.lin.v(Some(&mv)).unwrap() / self.avg;
        let xr = Tensor::cat(&[a0.unsqueeze(-1), a1], 2); // (n, H, 4)
        let b0 = ly.c0.apply(&xr, &z, false);
        let mut g0 = ly.prod.s(&b0).unwrap() + sc0;
        g0 = ly.out.s(&g0).unwrap();
        let g1 = ly.c1.as_ref().map(|c| {
            let b1 = c.apply(&xr, &z, true);
            let mut g = ly.prod.v(Some(&b1)).unwrap();
            if let Some(sc1) = &sc1 {
                g += sc1;
            }
            ly.out.v(Some(&g)).unwrap()
        });
        let acc = match &ly.readout {
            Some(r) => acc + g0.matmul(r),
            None => acc.shallow_clone(),
        };
        // graph_attr conditioning after the layer and its readout (the readout reads the
        // features before it); after the last layer HydraGNN conditions features nothing reads,
        // and the energy head reads them unconditioned
        let g0 = match (&e.condition, &ly.readout) {
            (Some(c), Some(_)) => c.apply(&g0),
            _ => g0,
        };
        State {
            s: Tensor::cat(&[g0, acc, zcol], 1),
            v: g1.map(|g| g.transpose(1, 2)),
        }
    }

    fn width(&self, l: usize) -> i64 {
        let v = l > 0 && l < self.layers.len();
        self.s_width() + if v { 3 * self.h } else { 0 }
    }

    fn flatten(&self, st: &State) -> Tensor {
        match &st.v {
            Some(v) => Tensor::cat(&[st.s.shallow_clone(), v.flatten(1, -1)], 1),
            None => st.s.shallow_clone(),
        }
    }

    fn unflatten(&self, l: usize, t: &Tensor) -> State {
        let sw = self.s_width();
        let s = t.narrow(1, 0, sw);
        let v = (l > 0 && l < self.layers.len())
            .then(|| t.narrow(1, sw, 3 * self.h).view([-1, 3, self.h]));
        State { s, v }
    }
}
