//! Mixed batches (`Training.batch_mixing: "mixed"`): one optimiser step on a batch that holds
//! samples of several datasets. The backbone runs once over the whole batch (this rank's part of
//! it, grouped by dataset); each dataset's atoms then go through its own branch's heads
//! ([`mlip::Model::heads`] on that slice of the final node state), the forces and stresses come from
//! one autograd pass over all edges, and the loss is the sum of the datasets' losses, each times
//! its `loss_weight`. Every loss term is divided by the entries present in the whole global batch
//! over all datasets (graphs with an energy, atoms with forces ..., added over ranks), so a
//! dataset contributes in proportion to its share of the batch, and a batch of one dataset gives
//! that dataset's usual loss. The step updates the shared parameters and the branches of the
//! datasets present in the global batch.

use std::collections::BTreeMap;

use mlip::compute::edge_forces;
use mlip::model::config::HeadKind;
use tch::Tensor;

use crate::error::{Error, Result};
use crate::graphs::{collate, Collated, Graph};
use crate::metrics::{batch_loss_counted, LossCounts, Prediction};
use crate::optim::AdamW;

use super::Trainer;

impl Trainer<'_> {
    /// One optimiser step on the mixed global batch `batch` ((dataset, trainset index) per
    /// graph); returns the global loss.
    pub(super) fn step_mixed(&mut self, batch: &[(usize, usize)]) -> Result<f64> {
        let nd = self.datasets.len();
        let mut present = vec![false; nd];
        let mut local: Vec<Vec<&Graph>> = vec![Vec::new(); nd];
        for &(d, i) in batch {
            present[d] = true;
            let run = &self.datasets[d];
            if run.train_shard.contains(&i) {
                local[d].push(&run.train[i - run.train_shard.start]);
            }
        }
        self.opt.zero_grad();
        // Targets per dataset (its own outputs), and the whole local batch as one graph.
        let parts: Vec<Option<Collated>> = local
            .iter()
            .zip(&self.datasets)
            .map(|(g, run)| {
                (!g.is_empty()).then(|| {
                    let s = &run.spec;
                    collate(
                        g,
                        &s.graph_props(),
                        &s.node_props(),
                        self.kind,
                        self.device,
                        false,
                    )
                })
            })
            .collect();
        let all: Vec<&Graph> = local.iter().flatten().copied().collect();
        let grads = self.datasets.iter().any(|r| r.spec.forces || r.spec.stress);
        let whole =
            (!all.is_empty()).then(|| collate(&all, &[], &[], self.kind, self.device, grads));
        // Entries present per dataset, added over ranks, then over the datasets: each term's
        // denominator is its count over the whole global batch.
        let mut flat = Vec::new();
        for (run, c) in self.datasets.iter().zip(&parts) {
            let n = c.as_ref().map_or_else(
                || LossCounts::all(&run.spec, 0.0, 0.0),
                |c| LossCounts::of(&run.spec, c),
            );
            flat.extend(n.to_vec());
        }
        self.dist.allreduce_sum(&mut flat);
        let mut per: Vec<LossCounts> = Vec::with_capacity(nd);
        let mut off = 0;
        for run in &self.datasets {
            let len = 3 + run.spec.props.len();
            per.push(LossCounts::from_slice(&flat[off..off + len]));
            off += len;
        }
        let (mut ne, mut nf, mut ns) = (0.0, 0.0, 0.0);
        let mut nprop: BTreeMap<&str, f64> = BTreeMap::new();
        for (run, n) in self.datasets.iter().zip(&per) {
            ne += n.energy;
            nf += n.forces;
            ns += n.stress;
            for (p, k) in run.spec.props.iter().zip(&n.props) {
                *nprop.entry(p.name.as_str()).or_default() += k;
            }
        }
        let mut local_loss = 0.0;
        if let Some(w) = &whole {
            let autocast = self.autocast()?; // bf16: forward, forces and loss; not the backward
            let st = self.model.propagate(&w.graph);
            let mut outs = Vec::new();
            let mut a0 = 0i64;
            for (d, c) in parts.iter().enumerate() {
                let Some(c) = c else { continue };
                let na = c.n_atoms_total as i64;
                let s = st.s.narrow(0, a0, na);
                let out = self
                    .model
                    .heads(Some(self.datasets[d].spec.branch), &s, &c.graph)?;
                outs.push((d, out));
                a0 += na;
            }
            let energy = Tensor::cat(&outs.iter().map(|(_, o)| &o.energy).collect::<Vec<_>>(), 0);
            let stress_on = outs.iter().any(|(d, _)| self.datasets[*d].spec.stress);
            let (forces, stress) = if grads {
                let (f, s) = edge_forces(&energy, &w.graph, stress_on.then_some(&w.volume), true)?;
                (Some(f), s)
            } else {
                (None, None)
            };
            let loss_type = self.cfg.training().loss_function_type;
            let kind = energy.kind();
            let mut total = Tensor::zeros([], (kind, energy.device()));
            let (mut a0, mut g0) = (0i64, 0i64);
            for (d, out) in outs {
                let c = parts[d].as_ref().expect("collated");
                let spec = &self.datasets[d].spec;
                let (na, ng) = (c.n_atoms_total as i64, c.n_graphs as i64);
                let mut props = BTreeMap::new();
                for p in &spec.props {
                    let t = match p.kind {
                        HeadKind::Graph => out.graph_properties.get(&p.name),
                        HeadKind::Node => out.node_properties.get(&p.name),
                    };
                    if let Some(t) = t {
                        props.insert(p.name.clone(), t.shallow_clone());
                    }
                }
                let pred = Prediction {
                    energy: out.energy,
                    forces: forces
                        .as_ref()
                        .filter(|_| spec.forces)
                        .map(|f| f.narrow(0, a0, na)),
                    stress: stress
                        .as_ref()
                        .filter(|_| spec.stress)
                        .map(|s| s.narrow(0, g0, ng)),
                    props,
                };
                let counts = LossCounts {
                    energy: ne,
                    forces: nf,
                    stress: ns,
                    props: spec.props.iter().map(|p| nprop[p.name.as_str()]).collect(),
                };
                let l =
                    batch_loss_counted(&self.scheduled_spec(spec), &pred, c, loss_type, &counts);
                let w = self.cfg.config.dataset.datasets[d].loss_weight;
                total += if w == 1.0 { l } else { l * w };
                a0 += na;
                g0 += ng;
            }
            drop(autocast);
            total.f_backward()?;
            local_loss = total.double_value(&[]);
        }
        let mut flat = self.opt.grads_flat();
        flat.push(local_loss);
        self.dist.allreduce_sum(&mut flat);
        let loss = flat.pop().expect("loss");
        if !loss.is_finite() || flat.iter().any(|g| !g.is_finite()) {
            let names: Vec<&str> = (0..nd)
                .filter(|&d| present[d])
                .map(|d| self.datasets[d].name.as_str())
                .collect();
            return Err(Error::Diverged(format!(
                "non-finite loss or gradient at step {} (epoch {}, mixed batch of {}); lower the learning rate or set clip_grad_norm",
                self.state.step + 1,
                self.state.epoch + 1,
                names.join(", ")
            )));
        }
        if let Some(c) = self.cfg.training().clip_grad_norm {
            AdamW::clip_flat(&mut flat, c);
        }
        self.opt.set_grads_flat(&flat);
        // The shared parameters and the branches of the datasets in the global batch.
        let branch_of: Vec<usize> = self.datasets.iter().map(|r| r.spec.branch).collect();
        let on: Vec<usize> = (0..nd)
            .filter(|&d| present[d])
            .map(|d| branch_of[d])
            .collect();
        let model = &self.model;
        self.opt
            .step(|v| model.parameter_branch(v).is_none_or(|b| on.contains(&b)));
        Ok(loss)
    }
}
