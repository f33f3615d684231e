//! Layer-by-layer evaluation (`hgnn_eval_*`): the caller exchanges ghost-atom features after
//! each forward layer and their gradients after each backward layer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mlip::{LayeredEval, Model};

use crate::compute::{hgnn_results_t, request, write_results};
use crate::graph::{hgnn_graph_t, Graph};
use crate::model::{hgnn_model_t, model_ref};
use crate::status::{arg, hgnn_status_t, null, out, wrap, Fail};

/// A layer-by-layer evaluation in progress (opaque). It shares its model: freeing the model
/// first is allowed (the evaluation keeps it alive).
pub struct hgnn_eval_t {
    // Declared before `_model`, so dropped first: `eval` borrows the model that `_model` keeps
    // alive.
    eval: LayeredEval<'static>,
    _model: Arc<Model>,
}

/// Starts a layer-by-layer evaluation of `graph` (every edge centre must be a local atom). The
/// graph's arrays are copied; the evaluation shares `model` (which may be freed before it, and
/// cannot change its evaluation path while it exists). Free with `hgnn_eval_free`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_begin(
    model: *const hgnn_model_t,
    graph: *const hgnn_graph_t,
    eval: *mut *mut hgnn_eval_t,
) -> hgnn_status_t {
    wrap(|| {
        let shared =
            Arc::clone(&crate::ensemble::single(model_ref(model)?, "hgnn_eval_begin")?.model);
        begin(shared, graph, eval)
    })
}

/// Starts a layer-by-layer evaluation of member `member` (0..K-1, `hgnn_model_ensemble_size`)
/// of an ensemble file, as `hgnn_eval_begin` does for a model file (member 0 of a model file is
/// the model). A committee in a domain-decomposed code evaluates each member this way, with its
/// own ghost exchange, and combines the members' results itself (mean, deviations). The
/// evaluation shares the member (the model may be freed before it).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_begin_member(
    model: *const hgnn_model_t,
    member: i32,
    graph: *const hgnn_graph_t,
    eval: *mut *mut hgnn_eval_t,
) -> hgnn_status_t {
    wrap(|| {
        let shared = crate::ensemble::member(model_ref(model)?, member)?;
        begin(shared, graph, eval)
    })
}

unsafe fn begin(
    shared: Arc<Model>,
    graph: *const hgnn_graph_t,
    eval: *mut *mut hgnn_eval_t,
) -> Result<(), Fail> {
    {
        let g = graph.as_ref().ok_or_else(|| null("graph"))?;
        let slot = out(eval, "eval")?;
        *slot = std::ptr::null_mut();
        let graph = Graph::read(g)?;
        // SAFETY: the model lives in the Arc's heap allocation, which `hgnn_eval_t::_model`
        // keeps alive (and in place) for as long as the evaluation that borrows it: the struct
        // drops `eval` before `_model`, and `hgnn_model_set_compress`, the one mutation, needs
        // the model unshared (`Arc::get_mut`), so it fails while this evaluation exists.
        let m: &'static Model = &*Arc::as_ptr(&shared);
        let e = LayeredEval::new(m, &graph.view())?;
        *slot = Box::into_raw(Box::new(hgnn_eval_t {
            eval: e,
            _model: shared,
        }));
        Ok(())
    }
}

/// Frees an evaluation (NULL is allowed).
#[no_mangle]
pub unsafe extern "C" fn hgnn_eval_free(eval: *mut hgnn_eval_t) {
    if !eval.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(eval))));
    }
}

pub(crate) unsafe fn eval_mut<'a>(
    e: *mut hgnn_eval_t,
) -> Result<&'a mut LayeredEval<'static>, Fail> {
    e.as_mut().map(|e| &mut e.eval).ok_or_else(|| null("eval"))
}

pub(crate) unsafe fn eval_ref<'a>(e: *const hgnn_eval_t) -> Result<&'a LayeredEval<'static>, Fail> {
    e.as_ref().map(|e| &e.eval).ok_or_else(|| null("eval"))
}

fn check_layer(layer: i32, max: usize) -> Result<usize, Fail> {
    if layer < 0 || layer as usize > max {
        return Err(arg(format!("layer {layer} is outside 0..={max}")));
    }
    Ok(layer as usize)
}

/// Points `*data` at one of the evaluation's per-layer buffers (n_total × `*width` doubles).
unsafe fn eval_buffer(
    eval: *mut hgnn_eval_t,
    layer: i32,
    data: *mut *mut f64,
    width: *mut i32,
    pick: for<'a> fn(&'a mut LayeredEval<'static>, usize) -> &'a mut [f64],
) -> hgnn_status_t {
    wrap(|| {
        let e = eval_mut(eval)?;
        let l = check_layer(layer, e.num_layers())?;
        *out(width, "width")? = e.width(l) as i32;
        *out(data, "data")? = pick(e, l).as_mut_ptr();
        Ok(())
    })
}

/// Node features entering layer `layer`: `*data` points to n_total × `*width` doubles owned by
/// the evaluation. Before `hgnn_eval_forward_layer(layer)` (layer > 0) the caller writes the
/// ghost rows (copies of their owners' rows).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_features(
    eval: *mut hgnn_eval_t,
    layer: i32,
    data: *mut *mut f64,
    width: *mut i32,
) -> hgnn_status_t {
    eval_buffer(eval, layer, data, width, |e, l| e.features_mut(l))
}

/// Gradient of the energy with respect to the features entering layer `layer`: after
/// `hgnn_eval_backward_layer(layer)` the caller adds the ghost rows into their owners' rows.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_grads(
    eval: *mut hgnn_eval_t,
    layer: i32,
    data: *mut *mut f64,
    width: *mut i32,
) -> hgnn_status_t {
    eval_buffer(eval, layer, data, width, |e, l| e.grads_mut(l))
}

/// Runs layer `layer` forward (layers in order 0, 1, ...).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_forward_layer(
    eval: *mut hgnn_eval_t,
    layer: i32,
) -> hgnn_status_t {
    wrap(|| {
        let e = eval_mut(eval)?;
        let l = check_layer(layer, e.num_layers())?;
        Ok(e.forward_layer(l)?)
    })
}

/// After the last forward layer: per-atom energies and the energy of the local atoms. For a
/// model whose energy is graph-level (`hgnn_model_energy_is_pooled`), the energy written is 0
/// and `hgnn_eval_reduce` comes next.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_readout(
    eval: *mut hgnn_eval_t,
    energy: *mut f64,
) -> hgnn_status_t {
    wrap(|| {
        let e = eval_mut(eval)?;
        let v = e.readout()?;
        if !energy.is_null() {
            *energy = v;
        }
        Ok(())
    })
}

/// Runs layer `layer` backward (layers in order num_layers-1, ..., 0).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_backward_layer(
    eval: *mut hgnn_eval_t,
    layer: i32,
) -> hgnn_status_t {
    wrap(|| {
        let e = eval_mut(eval)?;
        let l = check_layer(layer, e.num_layers())?;
        Ok(e.backward_layer(l)?)
    })
}

/// After the backward pass through layer 0: writes the requested results (forces and virials for
/// all n_total atoms, energies for local atoms).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_eval_results(
    eval: *mut hgnn_eval_t,
    results: *mut hgnn_results_t,
) -> hgnn_status_t {
    wrap(|| {
        let e = eval_mut(eval)?;
        let r = out(results, "results")?;
        let res = e.results(request(r))?;
        write_results(&res, r, e.n_total(), e.n_local());
        Ok(())
    })
}
