//! Planning a run before anything is written: every dataset checked against the config (every
//! error names the config key and the dataset), the model's architecture derived from them, and
//! the batches of each epoch.

use mlip::model::config::{
    BranchConfig, Envelope, HeadConfig, HeadKind, ModelConfig, MpnnType, Pooling, RadialType,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::config::{Architecture, BatchMixing, Sampling, SamplingMode, TrainConfig};
use crate::data::{Dataset, DatasetMeta};
use crate::error::{Error, Result};
use crate::graphs::GraphSpec;
use crate::metrics::{BranchSpec, PropSpec};

/// Checks every dataset against the config and derives the model architecture. Nothing is
/// written; every error names the config key and the dataset.
pub fn plan_model(cfg: &TrainConfig) -> Result<(ModelConfig, Vec<(DatasetMeta, BranchSpec)>)> {
    let metas = (0..cfg.config.dataset.datasets.len())
        .map(|i| plan_branch(cfg, i))
        .collect::<Result<Vec<_>>>()?;
    // Fine-tuning: the model file's species (which must cover the datasets' elements) and
    // neighbour normalisation, so that its weights mean the same here.
    let base = super::finetune::load_base(cfg, tch::Kind::Float, tch::Device::Cpu)?;
    let species = match &base {
        Some(b) => {
            let have = b.species();
            for (m, s) in &metas {
                if let Some(z) = m.elements.iter().find(|z| !have.contains(z)) {
                    return Err(Error::config(
                        &cfg.path,
                        super::finetune::INIT_KEY,
                        format!(
                            "dataset '{}' has element Z={z}, which the model file does not know (its species: {have:?})",
                            s.name
                        ),
                    ));
                }
            }
            Some(have.to_vec())
        }
        None => None,
    };
    let mut mc = model_config(cfg, &metas, species);
    let a = cfg.arch();
    let gs = GraphSpec::new(a.radius, &mc.species, !a.periodic_boundary_conditions);
    if let Some(n) = base.as_ref().and_then(|b| b.config().avg_num_neighbors) {
        mc.avg_num_neighbors = Some(n);
    } else if matches!(
        a.mpnn_type,
        MpnnType::PaiNN | MpnnType::Egnn | MpnnType::DimeNet
    ) {
        // Without it PaiNN overflows and EGNN's forces vanish in dense solids (see mlip's
        // `ModelConfig::avg_num_neighbors`). SchNet trains as it is and keeps its plain sums.
        let h = degree_histogram(cfg, &gs)?;
        let lin = Architecture::pna_degree_averages(&h).map_or(0.0, |(lin, _)| lin);
        mc.avg_num_neighbors = Some((lin.max(1.0) * 100.0).round() / 100.0);
    }
    if matches!(a.mpnn_type, MpnnType::Pna | MpnnType::PnaEq) {
        // PNA's degree scalers: the model file's averages when fine-tuning (its weights were
        // trained with them), else the config's `pna_deg`, else the training graphs'.
        let from_base = base
            .as_ref()
            .map(|b| &b.config().pna)
            .filter(|p| p.avg_deg_lin > 0.0)
            .map(|p| (p.avg_deg_lin, p.avg_deg_log));
        let (lin, log) = match (from_base, &a.pna_deg) {
            (Some(avg), _) => avg,
            (None, Some(h)) => Architecture::pna_degree_averages(h).expect("validated"),
            (None, None) => {
                let h = degree_histogram(cfg, &gs)?;
                Architecture::pna_degree_averages(&h).ok_or_else(|| {
                    Error::config(
                        &cfg.path,
                        "NeuralNetwork.Architecture.radius",
                        format!(
                            "is {} Angstrom, and no atom of the training graphs has a neighbour \
                             within it: PNA's degree scalers need a mean degree > 0",
                            a.radius
                        ),
                    )
                })?
            }
        };
        mc.pna.avg_deg_lin = lin;
        mc.pna.avg_deg_log = log;
        if a.pna_plus {
            // HydraGNN's PNAPlus: the distance enters through the Bessel basis only.
            mc.pna.edge_dim = 0;
            mc.pna.bessel_rbf = true;
            mc.pna.envelope_exponent = a.envelope_exponent.map_or(5, i64::from);
        } else if a.mpnn_type == MpnnType::Pna {
            mc.pna.edge_dim = a.edge_dim.unwrap_or(1);
        }
        // HydraGNN applies `activation_function` after every PNA layer; PNA's layers are
        // otherwise linear maps of the aggregates.
        mc.post_conv_activation = Some(a.activation_function);
    }
    if a.mpnn_type == MpnnType::DimeNet {
        // HydraGNN's DimeNet: its own Bessel basis and envelope, SiLU inside the blocks, the
        // configured activation after every layer.
        mc.dimenet = a.dimenet_options();
        mc.radial_type = RadialType::Bessel;
        mc.envelope = Envelope::Polynomial {
            p: mc.dimenet.envelope_exponent as i32 + 1,
        };
        mc.conv_activation = Some(mlip::model::config::Activation::Silu);
        mc.post_conv_activation = Some(a.activation_function);
    }
    if a.mpnn_type == MpnnType::Egnn {
        // The distance as one raw input gives a model whose forces training cannot move (see
        // mlip's `EgnnOptions::edge_rbf`); the config's radial basis resolves it.
        mc.egnn.edge_rbf = true;
    }
    mc.validate()?;
    Ok((mc, metas))
}

/// The degree histogram (entry k: atoms with k neighbours within the cutoff) of the first (at
/// most) 64 training graphs of every dataset: deterministic, whatever the number of ranks, so
/// every rank derives the same model and a resumed run rebuilds it. `avg_num_neighbors` (its
/// mean, edges / atoms, to 0.01) and PNA's degree averages come from it.
fn degree_histogram(cfg: &TrainConfig, gs: &GraphSpec) -> Result<Vec<f64>> {
    let mut hist: Vec<f64> = Vec::new();
    for i in 0..cfg.config.dataset.datasets.len() {
        let path = cfg.dataset_path(i);
        let ds = Dataset::open(&path)?;
        let tr = ds.split("trainset")?;
        let label = format!("{} trainset", path.display());
        for g in gs.load(&tr, 0..tr.n_graphs().min(64), &label)? {
            let mut deg = vec![0usize; g.numbers.len()];
            for &d in &g.dst {
                deg[d as usize] += 1;
            }
            for k in deg {
                if hist.len() <= k {
                    hist.resize(k + 1, 0.0);
                }
                hist[k] += 1.0;
            }
        }
    }
    Ok(hist)
}

/// Dataset `i`'s attributes and what its branch is trained on, checked against the config.
fn plan_branch(cfg: &TrainConfig, i: usize) -> Result<(DatasetMeta, BranchSpec)> {
    let a = cfg.arch();
    let t = cfg.training();
    let d = &cfg.config.dataset.datasets[i];
    let path = cfg.dataset_path(i);
    let ds = Dataset::open(&path).map_err(|e| {
        Error::config(
            &cfg.path,
            format!("Dataset.datasets[{i}].path"),
            e.to_string(),
        )
    })?;
    let meta = ds.meta().clone();
    let what = format!("dataset '{}' ({})", d.name, path.display());
    for split in ["trainset", "valset"] {
        if meta.n_graphs(split) == 0 {
            return Err(Error::config(
                &cfg.path,
                format!("Dataset.datasets[{i}]"),
                format!("{what} has no graphs in its {split}"),
            ));
        }
    }
    let voi = "NeuralNetwork.Variables_of_interest";
    let mut props = Vec::new();
    let mut energy = false;
    for o in cfg.outputs_of(i) {
        let k = cfg
            .variables()
            .output_names
            .iter()
            .position(|n| *n == o.name)
            .expect("validated");
        let key = format!("{voi}.output_names[{k}]");
        let has = |list: &[crate::data::PropertyInfo]| {
            list.iter().find(|p| p.name == o.name).map(|p| p.width)
        };
        if o.name == "energy" {
            if !meta.layout.energy {
                return Err(Error::config(
                    &cfg.path,
                    key,
                    format!("the config asks for 'energy' but {what} has no energies"),
                ));
            }
            energy = true;
            continue;
        }
        let (mine, other, level, other_level) = match o.kind {
            HeadKind::Graph => (
                has(&meta.scalars),
                has(&meta.atom_props),
                "per-frame",
                "per-atom",
            ),
            HeadKind::Node => (
                has(&meta.atom_props),
                has(&meta.scalars),
                "per-atom",
                "per-frame",
            ),
        };
        let width = match (mine, other) {
            (Some(w), _) => w,
            (None, Some(_)) => {
                return Err(Error::config(
                    &cfg.path,
                    format!("{voi}.type[{k}]"),
                    format!(
                        "'{}' is {other_level} in {what}, but the config asks for a {level} output",
                        o.name
                    ),
                ))
            }
            (None, None) => {
                let mut have: Vec<String> = meta
                    .scalars
                    .iter()
                    .chain(&meta.atom_props)
                    .map(|p| p.name.clone())
                    .collect();
                for (n, on) in [
                    ("energy", meta.layout.energy),
                    ("forces", meta.layout.forces),
                    ("stress", meta.layout.stress),
                ] {
                    if on {
                        have.insert(0, n.to_string());
                    }
                }
                return Err(Error::config(
                    &cfg.path,
                    key,
                    format!(
                        "the config asks for '{}' but {what} has no such property (it has: {})",
                        o.name,
                        have.join(", ")
                    ),
                ));
            }
        };
        if let Some(dim) = o.dim {
            if dim as usize != width {
                return Err(Error::config(
                    &cfg.path,
                    format!("{voi}.output_dim[{k}]"),
                    format!("is {dim} but '{}' has {width} components in {what}", o.name),
                ));
            }
        }
        props.push(PropSpec {
            name: o.name.clone(),
            kind: o.kind,
            width,
            weight: o.weight,
        });
    }
    if a.stress_weight > 0.0 && !meta.layout.stress && cfg.config.dataset.datasets.len() == 1 {
        return Err(Error::config(
            &cfg.path,
            "NeuralNetwork.Architecture.stress_weight",
            format!("is {} but {what} has no stress", a.stress_weight),
        ));
    }
    if a.stress_weight > 0.0 && !t.compute_grad_energy {
        return Err(Error::config(
            &cfg.path,
            "NeuralNetwork.Architecture.stress_weight",
            "needs NeuralNetwork.Training.compute_grad_energy (stress is an energy derivative)",
        ));
    }
    if t.compute_grad_energy && energy && !meta.layout.forces {
        return Err(Error::config(
            &cfg.path,
            "NeuralNetwork.Training.compute_grad_energy",
            format!("is true but {what} has no forces"),
        ));
    }
    let terms = ["energy", "energy_peratom", "forces", "stress"];
    let keys = t
        .loss_function_types
        .keys()
        .map(|k| ("loss_function_types", k));
    for (section, k) in keys.chain(
        t.loss_weights_start
            .keys()
            .map(|k| ("loss_weights_start", k)),
    ) {
        // An output of any dataset: a branch without it simply has no such term.
        if !terms.contains(&k.as_str()) && !cfg.variables().output_names.contains(k) {
            return Err(Error::config(
                &cfg.path,
                format!("NeuralNetwork.Training.{section}.{k}"),
                format!(
                    "'{k}' is not a loss term: use energy, energy_peratom, forces, stress or an output's name"
                ),
            ));
        }
    }
    if !(t.smooth_l1_beta.is_finite() && t.smooth_l1_beta > 0.0) {
        return Err(Error::config(
            &cfg.path,
            "NeuralNetwork.Training.smooth_l1_beta",
            format!("must be a finite number > 0, got {}", t.smooth_l1_beta),
        ));
    }
    if let Some((k, w)) = t
        .loss_weights_start
        .iter()
        .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
    {
        return Err(Error::config(
            &cfg.path,
            format!("NeuralNetwork.Training.loss_weights_start.{k}"),
            format!("must be a finite weight >= 0, got {w}"),
        ));
    }
    let tw = cfg
        .outputs_of(i)
        .iter()
        .find(|o| o.name == "energy")
        .map_or(1.0, |o| o.weight);
    let spec = BranchSpec {
        name: d.name.clone(),
        branch: i,
        energy,
        forces: energy && t.compute_grad_energy,
        props,
        w_energy: tw * a.energy_weight,
        w_energy_peratom: tw * a.energy_peratom_weight,
        w_forces: if t.compute_grad_energy {
            a.force_weight
        } else {
            0.0
        },
        // Stress is predicted (and reported) whenever the forces are and the data has it.
        stress: energy && t.compute_grad_energy && meta.layout.stress,
        w_stress: if t.compute_grad_energy {
            a.stress_weight
        } else {
            0.0
        },
        loss_types: t.loss_function_types.clone(),
        smooth_l1_beta: t.smooth_l1_beta,
    };
    Ok((meta, spec))
}

/// The model's architecture for the planned branches: the Architecture section's backbone, the
/// union of the datasets' elements as species, one branch per dataset with an energy head, a
/// head per other output and the dataset's reference energies (`species`: the model file's
/// when fine-tuning). Not validated.
fn model_config(
    cfg: &TrainConfig,
    metas: &[(DatasetMeta, BranchSpec)],
    species: Option<Vec<i32>>,
) -> ModelConfig {
    let a = cfg.arch();
    let species = species.unwrap_or_else(|| {
        let mut species: Vec<i32> = metas
            .iter()
            .flat_map(|(m, _)| m.elements.iter().copied())
            .collect();
        species.sort_unstable();
        species.dedup();
        species
    });
    let radial = a.radial_type.unwrap_or(if a.mpnn_type == MpnnType::SchNet {
        RadialType::Gaussian
    } else {
        mlip::model::config::RadialType::Bessel
    });
    let graph_pooling = match a.graph_pooling.as_str() {
        "sum" => Pooling::Sum,
        _ => Pooling::Mean,
    };
    let branches: Vec<BranchConfig> = metas
        .iter()
        .map(|(m, s)| {
            let mut heads = vec![HeadConfig::energy(cfg.head_layers(HeadKind::Graph))];
            for p in &s.props {
                heads.push(HeadConfig::new(
                    p.name.clone(),
                    p.kind,
                    p.width as i64,
                    cfg.head_layers(p.kind),
                    graph_pooling,
                ));
            }
            let e0: Vec<f64> = species.iter().map(|&z| m.reference_energy(z)).collect();
            BranchConfig::new(s.name.clone(), heads, e0)
        })
        .collect();
    let mut mc = ModelConfig::new(
        a.mpnn_type,
        a.hidden_dim,
        a.num_conv_layers,
        a.radius,
        species,
        branches,
    )
    .with_num_radial(a.num_radial)
    .with_radial_type(radial)
    .with_activation(a.activation_function);
    if let Some(p) = a.envelope_exponent {
        mc = mc.with_envelope(Envelope::Polynomial { p });
    }
    mc
}

/// The batches of one epoch: (dataset, trainset graph indices), independent of the number of ranks.
pub fn epoch_plan(
    seed: u64,
    epoch: usize,
    sizes: &[usize],
    batch_size: usize,
) -> Vec<(usize, Vec<usize>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let mut batches = Vec::new();
    for (d, &n) in sizes.iter().enumerate() {
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng);
        batches.extend(perm.chunks(batch_size).map(|c| (d, c.to_vec())));
    }
    batches.shuffle(&mut rng);
    batches
}

/// One planned batch: (dataset, trainset graph index) per graph, in batch order.
pub type PlannedBatch = Vec<(usize, usize)>;

/// Every dataset's number of draws in an epoch of `N = Σ sizes` draws: `p_d·N` rounded by
/// largest remainders (ties to the lower dataset index), so the counts add up to N and each is
/// within 1 of `p_d·N`. Proportional sampling gives every dataset its own size exactly.
pub fn epoch_quotas(sizes: &[usize], sampling: &Sampling) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    if sampling.mode == SamplingMode::Proportional {
        return sizes.to_vec();
    }
    let exact: Vec<f64> = sampling
        .probabilities(sizes)
        .iter()
        .map(|p| p * total as f64)
        .collect();
    let mut q: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - q[a] as f64, exact[b] - q[b] as f64);
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    // Each floor drops less than 1, so at most one extra draw per dataset is left to give.
    let left = total.saturating_sub(q.iter().sum());
    for &d in order.iter().take(left) {
        q[d] += 1;
    }
    q
}

/// The batches of one epoch for the configured mixing and sampling (see
/// [`crate::config::Sampling`]): a function of (seed, epoch, sizes, batch size, mixing,
/// sampling) only, so every rank and every resumed run draws the same. `per_dataset` with
/// `proportional` sampling is exactly [`epoch_plan`] (today's plan).
///
/// Otherwise dataset d gets [`epoch_quotas`]'s count of draws, taken in order from a shuffled
/// permutation of its trainset that is reshuffled each time it is used up (so a sample is drawn
/// at most once more than any other of its dataset). `per_dataset` cuts each dataset's draws
/// into batches and shuffles the batches; `mixed` shuffles the sequence of dataset labels of
/// all draws, fills it from the datasets' draws and cuts it into batches of `batch_size`.
pub fn batch_plan(
    seed: u64,
    epoch: usize,
    sizes: &[usize],
    batch_size: usize,
    mixing: BatchMixing,
    sampling: &Sampling,
) -> Vec<PlannedBatch> {
    if mixing == BatchMixing::PerDataset && sampling.mode == SamplingMode::Proportional {
        return epoch_plan(seed, epoch, sizes, batch_size)
            .into_iter()
            .map(|(d, idx)| idx.into_iter().map(|i| (d, i)).collect())
            .collect();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let quotas = epoch_quotas(sizes, sampling);
    let draws: Vec<Vec<usize>> = sizes
        .iter()
        .zip(&quotas)
        .map(|(&n, &q)| {
            let mut out = Vec::with_capacity(q);
            while out.len() < q && n > 0 {
                let mut perm: Vec<usize> = (0..n).collect();
                perm.shuffle(&mut rng);
                out.extend(perm.into_iter().take(q - out.len()));
            }
            out
        })
        .collect();
    match mixing {
        BatchMixing::PerDataset => {
            let mut batches: Vec<PlannedBatch> = Vec::new();
            for (d, dr) in draws.iter().enumerate() {
                batches.extend(
                    dr.chunks(batch_size)
                        .map(|c| c.iter().map(|&i| (d, i)).collect()),
                );
            }
            batches.shuffle(&mut rng);
            batches
        }
        BatchMixing::Mixed => {
            let mut labels: Vec<usize> = draws
                .iter()
                .enumerate()
                .flat_map(|(d, dr)| std::iter::repeat_n(d, dr.len()))
                .collect();
            labels.shuffle(&mut rng);
            let mut next = vec![0usize; draws.len()];
            let seq: Vec<(usize, usize)> = labels
                .into_iter()
                .map(|d| {
                    next[d] += 1;
                    (d, draws[d][next[d] - 1])
                })
                .collect();
            seq.chunks(batch_size).map(|c| c.to_vec()).collect()
        }
    }
}
