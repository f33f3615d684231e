//! A safe wrapper over MPI one-sided communication (the `mpi` crate has none): a window over a
//! rank's byte records (`MPI_Win_allocate`, collective) and passive-target reads from any rank
//! (`MPI_Win_lock_all(MPI_MODE_NOCHECK)` once, then `MPI_Get` / `MPI_Win_flush`), freed
//! collectively on drop.

use std::os::raw::{c_int, c_void};

use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::error::{Error, Result};

/// An MPI window exposing this rank's records to every rank of the communicator. The memory is
/// MPI's own (`MPI_Win_allocate`): on one node MPICH maps it in shared memory, so a get from a
/// neighbour is a copy that needs nothing from the target (with `MPI_Win_create` over a Rust
/// buffer the target had to enter MPI before a get completed).
pub struct Window {
    win: ffi::MPI_Win,
    base: *mut u8,
    len: usize,
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
    /// Creates the window holding a copy of `buf` (collective over `comm`: every rank must call
    /// it, in the same order as its other collectives).
    pub fn create(buf: &[u8], comm: &SimpleCommunicator) -> Result<Window> {
        // SAFETY: RSMPI_WIN_NULL is an initialised constant of the MPI library.
        let mut win = unsafe { ffi::RSMPI_WIN_NULL };
        let mut base: *mut c_void = std::ptr::null_mut();
        // SAFETY: `comm` is a valid communicator for the duration of the call; `base` and `win`
        // are valid out-pointers (MPI_Win_allocate takes the address of the base pointer as a
        // void*); MPI owns the returned memory until MPI_Win_free in Drop.
        let rc = unsafe {
            ffi::MPI_Win_allocate(
                buf.len() as ffi::MPI_Aint,
                1,
                ffi::RSMPI_INFO_NULL,
                comm.as_raw(),
                &mut base as *mut *mut c_void as *mut c_void,
                &mut win,
            )
        };
        check(rc, "MPI_Win_allocate")?;
        let base = base as *mut u8;
        // One shared lock on every rank for the window's life (MPI_MODE_NOCHECK: nobody ever
        // takes an exclusive lock, the window is read-only), so a get sends no lock request and
        // waits for nothing from its target; gets complete with MPI_Win_flush.
        // SAFETY: `win` is the window just created.
        check(
            unsafe { ffi::MPI_Win_lock_all(ffi::MPI_MODE_NOCHECK as c_int, win) },
            "MPI_Win_lock_all",
        )?;
        if !buf.is_empty() {
            // SAFETY: MPI allocated `buf.len()` bytes at `base`; no rank reads them before the
            // barrier below and none ever writes them after; the regions do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), base, buf.len()) };
        }
        // SAFETY: `win` is valid and in a passive epoch (lock_all above); MPI_Win_sync makes the
        // local copy visible in the window before the other ranks, past the barrier, read it.
        check(unsafe { ffi::MPI_Win_sync(win) }, "MPI_Win_sync")?;
        comm.barrier();
        Ok(Window {
            win,
            base,
            len: buf.len(),
        })
    }

    /// This rank's exposed bytes.
    pub fn local(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `base` holds `len` initialised bytes (copied in `create`) that live until
        // Drop, and are never written after creation.
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }

    /// Reads byte ranges `(offset, len)` of rank `target`'s buffer into `out` (one buffer per
    /// range, resized to `len`), completed by one `MPI_Win_flush`.
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
        let mut rc = 0;
        for (&(off, len), o) in ranges.iter().zip(out.iter_mut()) {
            if len == 0 || rc != 0 {
                continue;
            }
            // SAFETY: `o` holds exactly `len` writable bytes and is not touched until the
            // flush below completes the transfer; the window is in the passive epoch opened at
            // creation and `target` is a rank of its communicator; the target range lies inside the target's
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
        // SAFETY: the window is valid and in its passive epoch; after the flush every MPI_Get
        // to `target` issued above has completed.
        let frc = unsafe { ffi::MPI_Win_flush(target as c_int, self.win) };
        check(rc, "MPI_Get")?;
        check(frc, "MPI_Win_flush")
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `win` was created by MPI_Win_allocate and is freed once, here, with its memory
        // (collective: the trainer drops its stores on every rank at the same point, before MPI
        // is finalised).
        unsafe {
            ffi::MPI_Win_unlock_all(self.win);
            ffi::MPI_Win_free(&mut self.win);
        }
    }
}
