//! Graph heads pooled across several pieces of one structure (the ranks of a spatial
//! decomposition). Each piece computes [`HeadPartials`] from its local atoms' final features;
//! the caller reduces them across pieces (sums by addition, maxima by maximum) and
//! [`Model::finish_heads`] turns the reduced partials into the graph heads' values, exactly as
//! [`Model::heads`] pools them over a whole structure.
//!
//! Layout, for the graph heads of a branch in head order (the energy head included): a head
//! contributes `w` values, where `w` is the scalar feature width for `pool_first` heads (the
//! node features are pooled) and the head's `dim` otherwise (the head's per-atom outputs are
//! pooled; for the energy head, the per-atom energies with their reference energies; for a
//! graph-level energy head, the scalar features then the reference energies, `hidden_dim` + 1). Heads
//! pooled by maximum put their values in `maxs`, the others in `sums`; the last entry of `sums`
//! is the number of atoms.

use tch::{Kind, Tensor};

use super::config::{HeadKind, Pooling};
use super::{nn, Model};
use crate::compute::tensor_to_vec;
use crate::error::{invalid, Error, Result};

/// One piece's contribution to the graph heads of a branch (see the module's layout).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadPartials {
    /// Values reduced by addition; the last one is the number of atoms.
    pub sums: Vec<f64>,
    /// Values reduced by maximum (-inf where the piece has no atoms).
    pub maxs: Vec<f64>,
}

impl Model {
    fn branch_index(&self, branch: Option<usize>) -> Result<usize> {
        let bi = branch.unwrap_or(self.active);
        if bi >= self.branches.len() {
            return invalid(format!("no branch {bi}"));
        }
        Ok(bi)
    }

    /// Width of the partial of graph head `k` of branch `bi`.
    fn partial_width(&self, bi: usize, k: usize) -> usize {
        let b = &self.branches[bi];
        let h = &b.heads[k];
        if h.pool_first && b.energy == Some(k) {
            self.config.hidden_dim as usize + 1
        } else if h.pool_first {
            self.config.hidden_dim as usize
        } else {
            self.config.branches[bi].output_heads[k].dim as usize
        }
    }

    /// Where the energy head's partial (the sum of per-atom energies) sits in
    /// [`HeadPartials::sums`] for branch `branch` (None: the active one); None for a graph-level
    /// energy head (its partial is the pooled features) or a branch without an energy head.
    pub(crate) fn energy_partial_index(&self, branch: Option<usize>) -> Result<Option<usize>> {
        let bi = self.branch_index(branch)?;
        let b = &self.branches[bi];
        let Some(e) = b.energy else {
            return Ok(None);
        };
        let h = &b.heads[e];
        if h.pool_first || h.kind != HeadKind::Graph || h.pooling != Pooling::Sum {
            return Ok(None);
        }
        let mut offset = 0;
        for (k, h) in b.heads.iter().enumerate() {
            if h.kind != HeadKind::Graph || h.pooling == Pooling::Max {
                continue;
            }
            if k == e {
                return Ok(Some(offset));
            }
            offset += self.partial_width(bi, k);
        }
        Ok(None)
    }

    /// Lengths of [`HeadPartials::sums`] and [`HeadPartials::maxs`] for branch `branch` (None:
    /// the active one).
    pub fn head_partials_len(&self, branch: Option<usize>) -> Result<(usize, usize)> {
        let bi = self.branch_index(branch)?;
        let (mut ns, mut nm) = (1, 0);
        for (k, h) in self.branches[bi].heads.iter().enumerate() {
            if h.kind != HeadKind::Graph {
                continue;
            }
            match h.pooling {
                Pooling::Max => nm += self.partial_width(bi, k),
                _ => ns += self.partial_width(bi, k),
            }
        }
        Ok((ns, nm))
    }

    /// The partials of branch `branch`'s graph heads over the nodes whose final scalar features
    /// are `s` (n, F) and species indices `species` (n,). No gradients are kept.
    pub fn head_partials(
        &self,
        branch: Option<usize>,
        s: &Tensor,
        species: &Tensor,
    ) -> Result<HeadPartials> {
        let bi = self.branch_index(branch)?;
        let b = &self.branches[bi];
        let n = s.size()[0];
        let s_full = s;
        let (s, extra) = self.split_final(bi, s_full, species);
        let s = &s;
        tch::no_grad(|| {
            let mut p = HeadPartials::default();
            for (k, h) in b.heads.iter().enumerate() {
                if h.kind != HeadKind::Graph {
                    continue;
                }
                let x = if Some(k) == b.energy && h.pool_first {
                    let e0 = extra.unsqueeze(-1);
                    Tensor::cat(&[s, &e0], -1)
                } else if Some(k) == b.energy {
                    self.node_energy(bi, s_full, species)?.unsqueeze(-1)
                } else if h.pool_first {
                    s.shallow_clone()
                } else {
                    h.mlp.forward(s)
                };
                let w = self.partial_width(bi, k);
                match h.pooling {
                    Pooling::Max if n == 0 => p.maxs.extend(vec![f64::NEG_INFINITY; w]),
                    Pooling::Max => p.maxs.extend(tensor_to_vec(&x.amax(0, false))?),
                    _ => p
                        .sums
                        .extend(tensor_to_vec(&x.sum_dim_intlist(0, false, Kind::Double))?),
                }
            }
            p.sums.push(n as f64);
            Ok(p)
        })
    }

    /// The values of branch `branch`'s graph heads, in head order (energy included), from
    /// partials reduced over every piece of a structure.
    pub fn finish_heads(
        &self,
        branch: Option<usize>,
        partials: &HeadPartials,
    ) -> Result<Vec<(String, Vec<f64>)>> {
        let bi = self.branch_index(branch)?;
        let (ns, nm) = self.head_partials_len(Some(bi))?;
        if partials.sums.len() != ns || partials.maxs.len() != nm {
            return invalid(format!(
                "head partials of branch '{}' have {} sums and {} maxima, expected {ns} and {nm}",
                self.branches[bi].name,
                partials.sums.len(),
                partials.maxs.len()
            ));
        }
        let b = &self.branches[bi];
        let count = partials.sums[ns - 1].max(1.0);
        let (mut is, mut im) = (0, 0);
        let mut out = Vec::new();
        crate::compute::guarded(|| {
            tch::no_grad(|| {
                for (k, h) in b.heads.iter().enumerate() {
                    if h.kind != HeadKind::Graph {
                        continue;
                    }
                    let w = self.partial_width(bi, k);
                    let mut x: Vec<f64> = match h.pooling {
                        Pooling::Max => {
                            im += w;
                            partials.maxs[im - w..im]
                                .iter()
                                .map(|&v| if v.is_finite() { v } else { 0.0 })
                                .collect()
                        }
                        Pooling::Sum => {
                            is += w;
                            partials.sums[is - w..is].to_vec()
                        }
                        Pooling::Mean => {
                            is += w;
                            partials.sums[is - w..is]
                                .iter()
                                .map(|v| v / count)
                                .collect()
                        }
                    };
                    if h.pool_first && Some(k) == b.energy {
                        let f = w - 1;
                        let t =
                            nn::tensor_from(&x[..f], &[1, f as i64], self.kind, self.vs.device());
                        x = vec![tensor_to_vec(&self.energy_of_pooled(b, k, &t))?[0] + x[f]];
                    } else if h.pool_first {
                        let mut t = self.condition_pooled(&nn::tensor_from(
                            &x,
                            &[1, w as i64],
                            self.kind,
                            self.vs.device(),
                        ));
                        for l in &b.shared {
                            t = nn::act(self.config.activation_function, &t.apply(l));
                        }
                        x = tensor_to_vec(&h.mlp.forward(&t))?;
                    }
                    if let Some(j) = x.iter().position(|v| !v.is_finite()) {
                        return Err(Error::Internal(format!(
                            "head '{}' produced a non-finite value (component {j})",
                            h.name
                        )));
                    }
                    out.push((h.name.clone(), x));
                }
                Ok(())
            })
        })?;
        Ok(out)
    }

    /// For a graph-level energy ([`Model::energy_is_pooled`]): the energy of branch `branch`
    /// (None: the active one) and its gradient with respect to the pooled scalar features, from
    /// partials reduced over every piece of a structure. Every piece's local atoms then seed
    /// their backward pass with that same gradient (∂E/∂s_i = ∂E/∂(Σ_j s_j)).
    pub fn pooled_energy_grad(
        &self,
        branch: Option<usize>,
        partials: &HeadPartials,
    ) -> Result<(f64, Vec<f64>)> {
        let bi = self.branch_index(branch)?;
        let b = &self.branches[bi];
        let (ns, nm) = self.head_partials_len(Some(bi))?;
        if partials.sums.len() != ns || partials.maxs.len() != nm {
            return invalid(format!(
                "reduced head partials of branch '{}' have {} sums and {} maxima, expected {ns} and {nm}",
                b.name,
                partials.sums.len(),
                partials.maxs.len()
            ));
        }
        let k = match b.energy {
            Some(k) if b.heads[k].pool_first => k,
            _ => {
                return invalid(format!(
                    "the energy of branch '{}' is a sum of per-atom energies: it needs no reduction step",
                    b.name
                ))
            }
        };
        // the energy's offset in `sums`: the sum-pooled graph heads before it
        let off: usize = (0..k)
            .filter(|&j| b.heads[j].kind == HeadKind::Graph && b.heads[j].pooling != Pooling::Max)
            .map(|j| self.partial_width(bi, j))
            .sum();
        let f = self.partial_width(bi, k) - 1;
        crate::compute::guarded(|| {
            let p = nn::tensor_from(
                &partials.sums[off..off + f],
                &[1, f as i64],
                self.kind,
                self.vs.device(),
            )
            .set_requires_grad(true);
            let e = self.energy_of_pooled(b, k, &p).sum(self.kind);
            let g = Tensor::f_run_backward(&[&e], &[&p], false, false)?;
            let energy = e.f_double_value(&[])? + partials.sums[off + f];
            if !energy.is_finite() {
                return Err(Error::Internal(
                    "the model produced a non-finite energy".into(),
                ));
            }
            let mut g = tensor_to_vec(&g[0])?;
            if self.config.mpnn_type == super::config::MpnnType::Mace {
                // MACE's final scalars also carry the earlier layers' readouts (one column per
                // branch, added to the energy) and Z ([`super::mace`])
                let nb = self.branches.len();
                g.extend((0..=nb).map(|j| if j == bi { 1.0 } else { 0.0 }));
            }
            Ok((energy, g))
        })
    }

    /// The node heads of branch `branch` on final scalar features `s` (n, F), in head order:
    /// (name, n × dim values, row-major). No gradients are kept.
    pub fn node_heads(&self, branch: Option<usize>, s: &Tensor) -> Result<Vec<(String, Vec<f64>)>> {
        let bi = self.branch_index(branch)?;
        tch::no_grad(|| {
            self.branches[bi]
                .heads
                .iter()
                .filter(|h| h.kind == HeadKind::Node)
                .map(|h| Ok((h.name.clone(), tensor_to_vec(&h.mlp.forward(s))?)))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{BranchConfig, HeadConfig, ModelConfig, MpnnType};
    use super::*;
    use crate::model::GraphTensors;
    use tch::Device;

    /// Pieces of one structure reduced (sums added, maxima maxed) give exactly the heads that
    /// [`Model::heads`] pools over the whole structure: sum, mean, max, pool-first (through
    /// shared layers) and node heads.
    #[test]
    fn partials_of_pieces_reduce_to_the_whole() {
        let mut c = ModelConfig::small(MpnnType::SchNet, vec![1, 8], 3.0);
        let mut first = HeadConfig::new("pf", HeadKind::Graph, 3, vec![8], Pooling::Mean);
        first.pool_first = true;
        let mut first_max = HeadConfig::new("pfmax", HeadKind::Graph, 2, vec![8], Pooling::Max);
        first_max.pool_first = true;
        let mut b = BranchConfig::new(
            "all",
            vec![
                HeadConfig::energy(vec![8, 4]),
                HeadConfig::new("gap", HeadKind::Graph, 2, vec![8], Pooling::Mean),
                HeadConfig::new("total", HeadKind::Graph, 1, vec![8], Pooling::Sum),
                HeadConfig::new("top", HeadKind::Graph, 2, vec![8], Pooling::Max),
                first,
                first_max,
                HeadConfig::new("charges", HeadKind::Node, 2, vec![8], Pooling::Sum),
            ],
            vec![-1.0, -2.0],
        );
        b.shared_layers = vec![6];
        c.branches = vec![b];
        let m = Model::new(c, Kind::Double, Device::Cpu, 11).unwrap();
        let n = 7;
        let s = Tensor::randn([n, m.config().hidden_dim], (Kind::Double, Device::Cpu));
        let species = Tensor::from_slice(&[0i64, 1, 0, 0, 1, 0, 1]);
        let g = GraphTensors {
            species: species.shallow_clone(),
            src: Tensor::from_slice(&[0i64]),
            dst: Tensor::from_slice(&[1i64]),
            edge_vec: Tensor::zeros([1, 3], (Kind::Double, Device::Cpu)),
            batch: Tensor::zeros([n], (Kind::Int64, Device::Cpu)),
            n_graphs: 1,
            pairs: None,
        };
        let whole = tch::no_grad(|| m.heads(None, &s, &g)).unwrap();
        let mut total = HeadPartials::default();
        for (a, len) in [(0, 3), (3, 0), (3, 4)] {
            let p = m
                .head_partials(None, &s.narrow(0, a, len), &species.narrow(0, a, len))
                .unwrap();
            if total.sums.is_empty() {
                total = p;
            } else {
                total
                    .sums
                    .iter_mut()
                    .zip(&p.sums)
                    .for_each(|(t, x)| *t += x);
                total
                    .maxs
                    .iter_mut()
                    .zip(&p.maxs)
                    .for_each(|(t, x)| *t = t.max(*x));
            }
        }
        assert_eq!(
            (total.sums.len(), total.maxs.len()),
            m.head_partials_len(None).unwrap()
        );
        let got = m.finish_heads(None, &total).unwrap();
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["energy", "gap", "total", "top", "pf", "pfmax"]);
        let close = |a: &[f64], b: &[f64]| {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{a:?} vs {b:?}");
            }
        };
        close(&got[0].1, &tensor_to_vec(&whole.energy).unwrap());
        for (name, v) in &got[1..] {
            close(v, &tensor_to_vec(&whole.graph_properties[name]).unwrap());
        }
        let nodes = m.node_heads(None, &s).unwrap();
        assert_eq!(nodes.len(), 1);
        close(
            &nodes[0].1,
            &tensor_to_vec(&whole.node_properties["charges"]).unwrap(),
        );
        let bad = HeadPartials {
            sums: vec![0.0],
            maxs: vec![],
        };
        assert!(m.finish_heads(None, &bad).is_err());
    }
}
