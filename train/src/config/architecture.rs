//! The `NeuralNetwork.Architecture` section: the model and the loss weights of energies and
//! forces.

use mlip::model::config::{Activation, MpnnType, RadialType};
use serde::{Deserialize, Serialize};

use super::{enabled, TrainConfig};
use crate::error::Result;

/// `NeuralNetwork.Architecture`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Message-passing backbone: `SchNet`, `PAINN`, `EGNN`, `PNA`, `PNAPlus`, `PNAEq` or
    /// `DimeNet` (DimeNet++ with the keys below). `PNAPlus` reads as `PNA` with
    /// [`Architecture::pna_plus`] set.
    pub mpnn_type: MpnnType,
    /// Set when `mpnn_type` is HydraGNN's `PNAPlus`: PNA whose messages are gated by a Bessel
    /// basis of the pair distance with DimeNet's envelope (`num_radial` functions, exponent
    /// `envelope_exponent`, default 5; the engine's `pna.bessel_rbf`). Not a key of its own.
    #[serde(
        skip_deserializing,
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pna_plus: bool,
    /// Cutoff radius (Angstrom).
    pub radius: f64,
    /// Width of node features.
    pub hidden_dim: i64,
    /// Number of message-passing layers.
    pub num_conv_layers: usize,
    /// Number of radial basis functions (HydraGNN's SchNet calls it `num_gaussians`).
    #[serde(default = "default_num_radial", alias = "num_gaussians")]
    pub num_radial: i64,
    /// Extension: radial basis, `gaussian` or `bessel` (default: gaussian for SchNet, bessel for PaiNN).
    #[serde(default)]
    pub radial_type: Option<RadialType>,
    /// Order p of the polynomial cutoff envelope (default 6).
    #[serde(default)]
    pub envelope_exponent: Option<i32>,
    /// Non-linearity: `silu` (default), `ssp`, `tanh`, `relu`.
    #[serde(default)]
    pub activation_function: Activation,
    /// When false, every structure is treated as non-periodic.
    #[serde(default = "enabled")]
    pub periodic_boundary_conditions: bool,
    /// Hidden layers of the output heads, by head type.
    #[serde(default)]
    pub output_heads: OutputHeads,
    /// Pooling of graph outputs other than the energy (always summed): `mean` (default) or `sum`.
    #[serde(default = "default_graph_pooling")]
    pub graph_pooling: String,
    /// Loss weight of each output of `Variables_of_interest.output_names` (default 1 each). With
    /// `compute_grad_energy` the energy's terms are weighted by the three weights below instead.
    #[serde(default)]
    pub task_weights: Option<Vec<f64>>,
    /// Extension: start every output head's last layer at zero (default true), so that training
    /// starts from the reference energies (E = Σ e_Z, F = 0) instead of the large random
    /// energies of a fresh message-passing stack; the first steps then fit the residual.
    #[serde(default = "enabled")]
    pub zero_init_heads: bool,
    /// HydraGNN's `freeze_conv_layers`: keep the shared input and message-passing weights fixed
    /// (with `Training.init_from`: train only the heads). Default false.
    #[serde(default)]
    pub freeze_conv_layers: bool,
    /// Weight of the total-energy term (default 1).
    #[serde(default = "default_energy_weight")]
    pub energy_weight: f64,
    /// Weight of the energy-per-atom term (default 0).
    #[serde(default)]
    pub energy_peratom_weight: f64,
    /// Weight of the force term (default 100; used with `compute_grad_energy`).
    #[serde(default = "default_force_weight")]
    pub force_weight: f64,
    /// Weight of the stress term (default 0 = off; used with `compute_grad_energy`): the MSE (or
    /// MAE) per stress component in eV/Angstrom^3, over periodic frames with a stress label.
    #[serde(default)]
    pub stress_weight: f64,
    /// PNA only (HydraGNN's key): 1 (default) gives every message an encoding of the pair
    /// distance (`edge_features: ["lengths"]` upstream), 0 none. With 0 the energy does not
    /// depend on the positions, so `compute_grad_energy` refuses it.
    #[serde(default)]
    pub edge_dim: Option<i64>,
    /// PNA and PNAEq (HydraGNN's key): the degree histogram of the training graphs, entry k the
    /// number of atoms with k neighbours. When absent the trainer computes it from the training
    /// split (the first 64 graphs of every dataset, the sample of `avg_num_neighbors`), so
    /// every rank gets the same numbers; either way the model file stores the two averages
    /// derived from it (`pna.avg_deg_lin`, `pna.avg_deg_log`).
    #[serde(default)]
    pub pna_deg: Option<Vec<f64>>,
    /// Extension: the ZBL core repulsion of the model (mlip's `zbl`): `true` (default) switches
    /// it off between 0.9 and 0.45 times the shortest interatomic distance of the trainset (so it
    /// is zero on every training pair and only acts closer), `{"inner": r1, "outer": r2}` (Å)
    /// sets the radii, `false` leaves it out.
    #[serde(default)]
    pub zbl: ZblSetting,
    /// DimeNet only (HydraGNN's key): width of the bases' projection in the interaction block
    /// (default 8, PyG's DimeNet++).
    #[serde(default)]
    pub basis_emb_size: Option<i64>,
    /// DimeNet only: width of the triplet interaction (default 64).
    #[serde(default)]
    pub int_emb_size: Option<i64>,
    /// DimeNet only: width of the output block's hidden layer (default 2 × `hidden_dim`).
    #[serde(default)]
    pub out_emb_size: Option<i64>,
    /// DimeNet only: angular orders of the spherical basis, 1..=7 (default 7).
    #[serde(default)]
    pub num_spherical: Option<i64>,
    /// DimeNet only: residual layers before the skip connection (default 1).
    #[serde(default)]
    pub num_before_skip: Option<usize>,
    /// DimeNet only: residual layers after it (default 2).
    #[serde(default)]
    pub num_after_skip: Option<usize>,
}

impl Architecture {
    /// The DimeNet++ options from the keys above with their defaults (`envelope_exponent`
    /// default 5, DimeNet's).
    pub fn dimenet_options(&self) -> mlip::model::config::DimeNetOptions {
        mlip::model::config::DimeNetOptions {
            basis_emb_size: self.basis_emb_size.unwrap_or(8),
            int_emb_size: self.int_emb_size.unwrap_or(64),
            out_emb_size: self.out_emb_size.unwrap_or(2 * self.hidden_dim),
            num_spherical: self.num_spherical.unwrap_or(7),
            num_before_skip: self.num_before_skip.unwrap_or(1),
            num_after_skip: self.num_after_skip.unwrap_or(2),
            envelope_exponent: self.envelope_exponent.map_or(5, i64::from),
            // HydraGNN's edge_dim (edge_attr = |r_ij|) is for imported checkpoints
            edge_dim: 0,
        }
    }
}

/// `NeuralNetwork.Architecture.zbl`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ZblSetting {
    /// `true`: radii from the training data; `false`: none.
    Auto(bool),
    /// Explicit radii.
    Radii(mlip::zbl::ZblConfig),
}

impl Default for ZblSetting {
    fn default() -> Self {
        ZblSetting::Auto(true)
    }
}

impl<'de> Deserialize<'de> for ZblSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Bool(b) => Ok(ZblSetting::Auto(b)),
            serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(ZblSetting::Radii)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected true, false or {{\"inner\": r1, \"outer\": r2}} (Angstrom), got {other}"
            ))),
        }
    }
}

impl ZblSetting {
    /// The model's repulsion for a trainset whose shortest interatomic distance is `d_min`
    /// (None: no pair within the cutoff) and a model cutoff `radius`.
    pub fn resolve(&self, d_min: Option<f64>, radius: f64) -> Option<mlip::zbl::ZblConfig> {
        match *self {
            ZblSetting::Auto(false) => None,
            ZblSetting::Radii(z) => Some(z),
            ZblSetting::Auto(true) => d_min.map(|d| {
                let outer = (0.9 * d).min(radius);
                mlip::zbl::ZblConfig {
                    inner: 0.5 * outer,
                    outer,
                }
            }),
        }
    }
}

/// `NeuralNetwork.Architecture.output_heads`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputHeads {
    /// Hidden layers of graph-level heads.
    #[serde(default)]
    pub graph: Option<HeadLayers>,
    /// Hidden layers of node-level heads.
    #[serde(default)]
    pub node: Option<HeadLayers>,
}

/// Hidden layers of one head type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadLayers {
    /// Number of hidden layers (must equal the length of `dim_headlayers`).
    pub num_headlayers: usize,
    /// Their widths.
    pub dim_headlayers: Vec<i64>,
}

/// `num_radial`: radial basis functions.
fn default_num_radial() -> i64 {
    20
}
/// `graph_pooling`: graph outputs other than the energy are intensive by default.
fn default_graph_pooling() -> String {
    "mean".into()
}
/// `energy_weight`: weight of the total-energy loss term.
fn default_energy_weight() -> f64 {
    1.0
}
/// `force_weight`: weight of the force loss term.
fn default_force_weight() -> f64 {
    100.0
}

impl TrainConfig {
    /// `NeuralNetwork.Architecture`: sizes, envelope, pooling, head layers, loss weights.
    pub(super) fn validate_architecture(&self) -> Result<()> {
        let a = self.arch();
        let arch = "NeuralNetwork.Architecture";
        if !(a.radius.is_finite() && a.radius > 0.0) {
            return self.err(
                &format!("{arch}.radius"),
                format!("must be a positive number, got {}", a.radius),
            );
        }
        if a.hidden_dim < 1 {
            return self.err(
                &format!("{arch}.hidden_dim"),
                format!("must be >= 1, got {}", a.hidden_dim),
            );
        }
        if a.num_conv_layers < 1 {
            return self.err(&format!("{arch}.num_conv_layers"), "must be >= 1");
        }
        if let ZblSetting::Radii(z) = &a.zbl {
            if let Err(e) = z.validate(a.radius) {
                return self.err(&format!("{arch}.zbl"), e.to_string());
            }
        }
        if a.num_radial < 1 {
            return self.err(
                &format!("{arch}.num_radial"),
                format!("must be >= 1, got {}", a.num_radial),
            );
        }
        if let Some(p) = a.envelope_exponent {
            if p < 2 {
                return self.err(
                    &format!("{arch}.envelope_exponent"),
                    format!("must be >= 2, got {p}"),
                );
            }
        }
        if a.graph_pooling != "mean" && a.graph_pooling != "sum" {
            return self.err(
                &format!("{arch}.graph_pooling"),
                format!("'{}': use \"mean\" or \"sum\"", a.graph_pooling),
            );
        }
        for (name, h) in [
            ("graph", &a.output_heads.graph),
            ("node", &a.output_heads.node),
        ] {
            if let Some(h) = h {
                if h.num_headlayers != h.dim_headlayers.len() {
                    return self.err(
                        &format!("{arch}.output_heads.{name}.num_headlayers"),
                        format!(
                            "is {} but dim_headlayers lists {} widths",
                            h.num_headlayers,
                            h.dim_headlayers.len()
                        ),
                    );
                }
                if let Some(k) = h.dim_headlayers.iter().position(|&d| d < 1) {
                    return self.err(
                        &format!("{arch}.output_heads.{name}.dim_headlayers[{k}]"),
                        "must be >= 1",
                    );
                }
            }
        }
        let pna = matches!(a.mpnn_type, MpnnType::Pna | MpnnType::PnaEq);
        if a.mpnn_type == MpnnType::DimeNet {
            let o = a.dimenet_options();
            for (key, v) in [
                ("basis_emb_size", o.basis_emb_size),
                ("int_emb_size", o.int_emb_size),
                ("out_emb_size", o.out_emb_size),
            ] {
                if v < 1 {
                    return self.err(&format!("{arch}.{key}"), format!("must be >= 1, got {v}"));
                }
            }
            if !(1..=7).contains(&o.num_spherical) {
                return self.err(
                    &format!("{arch}.num_spherical"),
                    format!("must be in 1..=7, got {}", o.num_spherical),
                );
            }
            if a.num_radial > 64 {
                return self.err(
                    &format!("{arch}.num_radial"),
                    format!("DimeNet takes at most 64, got {}", a.num_radial),
                );
            }
        } else {
            for (key, set) in [
                ("basis_emb_size", a.basis_emb_size.is_some()),
                ("int_emb_size", a.int_emb_size.is_some()),
                ("out_emb_size", a.out_emb_size.is_some()),
                ("num_spherical", a.num_spherical.is_some()),
                ("num_before_skip", a.num_before_skip.is_some()),
                ("num_after_skip", a.num_after_skip.is_some()),
            ] {
                if set {
                    return self.err(
                        &format!("{arch}.{key}"),
                        "is read by mpnn_type 'DimeNet' only",
                    );
                }
            }
        }
        if a.pna_plus && a.edge_dim.is_some_and(|d| d != 0) {
            return self.err(
                &format!("{arch}.edge_dim"),
                "PNAPlus reads the pair distance through its Bessel basis: leave edge_dim out (or 0)",
            );
        }
        if let Some(d) = a.edge_dim.filter(|_| !a.pna_plus) {
            if a.mpnn_type != MpnnType::Pna {
                if d != 0 {
                    return self.err(
                        &format!("{arch}.edge_dim"),
                        format!("is {d} but only mpnn_type 'PNA' reads edge features"),
                    );
                }
            } else if d != 0 && d != 1 {
                return self.err(
                    &format!("{arch}.edge_dim"),
                    format!("must be 0 or 1 (the pair distance), got {d}"),
                );
            } else if d == 0 && self.training().compute_grad_energy {
                return self.err(
                    &format!("{arch}.edge_dim"),
                    "is 0, so PNA's energy does not depend on the positions and its forces are \
                     zero; use 1 (the pair distance) with Training.compute_grad_energy",
                );
            }
        }
        if let Some(h) = &a.pna_deg {
            if !pna {
                return self.err(
                    &format!("{arch}.pna_deg"),
                    "is read by mpnn_type 'PNA' and 'PNAEq' only",
                );
            }
            if let Some(k) = h.iter().position(|c| !(c.is_finite() && *c >= 0.0)) {
                return self.err(
                    &format!("{arch}.pna_deg[{k}]"),
                    format!("must be a count >= 0, got {}", h[k]),
                );
            }
            if Architecture::pna_degree_averages(h).is_none() {
                return self.err(
                    &format!("{arch}.pna_deg"),
                    format!("{h:?} has no atom with a neighbour (the mean degree must be > 0)"),
                );
            }
        }
        for (key, w) in [
            ("energy_weight", a.energy_weight),
            ("energy_peratom_weight", a.energy_peratom_weight),
            ("force_weight", a.force_weight),
            ("stress_weight", a.stress_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return self.err(
                    &format!("{arch}.{key}"),
                    format!("must be a finite number >= 0, got {w}"),
                );
            }
        }

        Ok(())
    }
}

impl Architecture {
    /// PNA's degree averages (δ_lin, δ_log) = (mean degree, mean log(degree + 1)) of a degree
    /// histogram (entry k: atoms with k neighbours), as PyG's `PNAConv` derives them from
    /// HydraGNN's `pna_deg`; None when the histogram is empty or has no atom with a neighbour.
    pub fn pna_degree_averages(hist: &[f64]) -> Option<(f64, f64)> {
        let total: f64 = hist.iter().sum();
        let lin: f64 = hist.iter().enumerate().map(|(k, c)| k as f64 * c).sum();
        let log: f64 = hist
            .iter()
            .enumerate()
            .map(|(k, c)| (k as f64 + 1.0).ln() * c)
            .sum();
        (total > 0.0 && lin > 0.0).then(|| (lin / total, log / total))
    }
}
