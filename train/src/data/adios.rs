//! Safe RAII wrapper over the `adios2-sys` binding: a [`Writer`] that puts whole global arrays and
//! attributes into a BP5 file, and a [`Reader`] that opens a BP file for random access and reads
//! box selections (`start`/`count`) of global arrays. Every error names the file and the variable
//! or attribute.
//!
//! Each `Writer`/`Reader` owns its own ADIOS2 factory ([`Adios`]) and one IO, so they can be
//! created and dropped independently; the engine is closed before the factory is finalized. The
//! handles are raw pointers into a library that is not thread-safe: a `Writer` or `Reader` may be
//! moved to another thread (`Send`) but not shared between threads (not `Sync`).
//!
//! Files are written in one step and read in `adios2_mode_readRandomAccess`, where every variable
//! of the (single) step is visible after `open` without `begin_step`/`end_step`, and any number of
//! selections may be read, each with a synchronous get.

use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::path::{Path, PathBuf};

use adios2_sys as sys;

use super::error::{DataError, Result};

/// An element type that ADIOS2 stores natively.
pub trait AdiosType: Copy + Default + 'static + sealed::Sealed {
    /// The `adios2_type` code.
    const TYPE: sys::adios2_type;
    /// A name for messages.
    const NAME: &'static str;
}
mod sealed {
    pub trait Sealed {}
}
macro_rules! adios_type {
    ($t:ty, $code:expr, $name:expr) => {
        impl sealed::Sealed for $t {}
        impl AdiosType for $t {
            const TYPE: sys::adios2_type = $code;
            const NAME: &'static str = $name;
        }
    };
}
adios_type!(f64, sys::adios2_type_double, "double");
adios_type!(f32, sys::adios2_type_float, "float");
adios_type!(i32, sys::adios2_type_int32_t, "int32");
adios_type!(i64, sys::adios2_type_int64_t, "int64");
adios_type!(u8, sys::adios2_type_uint8_t, "uint8");
adios_type!(u64, sys::adios2_type_uint64_t, "uint64");

fn type_name(t: sys::adios2_type) -> &'static str {
    match t {
        sys::adios2_type_string => "string",
        sys::adios2_type_float => "float",
        sys::adios2_type_double => "double",
        sys::adios2_type_int8_t => "int8",
        sys::adios2_type_int16_t => "int16",
        sys::adios2_type_int32_t => "int32",
        sys::adios2_type_int64_t => "int64",
        sys::adios2_type_uint8_t => "uint8",
        sys::adios2_type_uint16_t => "uint16",
        sys::adios2_type_uint32_t => "uint32",
        sys::adios2_type_uint64_t => "uint64",
        _ => "unknown",
    }
}

fn cstring(path: &Path, name: &str) -> Result<CString> {
    CString::new(name)
        .map_err(|_| DataError::schema(path, format!("name '{name}' contains a NUL byte")))
}

/// An ADIOS2 factory (`adios2_init_serial` ... `adios2_finalize`).
pub struct Adios {
    ptr: *mut sys::adios2_adios,
}

// SAFETY: the factory is only ever used through `&mut`/owned access of the Writer/Reader that
// owns it, from one thread at a time; ADIOS2 keeps no thread-local state tied to it.
unsafe impl Send for Adios {}

impl Adios {
    /// Starts a serial ADIOS2 factory.
    pub fn new() -> Result<Self> {
        // SAFETY: no arguments; a NULL return is checked.
        let ptr = unsafe { sys::adios2_init_serial() };
        if ptr.is_null() {
            return Err(DataError::Adios {
                path: PathBuf::new(),
                name: "adios".into(),
                op: "init",
                code: -1,
            });
        }
        Ok(Adios { ptr })
    }

    fn declare_io(&self, path: &Path, name: &str) -> Result<*mut sys::adios2_io> {
        let c = cstring(path, name)?;
        // SAFETY: valid factory and NUL-terminated name.
        let io = unsafe { sys::adios2_declare_io(self.ptr, c.as_ptr()) };
        if io.is_null() {
            return Err(DataError::Adios {
                path: path.into(),
                name: name.into(),
                op: "declare_io",
                code: -1,
            });
        }
        Ok(io)
    }
}

impl Drop for Adios {
    fn drop(&mut self) {
        // SAFETY: the pointer came from adios2_init_serial and is finalized once.
        unsafe {
            sys::adios2_finalize(self.ptr);
        }
    }
}

fn check(path: &Path, name: &str, op: &'static str, code: sys::adios2_error) -> Result<()> {
    if code == sys::adios2_error_none {
        Ok(())
    } else {
        Err(DataError::Adios {
            path: path.into(),
            name: name.into(),
            op,
            code,
        })
    }
}

/// Writes global arrays and attributes into a new BP5 file (a directory), in one step.
pub struct Writer {
    path: PathBuf,
    io: *mut sys::adios2_io,
    engine: *mut sys::adios2_engine,
    // Dropped after `engine` is closed in Drop::drop.
    _adios: Adios,
}

// SAFETY: see Adios; all handles belong to the owned factory.
unsafe impl Send for Writer {}

impl Writer {
    /// Creates (truncates) the BP5 file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let adios = Adios::new()?;
        let io = adios.declare_io(&path, "hydragnn-writer")?;
        let Some(s) = path.to_str() else {
            return Err(DataError::schema(&path, "path is not valid UTF-8"));
        };
        let p = cstring(&path, s)?;
        // SAFETY: valid io and NUL-terminated strings for every call below.
        unsafe {
            check(
                &path,
                "engine",
                "set_engine",
                sys::adios2_set_engine(io, c"BP5".as_ptr()),
            )?;
            // No profiling.json next to the data.
            check(
                &path,
                "Profile",
                "set_parameter",
                sys::adios2_set_parameter(io, c"Profile".as_ptr(), c"Off".as_ptr()),
            )?;
        }
        // SAFETY: valid io and path.
        let engine = unsafe { sys::adios2_open(io, p.as_ptr(), sys::adios2_mode_write) };
        if engine.is_null() {
            return Err(DataError::Adios {
                path,
                name: "engine".into(),
                op: "open for writing",
                code: -1,
            });
        }
        Ok(Writer {
            path,
            io,
            engine,
            _adios: adios,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Defines the global array `name` of `shape` and writes all of it (`data.len()` must equal
    /// the product of `shape`; row-major). The data is copied before the call returns.
    pub fn put<T: AdiosType>(&mut self, name: &str, shape: &[usize], data: &[T]) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(DataError::schema(
                &self.path,
                format!(
                    "variable '{name}': shape {shape:?} holds {n} values, got {}",
                    data.len()
                ),
            ));
        }
        if n == 0 {
            return Err(DataError::schema(
                &self.path,
                format!("variable '{name}': empty arrays are not written"),
            ));
        }
        let c = cstring(&self.path, name)?;
        let start = vec![0usize; shape.len()];
        // SAFETY: io valid; shape/start/count hold ndims values each.
        let var = unsafe {
            sys::adios2_define_variable(
                self.io,
                c.as_ptr(),
                T::TYPE,
                shape.len(),
                shape.as_ptr(),
                start.as_ptr(),
                shape.as_ptr(),
                sys::adios2_constant_dims_true,
            )
        };
        if var.is_null() {
            return Err(DataError::Adios {
                path: self.path.clone(),
                name: name.into(),
                op: "define_variable",
                code: -1,
            });
        }
        // SAFETY: data holds exactly the selection's n values of type T; sync mode copies them now.
        let code = unsafe {
            sys::adios2_put(
                self.engine,
                var,
                data.as_ptr().cast::<c_void>(),
                sys::adios2_mode_sync,
            )
        };
        check(&self.path, name, "put", code)
    }

    /// Defines a single-value numeric attribute.
    pub fn attr<T: AdiosType>(&mut self, name: &str, value: T) -> Result<()> {
        let c = cstring(&self.path, name)?;
        // SAFETY: value points to one T of the declared type.
        let a = unsafe {
            sys::adios2_define_attribute(self.io, c.as_ptr(), T::TYPE, (&value as *const T).cast())
        };
        self.attr_done(name, a)
    }

    /// Defines a numeric array attribute (non-empty).
    pub fn attr_array<T: AdiosType>(&mut self, name: &str, values: &[T]) -> Result<()> {
        if values.is_empty() {
            return Err(DataError::schema(
                &self.path,
                format!("attribute '{name}': empty arrays are not written"),
            ));
        }
        let c = cstring(&self.path, name)?;
        // SAFETY: values holds `len` Ts of the declared type.
        let a = unsafe {
            sys::adios2_define_attribute_array(
                self.io,
                c.as_ptr(),
                T::TYPE,
                values.as_ptr().cast(),
                values.len(),
            )
        };
        self.attr_done(name, a)
    }

    /// Defines a single string attribute.
    pub fn attr_str(&mut self, name: &str, value: &str) -> Result<()> {
        let c = cstring(&self.path, name)?;
        let v = cstring(&self.path, value)?;
        // SAFETY: for strings the value is a `const char*`.
        let a = unsafe {
            sys::adios2_define_attribute(
                self.io,
                c.as_ptr(),
                sys::adios2_type_string,
                v.as_ptr().cast(),
            )
        };
        self.attr_done(name, a)
    }

    /// Defines a string array attribute (non-empty).
    pub fn attr_strs(&mut self, name: &str, values: &[String]) -> Result<()> {
        if values.is_empty() {
            return Err(DataError::schema(
                &self.path,
                format!("attribute '{name}': empty arrays are not written"),
            ));
        }
        let c = cstring(&self.path, name)?;
        let owned = values
            .iter()
            .map(|v| cstring(&self.path, v))
            .collect::<Result<Vec<_>>>()?;
        let ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        // SAFETY: for string arrays the data is a `const char**` of `len` NUL-terminated strings.
        let a = unsafe {
            sys::adios2_define_attribute_array(
                self.io,
                c.as_ptr(),
                sys::adios2_type_string,
                ptrs.as_ptr().cast(),
                ptrs.len(),
            )
        };
        self.attr_done(name, a)
    }

    fn attr_done(&self, name: &str, a: *mut sys::adios2_attribute) -> Result<()> {
        if a.is_null() {
            return Err(DataError::Adios {
                path: self.path.clone(),
                name: name.into(),
                op: "define_attribute",
                code: -1,
            });
        }
        Ok(())
    }

    /// Closes the file, flushing everything; the error of the final write is reported here.
    pub fn close(mut self) -> Result<()> {
        let engine = std::mem::replace(&mut self.engine, std::ptr::null_mut());
        // SAFETY: engine is open and closed once.
        let code = unsafe { sys::adios2_close(engine) };
        check(&self.path, "engine", "close", code)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.engine.is_null() {
            // SAFETY: engine is open (close() nulls it); errors cannot be reported from drop.
            unsafe {
                sys::adios2_close(self.engine);
            }
        }
    }
}

/// Reads a BP file (BP4 or BP5) in random-access mode: box selections of global arrays, and
/// attributes.
pub struct Reader {
    path: PathBuf,
    io: *mut sys::adios2_io,
    engine: *mut sys::adios2_engine,
    _adios: Adios,
}

// SAFETY: see Adios.
unsafe impl Send for Reader {}

impl Reader {
    /// Opens the BP file at `path` for random-access reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(DataError::io(
                &path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let Some(s) = path.to_str() else {
            return Err(DataError::schema(&path, "path is not valid UTF-8"));
        };
        let p = cstring(&path, s)?;
        let adios = Adios::new()?;
        let io = adios.declare_io(&path, "hydragnn-reader")?;
        // SAFETY: valid io and path.
        let engine = unsafe { sys::adios2_open(io, p.as_ptr(), sys::adios2_mode_readRandomAccess) };
        if engine.is_null() {
            return Err(DataError::Adios {
                path,
                name: "engine".into(),
                op: "open for reading (not a BP file?)",
                code: -1,
            });
        }
        Ok(Reader {
            path,
            io,
            engine,
            _adios: adios,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn var(&self, name: &str) -> Result<Option<*mut sys::adios2_variable>> {
        let c = cstring(&self.path, name)?;
        // SAFETY: valid io and name.
        let v = unsafe { sys::adios2_inquire_variable(self.io, c.as_ptr()) };
        Ok((!v.is_null()).then_some(v))
    }

    fn var_or_err(&self, name: &str) -> Result<*mut sys::adios2_variable> {
        self.var(name)?
            .ok_or_else(|| DataError::schema(&self.path, format!("variable '{name}' is missing")))
    }

    /// The global shape of variable `name`, or `None` when it does not exist.
    pub fn shape(&self, name: &str) -> Result<Option<Vec<usize>>> {
        let Some(v) = self.var(name)? else {
            return Ok(None);
        };
        self.shape_of(name, v).map(Some)
    }

    fn shape_of(&self, name: &str, v: *mut sys::adios2_variable) -> Result<Vec<usize>> {
        let mut nd = 0usize;
        // SAFETY: valid variable; shape buffer holds ndims values.
        check(&self.path, name, "variable_ndims", unsafe {
            sys::adios2_variable_ndims(&mut nd, v)
        })?;
        let mut shape = vec![0usize; nd];
        if nd > 0 {
            check(&self.path, name, "variable_shape", unsafe {
                sys::adios2_variable_shape(shape.as_mut_ptr(), v)
            })?;
        }
        Ok(shape)
    }

    /// Reads the box `start`/`count` of the global array `name` (row-major), checking its type.
    pub fn read<T: AdiosType>(
        &self,
        name: &str,
        start: &[usize],
        count: &[usize],
    ) -> Result<Vec<T>> {
        let v = self.var_or_err(name)?;
        let mut t = sys::adios2_type_unknown;
        // SAFETY: valid variable.
        check(&self.path, name, "variable_type", unsafe {
            sys::adios2_variable_type(&mut t, v)
        })?;
        if t != T::TYPE {
            return Err(DataError::schema(
                &self.path,
                format!(
                    "variable '{name}' holds {}, read as {}",
                    type_name(t),
                    T::NAME
                ),
            ));
        }
        let shape = self.shape_of(name, v)?;
        if start.len() != shape.len() || count.len() != shape.len() {
            return Err(DataError::schema(
                &self.path,
                format!(
                    "variable '{name}' has {} dimensions, selection has {}",
                    shape.len(),
                    start.len()
                ),
            ));
        }
        for d in 0..shape.len() {
            if !matches!(start[d].checked_add(count[d]), Some(e) if e <= shape[d]) {
                return Err(DataError::schema(
                    &self.path,
                    format!("variable '{name}': selection start {start:?} count {count:?} exceeds shape {shape:?}"),
                ));
            }
        }
        let n: usize = count.iter().product();
        let mut out = vec![T::default(); n];
        if n == 0 {
            return Ok(out);
        }
        // SAFETY: valid variable; start/count hold ndims values; out holds the selection's n values
        // of type T; the get is synchronous so `out` is filled before the call returns.
        unsafe {
            check(
                &self.path,
                name,
                "set_step_selection",
                sys::adios2_set_step_selection(v, 0, 1),
            )?;
            check(
                &self.path,
                name,
                "set_selection",
                sys::adios2_set_selection(v, shape.len(), start.as_ptr(), count.as_ptr()),
            )?;
            check(
                &self.path,
                name,
                "get",
                sys::adios2_get(
                    self.engine,
                    v,
                    out.as_mut_ptr().cast(),
                    sys::adios2_mode_sync,
                ),
            )?;
        }
        Ok(out)
    }

    /// Reads the whole global array `name` with its shape.
    pub fn read_all<T: AdiosType>(&self, name: &str) -> Result<(Vec<usize>, Vec<T>)> {
        let v = self.var_or_err(name)?;
        let shape = self.shape_of(name, v)?;
        let data = self.read(name, &vec![0; shape.len()], &shape)?;
        Ok((shape, data))
    }

    fn attribute(
        &self,
        name: &str,
    ) -> Result<Option<(*mut sys::adios2_attribute, sys::adios2_type, usize)>> {
        let c = cstring(&self.path, name)?;
        // SAFETY: valid io and name; then valid attribute handle.
        unsafe {
            let a = sys::adios2_inquire_attribute(self.io, c.as_ptr());
            if a.is_null() {
                return Ok(None);
            }
            let mut t = sys::adios2_type_unknown;
            check(
                &self.path,
                name,
                "attribute_type",
                sys::adios2_attribute_type(&mut t, a),
            )?;
            let mut n = 0usize;
            check(
                &self.path,
                name,
                "attribute_size",
                sys::adios2_attribute_size(&mut n, a),
            )?;
            Ok(Some((a, t, n)))
        }
    }

    /// A numeric attribute (single value or array) as a vector, `None` when absent.
    pub fn attr<T: AdiosType>(&self, name: &str) -> Result<Option<Vec<T>>> {
        let Some((a, t, n)) = self.attribute(name)? else {
            return Ok(None);
        };
        if t != T::TYPE {
            return Err(DataError::schema(
                &self.path,
                format!(
                    "attribute '{name}' holds {}, read as {}",
                    type_name(t),
                    T::NAME
                ),
            ));
        }
        let mut out = vec![T::default(); n];
        let mut got = 0usize;
        // SAFETY: out holds the attribute's n elements of type T.
        check(&self.path, name, "attribute_data", unsafe {
            sys::adios2_attribute_data(out.as_mut_ptr().cast(), &mut got, a)
        })?;
        out.truncate(got.min(n));
        Ok(Some(out))
    }

    /// A string attribute (single value or array) as a vector of strings, `None` when absent.
    pub fn attr_strs(&self, name: &str) -> Result<Option<Vec<String>>> {
        let Some((a, t, n)) = self.attribute(name)? else {
            return Ok(None);
        };
        if t != sys::adios2_type_string {
            return Err(DataError::schema(
                &self.path,
                format!("attribute '{name}' holds {}, read as string", type_name(t)),
            ));
        }
        let mut is_value = sys::adios2_false;
        // SAFETY: valid attribute.
        check(&self.path, name, "attribute_is_value", unsafe {
            sys::adios2_attribute_is_value(&mut is_value, a)
        })?;
        let utf8 = |b: Vec<u8>| {
            String::from_utf8(b).map_err(|_| {
                DataError::schema(&self.path, format!("attribute '{name}' is not UTF-8"))
            })
        };
        if is_value == sys::adios2_true {
            let mut len = 0usize;
            // SAFETY: two-call pattern: length first, then a buffer of len + 1 bytes.
            unsafe {
                check(
                    &self.path,
                    name,
                    "attribute_string_data",
                    sys::adios2_attribute_string_data(a, std::ptr::null_mut(), &mut len),
                )?;
                let mut buf = vec![0u8; len + 1];
                check(
                    &self.path,
                    name,
                    "attribute_string_data",
                    sys::adios2_attribute_string_data(a, buf.as_mut_ptr().cast(), &mut len),
                )?;
                buf.truncate(len);
                Ok(Some(vec![utf8(buf)?]))
            }
        } else {
            let mut lens = vec![0usize; n];
            // SAFETY: two-call pattern: lengths first, then one buffer of len + 1 bytes per string.
            unsafe {
                check(
                    &self.path,
                    name,
                    "attribute_string_data_array",
                    sys::adios2_attribute_string_data_array(
                        a,
                        std::ptr::null_mut(),
                        lens.as_mut_ptr(),
                    ),
                )?;
                let mut bufs: Vec<Vec<u8>> = lens.iter().map(|&l| vec![0u8; l + 1]).collect();
                let mut ptrs: Vec<*mut c_char> =
                    bufs.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
                check(
                    &self.path,
                    name,
                    "attribute_string_data_array",
                    sys::adios2_attribute_string_data_array(
                        a,
                        ptrs.as_mut_ptr(),
                        lens.as_mut_ptr(),
                    ),
                )?;
                bufs.into_iter()
                    .zip(&lens)
                    .map(|(mut b, &l)| {
                        b.truncate(l);
                        utf8(b)
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
        }
    }

    /// A single string attribute, `None` when absent.
    pub fn attr_str(&self, name: &str) -> Result<Option<String>> {
        Ok(self.attr_strs(name)?.and_then(|v| v.into_iter().next()))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // SAFETY: engine is open and closed once; errors cannot be reported from drop.
        unsafe {
            sys::adios2_close(self.engine);
        }
    }
}
