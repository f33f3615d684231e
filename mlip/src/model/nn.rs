//! Building blocks shared by the backbones and heads: activations, MLPs, radial bases, cutoff
//! envelopes and the per-edge geometry every message-passing layer reads.

use tch::{nn, Kind, Tensor};

use super::config::{Activation, Envelope, RadialType};

/// Applies an activation (the fused one of [`super::fused`] where it applies).
pub fn act(a: Activation, x: &Tensor) -> Tensor {
    if let Some(y) = super::fused::act(a, x) {
        return y;
    }
    match a {
        Activation::Silu => x.silu(),
        Activation::Ssp => x.softplus() - std::f64::consts::LN_2,
        Activation::Tanh => x.tanh(),
        Activation::Relu => x.relu(),
    }
}

/// A multi-layer perceptron: Linear, act, Linear, act, ..., Linear (no activation at the end).
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<nn::Linear>,
    act: Activation,
}

impl Mlp {
    /// Layers named `vs/0`, `vs/1`, ... with widths `dims[0] -> dims[1] -> ...`.
    pub fn new(vs: &nn::Path, dims: &[i64], act: Activation) -> Self {
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(k, w)| nn::linear(vs / k.to_string(), w[0], w[1], Default::default()))
            .collect();
        Mlp { layers, act }
    }

    /// The first layer (its weight is (out, in), its bias (out)).
    pub fn first(&self) -> &nn::Linear {
        &self.layers[0]
    }

    /// The rest of the forward pass given the first layer's output `z0` (before its activation).
    pub fn forward_after_first(&self, z0: &Tensor) -> Tensor {
        let mut h = z0.shallow_clone();
        for l in self.layers.iter().skip(1) {
            h = act(self.act, &h).apply(l);
        }
        h
    }

    /// Forward pass.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for (k, l) in self.layers.iter().enumerate() {
            h = h.apply(l);
            if k + 1 < self.layers.len() {
                h = act(self.act, &h);
            }
        }
        h
    }
}

/// Radial basis and envelope of the pair distance.
#[derive(Debug, Clone, Copy)]
pub struct Radial {
    kind: RadialType,
    envelope: Envelope,
    cutoff: f64,
    n: i64,
}

impl Radial {
    /// A basis of `n` functions on [0, cutoff).
    pub fn new(kind: RadialType, envelope: Envelope, cutoff: f64, n: i64) -> Self {
        Radial {
            kind,
            envelope,
            cutoff,
            n,
        }
    }

    /// Number of basis functions.
    pub fn size(&self) -> i64 {
        self.n
    }

    /// Expands distances `d` (E,) into (E, n).
    pub fn expand(&self, d: &Tensor) -> Tensor {
        let (kind, dev) = (d.kind(), d.device());
        let rc = self.cutoff;
        match self.kind {
            RadialType::Gaussian => {
                let step = if self.n > 1 {
                    rc / (self.n - 1) as f64
                } else {
                    rc
                };
                let mu = Tensor::linspace(0.0, rc, self.n, (kind, dev));
                let gamma = -0.5 / (step * step);
                (d.unsqueeze(-1) - mu).square() * gamma
            }
            .exp(),
            RadialType::Bessel => {
                let k =
                    Tensor::arange_start(1, self.n + 1, (kind, dev)) * (std::f64::consts::PI / rc);
                let pref = (2.0 / rc).sqrt();
                (d.unsqueeze(-1) * k).sin() / d.unsqueeze(-1) * pref
            }
            RadialType::Sinc => {
                // HydraGNN's order of operations: sin(d·n·π/rc)/d.
                let n = Tensor::arange_start(1, self.n + 1, (kind, dev));
                (d.unsqueeze(-1) * n * std::f64::consts::PI / rc).sin() / d.unsqueeze(-1)
            }
        }
    }

    /// The smooth envelope, exactly 0 at and beyond the cutoff.
    pub fn envelope(&self, d: &Tensor) -> Tensor {
        let rc = self.cutoff;
        let inside = d.lt(rc);
        // Evaluate the polynomial on a clamped argument so that far pairs give finite values and
        // zero gradients.
        let x = (d / rc).clamp_max(1.0);
        let u = match self.envelope {
            Envelope::Cosine => ((x * std::f64::consts::PI).cos() + 1.0) * 0.5,
            Envelope::Polynomial { p } => {
                let p = p as f64;
                let a = -(p + 1.0) * (p + 2.0) / 2.0;
                let b = p * (p + 2.0);
                let c = -p * (p + 1.0) / 2.0;
                let xp = x.pow_tensor_scalar(p);
                (xp.shallow_clone() * a) + (&xp * &x * b) + (&xp * &x * &x * c) + 1.0
            }
            Envelope::Hard => return inside.to_kind(d.kind()),
        };
        u * inside.to_kind(d.kind())
    }
}

/// Per-edge geometry for one layer. Edge e carries a message from `src[e]` (the neighbour j) to
/// `dst[e]` (the centre i); `vec[e] = x_j - x_i` (including any periodic shift).
#[derive(Debug)]
pub struct Edges {
    /// Message sources (neighbours), int64 (E,).
    pub src: Tensor,
    /// Message destinations (centres), int64 (E,).
    pub dst: Tensor,
    /// Edge vectors (E, 3).
    pub vec: Tensor,
    /// Distances (E,).
    pub dist: Tensor,
    /// Radial basis (E, n).
    pub rbf: Tensor,
    /// Envelope (E,).
    pub env: Tensor,
    /// Number of nodes messages are aggregated into.
    pub n_nodes: i64,
    /// Conditioning of the node features on the structure's attributes, applied by every layer
    /// before its `post_conv_activation` (None: the model has none).
    pub condition: Option<NodeCondition>,
    /// The geometry once per pair of edges, when the pairing is known ([`Edges::filter`]).
    pub half: Option<HalfEdges>,
    /// The state entering layer 0 is the backbone's `init_state` and only the derivatives of
    /// what it feeds are wanted, not those w.r.t. that state ([`crate::model::Model::propagate`]):
    /// a layer 0 may skip terms that are zero on it (PaiNN's zero vectors). False where a caller
    /// evaluates layers on states of its own and differentiates w.r.t. them (layer by layer).
    pub initial_state: bool,
    /// The destination-major padded layout ([`Edges::slots`]), built on first use.
    slots: std::cell::OnceCell<Option<Slots>>,
    /// The pair-major order ([`Edges::pair_major`]), built on first use.
    pair_major: std::cell::OnceCell<Option<PairMajor>>,
}

/// The edges reordered pair by pair ([`Edges::pair_major`]): position p < H holds the first edge
/// of pair p (the one in [`HalfEdges`]), position H + p its reverse. A per-pair value (H, ...)
/// then multiplies per-edge values (2, H, ...) by broadcasting, without expanding it to every
/// edge.
#[derive(Debug)]
pub struct PairMajor {
    /// The edge at each position (E,), int64.
    pub perm: Tensor,
    /// Message sources in this order (E,).
    pub src: Tensor,
    /// Message destinations in this order (E,).
    pub dst: Tensor,
    /// [`Slots::row`] in this order, when the padded layout is in use.
    pub row: Option<Tensor>,
}

/// The edges laid out by destination: node i's edges fill rows i·k .. i·k + deg(i) of an
/// (n_nodes·k)-row table, k the largest in-degree, the other rows zero. A sum over a node's
/// edges of a per-edge product is then a batched matrix product ([`Edges::pad`]).
#[derive(Debug)]
pub struct Slots {
    /// The largest number of edges into one node.
    pub k: i64,
    /// Each edge's row in the table (E,), int64.
    pub row: Tensor,
}

/// Radial geometry of one edge per pair ([`crate::model::EdgePairs`]): an edge and its reverse
/// have the same distance, so whatever depends only on it is computed once per pair.
#[derive(Debug)]
pub struct HalfEdges {
    /// Distances (H,).
    pub dist: Tensor,
    /// Radial basis (H, n).
    pub rbf: Tensor,
    /// Envelope (H,).
    pub env: Tensor,
    /// Each edge's pair (E,), int64: per-edge values are `per_pair.index_select(0, expand)`.
    pub expand: Tensor,
}

/// Node features conditioned on per-structure attributes a (charge, spin) after a conv layer.
#[derive(Debug)]
pub enum NodeCondition {
    /// s ← W [s, a] + b (HydraGNN's `concat_node`).
    Concat {
        /// Weight (F, F + d) of the shared Linear.
        weight: Tensor,
        /// Bias (F).
        bias: Tensor,
        /// The attributes (d,), the same for every node.
        attr: Tensor,
    },
    /// s ← s ⊙ scale + shift (HydraGNN's `film`: scale = 1 + tanh σ, from the attributes).
    Film {
        /// 1 + tanh σ (F,).
        scale: Tensor,
        /// τ (F,).
        shift: Tensor,
    },
}

impl NodeCondition {
    /// The conditioned features of `s` (n, F).
    pub fn apply(&self, s: &Tensor) -> Tensor {
        match self {
            NodeCondition::Concat { weight, bias, attr } => {
                let n = s.size()[0];
                let a = attr.unsqueeze(0).expand([n, -1], false);
                Tensor::cat(&[s, &a], -1).linear(weight, Some(bias))
            }
            NodeCondition::Film { scale, shift } => s * scale + shift,
        }
    }
}

impl Edges {
    /// Geometry of the edges `vec` (E,3) under `radial`.
    pub fn new(src: &Tensor, dst: &Tensor, vec: &Tensor, radial: &Radial, n_nodes: i64) -> Self {
        Self::with_pairs(src, dst, vec, radial, n_nodes, None)
    }

    /// [`Edges::new`]; with `pairs`, the distances, radial basis and envelope are computed once
    /// per pair (from the pair's first edge, so the other edge's vector enters only through
    /// direction-dependent terms) and kept in [`Edges::half`] for [`Edges::filter`].
    pub fn with_pairs(
        src: &Tensor,
        dst: &Tensor,
        vec: &Tensor,
        radial: &Radial,
        n_nodes: i64,
        pairs: Option<&crate::model::EdgePairs>,
    ) -> Self {
        let geometry = |v: &Tensor| {
            let dist = v.square().sum_dim_intlist(-1, false, v.kind()).sqrt();
            let rbf = radial.expand(&dist);
            let env = radial.envelope(&dist);
            (dist, rbf, env)
        };
        let (dist, rbf, env, half) = match pairs {
            Some(p) => {
                let (dist, rbf, env) = geometry(&vec.index_select(0, &p.half));
                let full = |t: &Tensor| t.index_select(0, &p.expand);
                let h = HalfEdges {
                    expand: p.expand.shallow_clone(),
                    dist,
                    rbf,
                    env,
                };
                (full(&h.dist), full(&h.rbf), full(&h.env), Some(h))
            }
            None => {
                let (dist, rbf, env) = geometry(vec);
                (dist, rbf, env, None)
            }
        };
        Edges {
            src: src.shallow_clone(),
            dst: dst.shallow_clone(),
            vec: vec.shallow_clone(),
            dist,
            rbf,
            env,
            n_nodes,
            condition: None,
            half,
            initial_state: false,
            slots: std::cell::OnceCell::new(),
            pair_major: std::cell::OnceCell::new(),
        }
    }

    /// The pair-major order of the edges ([`PairMajor`]), when the pairing is known
    /// ([`Edges::half`]). Computed once per `Edges`.
    pub fn pair_major(&self) -> Option<&PairMajor> {
        self.pair_major
            .get_or_init(|| {
                let h = self.half.as_ref()?;
                let e = h.expand.size()[0];
                if e == 0 || e != 2 * h.dist.size()[0] {
                    return None;
                }
                let (_, order) = h.expand.sort_stable(true, 0, false);
                let perm = order.view([-1, 2]).tr().contiguous().view([-1]);
                let row = self.slots().map(|sl| sl.row.index_select(0, &perm));
                Some(PairMajor {
                    src: self.src.index_select(0, &perm),
                    dst: self.dst.index_select(0, &perm),
                    perm,
                    row,
                })
            })
            .as_ref()
    }

    /// Sums per-edge messages `m` (E, ...) whose destinations are `dst` (E,) into nodes.
    pub fn aggregate_to(&self, dst: &Tensor, m: &Tensor) -> Tensor {
        let mut shape = m.size();
        shape[0] = self.n_nodes;
        Tensor::zeros(shape.as_slice(), (m.kind(), m.device())).index_add(0, dst, m)
    }

    /// The padded destination-major layout of the edges ([`Slots`]), or None when there are no
    /// edges or when padding would more than triple the rows (a few nodes with many more
    /// neighbours than the rest). Computed once per `Edges`.
    pub fn slots(&self) -> Option<&Slots> {
        self.slots
            .get_or_init(|| {
                let e = self.dst.size()[0];
                if e == 0 || self.n_nodes == 0 {
                    return None;
                }
                let counts = self.dst.bincount::<Tensor>(None, self.n_nodes);
                let k = counts.max().int64_value(&[]);
                if self.n_nodes * k > 3 * e {
                    return None;
                }
                let (sorted, order) = self.dst.sort_stable(true, 0, false);
                let offsets = counts.cumsum(0, Kind::Int64) - &counts;
                let rank = Tensor::arange(e, (Kind::Int64, self.dst.device()))
                    - offsets.index_select(0, &sorted);
                let row = order.zeros_like().scatter(0, &order, &(sorted * k + rank));
                Some(Slots { k, row })
            })
            .as_ref()
    }

    /// Makes [`Edges::slots`] and [`Edges::pair_major`] None from now on (unless already built):
    /// layers then take their per-edge paths, the straightforward formulas (a reference for
    /// tests).
    pub fn disable_layouts(&self) {
        let _ = self.slots.set(None);
        let _ = self.pair_major.set(None);
    }

    /// Per-edge values `m` (E, ...) in the padded layout of `slots` (n_nodes, k, ...), zero where
    /// a node has fewer than k edges. Differentiable in `m`.
    pub fn pad(&self, slots: &Slots, m: &Tensor) -> Tensor {
        self.pad_rows(&slots.row, slots.k, m)
    }

    /// [`Edges::pad`] for edges in another order: `row` (E,) is each one's row in the table.
    pub fn pad_rows(&self, row: &Tensor, k: i64, m: &Tensor) -> Tensor {
        let mut shape = m.size();
        shape[0] = self.n_nodes * k;
        let t = Tensor::zeros(shape.as_slice(), (m.kind(), m.device())).index_copy(0, row, m);
        shape[0] = k;
        shape.insert(0, self.n_nodes);
        t.view(shape.as_slice())
    }

    /// A per-edge radial filter `f(rbf, env, dist)` (a function of the distance alone): computed
    /// once per pair and expanded to every edge when the pairing is known, else per edge. The
    /// numbers are the same either way.
    pub fn filter(&self, f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor) -> Tensor {
        match &self.half {
            Some(h) => f(&h.rbf, &h.env, &h.dist).index_select(0, &h.expand),
            None => f(&self.rbf, &self.env, &self.dist),
        }
    }

    /// Sums per-edge messages `m` (E, ...) into their destination nodes (n_nodes, ...).
    pub fn aggregate(&self, m: &Tensor) -> Tensor {
        let mut shape = m.size();
        shape[0] = self.n_nodes;
        Tensor::zeros(shape.as_slice(), (m.kind(), m.device())).index_add(0, &self.dst, m)
    }
}

/// Casts an f64 slice to a tensor of `kind` on `device`, shaped `shape`.
pub fn tensor_from(data: &[f64], shape: &[i64], kind: Kind, device: tch::Device) -> Tensor {
    Tensor::from_slice(data)
        .view(shape)
        .to_kind(kind)
        .to_device(device)
}
