//! Per-structure attributes a model is conditioned on (HydraGNN's graph attributes: total charge
//! and spin): which ones (`hgnn_model_num_graph_attr`, `hgnn_model_graph_attr_name`) and their
//! values for the evaluations that follow (`hgnn_model_set_graph_attr`).

use std::ffi::c_char;
use std::sync::Arc;

use crate::model::{hgnn_model_t, item, model_ref};
use crate::status::{arg, count, hgnn_status_t, null, out, slice, wrap};

/// The number of per-structure attributes the model is conditioned on (0 for most models; 2,
/// charge and spin, for HydraGNN's conditioned foundation models).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_num_graph_attr(
    model: *const hgnn_model_t,
    num: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(num, "num")? = model_ref(model)?.graph_attr_names.len() as i32;
        Ok(())
    })
}

/// The name of attribute `index` (0..num_graph_attr), e.g. "charge"; lives as long as the model.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_graph_attr_name(
    model: *const hgnn_model_t,
    index: i32,
    name: *mut *const c_char,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let slot = out(name, "name")?;
        *slot =
            h.graph_attr_names[item(index, h.graph_attr_names.len(), "graph attribute")?].as_ptr();
        Ok(())
    })
}

/// Sets the per-structure attributes (`n` values in `hgnn_model_graph_attr_name` order, e.g.
/// total charge and spin) used by every evaluation that follows, for every structure of a batch.
/// A model conditioned on them refuses to evaluate until they are set. Not to be called while
/// an evaluation (`hgnn_eval_*`) of this model is in progress.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_set_graph_attr(
    model: *mut hgnn_model_t,
    values: *const f64,
    n: i64,
) -> hgnn_status_t {
    wrap(|| {
        let h = model.as_mut().ok_or_else(|| null("model"))?;
        let v = slice(values, count(n, "n")?, "values")?;
        let m = Arc::get_mut(&mut h.model).ok_or_else(|| {
            arg("the graph attributes cannot change while an evaluation (hgnn_eval_*) of this model is in progress: free it first".into())
        })?;
        m.set_graph_attr(v)?;
        // every member of an ensemble is conditioned alike
        crate::ensemble::for_rest(&mut h.ensemble, |x| Ok(x.set_graph_attr(v)?))
    })
}
