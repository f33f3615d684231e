//! Keeping freed memory for reuse. A training step allocates and frees the same few hundred
//! tensors (megabytes each) every step; glibc's default returns such blocks to the kernel
//! (`munmap`, heap trimming), and the kernel must fault in and zero fresh pages for the next step.
//! Measured with `benchmarks/train_bench.sh`: 0.03 s of system time per 0.15 s step (SchNet 64×3,
//! batch 8). [`retain_freed_memory`] makes glibc serve every block up to 32 MiB from its heap and
//! never trim it, so a step reuses the previous step's pages. The process keeps its peak
//! footprint, which a training run reaches in its first steps anyway.

/// Configures glibc's allocator for the process (see the module): call once at start-up, in a
/// program (not a library: it changes the whole process). No-op elsewhere than Linux/glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        // SAFETY: mallopt only sets allocator parameters; it is called before other threads run.
        unsafe {
            // 32 MiB is glibc's largest mmap threshold on 64-bit systems.
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
