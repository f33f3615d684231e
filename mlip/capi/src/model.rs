//! Loading a model, choosing its evaluation path, and what it says about itself.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mlip::{Model, Precision};

use crate::options::*;
use crate::status::{arg, hgnn_status_t, null, out, wrap, Fail, HGNN_ERROR_INTERNAL};

/// A loaded model (opaque).
pub struct hgnn_model_t {
    /// Shared with the evaluations in progress (`hgnn_eval_t`).
    pub(crate) model: Arc<Model>,
    info: CString,
    path: CString,
    /// The evaluation path in words (`hgnn_model_path_description`).
    path_description: CString,
    /// Element symbols of the species, in the model's order.
    symbols: Vec<CString>,
    /// Names of the output branches.
    branches: Vec<CString>,
    /// The LAMMPS unit style of the model's quantities.
    lammps_units: CString,
    /// Names of the active branch's heads.
    pub(crate) head_names: Vec<CString>,
    /// Names of the per-structure attributes the model is conditioned on (charge, spin).
    pub(crate) graph_attr_names: Vec<CString>,
    /// The other members of an ensemble file (none for a model file) and the drive.
    pub(crate) ensemble: crate::ensemble::Members,
}

fn c_string(s: &str, what: &str) -> Result<CString, Fail> {
    CString::new(s).map_err(|_| arg(format!("{what} contains a NUL byte")))
}

/// Loads a model file. `options` may be NULL (defaults). On success `*model` owns the model;
/// release it with `hgnn_model_free`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_load(
    path: *const c_char,
    options: *const hgnn_options_t,
    model: *mut *mut hgnn_model_t,
) -> hgnn_status_t {
    wrap(|| {
        if path.is_null() {
            return Err(null("path"));
        }
        if model.is_null() {
            return Err(null("model"));
        }
        *model = std::ptr::null_mut();
        let path = CStr::from_ptr(path)
            .to_str()
            .map_err(|_| arg("path is not valid UTF-8".into()))?;
        let opts = if options.is_null() {
            hgnn_options_default()
        } else {
            *options
        };
        let kind = precision_of(opts.dtype)?.kind();
        let device = match opts.device {
            HGNN_DEVICE_CPU => tch::Device::Cpu,
            HGNN_DEVICE_CUDA => {
                if !tch::Cuda::is_available() {
                    return Err(arg(
                        "device cuda requested but no CUDA device is available".into()
                    ));
                }
                tch::Device::Cuda(0)
            }
            d => {
                return Err(arg(format!(
                    "device must be HGNN_DEVICE_CPU (0) or HGNN_DEVICE_CUDA (1), got {d}"
                )))
            }
        };
        if opts.num_threads > 0 {
            mlip::compute::set_num_threads(opts.num_threads)?;
        } else if opts.num_threads == 0 {
            mlip::compute::threads_from_env()?;
        } else {
            return Err(arg(format!(
                "num_threads must be >= 0, got {}",
                opts.num_threads
            )));
        }
        let (mut m, mut members) =
            mlip::compute::guarded(|| crate::ensemble::load(path, kind, device))?;
        if !opts.branch.is_null() {
            let b = CStr::from_ptr(opts.branch)
                .to_str()
                .map_err(|_| arg("branch is not valid UTF-8".into()))?;
            m.set_branch(b)?;
            crate::ensemble::for_rest(&mut members, |x| Ok(x.set_branch(b)?))?;
        }
        let info = m
            .metadata
            .get("info")
            .cloned()
            .unwrap_or_else(|| "{}".into());
        // the LAMMPS unit style the info states (every file so far: "metal", also the default)
        let lammps_units = serde_json::from_str::<serde_json::Value>(&info)
            .ok()
            .and_then(|j| j["units"]["lammps"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "metal".into());
        let info = c_string(&info, "model info")?;
        let symbols = m
            .species()
            .iter()
            .map(|&z| c_string(mlip::elements::symbol(z), "an element symbol"))
            .collect::<Result<Vec<_>, _>>()?;
        let branches = m
            .branch_names()
            .iter()
            .map(|b| c_string(b, "a branch name"))
            .collect::<Result<Vec<_>, _>>()?;
        let head_names = m.config().branches[m.active_branch()]
            .output_heads
            .iter()
            .map(|h| c_string(&h.name, "a head name"))
            .collect::<Result<Vec<_>, _>>()?;
        let graph_attr_names = m
            .graph_attr_names()
            .iter()
            .map(|n| c_string(n, "a graph attribute name"))
            .collect::<Result<Vec<_>, _>>()?;
        let compress = match std::env::var("HYDRAGNN_COMPRESS").as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("1") | Ok("yes") | Ok("on") => true,
            Ok("0") | Ok("no") | Ok("off") => false,
            Ok(v) => return Err(arg(format!("HYDRAGNN_COMPRESS='{v}' must be yes/no (1/0)"))),
        };
        // An Arc although Model is not Sync: C clients may free a model and its evaluations on
        // different threads, and the count must stay right then.
        #[allow(clippy::arc_with_non_send_sync)]
        let m = Arc::new(m);
        let mut h = hgnn_model_t {
            model: m,
            info,
            path: CString::default(),
            path_description: CString::default(),
            symbols,
            branches,
            lammps_units: c_string(&lammps_units, "the units")?,
            head_names,
            graph_attr_names,
            ensemble: members,
        };
        select_path(&mut h, compress, mlip::fast::DEFAULT_TOLERANCE)?;
        *model = Box::into_raw(Box::new(h));
        Ok(())
    })
}

/// Turns the fast path on (where the backbone has one) or off, and records which path runs.
fn select_path(h: &mut hgnn_model_t, compress: bool, tol: f64) -> Result<(), Fail> {
    let model =
        Arc::get_mut(&mut h.model).ok_or_else(|| {
            arg("the evaluation path cannot change while an evaluation (hgnn_eval_*) of this model \
             is in progress: free it first"
            .into())
        })?;
    // the other members of an ensemble take the same path (each keeps the exact path where its
    // backbone has no fast one)
    crate::ensemble::for_rest(&mut h.ensemble, |m| {
        if compress && m.device() == tch::Device::Cpu {
            match m.enable_fast(tol) {
                Ok(_) | Err(mlip::Error::InvalidInput(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        } else {
            m.disable_fast();
            Ok(())
        }
    })?;
    let desc = if compress && model.device() != tch::Device::Cpu {
        model.disable_fast();
        let why = "the fast path runs on the CPU; on a GPU the model runs in libtorch";
        serde_json::json!({"path": "exact", "reason": why, "description": format!("exact path (autograd): {why}")})
    } else if compress {
        match model.enable_fast(tol) {
            Ok(i) => serde_json::json!({
                "path": "fast",
                "table_tolerance": tol,
                "table_rel_error": i.rel_error,
                "table_abs_error": i.abs_error,
                "table_abs_error_derivative": i.abs_error_deriv,
                "table_spacing": i.spacing,
                "table_bytes": i.table_bytes,
                "flops_per_edge": i.flops_per_edge,
                "flops_per_atom": i.flops_per_node,
                "description": i.describe(),
            }),
            Err(mlip::Error::InvalidInput(why)) => {
                model.disable_fast();
                serde_json::json!({"path": "exact", "reason": why, "description": format!("exact path (autograd): {why}")})
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        model.disable_fast();
        serde_json::json!({"path": "exact", "reason": "compression off", "description": "exact path (autograd): compression turned off"})
    };
    h.path_description = c_string(
        desc["description"].as_str().unwrap_or_default(),
        "path description",
    )?;
    h.path = c_string(&desc.to_string(), "path description")?;
    Ok(())
}

/// Chooses the evaluation path. `compress` = 1: the fast path (radial filters tabulated to
/// relative error `tolerance`, or the default 1e-8 when `tolerance` <= 0; fused kernels), where
/// the model's backbone has one, else the exact path; 0: the exact path (libtorch autograd).
/// Models load on the fast path unless the environment sets `HYDRAGNN_COMPRESS=0`. Not to be
/// called while an evaluation (`hgnn_eval_*`) of this model is in progress (fails with
/// `HGNN_ERROR_INVALID_ARGUMENT` then).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_set_compress(
    model: *mut hgnn_model_t,
    compress: i32,
    tolerance: f64,
) -> hgnn_status_t {
    wrap(|| {
        let h = model.as_mut().ok_or_else(|| null("model"))?;
        let tol = if tolerance > 0.0 {
            tolerance
        } else {
            mlip::fast::DEFAULT_TOLERANCE
        };
        if tol.is_nan() || tol >= 1e-2 {
            return Err(arg(format!(
                "tolerance must be below 1e-2, got {tolerance}"
            )));
        }
        select_path(h, compress != 0, tol)
    })
}

/// Which evaluation path runs, as JSON: `{"path": "fast" | "exact", "description": ...}` plus,
/// on the fast path, the tables' errors (`table_rel_error`, `table_abs_error`, ...) and the work
/// per edge and per atom; on the exact path the `reason`. Lives until the next
/// `hgnn_model_set_compress` or `hgnn_model_free`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_path(
    model: *const hgnn_model_t,
    json: *mut *const c_char,
) -> hgnn_status_t {
    wrap(|| {
        *out(json, "json")? = model_ref(model)?.path.as_ptr();
        Ok(())
    })
}

/// Frees a model (NULL is allowed).
#[no_mangle]
pub unsafe extern "C" fn hgnn_model_free(model: *mut hgnn_model_t) {
    if !model.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(model))));
    }
}

pub(crate) unsafe fn model_ref<'a>(m: *const hgnn_model_t) -> Result<&'a hgnn_model_t, Fail> {
    m.as_ref().ok_or_else(|| null("model"))
}

/// The model's cutoff radius (Å).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_cutoff(
    model: *const hgnn_model_t,
    cutoff: *mut f64,
) -> hgnn_status_t {
    wrap(|| {
        *out(cutoff, "cutoff")? = model_ref(model)?.model.cutoff();
        Ok(())
    })
}

/// The number of message-passing layers.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_num_layers(
    model: *const hgnn_model_t,
    num_layers: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(num_layers, "num_layers")? = model_ref(model)?.model.num_layers() as i32;
        Ok(())
    })
}

/// The number of species (elements) the model knows.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_num_species(
    model: *const hgnn_model_t,
    num_species: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(num_species, "num_species")? = model_ref(model)?.model.species().len() as i32;
        Ok(())
    })
}

/// Writes the model's atomic numbers into `atomic_numbers` (room for `capacity` values).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_species(
    model: *const hgnn_model_t,
    atomic_numbers: *mut i32,
    capacity: i32,
) -> hgnn_status_t {
    wrap(|| {
        let sp = model_ref(model)?.model.species();
        if (capacity as i64) < sp.len() as i64 {
            return Err(arg(format!(
                "capacity {capacity} is smaller than the number of species {}",
                sp.len()
            )));
        }
        if atomic_numbers.is_null() {
            return Err(null("atomic_numbers"));
        }
        std::slice::from_raw_parts_mut(atomic_numbers, sp.len()).copy_from_slice(sp);
        Ok(())
    })
}

/// Number of values per atom in the node features entering layer `layer` (0..=num_layers): the
/// size of one atom's message in the ghost exchange of `hgnn_eval_*`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_feature_width(
    model: *const hgnn_model_t,
    layer: i32,
    width: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        let m = &model_ref(model)?.model;
        if layer < 0 || layer as usize > m.num_layers() {
            return Err(arg(format!(
                "layer {layer} is outside 0..={}",
                m.num_layers()
            )));
        }
        *out(width, "width")? = m.backbone().width(layer as usize) as i32;
        Ok(())
    })
}

/// The model's self-description as JSON (cutoff, species, units, dtype, branches, provenance);
/// the string lives as long as the model.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_info(
    model: *const hgnn_model_t,
    json: *mut *const c_char,
) -> hgnn_status_t {
    wrap(|| {
        *out(json, "json")? = model_ref(model)?.info.as_ptr();
        Ok(())
    })
}

/// Checks `index` against `len` items.
pub(crate) fn item(index: i32, len: usize, what: &str) -> Result<usize, Fail> {
    usize::try_from(index)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| arg(format!("{what} index {index} is outside 0..{len}")))
}

/// The element symbol of species `index` (0..num_species, in the order of `hgnn_model_species`),
/// e.g. "Cu"; the string lives as long as the model.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_species_symbol(
    model: *const hgnn_model_t,
    index: i32,
    symbol: *mut *const c_char,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let slot = out(symbol, "symbol")?;
        *slot = h.symbols[item(index, h.symbols.len(), "species")?].as_ptr();
        Ok(())
    })
}

/// The LAMMPS unit style of the model's quantities ("metal": eV, Å); the string lives as long as
/// the model.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_lammps_units(
    model: *const hgnn_model_t,
    units: *mut *const c_char,
) -> hgnn_status_t {
    wrap(|| {
        *out(units, "units")? = model_ref(model)?.lammps_units.as_ptr();
        Ok(())
    })
}

/// The precision the model computes in: `HGNN_DTYPE_FLOAT32` or `HGNN_DTYPE_FLOAT64`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_precision(
    model: *const hgnn_model_t,
    dtype: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        let kind = model_ref(model)?.model.kind();
        let p = Precision::from_kind(kind)
            .ok_or_else(|| Fail(HGNN_ERROR_INTERNAL, format!("model in kind {kind:?}")))?;
        *out(dtype, "dtype")? = dtype_of(p);
        Ok(())
    })
}

/// The number of output branches (heads).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_num_branches(
    model: *const hgnn_model_t,
    num_branches: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(num_branches, "num_branches")? = model_ref(model)?.branches.len() as i32;
        Ok(())
    })
}

/// The name of branch `index` (0..num_branches); the string lives as long as the model.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_branch_name(
    model: *const hgnn_model_t,
    index: i32,
    name: *mut *const c_char,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let slot = out(name, "name")?;
        *slot = h.branches[item(index, h.branches.len(), "branch")?].as_ptr();
        Ok(())
    })
}

/// The index of the branch the model evaluates (`hgnn_options_t::branch`, else 0).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_active_branch(
    model: *const hgnn_model_t,
    index: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(index, "index")? = model_ref(model)?.model.active_branch() as i32;
        Ok(())
    })
}

/// The evaluation path in words (the `description` of `hgnn_model_path`). Lives until the next
/// `hgnn_model_set_compress` or `hgnn_model_free`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_path_description(
    model: *const hgnn_model_t,
    description: *mut *const c_char,
) -> hgnn_status_t {
    wrap(|| {
        *out(description, "description")? = model_ref(model)?.path_description.as_ptr();
        Ok(())
    })
}
