//! A safe wrapper over MPI one-sided communication (the `mpi` crate has none): a window over a
//! rank's byte buffer (`MPI_Win_create`, collective) and passive-target reads from any rank
//! (`MPI_Win_lock(MPI_LOCK_SHARED)` / `MPI_Get` / `MPI_Win_unlock`), freed collectively on drop.

use std::os::raw::{c_int, c_void};

use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;

use crate::error::{Error, Result};

/// An MPI window exposing this rank's `buf` to every rank of the communicator.
pub struct Window {
    win: ffi::MPI_Win,
    /// Exposed memory. Its heap allocation never moves or changes while the window lives.
    buf: Vec<u8>,
}

fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "ddstore: {what} failed with MPI error code {rc}"
        )))
    }
}

impl Window {
    /// Creates the window (collective over `comm`: every rank must call it, in the same order
    /// as its other collectives).
    pub fn create(mut buf: Vec<u8>, comm: &SimpleCommunicator) -> Result<Window> {
        // SAFETY: RSMPI_NULL-like handles are initialised link-time constants of the MPI library.
        let mut win = unsafe { ffi::RSMPI_WIN_NULL };
        let base = if buf.is_empty() {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr() as *mut c_void
        };
        // SAFETY: `base` points to `buf.len()` bytes owned by the returned Window, which keeps
        // `buf` alive (and unmoved on the heap) until MPI_Win_free in Drop; `comm` is a valid
        // communicator for the duration of the call; `win` is a valid out-pointer.
        let rc = unsafe {
            ffi::MPI_Win_create(
                base,
                buf.len() as ffi::MPI_Aint,
                1,
                ffi::RSMPI_INFO_NULL,
                comm.as_raw(),
                &mut win,
            )
        };
        check(rc, "MPI_Win_create")?;
        Ok(Window { win, buf })
    }

    /// This rank's exposed bytes.
    pub fn local(&self) -> &[u8] {
        &self.buf
    }

    /// Reads byte ranges `(offset, len)` of rank `target`'s buffer into `out` (one buffer per
    /// range, resized to `len`), inside one shared passive-target lock epoch.
    pub fn get(&self, target: usize, ranges: &[(usize, usize)], out: &mut [Vec<u8>]) -> Result<()> {
        assert_eq!(ranges.len(), out.len());
        for (&(_, len), o) in ranges.iter().zip(out.iter_mut()) {
            o.clear();
            o.resize(len, 0);
            if len > c_int::MAX as usize {
                return Err(Error::Invalid(format!(
                    "ddstore: a record of {len} bytes exceeds MPI_Get's count limit"
                )));
            }
        }
        // SAFETY: the window is valid until Drop; `target` is a rank of its communicator
        // (the caller derives it from the shard table of the same communicator).
        check(
            unsafe {
                ffi::MPI_Win_lock(ffi::MPI_LOCK_SHARED as c_int, target as c_int, 0, self.win)
            },
            "MPI_Win_lock",
        )?;
        let mut rc = 0;
        for (&(off, len), o) in ranges.iter().zip(out.iter_mut()) {
            if len == 0 || rc != 0 {
                continue;
            }
            // SAFETY: `o` holds exactly `len` writable bytes and is not touched until the
            // unlock below completes the transfer; the target range lies inside the target's
            // buffer (offsets come from the allreduced record-length table).
            rc = unsafe {
                ffi::MPI_Get(
                    o.as_mut_ptr() as *mut c_void,
                    len as c_int,
                    ffi::RSMPI_UINT8_T,
                    target as c_int,
                    off as ffi::MPI_Aint,
                    len as c_int,
                    ffi::RSMPI_UINT8_T,
                    self.win,
                )
            };
        }
        // SAFETY: closes the lock epoch opened above on the same window and target; after it
        // returns every MPI_Get of the epoch has completed.
        let urc = unsafe { ffi::MPI_Win_unlock(target as c_int, self.win) };
        check(rc, "MPI_Get")?;
        check(urc, "MPI_Win_unlock")
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `win` was created by MPI_Win_create and is freed once, here (collective: the
        // trainer drops its stores on every rank at the same point, before MPI is finalised).
        unsafe {
            ffi::MPI_Win_free(&mut self.win);
        }
    }
}
