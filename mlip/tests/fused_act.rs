//! The fused activations (`mlip::model::fused`, C++ custom autograd functions) against libtorch's
//! own expressions: values and first, second (both inputs of the derivative) and third
//! derivatives in float64 and float32, and whole models' energies, forces and force-loss
//! parameter gradients with the fused path on and off. One test function: the on/off switch is
//! process-wide.

mod common;

use common::{energy_force_grads, pair_graph, rel_max, rewrite_case};
use mlip::model::config::{Activation, Envelope, ModelConfig, MpnnType};
use mlip::model::fused;
use tch::{Device, Kind, Tensor};

fn plain(a: Activation, x: &Tensor) -> Tensor {
    match a {
        Activation::Silu => x * x.sigmoid(),
        Activation::Ssp => x.softplus() - std::f64::consts::LN_2,
        Activation::Tanh => x.tanh(),
        Activation::Relu => x.relu(),
    }
}

fn grad(y: &Tensor, xs: &[&Tensor], keep: bool) -> Vec<Tensor> {
    Tensor::run_backward(&[y], xs, keep, keep)
}

/// (y, dy·w/dx, d(dy·w/dx · u)/dx and d(dy·w/dx · u)/dw with the graph kept and without it (the
/// fused path has a kernel for the latter and differentiable expressions for the former), and the
/// third derivative d(d²(...)/dx² · q)/dx) for the activation `f`.
fn derivatives(f: impl Fn(&Tensor) -> Tensor, x0: &Tensor, w0: &Tensor) -> Vec<Tensor> {
    let second_without_graph = {
        let x = x0.copy().set_requires_grad(true);
        let w = w0.copy().set_requires_grad(true);
        let g1 = grad(&(f(&x) * &w).sum(x.kind()), &[&x], true)
            .pop()
            .unwrap();
        grad(&(&g1 * x0.cos()).sum(x.kind()), &[&x, &w], false)
    };
    let x = x0.copy().set_requires_grad(true);
    let w = w0.copy().set_requires_grad(true);
    let u = x0.cos();
    let q = x0.sin() + 0.5;
    let y = f(&x);
    let g1 = grad(&(&y * &w).sum(x.kind()), &[&x], true).pop().unwrap();
    let mut g2 = grad(&(&g1 * &u).sum(x.kind()), &[&x, &w], true);
    let g2w = g2.pop().unwrap();
    let g2x = g2.pop().unwrap();
    let g3 = grad(&(&g2x * &q).sum(x.kind()), &[&x], false)
        .pop()
        .unwrap();
    let mut all = vec![y.detach(), g1.detach(), g2x.detach(), g2w.detach(), g3];
    all.extend(second_without_graph);
    all
}

#[test]
fn fused_activations_match_libtorch_to_every_order_and_in_whole_models() {
    fused::set_enabled(true);
    for kind in [Kind::Double, Kind::Float] {
        let tol = if kind == Kind::Double { 1e-13 } else { 2e-6 };
        // a (5, 7) block of values over [-12, 12] (both tails) and a non-contiguous view of it
        let x = Tensor::linspace(-12.0, 12.0, 35, (kind, Device::Cpu)).view([5, 7]);
        let w = Tensor::linspace(-1.0, 2.0, 35, (kind, Device::Cpu)).view([5, 7]);
        for x in [x.shallow_clone(), x.tr()] {
            let w = if x.is_contiguous() {
                w.shallow_clone()
            } else {
                w.tr()
            };
            for a in [Activation::Silu, Activation::Ssp, Activation::Tanh] {
                let got = derivatives(|x| fused::act(a, x).expect("fused applies"), &x, &w);
                let want = derivatives(|x| plain(a, x), &x, &w);
                for (k, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.kind(), kind);
                    let err = rel_max(g, e);
                    assert!(err < tol, "{a:?} {kind:?} order {k}: rel err {err}");
                }
            }
            // ReLU, with the entries |x| < 1 set to an exact 0 (f'(0) = 0 as in libtorch): the
            // value, g·f'(x), and the second derivative's w part (d(g·f'·u)/dw = f'·u) with and
            // without the graph; its x part is zero, which the fused derivative leaves undefined
            let x0 = x.where_self(&x.abs().ge(1.0), &x.zeros_like());
            assert!(x0.eq(0.0).any().int64_value(&[]) == 1);
            let relu_chain = |f: &dyn Fn(&Tensor) -> Tensor, keep: bool| {
                let xr = x0.copy().set_requires_grad(true);
                let wr = w.copy().set_requires_grad(true);
                let y = f(&xr);
                let g1 = grad(&(&y * &wr).sum(kind), &[&xr], true).pop().unwrap();
                let g2 = grad(&(&g1 * x.cos()).sum(kind), &[&wr], keep)
                    .pop()
                    .unwrap();
                [y.detach(), g1.detach(), g2.detach()]
            };
            for keep in [true, false] {
                let got = relu_chain(&|x| fused::act(Activation::Relu, x).expect("fused"), keep);
                let want = relu_chain(&|x| x.relu(), keep);
                for (k, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g, e, "ReLU {kind:?} keep {keep} order {k}");
                }
            }
        }
    }
    // gather-multiply-scatter: value and derivatives w.r.t. both inputs to the third order
    for kind in [Kind::Double, Kind::Float] {
        let tol = if kind == Kind::Double { 1e-13 } else { 1e-5 };
        let opts = (kind, Device::Cpu);
        let (na, nout, e, f) = (5, 4, 11, 6);
        let a0 = Tensor::linspace(-1.0, 1.5, na * 3 * f, opts)
            .view([na, 3, f])
            .sin();
        let w0 = Tensor::linspace(-2.0, 1.0, e * f, opts).view([e, f]).cos();
        let src = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 4, 4, 2, 3]);
        let dst = Tensor::from_slice(&[1i64, 0, 3, 2, 2, 0, 1, 3, 0, 1, 1]);
        let plain_gms = |a: &Tensor, w: &Tensor| {
            Tensor::zeros([nout, 3, f], opts).index_add(
                0,
                &dst,
                &(a.index_select(0, &src) * w.unsqueeze(1)),
            )
        };
        let fused_gms = |a: &Tensor, w: &Tensor| {
            fused::gather_mul_scatter(a, w, &src, &dst, nout).expect("fused applies")
        };
        let u = Tensor::linspace(0.3, -0.7, nout * 3 * f, opts).view([nout, 3, f]);
        let chain = |op: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
            let a = a0.copy().set_requires_grad(true);
            let w = w0.copy().set_requires_grad(true);
            let y = op(&a, &w);
            // a nonlinear scalar so that every order has something to differentiate
            let l = (&y * &u).sum(kind) + (&y * &y * &y).sum(kind);
            let g = grad(&l, &[&a, &w], true);
            let l2 = (&g[0] * &g[0]).sum(kind) + (&g[1] * &g[1] * &g[1]).sum(kind);
            let g2 = grad(&l2, &[&a, &w], true);
            let l3 = (&g2[0] * &g2[0]).sum(kind) + (&g2[1] * &g2[1]).sum(kind);
            let g3 = grad(&l3, &[&a, &w], false);
            let mut all = vec![y.detach()];
            all.extend(g.iter().map(|t| t.detach()));
            all.extend(g2.iter().map(|t| t.detach()));
            all.extend(g3);
            all
        };
        let got = chain(&fused_gms);
        let want = chain(&plain_gms);
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = rel_max(g, w);
            assert!(
                err < tol,
                "gather_mul_scatter {kind:?} output {k}: rel err {err}"
            );
        }
        // an index out of range is refused (the caller's libtorch expression then reports it)
        let bad = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 4, 4, 2, 9]);
        assert!(fused::gather_mul_scatter(&a0, &w0, &src, &bad, nout).is_none());
        assert!(fused::gather_mul_scatter(&a0, &w0, &bad, &dst, nout).is_none());
    }

    // gather-add: value and derivatives w.r.t. all three inputs to the third order, with a
    // per-pair term (E = 2P) and a per-edge one (P = E)
    for kind in [Kind::Double, Kind::Float] {
        let tol = if kind == Kind::Double { 1e-13 } else { 1e-5 };
        let opts = (kind, Device::Cpu);
        let (nx, ny, e, h) = (4, 5, 10, 6);
        let i = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 3, 3, 2, 0]);
        let j = Tensor::from_slice(&[4i64, 0, 1, 2, 3, 3, 0, 4, 4, 1]);
        for p in [e / 2, e] {
            let x0 = Tensor::linspace(-1.0, 1.5, nx * h, opts)
                .view([nx, h])
                .sin();
            let y0 = Tensor::linspace(-2.0, 1.0, ny * h, opts)
                .view([ny, h])
                .cos();
            let r0 = Tensor::linspace(0.5, -1.0, p * h, opts).view([p, h]);
            let plain_ga = |x: &Tensor, y: &Tensor, r: &Tensor| {
                (x.index_select(0, &i) + y.index_select(0, &j)).view([e / p, p, h]) + r.unsqueeze(0)
            };
            let fused_ga = |x: &Tensor, y: &Tensor, r: &Tensor| {
                fused::gather_add(x, y, r, &i, &j)
                    .expect("fused applies")
                    .view([e / p, p, h])
            };
            let chain = |op: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor| {
                let x = x0.copy().set_requires_grad(true);
                let y = y0.copy().set_requires_grad(true);
                let r = r0.copy().set_requires_grad(true);
                let z = op(&x, &y, &r);
                let l = (&z * &z * &z).sum(kind);
                let g = grad(&l, &[&x, &y, &r], true);
                let l2 = (&g[0] * &g[0] * &g[0]).sum(kind)
                    + (&g[1] * &g[1]).sum(kind)
                    + (&g[2] * &g[2]).sum(kind);
                let g2 = grad(&l2, &[&x, &y, &r], true);
                let l3 = (&g2[0] * &g2[0]).sum(kind)
                    + (&g2[1] * &g2[1]).sum(kind)
                    + (&g2[2] * &g2[2] * &g2[2]).sum(kind);
                let g3 = grad(&l3, &[&x, &y, &r], false);
                let mut all = vec![z.detach()];
                all.extend(g.iter().map(|t| t.detach()));
                all.extend(g2.iter().map(|t| t.detach()));
                all.extend(g3);
                all
            };
            let got = chain(&fused_ga);
            let want = chain(&plain_ga);
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let err = rel_max(g, w);
                assert!(
                    err < tol,
                    "gather_add {kind:?} P={p} output {k}: rel err {err}"
                );
            }
        }
        let x = Tensor::ones([nx, h], opts);
        let bad = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 3, 3, 2, 7]);
        assert!(fused::gather_add(&x, &x, &x, &bad, &i).is_none());
        // E not a multiple of the rows of r
        assert!(fused::gather_add(&x, &x, &Tensor::ones([3, h], opts), &i, &i).is_none());
    }

    // scale-scatter: value and derivatives w.r.t. both inputs to the third order, per pair
    // (E = 2P) and per edge (P = E)
    for kind in [Kind::Double, Kind::Float] {
        let tol = if kind == Kind::Double { 1e-13 } else { 1e-5 };
        let opts = (kind, Device::Cpu);
        let (n, e, h) = (4, 10, 6);
        let d = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 3, 3, 2, 0]);
        for p in [e / 2, e] {
            let m0 = Tensor::linspace(-1.0, 1.5, e * h, opts).view([e, h]).sin();
            let s0 = Tensor::linspace(0.2, 1.3, p, opts).cos();
            let plain_ss = |m: &Tensor, s: &Tensor| {
                Tensor::zeros([n, h], opts).index_add(
                    0,
                    &d,
                    &(m.view([e / p, p, h]) * s.view([1, p, 1])).view([e, h]),
                )
            };
            let fused_ss =
                |m: &Tensor, s: &Tensor| fused::scale_scatter(m, s, &d, n).expect("fused applies");
            let chain = |op: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
                let m = m0.copy().set_requires_grad(true);
                let s = s0.copy().set_requires_grad(true);
                let z = op(&m, &s);
                let l = (&z * &z * &z).sum(kind);
                let g = grad(&l, &[&m, &s], true);
                let l2 = (&g[0] * &g[0] * &g[0]).sum(kind) + (&g[1] * &g[1] * &g[1]).sum(kind);
                let g2 = grad(&l2, &[&m, &s], true);
                let l3 = (&g2[0] * &g2[0]).sum(kind) + (&g2[1] * &g2[1] * &g2[1]).sum(kind);
                let g3 = grad(&l3, &[&m, &s], false);
                let mut all = vec![z.detach()];
                all.extend(g.iter().map(|t| t.detach()));
                all.extend(g2.iter().map(|t| t.detach()));
                all.extend(g3);
                all
            };
            let got = chain(&fused_ss);
            let want = chain(&plain_ss);
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let err = rel_max(g, w);
                assert!(
                    err < tol,
                    "scale_scatter {kind:?} P={p} output {k}: rel err {err}"
                );
            }
        }
        let m = Tensor::ones([e, h], opts);
        let bad = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 3, 3, 2, 4]);
        assert!(fused::scale_scatter(&m, &Tensor::ones([e], opts), &bad, n).is_none());
        assert!(fused::scale_scatter(&m, &Tensor::ones([3], opts), &d, n).is_none());
    }

    // where it does not apply, the caller's libtorch operation runs
    let x = Tensor::ones([3], (Kind::Double, Device::Cpu));
    assert!(fused::act(Activation::Silu, &x.to_kind(Kind::BFloat16)).is_none());
    fused::set_enabled(false);
    assert!(fused::act(Activation::Silu, &x).is_none());

    // whole models: the same energies, forces and parameter gradients of E² + 10 F² (float64)
    // EGNN as HydraGNN builds it (ReLU inside, no envelope, the distance as the only edge
    // input): the architecture timed against upstream (`--models egnn-hydragnn`)
    let hydragnn_egnn = |c: &mut ModelConfig| {
        c.conv_activation = Some(Activation::Relu);
        c.envelope = Envelope::Hard;
        c.egnn.edge_rbf = false;
    };
    let tanh = |c: &mut ModelConfig| c.activation_function = Activation::Tanh;
    let keep = |_: &mut ModelConfig| {};
    type Edit<'a> = &'a dyn Fn(&mut ModelConfig);
    let cases: [(MpnnType, &str, Edit); 5] = [
        (MpnnType::SchNet, "", &keep),
        (MpnnType::PaiNN, "", &keep),
        (MpnnType::Egnn, "", &keep),
        (MpnnType::Egnn, "tanh", &tanh),
        (MpnnType::Egnn, "as HydraGNN's", &hydragnn_egnn),
    ];
    for (mpnn, act, edit) in cases {
        let (m, paired) = rewrite_case(mpnn, edit);
        // and the edge-major path (no pairing: PaiNN's per-edge filters)
        let unpaired = pair_graph(
            &m,
            &[
                common::rattled_cuni(1),
                common::cuni_cluster(),
                common::rattled_cuni(2),
            ],
            false,
        );
        for (g, layout) in [(paired, "paired"), (unpaired, "unpaired")] {
            let energy =
                |m: &mlip::Model, g: &mlip::model::GraphTensors| m.forward(g, None).unwrap().energy;
            fused::set_enabled(false);
            let (e0, f0, p0) = energy_force_grads(&m, &g, energy);
            fused::set_enabled(true);
            let (e1, f1, p1) = energy_force_grads(&m, &g, energy);
            let label = format!("{mpnn:?} {act} {layout}");
            assert!(rel_max(&e1, &e0) < 1e-13, "{label}: energies differ");
            assert!(rel_max(&f1, &f0) < 1e-12, "{label}: forces differ");
            assert!(f0.abs().max().double_value(&[]) > 0.0);
            let mut nonzero = 0;
            for (k, (a, b)) in p1.iter().zip(&p0).enumerate() {
                if b.abs().max().double_value(&[]) > 0.0 {
                    nonzero += 1;
                }
                let err = rel_max(a, b);
                assert!(err < 1e-12, "{label}: gradient of parameter {k}: {err}");
            }
            assert!(nonzero > 3, "{label}: too few parameters with gradients");
        }
    }
}
