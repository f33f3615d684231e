//! Data parallelism over MPI (the `mpi` crate): rank and size, gradient and metric allreduce,
//! and the libtorch thread count per rank. Launched without mpirun the binary is one rank (MPICH
//! singleton init); [`Dist::single`] is the same without touching MPI at all (library callers,
//! tests, `eval`).
//!
//! The trainer normalises each rank's loss by the *global* batch (graphs and atoms summed over
//! ranks), so the allreduce **sum** of the ranks' gradients is exactly the single-rank gradient of
//! the same global batch: `mpirun -np 2` and `-np 1` take the same steps up to rounding.

use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

/// The communicator of a training run.
pub struct Dist {
    comm: Option<(Option<mpi::environment::Universe>, SimpleCommunicator)>,
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
    device: mlip::device::DeviceChoice,
}

impl std::fmt::Debug for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dist")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl Dist {
    /// One process, no MPI.
    pub fn single() -> Dist {
        Dist {
            comm: None,
            rank: 0,
            size: 1,
            local_rank: 0,
            local_size: 1,
            device: mlip::device::DeviceChoice::Auto,
        }
    }

    /// Initialises MPI (at most once per process; a second call returns a single-rank `Dist`).
    /// Without mpirun MPICH starts a singleton: one rank.
    pub fn init() -> Dist {
        match mpi::initialize() {
            Some(universe) => {
                let world = universe.world();
                let (rank, size) = (world.rank() as usize, world.size() as usize);
                let local = world.split_shared(rank as i32);
                let (local_rank, local_size) = (local.rank() as usize, local.size() as usize);
                Dist {
                    comm: Some((Some(universe), world)),
                    rank,
                    size,
                    local_rank,
                    local_size,
                    device: mlip::device::DeviceChoice::Auto,
                }
            }
            None => Dist::single(),
        }
    }

    /// The ranks of the same `color` as a communicator of their own (MPI_Comm_split, ordered
    /// by rank): `hydragnn train --ensemble` trains each member on its own group of ranks. Node
    /// placement (device, threads) stays that of the whole run. Without MPI: one rank.
    /// Collective: every rank must call it. Drop the result before `self`.
    pub fn split(&self, color: usize) -> Dist {
        let Some((_, world)) = &self.comm else {
            return Dist::single();
        };
        let color = mpi::topology::Color::with_value(color as i32);
        match world.split_by_color_with_key(color, self.rank as i32) {
            Some(sub) => Dist {
                rank: sub.rank() as usize,
                size: sub.size() as usize,
                comm: Some((None, sub)),
                local_rank: self.local_rank,
                local_size: self.local_size,
                device: self.device,
            },
            None => Dist::single(),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }
    /// Number of ranks on this node.
    pub fn local_size(&self) -> usize {
        self.local_size
    }
    /// Whether this is rank 0 (the one that writes files and logs).
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// The world communicator (None without MPI): for the one-sided windows of `ddstore`.
    pub fn comm(&self) -> Option<&SimpleCommunicator> {
        self.comm.as_ref().map(|(_, w)| w)
    }

    /// Sums `buf` over all ranks, in place.
    pub fn allreduce_sum(&self, buf: &mut [f64]) {
        if let Some((_, world)) = &self.comm {
            if self.size > 1 {
                let send = buf.to_vec();
                world.all_reduce_into(&send[..], buf, SystemOperation::sum());
            }
        }
    }

    /// Logical OR over all ranks (a failure on one rank stops all of them together).
    pub fn any(&self, flag: bool) -> bool {
        let mut b = [f64::from(u8::from(flag))];
        self.allreduce_sum(&mut b);
        b[0] > 0.0
    }

    /// Waits for every rank.
    pub fn barrier(&self) {
        if let Some((_, world)) = &self.comm {
            if self.size > 1 {
                world.barrier();
            }
        }
    }

    /// Sets libtorch's intra-op threads: `HYDRAGNN_NUM_THREADS` if set, otherwise the node's
    /// cores divided among its ranks (so `mpirun -np 2` on 2 cores runs one thread per rank).
    pub fn set_threads(&self) -> mlip::Result<()> {
        if mlip::compute::threads_from_env()?.is_none() && self.local_size > 1 {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            mlip::compute::set_num_threads((cores / self.local_size).max(1) as i32)?;
        }
        Ok(())
    }

    /// Sets the device the ranks are asked to use (`hydragnn train --device`; default
    /// [`DeviceChoice::Auto`](mlip::device::DeviceChoice::Auto)).
    pub fn with_device(mut self, choice: mlip::device::DeviceChoice) -> Dist {
        self.device = choice;
        self
    }

    /// The device of this rank: with `auto` (the default) or `cuda`, GPU `local_rank % count`
    /// of the GPUs this process sees (one rank per GPU on a node; with Slurm's
    /// `--gpus-per-task 1` each rank sees one), `local_rank` being the rank's index among the
    /// ranks of its node (`MPI_Comm_split_type` shared memory, the same as `SLURM_LOCALID` or
    /// `OMPI_COMM_WORLD_LOCAL_RANK`); `auto` falls back to the CPU without a usable GPU, `cuda`
    /// is then an error saying why ([`mlip::device`]).
    pub fn device(&self) -> mlip::Result<tch::Device> {
        self.device.resolve(self.local_rank)
    }
}
