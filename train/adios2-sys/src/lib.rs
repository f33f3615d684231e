//! Thin hand-written `extern "C"` declarations for the subset of the ADIOS2 C API (`adios2_c.h`,
//! checked against ADIOS2 2.12.1) that hydragnn-rs uses: serial init, IO, engines, global array
//! variables with selections, and attributes. No logic lives here; the safe RAII wrapper is
//! `hydragnn_train::data::adios`.
//!
//! C enums are `int` on every ABI the project targets, so each enum is a `c_int` alias plus the
//! constants it takes. The serial entry point `adios2_init_serial` exists in both the serial and
//! the MPI builds of the library, so an HPC site's MPI build links the same way.
#![allow(non_camel_case_types, non_upper_case_globals)]

use std::os::raw::{c_char, c_int, c_void};

/// Opaque `adios2_adios` handle (the factory).
#[repr(C)]
pub struct adios2_adios {
    _private: [u8; 0],
}
/// Opaque `adios2_io` handle (a group of variables and attributes plus engine settings).
#[repr(C)]
pub struct adios2_io {
    _private: [u8; 0],
}
/// Opaque `adios2_variable` handle.
#[repr(C)]
pub struct adios2_variable {
    _private: [u8; 0],
}
/// Opaque `adios2_attribute` handle.
#[repr(C)]
pub struct adios2_attribute {
    _private: [u8; 0],
}
/// Opaque `adios2_engine` handle (an open file or stream).
#[repr(C)]
pub struct adios2_engine {
    _private: [u8; 0],
}

/// `adios2_error`: status returned by every function that does not return a handle.
pub type adios2_error = c_int;
/// Success.
pub const adios2_error_none: adios2_error = 0;
/// User input error.
pub const adios2_error_invalid_argument: adios2_error = 1;
/// Low-level system error, e.g. system IO error.
pub const adios2_error_system_error: adios2_error = 2;
/// Runtime error other than a system error.
pub const adios2_error_runtime_error: adios2_error = 3;
/// Any other exception.
pub const adios2_error_exception: adios2_error = 4;

/// `adios2_bool`.
pub type adios2_bool = c_int;
/// False.
pub const adios2_false: adios2_bool = 0;
/// True.
pub const adios2_true: adios2_bool = 1;

/// `adios2_constant_dims`.
pub type adios2_constant_dims = c_int;
/// Shape, start and count may change after definition.
pub const adios2_constant_dims_false: adios2_constant_dims = 0;
/// Shape, start and count are fixed at definition.
pub const adios2_constant_dims_true: adios2_constant_dims = 1;

/// `adios2_type`: element type of a variable or attribute.
pub type adios2_type = c_int;
/// Unknown type.
pub const adios2_type_unknown: adios2_type = -1;
/// String (`char*`; arrays of strings are `char**`).
pub const adios2_type_string: adios2_type = 0;
/// `float`.
pub const adios2_type_float: adios2_type = 1;
/// `double`.
pub const adios2_type_double: adios2_type = 2;
/// `int8_t`.
pub const adios2_type_int8_t: adios2_type = 5;
/// `int16_t`.
pub const adios2_type_int16_t: adios2_type = 6;
/// `int32_t`.
pub const adios2_type_int32_t: adios2_type = 7;
/// `int64_t`.
pub const adios2_type_int64_t: adios2_type = 8;
/// `uint8_t`.
pub const adios2_type_uint8_t: adios2_type = 9;
/// `uint16_t`.
pub const adios2_type_uint16_t: adios2_type = 10;
/// `uint32_t`.
pub const adios2_type_uint32_t: adios2_type = 11;
/// `uint64_t`.
pub const adios2_type_uint64_t: adios2_type = 12;

/// `adios2_mode`: open modes and put/get launch modes share one enum.
pub type adios2_mode = c_int;
/// Undefined.
pub const adios2_mode_undefined: adios2_mode = 0;
/// Open for writing (truncates).
pub const adios2_mode_write: adios2_mode = 1;
/// Open for step-by-step (streaming) reading.
pub const adios2_mode_read: adios2_mode = 2;
/// Open for appending steps.
pub const adios2_mode_append: adios2_mode = 3;
/// Open a file for random access reading: every step and variable available, no begin/end step.
pub const adios2_mode_readRandomAccess: adios2_mode = 6;
/// Put/get launch: lazy, data used at perform_puts/gets, end_step or close.
pub const adios2_mode_deferred: adios2_mode = 4;
/// Put/get launch: data consumed (put) or filled (get) before the call returns.
pub const adios2_mode_sync: adios2_mode = 5;

/// `adios2_step_mode`.
pub type adios2_step_mode = c_int;
/// Writer: append a step.
pub const adios2_step_mode_append: adios2_step_mode = 0;
/// Writer: update a step.
pub const adios2_step_mode_update: adios2_step_mode = 1;
/// Reader: read the next step.
pub const adios2_step_mode_read: adios2_step_mode = 2;

/// `adios2_step_status`.
pub type adios2_step_status = c_int;
/// Any other error.
pub const adios2_step_status_other_error: adios2_step_status = -1;
/// A step is available.
pub const adios2_step_status_ok: adios2_step_status = 0;
/// Not ready yet (streams).
pub const adios2_step_status_not_ready: adios2_step_status = 1;
/// No more steps.
pub const adios2_step_status_end_of_stream: adios2_step_status = 2;

/// `adios2_shapeid`.
pub type adios2_shapeid = c_int;
/// Unknown.
pub const adios2_shapeid_unknown: adios2_shapeid = -1;
/// A single global value.
pub const adios2_shapeid_global_value: adios2_shapeid = 0;
/// A global array with a shape.
pub const adios2_shapeid_global_array: adios2_shapeid = 1;
/// A joined array.
pub const adios2_shapeid_joined_array: adios2_shapeid = 2;
/// A local value.
pub const adios2_shapeid_local_value: adios2_shapeid = 3;
/// A local array.
pub const adios2_shapeid_local_array: adios2_shapeid = 4;

extern "C" {
    // ---- adios2_c_adios.h
    /// Starts the serial ADIOS2 library; NULL on failure.
    pub fn adios2_init_serial() -> *mut adios2_adios;
    /// Declares a new IO (group of variables, attributes, engine parameters); NULL on failure.
    pub fn adios2_declare_io(adios: *mut adios2_adios, name: *const c_char) -> *mut adios2_io;
    /// Frees everything the factory created; closes open engines.
    pub fn adios2_finalize(adios: *mut adios2_adios) -> adios2_error;

    // ---- adios2_c_io.h
    /// Sets the engine type ("BP5", "BP4", "File", ...).
    pub fn adios2_set_engine(io: *mut adios2_io, engine_type: *const c_char) -> adios2_error;
    /// Sets one engine parameter.
    pub fn adios2_set_parameter(
        io: *mut adios2_io,
        key: *const c_char,
        value: *const c_char,
    ) -> adios2_error;
    /// Defines a variable; for a global array `shape` is the global size and `start`/`count` the
    /// block this process writes. NULL on failure.
    pub fn adios2_define_variable(
        io: *mut adios2_io,
        name: *const c_char,
        type_: adios2_type,
        ndims: usize,
        shape: *const usize,
        start: *const usize,
        count: *const usize,
        constant_dims: adios2_constant_dims,
    ) -> *mut adios2_variable;
    /// Finds a variable (in read mode: one present in the file); NULL when absent.
    pub fn adios2_inquire_variable(io: *mut adios2_io, name: *const c_char)
        -> *mut adios2_variable;
    /// Defines a single-value attribute (`value` is `const char*` for strings). NULL on failure.
    pub fn adios2_define_attribute(
        io: *mut adios2_io,
        name: *const c_char,
        type_: adios2_type,
        value: *const c_void,
    ) -> *mut adios2_attribute;
    /// Defines an array attribute (`data` is `const char**` for strings). NULL on failure.
    pub fn adios2_define_attribute_array(
        io: *mut adios2_io,
        name: *const c_char,
        type_: adios2_type,
        data: *const c_void,
        size: usize,
    ) -> *mut adios2_attribute;
    /// Finds an attribute; NULL when absent.
    pub fn adios2_inquire_attribute(
        io: *mut adios2_io,
        name: *const c_char,
    ) -> *mut adios2_attribute;
    /// Opens an engine on `name` (a file or directory path). NULL on failure.
    pub fn adios2_open(
        io: *mut adios2_io,
        name: *const c_char,
        mode: adios2_mode,
    ) -> *mut adios2_engine;

    // ---- adios2_c_engine.h
    /// Puts data of a variable (`launch`: deferred or sync).
    pub fn adios2_put(
        engine: *mut adios2_engine,
        variable: *mut adios2_variable,
        data: *const c_void,
        launch: adios2_mode,
    ) -> adios2_error;
    /// Gets data of a variable's current selection into `data` (`launch`: deferred or sync).
    pub fn adios2_get(
        engine: *mut adios2_engine,
        variable: *mut adios2_variable,
        data: *mut c_void,
        launch: adios2_mode,
    ) -> adios2_error;
    /// Closes the engine (flushes everything for writers).
    pub fn adios2_close(engine: *mut adios2_engine) -> adios2_error;

    // ---- adios2_c_variable.h
    /// Selects the box `start`/`count` for the next get.
    pub fn adios2_set_selection(
        variable: *mut adios2_variable,
        ndims: usize,
        start: *const usize,
        count: *const usize,
    ) -> adios2_error;
    /// Selects steps for the next get (random-access reading).
    pub fn adios2_set_step_selection(
        variable: *mut adios2_variable,
        step_start: usize,
        step_count: usize,
    ) -> adios2_error;
    /// Element type of a variable.
    pub fn adios2_variable_type(
        type_: *mut adios2_type,
        variable: *const adios2_variable,
    ) -> adios2_error;
    /// Number of dimensions of a variable.
    pub fn adios2_variable_ndims(
        ndims: *mut usize,
        variable: *const adios2_variable,
    ) -> adios2_error;
    /// Global shape of a variable (`shape` must hold `ndims` values).
    pub fn adios2_variable_shape(
        shape: *mut usize,
        variable: *const adios2_variable,
    ) -> adios2_error;

    // ---- adios2_c_attribute.h
    /// Element type of an attribute.
    pub fn adios2_attribute_type(
        type_: *mut adios2_type,
        attribute: *const adios2_attribute,
    ) -> adios2_error;
    /// Whether an attribute is a single value (true) or an array.
    pub fn adios2_attribute_is_value(
        result: *mut adios2_bool,
        attribute: *const adios2_attribute,
    ) -> adios2_error;
    /// Number of elements of an attribute (1 for a single value).
    pub fn adios2_attribute_size(
        size: *mut usize,
        attribute: *const adios2_attribute,
    ) -> adios2_error;
    /// Copies a numeric attribute's data into `data` (pre-allocated).
    pub fn adios2_attribute_data(
        data: *mut c_void,
        size: *mut usize,
        attribute: *const adios2_attribute,
    ) -> adios2_error;
    /// Two-call read of a single-value string attribute (length excludes the NUL).
    pub fn adios2_attribute_string_data(
        attribute: *const adios2_attribute,
        data: *mut c_char,
        length: *mut usize,
    ) -> adios2_error;
    /// Two-call read of a string array attribute (lengths exclude the NULs).
    pub fn adios2_attribute_string_data_array(
        attribute: *const adios2_attribute,
        data: *mut *mut c_char,
        lengths: *mut usize,
    ) -> adios2_error;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    /// The library links and loads (rpath set by build.rs), and a write + random-access read of a
    /// small global array round-trips through the raw API.
    #[test]
    fn links_and_roundtrips_raw() {
        let dir = std::env::temp_dir().join(format!("adios2-sys-test-{}.bp", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = CString::new(dir.to_str().unwrap()).unwrap();
        unsafe {
            let ad = adios2_init_serial();
            assert!(!ad.is_null());
            let io = adios2_declare_io(ad, c"w".as_ptr());
            assert!(!io.is_null());
            let shape = [4usize];
            let start = [0usize];
            let var = adios2_define_variable(
                io,
                c"x".as_ptr(),
                adios2_type_double,
                1,
                shape.as_ptr(),
                start.as_ptr(),
                shape.as_ptr(),
                adios2_constant_dims_true,
            );
            assert!(!var.is_null());
            let eng = adios2_open(io, path.as_ptr(), adios2_mode_write);
            assert!(!eng.is_null());
            let data = [1.0f64, 2.0, 3.0, 4.0];
            assert_eq!(
                adios2_put(eng, var, data.as_ptr().cast(), adios2_mode_sync),
                adios2_error_none
            );
            assert_eq!(adios2_close(eng), adios2_error_none);

            let io = adios2_declare_io(ad, c"r".as_ptr());
            let eng = adios2_open(io, path.as_ptr(), adios2_mode_readRandomAccess);
            assert!(!eng.is_null());
            let var = adios2_inquire_variable(io, c"x".as_ptr());
            assert!(!var.is_null());
            let mut got = [0.0f64; 2];
            let (s, c) = ([1usize], [2usize]);
            assert_eq!(
                adios2_set_selection(var, 1, s.as_ptr(), c.as_ptr()),
                adios2_error_none
            );
            assert_eq!(
                adios2_get(eng, var, got.as_mut_ptr().cast(), adios2_mode_sync),
                adios2_error_none
            );
            assert_eq!(got, [2.0, 3.0]);
            assert_eq!(adios2_close(eng), adios2_error_none);
            assert_eq!(adios2_finalize(ad), adios2_error_none);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every enum constant declared here equals the value in the adios2_c_types.h of the library
    /// linked (when build.rs found that header next to it).
    #[test]
    fn constants_match_header() {
        let Some(h) = option_env!("ADIOS2_C_TYPES_H") else {
            return;
        };
        let text = std::fs::read_to_string(h).unwrap();
        let ours: &[(&str, i32)] = &[
            ("adios2_error_none", adios2_error_none),
            (
                "adios2_error_invalid_argument",
                adios2_error_invalid_argument,
            ),
            ("adios2_error_system_error", adios2_error_system_error),
            ("adios2_error_runtime_error", adios2_error_runtime_error),
            ("adios2_error_exception", adios2_error_exception),
            ("adios2_false", adios2_false),
            ("adios2_true", adios2_true),
            ("adios2_constant_dims_false", adios2_constant_dims_false),
            ("adios2_constant_dims_true", adios2_constant_dims_true),
            ("adios2_type_unknown", adios2_type_unknown),
            ("adios2_type_string", adios2_type_string),
            ("adios2_type_float", adios2_type_float),
            ("adios2_type_double", adios2_type_double),
            ("adios2_type_int8_t", adios2_type_int8_t),
            ("adios2_type_int16_t", adios2_type_int16_t),
            ("adios2_type_int32_t", adios2_type_int32_t),
            ("adios2_type_int64_t", adios2_type_int64_t),
            ("adios2_type_uint8_t", adios2_type_uint8_t),
            ("adios2_type_uint16_t", adios2_type_uint16_t),
            ("adios2_type_uint32_t", adios2_type_uint32_t),
            ("adios2_type_uint64_t", adios2_type_uint64_t),
            ("adios2_mode_undefined", adios2_mode_undefined),
            ("adios2_mode_write", adios2_mode_write),
            ("adios2_mode_read", adios2_mode_read),
            ("adios2_mode_append", adios2_mode_append),
            ("adios2_mode_readRandomAccess", adios2_mode_readRandomAccess),
            ("adios2_mode_deferred", adios2_mode_deferred),
            ("adios2_mode_sync", adios2_mode_sync),
            ("adios2_step_mode_append", adios2_step_mode_append),
            ("adios2_step_mode_update", adios2_step_mode_update),
            ("adios2_step_mode_read", adios2_step_mode_read),
            (
                "adios2_step_status_other_error",
                adios2_step_status_other_error,
            ),
            ("adios2_step_status_ok", adios2_step_status_ok),
            ("adios2_step_status_not_ready", adios2_step_status_not_ready),
            (
                "adios2_step_status_end_of_stream",
                adios2_step_status_end_of_stream,
            ),
            ("adios2_shapeid_unknown", adios2_shapeid_unknown),
            ("adios2_shapeid_global_value", adios2_shapeid_global_value),
            ("adios2_shapeid_global_array", adios2_shapeid_global_array),
            ("adios2_shapeid_joined_array", adios2_shapeid_joined_array),
            ("adios2_shapeid_local_value", adios2_shapeid_local_value),
            ("adios2_shapeid_local_array", adios2_shapeid_local_array),
        ];
        for (name, value) in ours {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} =")))
                .unwrap_or_else(|| panic!("{name} not in {h}"));
            let v: i32 = line
                .split('=')
                .nth(1)
                .unwrap()
                .trim()
                .trim_end_matches(',')
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',')
                .parse()
                .unwrap();
            assert_eq!(v, *value, "{name}");
        }
    }
}
