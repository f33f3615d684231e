//! The models: a species input (embedding or raw features), a message-passing backbone (SchNet,
//! PaiNN, EGNN, PNA, PNAEq, DimeNet, MACE) behind one [`Backbone`] interface, and per-dataset output
//! branches of graph- and node-level heads. [`Model::forward`] is differentiable end to end (the
//! trainer takes gradients through it); the energy is Σ_i (head(h_i) + `E0[Z_i]`).
//! [`crate::hydragnn`] maps models trained by HydraGNN onto these options.

pub mod cgcnn;
pub mod config;
pub mod convs;
pub mod dimenet;
pub mod egnn;
pub mod fused;
pub mod gat;
pub mod gin;
pub mod graphs;
pub mod mace;
pub mod mfc;
pub mod nn;
pub mod painn;
pub mod pna;
pub mod pnaeq;
pub mod pooled;
pub mod sage;
pub mod schnet;
pub mod species;

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use config::{HeadKind, InputConfig, ModelConfig, MpnnType, Pooling};
pub use graphs::{EdgePairs, GraphArrays};
use nn::{Edges, Mlp, Radial};
pub use pooled::HeadPartials;
pub use species::SpeciesIndex;

/// Node features flowing between layers: scalars (n, F) and, for equivariant models, vectors (n, 3, F).
#[derive(Debug)]
pub struct State {
    /// Scalar features.
    pub s: Tensor,
    /// Vector features, if the backbone has them.
    pub v: Option<Tensor>,
}

/// One message-passing backbone. The per-atom state entering layer `l` flattens to `width(l)`
/// numbers: that is what a spatial-decomposition client exchanges for ghost atoms.
pub trait Backbone: Send {
    /// State entering layer 0 from the per-atom input features (by default the features
    /// themselves, for backbones whose state is scalar features only).
    fn init_state(&self, x0: &Tensor) -> State {
        State {
            s: x0.shallow_clone(),
            v: None,
        }
    }
    /// Layer `l`: the state after it, for every node that receives messages.
    fn layer(&self, l: usize, st: &State, e: &Edges) -> State;
    /// Flattened width of the state entering layer `l` (`l` = number of layers: the final state).
    fn width(&self, l: usize) -> i64;
    /// Flattens a state to (n, width) (by default its scalar features).
    fn flatten(&self, st: &State) -> Tensor {
        st.s.shallow_clone()
    }
    /// Inverse of [`Backbone::flatten`] for the state entering layer `l` (by default scalar
    /// features only).
    fn unflatten(&self, _l: usize, t: &Tensor) -> State {
        State {
            s: t.shallow_clone(),
            v: None,
        }
    }
    /// Whether a layer reads edges between neighbours (DimeNet's triplets k → j → i): then a
    /// graph whose ghost atoms are separate rows, with edges centred on local atoms only, is
    /// not enough ([`Model::check_ghost_rows`]).
    fn needs_two_hop_edges(&self) -> bool {
        false
    }
}

struct Head {
    name: String,
    kind: HeadKind,
    pooling: Pooling,
    pool_first: bool,
    mlp: Mlp,
}

struct Branch {
    name: String,
    heads: Vec<Head>,
    energy: Option<usize>,
    e0: Tensor,
    /// Linear+activation layers on pooled features before `pool_first` graph heads.
    shared: Vec<tch::nn::Linear>,
}

enum Input {
    Embedding(tch::nn::Embedding),
    Raw(Tensor),
}

/// A batch of graphs as tensors. Edge e carries a message from `src[e]` to `dst[e]`, with
/// `edge_vec[e] = x_src - x_dst` (periodic shift included).
#[derive(Debug)]
pub struct GraphTensors {
    /// Species index (position in the model's `species`) per node, int64 (n,).
    pub species: Tensor,
    /// Message sources, int64 (E,).
    pub src: Tensor,
    /// Message destinations, int64 (E,).
    pub dst: Tensor,
    /// Edge vectors (E, 3) in the model's float kind.
    pub edge_vec: Tensor,
    /// Graph index per node, int64 (n,).
    pub batch: Tensor,
    /// Number of graphs.
    pub n_graphs: i64,
    /// The edges' pairing (each edge and its reverse), when known: radial filters are then
    /// computed once per pair. None: once per edge (the same numbers, twice the filter work).
    pub pairs: Option<EdgePairs>,
}

/// What [`Model::forward`] returns.
#[derive(Debug)]
pub struct Outputs {
    /// Per-atom energies (n,), reference energies included. Zeros when the branch's energy is
    /// graph-level ([`Model::energy_is_pooled`]), which has no per-atom decomposition.
    pub node_energy: Tensor,
    /// Per-graph energies (n_graphs,).
    pub energy: Tensor,
    /// Other graph heads, (n_graphs, dim).
    pub graph_properties: BTreeMap<String, Tensor>,
    /// Other node heads, (n, dim).
    pub node_properties: BTreeMap<String, Tensor>,
}

/// Serialises [`Model::new`] within a process: it seeds libtorch's global generator and then
/// draws the initial weights, so two threads creating models at once would interleave their
/// draws and lose determinism. ([`Model::load`] goes through [`Model::new`] too.)
static MODEL_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A model: configuration, weights (a tch VarStore) and the active branch.
pub struct Model {
    config: ModelConfig,
    vs: tch::nn::VarStore,
    kind: Kind,
    input: Input,
    radial: Radial,
    backbone: Box<dyn Backbone>,
    branches: Vec<Branch>,
    active: usize,
    species_index: SpeciesIndex,
    /// Free-form metadata carried by the model file (units, provenance ...).
    pub metadata: BTreeMap<String, String>,
    /// The fast path, when enabled ([`Model::enable_fast`]); evaluations use it for energies,
    /// forces and virials. It is a snapshot of the weights: changing them disables it.
    fast: Option<crate::fast::FastModel>,
    /// `graph_attr` conditioning: the shared Linear (`graph_attr.concat`).
    cond: Option<tch::nn::Linear>,
    /// `graph_attr` conditioning by `film` or `fuse_pool`: the two Linear layers of its MLP
    /// (`graph_attr.film.{0,2}`, `graph_attr.pool.{0,2}`).
    cond_mlp: Option<[tch::nn::Linear; 2]>,
    /// The run-time values of the `graph_attr` attributes ([`Model::set_graph_attr`]).
    graph_attr: Option<Vec<f64>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Model {
    /// A freshly initialised model (weights from `seed`) in `kind` (Float or Double) on `device`.
    /// The weights are drawn on the CPU whatever the device: a GPU's random generator gives other
    /// numbers for the same seed, and a run on a GPU must start from the weights a CPU run of the
    /// same seed starts from (`benchmarks/gpu_check.sh` compares the two).
    pub fn new(config: ModelConfig, kind: Kind, device: Device, seed: i64) -> Result<Self> {
        if device == Device::Cpu {
            return Self::build(config, kind, device, seed);
        }
        let cpu = Self::build(config.clone(), kind, Device::Cpu, seed)?;
        let mut m = Self::build(config, kind, device, seed)?;
        m.vs.copy(&cpu.vs)?;
        Ok(m)
    }

    fn build(config: ModelConfig, kind: Kind, device: Device, seed: i64) -> Result<Self> {
        config.validate()?;
        if !matches!(kind, Kind::Float | Kind::Double) {
            return Err(Error::InvalidInput(format!(
                "model precision must be float32 or float64, got {kind:?}"
            )));
        }
        // Seeding libtorch's global generator and drawing the initial weights must not interleave
        // with another thread doing the same, or neither model is reproducible from its seed.
        let _init = MODEL_INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed);
        let mut vs = tch::nn::VarStore::new(device);
        let root = vs.root();
        let input = match &config.input {
            InputConfig::Embedding => Input::Embedding(tch::nn::embedding(
                &root / "embedding",
                config.species.len() as i64,
                config.hidden_dim,
                Default::default(),
            )),
            InputConfig::RawFeatures { features } => {
                let w = features[0].len() as i64;
                let flat: Vec<f64> = features.iter().flatten().copied().collect();
                Input::Raw(nn::tensor_from(
                    &flat,
                    &[features.len() as i64, w],
                    kind,
                    device,
                ))
            }
        };
        let radial = Radial::new(
            config.radial_type,
            config.envelope,
            config.radius,
            config.num_radial,
        );
        let backbone: Box<dyn Backbone> = match config.mpnn_type {
            MpnnType::SchNet => Box::new(schnet::SchNet::new(&root, &config)),
            MpnnType::PaiNN => Box::new(painn::PaiNN::new(&root, &config)),
            MpnnType::Egnn => Box::new(egnn::Egnn::new(&root, &config)),
            MpnnType::Pna => Box::new(pna::Pna::new(&root, &config)),
            MpnnType::PnaEq => Box::new(pnaeq::PnaEq::new(&root, &config)),
            MpnnType::DimeNet => Box::new(dimenet::DimeNet::new(&root, &config)),
            MpnnType::Mace => Box::new(mace::Mace::new(&root, &config)),
            MpnnType::Cgcnn => Box::new(cgcnn::Cgcnn::new(&root, &config)),
            MpnnType::Gat => Box::new(gat::Gat::new(&root, &config)),
            MpnnType::Gin => Box::new(gin::Gin::new(&root, &config)),
            MpnnType::Sage => Box::new(sage::Sage::new(&root, &config)),
            MpnnType::Mfc => Box::new(mfc::Mfc::new(&root, &config)),
        };
        let f = config.hidden_dim;
        let act = config.activation_function;
        let branches = config
            .branches
            .iter()
            .map(|b| {
                let p = &root / "branches" / b.name.as_str();
                let mut shared_dims = vec![f];
                shared_dims.extend(&b.shared_layers);
                let shared = shared_dims
                    .windows(2)
                    .enumerate()
                    .map(|(k, w)| {
                        tch::nn::linear(
                            &p / "shared" / k.to_string(),
                            w[0],
                            w[1],
                            Default::default(),
                        )
                    })
                    .collect();
                let heads: Vec<Head> = b
                    .output_heads
                    .iter()
                    .map(|h| {
                        let mut dims = vec![if h.pool_first {
                            *shared_dims.last().unwrap()
                        } else {
                            f
                        }];
                        dims.extend(&h.dim_headlayers);
                        dims.push(h.dim);
                        Head {
                            name: h.name.clone(),
                            kind: h.kind,
                            pooling: h.pooling,
                            pool_first: h.pool_first,
                            mlp: Mlp::new(&(&p / h.name.as_str()), &dims, act),
                        }
                    })
                    .collect();
                let e0 = if b.reference_energies.is_empty() {
                    vec![0.0; config.species.len()]
                } else {
                    b.reference_energies.clone()
                };
                Branch {
                    name: b.name.clone(),
                    energy: heads.iter().position(|h| h.name == "energy"),
                    heads,
                    e0: nn::tensor_from(&e0, &[e0.len() as i64], kind, device),
                    shared,
                }
            })
            .collect();
        let cond = config
            .graph_attr
            .as_ref()
            .filter(|g| g.mode == config::ConditioningMode::ConcatNode)
            .map(|g| {
                tch::nn::linear(
                    &root / "graph_attr" / "concat",
                    f + g.names.len() as i64,
                    f,
                    Default::default(),
                )
            });
        let cond_mlp = config
            .graph_attr
            .as_ref()
            .and_then(|g| conditioning_mlp(&(&root / "graph_attr"), g, f));
        if kind == Kind::Double {
            vs.double();
        } else {
            vs.float();
        }
        let species_index = SpeciesIndex::new(&config.species);
        Ok(Model {
            config,
            vs,
            kind,
            input,
            radial,
            backbone,
            branches,
            active: 0,
            species_index,
            metadata: BTreeMap::new(),
            fast: None,
            cond,
            cond_mlp,
            graph_attr: None,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    /// Float kind of the weights and computations.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Device of the weights.
    pub fn device(&self) -> Device {
        self.vs.device()
    }
    /// Cutoff radius (Å).
    pub fn cutoff(&self) -> f64 {
        self.config.radius
    }
    /// Number of message-passing layers.
    pub fn num_layers(&self) -> usize {
        self.config.num_conv_layers
    }
    /// Atomic numbers known to the model, in species-index order.
    pub fn species(&self) -> &[i32] {
        &self.config.species
    }
    /// The weights (for the trainer's optimiser and for saving).
    pub fn var_store(&self) -> &tch::nn::VarStore {
        &self.vs
    }
    /// Mutable weights (disables the fast path, whose tables would no longer match them).
    pub fn var_store_mut(&mut self) -> &mut tch::nn::VarStore {
        self.fast = None;
        &mut self.vs
    }
    /// Builds the fast path from the current weights ([`crate::fast`]): radial filters tabulated
    /// to relative tolerance `tol` (e.g. [`crate::fast::DEFAULT_TOLERANCE`]). Fails for
    /// backbones without one (EGNN); the exact path stays in use then.
    pub fn enable_fast(&mut self, tol: f64) -> Result<crate::fast::FastInfo> {
        let f = crate::fast::FastModel::build(self, tol)?;
        let info = f.info();
        self.fast = Some(f);
        Ok(info)
    }
    /// Returns to the exact (autograd) path.
    pub fn disable_fast(&mut self) {
        self.fast = None;
    }
    /// The fast path, if enabled.
    pub fn fast(&self) -> Option<&crate::fast::FastModel> {
        self.fast.as_ref()
    }
    /// The backbone (for layer-by-layer evaluation).
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }
    /// Names of the branches.
    pub fn branch_names(&self) -> Vec<String> {
        self.branches.iter().map(|b| b.name.clone()).collect()
    }
    /// Index of the active branch (the one used by [`Model::forward`] when none is given).
    pub fn active_branch(&self) -> usize {
        self.active
    }
    /// Selects the branch used for energies by name.
    pub fn set_branch(&mut self, name: &str) -> Result<()> {
        match self.branches.iter().position(|b| b.name == name) {
            Some(i) => {
                self.active = i;
                Ok(())
            }
            None => Err(Error::InvalidInput(format!(
                "model has no branch (head) named '{name}'; its branches are: {}",
                self.branch_names().join(", ")
            ))),
        }
    }

    /// Species index of every atomic number, or an error naming the atom and its element.
    pub fn species_indices(&self, numbers: &[i32]) -> Result<Vec<i64>> {
        self.species_index
            .indices(numbers)
            .map_err(|(index, z)| Error::UnknownSpecies {
                index,
                z,
                symbol: crate::elements::symbol(z).to_string(),
                known: self
                    .config
                    .species
                    .iter()
                    .map(|&z| crate::elements::symbol(z))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The species index of this model ([`Model::species_indices`] without the error message).
    pub fn species_index(&self) -> &SpeciesIndex {
        &self.species_index
    }

    /// Zeroes the last layer (weight and bias) of every output head of every branch, so that a
    /// fresh model predicts the reference energies alone (E = Σ e_Z, F = 0) and zero for its
    /// other outputs. The branches' shared layers are left as they are.
    pub fn zero_head_outputs(&mut self) {
        self.fast = None;
        let vars = self.vs.variables();
        tch::no_grad(|| {
            for b in &self.config.branches {
                for h in &b.output_heads {
                    let last = h.dim_headlayers.len();
                    for p in ["weight", "bias"] {
                        let name = format!("branches.{}.{}.{last}.{p}", b.name, h.name);
                        if let Some(v) = vars.get(&name) {
                            let _ = v.shallow_clone().zero_();
                        }
                    }
                }
            }
        });
    }

    /// The index of the branch that the parameter `name` (a [`Model::var_store`] name) belongs
    /// to, or None for the parameters every branch shares (input, backbone). A batch run
    /// through one branch gives no gradient to the other branches' parameters.
    pub fn parameter_branch(&self, name: &str) -> Option<usize> {
        let rest = name.strip_prefix("branches.")?;
        self.branches.iter().position(|b| {
            rest.strip_prefix(b.name.as_str())
                .is_some_and(|r| r.starts_with('.'))
        })
    }

    /// Per-edge geometry for `edge_vec` (E, 3), with the node conditioning on the structure's
    /// attributes when the model has one (zeros where [`Model::set_graph_attr`] was not called:
    /// the entry points refuse that first, [`Model::check_graph_attr`]).
    pub fn edges(&self, src: &Tensor, dst: &Tensor, edge_vec: &Tensor, n_nodes: i64) -> Edges {
        self.edges_paired(src, dst, edge_vec, n_nodes, None)
    }

    /// [`Model::edges`] with the edges' pairing: the radial geometry is computed once per pair
    /// and the backbones compute their radial filters once per pair ([`Edges::filter`]).
    pub fn edges_paired(
        &self,
        src: &Tensor,
        dst: &Tensor,
        edge_vec: &Tensor,
        n_nodes: i64,
        pairs: Option<&EdgePairs>,
    ) -> Edges {
        let mut e = Edges::with_pairs(src, dst, edge_vec, &self.radial, n_nodes, pairs);
        if let Some(lin) = &self.cond {
            e.condition = Some(nn::NodeCondition::Concat {
                weight: lin.ws.shallow_clone(),
                bias: lin.bs.as_ref().expect("Linear with bias").shallow_clone(),
                attr: self.graph_attr_tensor(),
            });
        }
        if let Some(c) = self.film_condition() {
            e.condition = Some(c);
        }
        e
    }

    /// An error when the backbone cannot evaluate a graph whose ghost atoms are separate rows
    /// (spatial decomposition: LAMMPS's layer-by-layer and ghost-atom paths): DimeNet's
    /// triplets reach two hops, and such a graph lacks the edges between ghosts.
    pub fn check_ghost_rows(&self) -> Result<()> {
        if self.backbone.needs_two_hop_edges() {
            return Err(Error::InvalidInput(format!(
                "mpnn_type {:?} cannot run on a graph with ghost atoms (spatial decomposition, LAMMPS): its triplet \
                 messages k -> j -> i reach two cutoffs and need the edges between ghost atoms, which such a graph does \
                 not carry; evaluate whole structures (C ABI hgnn_compute, the ASE calculator)",
                self.config.mpnn_type
            )));
        }
        Ok(())
    }

    /// The names of the per-structure attributes the model is conditioned on (e.g. charge,
    /// spin); empty when it has none.
    pub fn graph_attr_names(&self) -> &[String] {
        self.config
            .graph_attr
            .as_ref()
            .map_or(&[], |g| g.names.as_slice())
    }

    /// The current values of the per-structure attributes (None until set).
    pub fn graph_attr(&self) -> Option<&[f64]> {
        self.graph_attr.as_deref()
    }

    /// Sets the per-structure attributes (in [`Model::graph_attr_names`] order) used by every
    /// evaluation that follows, for every structure of a batch.
    pub fn set_graph_attr(&mut self, values: &[f64]) -> Result<()> {
        let names = self.graph_attr_names();
        if names.is_empty() {
            return Err(Error::InvalidInput(
                "this model is not conditioned on per-structure attributes (charge, spin): it takes none".into(),
            ));
        }
        if values.len() != names.len() {
            return Err(Error::InvalidInput(format!(
                "the model is conditioned on {} per-structure attributes ({}), got {} values",
                names.len(),
                names.join(", "),
                values.len()
            )));
        }
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "per-structure attribute '{}' is {}: it must be finite",
                names[k], values[k]
            )));
        }
        self.graph_attr = Some(values.to_vec());
        Ok(())
    }

    /// An error when the model is conditioned on per-structure attributes that were not set.
    pub fn check_graph_attr(&self) -> Result<()> {
        let names = self.graph_attr_names();
        if !names.is_empty() && self.graph_attr.is_none() {
            return Err(Error::InvalidInput(format!(
                "the model is conditioned on the structure's {} and they were not given \
                 (C ABI hgnn_model_set_graph_attr, ASE atoms.info[...], LAMMPS pair_style hydragnn {})",
                names.join(" and "),
                names.iter().map(|n| format!("{n} VALUE")).collect::<Vec<_>>().join(" ")
            )));
        }
        Ok(())
    }

    /// The run-time attributes as a tensor (d,) (zeros until set; evaluations refuse to run
    /// then, [`Model::check_graph_attr`]).
    fn graph_attr_tensor(&self) -> Tensor {
        let d = self.graph_attr_names().len();
        let v = self.graph_attr.clone().unwrap_or_else(|| vec![0.0; d]);
        nn::tensor_from(&v, &[d as i64], self.kind, self.vs.device())
    }

    /// `film` conditioning: the per-structure scale 1 + tanh σ and shift τ of the node features
    /// (None for the other modes).
    fn film_condition(&self) -> Option<nn::NodeCondition> {
        let g = self.config.graph_attr.as_ref()?;
        if g.mode != config::ConditioningMode::Film {
            return None;
        }
        let [l0, l2] = self.cond_mlp.as_ref()?;
        let a = self.graph_attr_tensor().unsqueeze(0);
        let st = nn::act(self.config.activation_function, &a.apply(l0))
            .apply(l2)
            .squeeze_dim(0);
        let f = self.config.hidden_dim;
        Some(nn::NodeCondition::Film {
            scale: st.narrow(0, 0, f).tanh() + 1.0,
            shift: st.narrow(0, f, f),
        })
    }

    /// `fuse_pool` conditioning of pooled features x (n_graphs, F): W₂ act(W₁ [x, a] + b₁) + b₂;
    /// x itself for the other modes and for models without conditioning.
    pub(crate) fn condition_pooled(&self, x: &Tensor) -> Tensor {
        let fuse = self
            .config
            .graph_attr
            .as_ref()
            .is_some_and(|g| g.mode == config::ConditioningMode::FusePool);
        match (&self.cond_mlp, fuse) {
            (Some([l0, l2]), true) => {
                let n = x.size()[0];
                let a = self.graph_attr_tensor().to_kind(x.kind());
                let a = a.unsqueeze(0).expand([n, -1], false);
                nn::act(
                    self.config.activation_function,
                    &Tensor::cat(&[x, &a], -1).apply(l0),
                )
                .apply(l2)
            }
            _ => x.shallow_clone(),
        }
    }

    /// Input features (n, input_dim) of the given species indices.
    pub fn input_features(&self, species: &Tensor) -> Tensor {
        match &self.input {
            Input::Embedding(e) => species.apply(e),
            Input::Raw(t) => t.index_select(0, species),
        }
    }

    /// Runs every layer: the final node state.
    pub fn propagate(&self, g: &GraphTensors) -> State {
        let n = g.species.size()[0];
        let mut e = self.edges_paired(&g.src, &g.dst, &g.edge_vec, n, g.pairs.as_ref());
        e.initial_state = true;
        let mut st = self.backbone.init_state(&self.input_features(&g.species));
        for l in 0..self.num_layers() {
            st = self.backbone.layer(l, &st, &e);
        }
        st
    }

    /// Per-atom energies (n,) of branch `branch` from final scalar node features (n, F). An
    /// error for a graph-level energy ([`Model::energy_is_pooled`]).
    pub fn node_energy(&self, branch: usize, s: &Tensor, species: &Tensor) -> Result<Tensor> {
        let b = &self.branches[branch];
        let h = b.energy.ok_or_else(|| {
            Error::InvalidInput(format!("branch '{}' has no 'energy' head", b.name))
        })?;
        if b.heads[h].pool_first {
            return Err(per_atom_energy_undefined(&b.name));
        }
        let (s, extra) = self.split_final(branch, s, species);
        Ok(b.heads[h].mlp.forward(&s).squeeze_dim(-1) + extra)
    }

    /// The final features the heads of branch `branch` read and the per-node energy added to
    /// its energy head (n,): the reference energies and, for MACE, the readouts of the earlier
    /// layers, which MACE carries in its state next to the features ([`mace`]).
    pub(crate) fn split_final(
        &self,
        branch: usize,
        s: &Tensor,
        species: &Tensor,
    ) -> (Tensor, Tensor) {
        let e0 = self.branches[branch].e0.index_select(0, species);
        if self.config.mpnn_type == MpnnType::Mace {
            let h = self.config.hidden_dim;
            (s.narrow(1, 0, h), e0 + s.select(1, h + branch as i64))
        } else {
            (s.shallow_clone(), e0)
        }
    }

    /// Whether the energy of branch `branch` (None: the active one) is graph-level: an energy
    /// head with `pool_first` (HydraGNN's graph heads), E = MLP(shared(Σ_i s_i)) + Σ_i E0(Z_i).
    /// Such an energy is not a sum of per-atom terms: per-atom energies are not defined, and a
    /// spatial decomposition must all-reduce the pooled features ([`Model::head_partials`]).
    pub fn energy_is_pooled(&self, branch: Option<usize>) -> bool {
        self.branches
            .get(branch.unwrap_or(self.active))
            .and_then(|b| b.energy.map(|h| b.heads[h].pool_first))
            .unwrap_or(false)
    }

    /// The graph-level energy (n_graphs,) of branch `branch` (whose energy head pools first)
    /// from final scalar features `s` (n, F): the features of the nodes where `mask` (n,) is 1
    /// (all nodes without one) are summed per graph, then go through the branch's shared layers
    /// and the energy MLP; the reference energies of those nodes are added.
    pub fn pooled_energy(
        &self,
        branch: usize,
        s: &Tensor,
        g: &GraphTensors,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let b = &self.branches[branch];
        let h = b.energy.ok_or_else(|| {
            Error::InvalidInput(format!("branch '{}' has no 'energy' head", b.name))
        })?;
        let (s, e0) = self.split_final(branch, s, &g.species);
        let (s, e0) = match mask {
            Some(m) => (s * m.unsqueeze(-1), e0 * m),
            None => (s.shallow_clone(), e0),
        };
        let x = Tensor::zeros([g.n_graphs, s.size()[1]], (s.kind(), s.device()))
            .index_add(0, &g.batch, &s);
        let e0 = Tensor::zeros([g.n_graphs], (s.kind(), s.device())).index_add(0, &g.batch, &e0);
        Ok(self.energy_of_pooled(b, h, &x) + e0)
    }

    /// The graph-level energy head `h` of branch `b` on pooled features `x` (n_graphs, F):
    /// shared layers, then the head MLP; (n_graphs,), without reference energies.
    fn energy_of_pooled(&self, b: &Branch, h: usize, x: &Tensor) -> Tensor {
        let mut x = self.condition_pooled(x);
        for l in &b.shared {
            x = nn::act(self.config.activation_function, &x.apply(l));
        }
        b.heads[h].mlp.forward(&x).squeeze_dim(-1)
    }

    /// Every head of branch `branch` (None: the active one): energies and other properties.
    pub fn heads(&self, branch: Option<usize>, s: &Tensor, g: &GraphTensors) -> Result<Outputs> {
        let bi = branch.unwrap_or(self.active);
        let b = self
            .branches
            .get(bi)
            .ok_or_else(|| Error::InvalidInput(format!("no branch {bi}")))?;
        let pooled = self.energy_is_pooled(Some(bi));
        let s_full = s;
        let (s, _) = self.split_final(bi, s_full, &g.species);
        let s = &s;
        let mut node_energy = if pooled {
            Tensor::zeros([s.size()[0]], (s.kind(), s.device()))
        } else {
            self.node_energy(bi, s_full, &g.species)?
        };
        if let Some(z) = &self.config.zbl {
            let zbl = crate::zbl::node_energies(
                z,
                &self.config.species,
                &g.species,
                &g.src,
                &g.dst,
                &g.edge_vec,
            )?;
            node_energy += zbl;
        }
        let pool = |x: &Tensor, pooling: Pooling| {
            let mut shape = x.size();
            shape[0] = g.n_graphs;
            let zeros = || Tensor::zeros(shape.as_slice(), (x.kind(), x.device()));
            match pooling {
                Pooling::Max => {
                    // One masked max per graph (libtorch's segment max is still beta); an empty
                    // graph gets 0.
                    let mut mask_shape = vec![x.size()[0]];
                    mask_shape.resize(x.dim(), 1);
                    let neg = x.full_like(f64::NEG_INFINITY);
                    let rows: Vec<Tensor> = (0..g.n_graphs)
                        .map(|k| {
                            let m = x
                                .where_self(&g.batch.eq(k).view(mask_shape.as_slice()), &neg)
                                .amax(0, false);
                            m.where_scalarother(&m.isinf().logical_not(), 0.0)
                        })
                        .collect();
                    Tensor::stack(&rows, 0)
                }
                Pooling::Sum => zeros().index_add(0, &g.batch, x),
                Pooling::Mean => {
                    let sum = zeros().index_add(0, &g.batch, x);
                    let ones = Tensor::ones([x.size()[0]], (x.kind(), x.device()));
                    let count = Tensor::zeros([g.n_graphs], (x.kind(), x.device()))
                        .index_add(0, &g.batch, &ones)
                        .clamp_min(1.0);
                    sum / count.unsqueeze(-1)
                }
            }
        };
        let energy = if pooled {
            self.pooled_energy(bi, s_full, g, None)?
        } else {
            pool(&node_energy, Pooling::Sum)
        };
        let (mut graph_properties, mut node_properties) = (BTreeMap::new(), BTreeMap::new());
        for (k, h) in b.heads.iter().enumerate() {
            if Some(k) == b.energy {
                continue;
            }
            match h.kind {
                HeadKind::Node => node_properties.insert(h.name.clone(), h.mlp.forward(s)),
                HeadKind::Graph if h.pool_first => {
                    let mut x = self.condition_pooled(&pool(s, h.pooling));
                    for l in &b.shared {
                        x = nn::act(self.config.activation_function, &x.apply(l));
                    }
                    graph_properties.insert(h.name.clone(), h.mlp.forward(&x))
                }
                HeadKind::Graph => {
                    graph_properties.insert(h.name.clone(), pool(&h.mlp.forward(s), h.pooling))
                }
            };
        }
        Ok(Outputs {
            node_energy,
            energy,
            graph_properties,
            node_properties,
        })
    }

    /// Full differentiable forward pass for branch `branch` (None: the active one).
    pub fn forward(&self, g: &GraphTensors, branch: Option<usize>) -> Result<Outputs> {
        self.check_graph_attr()?;
        let st = self.propagate(g);
        self.heads(branch, &st.s, g)
    }
}

/// The MLP of `film` (`film.0`: d → max(F, d), `film.2`: → 2F) or `fuse_pool` (`pool.0`:
/// F + d → F, `pool.2`: F → F) conditioning under `p`; None for `concat_node`.
fn conditioning_mlp(
    p: &tch::nn::Path,
    g: &config::GraphAttrConfig,
    f: i64,
) -> Option<[tch::nn::Linear; 2]> {
    let d = g.names.len() as i64;
    let (name, dims) = match g.mode {
        config::ConditioningMode::ConcatNode => return None,
        config::ConditioningMode::Film => ("film", [d, f.max(d), 2 * f]),
        config::ConditioningMode::FusePool => ("pool", [f + d, f, f]),
    };
    let p = p / name;
    Some([
        tch::nn::linear(&p / "0", dims[0], dims[1], Default::default()),
        tch::nn::linear(&p / "2", dims[1], dims[2], Default::default()),
    ])
}

/// The error for per-atom energies of a branch whose energy is graph-level.
pub(crate) fn per_atom_energy_undefined(branch: &str) -> Error {
    Error::InvalidInput(format!(
        "per-atom energies are not defined for this model: the energy head of branch '{branch}' is graph-level \
         (node features summed, then an MLP: HydraGNN's graph heads), so the energy is not a sum of per-atom terms; \
         request the total energy, forces and virial (and per-atom virials) only"
    ))
}

#[cfg(test)]
mod tests {
    use super::config::{BranchConfig, HeadConfig, HeadKind, ModelConfig, MpnnType, Pooling};
    use super::*;

    fn two_branch_model() -> Model {
        let mut c = ModelConfig::small(MpnnType::SchNet, vec![1, 8], 3.0);
        c.branches.push(BranchConfig::new(
            "water",
            vec![
                HeadConfig::energy(vec![8, 4]),
                HeadConfig::new("gap", HeadKind::Graph, 2, vec![8], Pooling::Mean),
            ],
            vec![-1.0, -2.0],
        ));
        Model::new(c, Kind::Double, Device::Cpu, 7).unwrap()
    }

    #[test]
    fn parameter_branch_names_the_owning_branch() {
        let m = two_branch_model();
        for name in m.var_store().variables().keys() {
            let b = m.parameter_branch(name);
            if let Some(rest) = name.strip_prefix("branches.") {
                let owner = if rest.starts_with("default.") { 0 } else { 1 };
                assert_eq!(b, Some(owner), "{name}");
            } else {
                assert_eq!(b, None, "{name}");
            }
        }
        assert_eq!(m.parameter_branch("branches.waterfall.energy.0.bias"), None);
    }

    #[test]
    fn zero_head_outputs_zeroes_exactly_the_last_head_layers() {
        let mut m = two_branch_model();
        let before: BTreeMap<String, Tensor> = m
            .var_store()
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        m.zero_head_outputs();
        let last = [
            "branches.default.energy.1.",
            "branches.water.energy.2.",
            "branches.water.gap.1.",
        ];
        for (name, t) in m.var_store().variables() {
            let zeroed = last.iter().any(|p| name.starts_with(p));
            if zeroed {
                assert_eq!(t.abs().sum(Kind::Double).double_value(&[]), 0.0, "{name}");
            } else {
                assert!(t.equal(&before[&name]), "{name} changed");
            }
        }
    }
}
