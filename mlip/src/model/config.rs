//! The serde model configuration, in HydraGNN's vocabulary where it has one (`mpnn_type`,
//! `hidden_dim`, `num_conv_layers`, `radius`, `num_radial`, `activation_function`,
//! `output_heads`). Unknown keys are rejected with an error naming the key.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Message-passing backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MpnnType {
    /// SchNet (Schütt et al., 2017): continuous-filter convolutions, invariant.
    SchNet,
    /// PaiNN (Schütt et al., 2021): equivariant scalar + vector features.
    #[serde(rename = "PAINN", alias = "PaiNN")]
    PaiNN,
    /// EGNN (Satorras, Hoogeboom, Welling, 2021): invariant messages of the pair distance, with
    /// optional equivariant coordinate updates.
    #[serde(rename = "EGNN")]
    Egnn,
    /// PNA (Corso et al., 2020): multiple aggregators with degree scalers (options in `pna`).
    #[serde(rename = "PNA")]
    Pna,
    /// PNAEq (HydraGNN's `PNAEqStack`): PaiNN's scalar + vector features with PNA's
    /// degree-scaled aggregation of the scalar messages (degree averages in `pna`).
    #[serde(rename = "PNAEq")]
    PnaEq,
    /// DimeNet++ (Gasteiger et al., 2020) as HydraGNN's `DIMEStack` stacks it: directional
    /// messages over triplets of atoms (options in `dimenet`).
    #[serde(rename = "DimeNet")]
    DimeNet,
    /// MACE (Batatia et al., NeurIPS 2022) as HydraGNN's `MACEStack` builds it: e3nn irreps
    /// 0e + 1o, spherical-harmonic tensor-product messages, symmetric contractions of
    /// correlation 2 and a readout after every layer (options in `mace`).
    #[serde(rename = "MACE")]
    Mace,
    /// CGCNN (Xie and Grossman, 2018) as HydraGNN's `CGCNNStack` builds it: PyTorch Geometric's
    /// `CGConv`, the width of the input features throughout (options in `conv`).
    #[serde(rename = "CGCNN")]
    Cgcnn,
    /// GATv2 (Brody, Alon, Yahav, 2022) as HydraGNN's `GATStack` builds it: PyTorch Geometric's
    /// multi-head `GATv2Conv` with self loops (options in `conv`).
    #[serde(rename = "GAT")]
    Gat,
    /// GIN (Xu et al., 2019) as HydraGNN's `GINStack` builds it: PyTorch Geometric's `GINConv`
    /// with a trainable ε. Reads only who is within the cutoff: its forces are zero.
    #[serde(rename = "GIN")]
    Gin,
    /// GraphSAGE (Hamilton, Ying, Leskovec, 2017) as HydraGNN's `SAGEStack` builds it: PyTorch
    /// Geometric's `SAGEConv` (mean aggregation). Reads only who is within the cutoff: its forces
    /// are zero.
    #[serde(rename = "SAGE")]
    Sage,
    /// Molecular fingerprint convolutions (Duvenaud et al., 2015) as HydraGNN's `MFCStack` builds
    /// them: PyTorch Geometric's `MFConv`, weights per degree up to `conv.max_degree`. Reads only
    /// who is within the cutoff: its forces are zero.
    #[serde(rename = "MFC")]
    Mfc,
}

/// Radial basis expanding the pair distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RadialType {
    /// Gaussians with centres evenly spaced on [0, radius] (SchNet's choice).
    #[default]
    Gaussian,
    /// sqrt(2/rc) sin(nπr/rc)/r (PaiNN's and DimeNet's choice).
    Bessel,
    /// sin(nπr/rc)/r without the prefactor (HydraGNN's PaiNN `sinc_expansion`).
    Sinc,
}

/// Smooth cutoff envelope multiplying every edge's contribution, so that energies and forces are
/// continuous when a pair crosses the cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Envelope {
    /// 0.5 (cos(πr/rc) + 1): value and first derivative vanish at rc.
    Cosine,
    /// DimeNet's polynomial envelope of order p: value, first and second derivatives vanish at rc.
    Polynomial {
        /// Order (6 is a good default).
        p: i32,
    },
    /// A hard cutoff: 1 inside, 0 at and beyond rc (HydraGNN's EGNN, which has no envelope).
    /// Energies jump when a pair crosses the cutoff.
    Hard,
}

impl Default for Envelope {
    fn default() -> Self {
        Envelope::Polynomial { p: 6 }
    }
}

/// Non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// x·sigmoid(x).
    #[default]
    Silu,
    /// log(1+e^x) - log 2 (SchNet's shifted softplus).
    Ssp,
    /// tanh.
    Tanh,
    /// max(0, x) (not smooth: not for MD).
    Relu,
}

/// Graph-level outputs pool per-node head values; node-level outputs keep them per atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// One value (vector of `dim`) per structure.
    Graph,
    /// One value (vector of `dim`) per atom.
    Node,
}

/// How a graph head pools its per-node values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Sum over atoms (extensive properties: energy).
    #[default]
    Sum,
    /// Mean over atoms (intensive properties: HOMO-LUMO gap).
    Mean,
    /// Maximum over atoms, per component (HydraGNN's `graph_pooling: "max"`).
    Max,
}

/// One output head: an MLP on the backbone's scalar node features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Property name ("energy", "gap", "charges" ...). The head named "energy" is the potential energy.
    pub name: String,
    /// Graph- or node-level.
    #[serde(rename = "type")]
    pub kind: HeadKind,
    /// Output width (1 for scalars).
    #[serde(default = "one")]
    pub dim: i64,
    /// Hidden layer widths of the head MLP (HydraGNN's `dim_headlayers`).
    #[serde(default = "default_head_hidden")]
    pub dim_headlayers: Vec<i64>,
    /// Pooling for graph heads.
    #[serde(default)]
    pub pooling: Pooling,
    /// Graph heads only: pool the node features first, then run the branch's `shared_layers` and
    /// this head's MLP on the pooled vector (HydraGNN's graph heads). The default runs the MLP on
    /// every node and pools its outputs. An "energy" head with `pool_first` is a graph-level
    /// energy (HydraGNN's foundation-model recipe): a nonlinear function of the summed node
    /// features, so it has no per-atom decomposition and per-atom energies are refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pool_first: bool,
}

impl HeadConfig {
    /// A head with the serde defaults for the rest (the MLP runs on every node, graph heads
    /// pool its outputs).
    pub fn new(
        name: impl Into<String>,
        kind: HeadKind,
        dim: i64,
        dim_headlayers: Vec<i64>,
        pooling: Pooling,
    ) -> Self {
        HeadConfig {
            name: name.into(),
            kind,
            dim,
            dim_headlayers,
            pooling,
            pool_first: false,
        }
    }

    /// The potential-energy head: a graph head named "energy" of dim 1 with sum pooling.
    pub fn energy(dim_headlayers: Vec<i64>) -> Self {
        HeadConfig::new("energy", HeadKind::Graph, 1, dim_headlayers, Pooling::Sum)
    }
}

/// A per-dataset output branch: its heads and its per-element reference energies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchConfig {
    /// Branch name, usually the dataset's name.
    pub name: String,
    /// Output heads of this branch.
    pub output_heads: Vec<HeadConfig>,
    /// Per-element reference energies (eV), one per entry of [`ModelConfig::species`]; added to
    /// the per-atom energies of the "energy" head.
    #[serde(default)]
    pub reference_energies: Vec<f64>,
    /// Widths of the Linear+activation layers applied to the pooled features before every
    /// `pool_first` graph head of this branch (HydraGNN's `graph_shared`); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_layers: Vec<i64>,
}

impl BranchConfig {
    /// A branch without shared layers.
    pub fn new(
        name: impl Into<String>,
        output_heads: Vec<HeadConfig>,
        reference_energies: Vec<f64>,
    ) -> Self {
        BranchConfig {
            name: name.into(),
            output_heads,
            reference_energies,
            shared_layers: Vec::new(),
        }
    }
}

/// How atoms enter the first layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputConfig {
    /// A learned embedding table indexed by species (the default; width `hidden_dim`).
    #[default]
    Embedding,
    /// Fixed node features per species fed directly into the first layer (HydraGNN's raw `x`):
    /// `features[k]` is the feature vector of `species[k]`.
    RawFeatures {
        /// One feature vector per species, all of the same length.
        features: Vec<Vec<f64>>,
    },
}

/// How PaiNN's vector edge term scales with the distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PainnEdgeVector {
    /// The unit vector r̂ (Schütt et al.).
    #[default]
    Unit,
    /// r̂ / r, with r̂ = r_vec / (r + 1e-9) (HydraGNN's `PainnMessage`).
    UnitOverDistance,
}

/// How PaiNN takes the norm of vector features in the update block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VectorNorm {
    /// sqrt(|v|² + 1e-8): smooth at v = 0.
    #[default]
    Floored,
    /// The exact Euclidean norm (HydraGNN: `torch.linalg.norm`); its gradient at v = 0 is 0.
    Exact,
}

/// PaiNN options beyond the paper's architecture (the defaults are the engine's PaiNN).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PainnOptions {
    /// Vector edge term.
    pub edge_vector: PainnEdgeVector,
    /// Norm in the update block.
    pub vector_norm: VectorNorm,
    /// After every layer, map scalars through Linear→tanh→Linear and vectors through a bias-free
    /// Linear to `hidden_dim` (HydraGNN's `node_embed_out` / `vec_embed_out`). This lets the first
    /// layer run at the width of raw input features.
    pub output_mlp: bool,
    /// The last layer updates scalars only: its update MLP outputs 2F, and its vector features
    /// leave the state (HydraGNN's `last_layer`).
    pub last_layer_scalar_only: bool,
    /// Multiply every layer's radial filter by an MLP of the pair distance (1 → F → 3F, with
    /// `conv_activation`): HydraGNN's `edge_filter` for `edge_dim` = 1, whose edge attribute
    /// is |r_ij|. Weights under `layers.<l>.message.edge_filter`.
    #[serde(skip_serializing_if = "is_false")]
    pub edge_filter: bool,
    /// `update.U`, `update.V` and `out.v` carry biases (HydraGNN PaiNN checkpoints from before
    /// upstream #511 dropped them; a bias on vector features breaks rotation equivariance).
    #[serde(skip_serializing_if = "is_false")]
    pub update_bias: bool,
}

impl PainnOptions {
    fn is_default(&self) -> bool {
        *self == PainnOptions::default()
    }
}

/// SchNet options beyond the engine's interaction block (the defaults are the engine's SchNet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SchnetOptions {
    /// The layer is PyTorch Geometric's `CFConv` alone (HydraGNN's `SCFStack`):
    /// h_i ← lin2(Σ_j lin1(h_j) ⊙ W_ij), with no activation, `lin3` or residual after it.
    pub cfconv_only: bool,
    /// Width of the filters and of `lin1` (HydraGNN's `num_filters`); None: `hidden_dim`.
    pub num_filters: Option<i64>,
    /// Gaussian centres as PyG's `GaussianSmearing` stores them (float32 values), with its
    /// γ = -0.5/(μ1 - μ0)²; the radial basis then has one function per centre. Empty: the
    /// engine's grid (`radial_type`, `num_radial`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaussian_offsets: Vec<f64>,
    /// The filter's activation is softplus(x) − this (PyG's `ShiftedSoftplus` subtracts log 2
    /// rounded to float32, 0.6931471824645996); None: `conv_activation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssp_shift: Option<f64>,
}

impl SchnetOptions {
    fn is_default(&self) -> bool {
        *self == SchnetOptions::default()
    }
}

/// PNA options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PnaOptions {
    /// 1: every message also reads an encoding of the pair distance (HydraGNN's `edge_dim` 1,
    /// edge_attr = |r_ij|); 0: none.
    pub edge_dim: i64,
    /// δ_lin, the mean degree of the training graphs (PyG's `avg_deg["lin"]`).
    pub avg_deg_lin: f64,
    /// δ_log, the mean of log(degree + 1) (PyG's `avg_deg["log"]`).
    pub avg_deg_log: f64,
    /// A BatchNorm in evaluation mode after every layer (HydraGNN's `feature_layers`).
    pub batch_norm: bool,
    /// PNAPlus (HydraGNN's `PNAPlusStack`): the messages also read a Bessel basis of the
    /// distance, b_n = env_p(r/rc) sin(ω_n r/rc) (DimeNet's basis; ω_n trainable, weight
    /// `rbf.freq`, `num_radial` of them): m_ij = pre([h_i, h_j, ReLU(emb(b))]) ⊙ W b.
    pub bessel_rbf: bool,
    /// The exponent of DimeNet's envelope for `bessel_rbf` (HydraGNN's `envelope_exponent`).
    pub envelope_exponent: i64,
    /// PNAEq only: `update.X`, `update.V` and `out.v` carry biases (HydraGNN PNAEq checkpoints
    /// from before upstream #511 dropped them; a bias on vector features breaks rotation
    /// equivariance).
    #[serde(skip_serializing_if = "is_false")]
    pub vector_bias: bool,
}

impl PnaOptions {
    fn is_default(&self) -> bool {
        *self == PnaOptions::default()
    }
}

/// DimeNet++ options (HydraGNN's `Architecture` keys of the same names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DimeNetOptions {
    /// Width of the bases' projection inside the interaction block.
    pub basis_emb_size: i64,
    /// Width of the triplet interaction (`lin_down`/`lin_up`).
    pub int_emb_size: i64,
    /// Width of the output block's hidden layer.
    pub out_emb_size: i64,
    /// Number of angular orders l of the spherical basis.
    pub num_spherical: i64,
    /// Residual layers before the interaction block's skip connection.
    pub num_before_skip: usize,
    /// Residual layers after it.
    pub num_after_skip: usize,
    /// DimeNet's envelope exponent (the envelope has order `envelope_exponent` + 1).
    pub envelope_exponent: i64,
    /// 1: the embedding block also reads act(Linear(1 → H)(|r_ij|)) (`emb.edge_lin`), its
    /// `lin` taking 4H inputs (HydraGNN's `edge_dim` 1, edge_attr = |r_ij|); 0: none.
    #[serde(skip_serializing_if = "is_zero")]
    pub edge_dim: i64,
}

impl DimeNetOptions {
    fn is_default(&self) -> bool {
        *self == DimeNetOptions::default()
    }
}

/// Options of the PyTorch Geometric convolution backbones (CGCNN, GAT, GIN, SAGE, MFC), as
/// HydraGNN's `CGCNNStack`, `GATStack`, `GINStack`, `SAGEStack` and `MFCStack` set them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConvOptions {
    /// CGCNN and GAT: 1, every message also reads the pair distance |r_ij| (HydraGNN's
    /// `edge_dim` 1, edge_attr = |r_ij|); 0: none.
    pub edge_dim: i64,
    /// A BatchNorm in evaluation mode after every layer (HydraGNN's `feature_layers`), weights
    /// under `layers.<l>.bn`.
    pub batch_norm: bool,
    /// GAT: the number of attention heads (HydraGNN hard-codes 6). Every layer but the last
    /// concatenates the heads (width `heads` × `hidden_dim`); the last averages them.
    pub heads: i64,
    /// GAT: the slope of the leaky ReLU inside the attention (HydraGNN hard-codes 0.05).
    pub negative_slope: f64,
    /// MFC: the largest degree with weights of its own; atoms with more neighbours use those
    /// (HydraGNN's `max_neighbours`).
    pub max_degree: i64,
}

impl ConvOptions {
    fn is_default(&self) -> bool {
        *self == ConvOptions::default()
    }
}

/// MACE options (HydraGNN's `MACEStack`, `max_ell` = `node_max_ell` = 1, correlation 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MaceOptions {
    /// Exponent p of MACE's polynomial cutoff (HydraGNN's `envelope_exponent`).
    pub cutoff_p: f64,
    /// 1: the distance |r_ij| is prepended to the edge attributes as an extra `0e` channel
    /// (HydraGNN's `edge_dim` = 1); 0: none.
    pub edge_dim: i64,
    /// The factor e3nn's `normalize2mom` puts on SiLU in the radial MLP (1 / sqrt(E[silu(z)^2]),
    /// z ~ N(0, 1), as e3nn estimates it: 1e6 samples of torch's generator seeded 0).
    pub silu_scale: f64,
}

impl MaceOptions {
    fn is_default(&self) -> bool {
        *self == MaceOptions::default()
    }
}

/// EGNN options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EgnnOptions {
    /// Equivariant coordinate updates in every layer but the last (HydraGNN's `equivariance`):
    /// x_i += mean_j (r_ij / (|r_ij| + 1)) φ_x(m_ij). The engine carries them as per-atom
    /// displacements that shift the next layers' edge vectors, so energies stay functions of the
    /// edge vectors.
    pub coords_update: bool,
    /// Also feed the radial basis of the pair distance (`num_radial` functions of `radial_type`)
    /// to the edge MLP: m_e = φ_e([h_i, h_j, d_e, rbf(d_e)]) (HydraGNN's `edge_attr` slot of
    /// `E_GCL`). Without it the distance is one raw number among 2F + 1 inputs, and a fresh
    /// model's energy hardly depends on the positions: forces of a random model are ~100× smaller
    /// than SchNet's and PaiNN's, and training does not move them. `hydragnn train` turns it on.
    #[serde(skip_serializing_if = "is_false")]
    pub edge_rbf: bool,
}

impl EgnnOptions {
    fn is_default(&self) -> bool {
        *self == EgnnOptions::default()
    }
}

/// The architecture of a model, stored inside every model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Backbone.
    pub mpnn_type: MpnnType,
    /// Width of node features.
    pub hidden_dim: i64,
    /// Number of message-passing layers.
    pub num_conv_layers: usize,
    /// Cutoff radius (Å).
    pub radius: f64,
    /// Number of radial basis functions.
    #[serde(default = "default_num_radial")]
    pub num_radial: i64,
    /// Radial basis.
    #[serde(default)]
    pub radial_type: RadialType,
    /// Cutoff envelope.
    #[serde(default)]
    pub envelope: Envelope,
    /// Activation inside the backbone and heads.
    #[serde(default)]
    pub activation_function: Activation,
    /// Atomic numbers the model knows, in the order of its species index.
    pub species: Vec<i32>,
    /// How atoms enter the first layer.
    #[serde(default)]
    pub input: InputConfig,
    /// Output branches (one per dataset); at least one.
    pub branches: Vec<BranchConfig>,
    /// Activation inside the message-passing blocks' MLPs; None: `activation_function`.
    /// (HydraGNN hard-codes silu in PaiNN's blocks and relu in EGNN's.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_activation: Option<Activation>,
    /// Activation applied to the scalar node features after every message-passing layer
    /// (HydraGNN applies its `activation_function` there); None: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_conv_activation: Option<Activation>,
    /// PaiNN options.
    #[serde(default, skip_serializing_if = "PainnOptions::is_default")]
    pub painn: PainnOptions,
    /// EGNN options.
    #[serde(default, skip_serializing_if = "EgnnOptions::is_default")]
    pub egnn: EgnnOptions,
    /// SchNet options.
    #[serde(default, skip_serializing_if = "SchnetOptions::is_default")]
    pub schnet: SchnetOptions,
    /// PNA options (PNA; PNAEq reads the degree averages).
    #[serde(default, skip_serializing_if = "PnaOptions::is_default")]
    pub pna: PnaOptions,
    /// DimeNet options (DimeNet only).
    #[serde(default, skip_serializing_if = "DimeNetOptions::is_default")]
    pub dimenet: DimeNetOptions,
    /// MACE options (MACE only).
    #[serde(default, skip_serializing_if = "MaceOptions::is_default")]
    pub mace: MaceOptions,
    /// Every layer's sum of messages over the neighbours is divided by this number, the average
    /// number of neighbours per atom (NequIP's and MACE's `avg_num_neighbors`); None: plain sums
    /// (HydraGNN, and every model file written before this option). Without it the features of
    /// a fresh model grow with depth like (neighbours)^layers in a dense solid (~44 neighbours
    /// within 5 Å in fcc Cu): PaiNN, whose update multiplies features (s ⊙ v, <Uv, Vv>), reaches
    /// 1e17 after 3 layers and its float32 gradients overflow; EGNN reaches 1e3, where the
    /// energy head saturates and the forces vanish. `hydragnn train` sets it for PaiNN, EGNN and
    /// DimeNet (whose triplet sums grow as (neighbours)^2 per layer) from the training data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_num_neighbors: Option<f64>,
    /// ZBL core repulsion added to the energy ([`crate::zbl`]); None: none (every model file
    /// written before this option). `hydragnn train` adds it to new interatomic potentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zbl: Option<crate::zbl::ZblConfig>,
    /// The shortest interatomic distance (Å) in the training data; clients warn when a pair comes
    /// closer. None: not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_training_distance: Option<f64>,
    /// Conditioning on attributes of the whole structure (total charge, spin), whose values are
    /// given at run time ([`crate::Model::set_graph_attr`]); None: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_attr: Option<GraphAttrConfig>,
    /// Options of the CGCNN, GAT, GIN, SAGE and MFC backbones (those only).
    #[serde(default, skip_serializing_if = "ConvOptions::is_default")]
    pub conv: ConvOptions,
}

/// Conditioning on per-structure attributes (HydraGNN's `use_graph_attr_conditioning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphAttrConfig {
    /// The attributes in order, e.g. `["charge", "spin"]`.
    pub names: Vec<String>,
    /// How they enter the model.
    pub mode: ConditioningMode,
}

/// Where per-structure attributes enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditioningMode {
    /// After every conv layer, before `post_conv_activation`: s_i ← W [s_i, a] + b, one shared
    /// Linear (`graph_attr.concat`, `hidden_dim` + d → `hidden_dim`). HydraGNN's `concat_node`.
    /// MACE: on the scalar (0e) features after the embedding and after every layer but the
    /// last; each layer's readout reads its features before the conditioning.
    ConcatNode,
    /// After every conv layer, before `post_conv_activation`: s_i ← s_i ⊙ (1 + tanh σ) + τ with
    /// [σ, τ] = W₂ act(W₁ a + b₁) + b₂ (`graph_attr.film.0`: d → max(`hidden_dim`, d),
    /// `graph_attr.film.2`: → 2 `hidden_dim`; act = `activation_function`). HydraGNN's `film`.
    /// MACE: where `concat_node` acts there.
    Film,
    /// The node features are left alone; the pooled vector x of every `pool_first` graph head
    /// (the graph-level energy included) becomes W₂ act(W₁ [x, a] + b₁) + b₂ before the
    /// branch's shared layers (`graph_attr.pool.0`: `hidden_dim` + d → `hidden_dim`,
    /// `graph_attr.pool.2`: `hidden_dim` → `hidden_dim`; act = `activation_function`). Under
    /// spatial decomposition it acts on the pooled vector reduced over every piece. HydraGNN's
    /// `fuse_pool`. Not for MACE, whose HydraGNN forward never applies it.
    FusePool,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(x: &i64) -> bool {
    *x == 0
}
fn one() -> i64 {
    1
}
fn default_num_radial() -> i64 {
    20
}
fn default_head_hidden() -> Vec<i64> {
    vec![32]
}

impl ModelConfig {
    /// Parses a JSON config, naming the offending key on error, and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let c: ModelConfig =
            serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// A model with the given backbone, sizes, species and branches, and the serde defaults for
    /// everything else (radial basis, envelope, activation, embedding input, no options); the
    /// `with_*` methods change those. Not validated: call [`ModelConfig::validate`].
    pub fn new(
        mpnn_type: MpnnType,
        hidden_dim: i64,
        num_conv_layers: usize,
        radius: f64,
        species: Vec<i32>,
        branches: Vec<BranchConfig>,
    ) -> Self {
        ModelConfig {
            mpnn_type,
            hidden_dim,
            num_conv_layers,
            radius,
            num_radial: default_num_radial(),
            radial_type: RadialType::default(),
            envelope: Envelope::default(),
            activation_function: Activation::default(),
            species,
            input: InputConfig::default(),
            branches,
            conv_activation: None,
            post_conv_activation: None,
            painn: PainnOptions::default(),
            egnn: EgnnOptions::default(),
            schnet: SchnetOptions::default(),
            pna: PnaOptions::default(),
            dimenet: DimeNetOptions::default(),
            mace: MaceOptions::default(),
            avg_num_neighbors: None,
            zbl: None,
            min_training_distance: None,
            graph_attr: None,
            conv: ConvOptions::default(),
        }
    }

    /// With `n` radial basis functions.
    pub fn with_num_radial(mut self, n: i64) -> Self {
        self.num_radial = n;
        self
    }

    /// With the radial basis `r`.
    pub fn with_radial_type(mut self, r: RadialType) -> Self {
        self.radial_type = r;
        self
    }

    /// With the cutoff envelope `e`.
    pub fn with_envelope(mut self, e: Envelope) -> Self {
        self.envelope = e;
        self
    }

    /// With the activation `a` (backbone and heads).
    pub fn with_activation(mut self, a: Activation) -> Self {
        self.activation_function = a;
        self
    }

    /// A small default model: `mpnn_type` for the given species, one "energy" branch.
    pub fn small(mpnn_type: MpnnType, species: Vec<i32>, radius: f64) -> Self {
        let n = species.len();
        let branch = BranchConfig::new("default", vec![HeadConfig::energy(vec![32])], vec![0.0; n]);
        ModelConfig::new(mpnn_type, 32, 2, radius, species, vec![branch])
            .with_num_radial(16)
            .with_radial_type(if mpnn_type == MpnnType::PaiNN {
                RadialType::Bessel
            } else {
                RadialType::Gaussian
            })
    }

    /// Checks values that serde cannot: positive sizes, a finite radius, known and unique species,
    /// branch names, reference-energy counts, an "energy" head that is a summed scalar.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if let Some(g) = &self.graph_attr {
            let mut names = g.names.clone();
            names.sort();
            names.dedup();
            if g.names.is_empty()
                || names.len() != g.names.len()
                || g.names.iter().any(|n| n.is_empty())
            {
                return bad(format!(
                    "graph_attr.names must be distinct non-empty names, got {:?}",
                    g.names
                ));
            }
        }
        if self.mpnn_type == MpnnType::PnaEq {
            let p = &self.pna;
            if !(p.avg_deg_lin > 0.0
                && p.avg_deg_log > 0.0
                && p.avg_deg_lin.is_finite()
                && p.avg_deg_log.is_finite())
                || !(p.edge_dim == 0 || p.edge_dim == 1)
                || p.batch_norm
                || p.bessel_rbf
            {
                return bad(format!(
                    "PNAEq needs pna.avg_deg_lin and pna.avg_deg_log > 0 (the training graphs' mean degree and mean \
                     log(degree + 1)), pna.edge_dim 0 or 1, and takes no other pna option (batch_norm, bessel_rbf), got {p:?}"
                ));
            }
        }
        if self.mpnn_type == MpnnType::DimeNet {
            let o = &self.dimenet;
            if o.basis_emb_size < 1
                || o.int_emb_size < 1
                || o.out_emb_size < 1
                || !(1..=7).contains(&o.num_spherical)
                || o.envelope_exponent < 1
                || !(o.edge_dim == 0 || o.edge_dim == 1)
                || self.num_radial > 64
            {
                return bad(format!(
                    "DimeNet needs dimenet.basis_emb_size, int_emb_size, out_emb_size >= 1, num_spherical in 1..=7, \
                     envelope_exponent >= 1, edge_dim 0 or 1 and num_radial <= 64, got {o:?} and num_radial {}",
                    self.num_radial
                ));
            }
        } else if self.dimenet != DimeNetOptions::default() {
            return bad("'dimenet' options are set but mpnn_type is not DimeNet".into());
        }
        if self.mpnn_type == MpnnType::Mace {
            let o = &self.mace;
            let ok = o.cutoff_p > 0.0
                && o.silu_scale > 0.0
                && (0..=1).contains(&o.edge_dim)
                && self.avg_num_neighbors.is_some_and(|a| a > 0.0);
            if !ok {
                return bad(format!(
                    "MACE needs mace.cutoff_p > 0, mace.silu_scale > 0, mace.edge_dim 0 or 1 and avg_num_neighbors > 0; \
                     got {o:?}, avg_num_neighbors {:?}",
                    self.avg_num_neighbors
                ));
            }
            if self
                .graph_attr
                .as_ref()
                .is_some_and(|g| g.mode == ConditioningMode::FusePool)
            {
                return bad(
                    "MACE takes graph_attr conditioning in mode concat_node or film only: HydraGNN's MACE applies \
                     graph_attr to the node features (after the embedding and after every layer) and never to a \
                     pooled vector, so graph_attr mode fuse_pool would have no effect"
                        .into(),
                );
            }
        } else if self.mace != MaceOptions::default() {
            return bad("'mace' options are set but mpnn_type is not MACE".into());
        }
        if self.mpnn_type == MpnnType::Pna {
            let p = &self.pna;
            if !(p.avg_deg_lin > 0.0
                && p.avg_deg_log > 0.0
                && p.avg_deg_lin.is_finite()
                && p.avg_deg_log.is_finite())
                || !(p.edge_dim == 0 || p.edge_dim == 1)
                || (p.bessel_rbf && p.envelope_exponent < 1)
                || p.vector_bias
            {
                return bad(format!(
                    "PNA needs pna.avg_deg_lin and pna.avg_deg_log > 0 (the training graphs' mean degree and mean \
                     log(degree + 1)), pna.edge_dim 0 or 1 (with bessel_rbf an envelope_exponent >= 1), and no \
                     vector_bias (PNAEq only), got {p:?}"
                ));
            }
        }
        let o = &self.schnet;
        if o.num_filters.is_some_and(|n| n < 1) {
            return bad(format!(
                "schnet.num_filters must be >= 1, got {:?}",
                o.num_filters
            ));
        }
        if !o.gaussian_offsets.is_empty()
            && (o.gaussian_offsets.len() < 2
                || o.gaussian_offsets.len() as i64 != self.num_radial
                || o.gaussian_offsets[1] == o.gaussian_offsets[0]
                || o.gaussian_offsets.iter().any(|x| !x.is_finite()))
        {
            return bad(format!(
                "schnet.gaussian_offsets must be num_radial ({}) finite centres, the first two distinct",
                self.num_radial
            ));
        }
        if self.hidden_dim < 1 {
            return bad(format!("hidden_dim must be >= 1, got {}", self.hidden_dim));
        }
        if self.num_conv_layers < 1 {
            return bad("num_conv_layers must be >= 1".into());
        }
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return bad(format!(
                "radius must be a positive number, got {}",
                self.radius
            ));
        }
        if self.num_radial < 1 {
            return bad(format!("num_radial must be >= 1, got {}", self.num_radial));
        }
        if self.species.is_empty() {
            return bad("species must list at least one atomic number".into());
        }
        if let Some(z) = &self.zbl {
            z.validate(self.radius)?;
            // ZBL adds per-atom pair energies; a graph-level energy (pooled features through an
            // MLP) has no per-atom energies to add them to under spatial decomposition.
            if let Some(b) = self.branches.iter().find(|b| {
                b.output_heads
                    .iter()
                    .any(|h| h.name == "energy" && h.pool_first)
            }) {
                return bad(format!(
                    "zbl cannot be combined with the graph-level energy head of branch '{}' (pool_first): leave zbl out",
                    b.name
                ));
            }
        }
        if let Some(d) = self.min_training_distance {
            if !(d.is_finite() && d > 0.0) {
                return bad(format!("min_training_distance must be > 0, got {d}"));
            }
        }
        for (k, &z) in self.species.iter().enumerate() {
            if !(1..=118).contains(&z) {
                return bad(format!("species[{k}] = {z} is not an atomic number"));
            }
            if self.species[..k].contains(&z) {
                return bad(format!("species[{k}] = {z} is listed twice"));
            }
        }
        if let InputConfig::RawFeatures { features } = &self.input {
            if features.len() != self.species.len() {
                return bad(format!(
                    "input.features has {} rows for {} species",
                    features.len(),
                    self.species.len()
                ));
            }
            let w = features[0].len();
            if w == 0 || features.iter().any(|f| f.len() != w) {
                return bad("input.features rows must all have the same, non-zero length".into());
            }
        }
        if let Envelope::Polynomial { p } = self.envelope {
            if p < 2 {
                return bad(format!("envelope.p must be >= 2, got {p}"));
            }
        }
        if self.mpnn_type != MpnnType::PaiNN && self.painn != PainnOptions::default() {
            return bad("'painn' options are set but mpnn_type is not PAINN".into());
        }
        if self.mpnn_type != MpnnType::Egnn && self.egnn != EgnnOptions::default() {
            return bad("'egnn' options are set but mpnn_type is not EGNN".into());
        }
        if let Some(k) = self.avg_num_neighbors {
            if !(k.is_finite() && k > 0.0) {
                return bad(format!(
                    "avg_num_neighbors must be a positive number, got {k}"
                ));
            }
        }
        if self.mpnn_type == MpnnType::PaiNN
            && !self.painn.output_mlp
            && self.input_dim() != self.hidden_dim
        {
            return bad(format!(
                "PaiNN with input width {} != hidden_dim {} needs painn.output_mlp (a per-layer map to hidden_dim)",
                self.input_dim(),
                self.hidden_dim
            ));
        }
        self.validate_conv()?;
        if self.branches.is_empty() {
            return bad("branches must contain at least one branch".into());
        }
        for (b, br) in self.branches.iter().enumerate() {
            if self.branches[..b].iter().any(|o| o.name == br.name) {
                return bad(format!("branch name '{}' is used twice", br.name));
            }
            if !br.reference_energies.is_empty()
                && br.reference_energies.len() != self.species.len()
            {
                return bad(format!(
                    "branches[{b}].reference_energies has {} values for {} species",
                    br.reference_energies.len(),
                    self.species.len()
                ));
            }
            if let Some(w) = br.shared_layers.iter().find(|&&w| w < 1) {
                return bad(format!(
                    "branch '{}': shared_layers widths must be >= 1, got {w}",
                    br.name
                ));
            }
            for h in &br.output_heads {
                if h.dim < 1 {
                    return bad(format!(
                        "branch '{}' head '{}': dim must be >= 1",
                        br.name, h.name
                    ));
                }
                if h.pool_first && h.kind != HeadKind::Graph {
                    return bad(format!(
                        "branch '{}' head '{}': pool_first is for graph heads",
                        br.name, h.name
                    ));
                }
                if h.name == "energy"
                    && (h.kind != HeadKind::Graph || h.dim != 1 || h.pooling != Pooling::Sum)
                {
                    return bad(format!(
                        "branch '{}': the 'energy' head must be a graph head of dim 1 with sum pooling",
                        br.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `conv` options of CGCNN, GAT, GIN, SAGE and MFC ([`ConvOptions`]).
    fn validate_conv(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let o = &self.conv;
        match self.mpnn_type {
            MpnnType::Cgcnn | MpnnType::Gat if !(0..=1).contains(&o.edge_dim) => {
                return bad(format!("conv.edge_dim must be 0 or 1, got {}", o.edge_dim));
            }
            MpnnType::Cgcnn if self.input_dim() != self.hidden_dim => {
                return bad(format!(
                    "CGCNN keeps the width of its input features: hidden_dim ({}) must equal the input width ({})",
                    self.hidden_dim,
                    self.input_dim()
                ));
            }
            MpnnType::Gat
                if o.heads < 1 || !o.negative_slope.is_finite() || self.num_conv_layers < 2 =>
            {
                return bad(format!(
                    "GAT needs conv.heads >= 1, a finite conv.negative_slope and num_conv_layers >= 2, got heads {}, \
                     negative_slope {}, {} layers",
                    o.heads, o.negative_slope, self.num_conv_layers
                ));
            }
            MpnnType::Mfc if o.max_degree < 0 => {
                return bad(format!(
                    "conv.max_degree must be >= 0, got {}",
                    o.max_degree
                ));
            }
            MpnnType::Cgcnn | MpnnType::Gat | MpnnType::Gin | MpnnType::Sage | MpnnType::Mfc => {}
            _ if !o.is_default() => {
                return bad(
                    "'conv' options are set but mpnn_type is not CGCNN, GAT, GIN, SAGE or MFC"
                        .into(),
                );
            }
            _ => {}
        }
        if matches!(
            self.mpnn_type,
            MpnnType::Gin | MpnnType::Sage | MpnnType::Mfc
        ) && o.edge_dim != 0
        {
            return bad(format!("{:?} takes no conv.edge_dim", self.mpnn_type));
        }
        if !matches!(self.mpnn_type, MpnnType::Gat) && (o.heads != 0 || o.negative_slope != 0.0) {
            return bad("conv.heads and conv.negative_slope are GAT options".into());
        }
        if !matches!(self.mpnn_type, MpnnType::Mfc) && o.max_degree != 0 {
            return bad("conv.max_degree is an MFC option".into());
        }
        Ok(())
    }

    /// Width of the per-atom input to the first layer.
    pub fn input_dim(&self) -> i64 {
        match &self.input {
            InputConfig::Embedding => self.hidden_dim,
            InputConfig::RawFeatures { features } => features[0].len() as i64,
        }
    }
}
